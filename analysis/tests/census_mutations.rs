//! The ELF-and-decode path on a few hundred damaged files: truncated at many lengths, bytes flipped
//! in the headers, the section headers and anywhere else. Every one must give a census or an error,
//! never a panic. Deterministic (fixed seed), so a failure reproduces; the cargo-fuzz target in
//! `fuzz/` drives the same entry point, [`census_elf`], without bounds.

mod fixture;

use callpatch_analysis::census::{census_elf, Options};
use fixture::kernel_like;

/// xorshift64*: a tiny deterministic generator, enough to spread mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Section header table offset and size of a well-formed ELF64 (for aiming flips at it).
fn section_headers(elf: &[u8]) -> std::ops::Range<usize> {
    let shoff = u64::from_le_bytes(elf[0x28..0x30].try_into().unwrap()) as usize;
    let shnum = u16::from_le_bytes(elf[0x3c..0x3e].try_into().unwrap()) as usize;
    shoff..(shoff + shnum * 64).min(elf.len())
}

fn mutate_and_census(original: &[u8], seed: u64, cases: usize) -> (usize, usize) {
    let mut rng = Rng(seed);
    let headers = section_headers(original);
    let (mut ok, mut refused) = (0, 0);
    for case in 0..cases {
        let mut bytes = original.to_vec();
        match case % 4 {
            0 => bytes.truncate(rng.below(original.len())),
            1 => {
                for _ in 0..1 + rng.below(4) {
                    let i = rng.below(64);
                    bytes[i] ^= 1 << rng.below(8);
                }
            }
            2 => {
                for _ in 0..1 + rng.below(8) {
                    let i = headers.start + rng.below(headers.len());
                    bytes[i] = rng.next() as u8;
                }
            }
            _ => {
                for _ in 0..1 + rng.below(32) {
                    let i = rng.below(bytes.len());
                    bytes[i] = rng.next() as u8;
                }
            }
        }
        match census_elf(&bytes, "mutant", Options { by_site: case % 8 == 0 }) {
            Ok(c) => {
                ok += 1;
                // Whatever was found is consistent with itself.
                let rows = c.rows();
                assert_eq!(rows.iter().map(|r| r.count).sum::<u64>(), c.tallies().iter().map(|t| t.count).sum::<u64>());
            }
            Err(e) => {
                refused += 1;
                let line = e.to_string();
                assert!(line.starts_with("mutant: ") && !line.contains('\n'), "{line}");
            }
        }
    }
    (ok, refused)
}

#[test]
fn damaged_synthetic_kernel_never_panics() {
    let (ok, refused) = mutate_and_census(&kernel_like(true).write(), 0x5eed_0001, 200);
    assert_eq!(ok + refused, 200);
    assert!(ok > 0 && refused > 0, "the mutations should hit both outcomes: {ok} ok, {refused} refused");
}

#[test]
fn damaged_real_binary_never_panics() {
    // A real ELF from this system when there is one (a few tens of kB of real code), else the fixture.
    let real = ["/bin/true", "/usr/bin/true"]
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .find(|b| census_elf(b, "real", Options::default()).is_ok());
    let Some(real) = real else {
        eprintln!("skipped: no x86-64 /bin/true on this system");
        return;
    };
    let (ok, refused) = mutate_and_census(&real, 0x5eed_0002, 200);
    assert_eq!(ok + refused, 200);
}
