//! Two result folders side by side (`callpatch compare BASE NEW`): two kernels, two microcode
//! versions, two machines, before and after a change. The role of criterion's `--baseline`, critcmp
//! and hyperfine's "x ± y times faster", with the many-rows problem handled.
//!
//! Rows are matched by key: flavor × scenario (× param) in `calls.csv`, protocol × batch × callers ×
//! method in `patch.csv`. A key on one side only is listed, not compared. For each matched key:
//!
//! 1. **The quantity.** `calls`: the paired ratio to the baseline (`ratio_median` in
//!    [`ratio_lo`, `ratio_hi`]) when both rows have it, else `cycles_median` with the spread of
//!    `cycles_min` and `cycles_p90` — a crude spread of the samples, not an interval on the median.
//!    `patch`: `latency_ns_median` in [`latency_ns_lo`, `latency_ns_hi`], else the median with
//!    `median − min` as its half-width on the log scale. Lower is better for all of them.
//! 2. **The change** NEW / BASE − 1 on the log scale: each side's 95% interval is read as ±1.96 σ of
//!    ln(value), the σ's combine as independent errors (σ² = σ_base² + σ_new²), and the change's 95%
//!    interval is exp(d ± 1.96 σ) − 1 for d = ln(NEW / BASE). The two-sided p-value of "no change" is
//!    that of |d| / σ under the same normal approximation ([`change`]).
//! 3. **Many rows.** A full run compares hundreds of rows, so at p < 0.05 a dozen would "change" by
//!    chance. The p-values of all rows compared (both files together) are adjusted by
//!    Benjamini–Hochberg ([`bh_adjust`]); a row is a discovery when its adjusted value is ≤ q = 0.05,
//!    which keeps the expected share of false discoveries among the reported ones at 5%.
//! 4. **Noise threshold.** One run's interval describes the scatter inside that run, not between runs
//!    (another boot, another placement in memory, another frequency): two runs of the same build differ
//!    by more than their intervals say. A discovery is reported as `faster` / `slower` only when
//!    |change| also exceeds the threshold (5% unless told otherwise); anything else is `no change`,
//!    with the interval that says how large a change the data cannot rule out.
//!
//! Rows flagged `noisy` on either side are compared like the others and marked. Bad input (a missing
//! folder, a folder without `calls.csv`, a malformed file, a NaN or infinite value, an interval that
//! does not contain its median, two rows with one key) is an error that names the file and the row.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use callpatch_vocab::rows::CompareRow;
use callpatch_vocab::{Flavor, PatchSubject, RowScenario};

use crate::report::dataset::{self, CsvFile};
use crate::report::error::ReportError;
use crate::report::rows::{CallsRow, MachineRow, PatchRow};

/// z of a two-sided 95% normal interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// The default noise threshold, percent: a change smaller than this is `no change` however narrow its
/// interval (run-to-run variation of one build on one quiet machine stays below it).
pub const DEFAULT_THRESHOLD_PCT: f64 = 5.0;

/// The false-discovery rate Benjamini–Hochberg holds across all rows compared.
pub const FDR_Q: f64 = 0.05;

/// Why two folders could not be compared.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// Reading a folder or one of its files failed.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// The folder has no `calls.csv`.
    #[error("{}: no calls.csv (compare takes the folder of one run, e.g. results/<machine_id>)", .0.display())]
    NoCalls(PathBuf),
    /// The folder's rows come from more than one machine.
    #[error("{}: rows of {} machines ({}); compare takes the folder of one run per side", path.display(), ids.len(), ids.join(", "))]
    SeveralMachines {
        /// The folder.
        path: PathBuf,
        /// The machine ids found.
        ids: Vec<String>,
    },
    /// Two rows of one file have the same key.
    #[error("{}: two rows for {key}", path.display())]
    Duplicate {
        /// The file.
        path: PathBuf,
        /// The key, as the tables show it.
        key: String,
    },
    /// A number compare reads is NaN or infinite, or an interval does not contain its median.
    #[error("{}: {key}: {what}", path.display())]
    BadValue {
        /// The file.
        path: PathBuf,
        /// The row's key, as the tables show it.
        key: String,
        /// What is wrong, naming the column.
        what: String,
    },
}

/// A value and its 95% interval, `lo ≤ value ≤ hi`, all positive.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// The point estimate (a median).
    pub value: f64,
    /// Lower end of the interval.
    pub lo: f64,
    /// Upper end of the interval.
    pub hi: f64,
}

impl Estimate {
    /// σ of ln(value), reading the interval as ±1.96 σ on the log scale (an asymmetric interval's two
    /// halves averaged).
    pub fn log_sigma(&self) -> f64 {
        (self.hi.ln() - self.lo.ln()) / (2.0 * Z95)
    }
}

