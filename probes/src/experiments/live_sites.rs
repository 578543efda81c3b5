//! Live call sites for the experiments (stress, patch latency, tests, benches): a generated
//! caller that runs N patchable sites in a loop, and targets that count every call per thread.
//!
//! Layout in one arena (unwritten bytes are `int3`):
//! - site `i` at a chosen byte of a 64-byte line: `call T` (or `cs call T`), then `jmp` to site `i+1`;
//!   the last jumps to the loop tail `dec rsi; jnz site0; ret`. The caller is
//!   `extern "sysv64" fn(tally: *mut Tally, iterations: u64)`, so `rdi` holds the tally throughout;
//! - target `k`: `inc qword [rdi + 8k]; ret` — a per-thread, per-target count of calls that arrived;
//! - for the aligned protocol each site starts as `call tramp_i` and `tramp_i: jmp T`, with the
//!   trampoline 8-byte aligned so its own rel32 never crosses a word or a line.
//!
//! The whole arena is a catch zone ([`super::catch`]) tallying into [`Tally::misdirected`]: a call that
//! lands anywhere but a target is counted and returns. A caller's calls are all accounted for exactly
//! when `sum(hits) == iterations × sites` and `misdirected == 0`.

use std::io;

use iced_x86::code_asm::{qword_ptr, rdi, rsi, CodeAssembler};

use super::catch::CatchZone;
use crate::code::{encode, Arena, ArenaMode, Insn, TextWriter, WriteMethod, CACHE_LINE};
use callpatch_patcher::{
    forget_sites, patch_batch_stepped, site_insn, BatchReport, Granule, PatchError, Protocol, SitePatch, Step,
};

/// Targets per set of live sites (the patcher flips sites between them).
pub const TARGETS: usize = 2;

/// One caller thread's counters; the live sites' generated code writes them through `rdi`.
#[repr(C, align(64))]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Calls that arrived at target `k`.
    pub hits: [u64; TARGETS],
    /// Calls that arrived anywhere else in the arena (caught `int3`s).
    pub misdirected: u64,
}

impl Tally {
    /// Calls that arrived at a target.
    pub fn arrived(&self) -> u64 {
        self.hits.iter().sum()
    }
}

const MISDIRECTED_OFFSET: usize = 8 * TARGETS;

/// The arena mapping each write method patches: the RW alias needs a dual mapping, direct stores an
/// RWX arena, and mprotect windows or `/proc/self/mem` a sealed (RX) one.
pub fn arena_mode_for(method: WriteMethod) -> ArenaMode {
    match method {
        WriteMethod::Alias => ArenaMode::DualMap,
        WriteMethod::Direct => ArenaMode::Rwx,
        WriteMethod::Mprotect | WriteMethod::ProcMem => ArenaMode::Sealed,
    }
}

/// Where the sites sit in their cache lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Site `i` at line offset `(23 i + 3) mod 64`: every offset once per 64 sites, so 3 in 64 rel32s
    /// cross a line and 24 in 64 cross an 8-byte word.
    Spread,
    /// Every site at this line offset.
    At(usize),
}

impl Placement {
    fn offset(self, i: usize) -> usize {
        match self {
            Placement::Spread => (23 * i + 3) % CACHE_LINE,
            Placement::At(o) => o % CACHE_LINE,
        }
    }
}

/// A batch of changes to one set of live sites' own sites: made only by [`LiveSites::retarget`] (by construction) or
/// [`LiveSites::batch`] (checked), so patching it through [`LiveSites::patch`] is safe.
#[derive(Debug)]
pub struct LiveBatch<'a> {
    bed: &'a LiveSites,
    sites: Vec<SitePatch>,
}

impl std::ops::Deref for LiveBatch<'_> {
    type Target = [SitePatch];
    fn deref(&self) -> &[SitePatch] {
        &self.sites
    }
}

/// A generated caller with its sites, targets and catch zone.
#[derive(Debug)]
pub struct LiveSites {
    // Declared before `arena` so the zone is unregistered before the memory goes.
    _zone: CatchZone,
    arena: Arena,
    protocol: Protocol,
    sites: Vec<usize>,
    trampolines: Vec<usize>,
    targets: [usize; TARGETS],
    entry: usize,
}

