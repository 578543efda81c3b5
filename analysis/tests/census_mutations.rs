//! The ELF-and-decode path on a few hundred damaged files, every outcome checked against what the
//! damage allows:
//! - damage to the identification, byte order or machine of the ELF header, and a header cut short,
//!   gives that error, in the order a reader meets it (magic, class, byte order, length, version, machine);
//! - a file cut anywhere before the end of its section header table is refused as truncated;
//! - flipped code bytes leave the structure alone: always a census, with the original's sections,
//!   code bytes, decode ranges and kinds;
//! - any other damage gives either a refusal (one line that names the file) or a census whose counts
//!   hold together, and, when no header byte changed, the original's code sections.
//!
//! Deterministic (fixed seed), so a failure reproduces; the cargo-fuzz target in `fuzz/` drives the
//! same entry point, [`census_elf`], without bounds.

mod fixture;
mod require;

use std::ops::Range;

use callpatch_analysis::census::{census_elf, Census, CensusError, Options};
use fixture::kernel_like;
use object::{Object, ObjectSection, SectionKind};

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

/// Where the parts of a well-formed ELF64 lie, and what the census makes of it.
struct Original {
    bytes: Vec<u8>,
    census: Census,
    /// The section header table.
    section_headers: Range<usize>,
    /// The file ranges of the executable sections.
    code: Vec<Range<usize>>,
}

const ELF_HEADER: Range<usize> = 0..64;
const EI_CLASS: usize = 4;
const EI_DATA: usize = 5;
const EI_VERSION: usize = 6;
const E_MACHINE: Range<usize> = 0x12..0x14;

impl Original {
    fn new(bytes: Vec<u8>) -> Original {
        let census = census_elf(&bytes, "original", Options::default()).expect("the unmutated file is censused");
        let shoff = u64::from_le_bytes(bytes[0x28..0x30].try_into().unwrap()) as usize;
        let shnum = u16::from_le_bytes(bytes[0x3c..0x3e].try_into().unwrap()) as usize;
        let file = object::File::parse(&*bytes).unwrap();
        let code = file
            .sections()
            .filter(|s| s.kind() == SectionKind::Text)
            .filter_map(|s| s.file_range())
            .map(|(start, len)| start as usize..(start + len) as usize)
            .filter(|r| !r.is_empty())
            .collect::<Vec<_>>();
        assert!(!code.is_empty());
        Original { section_headers: shoff..shoff + shnum * 64, code, census, bytes }
    }
}

/// The refusal the ELF header alone decides, checked in reading order: `None` when its
/// identification, byte order and machine are intact.
fn header_verdict(b: &[u8]) -> Option<&'static str> {
    Some(match () {
        _ if b.is_empty() => "empty",
        _ if b.len() < 4 || b[..4] != object::elf::ELFMAG => "not elf",
        _ if b.len() <= EI_DATA => "malformed",
        _ if b[EI_CLASS] == object::elf::ELFCLASS32 => "elf32",
        _ if b[EI_CLASS] != object::elf::ELFCLASS64 => "bad class",
        _ if b[EI_DATA] == object::elf::ELFDATA2MSB => "big endian",
        _ if b.len() < ELF_HEADER.end || b[EI_DATA] != object::elf::ELFDATA2LSB => "malformed",
        _ if b[EI_VERSION] != object::elf::EV_CURRENT => "malformed",
        _ if b[E_MACHINE] != object::elf::EM_X86_64.to_le_bytes() => "not x86-64",
        _ => return None,
    })
}

fn kind(e: &CensusError) -> &'static str {
    match e {
        CensusError::Empty { .. } => "empty",
        CensusError::NotElf { .. } => "not elf",
        CensusError::Malformed { .. } => "malformed",
        CensusError::Elf32 { .. } => "elf32",
        CensusError::BadClass { .. } => "bad class",
        CensusError::BigEndian { .. } => "big endian",
        CensusError::NotX86_64 { .. } => "not x86-64",
        CensusError::NoCode { .. } => "no code",
        _ => "other",
    }
}