/// The change from BASE to NEW (see the module docs for the method).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Change {
    /// NEW / BASE − 1, percent.
    pub pct: f64,
    /// Lower end of its 95% interval, percent.
    pub lo_pct: f64,
    /// Upper end of its 95% interval, percent.
    pub hi_pct: f64,
    /// Two-sided p-value of "no change".
    pub p_value: f64,
}

impl Change {
    /// The largest change, either way, the 95% interval cannot rule out, percent.
    pub fn bound_pct(&self) -> f64 {
        self.lo_pct.abs().max(self.hi_pct.abs())
    }
}

/// The change from `base` to `new`: d = ln(new / base), σ² = σ_base² + σ_new² (each from its side's
/// interval, [`Estimate::log_sigma`]), interval exp(d ± 1.96 σ) − 1, p = P(|Z| ≥ |d| / σ). Two
/// intervals of zero width give p = 1 for equal values and 0 otherwise.
pub fn change(base: Estimate, new: Estimate) -> Change {
    let d = new.value.ln() - base.value.ln();
    let sigma = base.log_sigma().hypot(new.log_sigma());
    let pct = |x: f64| x.exp_m1() * 100.0;
    let p_value = if sigma > 0.0 {
        erfc(d.abs() / sigma / std::f64::consts::SQRT_2)
    } else if d == 0.0 {
        1.0
    } else {
        0.0
    };
    Change { pct: pct(d), lo_pct: pct(d - Z95 * sigma), hi_pct: pct(d + Z95 * sigma), p_value: p_value.min(1.0) }
}

/// Benjamini–Hochberg adjusted p-values (in the order given): for the i-th smallest of m p-values,
/// min over j ≥ i of p₍ⱼ₎ · m / j, at most 1. Rejecting every row whose adjusted value is ≤ q is the
/// step-up procedure at false-discovery rate q.
pub fn bh_adjust(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut adjusted = vec![1.0; m];
    let mut running = 1.0_f64;
    for (rank, &i) in order.iter().enumerate().rev() {
        running = running.min(p[i] * m as f64 / (rank + 1) as f64);
        adjusted[i] = running.min(1.0);
    }
    adjusted
}

/// The complementary error function (Numerical Recipes' `erfcc`, fractional error below 1.2e-7: ample
/// for a p-value).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Which `calls.csv` or `patch.csv` measurement a row is: the key rows are matched by.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    /// A `calls.csv` row.
    Calls {
        /// The flavor.
        flavor: Flavor,
        /// The scenario with its param, read leniently.
        scenario: RowScenario,
    },
    /// A `patch.csv` row.
    Patch {
        /// The protocol, or `membarrier`.
        subject: PatchSubject,
        /// Concurrent caller threads.
        callers: u32,
        /// Text write method (empty when the file does not say).
        method: String,
        /// Sites per batch.
        batch: u64,
    },
}

impl Key {
    fn of_calls(r: &CallsRow) -> Key {
        Key::Calls { flavor: r.flavor, scenario: r.scenario() }
    }

    fn of_patch(r: &PatchRow) -> Key {
        Key::Patch { subject: r.protocol, callers: r.callers, method: r.method.clone(), batch: r.batch }
    }

    /// `calls` or `patch`.
    pub fn kind(&self) -> &'static str {
        match self {
            Key::Calls { .. } => "calls",
            Key::Patch { .. } => "patch",
        }
    }
}

impl std::fmt::Display for Key {
    /// `retpoline random poly-4`, `bp batch 100, 1 caller, alias`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Calls { flavor, scenario } => write!(f, "{flavor} {scenario}"),
            Key::Patch { subject, callers, method, batch } => {
                write!(f, "{subject} batch {batch}, {callers} caller{}", if *callers == 1 { "" } else { "s" })?;
                if !method.is_empty() {
                    write!(f, ", {method}")?;
                }
                Ok(())
            }
        }
    }
}

/// One result folder, read for comparison.
#[derive(Clone, Debug)]
pub struct Side {
    /// The folder as given.
    pub folder: PathBuf,
    /// The machine its rows come from (`?` for a folder with neither rows nor `machine.csv`).
    pub machine_id: String,
    /// Its `machine.csv` row, when there is one.
    pub machine: Option<MachineRow>,
    /// Whether the folder has a `patch.csv`.
    pub has_patch: bool,
    calls: BTreeMap<Key, CallsRow>,
    patch: BTreeMap<Key, PatchRow>,
}

