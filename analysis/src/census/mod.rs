//! Call-site census of ELF binaries: how many call sites of each kind a binary has, and how many of
//! them cross a cache line (or a 32/16/8-byte block), which decides whether a site can be retargeted
//! with one atomic store (see [`crossing`]).
//!
//! Data flows one way: [`elf`] maps and validates the file → [`symbols`] and [`targets`] read what
//! the decode needs → [`decode`] finds the sites in the executable sections → [`kernel`] reads a Linux
//! kernel's site tables when present → [`tally`] turns sites into `census.csv` and
//! `census_offsets.csv` rows. [`census_file`] does all of it for one path.

pub mod by_site;
pub mod crossing;
pub mod decode;
pub mod defaults;
pub mod elf;
pub mod entries;
pub mod error;
pub mod its;
pub mod kernel;
pub mod kinds;
pub mod symbols;
pub mod synth;
pub mod tally;
pub mod targets;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

pub use by_site::SiteRow;
pub use decode::{Decoded, DecodedSite};
pub use error::CensusError;
pub use kernel::{KernelTables, StaticCallKeyRow};
pub use kinds::SiteKind;
pub use symbols::SymbolSource;
pub use tally::KindTally;

use crate::report::rows::{CensusOffsetRow, CensusRow};

/// What to produce beyond the counts.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Also build one [`SiteRow`] per site (a symbol lookup for every site: slower on a vmlinux).
    pub by_site: bool,
    /// Hash the whole file (SHA-256) even when it has a GNU build-id (a file without one is always
    /// hashed: the CSV always carries one content identity).
    pub sha256: bool,
}

/// The census of one binary.
#[derive(Clone, Debug)]
pub struct Census {
    /// The path as given.
    pub binary: String,
    /// SHA-256 of the whole file, hex; empty when not computed (the file has a build-id and
    /// [`Options::sha256`] was not set).
    pub sha256: String,
    /// The GNU build-id (`NT_GNU_BUILD_ID` note), hex, when the file has one.
    pub build_id: Option<String>,
    /// Size of the file in bytes.
    pub file_bytes: u64,
    /// A relocatable object (`.o`, `ET_REL`): site addresses are section offsets, and the kernel
    /// tables are not read.
    pub relocatable: bool,
    /// The symbol table the decode restarted at: `.symtab`, `.dynsym` only, or none.
    pub symbols: SymbolSource,
    /// Executable sections with contents (`SHF_EXECINSTR`, not `SHT_NOBITS`): the sections decoded.
    pub code_sections: usize,
    /// The decoded sites and decode statistics.
    pub decoded: Decoded,
    /// Function entries: `endbr_entry` and `cfi_preamble` sites ([`entries`]).
    pub entries: Vec<DecodedSite>,
    /// The kernel tables (empty, with a note, for anything but a vmlinux).
    pub kernel: KernelTables,
    /// One row per site when [`Options::by_site`] was set: decoded sites, then table sites.
    pub by_site: Vec<SiteRow>,
    /// One tally per kind of [`Census::kinds`], counted once by the census (a vmlinux has millions of
    /// sites: the table, `census.csv` and `census_offsets.csv` all read these).
    pub counts: Vec<KindTally>,
    /// One line each: what was absent or approximated.
    pub notes: Vec<String>,
    /// Wall time of the census proper: parse, symbols, decode, kernel tables, site rows.
    pub census_time: Duration,
    /// Wall time of hashing the whole file (run beside the census on another core); zero when the
    /// file was not hashed.
    pub sha256_time: Duration,
}

impl Census {
    /// The kinds this binary has rows for: every decoded kind, and each kernel table found.
    pub fn kinds(&self) -> Vec<SiteKind> {
        kinds(&self.kernel)
    }

    /// One tally per kind of [`Census::kinds`]: [`Census::counts`].
    pub fn tallies(&self) -> Vec<KindTally> {
        self.counts.clone()
    }

    /// The `census.csv` rows.
    pub fn rows(&self) -> Vec<CensusRow> {
        let build_id = self.build_id.as_deref().unwrap_or("");
        self.tallies().iter().map(|t| t.row(&self.binary, &self.sha256, build_id)).collect()
    }

    /// The `census_offsets.csv` rows.
    pub fn offset_rows(&self) -> Vec<CensusOffsetRow> {
        self.tallies().iter().flat_map(|t| t.offset_rows(&self.binary).collect::<Vec<_>>()).collect()
    }
}

/// The census of the file at `path`: mapped, never copied. The file is identified by its GNU
/// build-id; the SHA-256 of the whole file (which costs more than the census on a large file) is
/// computed only when asked for or when there is no build-id, on another core while the census runs.
pub fn census_file(path: &Path, options: Options) -> Result<Census, CensusError> {
    let image = elf::ElfImage::open(path)?;
    if !options.sha256 && elf::build_id(image.bytes()).is_some() {
        return census_elf(image.bytes(), image.path(), options);
    }
    let (hashed, census) = rayon::join(
        || {
            let started = Instant::now();
            (image.sha256_hex(), started.elapsed())
        },
        || census_elf(image.bytes(), image.path(), options),
    );
    let (sha256, sha256_time) = hashed;
    Ok(Census { sha256: sha256?, sha256_time, ..census? })
}

