//! `callpatch plot DIR... [--out DIR]`: rebuilds every plot (SVG and PNG) and `summary.md` from the CSV
//! files of one or many machines. Rows are keyed by `machine_id`, so folders gathered from a fleet plot
//! side by side — no cluster needed, just the CSVs.

use std::path::PathBuf;

use callpatch_analysis::report::plots::calls::Scale;
use callpatch_analysis::report::{render_all_with, RenderOptions};

/// y axis of the calls plot.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default)]
pub enum ScaleArg {
    /// Logarithmic when the tallest bar is over 30× the lowest.
    #[default]
    Auto,
    Linear,
    Log,
}

/// Options of `callpatch plot`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Results folders: each holds callpatch CSVs (machine.csv, calls.csv, patch.csv, ...), or is a folder
    /// of such folders (e.g. `results/`).
    #[arg(value_name = "DIR", required = true)]
    pub dirs: Vec<PathBuf>,
    /// Where to write the plots and summary.md [default: DIR when one is given].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// y axis of the cycles-per-call plot.
    #[arg(long, value_enum, default_value_t = ScaleArg::Auto)]
    pub scale: ScaleArg,
    /// Sites per key in the trade-off model (the closest batch size measured for `bp` is used).
    #[arg(long, value_name = "S", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub sites: u64,
}

/// Runs `callpatch plot`.
pub fn main(args: Args) -> anyhow::Result<()> {
    let out = match (&args.out, args.dirs.as_slice()) {
        (Some(out), _) => out.clone(),
        (None, [one]) => one.clone(),
        (None, _) => anyhow::bail!("with several DIRs, say where the plots go: --out DIR"),
    };
    // Lock the folder written; a missing input folder is left for the reader to name.
    let _claim = if args.out.is_some() || out.is_dir() { Some(super::outdir::claim(&out)?) } else { None };
    let opts = RenderOptions {
        calls_scale: match args.scale {
            ScaleArg::Auto => Scale::Auto,
            ScaleArg::Linear => Scale::Linear,
            ScaleArg::Log => Scale::Log,
        },
        sites_per_key: args.sites,
    };
    let done = render_all_with(&args.dirs, &out, &opts)?;
    let folders: Vec<String> = done.folders.iter().map(|f| f.display().to_string()).collect();
    outln!(
        "read {} ({} machine{}: {})",
        folders.join(", "),
        done.machines.len(),
        plural(done.machines.len()),
        done.machines.join(", ")
    );
    for f in &done.files {
        outln!("wrote {}", f.display());
    }
    for n in &done.notes {
        outln!("note: {n}");
    }
    // Everything is drawn, failures included; the exit status says the results record one.
    anyhow::ensure!(
        done.failures.is_empty(),
        "the results record {} failure(s): {}",
        done.failures.len(),
        done.failures.join("; ")
    );
    Ok(())
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
