//! Why a file cannot be censused. Each variant renders as one line that names the file, so the CLI
//! prints it as is.

use thiserror::Error;

/// A file the census refuses, with the reason.
#[derive(Debug, Error)]
pub enum CensusError {
    #[error("{path}: cannot open: {error}")]
    Open { path: String, error: std::io::Error },
    #[error("{path}: is a directory, not an ELF file")]
    Directory { path: String },
    #[error("{path}: not a regular file")]
    NotRegularFile { path: String },
    #[error("{path}: empty file (0 bytes), not an ELF file")]
    Empty { path: String },
    #[error("{path}: not an ELF file (starts with {start}, not 7f 45 4c 46)")]
    NotElf { path: String, start: String },
    #[error("{path}: 32-bit ELF (ELFCLASS32); the census reads x86-64 ELF64 files only")]
    Elf32 { path: String },
    #[error("{path}: ELF class {class} is neither 32- nor 64-bit")]
    BadClass { path: String, class: u8 },
    #[error("{path}: big-endian ELF; the census reads little-endian x86-64 files only")]
    BigEndian { path: String },
    #[error("{path}: ELF for {machine} (e_machine {e_machine}), not x86-64; the census decodes x86-64 only")]
    NotX86_64 { path: String, machine: &'static str, e_machine: u16 },
    #[error("{path}: truncated or malformed ELF ({len} bytes): {detail}")]
    Malformed { path: String, len: usize, detail: String },
    #[error("{path}: no executable sections (no SHF_EXECINSTR section with contents), nothing to decode")]
    NoCode { path: String },
}

/// `text` with control characters (a newline in a section name or a path) written as escapes, so
/// that an error built from file contents stays one line.
pub fn one_line(text: &str) -> String {
    text.chars().flat_map(|c| if c.is_control() { c.escape_default().collect() } else { vec![c] }).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(super::one_line("a\nb\tc d"), "a\\nb\\tc d");
    }
}
