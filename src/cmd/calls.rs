//! `callpatch calls` — cycles per call of every flavor in every scenario.
//!
//! Parse the selection, pin, then for each (flavor, scenario): emit the probe
//! (`probes::code::Probe`), check it calls what it should (`Probe::verify`), time it with the U/2U
//! harness (`probes::measure::per_call`), and turn the result into a `calls.csv` row. Prints an
//! aligned table with each row's ratio to `direct` and writes `DIR/calls.csv` and `DIR/machine.csv`.

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::Context;
use callpatch_analysis::report::machine;
use callpatch_analysis::report::rows::{write_csv, CallsRow, MachineRow};
use callpatch_probes::code::{ArenaMode, EmitOptions, Flavor, Probe, Scenario};
use callpatch_probes::measure::{self, Knobs, PerCall};

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
    /// Fewer repeats (7 instead of 21, same calls per run) and the small scenario set unless --scenario
    /// is given; well under a second here.
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
}

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
        print!("{}", flavor_list());
        return Ok(());
    }
    // Fail on an unusable output directory before spending time measuring.
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let (machine, rows) = measure_all(&args)?;
    print!("{}", table(&rows));
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

/// One measurement: a flavor in a scenario.
pub type Pair = (Flavor, Scenario);

/// The pairs to measure, in table order, and the selected pairs that do not exist.
pub fn selection(args: &Args) -> (Vec<Pair>, Vec<Pair>) {
    let flavors = if args.flavors.is_empty() { Flavor::ALL.to_vec() } else { dedup(args.flavors.clone()) };
    let scenarios = match (args.scenarios.is_empty(), args.quick) {
        (true, true) => Scenario::quick(),
        (true, false) => Scenario::all(),
        (false, _) => dedup(args.scenarios.iter().flat_map(|s| s.0.iter().copied()).collect()),
    };
    let mut run = Vec::new();
    let mut skipped = Vec::new();
    for &s in &scenarios {
        for &f in &flavors {
            if s.supports(f) {
                run.push((f, s))
            } else {
                skipped.push((f, s))
            }
        }
    }
    (run, skipped)
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

/// Pins, identifies the machine, and measures every selected pair. Used by `callpatch run` too.
pub fn measure_all(args: &Args) -> anyhow::Result<(MachineRow, Vec<CallsRow>)> {
    let (pairs, skipped) = selection(args);
    if !skipped.is_empty() {
        let names: Vec<String> = skipped.iter().map(|(f, s)| format!("{f}×{s}")).collect();
        eprintln!(
            "note: skipping {} pair(s) that do not exist (a direct-style site has one target; poly needs an \
             indirect flavor): {}",
            skipped.len(),
            abbreviate(&names, 6)
        );
    }
    anyhow::ensure!(!pairs.is_empty(), "nothing to measure: every selected flavor × scenario pair was skipped");

    // Read the allowed CPUs and calibrate before pinning or timing anything.
    measure::allowed_cores()?;
    let cpu = measure::pin_current_thread(args.cpu)?;
    let hz = measure::tsc::hz()?;
    let counters = measure::hardware_counters_status();
    let machine = machine::identify(hz, &counters);
    let knobs = knobs(args.quick);
    eprintln!(
        "measuring {} pair(s) on CPU {cpu}: U={}, {} iterations, {} repeats; timer {} at {:.3} GHz; hardware \
         counters {counters}",
        pairs.len(),
        knobs.unroll,
        knobs.iterations,
        knobs.repeats,
        measure::tsc::TIMER_LABEL,
        hz / 1e9
    );

    let bar = indicatif::ProgressBar::new(pairs.len() as u64);
    let mut rows = Vec::with_capacity(pairs.len());
    for (flavor, scenario) in pairs {
        bar.set_message(format!("{flavor} {scenario}"));
        let (used, pc) = measure_pair(flavor, scenario, &knobs, args.arena)
            .with_context(|| format!("measuring {flavor} {scenario}"))?;
        rows.push(row(&machine.machine_id, flavor, scenario, &used, &pc));
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok((machine, rows))
}

/// The timing knobs. `--quick` keeps the full U and iteration count and takes the quick pass's
/// fewer repeats: with shorter runs a retpoline's median swings by ±30% from one emitted probe to the
/// next on this machine (it stays within a few % at 32 × 2000 calls), and the runs are cheap anyway;
/// the quick pass saves its time on the scenario set.
pub fn knobs(quick: bool) -> Knobs {
    let full = Knobs::default();
    match quick {
        true => Knobs { unroll: full.unroll, iterations: full.iterations, ..Knobs::quick() },
        false => full,
    }
}

/// Emits, verifies and times one pair. The knobs' U applies to mono/poly/offset; `sites-N` uses U = N,
/// and the iteration count is scaled so every pair runs about the same number of calls per timed run.
pub fn measure_pair(
    flavor: Flavor,
    scenario: Scenario,
    knobs: &Knobs,
    mode: ArenaMode,
) -> anyhow::Result<(Knobs, PerCall)> {
    let probe = Probe::new(flavor, scenario, &EmitOptions { unroll: knobs.unroll as usize, mode })?;
    probe.verify().map_err(anyhow::Error::msg)?;
    let unroll = u32::try_from(probe.unroll())?;
    let calls = u64::from(knobs.unroll) * knobs.iterations;
    let used = Knobs { unroll, iterations: (calls / u64::from(unroll)).max(1), ..*knobs };
    let mut sink = 0u64;
    let pc = measure::per_call(&used, &mut |u, iters| sink ^= std::hint::black_box(probe.run(u, iters)))?;
    std::hint::black_box(sink);
    Ok((used, pc))
}

fn row(machine_id: &str, flavor: Flavor, scenario: Scenario, knobs: &Knobs, pc: &PerCall) -> CallsRow {
    CallsRow {
        machine_id: machine_id.to_string(),
        flavor,
        scenario: scenario.name().to_string(),
        param: scenario.param().map(|p| p.to_string()).unwrap_or_default(),
        unroll: knobs.unroll,
        repeats: knobs.repeats,
        cycles_min: pc.cycles_min,
        cycles_median: pc.cycles_median,
        cycles_p90: pc.cycles_p90,
        ns_median: pc.ns_median,
        instructions: pc.instructions.to_string(),
        branch_misses: pc.branch_misses.to_string(),
        timer: pc.timer.clone(),
        baseline: None,
        ratio_median: None,
        ratio_lo: None,
        ratio_hi: None,
        samples: None,
        discarded: None,
        noisy: None,
        note: None,
        core_hz_est: None,
        core_cycles_median: None,
    }
}

/// The median of `direct` a row is compared with: `direct` in the same scenario and parameter when it
/// was measured (every scenario but poly has one), else `direct` mono, else none.
pub fn baseline<'a>(rows: &'a [CallsRow], r: &CallsRow) -> Option<(&'a CallsRow, &'static str)> {
    let direct = |scenario: &str, param: &str| {
        rows.iter().find(|d| d.flavor == Flavor::Direct && d.scenario == scenario && d.param == param)
    };
    direct(&r.scenario, &r.param).map(|d| (d, "")).or_else(|| direct("mono", "").map(|d| (d, " (mono)")))
}

/// The aligned table: flavor, scenario, param, cycles min/median, ns median, ratio to direct.
pub fn table(rows: &[CallsRow]) -> String {
    let header = ["flavor", "scenario", "param", "cyc min", "cyc median", "ns median", "× direct"].map(String::from);
    let mut lines = vec![header];
    for r in rows {
        let ratio = match baseline(rows, r) {
            Some((d, note)) if d.cycles_median > 0.0 => format!("{:.2}{note}", r.cycles_median / d.cycles_median),
            _ => "n/a".into(),
        };
        lines.push([
            r.flavor.to_string(),
            r.scenario.clone(),
            r.param.clone(),
            format!("{:.2}", r.cycles_min),
            format!("{:.2}", r.cycles_median),
            format!("{:.2}", r.ns_median),
            ratio,
        ]);
    }
    let widths: Vec<usize> = (0..7).map(|c| lines.iter().map(|l| l[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        let cells: Vec<String> = l
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (s, w))| if c < 3 || c == 6 { format!("{s:<w$}") } else { format!("{s:>w$}") })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
        if i == 0 {
            out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
            out.push('\n');
        }
    }
    let timer = rows.first().map_or("", |r| r.timer.as_str());
    out.push_str(&format!(
        "cycles per call = (t(2U) - t(U)) / (U x iterations), in {timer} (TSC ticks, not core cycles); min and \
         median over the repeats\n× direct = this median / direct's median in the same scenario and param, or \
         direct mono where marked (mono)\n"
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
        let a = parse(&["--flavor", "direct,retpoline", "--scenario", "poly-random", "--scenario", "mono"]).unwrap();
        let (run, skipped) = selection(&a);
        assert_eq!(run.len(), 3 + 2, "{run:?}");
        assert_eq!(skipped.len(), 3);
        assert!(skipped.iter().all(|(f, _)| *f == Flavor::Direct));
        let quick = parse(&["--quick"]).unwrap();
        assert!(selection(&quick).0.iter().any(|(f, s)| *f == Flavor::CsInline && *s == Scenario::Offset(62)));
        assert_eq!(selection(&quick).0.iter().filter(|(_, s)| s.is_poly()).count(), 8);
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
    fn a_real_quick_measurement_becomes_a_row_that_round_trips_and_ratios_use_direct() {
        // Big enough runs (16k calls) and 5 repeats that a busy machine cannot make the median 2U run
        // look no slower than the U run; nothing here asserts a speed.
        let knobs = Knobs { unroll: 8, iterations: 2000, repeats: 5, warmup: 1 };
        let mut rows = Vec::new();
        for flavor in [Flavor::Direct, Flavor::Indirect] {
            for scenario in [Scenario::Mono, Scenario::Offset(3)] {
                let (used, pc) = measure_pair(flavor, scenario, &knobs, ArenaMode::DualMap).unwrap();
                rows.push(row("m", flavor, scenario, &used, &pc));
            }
        }
        let (used, pc) =
            measure_pair(Flavor::Lfence, Scenario::parse_list("poly-rr-2").unwrap()[0], &knobs, ArenaMode::Rwx)
                .unwrap();
        rows.push(row("m", Flavor::Lfence, Scenario::parse_list("poly-rr-2").unwrap()[0], &used, &pc));
        for r in &rows {
            // min comes from the fastest runs, median/p90 from the paired estimates: only p90 ≥ median holds.
            assert!(r.cycles_min.is_finite() && r.cycles_median <= r.cycles_p90, "{r:?}");
            assert!(r.ns_median.is_finite() && r.timer == measure::tsc::TIMER_LABEL, "{r:?}");
            for counted in [&r.instructions, &r.branch_misses] {
                assert!(counted.parse::<f64>().is_ok() || counted.starts_with("unavailable ("), "{r:?}");
            }
        }
        assert_eq!(baseline(&rows, &rows[3]).unwrap().0, &rows[1], "offset-3 compares with direct offset-3");
        assert_eq!(baseline(&rows, &rows[4]).unwrap(), (&rows[0], " (mono)"), "poly compares with direct mono");
        let t = table(&rows);
        assert_eq!(t.lines().count(), 2 + rows.len() + 2, "{t}");
        assert!(t.contains("poly-rr") && t.contains("(mono)"), "{t}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("calls.csv");
        write_csv(&path, &rows).unwrap();
        assert_eq!(callpatch_analysis::report::rows::read_csv::<CallsRow>(&path).unwrap(), rows);
    }
}
