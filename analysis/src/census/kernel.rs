//! A Linux kernel's own lists of patchable sites, read from its vmlinux.
//!
//! The kernel records every site it may rewrite at boot in tables bracketed by linker symbols; the
//! tables live inside ordinary data sections (`.init.data`, ...), so they are found through those
//! symbols, not by section name, and need a vmlinux with its symbol table (the `-dbg` package's).
//! - `__start_static_call_sites`..`__stop_static_call_sites`: `struct static_call_site { s32 addr;
//!   s32 key; }`, each field relative to its own address; the key's low two bits are flags
//!   (`STATIC_CALL_SITE_TAIL` = 1: a tail call, `jmp`; `STATIC_CALL_SITE_INIT` = 2: set at boot for
//!   sites in init text). Each site is a `call`/`jmp __SCT__<name>` (the trampoline) that the kernel
//!   retargets in place; the key is the `__SCK__<name>` object.
//! - retpoline sites (`__start_retpoline_sites` or, since v5.17, `__retpoline_sites` ..`_end`) and
//!   return-thunk sites (`__return_sites`..`_end`): `s32` offsets relative to the entry.
//! - `__start_mcount_loc`..`__stop_mcount_loc`: absolute `u64` addresses of the ftrace sites.
//! - call sites (`__call_sites`..`_end`, since v6.2): `s32` offsets of the direct calls that call depth
//!   tracking retargets.
//!
//! Each listed address is decoded to the instruction found there, whose crossings are then counted
//! like any decoded site's; retpoline and return sites are also sorted by the ITS rule ([`its`]).

use std::collections::{BTreeMap, HashMap};

pub use callpatch_vocab::rows::StaticCallKeyRow;
use iced_x86::{Code, Decoder, DecoderOptions, Instruction, Mnemonic};

use super::crossing::{fallback_line, fallback_word};
use super::decode::DecodedSite;
use super::elf::Elf;
use super::its;
use super::kinds::SiteKind;
use super::symbols::{SymbolSource, Symbols};

/// `STATIC_CALL_SITE_TAIL`: the site is a tail call (`jmp`).
pub const STATIC_CALL_SITE_TAIL: u64 = 1;
/// `STATIC_CALL_SITE_INIT`: the site is in init text (set by the kernel at boot).
pub const STATIC_CALL_SITE_INIT: u64 = 2;

/// One entry of the static call table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticCallEntry {
    /// Address of the site: the entry's `addr` field resolved against the field's own address.
    pub site: u64,
    /// Address of the `__SCK__<name>` key: the entry's `key` field resolved, flag bits cleared.
    pub key: u64,
    /// [`STATIC_CALL_SITE_TAIL`] is set: the site is a tail call, patched as a `jmp`.
    pub tail_flag: bool,
    /// [`STATIC_CALL_SITE_INIT`] is set in the file's table (the kernel sets it at boot for sites
    /// in init text).
    pub init_flag: bool,
    /// The instruction at the site, when it could be decoded.
    pub insn: Option<(Code, u8)>,
    /// The branch target when the instruction is a rel32 call or jmp.
    pub target: Option<u64>,
}

/// One kernel table that was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableSummary {
    /// The kind of site the table lists (its sites' `kind` in `census.csv`).
    pub kind: SiteKind,
    /// The start symbol it was found by.
    pub symbol: &'static str,
    /// Entries read: the table's length in bytes over the entry size (8 for static calls and
    /// mcount, 4 for the others).
    pub entries: u64,
    /// Entries whose address holds no decodable instruction in a code section.
    pub unreadable: u64,
    /// Instruction forms found at the entries: `mnemonic/length` → count.
    pub forms: BTreeMap<String, u64>,
}

/// Everything read from the kernel tables of one file.
#[derive(Clone, Debug, Default)]
pub struct KernelTables {
    /// The tables found, in the order static calls, retpolines, returns, mcount, call sites.
    pub tables: Vec<TableSummary>,
    /// Every entry of the static call table, in table order, decodable or not.
    pub static_calls: Vec<StaticCallEntry>,
    /// The entries of every table found, decoded (`kind` = the table's kind), in table order; entries
    /// that could not be decoded are left out (counted in [`TableSummary::unreadable`]).
    pub sites: Vec<DecodedSite>,
    /// Per key, sorted by site count (most first).
    pub keys: Vec<StaticCallKeyRow>,
    /// One line per absent table or problem.
    pub notes: Vec<String>,
}

impl KernelTables {
    /// True when the table of `kind` was found.
    pub fn has(&self, kind: SiteKind) -> bool {
        self.tables.iter().any(|t| t.kind == kind)
    }
}

