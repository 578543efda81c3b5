//! Finding the call sites: a real linear decode of every executable section with iced-x86.
//!
//! Each section is cut into ranges at its symbols ([`chunks`]) and every range is decoded from its
//! first byte, as `objdump -d` does: an instruction that would run past the next symbol is not an
//! instruction (its first byte is skipped and the decode goes on), and a range that starts at a data symbol
//! (`STT_OBJECT`, and no `STT_FUNC` at the same address) is not decoded at all. A raw scan for `e8`
//! bytes would also count every `e8` inside other instructions' immediates and displacements.
//!
//! Ranges are independent, so large binaries are decoded in parallel (rayon); the result keeps
//! address order.

use iced_x86::{Code, Decoder, DecoderError, DecoderOptions, Instruction};
use object::SectionIndex;
use rayon::prelude::*;

use super::elf::{CodeSection, Elf};
use super::kinds::SiteKind;
use super::symbols::{SymType, Symbols};
use super::targets::{Special, Targets};

/// One call site: the instruction at `addr`, `len` bytes long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodedSite {
    /// Address of the instruction's first byte: a virtual address in a linked image, a section
    /// offset in a relocatable object.
    pub addr: u64,
    /// The section that holds the site (what `addr` is relative to in a relocatable object).
    pub section: u32,
    /// Length of the whole instruction in bytes, prefixes included (5 for `call rel32`).
    pub len: u8,
    /// What the instruction is: the `kind` column of `census.csv`.
    pub kind: SiteKind,
    /// For the kinds the ITS rule sorts ([`SiteKind::is_its_branch`]): offset from `addr` of the last
    /// byte of the branch the rule looks at (`len - 1` for a decoded one; see [`super::its`] for the
    /// kernel tables' entries). `None` for other kinds, and for a table entry whose branch is unknown.
    pub its_end: Option<u8>,
}

impl DecodedSite {
    /// Address of the last byte the ITS rule looks at, when the site has one.
    pub fn its_last_byte(&self) -> Option<u64> {
        self.its_end.map(|e| self.addr.wrapping_add(u64::from(e)))
    }
}

/// A range of one code section that is decoded from its first byte: section offsets `[start, end)`.
#[derive(Clone, Copy, Debug)]
pub struct Chunk<'data> {
    /// The code section the range lies in.
    pub section: CodeSection<'data>,
    /// Section offset of the first byte: 0 or the address of the symbol that starts the range.
    pub start: usize,
    /// Section offset one past the last byte: the next symbol's address or the section's end.
    pub end: usize,
}

/// What decoding all code sections found.
#[derive(Clone, Debug, Default)]
pub struct Decoded {
    /// Sites in section order, then address order.
    pub sites: Vec<DecodedSite>,
    /// Instructions decoded (valid ones).
    pub instructions: u64,
    /// Bytes of the code sections.
    pub code_bytes: u64,
    /// Bytes not decoded because a data symbol starts their range.
    pub data_bytes: u64,
    /// Ranges decoded (1 + symbol restarts, per section).
    pub ranges: u64,
    /// Instructions whose first byte is `e8` (what `objdump -d` shows as a call with raw bytes `e8 ..`).
    pub e8_calls: u64,
}

/// Below this many code bytes per rayon job, the work is not split further (thread hand-off costs
/// more than decoding a few hundred kilobytes).
const BYTES_PER_JOB: u64 = 256 * 1024;

/// Cuts every code section of `elf` at its symbols; returns the ranges to decode and the number of
/// bytes skipped as data.
pub fn chunks<'data>(elf: &Elf<'data>, symbols: &Symbols<'_>) -> (Vec<Chunk<'data>>, u64) {
    let mut out = Vec::new();
    let mut data_bytes = 0u64;
    for &section in &elf.code {
        let len = section.data.len();
        let syms = symbols.in_section(section.index);
        let mut start = 0usize;
        let mut is_data = false;
        let mut i = 0;
        while i < syms.len() {
            let addr = syms[i].addr;
            // The group of symbols at this address: a function sorts first, then an object.
            let group_end = i + syms[i..].partition_point(|s| s.addr == addr);
            let group_is_data = syms[i].ty == SymType::Object;
            i = group_end;
            let Some(off) = addr.checked_sub(section.address).and_then(|o| usize::try_from(o).ok()) else {
                continue;
            };
            if off >= len || off < start {
                continue;
            }
            if off > start {
                push(&mut out, &mut data_bytes, section, start, off, is_data);
                start = off;
            }
            is_data = group_is_data;
        }
        push(&mut out, &mut data_bytes, section, start, len, is_data);
    }
    (out, data_bytes)
}

