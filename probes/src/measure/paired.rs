//! Paired, interleaved measurement: a flavor timed in alternation with its baseline, so that whatever
//! disturbs the machine (load, frequency, a noisy neighbour) hits both sides of a ratio.
//!
//! # The method
//!
//! - A **side** is one probe run through the U/2U harness contract (`run(Unroll, iters)`).
//! - A **block** of a side: `warmup` untimed U/2U pairs right after switching to it (its code and
//!   data back in the caches and predictors), then `block_runs` timed U/2U pairs, the order of U and
//!   2U alternating. Each timed run is watched for a context switch and a migration
//!   ([`super::disturb`]).
//! - A **block pair**: a block of the flavor and a block of the baseline back to back, the order
//!   alternating between pairs (AB BA AB …). In a block pair a run is dropped when it was switched out,
//!   migrated, or took longer than `gap_factor` × the fastest run of the same loop in the pair (a TSC
//!   gap: interrupts, or a hypervisor's steal, which the guest cannot otherwise see at µs scale). A
//!   block's estimate is (fastest clean t(2U) − fastest clean t(U)) / (U × iterations): disturbances
//!   only ever add time, and on a loaded guest about a third of 0.3 ms runs carry a ~20 µs hole that
//!   no switch count shows, so the median of three runs would still pick one up a good share of the
//!   time while the fastest of three almost never does.
//! - A **sample** is the ratio of the two block estimates of one block pair. It is *discarded* when
//!   a loop of either block has no clean run, or an estimate is not positive (the loop did not
//!   scale with the unroll: what used to abort a whole run as "non-monotonic").
//! - The row's ratio is the median of the samples with its 95% interval from order statistics
//!   ([`super::interval`]); the per-call cycles (min, median, p90) are order statistics of the same
//!   samples' flavor estimates, so min ≤ median ≤ p90 by construction.
//! - **At the floor**: a sample is kept only when both of its blocks ran at their floors
//!   ([`super::floor`]: the quiet-host cost, the baseline's learned over the whole run, the flavor's
//!   over this pair). One more than `floor_tolerance` above its floor was measured while a neighbour
//!   contended for the core, and the sample is discarded as `above floor`. Contention comes and goes
//!   within milliseconds too, so a block pair can straddle it: the baseline's side alone is not
//!   enough. Such block pairs do not count towards K.
//! - **Noisy**: the interval reaches more than `tolerance` (5%) from the median, fewer than 6
//!   samples were kept, more than `max_discarded` of the judged ones (kept or disturbed) were
//!   discarded as disturbed, or more than `max_above_floor` of all block pairs ran above the floor:
//!   then the host contended for the core most of the time, and a flavor whose own quiet state never
//!   showed has a floor that is not quiet (an indirect call read 1.05× direct so, against 1.00× in
//!   four quieter runs).
//! - **Sequential**: block pairs are timed until K of them were judged (at the floor, or disturbed)
//!   and the samples kept so far are not noisy, or `budget_s` seconds have passed (a contended
//!   stretch on the guest this was built on lasts up to a few seconds). More samples
//!   narrow the interval; a pair still noisy at the budget is reported with its note.
//!
//! Block estimates are the unit of resampling: consecutive runs are autocorrelated (a frequency
//! step, a neighbour's burst last milliseconds), block pairs far less so, and the interval assumes
//! independent samples.

use std::fmt;

use super::disturb::{RunMark, Watch};
use super::floor::Floor;
use super::harness::Unroll;
use super::interval::{self, Interval};
use super::stats::{self, Summary};
use super::{tsc, Knobs, MeasureError};

