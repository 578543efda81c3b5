//! Each kind of bad input gives its own error, whose one-line message names the file and the reason.

mod fixture;

use std::path::PathBuf;

use callpatch_analysis::census::synth::Synth;
use callpatch_analysis::census::{census_bytes, census_file, CensusError, Options};
use fixture::kernel_like;

fn err(bytes: &[u8]) -> CensusError {
    match census_bytes(bytes, "f", Options::default()) {
        Ok(_) => panic!("census of a bad input succeeded"),
        Err(e) => e,
    }
}

/// A path `name` in a fresh temporary directory, removed when the returned guard drops.
fn scratch(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new().prefix("callpatch-census-bad-").tempdir().unwrap();
    let path = dir.path().join(name);
    (dir, path)
}

#[test]
fn empty_file() {
    let e = err(b"");
    assert!(matches!(e, CensusError::Empty { .. }));
    assert_eq!(e.to_string(), "f: empty file (0 bytes), not an ELF file");
    let (_dir, path) = scratch("empty");
    std::fs::write(&path, b"").unwrap();
    let e = census_file(&path, Options::default()).unwrap_err();
    assert_eq!(e.to_string(), format!("{}: empty file (0 bytes), not an ELF file", path.display()));
}

#[test]
fn not_an_elf() {
    assert_eq!(err(b"hello world").to_string(), "f: not an ELF file (starts with 68 65 6c 6c, not 7f 45 4c 46)");
    assert_eq!(err(b"#!").to_string(), "f: not an ELF file (starts with 23 21, not 7f 45 4c 46)");
}

#[test]
fn truncated_elf() {
    let full = kernel_like(true).write();
    let e = err(&full[..5]);
    assert_eq!(e.to_string(), "f: truncated or malformed ELF (5 bytes): ends inside the ELF identification bytes");
    for len in [6, 40, 63, full.len() / 2, full.len() - 1] {
        let e = err(&full[..len]);
        assert!(matches!(e, CensusError::Malformed { .. }), "{len}: {e}");
        assert!(e.to_string().starts_with(&format!("f: truncated or malformed ELF ({len} bytes): ")), "{e}");
    }
}

#[test]
fn elf32_and_other_machines() {
    let e = err(&Synth { is_64: false, ..kernel_like(true) }.write());
    assert_eq!(e.to_string(), "f: 32-bit ELF (ELFCLASS32); the census reads x86-64 ELF64 files only");
    let e = err(&Synth { e_machine: object::elf::EM_AARCH64, ..kernel_like(true) }.write());
    assert_eq!(e.to_string(), "f: ELF for AArch64 (e_machine 183), not x86-64; the census decodes x86-64 only");
    let mut big = kernel_like(true).write();
    big[5] = 2; // ELFDATA2MSB
    assert_eq!(err(&big).to_string(), "f: big-endian ELF; the census reads little-endian x86-64 files only");
}

#[test]
fn no_executable_sections() {
    let mut s = kernel_like(true);
    s.symbols.clear();
    for section in &mut s.sections {
        section.exec = false;
    }
    let e = err(&s.write());
    assert_eq!(e.to_string(), "f: no executable sections (no SHF_EXECINSTR section with contents), nothing to decode");
}

#[test]
fn directory_and_missing_path() {
    let dir = std::env::temp_dir();
    let e = census_file(&dir, Options::default()).unwrap_err();
    assert_eq!(e.to_string(), format!("{}: is a directory, not an ELF file", dir.display()));
    let (_dir, missing) = scratch("does-not-exist");
    let e = census_file(&missing, Options::default()).unwrap_err();
    assert_eq!(e.to_string(), format!("{}: cannot open: No such file or directory (os error 2)", missing.display()));
    let e = census_file(std::path::Path::new("/dev/null"), Options::default()).unwrap_err();
    assert_eq!(e.to_string(), "/dev/null: not a regular file");
}

#[test]
fn stripped_kernel_is_a_note_not_an_error() {
    let mut s = kernel_like(false);
    s.section("__ksymtab", 0xffff_ffff_8300_0000, vec![0; 16], false);
    let c = census_bytes(&s.write(), "vmlinux", Options::default()).unwrap();
    assert_eq!(c.kernel.notes.len(), 1);
    assert!(
        c.kernel.notes[0].starts_with("kernel tables: not read: this looks like a Linux kernel"),
        "{:?}",
        c.kernel.notes
    );
    assert!(c.kernel.notes[0].contains("stripped"));
}

#[test]
fn names_from_the_file_cannot_break_the_line() {
    // Found by cargo-fuzz: a section name with a newline in the "truncated or malformed" message.
    let mut s = Synth::default();
    s.section("bad\nname", 0x40_1000, vec![0xc3; 16], true);
    let mut bytes = s.write();
    let shoff = u64::from_le_bytes(bytes[0x28..0x30].try_into().unwrap()) as usize;
    let sh_size = shoff + 64 + 0x20; // section 1's sh_size
    bytes[sh_size..sh_size + 8].copy_from_slice(&0xffff_ffffu64.to_le_bytes());
    let e = err(&bytes);
    assert!(matches!(e, CensusError::Malformed { .. }), "{e}");
    assert!(e.to_string().contains("section bad\\nname: "), "{e}");
    assert!(!e.to_string().contains('\n'));
}