impl Side {
    /// Reads `calls.csv`, `patch.csv` (optional) and `machine.csv` of one run's folder and checks every
    /// number compare may use.
    pub fn load(folder: &Path) -> Result<Side, CompareError> {
        let meta = std::fs::metadata(folder)
            .map_err(|e| ReportError::NotAFolder { path: folder.to_path_buf(), reason: e.to_string() })?;
        if !meta.is_dir() {
            return Err(ReportError::NotAFolder { path: folder.to_path_buf(), reason: "it is a file".into() }.into());
        }
        if !folder.join(CsvFile::Calls.file_name()).is_file() {
            return Err(CompareError::NoCalls(folder.to_path_buf()));
        }
        let data = dataset::load(&[folder.to_path_buf()])?;
        let run = match data.runs.as_slice() {
            [] => None,
            [one] => Some(one.clone()),
            many => {
                return Err(CompareError::SeveralMachines {
                    path: folder.to_path_buf(),
                    ids: many.iter().map(|r| r.machine_id.clone()).collect(),
                })
            }
        };
        let run = run.unwrap_or_default();
        let calls_path = folder.join(CsvFile::Calls.file_name());
        let patch_path = folder.join(CsvFile::Patch.file_name());
        let mut calls = BTreeMap::new();
        for r in run.calls {
            let key = Key::of_calls(&r);
            check_calls(&calls_path, &key, &r)?;
            if calls.insert(key.clone(), r).is_some() {
                return Err(CompareError::Duplicate { path: calls_path, key: key.to_string() });
            }
        }
        let mut patch = BTreeMap::new();
        for r in run.patch {
            let key = Key::of_patch(&r);
            check_patch(&patch_path, &key, &r)?;
            if patch.insert(key.clone(), r).is_some() {
                return Err(CompareError::Duplicate { path: patch_path, key: key.to_string() });
            }
        }
        Ok(Side {
            folder: folder.to_path_buf(),
            machine_id: if run.machine_id.is_empty() { "?".into() } else { run.machine_id },
            machine: run.machine,
            has_patch: data.has(CsvFile::Patch),
            calls,
            patch,
        })
    }

    /// One line naming the folder and what produced it.
    pub fn describe(&self) -> String {
        let mut s = format!("`{}` — {}", self.folder.display(), self.machine_id);
        if let Some(m) = &self.machine {
            let _ = write!(
                s,
                " ({}; microcode {}; kernel {}; callpatch {} {})",
                m.cpu_model, m.microcode, m.kernel, m.callpatch_version, m.git_rev
            );
        }
        s
    }
}

fn bad(path: &Path, key: &Key, what: String) -> CompareError {
    CompareError::BadValue { path: path.to_path_buf(), key: key.to_string(), what }
}

/// Every number in `columns` must be finite.
fn check_finite(path: &Path, key: &Key, columns: &[(&str, Option<f64>)]) -> Result<(), CompareError> {
    for (name, v) in columns {
        if let Some(v) = v.filter(|v| !v.is_finite()) {
            return Err(bad(path, key, format!("{name} is {v}, not a finite number")));
        }
    }
    Ok(())
}

/// `lo ≤ median ≤ hi`, when all three are present (a relative slack of 1e-9 for rounding).
fn check_interval(path: &Path, key: &Key, names: [&str; 3], v: [Option<f64>; 3]) -> Result<(), CompareError> {
    if let [Some(lo), Some(mid), Some(hi)] = v {
        let slack = 1e-9 * mid.abs();
        if lo > mid + slack || mid > hi + slack {
            let [lo_name, mid_name, hi_name] = names;
            return Err(bad(
                path,
                key,
                format!("the interval [{lo_name}, {hi_name}] = [{lo}, {hi}] does not contain {mid_name} = {mid}"),
            ));
        }
    }
    Ok(())
}

fn check_calls(path: &Path, key: &Key, r: &CallsRow) -> Result<(), CompareError> {
    check_finite(
        path,
        key,
        &[
            ("cycles_min", Some(r.cycles_min)),
            ("cycles_median", Some(r.cycles_median)),
            ("cycles_p90", Some(r.cycles_p90)),
            ("ratio_median", r.ratio_median),
            ("ratio_lo", r.ratio_lo),
            ("ratio_hi", r.ratio_hi),
        ],
    )?;
    check_interval(path, key, ["ratio_lo", "ratio_median", "ratio_hi"], [r.ratio_lo, r.ratio_median, r.ratio_hi])
}

fn check_patch(path: &Path, key: &Key, r: &PatchRow) -> Result<(), CompareError> {
    check_finite(
        path,
        key,
        &[
            ("latency_ns_min", Some(r.latency_ns_min)),
            ("latency_ns_median", Some(r.latency_ns_median)),
            ("latency_ns_lo", r.latency_ns_lo),
            ("latency_ns_hi", r.latency_ns_hi),
        ],
    )?;
    check_interval(
        path,
        key,
        ["latency_ns_lo", "latency_ns_median", "latency_ns_hi"],
        [r.latency_ns_lo, Some(r.latency_ns_median), r.latency_ns_hi],
    )
}

