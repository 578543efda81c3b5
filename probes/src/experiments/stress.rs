//! The stress experiment: caller threads run a [`LiveSites`]'s sites in tight loops while the patcher flips
//! every site between the two targets, batch after batch. Each caller counts its own calls per target,
//! so at the end the accounting is exact per thread: `arrived == iterations × sites` (none lost) and
//! `misdirected == 0` (none went anywhere else).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::Builder;
use std::time::{Duration, Instant};

use super::live_sites::{LiveSites, Placement, Tally};
use super::threads::{self, StopOnDrop};
use crate::code::{ArenaMode, WriteMethod};
use callpatch_patcher::{late_trap_count, trap_count, PatchError, Protocol};

/// When the patcher stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// Stop after this long.
    pub time: Duration,
    /// Stop after this many batches, if sooner.
    pub batches: Option<u64>,
}

/// One stress run's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StressConfig {
    /// Protocol under test (naive is refused: see the hazard experiment).
    pub protocol: Protocol,
    /// Caller threads.
    pub callers: usize,
    /// Sites in the live sites; every batch patches all of them.
    pub sites: usize,
    /// How long to run.
    pub limit: Limit,
    /// Arena mapping and write method.
    pub mode: ArenaMode,
    /// Write method (must fit `mode`).
    pub method: WriteMethod,
}

impl StressConfig {
    /// `callers` threads, 64 sites spread over every line offset (so aligned has fallbacks), W^X.
    pub fn new(protocol: Protocol, callers: usize, limit: Limit) -> StressConfig {
        StressConfig { protocol, callers, sites: 64, limit, mode: ArenaMode::DualMap, method: WriteMethod::Alias }
    }
}

/// One caller's exact account.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallerAccount {
    /// Loop iterations completed (each runs every site once).
    pub iterations: u64,
    /// Calls made: `iterations × sites`.
    pub calls: u64,
    /// Where they arrived.
    pub tally: Tally,
}

impl CallerAccount {
    /// Calls that went somewhere other than a target.
    pub fn misdirected(&self) -> u64 {
        self.tally.misdirected
    }

    /// Calls that arrived nowhere (neither a target nor the catch zone).
    pub fn lost(&self) -> u64 {
        self.calls.saturating_sub(self.tally.arrived() + self.tally.misdirected)
    }

    /// Every call arrived at a target, exactly once.
    pub fn exact(&self) -> bool {
        self.tally.arrived() == self.calls && self.tally.misdirected == 0
    }
}

/// What a stress run did.
#[derive(Clone, Debug, PartialEq)]
pub struct StressOutcome {
    /// Protocol used.
    pub protocol: Protocol,
    /// Per caller thread.
    pub callers: Vec<CallerAccount>,
    /// Batches applied.
    pub batches: u64,
    /// Site patches applied (`batches × sites`).
    pub patches: u64,
    /// Aligned: fallbacks per batch.
    pub fallbacks: usize,
    /// Wall time of the patching phase.
    pub seconds: f64,
    /// Traps emulated meanwhile (process-wide).
    pub traps: u64,
    /// Of those, late ones.
    pub late_traps: u64,
}

impl StressOutcome {
    /// Calls made by all callers.
    pub fn calls(&self) -> u64 {
        self.callers.iter().map(|c| c.calls).sum()
    }
    /// Misdirected calls, all callers.
    pub fn misdirected(&self) -> u64 {
        self.callers.iter().map(CallerAccount::misdirected).sum()
    }
    /// Lost calls, all callers.
    pub fn lost(&self) -> u64 {
        self.callers.iter().map(CallerAccount::lost).sum()
    }
    /// Every caller's account is exact.
    pub fn passed(&self) -> bool {
        self.callers.iter().all(CallerAccount::exact)
    }
}

/// Iterations per caller chunk between checks of the stop flag.
const CHUNK: u64 = 64;

/// Runs the experiment. Callers start first; the patcher begins once each has completed a chunk, so
/// every batch is applied under live callers.
pub fn run(cfg: &StressConfig) -> Result<StressOutcome, PatchError> {
    if cfg.protocol == Protocol::Naive {
        return Err(PatchError::Unsupported {
            addr: 0,
            protocol: "naive",
            reason: "naive patching is unsafe by design; `callpatch hazard` runs it in a child process".into(),
        });
    }
    let io = PatchError::Build;
    let bed = LiveSites::new(cfg.protocol, cfg.sites, Placement::Spread, cfg.mode).map_err(io)?;
    let writer = bed.writer(cfg.method).map_err(io)?;
    let forward = bed.retarget(cfg.sites, 0, 1);
    let back = bed.retarget(cfg.sites, 1, 0);
    let stop = AtomicBool::new(false);
    let started = AtomicUsize::new(0);
    let sites = cfg.sites as u64;

    std::thread::scope(|s| {
        // Stops the callers on every way out, so the scope's join cannot wait forever.
        let _stop = StopOnDrop(&stop);
        let mut callers = Vec::with_capacity(cfg.callers);
        for i in 0..cfg.callers {
            let (bed, stop, started) = (&bed, &stop, &started);
            callers.push(threads::spawn(s, Builder::new(), &format!("caller thread {i}"), move || {
                let mut tally = Box::new(Tally::default());
                let mut iterations = 0;
                let mut first = true;
                while !stop.load(Ordering::Relaxed) {
                    bed.run(&mut tally, CHUNK);
                    iterations += CHUNK;
                    if first {
                        started.fetch_add(1, Ordering::SeqCst);
                        first = false;
                    }
                }
                CallerAccount { iterations, calls: iterations * sites, tally: *tally }
            })?);
        }
        // Every caller has started (one that ended before its first chunk has failed: its join says how).
        while started.load(Ordering::SeqCst) < cfg.callers && !callers.iter().any(|h| h.is_finished()) {
            std::thread::yield_now();
        }
        let (traps, late) = (trap_count(), late_trap_count());
        let start = Instant::now();
        let mut batches = 0u64;
        let mut fallbacks = 0;
        let patched = (|| {
            while start.elapsed() < cfg.limit.time && cfg.limit.batches.is_none_or(|n| batches < n) {
                let batch = if batches & 1 == 0 { &forward } else { &back };
                fallbacks = bed.patch(&writer, cfg.protocol, batch)?.fallbacks;
                batches += 1;
            }
            Ok::<_, PatchError>(())
        })();
        let seconds = start.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        let callers =
            callers.into_iter().map(|h| threads::join(h, "a caller thread")).collect::<Result<Vec<_>, _>>()?;
        patched?;
        Ok(StressOutcome {
            protocol: cfg.protocol,
            callers,
            batches,
            patches: batches * sites,
            fallbacks,
            seconds,
            traps: trap_count() - traps,
            late_traps: late_trap_count() - late,
        })
    })
}
