//! Which boundaries a site's bytes straddle.
//!
//! Hardware fact: the SDM guarantees that a store to memory is seen whole by instruction fetch on
//! other cores only when it lies inside one cache line (64 bytes; 8-byte aligned words are atomic
//! for any access that fits in them). A 5-byte `call rel32` is retargeted by rewriting its last four
//! bytes, so a site can be patched with one plain store exactly when those four bytes
//! `[a+n-4, a+n)` lie in one line ("rel32 crosses" otherwise). The whole instruction `[a, a+n)` is
//! what instruction fetch sees: "insn crosses" at 64 bytes (line), 32 (the JCC-erratum rule: the
//! decoded-icache drops branches that cross or end on a 32-byte boundary), 16 (legacy fetch block)
//! and 8 (aligned word).
//!
//! For a start address uniformly spread over the line, a 4-byte field crosses with probability
//! 3/64 and a 5-byte instruction with 4/64 ([`THEORY_REL32_LINE`], [`THEORY_INSN5_LINE`]).
//!
//! The rule itself ([`crosses`], [`rel32_crosses`], [`insn_crosses`], [`theory`]) is the vocabulary's
//! ([`callpatch_vocab::crossing`]), shared with the patcher and the hazard experiment; this module adds
//! what the census counts with it.
//!
//! For a kind with no rel32 (an indirect call) the same formula is applied to its last four bytes;
//! those columns then only say where the instruction ends, not that it is patchable.

pub use callpatch_vocab::crossing::{crosses, insn_crosses, rel32_crosses, theory};

/// Cache line size in bytes: the granule of the SDM's one-store guarantee.
pub const LINE: u64 = callpatch_vocab::CACHE_LINE as u64;

/// Granules the census reports, widest first.
pub const GRANULES: [u64; 4] = [LINE, 32, 16, 8];

/// Fraction of uniformly placed 4-byte fields that cross a 64-byte line: 3/64.
pub const THEORY_REL32_LINE: f64 = theory(4, LINE);
/// Fraction of uniformly placed 5-byte instructions that cross a 64-byte line: 4/64.
pub const THEORY_INSN5_LINE: f64 = theory(5, LINE);
/// Fraction of uniformly placed 4-byte fields that cross an aligned 8-byte word: 3/8.
pub const THEORY_REL32_WORD: f64 = theory(4, 8);

/// The aligned-only policy with the line rule: a site whose rel32 crosses a 64-byte line cannot be
/// patched with one store and stays on its trampoline.
pub const fn fallback_line(addr: u64, len: u64) -> bool {
    rel32_crosses(addr, len, LINE)
}

/// The aligned-only policy with the strict word rule: a site falls back unless its rel32 lies inside
/// one aligned 8-byte word (one 8-byte store).
pub const fn fallback_word(addr: u64, len: u64) -> bool {
    rel32_crosses(addr, len, 8)
}

/// Every crossing of one site, as the census columns need them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Crossings {
    /// The rel32 (last four bytes) touches two 64-byte lines: no single store retargets the site.
    pub rel32_64: bool,
    /// The whole instruction touches two 64-byte lines.
    pub insn_64: bool,
    /// The whole instruction touches two 32-byte blocks (the JCC-erratum granule).
    pub insn_32: bool,
    /// The whole instruction touches two 16-byte blocks (legacy fetch blocks).
    pub insn_16: bool,
    /// The whole instruction touches two aligned 8-byte words.
    pub insn_8: bool,
    /// The aligned-only policy leaves the site on its trampoline under the line rule
    /// ([`fallback_line()`]; the same sites as `rel32_64`).
    pub fallback_line: bool,
    /// The aligned-only policy leaves the site on its trampoline under the strict word rule
    /// ([`fallback_word()`]: the rel32 is not inside one aligned 8-byte word).
    pub fallback_word: bool,
}

impl Crossings {
    /// The crossings of the `len`-byte instruction at `addr`.
    pub const fn of(addr: u64, len: u64) -> Crossings {
        Crossings {
            rel32_64: rel32_crosses(addr, len, 64),
            insn_64: insn_crosses(addr, len, 64),
            insn_32: insn_crosses(addr, len, 32),
            insn_16: insn_crosses(addr, len, 16),
            insn_8: insn_crosses(addr, len, 8),
            fallback_line: fallback_line(addr, len),
            fallback_word: fallback_word(addr, len),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_byte_call_at_every_offset_matches_the_theory_counts() {
        // Exhaustive over one line: exactly 3 of 64 starts put the rel32 across it, 4 the insn.
        let rel = (0..64).filter(|&a| rel32_crosses(0x1000 + a, 5, 64)).collect::<Vec<_>>();
        assert_eq!(rel, [60, 61, 62]);
        let insn = (0..64).filter(|&a| insn_crosses(0x1000 + a, 5, 64)).collect::<Vec<_>>();
        assert_eq!(insn, [60, 61, 62, 63]);
        assert_eq!(rel.len() as f64 / 64.0, THEORY_REL32_LINE);
        assert_eq!(insn.len() as f64 / 64.0, THEORY_INSN5_LINE);
        assert_eq!((THEORY_REL32_LINE, THEORY_INSN5_LINE, THEORY_REL32_WORD), (3.0 / 64.0, 4.0 / 64.0, 3.0 / 8.0));
        // Word rule: the rel32 of a call at a fits in [8k, 8k+8) only when (a+1) mod 8 <= 4.
        let word = (0..8).filter(|&a| fallback_word(a, 5)).collect::<Vec<_>>();
        assert_eq!(word, [4, 5, 6]);
        assert_eq!((0..64).filter(|&a| fallback_word(a, 5)).count(), 24);
        assert_eq!((0..32).filter(|&a| insn_crosses(a, 6, 32)).count(), 5);
    }

    #[test]
    fn six_byte_cs_call_band_shifts_by_one() {
        let rel = (0..64).filter(|&o| rel32_crosses(o, 6, LINE)).collect::<Vec<_>>();
        assert_eq!(rel, [59, 60, 61]);
    }

    #[test]
    fn edges() {
        assert!(!crosses(63, 1, 64));
        assert!(crosses(63, 2, 64));
        assert!(!crosses(64, 64, 64));
        assert!(!crosses(5, 0, 64));
        assert!(!crosses(u64::MAX, 1, 64));
        // A 2-byte indirect call: the formula's window starts 2 bytes before the instruction.
        assert!(rel32_crosses(65, 2, 64));
        assert!(!rel32_crosses(66, 2, 64));
        let c = Crossings::of(0x3e, 5);
        assert_eq!(
            c,
            Crossings {
                rel32_64: true,
                insn_64: true,
                insn_32: true,
                insn_16: true,
                insn_8: true,
                fallback_line: true,
                fallback_word: true
            }
        );
        assert_eq!(Crossings::of(0x40, 5), Crossings::default());
    }
}
