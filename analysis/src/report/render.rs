//! Rebuilds every plot and `summary.md` from the CSV files of one or many results folders: the library
//! side of `callpatch plot`, and the last step of `callpatch run`.

use std::path::{Path, PathBuf};

use crate::report::dataset::{self, CsvFile, Dataset};
use crate::report::error::ReportError;
use crate::report::font;
use crate::report::lookup::Load;
use crate::report::plots::calls::{CallsPlot, Scale};
use crate::report::plots::census::CensusPlot;
use crate::report::plots::offsets::OffsetsPlot;
use crate::report::plots::patch_latency::PatchLatencyPlot;
use crate::report::plots::poly::PolyPlot;
use crate::report::plots::tradeoff::TradeoffPlot;
use crate::report::plots::{self, Plot};
use crate::report::rows::remove_stale;
use crate::report::summary::{self, PlotFile, SummaryInput};
use crate::report::tradeoff::{self, Tradeoff, DEFAULT_SITES};
use callpatch_vocab::HazardWriter;

/// Presentation choices.
#[derive(Clone, Debug)]
pub struct RenderOptions {
    /// y axis of the calls plot.
    pub calls_scale: Scale,
    /// S, the sites per key of the trade-off model (the closest measured bp batch size is used).
    pub sites_per_key: u64,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions { calls_scale: Scale::Auto, sites_per_key: DEFAULT_SITES }
    }
}

/// What [`render_all`] wrote.
#[derive(Clone, Debug, Default)]
pub struct Rendered {
    /// Every file written: each plot's SVG and PNG, then `summary.md`.
    pub files: Vec<PathBuf>,
    /// One line per plot or section skipped, and why.
    pub notes: Vec<String>,
    /// The folders actually read.
    pub folders: Vec<PathBuf>,
    /// Machines (runs) found.
    pub machines: Vec<String>,
    /// Failures the results record (calls that went wrong under `stress`, a `bp` row of `hazard` with
    /// torn calls): drawn and summarised like everything else, and a reason for `plot` to exit non-zero.
    pub failures: Vec<String>,
}

/// Reads the CSVs in `dirs`, writes every plot (SVG and PNG) and `summary.md` into `out` (created if
/// needed), with default options.
pub fn render_all(dirs: &[PathBuf], out: &Path) -> Result<Rendered, ReportError> {
    render_all_with(dirs, out, &RenderOptions::default())
}

/// [`render_all`] with explicit options.
pub fn render_all_with(dirs: &[PathBuf], out: &Path, opts: &RenderOptions) -> Result<Rendered, ReportError> {
    font::ensure_registered()?;
    let data = dataset::load(dirs)?;
    std::fs::create_dir_all(out).map_err(|e| ReportError::io(out, e))?;
    // Per run: the quiet model (plotted), and the busy one when the run measured with callers too.
    let models: Vec<Vec<Tradeoff>> = data
        .runs
        .iter()
        .map(|r| {
            let loads =
                [Load::Quiet, Load::Busy].into_iter().filter(|&l| r.callers_for(l).is_some() || l == Load::Quiet);
            loads.map(|l| tradeoff::model(r, &data.binaries, opts.sites_per_key, l)).collect()
        })
        .collect();

    let mut w = Writer {
        out,
        done: Rendered {
            folders: data.folders.clone(),
            machines: data.runs.iter().map(|r| r.label.clone()).collect(),
            ..Rendered::default()
        },
        written: Vec::new(),
    };
    w.plot(
        CallsPlot::new(&data.runs, opts.calls_scale),
        "calls",
        "Cycles per call by flavor and scenario",
        why(&data, CsvFile::Calls, "no calls rows"),
    )?;
    w.plot(
        PolyPlot::new(&data.runs),
        "poly",
        "Indirect vs retpoline vs inline as random targets grow",
        why(&data, CsvFile::Calls, "no random poly-K rows for indirect, retpoline or inline"),
    )?;
    w.plot(
        PatchLatencyPlot::new(&data.runs),
        "patch_latency",
        "Patch latency against batch size, with the 3-sync floor",
        why(&data, CsvFile::Patch, "no protocol rows"),
    )?;
    w.plot(
        TradeoffPlot::new(data.runs.iter().zip(&models).flat_map(|(r, v)| v.iter().map(move |t| (r, t))).collect()),
        "tradeoff",
        "The trade-off: cost per call with updates paid for",
        if data.has(CsvFile::Calls) && data.has(CsvFile::Patch) {
            "no patched mechanism and baseline both have all their inputs measured".into()
        } else {
            "needs both calls.csv and patch.csv".into()
        },
    )?;
    w.plot(
        OffsetsPlot::new(&data.binaries),
        "offsets",
        "Call-site start offset within a cache line",
        why(&data, CsvFile::CensusOffsets, "no call_rel32 or static_call_site offsets"),
    )?;
    w.plot(
        CensusPlot::new(&data.binaries),
        "census",
        "Census: sites crossing a cache line against 3/64 and 4/64",
        why(&data, CsvFile::Census, "no sites"),
    )?;

    let mut done = w.done;
    done.failures = recorded_failures(&data);
    let input = SummaryInput { data: &data, models: &models, plots: &w.written, notes: &done.notes };
    let summary = summary::write(&input, out)?;
    done.files.push(summary);
    Ok(done)
}

/// What went wrong in the measurements themselves: a protocol under which calls were misdirected, lost
/// or crashed (`stress`), and `bp` tearing a call (`hazard`: it must never).
fn recorded_failures(data: &Dataset) -> Vec<String> {
    let mut out = Vec::new();
    for run in &data.runs {
        for r in run.stress.iter().filter(|r| r.misdirected > 0 || r.crashed || r.lost.unwrap_or(0) > 0) {
            out.push(format!(
                "{}: stress.csv: {}: {} misdirected, {} lost{}",
                run.label,
                r.protocol.name(),
                r.misdirected,
                r.lost.unwrap_or(0),
                if r.crashed { ", crashed" } else { "" }
            ));
        }
        for r in run.hazard.iter().filter(|r| r.writer == HazardWriter::Bp && (r.torn > 0 || r.crashed)) {
            out.push(format!(
                "{}: hazard.csv: bp tore {} calls{}",
                run.label,
                r.torn,
                if r.crashed { ", crashed" } else { "" }
            ));
        }
    }
    out
}

/// Writes plots into one folder and remembers what was written and what was skipped.
struct Writer<'o> {
    out: &'o Path,
    done: Rendered,
    written: Vec<PlotFile>,
}

impl Writer<'_> {
    /// Renders `plot` as `stem`.svg/.png, or notes `why` it was skipped when there is nothing to draw.
    fn plot<P: Plot>(&mut self, plot: Option<P>, stem: &str, title: &str, why: String) -> Result<(), ReportError> {
        match plot {
            Some(p) => {
                debug_assert_eq!(p.stem(), stem);
                self.done.files.extend(plots::render(&p, self.out)?);
                self.written.push(PlotFile { stem: stem.into(), title: title.into() });
            }
            None => {
                // A plot from an earlier rendering must not stay beside this summary as if current.
                for ext in ["svg", "png"] {
                    let old = self.out.join(format!("{stem}.{ext}"));
                    remove_stale(&old).map_err(|e| ReportError::io(&old, e))?;
                }
                self.done.notes.push(format!("{stem}.svg/.png skipped: {why}."));
            }
        }
        Ok(())
    }
}

fn why(data: &Dataset, file: CsvFile, empty: &str) -> String {
    if data.has(file) {
        format!("{} has {empty}", file.file_name())
    } else {
        format!("{} not found", file.file_name())
    }
}