/// What a compared value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quantity {
    /// `ratio_median` in [`ratio_lo`, `ratio_hi`]: cost relative to the paired baseline.
    Ratio,
    /// `cycles_median`, spread [min, max] of `cycles_min`, `cycles_median`, `cycles_p90` (fallback).
    Cycles,
    /// `latency_ns_median` in [`latency_ns_lo`, `latency_ns_hi`].
    LatencyNs,
    /// `latency_ns_median`, half-width ln(median / min) on the log scale (fallback).
    LatencyNsSpread,
}

impl Quantity {
    /// The `quantity` column of `compare.csv`.
    pub fn name(self) -> &'static str {
        match self {
            Quantity::Ratio => "ratio",
            Quantity::Cycles => "cycles",
            Quantity::LatencyNs => "latency_ns",
            Quantity::LatencyNsSpread => "latency_ns_spread",
        }
    }

    /// Whether this is a fallback whose spread is not a confidence interval.
    pub fn is_fallback(self) -> bool {
        matches!(self, Quantity::Cycles | Quantity::LatencyNsSpread)
    }

    fn unit(self) -> &'static str {
        match self {
            Quantity::Ratio => "×",
            Quantity::Cycles => " cyc",
            Quantity::LatencyNs | Quantity::LatencyNsSpread => " ns",
        }
    }
}

/// The estimate of a calls row, or why it has none that can be compared on the log scale.
fn calls_estimate(r: &CallsRow, quantity: Quantity) -> Result<Estimate, String> {
    let e = match quantity {
        Quantity::Ratio => Estimate {
            value: r.ratio_median.unwrap_or(f64::NAN),
            lo: r.ratio_lo.unwrap_or(f64::NAN),
            hi: r.ratio_hi.unwrap_or(f64::NAN),
        },
        _ => {
            let v = [r.cycles_min, r.cycles_median, r.cycles_p90];
            Estimate {
                value: r.cycles_median,
                lo: v.iter().copied().fold(f64::INFINITY, f64::min),
                hi: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            }
        }
    };
    positive(e)
}

fn patch_estimate(r: &PatchRow, quantity: Quantity) -> Result<Estimate, String> {
    let e = match quantity {
        Quantity::LatencyNs => Estimate {
            value: r.latency_ns_median,
            lo: r.latency_ns_lo.unwrap_or(f64::NAN),
            hi: r.latency_ns_hi.unwrap_or(f64::NAN),
        },
        _ => {
            let (min, median) = (r.latency_ns_min, r.latency_ns_median);
            if min <= 0.0 || median <= 0.0 {
                Estimate { value: median, lo: min.min(median), hi: median }
            } else {
                let half = (median / min).ln().abs();
                Estimate { value: median, lo: median * (-half).exp(), hi: median * half.exp() }
            }
        }
    };
    positive(e)
}

fn positive(e: Estimate) -> Result<Estimate, String> {
    if e.value > 0.0 && e.lo > 0.0 && e.hi > 0.0 {
        Ok(e)
    } else if e.value <= 0.0 {
        Err(format!("a value ≤ 0 ({}) has no ratio", e.value))
    } else {
        Err(format!("its interval reaches 0 ([{}, {}])", e.lo, e.hi))
    }
}

/// The verdict of one compared row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// NEW is lower: a discovery beyond the threshold.
    Faster,
    /// NEW is higher: a discovery beyond the threshold.
    Slower,
    /// Not a discovery after false-discovery control, or within the noise threshold.
    NoChange,
}

impl Verdict {
    /// The `verdict` column of `compare.csv`.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Faster => "faster",
            Verdict::Slower => "slower",
            Verdict::NoChange => "no change",
        }
    }
}

/// One key measured on both sides, and the verdict.
#[derive(Clone, Debug)]
pub struct Compared {
    /// Which measurement.
    pub key: Key,
    /// The `scenario` and `param` columns of BASE's row (`calls`), as written.
    pub columns: (String, String),
    /// What was compared.
    pub quantity: Quantity,
    /// BASE's value.
    pub base: Estimate,
    /// NEW's value.
    pub new: Estimate,
    /// The change and its p-value.
    pub change: Change,
    /// The Benjamini–Hochberg adjusted p-value over all rows compared.
    pub q_value: f64,
    /// The verdict.
    pub verdict: Verdict,
    /// Whether BASE's and NEW's rows were flagged noisy.
    pub noisy: (bool, bool),
    /// A discovery whose change stayed within the threshold.
    pub below_threshold: bool,
}

impl Compared {
    /// The four cells every table row ends with: BASE, NEW, the change and the verdict.
    fn compared_cells(&self, threshold_pct: f64) -> String {
        format!(
            "{} | {} | {} | {}",
            estimate_cell(self.base, self.quantity),
            estimate_cell(self.new, self.quantity),
            change_cell(self.change),
            self.verdict_text(threshold_pct)
        )
    }