fn push<'data>(
    out: &mut Vec<Chunk<'data>>,
    data_bytes: &mut u64,
    section: CodeSection<'data>,
    start: usize,
    end: usize,
    is_data: bool,
) {
    if is_data {
        *data_bytes += (end - start) as u64;
    } else {
        out.push(Chunk { section, start, end });
    }
}

/// Decodes every code section of `elf`.
pub fn decode(elf: &Elf<'_>, symbols: &Symbols<'_>, targets: &Targets) -> Decoded {
    let (chunks, data_bytes) = chunks(elf, symbols);
    let code_bytes: u64 = elf.code.iter().map(|c| c.data.len() as u64).sum();
    let jobs = (code_bytes / BYTES_PER_JOB).max(1) as usize;
    let min_len = chunks.len().div_ceil(jobs).max(1);
    let parts: Vec<ChunkOut> = chunks.par_iter().with_min_len(min_len).map(|c| decode_chunk(c, targets)).collect();
    let mut decoded = Decoded {
        sites: Vec::with_capacity(parts.iter().map(|p| p.sites.len()).sum()),
        code_bytes,
        data_bytes,
        ranges: chunks.len() as u64,
        ..Decoded::default()
    };
    for part in parts {
        decoded.sites.extend_from_slice(&part.sites);
        decoded.instructions += part.instructions;
        decoded.e8_calls += part.e8_calls;
    }
    decoded
}

struct ChunkOut {
    sites: Vec<DecodedSite>,
    instructions: u64,
    e8_calls: u64,
}

/// Decodes one range linearly. An invalid opcode is skipped (iced consumes at least one byte, as
/// objdump's `(bad)` does); an instruction cut off by the end of the range is not an instruction,
/// and decoding resumes one byte after its start (objdump's `.byte` for an incomplete instruction).
fn decode_chunk(chunk: &Chunk<'_>, targets: &Targets) -> ChunkOut {
    let section = chunk.section;
    let bytes = &section.data[chunk.start..chunk.end];
    let base = section.address.wrapping_add(chunk.start as u64);
    let mut decoder = Decoder::with_ip(64, bytes, base, DecoderOptions::NONE);
    let mut insn = Instruction::default();
    let mut out = ChunkOut { sites: Vec::new(), instructions: 0, e8_calls: 0 };
    while decoder.can_decode() {
        let pos = decoder.position();
        decoder.decode_out(&mut insn);
        if insn.is_invalid() {
            if decoder.last_error() == DecoderError::NoMoreBytes {
                // Cut off by the end of the range: objdump prints its first byte as `.byte` and
                // goes on with the next byte, so the census does too.
                if decoder.set_position(pos + 1).is_err() {
                    break;
                }
                decoder.set_ip(base.wrapping_add(pos as u64 + 1));
            }
            continue;
        }
        out.instructions += 1;
        let Some(kind) = classify(&insn, section.index, section.address, targets) else { continue };
        if bytes[pos] == 0xe8 {
            out.e8_calls += 1;
        }
        let len = insn.len() as u8;
        let its_end = kind.is_its_branch().then(|| len - 1);
        out.sites.push(DecodedSite { addr: insn.ip(), section: section.index.0 as u32, len, kind, its_end });
    }
    out
}

/// The kind of site `insn` is, if it is one. `section_address` turns addresses into section offsets
/// (for a relocatable object's relocations).
pub fn classify(
    insn: &Instruction,
    section: SectionIndex,
    section_address: u64,
    targets: &Targets,
) -> Option<SiteKind> {
    let code = insn.code();
    let rel32 = matches!(code, Code::Call_rel32_64 | Code::Jmp_rel32_64) || insn.is_jcc_near();
    if !rel32 {
        return if insn.is_call_near_indirect() {
            Some(SiteKind::CallIndirect)
        } else if insn.is_jmp_near_indirect() {
            Some(SiteKind::JmpIndirect)
        } else if matches!(code, Code::Retnq | Code::Retnq_imm16) {
            Some(SiteKind::Ret)
        } else {
            None
        };
    }
    let field = insn.next_ip().wrapping_sub(4).wrapping_sub(section_address);
    let special = targets.of(section, field, insn.near_branch64());
    Some(match (code, special) {
        (_, Some(Special::Thunk)) => SiteKind::ThunkCall,
        (Code::Call_rel32_64, Some(Special::Fentry)) => SiteKind::FentryCall,
        (Code::Call_rel32_64, _) => SiteKind::CallRel32,
        (Code::Jmp_rel32_64, _) => SiteKind::JmpRel32,
        _ => SiteKind::JccRel32,
    })
}
