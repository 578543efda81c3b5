//! `callpatch stress`: callers run patched sites in tight loops while the patcher flips them
//! continuously; every caller's calls must add up exactly (0 misdirected, 0 lost) → `stress.csv`.
//! Each protocol runs in a child process, so a crash is reported (`crashed`) instead of ending us.

use std::path::PathBuf;

use anyhow::Context;
use callpatch_analysis::report::machine::Identity;
use callpatch_analysis::report::rows::{write_csv, StressRow};
use callpatch_probes::code::WriteMethod;
use callpatch_probes::experiments::live_sites::arena_mode_for;
use callpatch_probes::experiments::stress::{self, Limit, StressConfig};
use callpatch_probes::patch::{membarrier_ready, Protocol};
use serde::{Deserialize, Serialize};

use super::child;
use super::granule::GranuleArg;

/// Options of `callpatch stress`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Protocols to run, one after the other (bp, cs-prefix, aligned, aligned-8).
    #[arg(long = "protocol", value_delimiter = ',', default_value = "bp,cs-prefix,aligned,aligned-8")]
    pub protocols: Vec<Protocol>,
    #[command(flatten)]
    pub granule: GranuleArg,
    /// Caller threads running the sites.
    #[arg(long, default_value_t = 2)]
    pub callers: usize,
    /// Seconds of patching per protocol.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Sites in the caller loop (every batch patches all of them).
    #[arg(long, default_value_t = 64)]
    pub sites: usize,
    /// How code bytes are written: alias (W^X dual mapping), mprotect, procmem or direct (RWX).
    #[arg(long, default_value = "alias")]
    pub method: WriteMethod,
    /// 2 seconds per protocol.
    #[arg(long)]
    pub quick: bool,
    /// Directory for stress.csv.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Internal: run one protocol here and write its result rows (the parent's child process).
    #[arg(long, hide = true)]
    pub child: bool,
}

impl Args {
    fn seconds(&self) -> f64 {
        if self.quick {
            2.0
        } else {
            self.seconds
        }
    }

    fn protocols(&self) -> Vec<Protocol> {
        self.granule.apply(&self.protocols)
    }
}

