//! The symbols the census needs, read the way `objdump -d` reads them.
//!
//! A symbol marks where a linear decode must restart: code and data are interleaved in text (jump
//! tables, padding, hand-written data), and a decode that runs through them can swallow the first
//! bytes of the next function. Like binutils' `objdump`, the census uses the static symbol table
//! (`.symtab`) or, when the file is stripped, the dynamic one, keeping every named, defined symbol
//! that is not a section or file symbol, and treats a range that starts at an `STT_OBJECT` symbol
//! (and at no `STT_FUNC`) as data, not code.

use std::collections::HashMap;

use object::elf;
use object::read::elf::{Sym, SymbolTable};
use object::{Endianness, SectionIndex};

use super::elf::Elf;

/// The ELF symbol type, as far as decoding cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SymType {
    /// `STT_FUNC` (or `STT_GNU_IFUNC`): code.
    Func,
    /// `STT_OBJECT` / `STT_TLS`: data, even inside an executable section.
    Object,
    /// `STT_NOTYPE` and anything else: a label, code unless told otherwise.
    Other,
}

/// One symbol of a code section.
#[derive(Clone, Copy, Debug)]
pub struct SymAt<'data> {
    /// The symbol's value: its address (a section offset in a relocatable object).
    pub addr: u64,
    /// The symbol's name, borrowed from the string table.
    pub name: &'data [u8],
    /// Code, data or label: whether a range starting here is decoded.
    pub ty: SymType,
}

/// Which table the symbols came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SymbolSource {
    /// `.symtab`.
    Static,
    /// `.dynsym` only (a stripped shared object or executable).
    Dynamic,
    /// None at all: each section is decoded linearly from its start.
    Stripped,
}

impl SymbolSource {
    /// For messages: `.symtab`, `.dynsym only` or `none (stripped)`.
    pub const fn describe(self) -> &'static str {
        match self {
            SymbolSource::Static => ".symtab",
            SymbolSource::Dynamic => ".dynsym only",
            SymbolSource::Stripped => "none (stripped)",
        }
    }
}

/// One named, defined symbol of any section.
#[derive(Clone, Copy, Debug)]
pub struct Defined<'data> {
    /// The section the symbol is defined in (`st_shndx`, extended indices resolved).
    pub section: SectionIndex,
    /// The symbol's value: its address (a section offset in a relocatable object).
    pub addr: u64,
    /// The symbol's name, borrowed from the string table; never empty.
    pub name: &'data [u8],
    /// Code, data or label.
    pub ty: SymType,
}

/// The symbols of the code sections, sorted by address, and named lookups over all symbols. Every
/// name is looked up in the string table once, here.
pub struct Symbols<'data> {
    /// The table read: `.symtab` when it has symbols, else `.dynsym`, else none.
    pub source: SymbolSource,
    /// Every named, defined, non-section, non-file symbol, in table order.
    pub all: Vec<Defined<'data>>,
    per_section: HashMap<SectionIndex, Vec<SymAt<'data>>>,
}

impl<'data> Symbols<'data> {
    /// Reads the symbols of `elf`.
    pub fn load(elf: &'data Elf<'data>) -> Symbols<'data> {
        let endian = elf.file.endian();
        let (source, table) = if !elf.file.elf_symbol_table().is_empty() {
            (SymbolSource::Static, Some(elf.file.elf_symbol_table()))
        } else if !elf.file.elf_dynamic_symbol_table().is_empty() {
            (SymbolSource::Dynamic, Some(elf.file.elf_dynamic_symbol_table()))
        } else {
            (SymbolSource::Stripped, None)
        };
        let all: Vec<Defined<'data>> = table.map_or_else(Vec::new, |t| defined(t, endian).collect());
        let mut per_section: HashMap<SectionIndex, Vec<SymAt<'data>>> =
            elf.code.iter().map(|c| (c.index, Vec::new())).collect();
        for d in &all {
            if let Some(list) = per_section.get_mut(&d.section) {
                list.push(SymAt { addr: d.addr, name: d.name, ty: d.ty });
            }
        }
        for list in per_section.values_mut() {
            // At one address, a function sorts first, then an object (objdump's preference).
            list.sort_unstable_by(|a, b| a.addr.cmp(&b.addr).then(a.ty.cmp(&b.ty)).then(a.name.cmp(b.name)));
        }
        Symbols { source, all, per_section }
    }

    /// The symbols of code section `index`, sorted by address (empty for an unknown section).
    pub fn in_section(&self, index: SectionIndex) -> &[SymAt<'data>] {
        self.per_section.get(&index).map_or(&[], Vec::as_slice)
    }

    /// The symbol at or before `addr` in code section `index`, and `addr`'s offset from it.
    pub fn containing(&self, index: SectionIndex, addr: u64) -> Option<(&SymAt<'data>, u64)> {
        let list = self.in_section(index);
        let i = list.partition_point(|s| s.addr <= addr).checked_sub(1)?;
        // Among several symbols at that address, the first (a function if there is one).
        let first = list[..=i].partition_point(|s| s.addr < list[i].addr);
        Some((&list[first], addr - list[first].addr))
    }

    /// Every defined symbol whose name satisfies `keep`.
    pub fn matching(&self, keep: impl Fn(&[u8]) -> bool) -> impl Iterator<Item = &Defined<'data>> {
        self.all.iter().filter(move |d| keep(d.name))
    }
}

/// Every named, defined, non-section, non-file symbol of `table`.
fn defined<'data>(
    table: &'data SymbolTable<'data, elf::FileHeader64<Endianness>>,
    endian: Endianness,
) -> impl Iterator<Item = Defined<'data>> + 'data {
    table.enumerate().filter_map(move |(index, sym)| {
        if sym.st_name(endian) == 0 || matches!(sym.st_type(), elf::STT_SECTION | elf::STT_FILE) {
            return None;
        }
        let section = table.symbol_section(endian, sym, index).ok().flatten()?;
        let name = table.symbol_name(endian, sym).ok().filter(|n| !n.is_empty())?;
        let ty = match sym.st_type() {
            elf::STT_FUNC | elf::STT_GNU_IFUNC => SymType::Func,
            elf::STT_OBJECT | elf::STT_TLS => SymType::Object,
            _ => SymType::Other,
        };
        Some(Defined { section, addr: sym.st_value(endian), name, ty })
    })
}
