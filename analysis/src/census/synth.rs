//! Small synthetic ELF files written with `object`'s ELF writer, with code and data at chosen
//! addresses: the fixtures of the census tests, the CLI tests, the bench and the fuzz seed. A
//! [`Synth`] describes a linked image (`ET_EXEC`: sections at final addresses, symbols holding
//! addresses), which is what a vmlinux is; relocatable objects are written with
//! `object::write::Object` by the tests that need one.

use object::elf;
use object::write::elf::{FileHeader, SectionHeader, Sym, Writer};
use object::Endianness;

/// A section of a [`Synth`] image.
#[derive(Clone, Debug)]
pub struct SynthSection {
    /// The section's name (`.text`, `.data`, ...).
    pub name: String,
    /// Virtual address of the first byte (`sh_addr`).
    pub addr: u64,
    /// The contents, placed 64-byte aligned in the file.
    pub bytes: Vec<u8>,
    /// `SHF_EXECINSTR` (code) or writable data.
    pub exec: bool,
}

/// A symbol of a [`Synth`] image, defined in section `section` (an index into [`Synth::sections`]).
#[derive(Clone, Debug)]
pub struct SynthSymbol {
    /// The symbol's name.
    pub name: String,
    /// Index into [`Synth::sections`] of the defining section.
    pub section: usize,
    /// The symbol's value: an address inside its section.
    pub addr: u64,
    /// `STT_FUNC`, `STT_OBJECT`, `STT_NOTYPE`, ...
    pub st_type: u8,
}

/// A linked x86-64 ELF image to write.
#[derive(Clone, Debug)]
pub struct Synth {
    /// The sections, in section-header order (after the null section).
    pub sections: Vec<SynthSection>,
    /// The symbols, all `STB_GLOBAL`; written only when `symtab` is set.
    pub symbols: Vec<SynthSymbol>,
    /// Write a `.symtab` (false: a stripped file).
    pub symtab: bool,
    /// The header's `e_machine` (`EM_X86_64` by default; anything else is refused by the census).
    pub e_machine: u16,
    /// ELFCLASS64 (false: ELFCLASS32).
    pub is_64: bool,
}

impl Default for Synth {
    fn default() -> Synth {
        Synth { sections: Vec::new(), symbols: Vec::new(), symtab: true, e_machine: elf::EM_X86_64, is_64: true }
    }
}

impl Synth {
    /// Adds a section; returns its index for [`Synth::symbol`].
    pub fn section(&mut self, name: &str, addr: u64, bytes: Vec<u8>, exec: bool) -> usize {
        self.sections.push(SynthSection { name: name.to_string(), addr, bytes, exec });
        self.sections.len() - 1
    }

    /// Adds a symbol at `addr` in `section`.
    pub fn symbol(&mut self, name: &str, section: usize, addr: u64, st_type: u8) {
        self.symbols.push(SynthSymbol { name: name.to_string(), section, addr, st_type });
    }

    /// The file's bytes.
    pub fn write(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut w = Writer::new(Endianness::Little, self.is_64, &mut buf);
        w.reserve_file_header();
        let names: Vec<_> = self.sections.iter().map(|s| w.add_section_name(s.name.as_bytes())).collect();
        w.reserve_null_section_index();
        let indices: Vec<_> = self.sections.iter().map(|_| w.reserve_section_index()).collect();
        let offsets: Vec<usize> = self.sections.iter().map(|s| w.reserve(s.bytes.len(), 64)).collect();
        let symtab = self.symtab && !self.symbols.is_empty();
        let mut sym_names = Vec::new();
        if symtab {
            sym_names = self.symbols.iter().map(|s| w.add_string(s.name.as_bytes())).collect();
            w.reserve_null_symbol_index();
            for s in &self.symbols {
                w.reserve_symbol_index(Some(indices[s.section]));
            }
            w.reserve_symtab();
            w.reserve_symtab_section_index();
            w.reserve_strtab();
            w.reserve_strtab_section_index();
        }
        w.reserve_shstrtab_section_index();
        w.reserve_shstrtab();
        w.reserve_section_headers();

        let header = FileHeader {
            os_abi: elf::ELFOSABI_NONE,
            abi_version: 0,
            e_type: elf::ET_EXEC,
            e_machine: self.e_machine,
            e_entry: self.sections.first().map_or(0, |s| s.addr),
            e_flags: 0,
        };
        w.write_file_header(&header).expect("a synthetic ELF header is always writable");
        for s in &self.sections {
            w.write_align(64);
            w.write(&s.bytes);
        }
        if symtab {
            w.write_null_symbol();
            for (s, &name) in self.symbols.iter().zip(&sym_names) {
                w.write_symbol(&Sym {
                    name: Some(name),
                    section: Some(indices[s.section]),
                    st_info: (elf::STB_GLOBAL << 4) | s.st_type,
                    st_other: elf::STV_DEFAULT,
                    st_shndx: 0,
                    st_value: s.addr,
                    st_size: 0,
                });
            }
            w.write_strtab();
        }
        w.write_shstrtab();
        w.write_null_section_header();
        for ((s, &name), &offset) in self.sections.iter().zip(&names).zip(&offsets) {
            let flags = if s.exec { elf::SHF_ALLOC | elf::SHF_EXECINSTR } else { elf::SHF_ALLOC | elf::SHF_WRITE };
            w.write_section_header(&SectionHeader {
                name: Some(name),
                sh_type: elf::SHT_PROGBITS,
                sh_flags: u64::from(flags),
                sh_addr: s.addr,
                sh_offset: offset as u64,
                sh_size: s.bytes.len() as u64,
                sh_link: 0,
                sh_info: 0,
                sh_addralign: 64,
                sh_entsize: 0,
            });
        }
        if symtab {
            w.write_symtab_section_header(1);
            w.write_strtab_section_header();
        }
        w.write_shstrtab_section_header();
        buf
    }
}

/// `call rel32` (5 bytes) at `at` to `target`.
pub fn call(at: u64, target: u64) -> [u8; 5] {
    rel32_insn(0xe8, at, target)
}

/// `jmp rel32` (5 bytes) at `at` to `target`.
pub fn jmp(at: u64, target: u64) -> [u8; 5] {
    rel32_insn(0xe9, at, target)
}

fn rel32_insn(opcode: u8, at: u64, target: u64) -> [u8; 5] {
    let rel = (target.wrapping_sub(at + 5) as i64) as i32;
    let r = rel.to_le_bytes();
    [opcode, r[0], r[1], r[2], r[3]]
}

/// The `s32` that a field at `field` holds to point at `target` (kernel-style relative reference).
pub fn rel_s32(field: u64, target: u64) -> [u8; 4] {
    ((target.wrapping_sub(field) as i64) as i32).to_le_bytes()
}