    /// The verdict as the table words it: the verdict with its change, or why it is "no change".
    pub fn verdict_text(&self, threshold_pct: f64) -> String {
        let mut s = match self.verdict {
            Verdict::Faster | Verdict::Slower => format!("**{}**", self.verdict.name()),
            Verdict::NoChange if self.below_threshold => {
                format!("no change ({}% is within the ±{threshold_pct}% noise threshold)", pct(self.change.pct))
            }
            Verdict::NoChange => format!("no change (indistinguishable here, ±{:.1}%)", self.change.bound_pct()),
        };
        match self.noisy {
            (true, true) => s.push_str(", noisy in both"),
            (true, false) => s.push_str(", noisy in BASE"),
            (false, true) => s.push_str(", noisy in NEW"),
            (false, false) => {}
        }
        s
    }

    fn note(&self, threshold_pct: f64) -> String {
        let mut parts = Vec::new();
        if self.below_threshold {
            parts.push(format!("within the ±{threshold_pct}% noise threshold"));
        }
        match self.noisy {
            (true, true) => parts.push("noisy in both".into()),
            (true, false) => parts.push("noisy in BASE".into()),
            (false, true) => parts.push("noisy in NEW".into()),
            (false, false) => {}
        }
        if self.quantity.is_fallback() {
            parts.push("fallback spread, not a confidence interval".into());
        }
        parts.join("; ")
    }
}

/// Options of a comparison.
#[derive(Clone, Copy, Debug)]
pub struct CompareOptions {
    /// The noise threshold, percent: a smaller |change| is `no change`.
    pub threshold_pct: f64,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions { threshold_pct: DEFAULT_THRESHOLD_PCT }
    }
}

/// Two folders compared.
#[derive(Clone, Debug)]
pub struct Comparison {
    /// The BASE folder.
    pub base: Side,
    /// The NEW folder.
    pub new: Side,
    /// The options used.
    pub options: CompareOptions,
    /// Every key measured on both sides, in table order.
    pub rows: Vec<Compared>,
    /// Keys in BASE only.
    pub only_base: Vec<Key>,
    /// Keys in NEW only.
    pub only_new: Vec<Key>,
    /// Keys on both sides that could not be compared, and why.
    pub not_compared: Vec<(Key, String)>,
}

/// Reads both folders and compares every key they share (see the module docs).
pub fn compare(base: &Path, new: &Path, options: CompareOptions) -> Result<Comparison, CompareError> {
    let base = Side::load(base)?;
    let new = Side::load(new)?;
    Ok(compare_sides(base, new, options))
}

/// [`compare`] on folders already read.
pub fn compare_sides(base: Side, new: Side, options: CompareOptions) -> Comparison {
    let mut rows = Vec::new();
    let mut only_base = Vec::new();
    let mut only_new = Vec::new();
    let mut not_compared = Vec::new();

    for (key, b) in &base.calls {
        let Some(n) = new.calls.get(key) else {
            only_base.push(key.clone());
            continue;
        };
        let has_ratio = |r: &CallsRow| r.ratio_median.is_some() && r.ratio_lo.is_some() && r.ratio_hi.is_some();
        let quantity = if has_ratio(b) && has_ratio(n) { Quantity::Ratio } else { Quantity::Cycles };
        let columns = (b.scenario.clone(), b.param.clone());
        let noisy = (b.noisy == Some(true), n.noisy == Some(true));
        match (calls_estimate(b, quantity), calls_estimate(n, quantity)) {
            (Ok(be), Ok(ne)) => rows.push(compared(key.clone(), columns, quantity, be, ne, noisy)),
            (Err(why), _) => not_compared.push((key.clone(), format!("BASE: {why}"))),
            (_, Err(why)) => not_compared.push((key.clone(), format!("NEW: {why}"))),
        }
    }
    only_new.extend(new.calls.keys().filter(|k| !base.calls.contains_key(*k)).cloned());

    for (key, b) in &base.patch {
        let Some(n) = new.patch.get(key) else {
            only_base.push(key.clone());
            continue;
        };
        let has_interval = |r: &PatchRow| r.latency_ns_lo.is_some() && r.latency_ns_hi.is_some();
        let quantity = if has_interval(b) && has_interval(n) { Quantity::LatencyNs } else { Quantity::LatencyNsSpread };
        match (patch_estimate(b, quantity), patch_estimate(n, quantity)) {
            (Ok(be), Ok(ne)) => {
                rows.push(compared(key.clone(), (String::new(), String::new()), quantity, be, ne, (false, false)))
            }
            (Err(why), _) => not_compared.push((key.clone(), format!("BASE: {why}"))),
            (_, Err(why)) => not_compared.push((key.clone(), format!("NEW: {why}"))),
        }
    }
    only_new.extend(new.patch.keys().filter(|k| !base.patch.contains_key(*k)).cloned());

    let p: Vec<f64> = rows.iter().map(|r| r.change.p_value).collect();
    for (r, q) in rows.iter_mut().zip(bh_adjust(&p)) {
        r.q_value = q;
        let discovery = q <= FDR_Q;
        let beyond = r.change.pct.abs() > options.threshold_pct;
        r.below_threshold = discovery && !beyond;
        r.verdict = match (discovery && beyond, r.change.pct < 0.0) {
            (true, true) => Verdict::Faster,
            (true, false) => Verdict::Slower,
            (false, _) => Verdict::NoChange,
        };
    }
    Comparison { base, new, options, rows, only_base, only_new, not_compared }
}