/// The knobs of the paired method (the per-side U and iterations are each side's [`Knobs`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairedKnobs {
    /// K: block pairs per attempt (samples before discards).
    pub pairs: u32,
    /// r: timed U/2U pairs per block.
    pub block_runs: u32,
    /// Untimed U/2U pairs at the start of each block.
    pub warmup: u32,
    /// Largest relative half-width of the ratio's interval that is not noisy.
    pub tolerance: f64,
    /// Largest fraction of discarded samples that is not noisy.
    pub max_discarded: f64,
    /// Largest fraction of all block pairs above the floor that is not noisy.
    pub max_above_floor: f64,
    /// A run longer than this times the fastest run of the same loop in its block pair is a gap.
    pub gap_factor: f64,
    /// A sample whose baseline estimate is more than this (relative) above the baseline's floor is
    /// discarded as measured on a contended core.
    pub floor_tolerance: f64,
    /// Longest time spent on one pair, in seconds, waiting for samples at the floor included.
    pub budget_s: f64,
}

impl PairedKnobs {
    /// The full measurement: 31 block pairs of 3 timed U/2U pairs per block.
    pub const FULL: PairedKnobs = PairedKnobs {
        pairs: 31,
        block_runs: 3,
        warmup: 1,
        tolerance: 0.05,
        max_discarded: 0.25,
        max_above_floor: 0.75,
        gap_factor: 1.5,
        floor_tolerance: 0.05,
        budget_s: 3.0,
    };

    /// [`PairedKnobs::FULL`].
    pub fn full() -> Self {
        PairedKnobs::FULL
    }

    /// `--quick`: 15 block pairs (the interval is then between the 4th and the 12th sample).
    pub const QUICK: PairedKnobs = PairedKnobs { pairs: 15, ..PairedKnobs::FULL };

    /// [`PairedKnobs::QUICK`].
    pub fn quick() -> Self {
        PairedKnobs::QUICK
    }

    fn validate(&self) -> Result<(), MeasureError> {
        if self.pairs == 0 || self.block_runs == 0 {
            return Err(MeasureError::BadKnobs("paired: pairs and block_runs must be at least 1".into()));
        }
        if !(self.budget_s.is_finite() && self.budget_s > 0.0) {
            return Err(MeasureError::BadKnobs("paired: budget_s must be a positive number of seconds".into()));
        }
        Ok(())
    }
}

/// One side of a pair: its knobs (U, iterations) and the code to run.
pub struct Side<'a> {
    /// U and iterations of this side (repeats and warm-up are the paired knobs').
    pub knobs: Knobs,
    /// Runs U or 2U calls per iteration, `iters` iterations (see [`super::per_call`]).
    pub run: &'a mut dyn FnMut(Unroll, u64),
}

/// One timed run: its TSC ticks and what happened around it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimedRun {
    /// TSC ticks of the run.
    pub ticks: u64,
    /// Switches and migration seen across it.
    pub mark: RunMark,
}

/// The timed runs of one block of one side.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Block {
    /// The U runs.
    pub single: Vec<TimedRun>,
    /// The 2U runs.
    pub double: Vec<TimedRun>,
    /// U × iterations: the calls the 2U run makes more than the U run.
    pub calls: f64,
}

/// Why a run was dropped or a sample discarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Disturbance {
    /// The thread moved to another CPU during a run.
    Migration,
    /// The thread was switched out during a run.
    ContextSwitch,
    /// A run took more than `gap_factor` × the fastest run of its loop in the block pair.
    Gap,
    /// An estimate was zero or negative: the 2U loop was not slower than the U loop.
    NotScaling,
    /// A side ran more than `floor_tolerance` above its floor: a contended core.
    AboveFloor,
}

impl Disturbance {
    /// The name used in notes.
    pub fn name(self) -> &'static str {
        match self {
            Disturbance::Migration => "migration",
            Disturbance::ContextSwitch => "context switch",
            Disturbance::Gap => "TSC gap",
            Disturbance::NotScaling => "2U not slower than U",
            Disturbance::AboveFloor => "above the floor",
        }
    }
}

/// Counts per [`Disturbance`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Migrations.
    pub migration: u32,
    /// Context switches.
    pub context_switch: u32,
    /// TSC gaps.
    pub gap: u32,
    /// Estimates that did not scale.
    pub not_scaling: u32,
    /// Samples with a side above its floor.
    pub above_floor: u32,
}