/// Start/stop symbol pairs per table kind, oldest naming last.
const TABLES: [(SiteKind, &[(&str, &str)]); 5] = [
    (SiteKind::StaticCallSite, &[("__start_static_call_sites", "__stop_static_call_sites")]),
    (
        SiteKind::RetpolineSite,
        &[("__retpoline_sites", "__retpoline_sites_end"), ("__start_retpoline_sites", "__stop_retpoline_sites")],
    ),
    (
        SiteKind::ReturnSite,
        &[("__return_sites", "__return_sites_end"), ("__start_return_sites", "__stop_return_sites")],
    ),
    (SiteKind::McountSite, &[("__start_mcount_loc", "__stop_mcount_loc")]),
    (SiteKind::CallSite, &[("__call_sites", "__call_sites_end")]),
];

/// Reads the kernel tables of `elf`, if it has them. `binary` names the rows.
pub fn read_tables(elf: &Elf<'_>, symbols: &Symbols<'_>, binary: &str) -> KernelTables {
    let mut out = KernelTables::default();
    if symbols.source == SymbolSource::Stripped {
        let kernel_like = elf.file.elf_section_table().iter().any(|s| {
            let name = elf.file.elf_section_table().section_name(elf.file.endian(), s).unwrap_or(b"");
            name == b"__ksymtab" || name == b".altinstructions"
        });
        out.notes.push(if kernel_like {
            "kernel tables: not read: this looks like a Linux kernel (__ksymtab/.altinstructions) but it is stripped \
             (no symbol table), so the static call, retpoline, return and mcount tables cannot be located; use the \
             vmlinux of the -dbg package"
                .into()
        } else {
            "kernel tables: not read: no symbol table (stripped)".into()
        });
        return out;
    }
    if elf.relocatable {
        out.notes.push("kernel tables: not read: a relocatable object has no final addresses".into());
        return out;
    }
    // The start/stop symbols, found in one pass over the symbols.
    let wanted =
        |n: &[u8]| TABLES.iter().flat_map(|(_, p)| p.iter()).any(|&(a, b)| n == a.as_bytes() || n == b.as_bytes());
    let mut bounds: HashMap<&str, u64> = HashMap::new();
    for d in symbols.matching(wanted) {
        if let Ok(name) = std::str::from_utf8(d.name) {
            bounds.entry(name).or_insert(d.addr);
        }
    }
    let thunks: HashMap<u64, &[u8]> =
        symbols.matching(|n| n.starts_with(b"__x86_indirect_")).map(|d| (d.addr, d.name)).collect();
    let mut sct_sites = Vec::new();
    let mut missing = Vec::new();
    for (kind, pairs) in TABLES {
        let found = pairs.iter().find_map(|&(start, stop)| Some((start, *bounds.get(start)?, *bounds.get(stop)?)));
        let Some((symbol, start, stop)) = found else {
            missing.push((kind, pairs[0].0));
            continue;
        };
        let entry: u64 = if matches!(kind, SiteKind::McountSite | SiteKind::StaticCallSite) { 8 } else { 4 };
        let len = stop.saturating_sub(start);
        let Some(bytes) = usize::try_from(len).ok().and_then(|n| elf.read(start, n)) else {
            out.notes.push(format!("kernel tables: {symbol} ({len} bytes at {start:#x}) is not in the file's data"));
            continue;
        };
        if len % entry != 0 {
            out.notes.push(format!("kernel tables: {symbol} is {len} bytes, not a multiple of {entry}"));
        }
        let mut summary = TableSummary { kind, symbol, entries: 0, unreadable: 0, forms: BTreeMap::new() };
        // Counted by (mnemonic, length) and named once at the end: a vmlinux lists ~100k sites.
        let mut forms: HashMap<(Mnemonic, usize), u64> = HashMap::new();
        for (i, e) in bytes.chunks_exact(entry as usize).enumerate() {
            let at = start.wrapping_add(i as u64 * entry);
            let site = match kind {
                SiteKind::McountSite => u64::from_le_bytes(e.try_into().expect("8-byte entry")),
                _ => at.wrapping_add_signed(i64::from(s32(&e[..4]))),
            };
            summary.entries += 1;
            let insn = decode_at(elf, site);
            match insn {
                Some((_, ref i)) => *forms.entry((i.mnemonic(), i.len())).or_default() += 1,
                None => summary.unreadable += 1,
            }
            if let Some((section, ref i)) = insn {
                let its_end = match kind {
                    SiteKind::ReturnSite => Some(0),
                    SiteKind::RetpolineSite => retpoline_its_end(i, &thunks),
                    _ => None,
                };
                out.sites.push(DecodedSite { addr: site, section, len: i.len() as u8, kind, its_end });
            }
            if kind == SiteKind::StaticCallSite {
                let key_field = at.wrapping_add(4).wrapping_add_signed(i64::from(s32(&e[4..8])));
                let flags = key_field & 3;
                let target = insn.as_ref().and_then(|(_, i)| {
                    matches!(i.code(), Code::Call_rel32_64 | Code::Jmp_rel32_64).then(|| i.near_branch64())
                });
                sct_sites.push(StaticCallEntry {
                    site,
                    key: key_field & !3,
                    tail_flag: flags & STATIC_CALL_SITE_TAIL != 0,
                    init_flag: flags & STATIC_CALL_SITE_INIT != 0,
                    insn: insn.map(|(_, i)| (i.code(), i.len() as u8)),
                    target,
                });
            }
        }
        summary.forms = forms.into_iter().map(|((m, len), n)| (form(m, len), n)).collect();
        out.tables.push(summary);
    }
    if missing.len() == TABLES.len() {
        let names: Vec<&str> = missing.iter().map(|&(_, symbol)| symbol).collect();
        out.notes.push(format!("kernel tables: none (no {} symbol): not a Linux kernel image", names.join(", ")));
    } else {
        for (kind, symbol) in missing {
            out.notes.push(format!("kernel tables: no {} (no {symbol} symbol)", kind.name()));
        }
    }
    out.keys = key_rows(&sct_sites, symbols, binary);
    out.static_calls = sct_sites;
    out
}

