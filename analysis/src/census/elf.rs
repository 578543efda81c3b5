//! Opening and validating an x86-64 ELF file, zero-copy.
//!
//! The file is memory-mapped ([`ElfImage`]) and every later step borrows from that mapping: sections,
//! symbols and tables are slices of it, never copies, so memory use stays bounded by what the kernel
//! pages in (a 600 MB debug vmlinux costs its text and symbol pages, not 600 MB of heap).
//! [`Elf::parse`] checks the identification bytes itself before handing the slice to `object`, so
//! each kind of wrong file gets its own one-line [`CensusError`].

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use memmap2::Mmap;
use object::elf;
use object::read::elf::{ElfFile64, FileHeader, SectionHeader};
use object::{Endianness, Object, ObjectKind, ObjectSection, SectionIndex};
use sha2::{Digest, Sha256};

use super::error::{one_line, CensusError};

/// Offsets in `e_ident`: the class byte (32/64-bit) and the data byte (endianness).
const EI_CLASS: usize = 4;
const EI_DATA: usize = 5;

/// A file mapped read-only into memory.
pub struct ElfImage {
    path: String,
    file: File,
    map: Mmap,
}

impl ElfImage {
    /// Maps the file at `path`. Refuses a missing path, a directory, a non-regular file and an empty
    /// file (which cannot be mapped).
    pub fn open(path: &Path) -> Result<ElfImage, CensusError> {
        let shown = one_line(&path.display().to_string());
        let meta = std::fs::metadata(path).map_err(|error| CensusError::Open { path: shown.clone(), error })?;
        if meta.is_dir() {
            return Err(CensusError::Directory { path: shown });
        }
        if !meta.is_file() {
            return Err(CensusError::NotRegularFile { path: shown });
        }
        if meta.len() == 0 {
            return Err(CensusError::Empty { path: shown });
        }
        let file = File::open(path).map_err(|error| CensusError::Open { path: shown.clone(), error })?;
        // SAFETY: the mapping is read-only and private to this process; the census only reads it. The
        // one hazard of any file mapping, another process truncating or rewriting the file while we
        // read, is the same as for `objdump` and is documented rather than prevented.
        let map = unsafe { Mmap::map(&file) }.map_err(|error| CensusError::Open { path: shown.clone(), error })?;
        Ok(ElfImage { path: shown, file, map })
    }

    /// The path as given, for messages and CSV rows.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// SHA-256 of the whole file, lower-case hex. Read through a 1 MiB buffer rather than the
    /// mapping, so hashing a 600 MB vmlinux does not leave all of it resident in this process.
    pub fn sha256_hex(&self) -> Result<String, CensusError> {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut offset = 0u64;
        loop {
            let n = self
                .file
                .read_at(&mut buf, offset)
                .map_err(|error| CensusError::Open { path: self.path.clone(), error })?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            offset += n as u64;
        }
        Ok(hex(&hasher.finalize()))
    }
}

/// The GNU build-id of the ELF file in `bytes` when it is a parsable x86-64 ELF64 file that has
/// one; reads only the headers and the note, so it costs nothing next to the census.
pub fn build_id(bytes: &[u8]) -> Option<&[u8]> {
    Elf::parse(bytes, "").ok()?.build_id()
}

/// SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// An executable section with file contents: what gets decoded.
#[derive(Clone, Copy, Debug)]
pub struct CodeSection<'data> {
    /// The section's index in the section header table (what symbols and relocations refer to).
    pub index: SectionIndex,
    /// The section's name, `?` when it cannot be read.
    pub name: &'data str,
    /// Address of the first byte (the section offset base, 0, in a relocatable object).
    pub address: u64,
    /// The section's contents, borrowed from the file.
    pub data: &'data [u8],
}

/// A parsed, validated x86-64 ELF64 file borrowing the bytes it was parsed from.
pub struct Elf<'data> {
    /// `object`'s view of the file: section headers, symbol tables and relocations.
    pub file: ElfFile64<'data, Endianness>,
    /// A relocatable object (`.o`, `ET_REL`): every section starts at address 0, so addresses are
    /// only meaningful within one section.
    pub relocatable: bool,
    /// Executable sections with contents, in section-header order.
    pub code: Vec<CodeSection<'data>>,
    /// Allocated sections with contents, sorted by address: where [`Elf::read`] looks.
    loaded: Vec<(u64, &'data [u8])>,
}

