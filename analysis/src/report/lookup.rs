//! Questions the plots and the summary ask of one [`Run`]: the cost of a flavor in a scenario, the
//! latency of a protocol at a batch size, the cost of one sync. One answer per question, so every plot
//! and table shows the same number for the same thing.

use crate::report::dataset::Run;
use crate::report::rows::{CallsRow, PatchRow};
use crate::report::scenario::RowScenario;
use callpatch_vocab::{Flavor, Protocol};

/// The flavors in table order ([`Flavor::ALL`]).
pub const FLAVOR_ORDER: [&str; Flavor::ALL.len()] = Flavor::NAMES;

/// The protocols in table order ([`Protocol::ALL`]); others follow alphabetically.
pub const PROTOCOL_ORDER: [&str; Protocol::ALL.len()] = Protocol::NAMES;

/// The `patch.csv` protocol name under which a writer may record the cost of one membarrier.
pub const SYNC_PROTOCOL: &str = Protocol::SYNC_ROW;

/// Which of a run's patch measurements to read when it measured several numbers of concurrent callers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Load {
    /// The fewest concurrent callers (normally none): a sync is a bare syscall.
    Quiet,
    /// The most concurrent callers: every sync interrupts the CPUs running them, as for a key whose
    /// callers are busy while it is updated.
    Busy,
}

impl Load {
    /// The word used in notes and headings.
    pub fn name(self) -> &'static str {
        match self {
            Load::Quiet => "quiet",
            Load::Busy => "busy",
        }
    }
}

fn rank(order: &[&str], name: &str) -> usize {
    order.iter().position(|f| *f == name).unwrap_or(order.len())
}

/// Sorts names by a preferred order, unknown names last and alphabetically.
pub fn sort_by_order(names: &mut [String], order: &[&str]) {
    names.sort_by(|a, b| rank(order, a).cmp(&rank(order, b)).then_with(|| a.cmp(b)));
}

