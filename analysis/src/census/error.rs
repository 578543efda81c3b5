//! Why a file cannot be censused. Each variant renders as one line that names the file, so the CLI
//! prints it as is.

use thiserror::Error;

/// A file the census refuses, with the reason.
#[derive(Debug, Error)]
pub enum CensusError {
    /// The path cannot be opened, mapped or read for hashing (missing, no permission, an I/O error).
    #[error("{path}: cannot open: {error}")]
    Open {
        /// The path as given, control characters escaped ([`one_line`]).
        path: String,
        /// The operating system's error.
        error: std::io::Error,
    },
    /// The path names a directory.
    #[error("{path}: is a directory, not an ELF file")]
    Directory {
        /// The path as given, control characters escaped ([`one_line`]).
        path: String,
    },
    /// The path names neither a regular file nor a directory (a device, a FIFO, a socket).
    #[error("{path}: not a regular file")]
    NotRegularFile {
        /// The path as given, control characters escaped ([`one_line`]).
        path: String,
    },
    /// The file is 0 bytes long (and an empty file cannot be mapped).
    #[error("{path}: empty file (0 bytes), not an ELF file")]
    Empty {
        /// The path as given, control characters escaped ([`one_line`]).
        path: String,
    },
    /// The first four bytes are not the ELF magic `7f 45 4c 46`; the line shows the bytes found.
    #[error("{path}: not an ELF file (starts with {start}, not 7f 45 4c 46)")]
    NotElf {
        /// The path as given, control characters escaped ([`one_line`]).
        path: String,
        /// The file's first bytes (up to four), hex, separated by spaces.
        start: String,
    },
    /// A 32-bit ELF file (`EI_CLASS` is `ELFCLASS32`): the census reads ELF64 only.
    #[error("{path}: 32-bit ELF (ELFCLASS32); the census reads x86-64 ELF64 files only")]
    Elf32 {
        /// The path as given, control characters escaped ([`one_line`]).
        path: String,
    },
    /// `EI_CLASS` is neither `ELFCLASS32` nor `ELFCLASS64`: a damaged identification.
    #[error("{path}: ELF class {class} is neither 32- nor 64-bit")]
    BadClass {
        /// The path as given, control characters escaped ([`one_line`]).
        path: String,
        /// The `EI_CLASS` byte found.
        class: u8,
    },
    /// A big-endian ELF file (`EI_DATA` is `ELFDATA2MSB`): no x86-64 file is.
    #[error("{path}: big-endian ELF; the census reads little-endian x86-64 files only")]
    BigEndian {
        /// The path as given, control characters escaped ([`one_line`]).
        path: String,
    },
    /// An ELF64 file for another architecture (`e_machine` is not `EM_X86_64`): the census decodes
    /// x86-64 only.
    #[error("{path}: ELF for {machine} (e_machine {e_machine}), not x86-64; the census decodes x86-64 only")]
    NotX86_64 {
        /// The path as given, control characters escaped ([`one_line`]).
        path: String,
        /// A short name for `e_machine` (`AArch64`, `RISC-V`, ...; `another machine` for the rest).
        machine: &'static str,
        /// The `e_machine` value found.
        e_machine: u16,
    },
    /// The identification is right but the file is cut short or inconsistent: a header, the section
    /// table or a section's contents lies outside the file (usually a truncated copy).
    #[error("{path}: truncated or malformed ELF ({len} bytes): {detail}")]
    Malformed {
        /// The path as given, control characters escaped ([`one_line`]).
        path: String,
        /// The file's size in bytes.
        len: usize,
        /// What is wrong, as `object` reports it (prefixed by the section when one is at fault).
        detail: String,
    },
    /// No executable section has contents (no `SHF_EXECINSTR` section that is not `SHT_NOBITS`):
    /// nothing to decode, as in a data-only object or a separate debug-info file.
    #[error("{path}: no executable sections (no SHF_EXECINSTR section with contents), nothing to decode")]
    NoCode {
        /// The path as given, control characters escaped ([`one_line`]).
        path: String,
    },
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
