//! `callpatch calls` — cycles per call of every flavor in every scenario.
//!
//! Parse the selection, pin, then for each (flavor, scenario, return kind, placement): emit the probe
//! (`probes::code::Probe`), check it calls what it should (`Probe::verify`), time it with the U/2U
//! harness (`probes::measure::per_call`), and turn the result into a `calls.csv` row. Prints an
//! aligned table with each row's ratio to `direct` and writes `DIR/calls.csv` and `DIR/machine.csv`.

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::Context;
use callpatch_analysis::report::machine;
use callpatch_analysis::report::rows::{write_csv, CallsRow, MachineRow};
use callpatch_probes::code::{ArenaMode, EmitOptions, Flavor, Order, Probe, ReturnKind, Scenario};
use callpatch_probes::measure::{self, core_clock, paired, Counted, Floor, Knobs, Paired, PairedKnobs, Side};

/// Options of `callpatch calls`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Flavors to measure (repeat or comma-separate; --list-flavors names them; trap runs in mono
    /// only). Default: all.
    #[arg(long = "flavor", value_name = "F", value_delimiter = ',')]
    pub flavors: Vec<Flavor>,
    /// Print every flavor, one per line in table order, and exit (for scripts: the list is the code's).
    #[arg(long)]
    pub list_flavors: bool,
    /// Scenarios (repeat or comma-separate): mono, poly-rr-K, poly-random-K, sites-N, offset-B, or a
    /// group: poly-rr, poly-random, poly, sites, offset (every standard K, N or B). Default: all
    /// (with --quick: mono, poly-rr-4, poly-random-4, sites-1024, offset-0, offset-62).
    #[arg(long = "scenario", value_name = "S", value_delimiter = ',')]
    pub scenarios: Vec<Scenarios>,
    /// 15 block pairs per row instead of 31, and the small scenario set and return-kind set unless
    /// --scenario, --ret or --thunk-flavor is given: 74 rows, 116 s on a 2-vCPU guest whose host
    /// contended (a row waits up to 3 s for block pairs at the floor), less on a quiet one.
    #[arg(long)]
    pub quick: bool,
    /// CPU to pin the measuring thread to (default: the last allowed CPU).
    #[arg(long, value_name = "N")]
    pub cpu: Option<usize>,
    /// Directory for calls.csv and machine.csv (created if missing).
    #[arg(long, value_name = "DIR", default_value = "results")]
    pub out: PathBuf,
    /// How the generated code is mapped: rwx, sealed (RW then RX) or dualmap (W^X via memfd).
    #[arg(long, value_name = "MODE", default_value = "rwx")]
    pub arena: ArenaMode,
    /// How the callee returns (repeat or comma-separate): ret, ret-thunk, srso, srso-alias, call-depth,
    /// its-lower, its-upper. All but ret run in mono and poly-random-4 only (of the selected scenarios),
    /// at each of --placements layouts, with the flavors a kernel combines them with. Default: all (with
    /// --quick: ret, srso-alias).
    #[arg(long = "ret", value_name = "R", value_delimiter = ',')]
    pub rets: Vec<ReturnKind>,
    /// Flavors the thunk return kinds cross (of the selected flavors; trap never). Default: all (with
    /// --quick: inline, retpoline: a static call and this kernel's indirect call).
    #[arg(long = "thunk-flavor", value_name = "F", value_delimiter = ',')]
    pub thunk_flavors: Vec<Flavor>,
    /// Layouts of targets and thunks each thunk return kind is measured at (1..=16): a difference of
    /// about a tick moves with them, so one layout says nothing about the mechanism.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub placements: u32,
}

/// How a row's callee returns: the kind and the placement of targets and thunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Returning {
    /// The return kind.
    pub kind: ReturnKind,
    /// The placement (0 for `ret`).
    pub placement: u32,
}

impl Returning {
    /// A plain `ret` at the default layout: every row before return kinds existed, and every baseline.
    pub const RET: Returning = Returning { kind: ReturnKind::Ret, placement: 0 };
}

impl std::fmt::Display for Returning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.kind, self.placement) {
            (ReturnKind::Ret, 0) => Ok(()),
            (k, p) => write!(f, " {k} p{p}"),
        }
    }
}

/// `--quick`'s return kinds: the plain return and the one AMD Zen 3/4 kernels select.
pub const QUICK_RETS: [ReturnKind; 2] = [ReturnKind::Ret, ReturnKind::SrsoAlias];

/// `--quick`'s flavors crossed with the thunk kinds: a static call and a retpolined indirect call.
pub const QUICK_THUNK_FLAVORS: [Flavor; 2] = [Flavor::Inline, Flavor::Retpoline];

/// The scenarios the thunk return kinds run in: one predictable, one that defeats the predictors.
pub const THUNK_SCENARIOS: [Scenario; 2] = [Scenario::Mono, Scenario::Poly { k: 4, order: Order::Random }];