impl<'data> Elf<'data> {
    /// Validates and parses `data` (named `path` in errors).
    pub fn parse(data: &'data [u8], path: &str) -> Result<Elf<'data>, CensusError> {
        let path = one_line(path);
        if data.is_empty() {
            return Err(CensusError::Empty { path });
        }
        if data.len() < 4 || data[..4] != elf::ELFMAG {
            let start = data.iter().take(4).map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ");
            return Err(CensusError::NotElf { path, start });
        }
        let malformed = |detail: String| CensusError::Malformed { path: path.clone(), len: data.len(), detail };
        if data.len() <= EI_DATA {
            return Err(malformed("ends inside the ELF identification bytes".into()));
        }
        match data[EI_CLASS] {
            elf::ELFCLASS64 => {}
            elf::ELFCLASS32 => return Err(CensusError::Elf32 { path }),
            class => return Err(CensusError::BadClass { path, class }),
        }
        if data[EI_DATA] == elf::ELFDATA2MSB {
            return Err(CensusError::BigEndian { path });
        }
        let header = elf::FileHeader64::<Endianness>::parse(data).map_err(|e| malformed(e.to_string()))?;
        let endian = header.endian().map_err(|e| malformed(e.to_string()))?;
        let e_machine = header.e_machine(endian);
        if e_machine != elf::EM_X86_64 {
            return Err(CensusError::NotX86_64 { path, machine: machine_name(e_machine), e_machine });
        }
        let file = ElfFile64::<Endianness>::parse(data).map_err(|e| malformed(e.to_string()))?;
        let relocatable = file.kind() == ObjectKind::Relocatable;
        let mut code = Vec::new();
        let mut loaded = Vec::new();
        for section in file.sections() {
            let sh = section.elf_section_header();
            if sh.sh_type(endian) == elf::SHT_NOBITS || sh.sh_type(endian) == elf::SHT_NULL {
                continue;
            }
            let flags = sh.sh_flags(endian);
            let is_code = flags & u64::from(elf::SHF_EXECINSTR) != 0;
            let is_alloc = flags & u64::from(elf::SHF_ALLOC) != 0;
            if !is_code && !is_alloc {
                continue;
            }
            let name = section.name().unwrap_or("?");
            let bytes = section.data().map_err(|e| malformed(format!("section {}: {e}", one_line(name))))?;
            if is_code && !bytes.is_empty() {
                code.push(CodeSection { index: section.index(), name, address: section.address(), data: bytes });
            }
            if is_alloc && !relocatable && !bytes.is_empty() {
                loaded.push((section.address(), bytes));
            }
        }
        if code.is_empty() {
            return Err(CensusError::NoCode { path });
        }
        dedupe_code(&mut code);
        loaded.sort_by_key(|&(addr, _)| addr);
        Ok(Elf { file, relocatable, code, loaded })
    }

    /// The GNU build-id (the `NT_GNU_BUILD_ID` note the linker writes, what perf and debuginfod
    /// identify a binary by), when the file has a well-formed one.
    pub fn build_id(&self) -> Option<&'data [u8]> {
        self.file.build_id().ok().flatten().filter(|id| !id.is_empty())
    }

    /// The `len` bytes at virtual address `addr` of a linked image, when one allocated section holds
    /// all of them in the file (never for a relocatable object, whose sections all start at 0).
    pub fn read(&self, addr: u64, len: usize) -> Option<&'data [u8]> {
        let i = self.loaded.partition_point(|&(start, _)| start <= addr).checked_sub(1)?;
        let (start, bytes) = self.loaded[i];
        let off = usize::try_from(addr - start).ok()?;
        bytes.get(off..off.checked_add(len)?)
    }

    /// The bytes from `addr` to the end of the section holding it.
    pub fn read_to_section_end(&self, addr: u64) -> Option<&'data [u8]> {
        let i = self.loaded.partition_point(|&(start, _)| start <= addr).checked_sub(1)?;
        let (start, bytes) = self.loaded[i];
        bytes.get(usize::try_from(addr - start).ok()?..)
    }
}

/// Keeps each file byte of code in one section only: a header that repeats (or lies inside) another
/// one's bytes at the same address is dropped, so a file with thousands of copies of its `.text`
/// header costs what one copy costs (decoding, tallies and memory bounded by the file, not by the
/// header count). Sections that only partly overlap are kept: real files do not have them, and each
/// is decoded whole from its own start.
fn dedupe_code(code: &mut Vec<CodeSection<'_>>) {
    let start = |c: &CodeSection<'_>| c.data.as_ptr() as usize;
    code.sort_by_key(|c| (start(c), std::cmp::Reverse(c.data.len()), c.index.0));
    let mut kept: Vec<CodeSection<'_>> = Vec::with_capacity(code.len());
    for c in code.drain(..) {
        let inside = kept.last().is_some_and(|k| {
            let (ks, cs) = (start(k), start(&c));
            cs + c.data.len() <= ks + k.data.len() && c.address.wrapping_sub(k.address) == (cs - ks) as u64
        });
        if !inside {
            kept.push(c);
        }
    }
    kept.sort_by_key(|c| c.index.0);
    *code = kept;
}

/// A short name for the common `e_machine` values, for the error line.
fn machine_name(e_machine: u16) -> &'static str {
    match e_machine {
        elf::EM_386 => "i386",
        elf::EM_ARM => "ARM",
        elf::EM_AARCH64 => "AArch64",
        elf::EM_RISCV => "RISC-V",
        elf::EM_PPC64 => "PowerPC64",
        elf::EM_S390 => "s390",
        elf::EM_MIPS => "MIPS",
        elf::EM_LOONGARCH => "LoongArch",
        elf::EM_BPF => "BPF",
        elf::EM_NONE => "no machine",
        _ => "another machine",
    }
}