impl Counts {
    fn add(&mut self, d: Disturbance) {
        match d {
            Disturbance::Migration => self.migration += 1,
            Disturbance::ContextSwitch => self.context_switch += 1,
            Disturbance::Gap => self.gap += 1,
            Disturbance::NotScaling => self.not_scaling += 1,
            Disturbance::AboveFloor => self.above_floor += 1,
        }
    }

    /// All counts together.
    pub fn total(&self) -> u32 {
        self.disturbed() + self.above_floor
    }

    /// The disturbed ones: all but [`Counts::above_floor`].
    pub fn disturbed(&self) -> u32 {
        self.migration + self.context_switch + self.gap + self.not_scaling
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = [
            (self.context_switch, Disturbance::ContextSwitch),
            (self.migration, Disturbance::Migration),
            (self.gap, Disturbance::Gap),
            (self.not_scaling, Disturbance::NotScaling),
            (self.above_floor, Disturbance::AboveFloor),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, d)| format!("{n} {}", d.name()))
        .collect();
        f.write_str(&parts.join(", "))
    }
}

/// The per-call estimates of a kept sample: (flavor, baseline), TSC ticks per call.
pub type Estimates = (f64, f64);

/// Judges one block pair: drops disturbed runs (switch, migration, gap), and returns both blocks'
/// per-call estimates, or why the sample is discarded. `dropped` counts the runs dropped, by reason.
pub fn judge_pair(
    flavor: &Block,
    baseline: &Block,
    knobs: &PairedKnobs,
    dropped: &mut Counts,
) -> Result<Estimates, Disturbance> {
    let f = block_estimate(flavor, knobs, dropped)?;
    let b = block_estimate(baseline, knobs, dropped)?;
    if f <= 0.0 || b <= 0.0 {
        return Err(Disturbance::NotScaling);
    }
    Ok((f, b))
}

/// A block's estimate from each loop's fastest clean run; the first reason if a loop kept none.
fn block_estimate(block: &Block, knobs: &PairedKnobs, dropped: &mut Counts) -> Result<f64, Disturbance> {
    let mut fastest_clean = [0.0; 2];
    for (slot, runs) in [&block.single, &block.double].into_iter().enumerate() {
        // The gap rule compares with the fastest run the kernel did not interrupt.
        let fastest = runs.iter().filter(|r| r.mark.clean()).map(|r| r.ticks).min().unwrap_or(0) as f64;
        let mut clean = Vec::with_capacity(runs.len());
        let mut first_reason = None;
        for r in runs {
            let reason = if r.mark.migrated {
                Some(Disturbance::Migration)
            } else if r.mark.switches > 0 {
                Some(Disturbance::ContextSwitch)
            } else if r.ticks as f64 > knobs.gap_factor * fastest {
                Some(Disturbance::Gap)
            } else {
                None
            };
            match reason {
                Some(d) => {
                    dropped.add(d);
                    first_reason.get_or_insert(d);
                }
                None => clean.push(r.ticks as f64),
            }
        }
        // Disturbances only ever add time, so the fastest clean run of each loop is its least
        // disturbed one (on a loaded guest a third of the runs carry a ~20 µs hole: a median of
        // three would still catch one of them a good share of the time).
        if clean.is_empty() {
            return Err(first_reason.unwrap_or(Disturbance::Gap));
        }
        fastest_clean[slot] = clean.iter().copied().fold(f64::INFINITY, f64::min);
    }
    Ok((fastest_clean[1] - fastest_clean[0]) / block.calls)
}

/// Times one block of `side` (see the module doc).
fn time_block(side: &mut Side, knobs: &PairedKnobs) -> Block {
    let iters = side.knobs.iterations;
    for _ in 0..knobs.warmup {
        (side.run)(Unroll::Single, iters);
        (side.run)(Unroll::Double, iters);
    }
    let mut block = Block { calls: f64::from(side.knobs.unroll) * iters as f64, ..Block::default() };
    for i in 0..knobs.block_runs {
        let order = if i % 2 == 0 { [Unroll::Single, Unroll::Double] } else { [Unroll::Double, Unroll::Single] };
        for u in order {
            let watch = Watch::start();
            let t0 = tsc::read();
            (side.run)(u, iters);
            let t1 = tsc::read();
            let run = TimedRun { ticks: t1.wrapping_sub(t0), mark: watch.finish() };
            match u {
                Unroll::Single => block.single.push(run),
                Unroll::Double => block.double.push(run),
            }
        }
    }
    block
}

