//! The hazard experiment: why the protocols exist. One call site whose rel32 crosses a cache line is
//! rewritten back and forth while another thread executes it in a loop, by a writer with no protocol
//! (byte-wise copy, or one 4-byte store split by the line) or by `bp`.
//!
//! Hardware fact: a store that spans two cache lines is performed as two stores, and instruction fetch
//! on another core may see one without the other; byte-wise copies open a window between every byte.
//! The executing core then runs a call whose rel32 is a mix of old and new bytes: a *torn* call.
//!
//! Layout: the site sits at byte 61 of a line (`e8` at 61, rel32 at 62..66: two bytes on each side).
//! The two targets differ in rel32 bytes 0, 1 and 2 (by `+0x40`, `+0x01`, `+0x01`, with no carry), so
//! every mix of old and new bytes is a distinct address at least 64 bytes from either target, inside an
//! `int3`-filled catch zone ([`super::catch`]): a torn call traps, is counted in the executor's tally
//! and returns. This is checked when the layout is built, for all 16 byte mixes. Run it in a child
//! process all the same (`callpatch hazard` does): a fault the layout did not foresee is contained.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::catch::CatchZone;
use super::live_sites::{emit_tail, emit_target, run_loop, Tally, TARGETS};
use super::threads::{self, StopOnDrop};
use crate::code::insn::REL32_LEN;
use crate::code::{decode, encode, Arena, ArenaMode, Insn, TextWriter, CACHE_LINE};
use callpatch_patcher::naive::store_rel32;
use callpatch_patcher::{forget_sites, patch_batch, trap_count, PatchError, Protocol, SitePatch};
use callpatch_vocab::crossing::rel32_crosses;

pub use callpatch_vocab::HazardWriter;

/// Where the site's rel32 starts in its line: bytes 62, 63 | 64, 65.
pub const SITE_LINE_OFFSET: usize = 61;
/// The targets' rel32 difference: bytes 0 and 1 (first line) and byte 2 (second line) change.
const DELTA: usize = 0x0001_0140;

/// The executing site, its two targets and the zone that catches torn calls.
#[derive(Debug)]
pub struct HazardSite {
    _zone: CatchZone,
    arena: Arena,
    site: usize,
    targets: [usize; TARGETS],
}

impl HazardSite {
    /// Builds the layout in an `Rwx` arena (the naive writers store directly, as a JIT would).
    pub fn new() -> Result<HazardSite, PatchError> {
        let io = PatchError::Build;
        let mut arena = Arena::new(1 << 20, ArenaMode::Rwx).map_err(io)?;
        // The site, with the loop tail right behind it: `call T; dec rsi; jnz site; ret`.
        let site = arena.alloc_at_line_offset(SITE_LINE_OFFSET, 5 + 16).map_err(io)?;
        let region = arena.alloc(DELTA + 4 * 4096, 4096).map_err(io)?;
        // First T0 at or after region+64 (16-byte steps) whose rel32 adds DELTA without a carry.
        let next = site + 5;
        let t0 = (0..4096)
            .map(|k| region + 64 + 16 * k)
            .find(|&t| {
                let d = (t - next) as u32;
                (d & 0xff) < 0xc0 && (d >> 8 & 0xff) < 0xff && (d >> 16 & 0xff) < 0xff
            })
            .ok_or_else(|| PatchError::Build(std::io::Error::other("no carry-free target placement")))?;
        let targets = [t0, t0 + DELTA];
        for (k, &t) in targets.iter().enumerate() {
            emit_target(&mut arena, t, k).map_err(io)?;
        }
        let call = encode(Insn::Call(t0), site).map_err(|e| PatchError::Build(std::io::Error::other(e)))?;
        arena.write(site, &call).map_err(io)?;
        emit_tail(&mut arena, site + 5, site).map_err(io)?;
        // SAFETY: only this experiment's caller runs the arena, with `rdi` at its counter block (the
        // tally after the TARGETS counters) and entering targets by a `call`; the zone is dropped
        // before the arena (field order).
        let zone = unsafe { CatchZone::register(arena.base(), arena.len(), 8 * TARGETS) }?;
        let h = HazardSite { _zone: zone, arena, site, targets };
        h.check_every_mix_is_caught()?;
        Ok(h)
    }

    /// Site address.
    pub fn site(&self) -> usize {
        self.site
    }

    /// Target addresses.
    pub fn targets(&self) -> [usize; TARGETS] {
        self.targets
    }

    /// Whether the site's rel32 crosses a cache line (it must, by construction).
    pub fn crosses_line(&self) -> bool {
        rel32_crosses(self.site as u64, REL32_LEN as u64, CACHE_LINE as u64)
    }