/// One `--scenario` value: a single scenario or a group of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenarios(pub Vec<Scenario>);

impl FromStr for Scenarios {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Scenario::parse_list(s).map(Scenarios)
    }
}

/// Runs `callpatch calls`.
pub fn main(args: Args) -> anyhow::Result<()> {
    if args.list_flavors {
        out!("{}", flavor_list());
        return Ok(());
    }
    // Fail on an unusable output directory before spending time measuring.
    let _claim = super::outdir::claim(&args.out)?;
    let (machine, rows) = measure_all(&args)?;
    out!("{}", table(&rows));
    for (name, result) in [
        ("calls.csv", write_csv(&args.out.join("calls.csv"), &rows)),
        ("machine.csv", write_csv(&args.out.join("machine.csv"), std::slice::from_ref(&machine))),
    ] {
        result.with_context(|| format!("cannot write {}", args.out.join(name).display()))?;
    }
    eprintln!("wrote {} and {}", args.out.join("calls.csv").display(), args.out.join("machine.csv").display());
    Ok(())
}

/// Every flavor name, one per line, in table order.
pub fn flavor_list() -> String {
    Flavor::ALL.iter().map(|f| format!("{f}\n")).collect()
}

/// A flavor in a scenario.
pub type Pair = (Flavor, Scenario);

/// One measurement: a flavor in a scenario, returning one way.
pub type Point = (Flavor, Scenario, Returning);

/// A flavor and a return kind no kernel combines ([`ReturnKind::crosses`]).
pub type Uncombined = (Flavor, ReturnKind);

/// The points to measure, in table order (each scenario's `ret` rows, then its thunk kinds, placement
/// by placement), the selected pairs that do not exist, and the flavors × return kinds asked for with
/// `--ret` that no kernel combines (left out of the points).
pub fn selection(args: &Args) -> (Vec<Point>, Vec<Pair>, Vec<Uncombined>) {
    let rets = match (args.rets.is_empty(), args.quick) {
        (true, true) => QUICK_RETS.to_vec(),
        (true, false) => ReturnKind::ALL.to_vec(),
        (false, _) => dedup(args.rets.clone()),
    };
    let thunk_flavors = match (args.thunk_flavors.is_empty(), args.quick) {
        (true, true) => QUICK_THUNK_FLAVORS.to_vec(),
        (true, false) => Flavor::ALL.to_vec(),
        (false, _) => args.thunk_flavors.clone(),
    };
    let flavors = if args.flavors.is_empty() { Flavor::ALL.to_vec() } else { dedup(args.flavors.clone()) };
    let scenarios = match (args.scenarios.is_empty(), args.quick) {
        (true, true) => Scenario::quick(),
        (true, false) => Scenario::all(),
        (false, _) => dedup(args.scenarios.iter().flat_map(|s| s.0.iter().copied()).collect()),
    };
    let mut run = Vec::new();
    let mut skipped = Vec::new();
    let mut uncombined = Vec::new();
    for &s in &scenarios {
        for &f in &flavors {
            if !s.supports(f) {
                skipped.push((f, s));
            } else if rets.contains(&ReturnKind::Ret) {
                run.push((f, s, Returning::RET));
            }
        }
        if !THUNK_SCENARIOS.contains(&s) {
            continue;
        }
        // `ret` too at the other placements (placement 0 is the row above), so that a thunk's extra is
        // read placement by placement against the same layout returning with `ret`.
        let thunked = rets.iter().any(|r| r.is_placed());
        let crossed = |f: &Flavor| s.supports(*f) && *f != Flavor::Trap && thunk_flavors.contains(f);
        for &kind in rets.iter().filter(|r| r.is_placed() || thunked) {
            let first = if kind.is_placed() { 0 } else { 1 };
            for placement in first..args.placements {
                for &f in flavors.iter().filter(|f| crossed(f) && kind.crosses(**f)) {
                    run.push((f, s, Returning { kind, placement }));
                }
            }
            for &f in flavors.iter().filter(|f| crossed(f) && !kind.crosses(**f)) {
                if !args.rets.is_empty() && !uncombined.contains(&(f, kind)) {
                    uncombined.push((f, kind));
                }
            }
        }
    }
    (run, skipped, uncombined)
}

