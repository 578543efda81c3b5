//! A file whose section header table repeats its code sections' headers (100 copies of each, in 6 KB
//! of headers) is censused as the file it is: every code byte once, so the counts equal the original's
//! and the cost does not grow with the number of copies.

mod fixture;

use callpatch_analysis::census::{census_elf, Options};
use fixture::kernel_like;

/// `bytes` with `copies` more copies of every executable section's header appended to a new section
/// header table at the end of the file (the ELF header pointed at it).
fn with_repeated_code_headers(bytes: &[u8], copies: usize) -> Vec<u8> {
    let u16_at = |o: usize| u16::from_le_bytes(bytes[o..o + 2].try_into().unwrap()) as usize;
    let shoff = u64::from_le_bytes(bytes[0x28..0x30].try_into().unwrap()) as usize;
    let (shentsize, shnum) = (u16_at(0x3a), u16_at(0x3c));
    let table = &bytes[shoff..shoff + shentsize * shnum];
    let code_headers: Vec<&[u8]> = table
        .chunks(shentsize)
        .filter(|h| u64::from_le_bytes(h[8..16].try_into().unwrap()) & 0x4 != 0) // sh_flags & SHF_EXECINSTR
        .collect();
    assert!(!code_headers.is_empty(), "the fixture has code");
    let mut out = bytes.to_vec();
    out.resize(out.len().next_multiple_of(8), 0);
    let new_shoff = out.len();
    out.extend_from_slice(table);
    for _ in 0..copies {
        for h in &code_headers {
            out.extend_from_slice(h);
        }
    }
    let new_shnum = shnum + copies * code_headers.len();
    out[0x28..0x30].copy_from_slice(&(new_shoff as u64).to_le_bytes());
    out[0x3c..0x3e].copy_from_slice(&u16::try_from(new_shnum).unwrap().to_le_bytes());
    out
}

#[test]
fn repeated_code_section_headers_are_decoded_once() {
    let original = kernel_like(true).write();
    let repeated = with_repeated_code_headers(&original, 100);
    let a = census_elf(&original, "original", Options::default()).unwrap();
    let b = census_elf(&repeated, "repeated", Options::default()).unwrap();
    assert_eq!(a.tallies(), b.tallies(), "every code byte counted once");
    assert_eq!((a.decoded.instructions, a.decoded.code_bytes), (b.decoded.instructions, b.decoded.code_bytes));
    assert_eq!(a.decoded.sites.len(), b.decoded.sites.len(), "one record per site, not per header copy");
}