/// Counts that must agree in any census, whatever the bytes were.
fn holds_together(c: &Census, file_len: usize, by_site: bool, case: &str) {
    let d = &c.decoded;
    assert!(d.code_bytes <= file_len as u64 && d.data_bytes <= d.code_bytes, "{case}: {d:?}");
    assert!(d.e8_calls <= d.instructions && d.sites.len() as u64 <= d.instructions, "{case}");
    assert!(d.sites.iter().map(|s| u64::from(s.len)).sum::<u64>() <= d.code_bytes, "{case}");
    let tallies = c.tallies();
    let total = d.sites.len() + c.entries.len() + c.kernel.sites.len();
    assert_eq!(tallies.iter().map(|t| t.count).sum::<u64>(), total as u64, "{case}: every site counted once");
    for t in &tallies {
        // Each ITS kind's sites are in one half or, a table entry whose branch is unknown, neither.
        assert_eq!(t.its.is_some(), t.kind.is_its_branch(), "{case}: {t:?}");
        assert!(t.its.is_none_or(|[lo, hi]| lo + hi <= t.count), "{case}: {t:?}");
        assert_eq!(t.offsets.iter().sum::<u64>(), t.count, "{case}: {:?} offsets", t.kind);
        // A 64-byte boundary is also a 32-, 16- and 8-byte one; a rel32 across a line is not in one word.
        let nested = [t.cross64_insn, t.cross32_insn, t.cross16_insn, t.cross8_insn, t.count];
        assert!(nested.windows(2).all(|w| w[0] <= w[1]), "{case}: {t:?}");
        assert!(t.fallback_line <= t.fallback_word && t.fallback_word <= t.count, "{case}: {t:?}");
        assert!(t.cross64_rel32 <= t.count, "{case}: {t:?}");
    }
    assert_eq!(c.by_site.len(), if by_site { total } else { 0 }, "{case}: one by-site row per site");
}

/// Outcomes over all cases: censuses accepted, refusals, and refusals the header decided.
#[derive(Debug, Default)]
struct Outcomes {
    ok: usize,
    refused: usize,
    header_refusals: usize,
}

fn mutate_and_census(original: &Original, seed: u64, cases: usize) -> Outcomes {
    let mut rng = Rng(seed);
    let len = original.bytes.len();
    let shdrs = &original.section_headers;
    let mut seen = Outcomes::default();
    for case in 0..cases {
        let mut bytes = original.bytes.clone();
        let what = match case % 5 {
            0 => {
                bytes.truncate(rng.below(len));
                "truncated"
            }
            1 => {
                for _ in 0..1 + rng.below(4) {
                    bytes[rng.below(ELF_HEADER.end)] ^= 1 << rng.below(8);
                }
                "ELF header"
            }
            2 => {
                for _ in 0..1 + rng.below(8) {
                    bytes[shdrs.start + rng.below(shdrs.len())] = rng.next() as u8;
                }
                "section headers"
            }
            3 => {
                for _ in 0..1 + rng.below(32) {
                    let code = &original.code[rng.below(original.code.len())];
                    bytes[code.start + rng.below(code.len())] = rng.next() as u8;
                }
                "code"
            }
            _ => {
                for _ in 0..1 + rng.below(32) {
                    let i = rng.below(len);
                    bytes[i] = rng.next() as u8;
                }
                "anywhere"
            }
        };
        let case_name = format!("case {case} ({what}, {} bytes)", bytes.len());
        let header_changed = ELF_HEADER.chain(shdrs.clone()).any(|i| bytes.get(i) != original.bytes.get(i));
        let by_site = case % 8 == 0;
        match census_elf(&bytes, "mutant", Options { by_site, sha256: false }) {
            Ok(c) => {
                seen.ok += 1;
                assert_eq!(header_verdict(&bytes), None, "{case_name}: accepted a header the census must refuse");
                assert!(bytes.len() >= shdrs.end, "{case_name}: accepted with its section headers cut off");
                holds_together(&c, bytes.len(), by_site, &case_name);
                let o = &original.census;
                if !header_changed {
                    assert_eq!(c.code_sections, o.code_sections, "{case_name}");
                    assert_eq!(c.decoded.code_bytes, o.decoded.code_bytes, "{case_name}");
                }
                if what == "code" {
                    assert_eq!(c.decoded.ranges, o.decoded.ranges, "{case_name}: restarts come from symbols");
                    assert_eq!(c.decoded.data_bytes, o.decoded.data_bytes, "{case_name}");
                    assert_eq!(c.kinds(), o.kinds(), "{case_name}");
                }
            }
            Err(e) => {
                seen.refused += 1;
                let line = e.to_string();
                assert!(line.starts_with("mutant: ") && !line.contains('\n'), "{case_name}: {line}");
                assert_ne!(what, "code", "{case_name}: damaged code is still code, yet refused: {line}");
                match header_verdict(&bytes) {
                    Some(expected) => {
                        seen.header_refusals += 1;
                        assert_eq!(kind(&e), expected, "{case_name}: {line}");
                    }
                    None if bytes.len() < shdrs.end => {
                        assert_eq!(kind(&e), "malformed", "{case_name}: {line}");
                        let cut = format!("truncated or malformed ELF ({} bytes)", bytes.len());
                        assert!(line.contains(&cut), "{case_name}: {line}");
                    }
                    None => {}
                }
            }
        }
    }
    assert!(seen.ok > 0 && seen.refused > 0, "the mutations should hit both outcomes: {seen:?}");
    assert!(seen.header_refusals > 0, "some header damage should be refused by the header alone: {seen:?}");
    seen
}

