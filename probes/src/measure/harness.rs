//! The U/2U harness: cost per call from the difference of two unroll counts.
//!
//! A timed loop costs `t(U) = F + iters × (L + U × c)`: a fixed part `F` (the fences and TSC reads,
//! the call into the loop, counter reads), a per-iteration loop overhead `L`, and `U` calls of cost
//! `c`. Timing the same loop with 2U calls and subtracting cancels `F` and `L` exactly:
//! `c = (t(2U) − t(U)) / (U × iters)`. No empty-loop calibration is needed, and none of the timer's
//! own cost leaks into `c`.
//!
//! Each repeat times one U run and one 2U run back to back (order alternating between repeats, so a
//! slow drift in frequency or load hits both equally) and yields one paired estimate of `c`. Over R
//! repeats we keep the median (what a call typically costs, robust to the odd interrupted run) and p90
//! (the tail) of the paired estimates. The minimum is taken per loop instead: `(min t(2U) − min
//! t(U)) / (U × iters)`. Disturbances (interrupts, preemption, a cold cache) only ever add time, so
//! each loop's minimum is its least-disturbed run; the minimum of the *paired* differences would
//! instead pick the repeat whose U run was hit hardest, and can even be negative. If the median 2U run
//! is not slower than the median U run, the body does not scale with the unroll count and the
//! difference means nothing: that is a [`MeasureError::NonMonotonic`], not a number.
//!
//! Cycles here are TSC reference cycles (see [`super::tsc`]). Where the hardware group opens, the same
//! subtraction gives core cycles, instructions and branch misses per call; where it does not, those
//! are [`Counted::Unavailable`] with the reason.

use std::fmt;

use super::counters::{self, CounterGroup, ReadPath, Reading};
use super::stats::{self, Summary};
use super::{tsc, Knobs, MeasureError};

/// Which of the two loop bodies `run` must execute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unroll {
    /// U calls per iteration (`Knobs::unroll`).
    Single,
    /// 2U calls per iteration.
    Double,
}

impl Unroll {
    /// Calls per iteration for `unroll` = U.
    pub fn calls(self, unroll: u32) -> u64 {
        match self {
            Unroll::Single => u64::from(unroll),
            Unroll::Double => 2 * u64::from(unroll),
        }
    }
}

/// A counter-derived figure: a number, or why there is none. Displays as the number (3 decimals
/// unless a precision is given) or `unavailable (reason)` — never 0 for a missing counter.
#[derive(Clone, Debug, PartialEq)]
pub enum Counted {
    /// The counted value.
    Value(f64),
    /// Why there is none (no PMU, no permission, multiplexed, ...).
    Unavailable(String),
}

impl Counted {
    /// The number, if there is one.
    pub fn value(&self) -> Option<f64> {
        match self {
            Counted::Value(v) => Some(*v),
            Counted::Unavailable(_) => None,
        }
    }
}

impl fmt::Display for Counted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Counted::Value(v) => write!(f, "{:.*}", f.precision().unwrap_or(3), v),
            Counted::Unavailable(reason) => write!(f, "unavailable ({reason})"),
        }
    }
}

/// Cost of one call, as measured by [`per_call`].
#[derive(Clone, Debug, PartialEq)]
pub struct PerCall {
    /// Reference cycles (TSC ticks) per call: `cycles_min` from the fastest U and fastest 2U run,
    /// median and p90 over the paired per-repeat estimates (see the module doc). Not taken over the
    /// same sample as the median, so noise can put it a hair above the median.
    pub cycles_min: f64,
    /// Median of the per-repeat estimates.
    pub cycles_median: f64,
    /// 90th percentile of the per-repeat estimates.
    pub cycles_p90: f64,
    /// `cycles_median` in ns, through the calibrated TSC rate.
    pub ns_median: f64,
    /// Core cycles per call from the `cycles` counter (median), where hardware counters exist.
    pub core_cycles: Counted,
    /// Retired instructions per call (median), where hardware counters exist.
    pub instructions: Counted,
    /// Branch misses per call (median), where hardware counters exist.
    pub branch_misses: Counted,
    /// What the cycle columns count: [`tsc::TIMER_LABEL`].
    pub timer: String,
}

/// Raw result of [`measure`]: the TSC summary and, per event of the group given, its per-call median.
#[derive(Clone, Debug, PartialEq)]
pub struct Measured {
    /// Reference cycles per call.
    pub cycles: Summary,
    /// Median reference cycles per call in ns.
    pub ns_median: f64,
    /// Per-call medians of each event in the group, in the group's order.
    pub counts: Vec<Counted>,
    /// How the group was read (the last read; `None` without a group or if no read succeeded).
    pub read_path: Option<ReadPath>,
    /// Smallest fraction of a timed run's enabled time the group was on the PMU (1.0: never
    /// multiplexed).
    pub running_fraction: f64,
}

