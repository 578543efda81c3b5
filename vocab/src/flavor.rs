//! The call flavors: the `flavor` column of `calls.csv` and `perf.csv` and the `--flavor` names of the
//! command line.
//!
//! | flavor         | site bytes                         | what it models                              |
//! |----------------|------------------------------------|---------------------------------------------|
//! | `direct`       | `e8 rel32` to the target           | the compiler's direct call, the floor       |
//! | `indirect`     | `ff d0` (`call *%rax`)             | a function pointer, no mitigation           |
//! | `indirect-mem` | `ff 15 disp32` (`call *x(%rip)`)   | a pointer loaded from memory (ops table)    |
//! | `retpoline`    | `e8 rel32` to a retpoline thunk    | Spectre v2 generic retpoline                |
//! | `lfence`       | `0f ae e8 ff d0`                   | AMD-style `lfence; call *%rax`              |
//! | `kcfi`         | kCFI hash check, `call *%r11`      | Clang kCFI on an indirect call              |
//! | `kcfi-retpoline` | kCFI hash check, `e8` to the r11 retpoline thunk | kCFI with retpolines, as the kernel combines them |
//! | `fineibt`      | `mov $hash,%r10d; sub $16,%r11; nop4; call *%r11; nop2` | FineIBT (Linux 6.2–6.14 form): the target's preamble checks the hash |
//! | `its-thunk`    | `e8 rel32` to this site's own `jmp *%rax; int3` | ITS: a `call *%rax` whose last byte is in the lower half of its line |
//! | `trampoline`   | `e8 rel32` to an `e9 rel32` jump   | out-of-line static call                     |
//! | `inline`       | `e8 rel32` to the target           | inline static call (the patcher's site)     |
//! | `cs-inline`    | `2e e8 rel32` to the target        | the cs-prefixed inline static call site     |
//! | `trap`         | `cc` + the call's rel32            | a caller caught mid-patch: SIGTRAP emulation |
//!
//! The bytes themselves (`SiteForm`, encode and decode) live with the code that emits them, in
//! `callpatch_probes::code::flavor`; this module holds the names and the two properties every part of
//! callpatch asks of a flavor: where its target comes from and whether it can change without patching.

use std::str::FromStr;

/// One way of making a call, as listed in the module table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flavor {
    /// `e8 rel32` straight to the target, never patched.
    Direct,
    /// `call *%rax`.
    Indirect,
    /// `call *disp32(%rip)` (mono) or `call *8j(%rbx,%rcx)` (poly).
    IndirectMem,
    /// `e8 rel32` to a `__x86_indirect_thunk_rax`-style thunk, target in `rax`.
    Retpoline,
    /// `lfence; call *%rax`.
    Lfence,
    /// `mov $-hash, %r10d; add -15(%r11), %r10d; je 1f; ud2; 1: call *%r11`: Clang's kCFI check.
    Kcfi,
    /// The kCFI check, then `call __x86_indirect_thunk_r11`.
    KcfiRetpoline,
    /// FineIBT: the caller loads the hash and calls 16 bytes before the target, into its
    /// `endbr64; sub $hash, %r10d; je 1f; ud2; 1: nop` preamble, which checks it.
    Fineibt,
    /// `e8 rel32` to a thunk of this site's own, `jmp *%rax; int3` in the upper half of a line.
    ItsThunk,
    /// `e8 rel32` to a trampoline that is one `e9 rel32`.
    Trampoline,
    /// `e8 rel32` straight to the target: the patchable inline static call.
    Inline,
    /// `2e e8 rel32` straight to the target.
    CsInline,
    /// `cc` + rel32: every call taken through the SIGTRAP handler's call emulation.
    Trap,
}

impl Flavor {
    /// Every flavor, in table order (the order of CLI output, CSV rows, plots and tables).
    pub const ALL: [Flavor; 13] = [
        Flavor::Direct,
        Flavor::Indirect,
        Flavor::IndirectMem,
        Flavor::Retpoline,
        Flavor::Lfence,
        Flavor::Kcfi,
        Flavor::KcfiRetpoline,
        Flavor::Fineibt,
        Flavor::ItsThunk,
        Flavor::Trampoline,
        Flavor::Inline,
        Flavor::CsInline,
        Flavor::Trap,
    ];

    /// The names of [`Flavor::ALL`], in that order.
    pub const NAMES: [&'static str; 13] = {
        let mut names = [""; 13];
        let mut i = 0;
        while i < names.len() {
            names[i] = Flavor::ALL[i].name();
            i += 1;
        }
        names
    };

    /// Name on the command line and in `calls.csv`.
    pub const fn name(self) -> &'static str {
        match self {
            Flavor::Direct => "direct",
            Flavor::Indirect => "indirect",
            Flavor::IndirectMem => "indirect-mem",
            Flavor::Retpoline => "retpoline",
            Flavor::Lfence => "lfence",
            Flavor::Kcfi => "kcfi",
            Flavor::KcfiRetpoline => "kcfi-retpoline",
            Flavor::Fineibt => "fineibt",
            Flavor::ItsThunk => "its-thunk",
            Flavor::Trampoline => "trampoline",
            Flavor::Inline => "inline",
            Flavor::CsInline => "cs-inline",
            Flavor::Trap => "trap",
        }
    }

    /// True when the call's target is taken from `rax` (set once for mono, loaded per call for poly).
    pub const fn target_in_rax(self) -> bool {
        matches!(self, Flavor::Indirect | Flavor::Retpoline | Flavor::Lfence | Flavor::ItsThunk)
    }

    /// True when the call's target is taken from `r11` (the kCFI and FineIBT flavors: the register the
    /// kernel's CFI sequences check).
    pub const fn target_in_r11(self) -> bool {
        matches!(self, Flavor::Kcfi | Flavor::KcfiRetpoline | Flavor::Fineibt)
    }

    /// True when one site can reach a different target on each call without patching (poly scenarios).
    pub const fn is_indirect(self) -> bool {
        self.target_in_rax() || self.target_in_r11() || matches!(self, Flavor::IndirectMem)
    }
}

impl FromStr for Flavor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::names::parse_among(&Flavor::ALL, Flavor::name, "flavor", s)
    }
}

crate::names::by_name!(Flavor);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_rejected() {
        for f in Flavor::ALL {
            assert_eq!(f.name().parse::<Flavor>(), Ok(f));
            assert_eq!(f.to_string(), f.name());
        }
        assert_eq!(Flavor::NAMES[2], "indirect-mem");
        let err = "retpolin".parse::<Flavor>().unwrap_err();
        assert!(err.contains("retpolin") && err.contains("cs-inline"), "{err}");
    }

    #[test]
    fn all_is_in_declaration_order() {
        // `Ord` is the table order, so a sorted list of flavors reads like the table.
        assert!(Flavor::ALL.windows(2).all(|w| w[0] < w[1]));
    }
}
