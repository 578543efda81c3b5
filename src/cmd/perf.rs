//! `callpatch perf`: one probe under a perf event group, per-call figures in a table and `perf.csv`;
//! or, with `--hold`, the probe kept running for an outside `perf stat`/`perf record`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use callpatch_analysis::report::{machine, rows};
use callpatch_probes::code::{ArenaMode, EmitOptions, Flavor, Probe, Scenario};
use callpatch_probes::measure::{
    self, counter_session, counters, hardware_counters_status, tsc, EventSpec, Knobs, MapEntry, Unroll,
};

/// Options of `callpatch perf`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Call flavor to run (`callpatch calls --list-flavors` names them all).
    #[arg(long, default_value = "indirect")]
    flavor: String,
    /// One scenario: mono, poly-rr-K, poly-random-K, sites-N, offset-B.
    #[arg(long, default_value = "mono")]
    scenario: String,
    /// Events to count as one group (repeat, or separate with commas): perf names (cycles,
    /// instructions, branches, branch-misses, cache-misses, ref-cycles, task-clock, ...) or raw
    /// `rXXXX` (hex config, as in `perf stat`). Default: cycles, instructions, branches, branch-misses.
    #[arg(long = "event", short = 'e', value_delimiter = ',')]
    events: Vec<String>,
    /// Seconds spent in timed repeats (default 1); with --hold, how long to hold (default: until
    /// killed).
    #[arg(long)]
    seconds: Option<f64>,
    /// Keep the probe running for an outside tool (`perf stat -p PID`, `perf record -p PID`): prints
    /// the pid and the perf map path, then runs the U loop until killed (or for --seconds).
    #[arg(long)]
    hold: bool,
    /// Fewer iterations per timed run (the `--quick` knobs).
    #[arg(long)]
    quick: bool,
    /// CPU to pin to (default: the last allowed CPU).
    #[arg(long)]
    cpu: Option<usize>,
    /// Directory for perf.csv and machine.csv (default: results/<machine_id>).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Runs `callpatch perf`.