/// Measures the cost of one call of whatever `run` executes (see the module doc), with the hardware
/// group {cycles, instructions, branches, branch-misses} where it opens. `run(Unroll::Single, iters)`
/// must execute a loop of `iters` iterations of U calls, `run(Unroll::Double, iters)` the same loop
/// with 2U calls. Pin the thread first ([`super::pin_current_thread`]).
pub fn per_call(knobs: &Knobs, run: &mut dyn FnMut(Unroll, u64)) -> Result<PerCall, MeasureError> {
    let (m, core_cycles, instructions, branch_misses) = match counters::hardware_group() {
        Ok(mut g) => {
            let m = measure(knobs, Some(&mut g), run)?;
            // hardware_events() order: cycles, instructions, branches, branch-misses.
            let c = |i: usize| m.counts[i].clone();
            let (cy, ins, bm) = (c(0), c(1), c(3));
            (m, cy, ins, bm)
        }
        Err(e) => {
            let m = measure(knobs, None, run)?;
            let u = Counted::Unavailable(e.reason());
            (m, u.clone(), u.clone(), u)
        }
    };
    Ok(PerCall {
        cycles_min: m.cycles.min,
        cycles_median: m.cycles.median,
        cycles_p90: m.cycles.p90,
        ns_median: m.ns_median,
        core_cycles,
        instructions,
        branch_misses,
        timer: tsc::TIMER_LABEL.to_string(),
    })
}

/// The U/2U measurement with an optional counter group (any events, e.g. from `callpatch perf`):
/// warm-up, then `knobs.repeats` interleaved U/2U pairs. The group is enabled here and read just
/// outside each timed run, so its read cost never enters the TSC window (and cancels in the counts).
pub fn measure(
    knobs: &Knobs,
    mut group: Option<&mut CounterGroup>,
    run: &mut dyn FnMut(Unroll, u64),
) -> Result<Measured, MeasureError> {
    knobs.validate()?;
    let hz = tsc::hz()?;
    let iters = knobs.iterations;
    for _ in 0..knobs.warmup {
        run(Unroll::Single, iters);
        run(Unroll::Double, iters);
    }

    let n_events = group.as_ref().map_or(0, |g| g.events().len());
    let mut counter_failure: Option<String> = match group.as_deref_mut().map(|g| g.enable()) {
        Some(Err(e)) => Some(e.reason()),
        _ => None,
    };
    let mut running_fraction = 1.0f64;
    let mut read_path = None;
    let mut t_single = Vec::with_capacity(knobs.repeats as usize);
    let mut t_double = Vec::with_capacity(knobs.repeats as usize);
    let mut per_call = Vec::with_capacity(knobs.repeats as usize);
    let mut per_call_events: Vec<Vec<f64>> = vec![Vec::new(); n_events];

    for r in 0..knobs.repeats {
        let order = if r % 2 == 0 { [Unroll::Single, Unroll::Double] } else { [Unroll::Double, Unroll::Single] };
        let mut ticks = [0u64; 2];
        let mut deltas: [Option<Vec<f64>>; 2] = [None, None];
        for u in order {
            let slot = usize::from(u == Unroll::Double);
            let before = read_counters(&mut group, &mut counter_failure);
            let t0 = tsc::read();
            run(u, iters);
            let t1 = tsc::read();
            let after = read_counters(&mut group, &mut counter_failure);
            ticks[slot] = t1.wrapping_sub(t0);
            if let (Some(b), Some(a)) = (before, after) {
                read_path = Some(a.via);
                let enabled = a.time_enabled_ns.saturating_sub(b.time_enabled_ns);
                let running = a.time_running_ns.saturating_sub(b.time_running_ns);
                if running < enabled {
                    running_fraction = running_fraction.min(running as f64 / enabled as f64);
                }
                deltas[slot] = Some(a.values.iter().zip(&b.values).map(|(x, y)| x.wrapping_sub(*y) as f64).collect());
            }
        }
        let calls = f64::from(knobs.unroll) * iters as f64;
        t_single.push(ticks[0] as f64);
        t_double.push(ticks[1] as f64);
        per_call.push((ticks[1] as f64 - ticks[0] as f64) / calls);
        if let [Some(s), Some(d)] = &deltas {
            for (i, v) in per_call_events.iter_mut().enumerate() {
                v.push((d[i] - s[i]) / calls);
            }
        }
    }
    if let Some(g) = group {
        let _ = g.disable();
    }

    let single_median = stats::median(&t_single).expect("repeats >= 1");
    let double_median = stats::median(&t_double).expect("repeats >= 1");
    if double_median <= single_median {
        return Err(MeasureError::NonMonotonic { single_median, double_median });
    }
    let paired = stats::summarize(&per_call).expect("repeats >= 1");
    let fastest = |t: &[f64]| t.iter().copied().fold(f64::INFINITY, f64::min);
    let calls = f64::from(knobs.unroll) * iters as f64;
    let cycles = Summary { min: (fastest(&t_double) - fastest(&t_single)) / calls, ..paired };
    let counts = (0..n_events)
        .map(|i| {
            if let Some(reason) = &counter_failure {
                Counted::Unavailable(reason.clone())
            } else if running_fraction < 1.0 {
                Counted::Unavailable(format!(
                    "multiplexed: the group counted only {:.1}% of the time (time_running < time_enabled)",
                    100.0 * running_fraction
                ))
            } else {
                stats::median(&per_call_events[i])
                    .map_or_else(|| Counted::Unavailable("no reads".into()), Counted::Value)
            }
        })
        .collect();
    Ok(Measured { cycles, ns_median: cycles.median / hz * 1e9, counts, read_path, running_fraction })
}