/// Where the last byte of the indirect branch the kernel would write at a retpoline site lies, as an
/// offset from the site (v6.15 `patch_retpoline`, without `spectre_v2=retpoline,lfence`): a `Jcc` to
/// the thunk becomes a 2-byte inverted `Jcc` then `jmp *%reg`; a `call`/`jmp` becomes `call`/`jmp
/// *%reg` at the site; the register is the one the thunk is named for. `None` when the instruction is
/// not a rel32 branch to a named thunk.
fn retpoline_its_end(insn: &Instruction, thunks: &HashMap<u64, &[u8]>) -> Option<u8> {
    let lead = match insn.code() {
        Code::Call_rel32_64 | Code::Jmp_rel32_64 => 0,
        _ if insn.is_jcc_near() => 2,
        _ => return None,
    };
    let end = its::retpoline_branch_end(thunks.get(&insn.near_branch64())?)?;
    Some(lead + end)
}

fn s32(b: &[u8]) -> i32 {
    i32::from_le_bytes(b.try_into().expect("4-byte field"))
}

/// Decodes the instruction at `addr` in a code section: (section index, instruction).
fn decode_at(elf: &Elf<'_>, addr: u64) -> Option<(u32, Instruction)> {
    let code = elf.code.iter().find(|c| addr >= c.address && addr - c.address < c.data.len() as u64)?;
    let off = (addr - code.address) as usize;
    let bytes = &code.data[off..code.data.len().min(off + 15)];
    let mut decoder = Decoder::with_ip(64, bytes, addr, DecoderOptions::NONE);
    let insn = decoder.decode();
    (!insn.is_invalid()).then_some((code.index.0 as u32, insn))
}

/// `call/5`, `jmp/5`, `nop/5`: an instruction's mnemonic and length.
fn form(mnemonic: Mnemonic, len: usize) -> String {
    format!("{}/{len}", format!("{mnemonic:?}").to_lowercase())
}

/// Groups the static call entries by key: sites, tail calls, crossings, and how many sites the
/// aligned-only policy would leave on the trampoline.
fn key_rows(entries: &[StaticCallEntry], symbols: &Symbols<'_>, binary: &str) -> Vec<StaticCallKeyRow> {
    let names: HashMap<u64, &[u8]> =
        symbols.matching(|n| n.starts_with(b"__SCK__")).map(|d| (d.addr, d.name)).collect();
    let trampolines: HashMap<&[u8], u64> =
        symbols.matching(|n| n.starts_with(b"__SCT__")).map(|d| (&d.name[b"__SCT__".len()..], d.addr)).collect();
    let mut rows: BTreeMap<u64, StaticCallKeyRow> = BTreeMap::new();
    for e in entries {
        let name = names.get(&e.key).copied();
        let row = rows.entry(e.key).or_insert_with(|| StaticCallKeyRow {
            binary: binary.to_string(),
            key: name.map_or_else(|| format!("?{:#x}", e.key), |n| String::from_utf8_lossy(n).into_owned()),
            key_address: format!("{:#x}", e.key),
            sites: 0,
            calls: 0,
            tail_jmps: 0,
            not_to_trampoline: 0,
            fallback_line: 0,
            fallback_word: 0,
        });
        row.sites += 1;
        match e.insn {
            Some((Code::Call_rel32_64, _)) => row.calls += 1,
            Some((Code::Jmp_rel32_64, _)) => row.tail_jmps += 1,
            _ => {}
        }
        let trampoline = name.and_then(|n| trampolines.get(&n[b"__SCK__".len()..]).copied());
        if trampoline.is_none() || e.target != trampoline {
            row.not_to_trampoline += 1;
        }
        if let Some((_, len)) = e.insn {
            let len = u64::from(len);
            row.fallback_line += u64::from(fallback_line(e.site, len));
            row.fallback_word += u64::from(fallback_word(e.site, len));
        }
    }
    let mut rows: Vec<StaticCallKeyRow> = rows.into_values().collect();
    rows.sort_by(|a, b| b.sites.cmp(&a.sites).then_with(|| a.key.cmp(&b.key)));
    rows
}
