//! How the called function returns: the `ret` column of `calls.csv` and the `--ret` names of the
//! command line. A second axis beside the flavor (how the call is made).
//!
//! | ret          | the callee's return                                  | what it models                  |
//! |--------------|------------------------------------------------------|---------------------------------|
//! | `ret`        | `ret`                                                | a return with no mitigation     |
//! | `ret-thunk`  | `jmp` to `ret; int3`                                 | the plain `__x86_return_thunk`: a control |
//! | `srso`       | `jmp` to `call srso_safe_ret; ud2`                   | AMD Safe RET, Zen 1/2 form      |
//! | `srso-alias` | the same at the addresses the kernel's linker script asserts | AMD Safe RET, Zen 3/4 form |
//! | `call-depth` | `jmp` to `shlq $5` on the depth counter; `jz` to a 16-call RSB refill | Intel call depth tracking (`retbleed=stuff`); each call counts `sarq $5` |
//! | `its-lower`  | `jmp` to `ret; int3` in the upper half of a line     | ITS: a return whose byte is in the lower half |
//! | `its-upper`  | `ret`, its byte in the upper half of its line         | ITS: a return the kernel leaves alone |
//!
//! A running kernel patches every return site either to `ret; int3` or to `jmp` the thunk it selected;
//! `ret-thunk` is that jump with the plainest thunk, so it separates the cost of the detour from the
//! cost of what a mitigation's thunk does. The bytes live with the code that emits them,
//! `callpatch_probes::code::ret`.
//!
//! Not every kind exists with every call flavor ([`ReturnKind::crosses`]): call depth tracking needs
//! retpolines (its indirect calls go through the accounting retpoline thunk), the kernel drops the ITS
//! thunks when retpolines are on, and SRSO (AMD) and ITS (Intel) never meet.

use std::str::FromStr;

use crate::Flavor;

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
    /// `jmp call_depth_return_thunk`, each call counted by `sarq $5` on the depth counter first.
    CallDepth,
    /// `jmp its_return_thunk` from the lower half of a line to `ret; int3` in the upper half.
    ItsLower,
    /// `ret` in the upper half of its line, which ITS leaves alone.
    ItsUpper,
}

impl ReturnKind {
    /// Every return kind, in table order.
    pub const ALL: [ReturnKind; 7] = [
        ReturnKind::Ret,
        ReturnKind::RetThunk,
        ReturnKind::Srso,
        ReturnKind::SrsoAlias,
        ReturnKind::CallDepth,
        ReturnKind::ItsLower,
        ReturnKind::ItsUpper,
    ];

    /// Name on the command line and in `calls.csv`.
    pub const fn name(self) -> &'static str {
        match self {
            ReturnKind::Ret => "ret",
            ReturnKind::RetThunk => "ret-thunk",
            ReturnKind::Srso => "srso",
            ReturnKind::SrsoAlias => "srso-alias",
            ReturnKind::CallDepth => "call-depth",
            ReturnKind::ItsLower => "its-lower",
            ReturnKind::ItsUpper => "its-upper",
        }
    }

    /// True for every kind but the plain `ret`: a thunk, or a return that must sit in one half of its
    /// line, whose cost moves with where things sit; such rows are measured at several placements.
    pub const fn is_placed(self) -> bool {
        !matches!(self, ReturnKind::Ret)
    }

    /// True when a kernel combines this return with calls of `flavor`: call depth tracking only with
    /// retpolines (and the direct-style calls, which land on the callee's accounting thunk), the ITS
    /// return thunk only without them (`lfence` is `spectre_v2=retpoline,lfence`: with them), SRSO
    /// (AMD) never with the ITS call thunks (Intel).
    pub const fn crosses(self, flavor: Flavor) -> bool {
        match self {
            ReturnKind::Ret | ReturnKind::RetThunk => true,
            ReturnKind::Srso | ReturnKind::SrsoAlias => !matches!(flavor, Flavor::ItsThunk),
            ReturnKind::CallDepth => matches!(
                flavor,
                Flavor::Direct | Flavor::Retpoline | Flavor::Trampoline | Flavor::Inline | Flavor::CsInline
            ),
            ReturnKind::ItsLower | ReturnKind::ItsUpper => {
                !matches!(flavor, Flavor::Retpoline | Flavor::KcfiRetpoline | Flavor::Lfence)
            }
        }
    }
}

impl FromStr for ReturnKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::names::parse_among(&ReturnKind::ALL, ReturnKind::name, "return kind", s)
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
        assert!(!ReturnKind::Ret.is_placed() && ReturnKind::ALL[1..].iter().all(|r| r.is_placed()));
        assert!(ReturnKind::CallDepth.crosses(Flavor::Retpoline) && !ReturnKind::CallDepth.crosses(Flavor::Indirect));
        assert!(ReturnKind::ItsLower.crosses(Flavor::ItsThunk) && !ReturnKind::ItsLower.crosses(Flavor::Retpoline));
        assert!(!ReturnKind::SrsoAlias.crosses(Flavor::ItsThunk) && !ReturnKind::ItsUpper.crosses(Flavor::Lfence));
    }
}
