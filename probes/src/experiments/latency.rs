//! Patch latency: how long one batch of N sites takes per protocol, with and without caller threads
//! running the sites, and — in the same run — what one sync costs, the floor of every protocol
//! (a bp batch can never beat 3 syncs, so `1 / (3 × sync)` is the best single-site patch rate).
//!
//! Each point times `patch_batch` from call to return (validation, writes, syncs, read-back) with
//! `Instant` (the vDSO clock: batches take microseconds to milliseconds, far above its resolution),
//! flipping the first N sites of a [`LiveSites`] between its two targets, after two warm-up batches.
//!
//! The median comes with its 95% interval from order statistics over the repeats
//! ([`crate::measure::interval`]). Traps and late traps are both counted over one window, from the
//! first timed repeat to a point where every caller has run on since the last one (so every handler
//! that began in the window has finished and counted itself): a late trap is one of those traps, so
//! `late_traps ≤ traps` holds by construction. (They used to be counted over two different windows:
//! traps as each batch's own count, which misses the late ones by definition, and late traps over
//! the whole loop.)

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::Builder;
use std::time::Instant;

use super::live_sites::{LiveSites, Placement, Tally};
use super::threads::{self, StopOnDrop};
use crate::code::{ArenaMode, WriteMethod};
use crate::measure::interval::{self, Interval};
use crate::measure::stats;
use callpatch_patcher::{late_trap_count, sync_cores, trap_count, PatchError, Protocol};
use callpatch_vocab::PatchSubject;

/// One measured point.
#[derive(Clone, Debug, PartialEq)]
pub struct LatencyPoint {
    /// The protocol, or `membarrier` for the sync alone.
    pub protocol: PatchSubject,
    /// Sites per batch (1 for `membarrier`).
    pub batch: usize,
    /// Caller threads running the sites meanwhile.
    pub callers: usize,
    /// Syncs per batch.
    pub syncs: u64,
    /// Fastest repeat, ns.
    pub latency_ns_min: f64,
    /// Median repeat, ns.
    pub latency_ns_median: f64,
    /// Lower end of the 95% interval on the median (`None` below 6 repeats).
    pub latency_ns_lo: Option<f64>,
    /// Upper end of the 95% interval on the median.
    pub latency_ns_hi: Option<f64>,
    /// Traps the handler emulated from the first timed repeat until every caller had run on after
    /// the last one (see the module doc).
    pub traps: u64,
    /// Of those, late ones (handled after their batch had ended): never more than `traps`.
    pub late_traps: u64,
    /// Aligned: sites patched through their trampoline, per batch.
    pub fallbacks: usize,
    /// Timed repeats.
    pub repeats: usize,
}

/// Minimum, median and the median's 95% interval (order statistics) of a sample, ns.
fn spread(ns: &[f64]) -> (f64, f64, Option<Interval>) {
    let s = stats::summarize(ns).expect("at least one repeat");
    (s.min, s.median, interval::median_interval(ns))
}

/// Repeats for a batch of `n` sites: many for small batches, fewer for large ones; `scale` < 1 for
/// quick runs. Always even, so the sites end where they started, and at least 6, the fewest with an
/// interval on the median.
pub fn repeats_for(n: usize, scale: f64) -> usize {
    let r = ((100_000.0 / n as f64).clamp(8.0, 1000.0) * scale).max(interval::MIN_SAMPLES as f64) as usize;
    r + r % 2
}

/// Heartbeats of the caller threads: each bumps its own counter after every chunk of its loop.
pub struct Running<'a> {
    beats: &'a [AtomicU64],
}

impl Running<'_> {
    /// Waits (at most a second) until every caller has completed a chunk since the call began: on a
    /// shared machine a caller can be off its CPU for a while, and a sample taken then would measure
    /// the patch without a concurrent caller. No-op without callers.
    pub fn wait(&self) {
        let seen: Vec<u64> = self.beats.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let deadline = Instant::now() + std::time::Duration::from_secs(1);
        while self.beats.iter().zip(&seen).any(|(b, &s)| b.load(Ordering::Relaxed) == s) && Instant::now() < deadline {
            std::hint::spin_loop();
        }
    }
}

