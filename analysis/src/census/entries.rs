//! Function entries: how many functions start with an `endbr64` landing pad, and how many carry a
//! kernel kCFI preamble.
//!
//! Hardware fact: with CET indirect branch tracking, an indirect `call`/`jmp` must land on `endbr64`
//! or the CPU faults; the compiler (`-fcf-protection`) puts one at the entry of every function whose
//! address may be taken. A kernel built with clang CFI also puts a preamble before each such
//! function, named `__cfi_<function>` (a `mov $hash, %eax` the caller's check compares), which the
//! kernel rewrites into a FineIBT preamble at boot on CPUs with IBT.
//!
//! An entry is an `STT_FUNC` address, counted once however many names it has. Its first instruction
//! is decoded as [`super::decode`] decodes a range: from the symbol up to the next symbol, so an
//! `endbr64` cut off by the next symbol is not one (objdump agrees).

use iced_x86::{Code, Decoder, DecoderOptions};

use super::decode::DecodedSite;
use super::elf::Elf;
use super::kinds::SiteKind;
use super::symbols::{SymType, Symbols};

/// The `endbr_entry` and `cfi_preamble` sites of `elf`, in section then address order: one per
/// distinct function address, the site being its first instruction.
pub fn entries(elf: &Elf<'_>, symbols: &Symbols<'_>) -> Vec<DecodedSite> {
    let mut out = Vec::new();
    for section in &elf.code {
        let syms = symbols.in_section(section.index);
        let mut last = None;
        for (i, sym) in syms.iter().enumerate() {
            let cfi = sym.name.starts_with(b"__cfi_");
            if sym.ty != SymType::Func || last == Some(sym.addr) {
                continue;
            }
            let Some(start) = sym.addr.checked_sub(section.address).and_then(|o| usize::try_from(o).ok()) else {
                continue;
            };
            if start >= section.data.len() {
                continue;
            }
            // The range ends at the next symbol at a higher address, as the decode's ranges do.
            let end = syms[i..]
                .iter()
                .find(|s| s.addr > sym.addr)
                .and_then(|s| usize::try_from(s.addr - section.address).ok())
                .map_or(section.data.len(), |e| e.min(section.data.len()));
            let mut decoder = Decoder::with_ip(64, &section.data[start..end], sym.addr, DecoderOptions::NONE);
            let insn = decoder.decode();
            if insn.is_invalid() {
                continue;
            }
            last = Some(sym.addr);
            let site = |kind| DecodedSite {
                addr: sym.addr,
                section: section.index.0 as u32,
                len: insn.len() as u8,
                kind,
                its_end: None,
            };
            if insn.code() == Code::Endbr64 {
                out.push(site(SiteKind::EndbrEntry));
            }
            // Aliases sort by name at one address, so a `__cfi_` name is seen even if not first.
            if cfi || syms[i..].iter().take_while(|s| s.addr == sym.addr).any(|s| s.name.starts_with(b"__cfi_")) {
                out.push(site(SiteKind::CfiPreamble));
            }
        }
    }
    out
}
