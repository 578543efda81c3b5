//! Which boundaries a site's bytes straddle: the one rule behind the aligned-only policy, the census
//! and the hazard experiment.
//!
//! Hardware fact: the SDM guarantees that a store is seen whole by instruction fetch on other cores
//! only when it lies inside one cache line (64 bytes; an aligned 8-byte word is atomic for any access
//! that fits in it). A `call rel32` is retargeted by rewriting its last four bytes, so a site can be
//! patched with one plain store exactly when those four bytes `[a+n-4, a+n)` lie in one line ("rel32
//! crosses" otherwise). For a start address spread uniformly over the line, a 4-byte field crosses
//! with probability 3/64, a 5-byte instruction 4/64, and an `n`-byte one `(n-1)/64`.

/// Bytes in one cache line on every x86-64 implementation (the unit of the SDM's atomicity rules).
pub const CACHE_LINE: usize = 64;

/// True when the bytes `[start, start + len)` touch two `granule`-aligned blocks.
/// `granule` is a power of two; `len == 0` touches nothing.
pub const fn crosses(start: u64, len: u64, granule: u64) -> bool {
    if len == 0 {
        return false;
    }
    let last = start.wrapping_add(len - 1);
    (start ^ last) & !(granule - 1) != 0
}

/// True when the last four bytes of the `len`-byte instruction at `addr` (its rel32) cross a block.
pub const fn rel32_crosses(addr: u64, len: u64, granule: u64) -> bool {
    crosses(addr.wrapping_add(len).wrapping_sub(4), 4, granule)
}

/// True when the whole `len`-byte instruction at `addr` crosses a block.
pub const fn insn_crosses(addr: u64, len: u64, granule: u64) -> bool {
    crosses(addr, len, granule)
}

/// Fraction of uniformly placed `len`-byte fields that cross a `granule`-byte block: `(len-1)/granule`
/// (3/64 for a rel32, 4/64 for a 5-byte call, 5/64 for a 6-byte `jcc`).
pub const fn theory(len: u64, granule: u64) -> f64 {
    len.saturating_sub(1) as f64 / granule as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_every_offset_gives_the_theory() {
        for (len, granule) in [(4, 64), (5, 64), (6, 64), (4, 8)] {
            let n = (0..granule).filter(|&a| crosses(a, len, granule)).count() as f64;
            assert_eq!(n / granule as f64, theory(len, granule), "len {len}, granule {granule}");
        }
        assert!((60..=62).all(|a| rel32_crosses(a, 5, 64)) && !rel32_crosses(59, 5, 64) && !rel32_crosses(63, 5, 64));
    }
}
