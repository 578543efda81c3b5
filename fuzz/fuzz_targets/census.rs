//! Fuzz the census's ELF-and-decode path: any byte string must give a census or a one-line error,
//! never a panic, a hang or an out-of-bounds read.
//!
//! Run: `cargo install cargo-fuzz && cargo +nightly fuzz run census -- -max_total_time=60`
//! (from the repository root; seeds: any ELF files copied into fuzz/corpus/census/).
#![no_main]

use callpatch_analysis::census::{census_elf, Options};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match census_elf(data, "fuzz", Options { by_site: data.len() % 2 == 0, sha256: false }) {
        Ok(census) => {
            let _ = census.rows();
            let _ = census.offset_rows();
        }
        Err(e) => assert!(!e.to_string().contains('\n')),
    }
});