fn assembled(
    ip: usize,
    build: impl FnOnce(&mut CodeAssembler) -> Result<(), iced_x86::IcedError>,
) -> io::Result<Vec<u8>> {
    let mut a = CodeAssembler::new(64).map_err(io::Error::other)?;
    build(&mut a).map_err(io::Error::other)?;
    a.assemble(ip as u64).map_err(io::Error::other)
}

fn encoded(insn: Insn, at: usize) -> io::Result<Vec<u8>> {
    encode(insn, at).map(|b| b.to_vec()).map_err(io::Error::other)
}

/// Emits target `k` at `at`: `inc qword [rdi + 8k]; ret`.
pub(crate) fn emit_target(arena: &mut Arena, at: usize, k: usize) -> io::Result<()> {
    let code = assembled(at, |a| {
        a.inc(qword_ptr(rdi + 8 * k as i32))?;
        a.ret()
    })?;
    arena.write(at, &code)
}

/// Emits the loop tail at `at`: `dec rsi; jnz head; ret`.
pub(crate) fn emit_tail(arena: &mut Arena, at: usize, head: usize) -> io::Result<()> {
    let code = assembled(at, |a| {
        a.dec(rsi)?;
        a.jne(head as u64)?;
        a.ret()
    })?;
    arena.write(at, &code)
}

/// Runs a generated loop `extern "sysv64" fn(tally, iterations)` at `entry`.
///
/// # Safety
/// `entry` must be such a loop, emitted by this module, whose code stays mapped during the call.
pub(crate) unsafe fn run_loop(entry: usize, tally: &mut Tally, iterations: u64) {
    if iterations == 0 {
        return; // `dec; jnz` would wrap around
    }
    // SAFETY: per the contract, `entry` is a function with this ABI; it only touches `*tally` (rdi),
    // the stack, rsi and flags.
    let f: extern "sysv64" fn(*mut Tally, u64) = unsafe { std::mem::transmute(entry) };
    f(tally, iterations);
}

impl LiveSites {
    /// Builds `sites` sites for `protocol` in a fresh arena mapped in `mode`, all calling target 0.
    pub fn new(protocol: Protocol, sites: usize, placement: Placement, mode: ArenaMode) -> io::Result<LiveSites> {
        assert!(sites > 0, "live sites need at least one site");
        let form = site_insn(protocol, 0);
        let aligned = matches!(protocol, Protocol::Aligned { .. });
        let per_site = CACHE_LINE + form.len() + 5 + if aligned { 8 } else { 0 };
        let mut arena = Arena::new(sites * per_site + 4 * 4096, mode)?;
        // Targets first, 1 KiB apart, inside the int3-filled zone.
        let region = arena.alloc(4096, 4096)?;
        let targets = [region + 256, region + 1280];
        for (k, &t) in targets.iter().enumerate() {
            emit_target(&mut arena, t, k)?;
        }
        let trampolines =
            if aligned { (0..sites).map(|_| arena.alloc(8, 8)).collect::<io::Result<Vec<_>>>()? } else { Vec::new() };
        let addrs = (0..sites)
            .map(|i| arena.alloc_at_line_offset(placement.offset(i), form.len() + 5))
            .collect::<io::Result<Vec<_>>>()?;
        let tail = arena.alloc(16, 16)?;
        for (i, &s) in addrs.iter().enumerate() {
            let callee = if aligned {
                arena.write(trampolines[i], &encoded(Insn::Jmp(targets[0]), trampolines[i])?)?;
                trampolines[i]
            } else {
                targets[0]
            };
            let call = site_insn(protocol, callee);
            arena.write(s, &encoded(call, s)?)?;
            let next = addrs.get(i + 1).copied().unwrap_or(tail);
            arena.write(s + call.len(), &encoded(Insn::Jmp(next), s + call.len())?)?;
        }
        emit_tail(&mut arena, tail, addrs[0])?;
        arena.seal()?;
        // SAFETY: only these live sites' caller loop runs the arena, keeping `rdi` at its counter block (with
        // the tally at MISDIRECTED_OFFSET) and entering every target by a `call`; the zone is dropped
        // before the arena (field order).
        let zone =
            unsafe { CatchZone::register(arena.base(), arena.len(), MISDIRECTED_OFFSET) }.map_err(io::Error::other)?;
        let entry = addrs[0];
        Ok(LiveSites { _zone: zone, arena, protocol, sites: addrs, trampolines, targets, entry })
    }

