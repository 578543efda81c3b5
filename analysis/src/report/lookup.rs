//! Questions the plots and the summary ask of one [`Run`]: the cost of a flavor in a scenario, the
//! latency of a protocol at a batch size, the cost of one sync. One answer per question, so every plot
//! and table shows the same number for the same thing.

use crate::report::dataset::Run;
use crate::report::rows::{CallsRow, PatchRow};
use crate::report::scenario::Scenario;

/// The flavors in DESIGN.md's table order; flavors not listed follow alphabetically.
pub const FLAVOR_ORDER: [&str; 9] =
    ["direct", "indirect", "indirect-mem", "retpoline", "lfence", "trampoline", "inline", "cs-inline", "trap"];

/// The protocols in DESIGN.md's order; others follow alphabetically.
pub const PROTOCOL_ORDER: [&str; 4] = ["bp", "cs-prefix", "aligned", "naive"];

/// The `patch.csv` protocol name under which a writer may record the cost of one membarrier.
pub const SYNC_PROTOCOL: &str = "membarrier";

fn rank(order: &[&str], name: &str) -> usize {
    order.iter().position(|f| *f == name).unwrap_or(order.len())
}

/// Sorts names by a preferred order, unknown names last and alphabetically.
pub fn sort_by_order(names: &mut [String], order: &[&str]) {
    names.sort_by(|a, b| rank(order, a).cmp(&rank(order, b)).then_with(|| a.cmp(b)));
}

impl Run {
    /// The flavors measured, in [`FLAVOR_ORDER`].
    pub fn flavors(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for r in &self.calls {
            if !v.contains(&r.flavor) {
                v.push(r.flavor.clone());
            }
        }
        sort_by_order(&mut v, &FLAVOR_ORDER);
        v
    }

    /// The first `calls.csv` row of `flavor` in `scenario`.
    pub fn call(&self, flavor: &str, scenario: &Scenario) -> Option<&CallsRow> {
        self.calls.iter().find(|r| r.flavor == flavor && Scenario::parse(&r.scenario, &r.param) == *scenario)
    }

    /// The protocols measured in `patch.csv` (the membarrier row excluded), in [`PROTOCOL_ORDER`].
    pub fn protocols(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for r in &self.patch {
            if r.protocol != SYNC_PROTOCOL && !v.contains(&r.protocol) {
                v.push(r.protocol.clone());
            }
        }
        sort_by_order(&mut v, &PROTOCOL_ORDER);
        v
    }

    /// The patch rows of `protocol` measured with the fewest concurrent callers (the quiet case) and the
    /// first write method listed, sorted by batch size.
    pub fn patch_quiet(&self, protocol: &str) -> Vec<&PatchRow> {
        let rows: Vec<&PatchRow> = self.patch.iter().filter(|r| r.protocol == protocol).collect();
        let quiet = rows.iter().map(|r| r.callers).min().unwrap_or(0);
        let method = rows.first().map_or("", |r| r.method.as_str());
        let mut v: Vec<&PatchRow> =
            rows.into_iter().filter(|r| r.callers == quiet && r.method.as_str() == method).collect();
        v.sort_by_key(|r| r.batch);
        v
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

    /// The quiet patch row of `protocol` at exactly `batch` sites.
    pub fn patch_at(&self, protocol: &str, batch: u64) -> Option<&PatchRow> {
        self.patch_quiet(protocol).into_iter().find(|r| r.batch == batch)
    }

    /// The cost of one membarrier(SYNC_CORE) in ns with no concurrent callers (or the fewest measured),
    /// from the same run: the quiet `membarrier` row of `patch.csv` (its latency divided by its syncs),
    /// else the median of the `sync_ns` column over the quiet rows.
    pub fn sync_ns(&self) -> Option<f64> {
        let from_row = self.patch_quiet(SYNC_PROTOCOL).first().map(|r| r.latency_ns_median / r.syncs.max(1) as f64);
        from_row.or_else(|| {
            let quiet = self.patch.iter().map(|r| r.callers).min()?;
            let mut v: Vec<f64> =
                self.patch.iter().filter(|r| r.callers == quiet).map(|r| r.sync_ns).filter(|v| v.is_finite()).collect();
            v.sort_by(f64::total_cmp);
            (!v.is_empty()).then(|| v[v.len() / 2])
        })
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
