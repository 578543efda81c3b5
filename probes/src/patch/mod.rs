//! The live patcher: rewrites call sites that other threads are executing.
//!
//! A patch is a batch of [`SitePatch`]es (address, expected old instruction, new instruction) applied
//! by one [`Protocol`]:
//! - [`Protocol::Bp`] ([`bp`]): the kernel's `text_poke_bp` — `int3` on byte 0, body, byte 0; three
//!   syncs per batch; a thread that meets the `int3` has the new instruction emulated by the SIGTRAP
//!   handler ([`trap`]).
//! - [`Protocol::CsPrefix`] ([`cs_prefix`]): `2e e8 rel32` sites; the `int3` sits on the prefix and
//!   a trapped thread resumes at the plain `call` once the rel32 is whole.
//! - [`Protocol::Aligned`] ([`aligned`]): one atomic store where the rel32 stays inside one granule,
//!   the site's trampoline otherwise; no trap.
//! - [`Protocol::Naive`] ([`naive`]): a byte copy with no protocol — the hazard experiment only.
//!
//! Every batch runs under one process-wide mutex (the kernel's `text_mutex`), is validated whole
//! before its first write ([`validate`]), goes through the one [`TextWriter`], syncs with
//! `membarrier` ([`sync`]) and is read back at the end.

pub mod aligned;
pub mod bed;
pub mod bp;
pub mod catch;
pub mod cs_prefix;
mod error;
pub mod hazard;
pub mod latency;
pub mod maps;
pub mod naive;
pub mod stress;
pub mod sync;
mod table;
pub mod trap;
pub mod validate;

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use error::PatchError;
pub use naive::NaiveStore;
pub use sync::{membarrier_ready, sync_cores, sync_count};
pub use trap::{
    caught_count, emulate_forever, forget_sites, install_trap_handler, late_trap_count, trap_count,
    trap_handler_installed, uninstall_trap_handler,
};

use crate::code::{Insn, TextWriter};

/// One site of a batch: the instruction at `addr` is `old` now and shall be `new`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SitePatch {
    /// Execution address of the site's first byte.
    pub addr: usize,
    /// What the site holds now (validated before anything is written).
    pub old: Insn,
    /// What it shall hold (same length).
    pub new: Insn,
}

/// The atomicity unit of the aligned policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Granule {
    /// The rel32 must stay inside one 64-byte cache line (4-byte store).
    Line,
    /// The rel32 must stay inside one aligned 8-byte word (8-byte store).
    Word8,
}

/// How a batch is written; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `int3` guard with call emulation, three syncs.
    Bp,
    /// `int3` on the cs prefix, three syncs.
    CsPrefix,
    /// One atomic store per site, trampoline fallback, one sync.
    Aligned {
        /// Line or 8-byte word.
        granule: Granule,
    },
    /// No protocol (hazard experiment only).
    Naive,
}

impl Protocol {
    /// The protocols that are safe under concurrent execution.
    pub const SAFE: [Protocol; 4] = [
        Protocol::Bp,
        Protocol::CsPrefix,
        Protocol::Aligned { granule: Granule::Line },
        Protocol::Aligned { granule: Granule::Word8 },
    ];

    /// Name used on the command line and in CSV rows: `bp`, `cs-prefix`, `aligned` (line),
    /// `aligned-8` (8-byte word), `naive`.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Bp => "bp",
            Protocol::CsPrefix => "cs-prefix",
            Protocol::Aligned { granule: Granule::Line } => "aligned",
            Protocol::Aligned { granule: Granule::Word8 } => "aligned-8",
            Protocol::Naive => "naive",
        }
    }

    /// The site form this protocol patches: `cs call` for cs-prefix, `call` otherwise.
    pub fn site_insn(self, target: usize) -> Insn {
        match self {
            Protocol::CsPrefix => Insn::CsCall(target),
            _ => Insn::Call(target),
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bp" => Ok(Protocol::Bp),
            "cs-prefix" => Ok(Protocol::CsPrefix),
            "aligned" | "aligned-64" => Ok(Protocol::Aligned { granule: Granule::Line }),
            "aligned-8" => Ok(Protocol::Aligned { granule: Granule::Word8 }),
            "naive" => Ok(Protocol::Naive),
            _ => Err(format!("unknown protocol `{s}` (expected bp, cs-prefix, aligned, aligned-8 or naive)")),
        }
    }
}