/// The outcome of a paired measurement.
#[derive(Clone, Debug, PartialEq)]
pub struct Paired {
    /// Order statistics of the flavor's block estimates (TSC ticks per call) over the kept samples.
    pub flavor: Option<Summary>,
    /// The same for the baseline.
    pub baseline: Option<Summary>,
    /// Median ratio and its 95% interval (`None` below 6 kept samples).
    pub ratio: Option<Interval>,
    /// Median ratio even where there is no interval (1–5 kept samples).
    pub ratio_median: Option<f64>,
    /// Samples kept.
    pub samples: u32,
    /// Samples discarded, by the reason of the first dropped run (or not scaling).
    pub discarded: Counts,
    /// Runs dropped (within kept and discarded samples alike), by reason.
    pub dropped_runs: Counts,
    /// See the module doc.
    pub noisy: bool,
    /// Why it is noisy, or unmeasured; `None` when neither.
    pub note: Option<String>,
    /// Block pairs timed in all (kept, disturbed and above the floor).
    pub block_pairs: u32,
}

/// Summarises the samples of a measurement: `estimates` of the kept samples, `discarded` by reason.
pub fn summarize_samples(
    estimates: &[Estimates],
    discarded: Counts,
    dropped_runs: Counts,
    knobs: &PairedKnobs,
) -> Paired {
    let ratios: Vec<f64> = estimates.iter().map(|(f, b)| f / b).collect();
    let flavor: Vec<f64> = estimates.iter().map(|e| e.0).collect();
    let baseline: Vec<f64> = estimates.iter().map(|e| e.1).collect();
    let ratio = interval::median_interval(&ratios);
    let n = estimates.len() as u32;
    let total = n + discarded.total();
    // Above-floor block pairs are extra ones (they do not count towards K): the disturbed share is of
    // the others.
    let judged = n + discarded.disturbed();
    let mut why = Vec::new();
    if n == 0 {
        why.push(format!("no clean sample in {total} block pairs ({discarded})"));
    } else if ratio.is_none() {
        why.push(format!(
            "only {n} clean samples of {total} ({discarded}), fewer than {} for an interval",
            interval::MIN_SAMPLES
        ));
    }
    if let Some(i) = ratio.filter(|i| i.wider_than(knobs.tolerance)) {
        why.push(format!(
            "interval ±{:.1}% wider than ±{:.0}%",
            100.0 * i.relative_half_width(),
            100.0 * knobs.tolerance
        ));
    }
    if f64::from(discarded.above_floor) > knobs.max_above_floor * f64::from(total) {
        why.push(format!(
            "{} of {total} block pairs above the floor (the host contended for this core most of the time)",
            discarded.above_floor
        ));
    }
    if f64::from(discarded.disturbed()) > knobs.max_discarded * f64::from(judged) {
        why.push(format!("{} of {judged} samples discarded ({discarded})", discarded.disturbed()));
    }
    Paired {
        flavor: stats::summarize(&flavor),
        baseline: stats::summarize(&baseline),
        ratio,
        ratio_median: stats::median(&ratios),
        samples: n,
        discarded,
        dropped_runs,
        noisy: !why.is_empty(),
        note: (!why.is_empty()).then(|| why.join("; ")),
        block_pairs: total,
    }
}