/// Damage whose error is known exactly, on either file.
fn known_damage(original: &Original) {
    let b = &original.bytes;
    let with = |at: usize, new: &[u8]| {
        let mut m = b.clone();
        m[at..at + new.len()].copy_from_slice(new);
        m
    };
    let shnum_past_end = ((b.len() - original.section_headers.start) / 64 + 1) as u16;
    let cases: [(&str, Vec<u8>, &str); 8] = [
        ("header cut at 40 bytes", b[..40].to_vec(), "mutant: truncated or malformed ELF (40 bytes): "),
        ("magic", with(1, b"X"), "mutant: not an ELF file (starts with 7f 58 4c 46, not 7f 45 4c 46)"),
        ("32-bit class", with(EI_CLASS, &[1]), "mutant: 32-bit ELF (ELFCLASS32)"),
        ("big-endian", with(EI_DATA, &[2]), "mutant: big-endian ELF"),
        ("e_machine AArch64", with(E_MACHINE.start, &183u16.to_le_bytes()), "mutant: ELF for AArch64 (e_machine 183)"),
        ("e_machine i386", with(E_MACHINE.start, &3u16.to_le_bytes()), "mutant: ELF for i386 (e_machine 3)"),
        (
            "section headers past the end",
            with(0x3c, &shnum_past_end.to_le_bytes()),
            "mutant: truncated or malformed ELF",
        ),
        ("last byte cut", b[..b.len() - 1].to_vec(), "mutant: truncated or malformed ELF"),
    ];
    for (what, bytes, expected) in cases {
        let e = census_elf(&bytes, "mutant", Options::default()).err().unwrap_or_else(|| panic!("{what}: accepted"));
        assert!(e.to_string().starts_with(expected), "{what}: {e}");
    }
}

#[test]
fn damaged_synthetic_kernel_gives_a_consistent_census_or_the_right_refusal() {
    let original = Original::new(kernel_like(true).write());
    mutate_and_census(&original, 0x5eed_0001, 250);
    known_damage(&original);
}

#[test]
fn damaged_real_binary_gives_a_consistent_census_or_the_right_refusal() {
    // A real ELF from this system (a few tens of kB of real code, linked by a real toolchain).
    let real = ["/bin/true", "/usr/bin/true"]
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .find(|b| census_elf(b, "real", Options::default()).is_ok());
    let Some(real) = real else {
        return require::missing("no x86-64 ELF at /bin/true or /usr/bin/true: apt-get install coreutils");
    };
    let original = Original::new(real);
    mutate_and_census(&original, 0x5eed_0002, 250);
    known_damage(&original);
}