/// Reads the group if there is one and it has not failed yet; records the first failure.
fn read_counters(group: &mut Option<&mut CounterGroup>, failure: &mut Option<String>) -> Option<Reading> {
    if failure.is_some() {
        return None;
    }
    let g = group.as_deref_mut()?;
    match g.read() {
        Ok(r) => Some(r),
        Err(e) => {
            *failure = Some(e.reason());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::arch::asm;

    /// `reps` times a chain of `N` dependent 64-bit `imul`s (latency 3 core cycles each on every
    /// Intel core since Core 2 and AMD since Zen), so one "call" costs N × 3 core cycles. The loop is
    /// inside the `asm!` so that `x` stays in a register: in an unoptimised test build a Rust loop
    /// keeps it on the stack, and the store-to-load round trip each repetition (about 20 TSC ticks on
    /// a Zen 3 guest) would join the chain.
    #[inline(never)]
    fn imul_chain<const N: usize>(reps: u64) -> u64 {
        let mut x: u64 = 3;
        if reps == 0 {
            return x;
        }
        // SAFETY: register-only arithmetic on `x` and the counter `n` (≥ 1, so the loop ends after
        // `reps` passes); no memory or stack is touched, flags are clobbered as `asm!` assumes.
        unsafe {
            asm!(
                "2:",
                ".rept {n}",
                "imul {x}, {x}",
                ".endr",
                "dec {c}",
                "jnz 2b",
                n = const N,
                x = inout(reg) x,
                c = inout(reg) reps => _,
                options(nomem, nostack)
            )
        };
        x
    }

    fn chain_cost<const N: usize>(knobs: &Knobs) -> Result<PerCall, MeasureError> {
        per_call(knobs, &mut |u, iters| {
            std::hint::black_box(imul_chain::<N>(iters * u.calls(knobs.unroll)));
        })
    }

    fn spin_ticks(ticks: u64) {
        let start = tsc::read();
        while tsc::read().wrapping_sub(start) < ticks {}
    }

    /// Up to three attempts: other load on a shared machine can disturb one attempt's median, but a
    /// wrong subtraction fails every attempt.
    fn within_three_attempts(mut attempt: impl FnMut() -> Result<(), String>) {
        let mut failures = Vec::new();
        for _ in 0..3 {
            match attempt() {
                Ok(()) => return,
                Err(e) => failures.push(e),
            }
        }
        panic!("all attempts failed: {failures:#?}");
    }

    #[test]
    fn subtraction_recovers_a_known_tsc_cost() {
        // A body that spins for exactly C TSC ticks per call: per call must come out as C, whatever
        // the fixed and per-iteration overheads are.
        const C: u64 = 200;
        let knobs = Knobs { unroll: 8, iterations: 20, repeats: 9, warmup: 1 };
        within_three_attempts(|| {
            let pc = per_call(&knobs, &mut |u, iters| spin_ticks(C * iters * u.calls(knobs.unroll))).unwrap();
            let err = (pc.cycles_median - C as f64).abs() / C as f64;
            if err < 0.03 {
                Ok(())
            } else {
                Err(format!("median {} ref cycles, expected {C}", pc.cycles_median))
            }
        });
    }

    #[test]
    fn subtraction_recovers_a_dependent_imul_chain() {
        crate::measure::pin_current_thread(None).unwrap();
        let knobs = Knobs { unroll: 8, iterations: 100, repeats: 15, warmup: 2 };
        within_three_attempts(|| {
            let n32 = chain_cost::<32>(&knobs).map_err(|e| e.to_string())?;
            let n64 = chain_cost::<64>(&knobs).map_err(|e| e.to_string())?;
            let ratio = n64.cycles_median / n32.cycles_median;
            // TSC ticks are reference cycles: 3 core cycles per imul is 1.5..6 ref cycles for a core
            // running at 0.5..2x the TSC rate; an overhead left in (no subtraction) would pull the
            // ratio below 2, a wrong divisor would move the per-imul figure by 2x or more.
            let per_imul = n32.cycles_median / 32.0;
            if (1.8..2.2).contains(&ratio) && (1.0..8.0).contains(&per_imul) {
                Ok(())
            } else {
                Err(format!("32 imuls: {n32:?}; 64 imuls: {n64:?}; ratio {ratio}, per imul {per_imul}"))
            }
        });
    }

    #[test]
    fn one_disturbed_run_does_not_drag_the_minimum() {
        // The third U run is "preempted" for 2M ticks: a paired minimum would be hugely negative; the
        // per-loop minimum and the median still give the spin's cost.
        const C: u64 = 200;
        let knobs = Knobs { unroll: 8, iterations: 20, repeats: 9, warmup: 0 };
        let mut singles = 0;
        let pc = per_call(&knobs, &mut |u, iters| {
            if u == Unroll::Single {
                singles += 1;
                if singles == 3 {
                    spin_ticks(2_000_000);
                }
            }
            spin_ticks(C * iters * u.calls(knobs.unroll))
        })
        .unwrap();
        assert!(pc.cycles_min > 0.5 * C as f64 && pc.cycles_min < 1.5 * C as f64, "{pc:?}");
        assert!(pc.cycles_median > 0.5 * C as f64 && pc.cycles_median < 1.5 * C as f64, "{pc:?}");
    }

    #[test]
    fn a_body_that_does_not_scale_is_rejected() {
        let knobs = Knobs { unroll: 4, iterations: 10, repeats: 5, warmup: 1 };
        let r = per_call(&knobs, &mut |u, _| {
            if u == Unroll::Single {
                spin_ticks(400_000);
            }
        });
        assert!(matches!(r, Err(MeasureError::NonMonotonic { .. })), "{r:?}");
    }

    #[test]
    fn zero_knobs_are_rejected() {
        let knobs = Knobs { unroll: 0, ..Knobs::quick() };
        assert!(matches!(per_call(&knobs, &mut |_, _| ()), Err(MeasureError::BadKnobs(_))));
    }

    #[test]
    fn counters_are_a_value_or_unavailable_with_reason() {
        let knobs = Knobs { unroll: 4, iterations: 20, repeats: 5, warmup: 1 };
        let pc = per_call(&knobs, &mut |u, iters| spin_ticks(100 * iters * u.calls(knobs.unroll))).unwrap();
        assert_eq!(pc.timer, "tsc-ref-cycles");
        for c in [&pc.instructions, &pc.branch_misses, &pc.core_cycles] {
            match c {
                Counted::Value(v) => assert!(v.is_finite(), "{c}"),
                Counted::Unavailable(reason) => {
                    assert!(reason.contains(": "), "reason lacks errno name: {reason}");
                    assert_eq!(c.to_string(), format!("unavailable ({reason})"));
                    assert_ne!(c.to_string(), "0");
                }
            }
        }
        if let Counted::Value(ins) = pc.instructions {
            // The spin loop retires at least a handful of instructions per 100 ticks.
            assert!(ins > 1.0, "instructions per call {ins}");
        }
    }

    #[test]
    fn software_counters_through_the_harness() {
        // The same subtraction on a software group: task-clock per call is the spin's time in ns.
        let mut g = counters::software_group().unwrap();
        let knobs = Knobs { unroll: 4, iterations: 20, repeats: 7, warmup: 1 };
        const C: u64 = 1000;
        let m = measure(&knobs, Some(&mut g), &mut |u, iters| spin_ticks(C * iters * u.calls(knobs.unroll))).unwrap();
        let ns_per_call = m.counts[0].value().expect("task-clock counted");
        let expect = C as f64 / tsc::hz().unwrap() * 1e9;
        assert!(ns_per_call > 0.5 * expect && ns_per_call < 2.0 * expect, "task-clock {ns_per_call} ns vs {expect}");
    }

    #[test]
    fn counted_display() {
        assert_eq!(Counted::Value(1.5).to_string(), "1.500");
        assert_eq!(format!("{:.1}", Counted::Value(2.26)), "2.3");
        assert_eq!(Counted::Unavailable("ENOENT: no PMU".into()).to_string(), "unavailable (ENOENT: no PMU)");
    }
}