/// The census of an ELF file already in memory, named `name` in messages and rows, with the
/// SHA-256 of `bytes` whatever [`Options::sha256`] says.
pub fn census_bytes(bytes: &[u8], name: &str, options: Options) -> Result<Census, CensusError> {
    let census = census_elf(bytes, name, options)?;
    let started = Instant::now();
    let sha256 = elf::sha256_hex(bytes);
    Ok(Census { sha256, sha256_time: started.elapsed(), ..census })
}

/// The census proper of an ELF file in memory: validate, read symbols, decode, read kernel tables,
/// read the build-id; no hashing (`sha256` is left empty). The whole ELF-and-decode path without the file system: what
/// the fuzz target drives and what `benches/census.rs` times beside the full [`census_file`].
pub fn census_elf(bytes: &[u8], name: &str, options: Options) -> Result<Census, CensusError> {
    let started = Instant::now();
    let elf = elf::Elf::parse(bytes, name)?;
    let symbols = symbols::Symbols::load(&elf);
    let targets = targets::Targets::load(&elf, &symbols);
    let decoded = decode::decode(&elf, &symbols, &targets);
    let entries = entries::entries(&elf, &symbols);
    let kernel = kernel::read_tables(&elf, &symbols, name);
    let mut notes = Vec::new();
    match symbols.source {
        SymbolSource::Static => {}
        SymbolSource::Dynamic => notes.push(
            "symbols: no .symtab (stripped), decode restarts only at the .dynsym symbols; \
             retpoline thunks and __fentry__ are recognised only where those name them"
                .to_string(),
        ),
        SymbolSource::Stripped => notes.push(
            "symbols: none (stripped): each executable section decoded linearly from its start, \
             retpoline thunk and __fentry__ calls counted as plain calls"
                .to_string(),
        ),
    }
    if elf.relocatable {
        notes.push(
            "relocatable object: addresses are section offsets (line offsets assume 64-byte aligned sections)".into(),
        );
    }
    // Decoded sites never have a table kind, and table sites only have theirs, so one pass over the
    // three lists counts each site once.
    let counts = tally::tally(decoded.sites.iter().chain(&entries).chain(&kernel.sites), &kinds(&kernel));
    let by_site = if options.by_site {
        site_rows(name, &elf, &symbols, decoded.sites.iter().chain(&entries).chain(&kernel.sites), &kernel)
    } else {
        Vec::new()
    };
    Ok(Census {
        binary: name.to_string(),
        sha256: String::new(),
        build_id: elf.build_id().map(|b| b.iter().map(|x| format!("{x:02x}")).collect()),
        file_bytes: bytes.len() as u64,
        relocatable: elf.relocatable,
        symbols: symbols.source,
        code_sections: elf.code.len(),
        decoded,
        entries,
        kernel,
        by_site,
        counts,
        notes,
        census_time: started.elapsed(),
        sha256_time: Duration::ZERO,
    })
}

/// Every decoded kind, and each kernel table found.
fn kinds(kernel: &KernelTables) -> Vec<SiteKind> {
    SiteKind::ALL.into_iter().filter(|&k| !k.is_table() || kernel.has(k)).collect()
}

fn site_rows<'a>(
    binary: &str,
    elf: &elf::Elf<'_>,
    symbols: &symbols::Symbols<'_>,
    sites: impl Iterator<Item = &'a DecodedSite>,
    kernel: &KernelTables,
) -> Vec<SiteRow> {
    let key_names: HashMap<&str, &str> = kernel.keys.iter().map(|k| (k.key_address.as_str(), k.key.as_str())).collect();
    let static_calls: HashMap<u64, &kernel::StaticCallEntry> =
        kernel.static_calls.iter().map(|e| (e.site, e)).collect();
    let sections: HashMap<u32, object::SectionIndex> = elf.code.iter().map(|c| (c.index.0 as u32, c.index)).collect();
    sites
        .map(|site| {
            let symbol = sections
                .get(&site.section)
                .and_then(|&index| symbols.containing(index, site.addr))
                .map(|(s, off)| format!("{}+{off:#x}", String::from_utf8_lossy(s.name)))
                .unwrap_or_default();
            let detail = match static_calls.get(&site.addr) {
                Some(e) if site.kind == SiteKind::StaticCallSite => {
                    let key = key_names.get(format!("{:#x}", e.key).as_str()).copied().unwrap_or("?");
                    if e.tail_flag {
                        format!("{key} tail")
                    } else {
                        key.to_string()
                    }
                }
                _ => String::new(),
            };
            by_site::site_row(binary, site, symbol, detail)
        })
        .collect()
}