fn dedup<T: PartialEq>(v: Vec<T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(v.len());
    for x in v {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

/// Pins, identifies the machine, and measures every selected pair, each in alternation with its
/// baseline ([`measure::paired`]). A pair that cannot be emitted or measured becomes a row with its
/// reason in `note`; it never costs the other rows. Used by `callpatch run` too.
pub fn measure_all(args: &Args) -> anyhow::Result<(MachineRow, Vec<CallsRow>)> {
    let (pairs, skipped, uncombined) = selection(args);
    if !skipped.is_empty() {
        let names: Vec<String> = skipped.iter().map(|(f, s)| format!("{f}×{s}")).collect();
        eprintln!(
            "note: skipping {} pair(s) that do not exist (a direct-style site has one target; poly needs an \
             indirect flavor): {}",
            skipped.len(),
            abbreviate(&names, 6)
        );
    }
    let uncombined: Vec<String> = uncombined.iter().map(|(f, r)| format!("{f}×{r}")).collect();
    if !uncombined.is_empty() {
        eprintln!(
            "note: skipping {} flavor × return pair(s) no kernel combines (call depth tracking needs retpolines, ITS \
             excludes them, SRSO excludes its-thunk): {}",
            uncombined.len(),
            abbreviate(&uncombined, 6)
        );
    }
    anyhow::ensure!(
        !pairs.is_empty(),
        "nothing to measure: every selected flavor × scenario pair was skipped (thunk return kinds run in mono and \
         poly-random-4 only, with the flavors a kernel combines them with)"
    );

    // Read the allowed CPUs and calibrate before pinning or timing anything.
    measure::allowed_cores()?;
    let cpu = measure::pin_current_thread(args.cpu)?;
    let hz = measure::tsc::hz()?;
    let counters = measure::hardware_counters_status();
    let machine = machine::identify(hz, &counters);
    let knobs = knobs(args.quick);
    let pk = paired_knobs(args.quick);
    let clock_start = core_clock::estimate_now();
    eprintln!(
        "measuring {} pair(s) on CPU {cpu}, each against its baseline in {} block pairs of {} timed U/2U pairs \
         (U={}, {} iterations); timer {} at {:.3} GHz; core clock (est.) {}; hardware counters {counters}",
        pairs.len(),
        pk.pairs,
        pk.block_runs,
        knobs.unroll,
        knobs.iterations,
        measure::tsc::TIMER_LABEL,
        hz / 1e9,
        clock_start.as_ref().map_or_else(|e| format!("unavailable ({e})"), |c| format!("{:.3} GHz", c.hz / 1e9)),
    );

    let bar = indicatif::ProgressBar::new(pairs.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:24} {pos}/{len} rows  {msg}  (eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut baselines: Vec<Baseline> = Vec::new();
    let mut measured = Vec::with_capacity(pairs.len());
    for &(flavor, scenario, ret) in &pairs {
        bar.set_message(format!("{flavor} {scenario}{ret}"));
        let m = measure_row(flavor, scenario, ret, &mut baselines, &knobs, &pk, args.arena);
        // Each row as it finishes (stderr; the table on stdout comes at the end).
        bar.suspend(|| eprintln!("{}", progress_line(flavor, scenario, ret, &m)));
        measured.push(m);
        bar.inc(1);
    }
    // A noisy row, and one measured before its baseline first showed its quiet floor (the run started
    // on a contended core), is measured once more at the end, when the host may have calmed and the
    // floor is known; the better of the two is kept.
    let again: Vec<usize> = (0..pairs.len())
        .filter(|&i| {
            let scenario = pairs[i].1;
            above_floor_now(&measured[i], scenario, &baselines, &pk)
                || measured[i].as_ref().is_ok_and(|m| m.paired.noisy)
        })
        .collect();
    if !again.is_empty() {
        bar.suspend(|| {
            eprintln!(
                "note: measuring {} row(s) again: noisy, or measured before their baseline reached its quiet floor",
                again.len()
            )
        });
        for i in again {
            let (flavor, scenario, ret) = pairs[i];
            let m = measure_row(flavor, scenario, ret, &mut baselines, &knobs, &pk, args.arena);
            if better(&m, &measured[i], scenario, &baselines, &pk) {
                measured[i] = m;
            }
        }
    }
    bar.finish_and_clear();
    for b in &baselines {
        let (n, above) = b.floor.above(pk.floor_tolerance);
        if let (Some(f), true) = (b.floor.value(), above > 0) {
            eprintln!(
                "note: direct {}: {above} of {n} baseline blocks ran more than {:.0}% above its floor of {f:.2} ticks per \
                 call (the host contending for this core); their block pairs were set aside",
                b.scenario,
                100.0 * pk.floor_tolerance
            );
        }
    }
    let mut rows = Vec::with_capacity(pairs.len());
    for (&point, m) in pairs.iter().zip(&measured) {
        let (flavor, scenario, ret) = point;
        let r = match m {
            Ok(m) => row(&machine.machine_id, point, m, hz),
            Err(e) => failed_row(&machine.machine_id, point, &knobs, &format!("{e:#}")),
        };
        if let Some(note) = &r.note {
            eprintln!("note: {flavor} {scenario}{ret}: {note}");
        }
        rows.push(r);
    }

    // The clock moves during a run: estimate it again at the end and use the mean.
    let clock_end = core_clock::estimate_now();
    let core_hz = match (&clock_start, &clock_end) {
        (Ok(a), Ok(b)) => {
            if (a.hz / b.hz - 1.0).abs() > CLOCK_DRIFT {
                eprintln!(
                    "note: the core clock estimate moved from {:.3} GHz at the start to {:.3} GHz at the end; core \
                     cycles use the mean",
                    a.hz / 1e9,
                    b.hz / 1e9
                );
            }
            Some((a.hz + b.hz) / 2.0)
        }
        (Ok(c), Err(_)) | (Err(_), Ok(c)) => Some(c.hz),
        (Err(e), Err(_)) => {
            eprintln!("note: no core clock estimate: {e}");
            None
        }
    };
    for r in &mut rows {
        r.core_hz_est = core_hz;
        r.core_cycles_median = core_hz.filter(|_| r.cycles_median.is_finite()).map(|c| r.cycles_median * c / hz);
        r.arena = Some(args.arena.name().to_string());
        r.cpu = u32::try_from(cpu).ok();
    }
    Ok((machine, rows))
}

/// One finished row in one line: its ratio with the interval, its cost, and what was set aside.
fn progress_line(flavor: Flavor, scenario: Scenario, ret: Returning, m: &anyhow::Result<Measurement>) -> String {
    let m = match m {
        Ok(m) => m,
        Err(e) => return format!("  {flavor} {scenario}{ret}: not measured: {e:#}"),
    };
    let p = &m.paired;
    let ratio = match (p.ratio, p.ratio_median) {
        (Some(i), _) => format!("{:.2}× [{:.2}, {:.2}]", i.median, i.lo, i.hi),
        (None, Some(r)) => format!("{r:.2}× (no interval)"),
        (None, None) => "no ratio".into(),
    };
    let ticks = p.flavor.map_or_else(|| "–".into(), |s| format!("{:.2}", s.median));
    format!(
        "  {flavor} {scenario}{ret}: {ratio} {}, {ticks} ticks per call ({} kept, {} set aside){}",
        m.baseline,
        p.samples,
        p.discarded.total(),
        if p.noisy { ", noisy" } else { "" }
    )
}

/// A baseline probe of a run and its floor, shared by every row that compares with it.
struct Baseline {
    scenario: Scenario,
    probe: Result<Probe, String>,
    floor: Floor,
}

/// Measures one row against its baseline (emitted on first use and kept for the run).
#[allow(clippy::too_many_arguments)]
fn measure_row(
    flavor: Flavor,
    scenario: Scenario,
    ret: Returning,
    baselines: &mut Vec<Baseline>,
    knobs: &Knobs,
    pk: &PairedKnobs,
    mode: ArenaMode,
) -> anyhow::Result<Measurement> {
    let base_scenario = baseline_scenario(scenario);
    let at = match baselines.iter().position(|b| b.scenario == base_scenario) {
        Some(at) => at,
        None => {
            let probe = emit(Flavor::Direct, base_scenario, Returning::RET, knobs, mode);
            baselines.push(Baseline { scenario: base_scenario, probe, floor: Floor::new() });
            baselines.len() - 1
        }
    };
    let Baseline { probe, floor, .. } = &mut baselines[at];
    match probe {
        Ok(base) => measure_pair(flavor, scenario, ret, base, floor, knobs, pk, mode),
        Err(e) => Err(anyhow::anyhow!("baseline direct {base_scenario}: {e}")),
    }
}

/// Whether the second measurement of a row is the one to keep: one that is not noisy and ran at the
/// floor the run knows now beats one that is not, else the narrower interval wins.
fn better(
    new: &anyhow::Result<Measurement>,
    old: &anyhow::Result<Measurement>,
    scenario: Scenario,
    baselines: &[Baseline],
    pk: &PairedKnobs,
) -> bool {
    let trusted = |m: &anyhow::Result<Measurement>| {
        m.as_ref().is_ok_and(|x| !x.paired.noisy) && !above_floor_now(m, scenario, baselines, pk)
    };
    let width = |m: &anyhow::Result<Measurement>| {
        m.as_ref().ok().and_then(|x| x.paired.ratio).map_or(f64::INFINITY, |i| i.relative_half_width())
    };
    match (trusted(new), trusted(old)) {
        (true, false) => true,
        (false, true) => false,
        _ => width(new) < width(old),
    }
}

/// True when the kept samples of a row of `scenario` had their baseline above the floor the run knows
/// now (the row ran before its baseline first showed its quiet floor).
fn above_floor_now(
    m: &anyhow::Result<Measurement>,
    scenario: Scenario,
    baselines: &[Baseline],
    pk: &PairedKnobs,
) -> bool {
    let Ok(m) = m else { return false };
    let Some(b) = m.paired.baseline else { return false };
    let base = baseline_scenario(scenario);
    let floor = baselines.iter().find(|x| x.scenario == base).map(|x| &x.floor);
    floor.is_some_and(|f| !f.admits(b.median, pk.floor_tolerance))
}

/// The start and end core clock estimates may differ by this much (relative) without a note.
const CLOCK_DRIFT: f64 = 0.03;

/// The timing knobs of each side. `--quick` keeps the full U and iteration count (with shorter runs a
/// retpoline's median swings by ±30% from one emitted probe to the next on this machine; it stays
/// within a few % at 32 × 2000 calls) and saves its time on the scenario set and the block pairs.
/// `repeats` is not used by the paired method (see [`paired_knobs`]).
pub fn knobs(quick: bool) -> Knobs {
    let full = Knobs::default();
    match quick {
        true => Knobs { unroll: full.unroll, iterations: full.iterations, ..Knobs::quick() },
        false => full,
    }
}

/// The paired method's knobs: 31 block pairs per row, 15 with `--quick`; 3 timed U/2U pairs per block.
pub fn paired_knobs(quick: bool) -> PairedKnobs {
    if quick {
        PairedKnobs::quick()
    } else {
        PairedKnobs::full()
    }
}

/// The scenario of a row's baseline: `direct` in the same scenario where it exists, else `direct mono`.
pub fn baseline_scenario(scenario: Scenario) -> Scenario {
    if scenario.supports(Flavor::Direct) {
        scenario
    } else {
        Scenario::Mono
    }
}

/// Longest 2U run, in seconds: a slower flavor (`trap`, a kernel round trip per call) runs fewer
/// iterations, so a block stays a few milliseconds and the alternation stays tight.
const MAX_RUN_S: f64 = 0.002;

/// Emits and verifies one probe.
fn emit(flavor: Flavor, scenario: Scenario, ret: Returning, knobs: &Knobs, mode: ArenaMode) -> Result<Probe, String> {
    let options = EmitOptions { unroll: knobs.unroll as usize, mode, ret: ret.kind, placement: ret.placement };
    let probe = Probe::new(flavor, scenario, &options).map_err(|e| e.to_string())?;
    probe.verify()?;
    Ok(probe)
}

/// The knobs a probe runs with: the knobs' U for mono/poly/offset, U = N for `sites-N` with the
/// iteration count scaled so every pair runs about the same number of calls per timed run, then
/// lowered where a 2U run would take longer than [`MAX_RUN_S`].
fn side_knobs(probe: &Probe, knobs: &Knobs, sink: &mut u64) -> anyhow::Result<Knobs> {
    let unroll = u32::try_from(probe.unroll())?;
    let calls = u64::from(knobs.unroll) * knobs.iterations;
    let used = Knobs { unroll, iterations: (calls / u64::from(unroll)).max(1), ..*knobs };
    let max_ticks = (MAX_RUN_S * measure::tsc::hz()?) as u64;
    Ok(paired::fit_iterations(used, &mut |u, iters| *sink ^= std::hint::black_box(probe.run(u, iters)), max_ticks))
}

/// One measured pair: the flavor's knobs, the paired outcome and the counter figures.
#[derive(Clone, Debug)]
pub struct Measurement {
    /// The flavor side's knobs (U, iterations).
    pub knobs: Knobs,
    /// Timed U/2U pairs per side in the kept attempt.
    pub timed_pairs: u32,
    /// The paired outcome.
    pub paired: Paired,
    /// The baseline's name (`direct mono`, ...).
    pub baseline: String,
    /// Instructions per call (hardware counters) or why not.
    pub instructions: Counted,
    /// Branch misses per call (hardware counters) or why not.
    pub branch_misses: Counted,
}

/// Emits and verifies the flavor's probe, then times it in alternation with `baseline` (a probe of
/// `direct` returning with `ret`; for a `direct` `ret` row a second, separate probe: an A/A check whose
/// ratio must be 1).
#[allow(clippy::too_many_arguments)]
pub fn measure_pair(
    flavor: Flavor,
    scenario: Scenario,
    ret: Returning,
    baseline: &Probe,
    floor: &mut Floor,
    knobs: &Knobs,
    pk: &PairedKnobs,
    mode: ArenaMode,
) -> anyhow::Result<Measurement> {
    let probe = emit(flavor, scenario, ret, knobs, mode).map_err(anyhow::Error::msg)?;
    let mut sink = 0u64;
    let fk = side_knobs(&probe, knobs, &mut sink)?;
    let bk = side_knobs(baseline, knobs, &mut sink)?;
    let (mut sink_f, mut sink_b) = (0u64, 0u64);
    let (mut f, mut b) = (
        |u, iters| sink_f ^= std::hint::black_box(probe.run(u, iters)),
        |u, iters| sink_b ^= std::hint::black_box(baseline.run(u, iters)),
    );
    let (fs, bs) = (&mut Side { knobs: fk, run: &mut f }, &mut Side { knobs: bk, run: &mut b });
    let paired = measure::measure_paired(fs, bs, pk, floor)?;
    // Instructions and branch misses where the PMU allows (one classic U/2U pass of the flavor).
    let (instructions, branch_misses) = match measure::counters::hardware_group() {
        Ok(mut g) => {
            let m =
                measure::measure(&fk, Some(&mut g), &mut |u, iters| sink ^= std::hint::black_box(probe.run(u, iters)));
            match m {
                Ok(m) => (m.counts[1].clone(), m.counts[3].clone()),
                Err(e) => (Counted::Unavailable(e.to_string()), Counted::Unavailable(e.to_string())),
            }
        }
        Err(e) => (Counted::Unavailable(e.reason()), Counted::Unavailable(e.reason())),
    };
    std::hint::black_box((sink, sink_f, sink_b));
    let timed_pairs = pk.block_runs * (paired.samples + paired.discarded.total());
    let baseline = format!("direct {}", baseline.scenario());
    Ok(Measurement { knobs: fk, timed_pairs, paired, baseline, instructions, branch_misses })
}

/// The row of a measured pair. Cycle columns are order statistics of the flavor's block estimates,
/// so `cycles_min ≤ cycles_median ≤ cycles_p90`; empty (NaN in memory) when no sample was clean.
fn row(machine_id: &str, point: Point, m: &Measurement, hz: f64) -> CallsRow {
    let p = &m.paired;
    let (min, median, p90) = p.flavor.map_or((f64::NAN, f64::NAN, f64::NAN), |s| (s.min, s.median, s.p90));
    CallsRow {
        unroll: m.knobs.unroll,
        repeats: m.timed_pairs,
        cycles_min: min,
        cycles_median: median,
        cycles_p90: p90,
        ns_median: median / hz * 1e9,
        instructions: m.instructions.to_string(),
        branch_misses: m.branch_misses.to_string(),
        timer: measure::tsc::TIMER_LABEL.to_string(),
        baseline: Some(m.baseline.clone()),
        ratio_median: p.ratio.map(|i| i.median).or(p.ratio_median),
        ratio_lo: p.ratio.map(|i| i.lo),
        ratio_hi: p.ratio.map(|i| i.hi),
        samples: Some(p.samples),
        discarded: Some(p.discarded.total()),
        noisy: Some(p.noisy),
        note: p.note.clone(),
        ..unmeasured(machine_id, point)
    }
}

/// The row of a pair that could not be measured at all: the reason, and no number.
fn failed_row(machine_id: &str, point: Point, knobs: &Knobs, reason: &str) -> CallsRow {
    let scenario = point.1;
    CallsRow {
        unroll: knobs.unroll,
        instructions: format!("unavailable (not measured: {reason})"),
        branch_misses: format!("unavailable (not measured: {reason})"),
        timer: measure::tsc::TIMER_LABEL.to_string(),
        baseline: Some(format!("direct {}", baseline_scenario(scenario))),
        samples: Some(0),
        discarded: Some(0),
        noisy: Some(true),
        note: Some(format!("not measured: {reason}")),
        ..unmeasured(machine_id, point)
    }
}

/// The row of `point` before any number: flavor, scenario and how the callee returns.
fn unmeasured(machine_id: &str, (flavor, scenario, ret): Point) -> CallsRow {
    let param = scenario.param().map(|p| p.to_string()).unwrap_or_default();
    CallsRow {
        ret: Some(ret.kind),
        placement: Some(ret.placement),
        ..CallsRow::new(machine_id, flavor, scenario.name(), &param)
    }
}

/// The aligned table: the ratio to the baseline with its 95% interval, TSC ticks and estimated core
/// cycles side by side, ns, samples kept/discarded, and a `noisy` marker.
pub fn table(rows: &[CallsRow]) -> String {
    let header = [
        "flavor",
        "scenario",
        "param",
        "return",
        "ticks min",
        "ticks median",
        "core cycles (est.)",
        "ns median",
        "× baseline [95% interval]",
        "kept/disc.",
        "",
    ]
    .map(String::from);
    let num = |v: f64| if v.is_finite() { format!("{v:.2}") } else { "–".into() };
    let mut lines = vec![header];
    for r in rows {
        let mono = match r.baseline.as_deref() {
            Some(b) if b != format!("direct {}", r.cli_scenario()) => format!(" ({})", b.trim_start_matches("direct ")),
            _ => String::new(),
        };
        let ratio = match (r.ratio_median, r.ratio_lo, r.ratio_hi) {
            (Some(m), Some(lo), Some(hi)) => format!("{m:.2} [{lo:.2}, {hi:.2}]{mono}"),
            (Some(m), _, _) => format!("{m:.2} [no interval]{mono}"),
            _ => "n/a".into(),
        };
        lines.push([
            r.flavor.to_string(),
            r.scenario.clone(),
            r.param.clone(),
            match (r.ret, r.placement) {
                (Some(k), Some(p)) if k.is_placed() || p > 0 => format!("{k} p{p}"),
                (k, _) => k.unwrap_or(ReturnKind::Ret).to_string(),
            },
            num(r.cycles_min),
            num(r.cycles_median),
            r.core_cycles_median.map_or("–".into(), num),
            num(r.ns_median),
            ratio,
            format!("{}/{}", r.samples.unwrap_or(0), r.discarded.unwrap_or(0)),
            if r.noisy == Some(true) { "noisy".into() } else { String::new() },
        ]);
    }
    let cols = lines[0].len();
    let widths: Vec<usize> = (0..cols).map(|c| lines.iter().map(|l| l[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        let cells: Vec<String> = l
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (s, w))| if !(4..8).contains(&c) { format!("{s:<w$}") } else { format!("{s:>w$}") })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
        if i == 0 {
            out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
            out.push('\n');
        }
    }
    let timer = rows.first().map_or("", |r| r.timer.as_str());
    let ghz = rows.iter().find_map(|r| r.core_hz_est).map_or("unavailable".into(), |h| format!("{:.3} GHz", h / 1e9));
    out.push_str(&format!(
        "ticks per call = (t(2U) - t(U)) / (U x iterations) in {timer} (TSC ticks); min and median over the block \
         estimates\ncore cycles (est.) = ticks x core clock / TSC rate, the core clock estimated in this run from a \
         dependent add chain: {ghz} (an estimate, not a PMU count)\n× baseline = median over block pairs of this \
         flavor / direct in the same scenario, timed in alternation (direct mono where marked (mono)); [95% \
         interval from order statistics]\nkept/disc. = block pairs kept / discarded as disturbed; noisy = interval \
         wider than ±5% or over 25% discarded (see note in calls.csv)\n"
    ));
    out
}

fn abbreviate(names: &[String], n: usize) -> String {
    if names.len() <= n {
        names.join(", ")
    } else {
        format!("{}, … ({} more)", names[..n].join(", "), names.len() - n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(argv: &[&str]) -> Result<Args, clap::Error> {
        Cli::try_parse_from(std::iter::once("calls").chain(argv.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn selection_expands_groups_and_skips_poly_for_direct_style_flavors() {
        let a =
            parse(&["--flavor", "direct,retpoline", "--scenario", "poly-random", "--scenario", "mono", "--ret", "ret"])
                .unwrap();
        let (run, skipped, _) = selection(&a);
        assert_eq!(run.len(), 3 + 2, "{run:?}");
        assert_eq!(skipped.len(), 3);
        assert!(skipped.iter().all(|(f, _)| *f == Flavor::Direct));
        let quick = parse(&["--quick", "--ret=ret"]).unwrap();
        let quick_all = parse(&["--quick"]).unwrap();
        assert_eq!(
            selection(&quick_all).0.len(),
            selection(&quick).0.len() + 3 * (4 + 3),
            "inline and retpoline mono, retpoline poly-random-4: srso-alias at 4 placements, ret at 3 more"
        );
        assert!(selection(&quick).0.iter().any(|(f, s, _)| *f == Flavor::CsInline && *s == Scenario::Offset(62)));
        assert_eq!(
            selection(&quick).0.iter().filter(|(_, s, _)| s.is_poly()).count(),
            16,
            "eight indirect flavors × poly-rr-4, poly-random-4"
        );
    }

    #[test]
    fn thunk_return_kinds_run_in_mono_and_poly_random_4_at_each_placement() {
        let a = parse(&["--flavor", "direct,retpoline,trap", "--scenario", "poly,mono,sites-64", "--placements", "3"])
            .unwrap();
        let (run, ..) = selection(&a);
        let thunked: Vec<_> = run.iter().filter(|(_, _, r)| r.kind.is_placed()).collect();
        // mono: direct, retpoline (not trap); poly-random-4: retpoline; × 3 placements. ret-thunk, srso,
        // srso-alias and call-depth cross both flavors; its-lower and its-upper only direct (the kernel
        // drops its ITS thunks when retpolines are on).
        assert_eq!(thunked.len(), ((2 + 1) * 4 + 2) * 3, "{thunked:?}");
        assert!(thunked.iter().all(|(f, _, r)| r.kind.crosses(*f)));
        let ret_elsewhere = run.iter().filter(|(_, _, r)| r.kind == ReturnKind::Ret && r.placement > 0).count();
        assert_eq!(ret_elsewhere, (2 + 1) * 2, "ret at placements 1 and 2 beside the thunk kinds");
        assert!(thunked.iter().all(|(f, s, r)| *f != Flavor::Trap && THUNK_SCENARIOS.contains(s) && r.placement < 3));
        let only = parse(&["--ret", "srso-alias", "--scenario", "sites-64"]).unwrap();
        assert!(selection(&only).0.is_empty(), "no thunk kind outside mono and poly-random-4");
        // Asked for a pair no kernel combines: none measured, each pair named once.
        let asked =
            parse(&["--flavor", "indirect,direct", "--scenario", "mono,poly-random-4", "--ret", "call-depth"]).unwrap();
        let (points, _, uncombined) = selection(&asked);
        assert!(points.iter().all(|(f, _, r)| *f == Flavor::Direct && r.kind == ReturnKind::CallDepth), "{points:?}");
        assert_eq!(uncombined, [(Flavor::Indirect, ReturnKind::CallDepth)]);
        assert!(selection(&parse(&[]).unwrap()).2.is_empty(), "the defaults ask for no pair by name");
        for (argv, needle) in [
            (&["--ret", "srso-alais"][..], "unknown return kind `srso-alais`"),
            (&["--placements", "0"][..], "0 is not in 1..=16"),
        ] {
            let e = parse(argv).err().unwrap_or_else(|| panic!("{argv:?} accepted")).to_string();
            assert!(e.contains(needle), "{argv:?}: {e}");
        }
    }

    #[test]
    fn the_flavor_list_is_the_table_and_parses_back() {
        assert!(parse(&["--list-flavors"]).unwrap().list_flavors);
        let names: Vec<Flavor> = flavor_list().lines().map(|l| l.parse().unwrap()).collect();
        assert_eq!(names, Flavor::ALL);
    }

    #[test]
    fn bad_values_are_rejected_with_the_reason() {
        for (argv, needle) in [
            (&["--flavor", "retpolin"][..], "unknown flavor `retpolin`"),
            (&["--scenario", "offset-64"][..], "B = 64"),
            (&["--scenario", "poly-rr-1"][..], "K = 1"),
            (&["--arena", "rw"][..], "unknown arena mode"),
            (&["--cpu", "x"][..], "invalid digit"),
        ] {
            let e = parse(argv).err().unwrap_or_else(|| panic!("{argv:?} accepted")).to_string();
            assert!(e.contains(needle), "{argv:?}: {e}");
        }
    }

    #[test]
    fn a_real_paired_measurement_becomes_rows_that_hold_their_order_and_round_trip() {
        // Small blocks so the test is quick; nothing here asserts a speed, only what holds by
        // construction: min ≤ median ≤ p90, lo ≤ median ≤ hi, and a row even where a pair is noisy.
        measure::pin_current_thread(None).unwrap();
        let knobs = Knobs { unroll: 8, iterations: 1000, repeats: 1, warmup: 1 };
        let pk = PairedKnobs { pairs: 7, ..PairedKnobs::quick() };
        let hz = measure::tsc::hz().unwrap();
        let mut rows = Vec::new();
        let poly = Scenario::parse_list("poly-rr-2").unwrap()[0];
        for (flavor, scenario) in
            [(Flavor::Direct, Scenario::Mono), (Flavor::Indirect, Scenario::Offset(3)), (Flavor::Lfence, poly)]
        {
            let base =
                emit(Flavor::Direct, baseline_scenario(scenario), Returning::RET, &knobs, ArenaMode::DualMap).unwrap();
            let ret = Returning::RET;
            let m =
                measure_pair(flavor, scenario, ret, &base, &mut Floor::new(), &knobs, &pk, ArenaMode::DualMap).unwrap();
            rows.push(row("m", (flavor, scenario, Returning::RET), &m, hz));
        }
        assert_eq!(rows[2].baseline.as_deref(), Some("direct mono"), "poly compares with direct mono");
        assert_eq!(rows[1].baseline.as_deref(), Some("direct offset-3"));
        for r in &rows {
            if r.samples.unwrap() > 0 {
                assert!(r.cycles_min <= r.cycles_median && r.cycles_median <= r.cycles_p90, "{r:?}");
                let (lo, m, hi) = (r.ratio_lo, r.ratio_median.unwrap(), r.ratio_hi);
                if let (Some(lo), Some(hi)) = (lo, hi) {
                    assert!(lo <= m && m <= hi, "{r:?}");
                }
            } else {
                assert!(r.note.is_some() && r.noisy == Some(true), "{r:?}");
            }
            assert_eq!(r.noisy == Some(true), r.note.is_some(), "{r:?}");
            for counted in [&r.instructions, &r.branch_misses] {
                assert!(counted.parse::<f64>().is_ok() || counted.starts_with("unavailable ("), "{r:?}");
            }
        }
        rows.push(failed_row("m", (Flavor::Trap, Scenario::Mono, Returning::RET), &knobs, "emission failed"));
        let t = table(&rows);
        assert_eq!(t.lines().count(), 2 + rows.len() + 4, "{t}");
        assert!(t.contains("(mono)") && t.contains("core cycles (est.)") && t.contains("noisy"), "{t}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("calls.csv");
        write_csv(&path, &rows).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("NaN"), "an unmeasured row has empty cells, not NaN: {text}");
        let back = callpatch_analysis::report::rows::read_csv::<CallsRow>(&path).unwrap();
        assert_eq!(back[..3], rows[..3]);
        assert!(back[3].cycles_median.is_nan() && back[3].note == rows[3].note);
    }
}