    /// The arena holding everything.
    pub fn arena(&self) -> &Arena {
        &self.arena
    }

    /// The protocol the sites were built for.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Site addresses, in execution order.
    pub fn sites(&self) -> &[usize] {
        &self.sites
    }

    /// Trampolines (aligned protocol only; `trampolines()[i]` belongs to `sites()[i]`).
    pub fn trampolines(&self) -> &[usize] {
        &self.trampolines
    }

    /// Target addresses.
    pub fn targets(&self) -> [usize; TARGETS] {
        self.targets
    }

    /// A writer for these live sites' arena with `method`, opened.
    pub fn writer(&self, method: WriteMethod) -> io::Result<TextWriter> {
        TextWriter::with_method(&self.arena, method)?.open()
    }

    /// The batch that moves the first `n` sites from target `from` to target `to`.
    pub fn retarget(&self, n: usize, from: usize, to: usize) -> LiveBatch<'_> {
        let form = |k: usize| site_insn(self.protocol, self.targets[k]);
        let sites = self.sites[..n].iter().map(|&addr| SitePatch { addr, old: form(from), new: form(to) }).collect();
        LiveBatch { bed: self, sites }
    }

    /// A batch of any changes to these live sites' sites and trampolines (for tests of validation), or
    /// `UnknownSite` when an address is not one of them or a new target is not one of the live sites'.
    pub fn batch(&self, sites: Vec<SitePatch>) -> Result<LiveBatch<'_>, PatchError> {
        for p in &sites {
            let ours = self.sites.contains(&p.addr) || self.trampolines.contains(&p.addr);
            if !ours || p.new.target().is_some_and(|t| !self.targets.contains(&t)) {
                return Err(PatchError::UnknownSite { addr: p.addr });
            }
        }
        Ok(LiveBatch { bed: self, sites })
    }

    /// Patches `batch` with `protocol`: the safe way to patch a set of live sites (the patcher validates the bytes).
    pub fn patch(&self, writer: &TextWriter, protocol: Protocol, batch: &LiveBatch) -> Result<BatchReport, PatchError> {
        self.patch_stepped(writer, protocol, batch, &mut |_| {})
    }

    /// [`LiveSites::patch`] with an observer after each synced step (see `patch_batch_stepped`).
    pub fn patch_stepped(
        &self,
        writer: &TextWriter,
        protocol: Protocol,
        batch: &LiveBatch,
        on_step: &mut dyn FnMut(Step),
    ) -> Result<BatchReport, PatchError> {
        assert!(std::ptr::eq(batch.bed, self), "a batch is patched through the bed that made it");
        // SAFETY: a `LiveBatch` holds only these live sites' sites (calls) and trampolines (jmps), retargeted to
        // its counting targets, which the live sites' callers enter by a call (`retarget`, `batch`).
        unsafe { patch_batch_stepped(writer, protocol, &batch.sites, on_step) }
    }

    /// Sites whose rel32 crosses a `granule` boundary.
    pub fn crossing(&self, granule: Granule) -> usize {
        let off = site_insn(self.protocol, 0).rel32_offset().expect("sites are branches");
        self.sites.iter().filter(|&&s| granule.crosses(s + off)).count()
    }

    /// Runs the caller loop: `iterations` passes over every site, counted into `tally`.
    pub fn run(&self, tally: &mut Tally, iterations: u64) {
        // SAFETY: `entry` is the loop emitted in `new`; the arena lives as long as `self`; patches go
        // through the protocols, which keep every site a valid call (misdirections land in the zone).
        unsafe { run_loop(self.entry, tally, iterations) }
    }
}

impl Drop for LiveSites {
    fn drop(&mut self) {
        // SAFETY: the arena is about to be unmapped and `&mut self` means no caller runs it: its
        // addresses are no longer sites.
        unsafe { forget_sites(self.arena.base(), self.arena.len()) };
    }
}
