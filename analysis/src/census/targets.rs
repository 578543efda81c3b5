//! Where a rel32 branch goes, when that makes it a special kind of site: a retpoline thunk
//! (`__x86_indirect_thunk_<reg>` and the kernel's call/jump/ITS variants, which an indirect branch
//! is compiled into under Spectre v2 mitigations) or the function-tracing entry `__fentry__`
//! (`-mfentry`) / `mcount` (`-pg`).
//!
//! In a linked image the branch target is resolved from the rel32 and matched against the symbols'
//! addresses. In a relocatable object the rel32 is a placeholder, so the relocation at the rel32 field
//! names the target instead. Calls through a PLT (a shared library's `__fentry__`) land on the PLT
//! entry, which has no symbol in `.symtab`; they count as plain calls.

use std::collections::HashMap;

use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget, SectionIndex};

use super::elf::Elf;
use super::symbols::Symbols;

/// A branch target that changes a site's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Special {
    /// A retpoline thunk.
    Thunk,
    /// `__fentry__` or `mcount`.
    Fentry,
}

/// Which special target a symbol name denotes, if any.
pub fn special_name(name: &[u8]) -> Option<Special> {
    const THUNKS: [&[u8]; 4] = [
        b"__x86_indirect_thunk_",
        b"__x86_indirect_call_thunk_",
        b"__x86_indirect_jump_thunk_",
        b"__x86_indirect_its_thunk_",
    ];
    const FENTRY: [&[u8]; 4] = [b"__fentry__", b"mcount", b"_mcount", b"__mcount"];
    if THUNKS.iter().any(|p| name.starts_with(p)) {
        Some(Special::Thunk)
    } else if FENTRY.contains(&name) {
        Some(Special::Fentry)
    } else {
        None
    }
}

/// The special targets of one file: by target address (scoped to the section in a relocatable
/// object, where every section starts at 0) and, in a relocatable object, by relocated rel32 field.
#[derive(Default)]
pub struct Targets {
    relocatable: bool,
    /// (scope, target address) → special; scope is the section in a relocatable object, else 0.
    by_address: HashMap<(SectionIndex, u64), Special>,
    /// (section, offset of the rel32 field) → special, from a relocatable object's relocations.
    by_field: HashMap<(SectionIndex, u64), Special>,
}

impl Targets {
    /// Collects the special targets of `elf`.
    pub fn load(elf: &Elf<'_>, symbols: &Symbols<'_>) -> Targets {
        let mut targets = Targets { relocatable: elf.relocatable, ..Targets::default() };
        for d in symbols.matching(|n| special_name(n).is_some()) {
            if let Some(special) = special_name(d.name) {
                targets.by_address.insert((targets.scope(d.section), d.addr), special);
            }
        }
        if !elf.relocatable {
            return targets;
        }
        for code in &elf.code {
            let Ok(section) = elf.file.section_by_index(code.index) else { continue };
            for (offset, reloc) in section.relocations() {
                let RelocationTarget::Symbol(index) = reloc.target() else { continue };
                let Ok(sym) = elf.file.symbol_by_index(index) else { continue };
                if let Some(special) = sym.name_bytes().ok().and_then(special_name) {
                    targets.by_field.insert((code.index, offset), special);
                }
            }
        }
        targets
    }

    fn scope(&self, section: SectionIndex) -> SectionIndex {
        if self.relocatable {
            section
        } else {
            SectionIndex(0)
        }
    }

    /// The special target of the rel32 branch in `section` whose rel32 field is at section offset
    /// `field` and whose resolved target is `target`.
    pub fn of(&self, section: SectionIndex, field: u64, target: u64) -> Option<Special> {
        self.by_field.get(&(section, field)).or_else(|| self.by_address.get(&(self.scope(section), target))).copied()
    }
}
