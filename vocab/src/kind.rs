//! What a call site is: the `kind` column of `census.csv`, `census_offsets.csv` and `sites.csv`
//! (see `results/README.md`).
//!
//! The first six kinds come from decoding the executable sections; every decoded instruction has at
//! most one kind (a `call rel32` to a retpoline thunk is a `thunk_call`, not also a `call_rel32`). The
//! last four come from a Linux kernel's own site tables and describe the instruction found at each
//! listed address, so they overlap with the decoded kinds by design.

use std::fmt;
use std::str::FromStr;

/// One kind of call site counted by the census.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SiteKind {
    /// `e8 rel32`: a direct call (not to a thunk or `__fentry__`).
    CallRel32,
    /// `e9 rel32`: a direct jump, e.g. a tail call or a static call trampoline's body.
    JmpRel32,
    /// `0f 8x rel32`: a conditional jump with a 32-bit displacement.
    JccRel32,
    /// `ff /2`: an indirect call through a register or memory.
    CallIndirect,
    /// A `call`, `jmp` or `jcc` rel32 to a retpoline thunk (`__x86_indirect_thunk_*` and friends).
    ThunkCall,
    /// A `call rel32` to `__fentry__` / `mcount` (function tracing entry).
    FentryCall,
    /// An entry of the kernel's `.static_call_sites` table.
    StaticCallSite,
    /// An entry of the kernel's `.retpoline_sites` table.
    RetpolineSite,
    /// An entry of the kernel's `.return_sites` table (`jmp __x86_return_thunk`).
    ReturnSite,
    /// An entry of the kernel's `__mcount_loc` table (ftrace call sites).
    McountSite,
}

impl SiteKind {
    /// Every kind, in the order rows are written.
    pub const ALL: [SiteKind; 10] = [
        SiteKind::CallRel32,
        SiteKind::JmpRel32,
        SiteKind::JccRel32,
        SiteKind::CallIndirect,
        SiteKind::ThunkCall,
        SiteKind::FentryCall,
        SiteKind::StaticCallSite,
        SiteKind::RetpolineSite,
        SiteKind::ReturnSite,
        SiteKind::McountSite,
    ];

    /// The kinds found by decoding; a binary always has a row for each (a count of 0 is a real 0).
    pub const DECODED: [SiteKind; 6] = [
        SiteKind::CallRel32,
        SiteKind::JmpRel32,
        SiteKind::JccRel32,
        SiteKind::CallIndirect,
        SiteKind::ThunkCall,
        SiteKind::FentryCall,
    ];

    /// The names of [`SiteKind::ALL`], in that order (the order tables and plots list kinds in).
    pub const NAMES: [&'static str; 10] = {
        let mut names = [""; 10];
        let mut i = 0;
        while i < names.len() {
            names[i] = SiteKind::ALL[i].name();
            i += 1;
        }
        names
    };

    /// The name used in CSV files and on stdout.
    pub const fn name(self) -> &'static str {
        match self {
            SiteKind::CallRel32 => "call_rel32",
            SiteKind::JmpRel32 => "jmp_rel32",
            SiteKind::JccRel32 => "jcc_rel32",
            SiteKind::CallIndirect => "call_indirect",
            SiteKind::ThunkCall => "thunk_call",
            SiteKind::FentryCall => "fentry_call",
            SiteKind::StaticCallSite => "static_call_site",
            SiteKind::RetpolineSite => "retpoline_site",
            SiteKind::ReturnSite => "return_site",
            SiteKind::McountSite => "mcount_site",
        }
    }

    /// True for the kinds read from a kernel table rather than found by decoding.
    pub const fn is_table(self) -> bool {
        matches!(self, SiteKind::StaticCallSite | SiteKind::RetpolineSite | SiteKind::ReturnSite | SiteKind::McountSite)
    }
}

impl fmt::Display for SiteKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SiteKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        SiteKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown site kind `{s}` (expected one of: {})", SiteKind::NAMES.join(", ")))
    }
}

crate::names::by_name!(SiteKind);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_names_are_the_documented_ones_and_parse_back() {
        let names: Vec<&str> = SiteKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names, SiteKind::NAMES);
        assert_eq!(
            names,
            [
                "call_rel32",
                "jmp_rel32",
                "jcc_rel32",
                "call_indirect",
                "thunk_call",
                "fentry_call",
                "static_call_site",
                "retpoline_site",
                "return_site",
                "mcount_site"
            ]
        );
        for k in SiteKind::ALL {
            assert_eq!(k.name().parse::<SiteKind>(), Ok(k));
            assert!(k == k.name());
        }
        assert!("call-rel32".parse::<SiteKind>().unwrap_err().contains("`call-rel32`"));
        assert!(SiteKind::DECODED.iter().all(|k| !k.is_table()));
        assert_eq!(SiteKind::ALL.iter().filter(|k| k.is_table()).count(), 4);
    }
}
