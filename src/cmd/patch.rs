//! `callpatch patch`: batch latency per protocol and batch size, with and without caller threads
//! running the sites, and the cost of one membarrier in the same run → `patch.csv`.

use std::path::PathBuf;

use anyhow::Context;
use callpatch_analysis::report::interval::Interval;
use callpatch_analysis::report::machine::Identity;
use callpatch_analysis::report::rows::{write_csv, PatchRow};
use callpatch_probes::code::WriteMethod;
use callpatch_probes::experiments::latency::{measure_protocol, measure_sync, LatencyPoint};
use callpatch_probes::experiments::live_sites::{arena_mode_for, LiveSites, Placement};
use callpatch_probes::measure::pin::{allowed_cores, pin_current_thread};
use callpatch_probes::patch::{membarrier_ready, Protocol};
use callpatch_vocab::PatchSubject;

use super::granule::GranuleArg;

/// Options of `callpatch patch`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Protocols to measure (bp, cs-prefix, aligned, aligned-8, naive); comma-separated or repeated.
    #[arg(long = "protocol", value_delimiter = ',', default_value = "bp,cs-prefix,aligned,aligned-8")]
    pub protocols: Vec<Protocol>,
    #[command(flatten)]
    pub granule: GranuleArg,
    /// Batch sizes (sites per batch). Default 1,10,100,1000,10000 (without 10000 under --quick).
    #[arg(long, value_delimiter = ',')]
    pub batch: Vec<usize>,
    /// Caller threads for the "with callers" half of the run (the other half has none).
    #[arg(long, default_value_t = 1)]
    pub callers: usize,
    /// How code bytes are written: alias (W^X dual mapping), mprotect, procmem or direct (RWX).
    #[arg(long, default_value = "alias")]
    pub method: WriteMethod,
    /// Fewer repeats and no 10000-site batch (a smoke run, seconds).
    #[arg(long)]
    pub quick: bool,
    /// Directory for patch.csv.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
}

impl Args {
    fn protocols(&self) -> Vec<Protocol> {
        self.granule.apply(&self.protocols)
    }

    fn batches(&self) -> Vec<usize> {
        match (self.batch.is_empty(), self.quick) {
            (false, _) => self.batch.clone(),
            (true, false) => vec![1, 10, 100, 1000, 10000],
            (true, true) => vec![1, 10, 100, 1000],
        }
    }
}

fn header() {
    outln!(
        "{:<10} {:>7} {:>6} {:>5} {:>12} {:>12} {:>11} {:>8} {:>5} {:>9}",
        "protocol",
        "callers",
        "batch",
        "syncs",
        "min µs",
        "median µs",
        "µs/site",
        "traps",
        "late",
        "fallback"
    );
}

fn line(p: &LatencyPoint) {
    outln!(
        "{:<10} {:>7} {:>6} {:>5} {:>12.2} {:>12.2} {:>11.3} {:>8} {:>5} {:>9}",
        p.protocol,
        p.callers,
        p.batch,
        p.syncs,
        p.latency_ns_min / 1e3,
        p.latency_ns_median / 1e3,
        p.latency_ns_median / 1e3 / p.batch as f64,
        p.traps,
        p.late_traps,
        p.fallbacks
    );
}

