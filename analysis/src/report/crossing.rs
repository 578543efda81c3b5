//! Which start offsets make an instruction or its rel32 field cross a 64-byte cache line, and the
//! fractions a uniform start offset predicts.
//!
//! Hardware fact: the SDM guarantees an atomic, tear-free view of a store only within one cache line, so
//! a patch of a rel32 field is one safe store exactly when the field's 4 bytes lie in one line. For an
//! `n`-byte instruction at address `a` the field is `[a+n-4, a+n)`; it crosses when `(a+n-4) mod 64` is
//! 61, 62 or 63 — 3 of 64 start offsets — and the whole instruction crosses for 4 of 64 when n = 5.

/// Cache line size in bytes.
pub const LINE: u32 = 64;

/// Fraction of uniformly placed rel32 fields that cross a line: 3/64.
pub const THEORY_REL32: f64 = 3.0 / 64.0;

/// Fraction of uniformly placed 5-byte calls whose instruction bytes cross a line: 4/64.
pub const THEORY_INSN5: f64 = 4.0 / 64.0;

/// Fraction of uniformly placed rel32 fields that cross an aligned 8-byte word (the strict `--granule 8`
/// rule of the aligned-only policy): 3/8.
pub const THEORY_WORD: f64 = 3.0 / 8.0;

/// True when the rel32 field of an `len`-byte instruction starting at line offset `offset` crosses.
pub fn rel32_crosses(offset: u32, len: u32) -> bool {
    let field = (offset + len - 4) % LINE;
    field + 4 > LINE
}

/// True when the `len` bytes of an instruction starting at line offset `offset` cross.
pub fn insn_crosses(offset: u32, len: u32) -> bool {
    offset % LINE + len > LINE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_byte_call_band_is_60_to_62_for_rel32_and_60_to_63_for_the_insn() {
        let rel: Vec<u32> = (0..64).filter(|&o| rel32_crosses(o, 5)).collect();
        let insn: Vec<u32> = (0..64).filter(|&o| insn_crosses(o, 5)).collect();
        assert_eq!(rel, vec![60, 61, 62]);
        assert_eq!(insn, vec![60, 61, 62, 63]);
        assert_eq!(rel.len() as f64 / 64.0, THEORY_REL32);
        assert_eq!(insn.len() as f64 / 64.0, THEORY_INSN5);
    }

    #[test]
    fn six_byte_cs_call_band_shifts_by_one() {
        let rel: Vec<u32> = (0..64).filter(|&o| rel32_crosses(o, 6)).collect();
        assert_eq!(rel, vec![59, 60, 61]);
    }
}