    /// Every mix of old and new rel32 bytes is a target or a caught `int3` well clear of the targets.
    fn check_every_mix_is_caught(&self) -> Result<(), PatchError> {
        let enc = |t| encode(Insn::Call(t), self.site).expect("in range");
        let (a, b) = (enc(self.targets[0]), enc(self.targets[1]));
        for mask in 0u32..16 {
            // Byte i of the rel32 (site byte i+1) comes from the new call when bit i is set.
            let bytes: Vec<u8> = (0..5).map(|i| if i > 0 && mask >> (i - 1) & 1 == 1 { b[i] } else { a[i] }).collect();
            let Some(Insn::Call(t)) = decode(&bytes, self.site) else {
                return Err(PatchError::Build(std::io::Error::other(format!("byte mix {mask:04b} is not a call"))));
            };
            let is_target = self.targets.contains(&t);
            let clear = self.targets.iter().all(|&x| t.abs_diff(x) >= 64);
            let caught = self.arena.contains(t, 1) && self.arena.read(t, 1)[0] == crate::code::insn::INT3;
            if !(is_target || clear && caught) {
                return Err(PatchError::Build(std::io::Error::other(format!(
                    "byte mix {mask:04b} lands at {t:#x}, not in the catch zone"
                ))));
            }
        }
        Ok(())
    }

    fn run(&self, tally: &mut Tally, iterations: u64) {
        // SAFETY: `site` starts the loop `call T; dec rsi; jnz site; ret` emitted in `new`, in an arena
        // that lives as long as `self`; every byte mix of its rel32 lands on a target or in the zone.
        unsafe { run_loop(self.site, tally, iterations) }
    }
}

impl Drop for HazardSite {
    fn drop(&mut self) {
        // SAFETY: the arena is about to be unmapped and `&mut self` means no caller runs it.
        unsafe { forget_sites(self.arena.base(), self.arena.len()) };
    }
}

/// What one writer did to the executing site.
#[derive(Clone, Debug, PartialEq)]
pub struct HazardOutcome {
    /// The writer.
    pub writer: HazardWriter,
    /// Patches (flips of the site between the two targets).
    pub patches: u64,
    /// Calls the executor made meanwhile.
    pub calls: u64,
    /// Calls that ran a torn rel32 (caught in the zone).
    pub torn: u64,
    /// Calls that arrived nowhere (should be 0: neither a target nor the zone).
    pub lost: u64,
    /// Traps emulated by the bp handler meanwhile.
    pub traps: u64,
    /// Wall time of the writing phase.
    pub seconds: f64,
}

impl HazardOutcome {
    /// Torn calls per million patches.
    pub fn torn_per_million(&self) -> f64 {
        if self.patches == 0 {
            0.0
        } else {
            self.torn as f64 * 1e6 / self.patches as f64
        }
    }
}

/// Pins the calling thread to `cpu` if this process may run there; best effort (a shared machine may
/// refuse), since the experiment only needs the two threads to overlap, not a particular CPU.
fn pin(cpu: Option<usize>) {
    if let Some(id) = cpu {
        core_affinity::set_for_current(core_affinity::CoreId { id });
    }
}

/// Flips the site `patches` times (or until `time` passes) with `writer` while one thread executes it.
pub fn run(writer: HazardWriter, patches: u64, time: Duration) -> Result<HazardOutcome, PatchError> {
    let h = HazardSite::new()?;
    assert!(h.crosses_line());
    let w = TextWriter::for_arena(&h.arena);
    let cores: Vec<usize> = core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|c| c.id).collect();
    let (exec_cpu, write_cpu) = match cores.as_slice() {
        [.., a, b] => (Some(*a), Some(*b)),
        _ => (None, None),
    };
    let stop = AtomicBool::new(false);
    let running = AtomicBool::new(false);
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        let executor = threads::spawn(s, std::thread::Builder::new(), "the hazard's executor thread", || {
            pin(exec_cpu);
            let mut tally = Box::new(Tally::default());
            let mut iterations = 0u64;
            while !stop.load(Ordering::Relaxed) {
                h.run(&mut tally, 256);
                iterations += 256;
                running.store(true, Ordering::Relaxed);
            }
            (iterations, *tally)
        })?;
        pin(write_cpu);
        while !running.load(Ordering::Relaxed) {
            if executor.is_finished() {
                break; // it ended before running (a panic): the join below says so
            }
            std::thread::yield_now();
        }
        let traps = trap_count();
        let start = Instant::now();
        let mut done = 0u64;
        let result = (|| {
            while done < patches && (done & 1023 != 0 || start.elapsed() < time) {
                let (from, to) = if done & 1 == 0 { (0, 1) } else { (1, 0) };
                let new = Insn::Call(h.targets[to]);
                match writer {
                    // SAFETY: the experiment's own site, whose only caller counts torn calls in the zone.
                    HazardWriter::Naive(how) => unsafe { store_rel32(&w, how, h.site, new)? },
                    HazardWriter::Bp => {
                        let p = SitePatch { addr: h.site, old: Insn::Call(h.targets[from]), new };
                        // SAFETY: the experiment's own call site, retargeted to its other counting target.
                        unsafe { patch_batch(&w, Protocol::Bp, &[p])? };
                    }
                }
                done += 1;
            }
            Ok::<_, PatchError>(())
        })();
        let seconds = start.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        let (calls, tally) = threads::join(executor, "the hazard's executor thread")?;
        result?;
        Ok(HazardOutcome {
            writer,
            patches: done,
            calls,
            torn: tally.misdirected,
            lost: calls.saturating_sub(tally.arrived() + tally.misdirected),
            traps: trap_count() - traps,
            seconds,
        })
    })
}
