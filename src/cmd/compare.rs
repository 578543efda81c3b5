//! `callpatch compare BASE NEW [--threshold PCT] [--out DIR]`: the change from one result folder to
//! another (two kernels, two microcode versions, two machines, before and after a change), one row per
//! flavor × scenario and per protocol × batch, each with its interval and a verdict. The statistics are
//! `callpatch_analysis::report::compare`'s; this file parses, prints the Markdown report and writes
//! `compare.csv`.

use std::path::PathBuf;

use anyhow::Context as _;
use callpatch_analysis::report::compare::{compare, CompareOptions, DEFAULT_THRESHOLD_PCT};
use callpatch_analysis::report::rows::write_csv;

/// Options of `callpatch compare`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The folder of the earlier (reference) run: its calls.csv, and patch.csv and machine.csv when there.
    #[arg(value_name = "BASE")]
    pub base: PathBuf,
    /// The folder of the run compared with it.
    #[arg(value_name = "NEW")]
    pub new: PathBuf,
    /// Noise threshold, percent: a change smaller than this is "no change" however narrow its interval
    /// (one run's interval understates the variation from one run to the next).
    #[arg(long, value_name = "PCT", default_value_t = DEFAULT_THRESHOLD_PCT, value_parser = threshold)]
    pub threshold: f64,
    /// Also write compare.csv into this folder (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

fn threshold(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a percentage ≥ 0")),
    }
}

/// Runs `callpatch compare`.
pub fn main(args: Args) -> anyhow::Result<()> {
    let comparison = compare(&args.base, &args.new, CompareOptions { threshold_pct: args.threshold })?;
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
        let path = out.join("compare.csv");
        write_csv(&path, &comparison.csv_rows()).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    out!("{}", comparison.markdown());
    Ok(())
}
