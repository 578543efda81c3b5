//! One batch: the [`SitePatch`]es it holds, the process-wide text mutex it runs under (the kernel's
//! `text_mutex`), and what it reports. Every batch is planned whole before its first write, poked by
//! its protocol's numbered steps, and read back.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::PatchError;
use crate::insn::Insn;
use crate::maps::CodeRanges;
use crate::protocol::{Aligned, Bp, CsPrefix, Naive, Poke};
use crate::sync::membarrier_ready;
use crate::text_writer::TextWriter;
use crate::trap::{install_trap_handler, trap_count};
use callpatch_vocab::Protocol;

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

/// The site form a protocol patches: `cs call` for cs-prefix, `call` otherwise.
pub fn site_insn(protocol: Protocol, target: usize) -> Insn {
    match protocol {
        Protocol::CsPrefix => Insn::CsCall(target),
        _ => Insn::Call(target),
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

pub(crate) struct TextState {
    code: CodeRanges,
}

static TEXT_MUTEX: Mutex<Option<TextState>> = Mutex::new(None);

pub(crate) fn text_lock() -> MutexGuard<'static, Option<TextState>> {
    crate::fork::hold_locks_across_fork();
    let mut g = TEXT_MUTEX.lock().unwrap_or_else(|e| e.into_inner());
    g.get_or_insert_with(|| TextState { code: CodeRanges::default() });
    g
}

/// The kernel's `text_poke_bp` for a batch: [`patch_batch`] with [`Protocol::Bp`]. Works on any code
/// of this process — an arena, or the program's own `.text` through `TextWriter::new(WriteMethod::Mprotect)`.
///
/// # Safety
/// As [`patch_batch`].
pub unsafe fn text_poke_bp(writer: &TextWriter, sites: &[SitePatch]) -> Result<BatchReport, PatchError> {
    // SAFETY: the caller upholds `patch_batch`'s contract.
    unsafe { patch_batch(writer, Protocol::Bp, sites) }
}

/// Patches a batch of sites with `protocol`: validates every site (nothing is written if one fails),
/// writes, syncs, reads back. Serialised with every other patch of this process.
///
/// # Safety
/// Validation proves that each site lies in executable memory of this process, holds exactly the
/// bytes of `old`, and that `new` reaches its target; it cannot prove what only the caller knows:
/// - every `addr` is the first byte of an instruction that threads execute as a whole (not the
///   middle of another instruction, not data that happens to look like a call);
/// - executing `new` there is correct for every thread that reaches the site: its target is code that
///   expects to be entered this way (same calling convention, same stack effect as `old`);
/// - no other writer changes these bytes meanwhile except through this patcher (which serialises).
pub unsafe fn patch_batch(
    writer: &TextWriter,
    protocol: Protocol,
    sites: &[SitePatch],
) -> Result<BatchReport, PatchError> {
    // SAFETY: the caller upholds the contract, which `patch_batch_stepped` shares.
    unsafe { patch_batch_stepped(writer, protocol, sites, &mut |_| {}) }
}

/// [`patch_batch`] that calls `on_step` after each synced step of bp and cs-prefix (with the text
/// mutex held: the observer may pause the patcher between steps, e.g. to force a late trap in a test).
///
/// # Safety
/// As [`patch_batch`].
pub unsafe fn patch_batch_stepped(
    writer: &TextWriter,
    protocol: Protocol,
    sites: &[SitePatch],
    on_step: &mut dyn FnMut(Step),
) -> Result<BatchReport, PatchError> {
    let start = Instant::now();
    membarrier_ready()?;
    // Only a protocol that writes int3 needs the handler (the trap-free aligned stores run where it
    // cannot be installed, or must not be relied on).
    if protocol.traps() {
        install_trap_handler()?;
        if !sites.is_empty() {
            crate::guard::check(crate::trap::handler_address())?;
        }
    }
    let mut guard = text_lock();
    // Every copy of the patcher in the process (each `cdylib` has one) writes text under one lock.
    let _process = crate::hub::get().map_err(PatchError::Hub)?.lock();
    let state = guard.as_mut().expect("initialised by text_lock");
    let traps = trap_count();
    let (syncs, fallbacks) = if sites.is_empty() {
        (0, 0)
    } else {
        // SAFETY: the caller upholds `patch_batch`'s contract; the text lock is held.
        unsafe {
            match protocol {
                Protocol::Bp => run(&Bp, &mut state.code, writer, sites, on_step)?,
                Protocol::CsPrefix => run(&CsPrefix, &mut state.code, writer, sites, on_step)?,
                Protocol::Aligned { granule } => run(&Aligned { granule }, &mut state.code, writer, sites, on_step)?,
                Protocol::Naive => run(&Naive, &mut state.code, writer, sites, on_step)?,
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

/// One batch through one protocol: plan (validate whole), poke (the protocol's numbered steps with
/// their syncs), read back. Returns the syncs used and the sites that fell back to a trampoline.
///
/// # Safety
/// As [`patch_batch`], with the text lock held.
unsafe fn run<P: Poke>(
    protocol: &P,
    code: &mut CodeRanges,
    writer: &TextWriter,
    sites: &[SitePatch],
    on_step: &mut dyn FnMut(Step),
) -> Result<(u64, usize), PatchError> {
    code.begin_batch();
    let plan = protocol.plan(code, writer, sites)?;
    // One write window for the whole batch (an `mprotect` writer): opened before the first write, so
    // a text that cannot be made writable (a W^X policy) is refused with nothing written.
    // Only an mprotect writer needs the list (it is 16 bytes per site of fresh memory).
    let writes = if writer.needs_window() { protocol.writes(&plan) } else { Vec::new() };
    let first = writes.first().map_or(0, |w| w.0);
    let window = match writer.open_batch_window(&writes, |a| code.rx_mapping_of(a)) {
        // ENOMEM: a page between two written pages of one mapping, as last read, is no longer mapped
        // (the cache was stale): forget it, and cover the written pages alone (each confirmed mapped in
        // this batch's plan).
        Err(e) if e.raw_os_error() == Some(libc::ENOMEM) => {
            code.forget();
            writer.open_batch_window(&writes, |_| None)
        }
        other => other,
    }
    .map_err(|source| PatchError::NotWritable { addr: first, source })?;
    // SAFETY: `plan` was validated just now under the text lock, which the caller holds; the caller
    // vouches for the sites (see `patch_batch`).
    let syncs = unsafe { protocol.poke(writer, &plan, on_step) };
    let closed = window.close();
    let syncs = syncs?;
    closed.map_err(|source| PatchError::Write { addr: first, len: 0, source })?;
    protocol.read_back(&plan)?;
    let fallbacks = protocol.fallbacks(&plan);
    protocol.recycle(plan);
    Ok((syncs, fallbacks))
}