/// Measures `flavor` in alternation with `baseline`, sequentially (see the module doc): block pairs,
/// the order alternating, until K were judged and the kept samples are not noisy, or `budget_s` has
/// passed (at least K block pairs are always timed). `floor` is the baseline's, carried from row to row of a run (a fresh one learns from this
/// pair alone); the samples are judged against it as it stands at the end. Never fails on a
/// disturbance: an unmeasurable pair comes back with `samples` 0 and a note. Pin the thread first.
pub fn measure_paired(
    flavor: &mut Side,
    baseline: &mut Side,
    knobs: &PairedKnobs,
    floor: &mut Floor,
) -> Result<Paired, MeasureError> {
    knobs.validate()?;
    flavor.knobs.validate()?;
    baseline.knobs.validate()?;
    tsc::hz()?;
    let mut estimates: Vec<Estimates> = Vec::with_capacity(knobs.pairs as usize);
    let (mut discarded, mut dropped) = (Counts::default(), Counts::default());
    // The flavor's own floor, from this pair's samples.
    let mut own = Floor::new();
    let judge = |estimates: &[Estimates], discarded: Counts, floor: &Floor, own: &Floor| {
        let tol = knobs.floor_tolerance;
        let (kept, above): (Vec<Estimates>, Vec<Estimates>) =
            estimates.iter().partition(|e| floor.admits(e.1, tol) && own.admits(e.0, tol));
        let discarded = Counts { above_floor: above.len() as u32, ..discarded };
        (kept, discarded)
    };
    let start = std::time::Instant::now();
    let mut out_of_time = false;
    for k in 0.. {
        let (kept, d) = judge(&estimates, discarded, floor, &own);
        if kept.len() as u32 + d.disturbed() >= knobs.pairs && !summarize_samples(&kept, d, dropped, knobs).noisy {
            break;
        }
        if k >= knobs.pairs && start.elapsed().as_secs_f64() > knobs.budget_s {
            out_of_time = true;
            break;
        }
        let (f, b) = if k % 2 == 0 {
            let f = time_block(flavor, knobs);
            (f, time_block(baseline, knobs))
        } else {
            let b = time_block(baseline, knobs);
            (time_block(flavor, knobs), b)
        };
        match judge_pair(&f, &b, knobs, &mut dropped) {
            Ok(e) => {
                floor.observe(e.1);
                own.observe(e.0);
                estimates.push(e);
            }
            Err(d) => discarded.add(d),
        }
    }
    let (kept, discarded) = judge(&estimates, discarded, floor, &own);
    let mut p = summarize_samples(&kept, discarded, dropped, knobs);
    if p.noisy && out_of_time {
        let note = p.note.take().unwrap_or_default();
        p.note = Some(format!("{note} (after {} block pairs in {:.0} s, the budget)", p.block_pairs, knobs.budget_s));
    }
    Ok(p)
}