/// Runs `f` while `callers` threads run `bed`'s loop, then checks their accounts were exact. Callers
/// are pinned to the allowed CPUs other than the one the calling thread runs on (when there are any),
/// so that they really run alongside the patcher and each sync has to interrupt them; `f` gets their
/// heartbeats to time only while they run ([`Running::wait`]).
pub fn with_callers<R>(bed: &LiveSites, callers: usize, f: impl FnOnce(&Running) -> R) -> Result<R, PatchError> {
    let me = crate::measure::pin::current_cpu();
    let others: Vec<usize> = crate::measure::pin::allowed_cores()
        .map(|c| c.iter().copied().filter(|&c| c as i64 != me).collect())
        .unwrap_or_default();
    let stop = AtomicBool::new(false);
    let beats: Vec<AtomicU64> = (0..callers).map(|_| AtomicU64::new(0)).collect();
    let sites = bed.sites().len() as u64;
    let (out, accounts) = std::thread::scope(|s| {
        // Stops the callers on every way out, so the scope's join cannot wait forever.
        let _stop = StopOnDrop(&stop);
        let mut threads = Vec::with_capacity(callers);
        for i in 0..callers {
            let (stop, beat) = (&stop, &beats[i]);
            let cpu = (!others.is_empty()).then(|| others[i % others.len()]);
            threads.push(threads::spawn(s, Builder::new(), &format!("caller thread {i}"), move || {
                if let Some(id) = cpu {
                    // Best effort: a shared machine may refuse, and the run is still valid.
                    core_affinity::set_for_current(core_affinity::CoreId { id });
                }
                let mut t = Box::new(Tally::default());
                let mut iterations = 0u64;
                let chunk = (4096 / sites).max(1);
                while !stop.load(Ordering::Relaxed) {
                    bed.run(&mut t, chunk);
                    iterations += chunk;
                    beat.fetch_add(1, Ordering::Relaxed);
                }
                (iterations * sites, *t)
            })?);
        }
        let running = Running { beats: &beats };
        // Every caller has started (one that ended without a beat has failed: its join says how).
        while beats.iter().zip(&threads).any(|(b, h)| b.load(Ordering::Relaxed) == 0 && !h.is_finished()) {
            std::thread::yield_now();
        }
        let out = f(&running);
        stop.store(true, Ordering::Relaxed);
        let accounts =
            threads.into_iter().map(|h| threads::join(h, "a caller thread")).collect::<Result<Vec<_>, _>>()?;
        Ok::<_, PatchError>((out, accounts))
    })?;
    for (calls, t) in accounts {
        if t.arrived() != calls || t.misdirected != 0 {
            return Err(PatchError::Miscount(format!("{}: a caller made {calls} calls: {t:?}", bed.protocol())));
        }
    }
    Ok(out)
}

/// The cost of one sync, `repeats` times, with `callers` threads running `bed` meanwhile.
pub fn measure_sync(bed: &LiveSites, callers: usize, repeats: usize) -> Result<LatencyPoint, PatchError> {
    let ns = with_callers(bed, callers, |running| {
        (0..repeats)
            .map(|_| {
                running.wait();
                let t = Instant::now();
                sync_cores().map(|_| t.elapsed().as_nanos() as f64)
            })
            .collect::<Result<Vec<_>, _>>()
    })??;
    let (min, median, ci) = spread(&ns);
    Ok(LatencyPoint {
        protocol: PatchSubject::Membarrier,
        batch: 1,
        callers,
        syncs: 1,
        latency_ns_min: min,
        latency_ns_median: median,
        latency_ns_lo: ci.map(|i| i.lo),
        latency_ns_hi: ci.map(|i| i.hi),
        traps: 0,
        late_traps: 0,
        fallbacks: 0,
        repeats,
    })
}

/// Batch latency of `protocol` for every size in `batches`, with `callers` threads running the sites.
/// `scale` scales the repeat counts ([`repeats_for`]). `each` sees every point as it is measured.
#[allow(clippy::too_many_arguments)]
pub fn measure_protocol(
    protocol: Protocol,
    batches: &[usize],
    callers: usize,
    mode: ArenaMode,
    method: WriteMethod,
    scale: f64,
    each: &mut dyn FnMut(&LatencyPoint),
) -> Result<Vec<LatencyPoint>, PatchError> {
    let io = PatchError::Build;
    let most = batches.iter().copied().max().unwrap_or(1);
    let bed = LiveSites::new(protocol, most, Placement::Spread, mode).map_err(io)?;
    let writer = bed.writer(method).map_err(io)?;
    with_callers(&bed, callers, |running| {
        let mut points = Vec::new();
        for &n in batches {
            let (forward, back) = (bed.retarget(n, 0, 1), bed.retarget(n, 1, 0));
            for batch in [&forward, &back] {
                bed.patch(&writer, protocol, batch)?; // warm-up: slots, caches, code ranges
            }
            let repeats = repeats_for(n, scale);
            // The window opens once every caller has run since the warm-up batches (their late traps
            // are done) and closes once every caller has run since the last timed batch.
            running.wait();
            let (traps0, late0) = (trap_count(), late_trap_count());
            let (mut ns, mut syncs, mut fallbacks) = (Vec::with_capacity(repeats), 0, 0);
            for r in 0..repeats {
                let batch = if r % 2 == 0 { &forward } else { &back };
                running.wait();
                let t = Instant::now();
                let report = bed.patch(&writer, protocol, batch)?;
                ns.push(t.elapsed().as_nanos() as f64);
                syncs = report.syncs;
                fallbacks = report.fallbacks;
            }
            running.wait();
            // Every handler that began in the window has returned by now (each caller ran on), so
            // both counts are complete and every late trap is in the total.
            let late_traps = late_trap_count() - late0;
            let traps = trap_count() - traps0;
            let (min, median, ci) = spread(&ns);
            let point = LatencyPoint {
                protocol: protocol.into(),
                batch: n,
                callers,
                syncs,
                latency_ns_min: min,
                latency_ns_median: median,
                latency_ns_lo: ci.map(|i| i.lo),
                latency_ns_hi: ci.map(|i| i.hi),
                traps,
                late_traps,
                fallbacks,
                repeats,
            };
            each(&point);
            points.push(point);
        }
        Ok(points)
    })?
}
