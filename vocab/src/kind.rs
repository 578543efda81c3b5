//! What a call site is: the `kind` column of `census.csv`, `census_offsets.csv` and `sites.csv`
//! (see `results/README.md`).
//!
//! The first eight kinds come from decoding the executable sections; every decoded instruction has at
//! most one kind (a `call rel32` to a retpoline thunk is a `thunk_call`, not also a `call_rel32`). The
//! next two count function entries (an `endbr_entry` is also where a decoded site may start). The last
//! five come from a Linux kernel's own site tables and describe the instruction found at each listed
//! address, so they overlap with the decoded kinds by design.

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
    /// `ff /4`: an indirect jump through a register or memory (a tail call through a pointer, a switch).
    JmpIndirect,
    /// `c3` / `c2 imm16`: a near return.
    Ret,
    /// A `call`, `jmp` or `jcc` rel32 to a retpoline thunk (`__x86_indirect_thunk_*` and friends).
    ThunkCall,
    /// A `call rel32` to `__fentry__` / `mcount` (function tracing entry).
    FentryCall,
    /// A function entry (an `STT_FUNC` address, counted once) whose first instruction is `endbr64`: the
    /// landing pad CET-IBT checks on every indirect branch, which FineIBT preambles build on.
    EndbrEntry,
    /// A kCFI preamble: a `__cfi_<function>` symbol, the hash check a kernel built with clang CFI puts
    /// before each address-taken function (and rewrites into a FineIBT preamble at boot).
    CfiPreamble,
    /// An entry of the kernel's `.static_call_sites` table.
    StaticCallSite,
    /// An entry of the kernel's `.retpoline_sites` table.
    RetpolineSite,
    /// An entry of the kernel's `.return_sites` table (`jmp __x86_return_thunk`).
    ReturnSite,
    /// An entry of the kernel's `__mcount_loc` table (ftrace call sites).
    McountSite,
    /// An entry of the kernel's `.call_sites` table (since v6.2): a direct call that call depth
    /// tracking (the retbleed mitigation for Skylake-era CPUs) retargets to the callee's accounting thunk.
    CallSite,
}

impl SiteKind {
    /// Every kind, in the order rows are written: declaration order, so `kind as usize` is its index.
    pub const ALL: [SiteKind; 15] = [
        SiteKind::CallRel32,
        SiteKind::JmpRel32,
        SiteKind::JccRel32,
        SiteKind::CallIndirect,
        SiteKind::JmpIndirect,
        SiteKind::Ret,
        SiteKind::ThunkCall,
        SiteKind::FentryCall,
        SiteKind::EndbrEntry,
        SiteKind::CfiPreamble,
        SiteKind::StaticCallSite,
        SiteKind::RetpolineSite,
        SiteKind::ReturnSite,
        SiteKind::McountSite,
        SiteKind::CallSite,
    ];

    /// The kinds found by decoding and at function entries; a binary always has a row for each (a
    /// count of 0 is a real 0).
    pub const DECODED: [SiteKind; 10] = [
        SiteKind::CallRel32,
        SiteKind::JmpRel32,
        SiteKind::JccRel32,
        SiteKind::CallIndirect,
        SiteKind::JmpIndirect,
        SiteKind::Ret,
        SiteKind::ThunkCall,
        SiteKind::FentryCall,
        SiteKind::EndbrEntry,
        SiteKind::CfiPreamble,
    ];

    /// The names of [`SiteKind::ALL`], in that order (the order tables and plots list kinds in).
    pub const NAMES: [&'static str; 15] = {
        let mut names = [""; 15];
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
            SiteKind::JmpIndirect => "jmp_indirect",
            SiteKind::Ret => "ret",
            SiteKind::ThunkCall => "thunk_call",
            SiteKind::FentryCall => "fentry_call",
            SiteKind::EndbrEntry => "endbr_entry",
            SiteKind::CfiPreamble => "cfi_preamble",
            SiteKind::StaticCallSite => "static_call_site",
            SiteKind::RetpolineSite => "retpoline_site",
            SiteKind::ReturnSite => "return_site",
            SiteKind::McountSite => "mcount_site",
            SiteKind::CallSite => "call_site",
        }
    }

    /// True for the kinds the kernel's Indirect Target Selection rule sorts by the half of the 64-byte
    /// line their last byte lies in: indirect branches and returns, decoded or listed by a kernel table.
    pub const fn is_its_branch(self) -> bool {
        matches!(
            self,
            SiteKind::CallIndirect
                | SiteKind::JmpIndirect
                | SiteKind::Ret
                | SiteKind::RetpolineSite
                | SiteKind::ReturnSite
        )
    }

    /// True for the kinds read from a kernel table rather than found by decoding.
    pub const fn is_table(self) -> bool {
        matches!(
            self,
            SiteKind::StaticCallSite
                | SiteKind::RetpolineSite
                | SiteKind::ReturnSite
                | SiteKind::McountSite
                | SiteKind::CallSite
        )
    }
}

impl FromStr for SiteKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::names::parse_among(&SiteKind::ALL, SiteKind::name, "site kind", s)
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
                "jmp_indirect",
                "ret",
                "thunk_call",
                "fentry_call",
                "endbr_entry",
                "cfi_preamble",
                "static_call_site",
                "retpoline_site",
                "return_site",
                "mcount_site",
                "call_site"
            ]
        );
        for k in SiteKind::ALL {
            assert_eq!(k.name().parse::<SiteKind>(), Ok(k));
            assert!(k == k.name());
        }
        assert!("call-rel32".parse::<SiteKind>().unwrap_err().contains("`call-rel32`"));
        assert!(SiteKind::DECODED.iter().all(|k| !k.is_table()));
        assert_eq!(SiteKind::ALL.iter().filter(|k| k.is_table()).count(), 5);
        assert_eq!(SiteKind::ALL.iter().filter(|k| k.is_its_branch()).count(), 5);
        // ALL is in declaration order: `kind as usize` indexes it (the census tally relies on it).
        assert!(SiteKind::ALL.iter().enumerate().all(|(i, &k)| k as usize == i));
    }
}