impl Run {
    /// The flavors measured, in table order ([`Flavor::ALL`]).
    pub fn flavors(&self) -> Vec<Flavor> {
        let mut v: Vec<Flavor> = self.calls.iter().map(|r| r.flavor).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The first `calls.csv` row of `flavor` in `scenario`.
    pub fn call(&self, flavor: Flavor, scenario: impl Into<RowScenario>) -> Option<&CallsRow> {
        let scenario = scenario.into();
        self.calls.iter().find(|r| r.flavor == flavor && r.scenario() == scenario)
    }

    /// The protocols measured in `patch.csv` (the membarrier rows excluded), in table order.
    pub fn protocols(&self) -> Vec<Protocol> {
        let mut v: Vec<Protocol> = self.patch.iter().filter_map(|r| r.protocol.protocol()).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The caller counts `patch.csv` was measured with, ascending (0: no other thread ran the sites).
    pub fn caller_counts(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.patch.iter().map(|r| r.callers).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The caller count `load` stands for in this run: the fewest measured for `Quiet`, the most for
    /// `Busy` (`None` for `Busy` when the run measured only one count).
    pub fn callers_for(&self, load: Load) -> Option<u32> {
        let counts = self.caller_counts();
        match load {
            Load::Quiet => counts.first().copied(),
            Load::Busy => (counts.len() > 1).then(|| counts[counts.len() - 1]),
        }
    }

    /// The patch rows of `protocol` measured with `callers` concurrent callers and the first write
    /// method listed, sorted by batch size.
    pub fn patch_rows(&self, protocol: &str, callers: u32) -> Vec<&PatchRow> {
        let rows: Vec<&PatchRow> = self.patch.iter().filter(|r| r.protocol == protocol).collect();
        let method = rows.first().map_or("", |r| r.method.as_str());
        let mut v: Vec<&PatchRow> =
            rows.into_iter().filter(|r| r.callers == callers && r.method.as_str() == method).collect();
        v.sort_by_key(|r| r.batch);
        v
    }

    /// The patch rows of `protocol` in the quiet case (fewest concurrent callers).
    pub fn patch_quiet(&self, protocol: &str) -> Vec<&PatchRow> {
        self.callers_for(Load::Quiet).map_or_else(Vec::new, |c| self.patch_rows(protocol, c))
    }

    /// The distinct write methods in `patch.csv`, in file order (empty names when the column is absent).
    pub fn patch_methods(&self) -> Vec<&str> {
        let mut v: Vec<&str> = Vec::new();
        for r in &self.patch {
            if !v.contains(&r.method.as_str()) {
                v.push(&r.method);
            }
        }
        v
    }

    /// The patch row of `protocol` at exactly `batch` sites with `callers` concurrent callers.
    pub fn patch_at(&self, protocol: &str, batch: u64, callers: u32) -> Option<&PatchRow> {
        self.patch_rows(protocol, callers).into_iter().find(|r| r.batch == batch)
    }

    /// The cost of one membarrier(SYNC_CORE) in ns with `callers` concurrent callers (with callers
    /// running, the kernel must interrupt their CPUs, so a sync costs far more than the bare syscall),
    /// from the same run: the `membarrier` row of `patch.csv` (its latency divided by its syncs), else
    /// the median of the `sync_ns` column over the rows with that many callers.
    pub fn sync_ns(&self, callers: u32) -> Option<f64> {
        let from_row =
            self.patch_rows(SYNC_PROTOCOL, callers).first().map(|r| r.latency_ns_median / r.syncs.max(1) as f64);
        from_row.or_else(|| {
            let mut v: Vec<f64> = self
                .patch
                .iter()
                .filter(|r| r.callers == callers)
                .map(|r| r.sync_ns)
                .filter(|v| v.is_finite())
                .collect();
            v.sort_by(f64::total_cmp);
            (!v.is_empty()).then(|| v[v.len() / 2])
        })
    }

    /// [`Run::sync_ns`] in the quiet case.
    pub fn sync_ns_quiet(&self) -> Option<f64> {
        self.sync_ns(self.callers_for(Load::Quiet)?)
    }

    /// The timer the cycle columns were taken with, when every row agrees (`tsc-ref-cycles`, ...).
    pub fn timer(&self) -> Option<&str> {
        let first = self.calls.first()?.timer.as_str();
        self.calls.iter().all(|r| r.timer == first).then_some(first)
    }
}

/// Axis and table wording for a `timer` column value.
pub fn cycles_unit(timer: Option<&str>) -> String {
    match timer {
        Some("tsc-ref-cycles") | Some("tsc") => "TSC reference cycles".into(),
        Some(other) => other.replace('-', " "),
        None => "cycles (mixed timers)".into(),
    }
}

use crate::report::interval::Interval;

impl Run {
    /// True when any `calls.csv` row carries a ratio interval (a run with paired measurement).
    pub fn paired(&self) -> bool {
        self.calls.iter().any(|r| r.ratio_lo.is_some() && r.ratio_hi.is_some())
    }

    /// The row `row` was measured against: its `baseline` column (`flavor scenario`, CLI spelling),
    /// else `direct` in the same scenario, else `direct mono`.
    pub fn baseline_of(&self, row: &CallsRow) -> Option<&CallsRow> {
        let named = row.baseline.as_deref().and_then(|b| {
            let mut words = b.split_whitespace();
            let flavor: Flavor = words.next()?.parse().ok()?;
            let scenario = match words.next() {
                Some(s) => RowScenario::Known(s.parse().ok()?),
                None => row.scenario(),
            };
            self.call(flavor, scenario)
        });
        named
            .or_else(|| self.call(Flavor::Direct, row.scenario()))
            .or_else(|| self.call(Flavor::Direct, crate::report::scenario::Scenario::Mono))
    }

    /// Cost per call of `flavor` in `scenario`, TSC ticks, with its interval: `ratio × the baseline's
    /// cycles` over `[ratio_lo, ratio_hi]` where the row was paired; the baseline itself exact in a
    /// paired run (every other cost is a ratio to it); else the median with no interval.
    pub fn cost(&self, flavor: Flavor, scenario: impl Into<RowScenario>) -> Option<Interval> {
        let row = self.call(flavor, scenario)?;
        let usable = |v: f64| v.is_finite() && v > 0.0;
        if !usable(row.cycles_median) {
            return None;
        }
        if let (Some(lo), Some(mid), Some(hi)) = (row.ratio_lo, row.ratio_median, row.ratio_hi)
            && let Some(base) = self.baseline_of(row).filter(|b| usable(b.cycles_median))
            && !std::ptr::eq(base, row)
            && let Some(r) = Interval::new(lo, mid, hi)
        {
            return Some(r.scale(base.cycles_median));
        }
        let is_baseline = self
            .calls
            .iter()
            .any(|r| r.ratio_lo.is_some() && self.baseline_of(r).is_some_and(|b| std::ptr::eq(b, row)));
        Some(if is_baseline { Interval::exact(row.cycles_median) } else { Interval::point(row.cycles_median) })
    }

    /// [`Run::cost`] in ns (the row's own `ns_median / cycles_median`, i.e. the TSC rate).
    pub fn cost_ns(&self, flavor: Flavor, scenario: impl Into<RowScenario>) -> Option<Interval> {
        let scenario = scenario.into();
        let row = self.call(flavor, scenario.clone())?;
        let per_tick = row.ns_median / row.cycles_median;
        (per_tick.is_finite() && per_tick > 0.0).then_some(())?;
        Some(self.cost(flavor, scenario)?.scale(per_tick))
    }

    /// Estimated core cycles for `ticks` TSC ticks of `row`: its `core_cycles_median` scaled, else
    /// `core_hz_est / tsc_hz` of the run; `None` without an estimate of the core clock.
    pub fn core_cycles(&self, row: &CallsRow, ticks: f64) -> Option<f64> {
        let per_tick = match (row.core_cycles_median, row.core_hz_est, self.machine.as_ref().map(|m| m.tsc_hz)) {
            (Some(c), _, _) if row.cycles_median > 0.0 => c / row.cycles_median,
            (_, Some(hz), Some(tsc)) if tsc > 0.0 => hz / tsc,
            _ => return None,
        };
        let v = ticks * per_tick;
        (v.is_finite() && v > 0.0).then_some(v)
    }

    /// The core clock estimated in this run, Hz (the median of the rows' `core_hz_est`).
    pub fn core_hz_est(&self) -> Option<f64> {
        let mut v: Vec<f64> =
            self.calls.iter().filter_map(|r| r.core_hz_est).filter(|v| v.is_finite() && *v > 0.0).collect();
        v.sort_by(f64::total_cmp);
        (!v.is_empty()).then(|| v[v.len() / 2])
    }
}