pub fn main(args: Args) -> anyhow::Result<()> {
    // Before measuring: a bad --out fails at once, and no other callpatch writes there meanwhile.
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from("results").join(machine::Identity::read().machine_id));
    let _claim = super::outdir::claim(&out)?;
    let flavor: Flavor = args.flavor.parse().map_err(anyhow::Error::msg)?;
    let scenario = one_scenario(&args.scenario)?;
    let events = if args.events.is_empty() {
        counters::hardware_events()
    } else {
        args.events.iter().map(|e| EventSpec::parse(e)).collect::<Result<Vec<_>, _>>()?
    };
    let hold_for = args.seconds.map(|s| super::seconds::budget(s, true)).transpose()?;

    // Read the allowed CPUs before pinning anything, then pin this (the measuring) thread.
    measure::allowed_cores()?;
    let cpu = measure::pin_current_thread(args.cpu)?;
    let base = if args.quick { Knobs::quick() } else { Knobs::default() };
    let probe = Probe::new(
        flavor,
        scenario,
        &EmitOptions { unroll: base.unroll as usize, mode: ArenaMode::Rwx, ..EmitOptions::default() },
    )
    .with_context(|| format!("emitting {flavor} {scenario}"))?;
    probe.verify().map_err(anyhow::Error::msg).context("the emitted probe does not call what it should")?;
    // sites-N fixes U = N; keep the calls per timed run about the same as for the base unroll.
    let unroll = probe.unroll() as u32;
    let knobs =
        Knobs { unroll, iterations: (base.iterations * u64::from(base.unroll) / u64::from(unroll)).max(1), ..base };

    let map: Vec<MapEntry> = probe.symbols().iter().map(MapEntry::from).collect();
    let map_path = measure::write_own_perf_map(&map)?;

    if args.hold {
        // Kept: perf reads it after this process ends.
        return hold(&probe, &knobs, cpu, &map_path, hold_for);
    }
    // Only `--hold` serves an outside perf; otherwise the map goes when this process does.
    let _map = RemoveOnDrop(map_path.clone());

    let hz = tsc::hz()?;
    let seconds = args.seconds.unwrap_or(1.0);
    let mut run = |u: Unroll, iters: u64| {
        std::hint::black_box(probe.run(u, iters));
    };
    let session = counter_session(&knobs, &events, seconds, &mut run)?;

    let k = session.knobs;
    outln!(
        "callpatch perf: {flavor} {scenario} on CPU {cpu}; U = {}, {} iterations, {} repeats; TSC {:.3} GHz",
        k.unroll,
        k.iterations,
        k.repeats,
        hz / 1e9
    );
    outln!("perf map: {} ({} ranges)", map_path.display(), map.len());
    let width = session.figures.iter().map(|f| f.event.len()).max().unwrap_or(5).max(5);
    outln!("{:<width$}  {:>12}  {:<10}  {:<7}  note", "event", "per call", "unit", "read");
    for f in &session.figures {
        let value = match f.per_call.value() {
            Some(v) => format!("{v:>12.3}"),
            None => format!("{:>12}", "unavailable"),
        };
        outln!("{:<width$}  {value}  {:<10}  {:<7}  {}", f.event, unit(&f.event), f.read_path, f.note);
    }
    if let Some(e) = &session.counters_error {
        outln!();
        outln!("requested counters unavailable: {e}");
        outln!("  remedy: {}", e.remedy());
        outln!("  still reported: TSC reference cycles and the software events (kernel-counted, no PMU needed).");
    }

    let id = machine::identify(hz, &hardware_counters_status());
    let perf_rows: Vec<rows::PerfRow> = session
        .figures
        .iter()
        .map(|f| rows::PerfRow {
            machine_id: id.machine_id.clone(),
            flavor,
            scenario: scenario.name().into(),
            param: scenario.param().map_or(String::new(), |p| p.to_string()),
            event: f.event.clone(),
            per_call: f.per_call.to_string(),
            read_path: f.read_path.clone(),
            note: f.note.clone(),
            unroll: k.unroll,
            iterations: k.iterations,
            repeats: k.repeats,
        })
        .collect();
    let perf_csv = out.join("perf.csv");
    rows::write_csv(&perf_csv, &perf_rows).with_context(|| format!("writing {}", perf_csv.display()))?;
    let machine_csv = out.join("machine.csv");
    rows::write_csv(&machine_csv, &[id]).with_context(|| format!("writing {}", machine_csv.display()))?;
    outln!("wrote {} and {}", perf_csv.display(), machine_csv.display());
    Ok(())
}

/// Exactly one scenario (a group like `poly` is refused: a session runs one probe).
fn one_scenario(s: &str) -> anyhow::Result<Scenario> {
    match Scenario::parse_list(s).map_err(anyhow::Error::msg)?.as_slice() {
        [one] => Ok(*one),
        many => bail!("--scenario `{s}` names {} scenarios; give one, e.g. `poly-random-4`", many.len()),
    }
}

/// What one per-call figure counts.
fn unit(event: &str) -> &'static str {
    match event {
        "tsc-ref-cycles" => "ref cycles",
        "cycles" | "cpu-cycles" => "cycles",
        "ref-cycles" => "ref cycles",
        "task-clock" | "cpu-clock" => "ns",
        _ => "events",
    }
}

/// Removes a file when dropped, on every way out of the function that holds it.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Announces the probe and runs its U loop until killed (or for `seconds`).
fn hold(
    probe: &Probe,
    knobs: &Knobs,
    cpu: usize,
    map: &std::path::Path,
    seconds: Option<std::time::Duration>,
) -> anyhow::Result<()> {
    let pid = std::process::id();
    outln!(
        "holding {} {} on CPU {cpu}: pid {pid}, perf map {}; attach with `perf stat -p {pid}` or `perf record -p {pid}`, \
         stop with `kill {pid}`",
        probe.flavor(),
        probe.scenario(),
        map.display()
    );
    super::stdout::flush();
    // `seconds` was checked to leave a representable deadline (`seconds::budget`).
    let deadline = seconds.and_then(|s| std::time::Instant::now().checked_add(s));
    let mut calls: u64 = 0;
    loop {
        std::hint::black_box(probe.run(Unroll::Single, knobs.iterations));
        calls += knobs.iterations * u64::from(knobs.unroll);
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            outln!("held for {:.1} s: {calls} calls", seconds.unwrap_or_default().as_secs_f64());
            return Ok(());
        }
    }
}
