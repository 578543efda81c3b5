//! Core cycles without a PMU: the core clock estimated from a dependent chain of known latency.
//!
//! A chain of dependent register `add`s retires one per core cycle on every x86-64 core since the
//! P6 (latency 1; the chain allows no overlap, and a register-register `add` is never eliminated at
//! rename, unlike some `add reg, imm` on recent Intel cores). Timed with the same U/2U subtraction as
//! a call, it gives TSC ticks per core cycle, so `core_hz = tsc_hz / ticks_per_add` — the clock the
//! core actually ran at while the chain ran, which turbo, power limits and a busy sibling all move.
//! That is why it is measured in the same run as the calls (at its start and at its end) rather than
//! read from `/proc/cpuinfo` or assumed. It is an estimate: it assumes the calls ran at the clock
//! the chain ran at. Where a PMU exists, its `cycles` counter measures the same thing directly.

use std::arch::asm;

use super::disturb::Watch;
use super::stats;
use super::{tsc, MeasureError};

/// Dependent adds per loop iteration of the chain.
const CHAIN: u64 = 64;

/// `reps` iterations of `CHAIN` dependent adds; returns the chain's value so nothing is dead.
#[inline(never)]
fn add_chain(reps: u64) -> u64 {
    let mut x: u64 = 1;
    let y: u64 = std::hint::black_box(3);
    for _ in 0..reps {
        // SAFETY: register-only arithmetic on `x` and `y`; no memory or stack; flags clobbered (the
        // asm! default).
        unsafe { asm!(".rept 64", "add {x}, {y}", ".endr", x = inout(reg) x, y = in(reg) y, options(nomem, nostack)) };
    }
    x
}

/// The core clock as measured once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CoreClock {
    /// Estimated core clock, Hz.
    pub hz: f64,
    /// TSC ticks per core cycle (`tsc_hz / hz`).
    pub ticks_per_cycle: f64,
    /// Clean U/2U pairs the median was taken over.
    pub samples: usize,
}

/// Estimates the core clock now: `pairs` U/2U pairs of the add chain (U = `reps` iterations of 64
/// adds), runs with a context switch or a migration dropped, median of the per-add estimates.
pub fn estimate(reps: u64, pairs: usize) -> Result<CoreClock, MeasureError> {
    let hz = tsc::hz()?;
    std::hint::black_box(add_chain(2 * reps)); // warm up, and let the clock settle under load
    let mut per_add = Vec::with_capacity(pairs);
    for i in 0..pairs {
        let mut t = [0u64; 2];
        let mut clean = true;
        let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
        for slot in order {
            let w = Watch::start();
            let t0 = tsc::read();
            std::hint::black_box(add_chain(reps << slot));
            t[slot] = tsc::read().wrapping_sub(t0);
            clean &= w.finish().clean();
        }
        if clean && t[1] > t[0] {
            per_add.push((t[1] - t[0]) as f64 / (reps * CHAIN) as f64);
        }
    }
    let ticks_per_cycle = stats::median(&per_add)
        .ok_or_else(|| MeasureError::Tsc(format!("core clock: no clean add-chain pair of {pairs}")))?;
    Ok(CoreClock { hz: hz / ticks_per_cycle, ticks_per_cycle, samples: per_add.len() })
}

/// The default estimate: 21 pairs of 4000 × 64 adds (about 0.1 ms per U run at 2.5 GHz).
pub fn estimate_now() -> Result<CoreClock, MeasureError> {
    estimate(4000, 21)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_is_a_plausible_clock() {
        // No timed assertion: a core clock between 0.3 and 8 GHz, and the identity with the TSC rate.
        let c = estimate(2000, 9).unwrap();
        assert!((3e8..8e9).contains(&c.hz), "{c:?}");
        assert!((c.hz * c.ticks_per_cycle / tsc::hz().unwrap() - 1.0).abs() < 1e-9);
        assert!(c.samples >= 1);
    }
}