fn compared(
    key: Key,
    columns: (String, String),
    quantity: Quantity,
    base: Estimate,
    new: Estimate,
    noisy: (bool, bool),
) -> Compared {
    let change = change(base, new);
    Compared {
        key,
        columns,
        quantity,
        base,
        new,
        change,
        q_value: 1.0,
        verdict: Verdict::NoChange,
        noisy,
        below_threshold: false,
    }
}

/// How many keys found on one side only the report names; the rest are counted.
const LISTED: usize = 12;

/// Three or four significant digits, whatever the magnitude.
fn num(x: f64) -> String {
    let a = x.abs();
    if a >= 1000.0 {
        format!("{x:.0}")
    } else if a >= 100.0 {
        format!("{x:.1}")
    } else if a >= 10.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

fn estimate_cell(e: Estimate, q: Quantity) -> String {
    format!("{}{} [{}, {}]", num(e.value), q.unit(), num(e.lo), num(e.hi))
}

/// A signed percentage to one decimal, without the `-0.0` of a tiny negative number.
fn pct(x: f64) -> String {
    let r = (x * 10.0).round() / 10.0;
    format!("{:+.1}", if r == 0.0 { 0.0 } else { r })
}

fn change_cell(c: Change) -> String {
    format!("{}% [{}, {}]", pct(c.pct), pct(c.lo_pct), pct(c.hi_pct))
}

impl Comparison {
    /// Rows with `verdict`.
    pub fn count(&self, verdict: Verdict) -> usize {
        self.rows.iter().filter(|r| r.verdict == verdict).count()
    }

    /// Whether BASE and NEW come from different machines.
    pub fn cross_machine(&self) -> bool {
        self.base.machine_id != self.new.machine_id
    }

    /// The closing line: `N faster, M slower, K no change of T compared`.
    pub fn summary_line(&self) -> String {
        format!(
            "{} faster, {} slower, {} no change of {} compared",
            self.count(Verdict::Faster),
            self.count(Verdict::Slower),
            self.count(Verdict::NoChange),
            self.rows.len()
        )
    }

    /// Notes on what was compared how (fallbacks, timers).
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        let fallback = |q: Quantity| self.rows.iter().filter(|r| r.quantity == q).count();
        let cycles = fallback(Quantity::Cycles);
        if cycles > 0 {
            notes.push(format!(
                "{cycles} calls row{} compared by cycles_median (`cyc`): a side lacks the paired ratio columns \
                 (an older file, or an unpaired row); the spread [min, max] of cycles_min, cycles_median and \
                 cycles_p90 stands in for an interval. It is not a confidence interval, so the noise threshold \
                 carries these verdicts.",
                plural(cycles)
            ));
        }
        let spread = fallback(Quantity::LatencyNsSpread);
        if spread > 0 {
            notes.push(format!(
                "{spread} patch row{} compared by latency_ns_median with median − min as the spread (no \
                 latency_ns_lo/hi on a side); not a confidence interval, so the noise threshold carries these \
                 verdicts.",
                plural(spread)
            ));
        }
        if cycles > 0
            && self.cross_machine()
            && let (Some(b), Some(n)) = (&self.base.machine, &self.new.machine)
            && (b.tsc_hz / n.tsc_hz - 1.0).abs() > 0.01
        {
            notes.push(format!(
                "the TSC rates differ ({:.3} GHz vs {:.3} GHz): cycles are each machine's reference \
                         cycles, so the cycles rows compare ticks, not time.",
                b.tsc_hz / 1e9,
                n.tsc_hz / 1e9
            ));
        }
        if self.base.has_patch != self.new.has_patch {
            let (with, without) = if self.base.has_patch { ("BASE", "NEW") } else { ("NEW", "BASE") };
            notes.push(format!("patch.csv is in {with} only; {without} measured no patch latency."));
        }
        notes
    }

    /// The Markdown report `callpatch compare` prints.
    pub fn markdown(&self) -> String {
        let t = self.options.threshold_pct;
        let mut s = String::new();
        let _ = writeln!(s, "# callpatch compare\n");
        let _ = writeln!(s, "- BASE: {}", self.base.describe());
        let _ = writeln!(s, "- NEW: {}", self.new.describe());
        if self.cross_machine() {
            let _ = writeln!(
                s,
                "- **Different machines**: {} vs {}. Changes include everything that differs between them.",
                self.base.machine_id, self.new.machine_id
            );
        } else {
            let _ = writeln!(s, "- Same machine: {}.", self.base.machine_id);
        }
        let _ = writeln!(
            s,
            "- Change = NEW / BASE − 1 with its 95% interval; lower is better. A row is **faster** or \
             **slower** only when the change is a discovery after Benjamini–Hochberg false-discovery control \
             (q = {FDR_Q}) over the {} rows compared and |change| > {t}%, the noise threshold (one run's \
             interval understates run-to-run variation). Otherwise: no change.\n",
            self.rows.len()
        );

        let calls: Vec<&Compared> = self.rows.iter().filter(|r| matches!(r.key, Key::Calls { .. })).collect();
        if !calls.is_empty() {
            let _ = writeln!(s, "## calls.csv\n");
            let _ = writeln!(s, "| flavor | scenario | BASE [95%] | NEW [95%] | change [95%] | verdict |");
            let _ = writeln!(s, "|---|---|---|---|---|---|");
            for r in calls {
                let Key::Calls { flavor, scenario } = &r.key else { continue };
                let _ = writeln!(s, "| {flavor} | {scenario} | {} |", r.compared_cells(t));
            }
            s.push('\n');
        }
        let patch: Vec<&Compared> = self.rows.iter().filter(|r| matches!(r.key, Key::Patch { .. })).collect();
        if !patch.is_empty() {
            let _ = writeln!(s, "## patch.csv\n");
            let _ = writeln!(
                s,
                "| protocol | batch | callers | method | BASE [95%] | NEW [95%] | change [95%] | verdict |"
            );
            let _ = writeln!(s, "|---|---:|---:|---|---|---|---|---|");
            for r in patch {
                let Key::Patch { subject, callers, method, batch } = &r.key else { continue };
                let _ = writeln!(s, "| {subject} | {batch} | {callers} | {method} | {} |", r.compared_cells(t));
            }
            s.push('\n');
        }
        for (label, keys) in [("Only in BASE", &self.only_base), ("Only in NEW", &self.only_new)] {
            if !keys.is_empty() {
                let mut names: Vec<String> = keys.iter().take(LISTED).map(|k| format!("{} {k}", k.kind())).collect();
                if keys.len() > LISTED {
                    names.push(format!("… ({} more)", keys.len() - LISTED));
                }
                let _ = writeln!(s, "{label} (not compared, {}): {}.\n", keys.len(), names.join("; "));
            }
        }
        if !self.not_compared.is_empty() {
            let _ = writeln!(s, "Not compared ({}):\n", self.not_compared.len());
            for (k, why) in &self.not_compared {
                let _ = writeln!(s, "- {} {k}: {why}", k.kind());
            }
            s.push('\n');
        }
        for n in self.notes() {
            let _ = writeln!(s, "Note: {n}\n");
        }
        let _ = writeln!(s, "{}.", self.summary_line());
        s
    }

    /// The rows of `compare.csv`, one per key compared, in table order.
    pub fn csv_rows(&self) -> Vec<CompareRow> {
        let t = self.options.threshold_pct;
        self.rows
            .iter()
            .map(|r| {
                let (subject, batch, callers, method) = match &r.key {
                    Key::Calls { flavor, .. } => (flavor.to_string(), None, None, String::new()),
                    Key::Patch { subject, callers, method, batch } => {
                        (subject.to_string(), Some(*batch), Some(*callers), method.clone())
                    }
                };
                CompareRow {
                    kind: r.key.kind().into(),
                    base_machine_id: self.base.machine_id.clone(),
                    new_machine_id: self.new.machine_id.clone(),
                    subject,
                    scenario: r.columns.0.clone(),
                    param: r.columns.1.clone(),
                    batch,
                    callers,
                    method,
                    quantity: r.quantity.name().into(),
                    base: r.base.value,
                    base_lo: r.base.lo,
                    base_hi: r.base.hi,
                    new: r.new.value,
                    new_lo: r.new.lo,
                    new_hi: r.new.hi,
                    change_pct: r.change.pct,
                    change_lo_pct: r.change.lo_pct,
                    change_hi_pct: r.change.hi_pct,
                    p_value: r.change.p_value,
                    q_value: r.q_value,
                    verdict: r.verdict.name().into(),
                    noisy: r.noisy.0 || r.noisy.1,
                    note: r.note(t),
                }
            })
            .collect()
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn est(value: f64, lo: f64, hi: f64) -> Estimate {
        Estimate { value, lo, hi }
    }

    #[test]
    fn erfc_matches_known_values() {
        // erfc(1.96 / √2) = 0.05 (the two-sided 95% point); erfc(0) = 1; erfc(3/√2) = 0.0026998.
        assert!((erfc(Z95 / std::f64::consts::SQRT_2) - 0.05).abs() < 1e-7);
        assert!((erfc(0.0) - 1.0).abs() < 1e-7);
        assert!((erfc(3.0 / std::f64::consts::SQRT_2) - 0.002_699_796).abs() < 1e-8);
        assert!((erfc(-1.0) - 1.842_700_79).abs() < 1e-6);
    }

    #[test]
    fn log_sigma_reads_the_interval_as_plus_minus_1_96_sigma() {
        let e = est(1.0, (-Z95 * 0.1f64).exp(), (Z95 * 0.1f64).exp());
        assert!((e.log_sigma() - 0.1).abs() < 1e-12);
    }

    #[test]
    fn change_of_known_numbers() {
        // Each side σ = 0.03 on the log scale; combined σ = 0.03·√2 = 0.042426.
        let s = 0.03f64;
        let side = |v: f64| est(v, v * (-Z95 * s).exp(), v * (Z95 * s).exp());
        let c = change(side(2.0), side(3.0));
        let d = 1.5f64.ln();
        let sigma = s * 2f64.sqrt();
        assert!((c.pct - 50.0).abs() < 1e-9);
        assert!((c.lo_pct - ((d - Z95 * sigma).exp() - 1.0) * 100.0).abs() < 1e-9);
        assert!((c.hi_pct - ((d + Z95 * sigma).exp() - 1.0) * 100.0).abs() < 1e-9);
        assert!((c.lo_pct - 38.03).abs() < 0.01 && (c.hi_pct - 63.01).abs() < 0.01, "{c:?}");
        // z = ln 1.5 / 0.042426 = 9.557: p is tiny.
        assert!(c.p_value < 1e-15, "{c:?}");

        // d = 1.96 σ exactly: p = 0.05 and the interval's lower end is 0.
        let b = side(1.0);
        let n = side((Z95 * sigma).exp());
        let c = change(b, n);
        assert!((c.p_value - 0.05).abs() < 1e-6, "{c:?}");
        assert!(c.lo_pct.abs() < 1e-9, "{c:?}");

        // Equal values: no change, p = 1; zero-width intervals too.
        assert_eq!(change(side(2.0), side(2.0)).p_value, 1.0);
        assert_eq!(change(est(2.0, 2.0, 2.0), est(2.0, 2.0, 2.0)).p_value, 1.0);
        assert_eq!(change(est(2.0, 2.0, 2.0), est(2.2, 2.2, 2.2)).p_value, 0.0);
    }

    #[test]
    fn benjamini_hochberg_of_known_numbers() {
        // m = 5; sorted, p·m/rank = 0.025, 0.05, 0.0667, 0.05625, 0.5, then made monotone from the top
        // (0.0667 becomes 0.05625), and put back in the given order.
        let p = [0.005, 0.04, 0.02, 0.045, 0.5];
        let q = bh_adjust(&p);
        let want = [0.025, 0.05625, 0.05, 0.05625, 0.5];
        for (got, want) in q.iter().zip(want) {
            assert!((got - want).abs() < 1e-12, "{q:?}");
        }
        // At q = 0.05 two are discoveries, where p < 0.05 row by row would have kept four.
        assert_eq!(q.iter().filter(|&&v| v <= FDR_Q).count(), 2);
        // Capped at 1, empty is empty, one p-value is itself.
        assert_eq!(bh_adjust(&[0.9, 0.95]), vec![0.95, 0.95]);
        assert!(bh_adjust(&[]).is_empty());
        assert_eq!(bh_adjust(&[0.2]), vec![0.2]);
    }

    #[test]
    fn patch_fallback_spread_is_symmetric_on_the_log_scale() {
        let e = Estimate { value: 200.0, lo: 100.0, hi: 400.0 };
        let r = PatchRow {
            machine_id: "m".into(),
            protocol: PatchSubject::Membarrier,
            batch: 1,
            syncs: 1,
            latency_ns_min: 100.0,
            latency_ns_median: 200.0,
            traps: 0,
            callers: 0,
            method: String::new(),
            sync_ns: f64::NAN,
            fallback: None,
            late_traps: None,
            latency_ns_lo: None,
            latency_ns_hi: None,
        };
        let got = patch_estimate(&r, Quantity::LatencyNsSpread).unwrap();
        assert!((got.lo - e.lo).abs() < 1e-9 && (got.hi - e.hi).abs() < 1e-9, "{got:?}");
    }
}
