//! How the called function returns: the `ret` column of `calls.csv` and the `--ret` names of the
//! command line. A second axis beside the flavor (how the call is made).
//!
//! | ret          | the callee's return                                  | what it models                  |
//! |--------------|------------------------------------------------------|---------------------------------|
//! | `ret`        | `ret`                                                | a return with no mitigation     |
//! | `ret-thunk`  | `jmp` to `ret; int3`                                 | the plain `__x86_return_thunk`: a control |
//! | `srso`       | `jmp` to `call srso_safe_ret; ud2`                   | AMD Safe RET, Zen 1/2 form      |
//! | `srso-alias` | the same at the addresses the kernel's linker script asserts | AMD Safe RET, Zen 3/4 form |
//!
//! A running kernel patches every return site either to `ret; int3` or to `jmp` the thunk it selected;
//! `ret-thunk` is that jump with the plainest thunk, so it separates the cost of the detour from the
//! cost of what a mitigation's thunk does. The bytes live with the code that emits them,
//! `callpatch_probes::code::ret`.

use std::fmt;
use std::str::FromStr;

/// One way of returning, as listed in the module table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReturnKind {
    /// `ret`.
    Ret,
    /// `jmp __x86_return_thunk`, whose body is `ret; int3`.
    RetThunk,
    /// `jmp srso_return_thunk` → `call srso_safe_ret; ud2`, `srso_safe_ret` inside `srso_untrain_ret`.
    Srso,
    /// `jmp srso_alias_return_thunk` → `call srso_alias_safe_ret; ud2`, at the aliasing addresses.
    SrsoAlias,
}

impl ReturnKind {
    /// Every return kind, in table order.
    pub const ALL: [ReturnKind; 4] = [ReturnKind::Ret, ReturnKind::RetThunk, ReturnKind::Srso, ReturnKind::SrsoAlias];

    /// Name on the command line and in `calls.csv`.
    pub const fn name(self) -> &'static str {
        match self {
            ReturnKind::Ret => "ret",
            ReturnKind::RetThunk => "ret-thunk",
            ReturnKind::Srso => "srso",
            ReturnKind::SrsoAlias => "srso-alias",
        }
    }

    /// True when the return goes through a thunk, whose cost moves with where the thunk sits: such rows
    /// are measured at several placements.
    pub const fn is_thunk(self) -> bool {
        !matches!(self, ReturnKind::Ret)
    }
}

impl fmt::Display for ReturnKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ReturnKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ReturnKind::ALL.into_iter().find(|r| r.name() == s).ok_or_else(|| {
            let names: Vec<&str> = ReturnKind::ALL.iter().map(|r| r.name()).collect();
            format!("unknown return kind `{s}` (expected one of: {})", names.join(", "))
        })
    }
}

crate::names::by_name!(ReturnKind);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_rejected() {
        for r in ReturnKind::ALL {
            assert_eq!(r.name().parse::<ReturnKind>(), Ok(r));
        }
        let err = "srso-alais".parse::<ReturnKind>().unwrap_err();
        assert!(err.contains("srso-alais") && err.contains("srso-alias"), "{err}");
        assert!(!ReturnKind::Ret.is_thunk() && ReturnKind::ALL[1..].iter().all(|r| r.is_thunk()));
    }
}