/// Lowers `knobs.iterations` (never raises it) so that one 2U run of `run` lasts about `max_ticks` at
/// most: a flavor that costs microseconds per call (`trap`) would otherwise take seconds per block.
pub fn fit_iterations(knobs: Knobs, run: &mut dyn FnMut(Unroll, u64), max_ticks: u64) -> Knobs {
    run(Unroll::Double, 1); // fault in, warm up
    let t0 = tsc::read();
    run(Unroll::Double, 1);
    let per_iteration = tsc::read().wrapping_sub(t0).max(1);
    let fit = (max_ticks / per_iteration).max(1);
    Knobs { iterations: knobs.iterations.min(fit), ..knobs }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(ticks: u64) -> TimedRun {
        TimedRun { ticks, mark: RunMark::default() }
    }

    fn block(single: &[u64], double: &[u64], calls: f64) -> Block {
        Block {
            single: single.iter().map(|&t| run(t)).collect(),
            double: double.iter().map(|&t| run(t)).collect(),
            calls,
        }
    }

    /// The knobs of a `--quick` run.
    const K: PairedKnobs = PairedKnobs::QUICK;

    #[test]
    fn a_clean_pair_gives_the_subtraction_of_the_medians() {
        let f = block(&[1000, 1010, 990], &[3000, 3020, 2990], 100.0); // (2990 - 990) / 100 = 20 per call
        let b = block(&[1000, 1000, 1000], &[2000, 2000, 2000], 100.0); // 10 per call
        let mut dropped = Counts::default();
        assert_eq!(judge_pair(&f, &b, &K, &mut dropped), Ok((20.0, 10.0)));
        assert_eq!(dropped.total(), 0);
    }

    #[test]
    fn disturbed_runs_are_dropped_and_a_minority_is_tolerated() {
        // One U run preempted (a switch; it even looks fast: the count, not the time, drops it), one
        // 2U run hit by a gap without a switch (a hypervisor's steal): both dropped.
        let mut f = block(&[1000, 500, 1000], &[3000, 3000, 4600], 100.0);
        f.single[1].mark.switches = 1;
        let b = block(&[1000, 1000, 1000], &[2000, 2000, 2000], 100.0);
        let mut dropped = Counts::default();
        assert_eq!(judge_pair(&f, &b, &K, &mut dropped), Ok((20.0, 10.0)));
        assert_eq!((dropped.context_switch, dropped.gap), (1, 1));
    }

    #[test]
    fn a_loop_without_a_clean_run_discards_the_sample_with_its_reason() {
        let mut f = block(&[1000, 1000, 1000], &[3000, 3000, 3000], 100.0);
        f.double[0].mark.migrated = true;
        f.double[2].mark.migrated = true;
        let b = block(&[1000, 1000, 1000], &[2000, 2000, 2000], 100.0);
        let mut dropped = Counts::default();
        assert_eq!(judge_pair(&f, &b, &K, &mut dropped), Ok((20.0, 10.0)), "one clean run is enough");
        assert_eq!(dropped.migration, 2);
        f.double[1].mark.switches = 3;
        assert_eq!(judge_pair(&f, &b, &K, &mut Counts::default()), Err(Disturbance::Migration));
    }

    #[test]
    fn a_loop_that_does_not_scale_is_a_discarded_sample_not_an_error() {
        let f = block(&[2000, 2000, 2000], &[2000, 2000, 1990], 100.0);
        let b = block(&[1000, 1000, 1000], &[2000, 2000, 2000], 100.0);
        assert_eq!(judge_pair(&f, &b, &K, &mut Counts::default()), Err(Disturbance::NotScaling));
    }

    #[test]
    fn known_disturbed_samples_leave_the_interval_and_flag_what_they_must() {
        // 15 block pairs: 12 clean with ratios 1.19..1.21, 3 disturbed (a switch in 2 of 3 runs).
        let clean: Vec<Estimates> = (0..12).map(|i| (12.0 + 0.02 * f64::from(i - 6), 10.0)).collect();
        let discarded = Counts { context_switch: 3, ..Counts::default() };
        let p = summarize_samples(&clean, discarded, discarded, &K);
        let i = p.ratio.unwrap();
        assert_eq!((p.samples, p.discarded.total()), (12, 3));
        assert!(i.lo <= i.median && i.median <= i.hi, "{i:?}");
        assert!((i.median - 1.2).abs() < 0.002 && i.lo > 1.19 && i.hi < 1.21, "{i:?}");
        assert!(!p.noisy, "3 of 15 discarded is within 25%: {p:?}");
        let s = p.flavor.unwrap();
        assert!(s.min <= s.median && s.median <= s.p90, "{s:?}");

        // 5 of 15 discarded: too many, noisy, and the note says why.
        let discarded = Counts { gap: 4, migration: 1, ..Counts::default() };
        let p = summarize_samples(&clean[..10], discarded, discarded, &K);
        assert!(
            p.noisy && p.note.as_deref().unwrap().contains("5 of 15 samples discarded (1 migration, 4 TSC gap)"),
            "{p:?}"
        );

        // A few wild samples stay outside the interval; eight of twenty, all on one side, would widen
        // it past ±5% (which is why disturbed samples are discarded rather than trusted to the median).
        let mut kept = clean.clone();
        kept.extend([(30.0, 10.0), (35.0, 10.0), (6.0, 10.0), (40.0, 10.0), (5.0, 10.0), (50.0, 10.0)]);
        assert!(!summarize_samples(&kept, Counts::default(), Counts::default(), &K).noisy);
        kept.truncate(12);
        kept.extend([
            (30.0, 10.0),
            (35.0, 10.0),
            (36.0, 10.0),
            (40.0, 10.0),
            (45.0, 10.0),
            (50.0, 10.0),
            (31.0, 10.0),
            (32.0, 10.0),
        ]);
        let p = summarize_samples(&kept, Counts::default(), Counts::default(), &K);
        assert!(p.noisy && p.note.unwrap().contains("wider than ±5%"));
    }

    #[test]
    fn no_clean_sample_is_a_note_not_a_number() {
        let p = summarize_samples(&[], Counts { not_scaling: 15, ..Counts::default() }, Counts::default(), &K);
        assert!(p.flavor.is_none() && p.ratio.is_none() && p.ratio_median.is_none() && p.noisy);
        assert!(p.note.unwrap().contains("no clean sample in 15 block pairs (15 2U not slower than U)"));
    }

    fn spin(ticks: u64) {
        let start = tsc::read();
        while tsc::read().wrapping_sub(start) < ticks {}
    }

    #[test]
    fn block_pairs_on_a_contended_core_are_set_aside_by_the_floor() {
        // Two pairs in three run "contended": the baseline spins 30% longer and the flavor 10% longer,
        // as a front-end-bound direct call and a retpoline do on the guest this was built on. The
        // median over all block pairs would be the contended ratio 330/260 = 1.27; at the floor it is
        // the quiet one, 300/200 = 1.5. A pair is 16 runs: 2 blocks of (1 warm-up + 3 timed) U/2U pairs.
        crate::measure::pin_current_thread(None).unwrap();
        let knobs = Knobs { unroll: 4, iterations: 50, repeats: 1, warmup: 0 };
        let runs = std::cell::Cell::new(0u64);
        let contended = || !(runs.get() / 16).is_multiple_of(3);
        let mut f = |u: Unroll, iters: u64| {
            let per_call = if contended() { 330 } else { 300 };
            spin(per_call * iters * u.calls(4));
            runs.set(runs.get() + 1);
        };
        let mut b = |u: Unroll, iters: u64| {
            let per_call = if contended() { 260 } else { 200 };
            spin(per_call * iters * u.calls(4));
            runs.set(runs.get() + 1);
        };
        let (f, b) = (&mut Side { knobs, run: &mut f }, &mut Side { knobs, run: &mut b });
        let mut floor = Floor::new();
        let p = measure_paired(f, b, &K, &mut floor).unwrap();
        let (n, above) = floor.above(K.floor_tolerance);
        assert!(above * 2 >= n, "most baseline blocks are above the floor: {above} of {n}");
        assert!(p.discarded.above_floor > 0, "{p:?}");
        if !p.noisy {
            let i = p.ratio.unwrap();
            assert!((1.45..1.55).contains(&i.median), "the quiet ratio, not the contended one: {p:?}");
        }
    }

    #[test]
    fn a_real_pair_of_known_costs_gives_their_ratio() {
        // Spins of 300 and 200 ticks per "call": ratio 1.5 whatever the load (nothing timed is asserted
        // beyond what the subtraction must give; a disturbed attempt is re-measured or flagged).
        crate::measure::pin_current_thread(None).unwrap();
        let knobs = Knobs { unroll: 4, iterations: 50, repeats: 1, warmup: 0 };
        let mut f = |u: Unroll, iters: u64| spin(300 * iters * u.calls(4));
        let mut b = |u: Unroll, iters: u64| spin(200 * iters * u.calls(4));
        let (f, b) = (&mut Side { knobs, run: &mut f }, &mut Side { knobs, run: &mut b });
        let p = measure_paired(f, b, &K, &mut Floor::new()).unwrap();
        if let Some(i) = p.ratio {
            assert!(i.lo <= i.median && i.median <= i.hi);
            if !p.noisy {
                assert!((1.4..1.6).contains(&i.median), "{p:?}");
            }
        }
        if let Some(s) = p.flavor {
            assert!(s.min <= s.median && s.median <= s.p90);
        }
    }
}
