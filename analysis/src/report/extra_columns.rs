//! Read-side views of columns that the writers of `patch.csv`, `stress.csv` and `hazard.csv` add beyond
//! the base schema in [`crate::report::rows`]. Columns are matched by header name, so extra columns are
//! ignored and any of these may be absent (`#[serde(default)]`). Values are kept as text and parsed when
//! used: a writer may put `unavailable (reason)` where a number is missing, which reads as "unknown".
//!
//! `hazard.csv` has no row type in `rows.rs` yet; [`HazardRow`] is the tolerant reader for its
//! documented columns (`machine_id, writer, patches, torn, torn_per_million`) until one lands there.

use serde::Deserialize;

/// Parses a text cell as a number; empty or non-numeric text (`unavailable (...)`) is `None`.
pub fn number(cell: &Option<String>) -> Option<f64> {
    cell.as_deref().and_then(|s| s.trim().parse::<f64>().ok()).filter(|v| v.is_finite())
}

/// Optional `patch.csv` columns.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct PatchExtras {
    /// Concurrent caller threads during the measurement (absent: none).
    #[serde(default)]
    pub callers: Option<String>,
    /// Cost of one membarrier(SYNC_CORE) measured in the same run, in ns.
    #[serde(default)]
    pub sync_ns: Option<String>,
    /// Sites the aligned-only policy left on their trampoline.
    #[serde(default)]
    pub fallback: Option<String>,
    /// Traps delivered after the batch had finished.
    #[serde(default)]
    pub late_traps: Option<String>,
    /// Text write method (`alias`, `mprotect`, `procmem`, `direct`).
    #[serde(default)]
    pub method: Option<String>,
}

impl PatchExtras {
    /// The write method, empty when the column is absent.
    pub fn method(&self) -> &str {
        self.method.as_deref().unwrap_or("")
    }

    /// Caller threads, 0 when the column is absent.
    pub fn callers(&self) -> u32 {
        number(&self.callers).map_or(0, |v| v as u32)
    }
}

/// Optional `stress.csv` columns.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct StressExtras {
    #[serde(default)]
    pub late_traps: Option<String>,
    #[serde(default)]
    pub lost: Option<String>,
    #[serde(default)]
    pub patches_per_s: Option<String>,
}

/// `hazard.csv`: torn executions of a cache-line-crossing site patched by one writer.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct HazardRow {
    pub machine_id: String,
    /// The writer: byte-wise copy, a split 4-byte store, or a protocol such as `bp`.
    pub writer: String,
    pub patches: u64,
    pub torn: u64,
    /// Absent in the file: computed from `torn` and `patches`.
    #[serde(default)]
    pub torn_per_million: Option<f64>,
}

impl HazardRow {
    /// Torn executions per million patches (from the column, else computed).
    pub fn per_million(&self) -> Option<f64> {
        self.torn_per_million.or_else(|| (self.patches > 0).then(|| self.torn as f64 * 1e6 / self.patches as f64))
    }
}
