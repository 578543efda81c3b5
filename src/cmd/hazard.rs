//! `callpatch hazard`: a cache-line-crossing call site rewritten with no protocol (byte-wise, or one
//! 4-byte store split by the line) and with `bp` while a thread executes it, each writer in a child
//! process → torn executions per million patches in `hazard.csv`. `bp` must never tear.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use callpatch_analysis::report::machine::Identity;
use callpatch_analysis::report::rows::{write_csv, HazardRow};
use callpatch_probes::experiments::hazard::{self, HazardWriter};
use callpatch_probes::patch::membarrier_ready;
use serde::{Deserialize, Serialize};

use super::child;

/// Options of `callpatch hazard`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Seconds of patching per writer (default 5; 1 with --quick).
    #[arg(long, conflicts_with = "patches")]
    pub seconds: Option<f64>,
    /// Patches per writer instead of a duration.
    #[arg(long)]
    pub patches: Option<u64>,
    /// Writers to run (naive-bytewise, naive-split4, bp).
    #[arg(long = "writer", value_delimiter = ',', default_value = "naive-bytewise,naive-split4,bp")]
    pub writers: Vec<HazardWriter>,
    /// One second per writer.
    #[arg(long)]
    pub quick: bool,
    /// Directory for hazard.csv.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Internal: run one writer here and write its result row (the parent's child process).
    #[arg(long, hide = true)]
    pub child: bool,
}

impl Args {
    /// (patch budget, time budget) for one writer.
    fn budget(&self) -> anyhow::Result<(u64, f64)> {
        match (self.patches, self.seconds) {
            (Some(0), _) => anyhow::bail!("--patches must be at least 1"),
            (Some(n), _) => Ok((n, 3600.0)),
            (None, Some(s)) => Ok((u64::MAX, super::seconds::budget(s, false).map(|_| s)?)),
            (None, None) => Ok((u64::MAX, if self.quick { 1.0 } else { 5.0 })),
        }
    }
}

/// What a hazard child writes: one row, its writer's outcome.
#[derive(Debug, Serialize, Deserialize)]
struct ChildRow {
    patches: u64,
    calls: u64,
    torn: u64,
    lost: u64,
    traps: u64,
    seconds: f64,
}

/// Runs `callpatch hazard`.
pub fn main(args: Args) -> anyhow::Result<()> {
    let (patches, seconds) = args.budget()?;
    if args.child {
        child::enter();
        let writer = *args.writers.first().context("one writer per child")?;
        let out = hazard::run(writer, patches, Duration::from_secs_f64(seconds))?;
        let row = ChildRow {
            patches: out.patches,
            calls: out.calls,
            torn: out.torn,
            lost: out.lost,
            traps: out.traps,
            seconds: out.seconds,
        };
        return child::write_rows(&[row]);
    }
    membarrier_ready()?;
    let _claim = super::outdir::claim(&args.out)?;
    let machine_id = Identity::read().machine_id;
    outln!(
        "{:<15} {:>12} {:>12} {:>9} {:>14} {:>8} {:>7}",
        "writer",
        "patches",
        "calls",
        "torn",
        "torn/M patches",
        "seconds",
        "crashed"
    );
    let mut rows = Vec::new();
    for &writer in &args.writers {
        let mut argv = vec!["hazard".to_string(), "--child".into(), "--writer".into(), writer.name().into()];
        match args.patches {
            Some(n) => argv.extend(["--patches".into(), n.to_string()]),
            None => argv.extend(["--seconds".into(), seconds.to_string()]),
        }
        let run = child::run::<ChildRow>(&argv, child::limit_for(seconds))?;
        let row = match (run.signal, run.rows.first()) {
            (None, Some(r)) if run.code == Some(0) => HazardRow {
                machine_id: machine_id.clone(),
                writer,
                patches: r.patches,
                torn: r.torn,
                torn_per_million: Some(if r.patches == 0 { 0.0 } else { r.torn as f64 * 1e6 / r.patches as f64 }),
                calls: r.calls,
                seconds: r.seconds,
                crashed: false,
            },
            (Some(_), _) => HazardRow {
                machine_id: machine_id.clone(),
                writer,
                patches: 0,
                torn: 0,
                torn_per_million: Some(0.0),
                calls: 0,
                seconds: 0.0,
                crashed: true,
            },
            (None, _) => anyhow::bail!("the {} hazard child failed (exit {:?})", writer.name(), run.code),
        };
        outln!(
            "{:<15} {:>12} {:>12} {:>9} {:>14.2} {:>8.2} {:>7}",
            row.writer,
            row.patches,
            row.calls,
            row.torn,
            row.torn_per_million.unwrap_or(0.0),
            row.seconds,
            row.crashed
        );
        rows.push(row);
    }
    let path = args.out.join("hazard.csv");
    write_csv(&path, &rows).with_context(|| format!("writing {}", path.display()))?;
    outln!("wrote {}", path.display());
    if let Some(bad) = rows.iter().find(|r| r.writer == HazardWriter::Bp && (r.torn > 0 || r.crashed)) {
        anyhow::bail!("bp tore {} calls (crashed: {}): the protocol is broken", bad.torn, bad.crashed);
    }
    Ok(())
}