/// Runs `callpatch patch`.
pub fn main(args: Args) -> anyhow::Result<()> {
    if args.batch.contains(&0) {
        anyhow::bail!("--batch sizes must be at least 1");
    }
    super::callers::check(args.callers)?;
    membarrier_ready()?;
    let _claim = super::outdir::claim(&args.out)?;
    // The patcher on the first allowed CPU, callers on the others (see `with_callers`).
    let first = *allowed_cores()?.first().context("no CPU allowed")?;
    pin_current_thread(Some(first))?;
    let (protocols, batches) = (args.protocols(), args.batches());
    let scale = if args.quick { 0.1 } else { 1.0 };
    let mode = arena_mode_for(args.method);
    let callers_set: Vec<usize> = if args.callers == 0 { vec![0] } else { vec![0, args.callers] };
    let mut points = Vec::new();
    header();
    for &callers in &callers_set {
        // The sync alone, with the same number of threads running code of this process.
        let bed = LiveSites::new(Protocol::Bp, 64, Placement::Spread, mode)?;
        let sync = measure_sync(&bed, callers, if args.quick { 200 } else { 2000 })?;
        line(&sync);
        points.push(sync);
        for &protocol in &protocols {
            if matches!(protocol, Protocol::Aligned { .. }) && !args.method.has_atomic_store() {
                let why = format!("the {} writer has no single atomic store", args.method.name());
                outln!("{:<10} {callers:>7}  (skipped: {why})", protocol.name());
                continue;
            }
            if protocol == Protocol::Naive && callers > 0 {
                outln!(
                    "{:<10} {callers:>7}  (skipped: naive patching under live callers is `callpatch hazard`)",
                    "naive"
                );
                continue;
            }
            let mut measured = measure_protocol(protocol, &batches, callers, mode, args.method, scale, &mut line)?;
            points.append(&mut measured);
        }
    }
    outln!();
    summary(&points, &callers_set);
    let machine_id = Identity::read().machine_id;
    let sync_ns = |callers: usize| {
        points
            .iter()
            .find(|p| p.protocol == PatchSubject::Membarrier && p.callers == callers)
            .map_or(f64::NAN, |p| p.latency_ns_median)
    };
    let rows: Vec<PatchRow> = points
        .iter()
        .map(|p| PatchRow {
            machine_id: machine_id.clone(),
            protocol: p.protocol,
            batch: p.batch as u64,
            syncs: p.syncs,
            latency_ns_min: p.latency_ns_min,
            latency_ns_median: p.latency_ns_median,
            traps: p.traps,
            callers: p.callers as u32,
            method: args.method.name().into(),
            sync_ns: sync_ns(p.callers),
            fallback: Some(p.fallbacks as u64),
            late_traps: Some(p.late_traps),
            latency_ns_lo: p.latency_ns_lo,
            latency_ns_hi: p.latency_ns_hi,
        })
        .collect();
    let path = args.out.join("patch.csv");
    write_csv(&path, &rows).with_context(|| format!("writing {}", path.display()))?;
    outln!("wrote {}", path.display());
    Ok(())
}

/// How many times cheaper one batch of N sites is than N single-site batches, with the interval the two
/// latency intervals give it; a verdict only where that interval lies above 1.
fn batching_gain(single: &LatencyPoint, batch: &LatencyPoint) -> String {
    let latency = |p: &LatencyPoint| Interval::new(p.latency_ns_lo?, p.latency_ns_median, p.latency_ns_hi?);
    let gain = batch.batch as f64 * single.latency_ns_median / batch.latency_ns_median;
    match latency(single).zip(latency(batch)).and_then(|(s, b)| s.scale(batch.batch as f64).over(b)) {
        Some(g) if g.lo > 1.0 => format!("{gain:.0}× faster [{:.0}, {:.0}]", g.lo, g.hi),
        Some(g) => format!("indistinguishable here ({gain:.1}× by the medians, interval [{:.2}, {:.2}])", g.lo, g.hi),
        None => format!("{gain:.0}× by the medians (no interval)"),
    }
}

/// The two numbers a design discussion needs from patch.csv: how much batching gains, and how close a
/// single-site patch comes to its limit of three syncs.
fn summary(points: &[LatencyPoint], callers_set: &[usize]) {
    let point = |proto: PatchSubject, batch: usize, callers: usize| {
        points.iter().find(|p| p.protocol == proto && p.batch == batch && p.callers == callers)
    };
    let find = |proto, batch, callers| point(proto, batch, callers).map(|p| p.latency_ns_median);
    for &c in callers_set {
        let (Some(sync), Some(one)) = (find(PatchSubject::Membarrier, 1, c), find(Protocol::Bp.into(), 1, c)) else {
            continue;
        };
        outln!(
            "callers={c}: membarrier {:.2} µs; bp single-site rate {:.0}/s vs limit 1/(3×sync) {:.0}/s: ratio {:.2}",
            sync / 1e3,
            1e9 / one,
            1e9 / (3.0 * sync),
            3.0 * sync / one
        );
        if let (Some(single), Some(batch)) = (point(Protocol::Bp.into(), 1, c), point(Protocol::Bp.into(), 1000, c)) {
            outln!("callers={c}: bp batch of 1000 vs 1000 single patches: {}", batching_gain(single, batch));
        }
    }
}