/// What one batch did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchReport {
    /// The protocol used.
    pub protocol: Protocol,
    /// Sites in the batch.
    pub sites: usize,
    /// Syncs this batch performed (bp, cs-prefix: 3; aligned: 1; naive: 0; empty batch: 0).
    pub syncs: u64,
    /// Aligned: sites whose rel32 crosses the granule, patched through their trampoline.
    pub fallbacks: usize,
    /// Traps the handler emulated while the batch ran (any site; late traps of earlier batches too).
    pub traps: u64,
    /// Wall time from entry to return, text mutex wait included.
    pub elapsed: Duration,
}

/// The steps of a trapping protocol, reported to [`patch_batch_stepped`]'s observer after each sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// Every site's byte 0 is `int3`, synced.
    Int3Placed,
    /// Every site's body is new, synced.
    BodyWritten,
    /// Byte 0 is restored everywhere, synced; slots are idle (later traps are late).
    Finished,
}

struct TextState {
    code: maps::CodeRanges,
}

static TEXT_MUTEX: Mutex<Option<TextState>> = Mutex::new(None);

fn text_lock() -> MutexGuard<'static, Option<TextState>> {
    let mut g = TEXT_MUTEX.lock().unwrap_or_else(|e| e.into_inner());
    g.get_or_insert_with(|| TextState { code: maps::CodeRanges::default() });
    g
}

/// Writes through the text writer, naming the address on failure.
fn write(writer: &TextWriter, addr: usize, bytes: &[u8]) -> Result<(), PatchError> {
    writer.write(addr, bytes).map_err(|source| PatchError::Write { addr, len: bytes.len(), source })
}

/// The kernel's `text_poke_bp` for a batch: [`patch_batch`] with [`Protocol::Bp`]. Works on any code
/// of this process — an arena, or the program's own `.text` through `TextWriter::new(WriteMethod::Mprotect)`.
pub fn text_poke_bp(writer: &TextWriter, sites: &[SitePatch]) -> Result<BatchReport, PatchError> {
    patch_batch(writer, Protocol::Bp, sites)
}

/// Patches a batch of sites with `protocol`: validates every site (nothing is written if one fails),
/// writes, syncs, reads back. Serialised with every other patch of this process.
pub fn patch_batch(writer: &TextWriter, protocol: Protocol, sites: &[SitePatch]) -> Result<BatchReport, PatchError> {
    patch_batch_stepped(writer, protocol, sites, &mut |_| {})
}

/// [`patch_batch`] that calls `on_step` after each synced step of bp and cs-prefix (with the text
/// mutex held: the observer may pause the patcher between steps, e.g. to force a late trap in a test).
pub fn patch_batch_stepped(
    writer: &TextWriter,
    protocol: Protocol,
    sites: &[SitePatch],
    on_step: &mut dyn FnMut(Step),
) -> Result<BatchReport, PatchError> {
    let start = Instant::now();
    membarrier_ready()?;
    install_trap_handler()?;
    let mut guard = text_lock();
    let state = guard.as_mut().expect("initialised by text_lock");
    let traps = trap_count();
    let mut fallbacks = 0;
    let syncs = if sites.is_empty() {
        0
    } else {
        match protocol {
            Protocol::Bp | Protocol::CsPrefix | Protocol::Naive => {
                let (name, accept): (_, fn(Insn, Insn) -> Option<&'static str>) = match protocol {
                    Protocol::Bp => ("bp", bp::accept),
                    Protocol::CsPrefix => ("cs-prefix", cs_prefix::accept),
                    _ => ("naive", naive::accept),
                };
                let mut reg = table::registry();
                let plan = validate::plan_in_place(&mut state.code, &mut reg, name, sites, accept)?;
                let syncs = match protocol {
                    Protocol::Bp => bp::poke(writer, &plan, on_step)?,
                    Protocol::CsPrefix => cs_prefix::poke(writer, &plan, on_step)?,
                    _ => naive::poke(writer, &plan)?,
                };
                validate::read_back(&plan)?;
                syncs
            }
            Protocol::Aligned { granule } => {
                let mut reg = table::registry();
                let (stores, fell_back) = aligned::plan(&mut state.code, &mut reg, granule, writer, sites)?;
                fallbacks = fell_back;
                let syncs = aligned::poke(writer, granule, &stores)?;
                aligned::read_back(&stores)?;
                syncs
            }
        }
    };
    Ok(BatchReport {
        protocol,
        sites: sites.len(),
        syncs,
        fallbacks,
        traps: trap_count() - traps,
        elapsed: start.elapsed(),
    })
}