/// Runs `callpatch stress`.
pub fn main(args: Args) -> anyhow::Result<()> {
    super::seconds::budget(args.seconds(), false)?;
    if args.callers == 0 || args.sites == 0 {
        anyhow::bail!("--callers and --sites must be at least 1");
    }
    super::callers::check(args.callers)?;
    if args.protocols().contains(&Protocol::Naive) {
        anyhow::bail!("naive patching is unsafe by design; `callpatch hazard` runs it in a child process");
    }
    if args.child {
        return child_main(&args);
    }
    membarrier_ready()?;
    let _claim = super::outdir::claim(&args.out)?;
    let machine_id = Identity::read().machine_id;
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for protocol in args.protocols() {
        if matches!(protocol, Protocol::Aligned { .. }) && !args.method.has_atomic_store() {
            outln!("{protocol}: skipped (the {} writer has no single atomic store)", args.method.name());
            continue;
        }
        let argv: Vec<String> = [
            "stress",
            "--child",
            "--protocol",
            protocol.name(),
            "--callers",
            &args.callers.to_string(),
            "--seconds",
            &args.seconds().to_string(),
            "--sites",
            &args.sites.to_string(),
            "--method",
            args.method.name(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let run = child::run::<ChildRow>(&argv, child::limit_for(args.seconds()))?;
        let row = match run.signal {
            Some(sig) => {
                failures.push(format!("{protocol}: the child died of signal {sig}"));
                outln!("{protocol}: CRASHED (signal {sig})");
                StressRow {
                    machine_id: machine_id.clone(),
                    protocol,
                    callers: args.callers as u32,
                    seconds: 0.0,
                    patches: 0,
                    calls: 0,
                    misdirected: 0,
                    traps: 0,
                    crashed: true,
                    late_traps: Some(0),
                    lost: Some(0),
                    patches_per_s: Some(0.0),
                }
            }
            None => {
                let row = report_child(&run.rows, &machine_id, protocol, args.callers)?;
                let lost = row.lost.unwrap_or(0);
                if row.misdirected != 0 || lost != 0 || run.code != Some(0) {
                    failures.push(format!(
                        "{protocol}: {} misdirected, {} lost (child exit {:?})",
                        row.misdirected, lost, run.code
                    ));
                }
                row
            }
        };
        rows.push(row);
    }
    // An empty stress.csv would pass for a run that found nothing wrong.
    anyhow::ensure!(
        !rows.is_empty(),
        "nothing was measured: every protocol was skipped (the {} writer has no single atomic store); no stress.csv written",
        args.method.name()
    );
    let path = args.out.join("stress.csv");
    write_csv(&path, &rows).with_context(|| format!("writing {}", path.display()))?;
    outln!("wrote {}", path.display());
    if !failures.is_empty() {
        anyhow::bail!("stress found errors: {}", failures.join("; "));
    }
    Ok(())
}

/// What a stress child writes: one row per caller thread, each with the run's totals (the same on
/// every row: CSV rows are flat, and there is always at least one caller).
#[derive(Debug, Serialize, Deserialize)]
struct ChildRow {
    caller: usize,
    iterations: u64,
    calls: u64,
    target0: u64,
    target1: u64,
    misdirected: u64,
    lost: u64,
    batches: u64,
    patches: u64,
    seconds: f64,
    traps: u64,
    late_traps: u64,
    fallbacks: usize,
}

/// The child: one protocol, written as one `ChildRow` per caller; exit status 1 if a call was
/// misdirected or lost.
fn child_main(args: &Args) -> anyhow::Result<()> {
    child::enter();
    let protocol = *args.protocols().first().context("one protocol per child")?;
    let limit = Limit { time: super::seconds::budget(args.seconds(), false)?, batches: None };
    let cfg = StressConfig {
        sites: args.sites,
        mode: arena_mode_for(args.method),
        method: args.method,
        ..StressConfig::new(protocol, args.callers, limit)
    };
    let out = stress::run(&cfg)?;
    let rows: Vec<ChildRow> = out
        .callers
        .iter()
        .enumerate()
        .map(|(caller, c)| ChildRow {
            caller,
            iterations: c.iterations,
            calls: c.calls,
            target0: c.tally.hits[0],
            target1: c.tally.hits[1],
            misdirected: c.misdirected(),
            lost: c.lost(),
            batches: out.batches,
            patches: out.patches,
            seconds: out.seconds,
            traps: out.traps,
            late_traps: out.late_traps,
            fallbacks: out.fallbacks,
        })
        .collect();
    child::write_rows(&rows)?;
    if !out.passed() {
        std::process::exit(1);
    }
    Ok(())
}

/// Prints a child's per-caller table and summary line and sums its rows into the `stress.csv` row.
fn report_child(rows: &[ChildRow], machine_id: &str, protocol: Protocol, callers: usize) -> anyhow::Result<StressRow> {
    let run = rows.first().context("the stress child printed no result")?;
    let (mut calls, mut misdirected, mut lost) = (0u64, 0u64, 0u64);
    outln!(
        "{protocol}: {:>7} {:>12} {:>12} {:>12} {:>12} {:>11} {:>6}",
        "caller",
        "iterations",
        "calls",
        "target0",
        "target1",
        "misdirected",
        "lost"
    );
    for c in rows {
        outln!(
            "{protocol}: {:>7} {:>12} {:>12} {:>12} {:>12} {:>11} {:>6}",
            c.caller,
            c.iterations,
            c.calls,
            c.target0,
            c.target1,
            c.misdirected,
            c.lost
        );
        calls += c.calls;
        misdirected += c.misdirected;
        lost += c.lost;
    }
    let (patches, seconds, traps, late) = (run.patches, run.seconds, run.traps, run.late_traps);
    let per_s = if seconds > 0.0 { patches as f64 / seconds } else { 0.0 };
    outln!(
        "{protocol}: {patches} site patches in {seconds:.1} s ({per_s:.0}/s), {} batches, {traps} traps ({late} late), \
         fallbacks/batch {}: {}",
        run.batches,
        run.fallbacks,
        if misdirected == 0 && lost == 0 { "every call accounted for" } else { "MISMATCH" }
    );
    Ok(StressRow {
        machine_id: machine_id.into(),
        protocol,
        callers: callers as u32,
        seconds,
        patches,
        calls,
        misdirected,
        traps,
        crashed: false,
        late_traps: Some(late),
        lost: Some(lost),
        patches_per_s: Some(per_s),
    })
}
