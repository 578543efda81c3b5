//! One row type per CSV file that `callpatch` writes (columns: `results/README.md`; every file is tidy,
//! one row per measurement, header first). Field order is column order. Measurement rows carry
//! `machine_id` so CSVs gathered on many machines can be concatenated and plotted side by side.
//!
//! Numbers that may be unavailable (a counter this machine lacks) are `String` columns holding either
//! the number or `unavailable (reason)`; never a silent 0.
//!
//! Columns appended to a file's first schema may be missing from older files and read by column name:
//! a count that would otherwise be invented reads as `None` (written as the number when known), a
//! setting reads as its "none/unknown" default (0 callers, empty method, NaN sync cost).

use serde::{Deserialize, Serialize};

/// `machine.csv`: who produced the numbers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MachineRow {
    pub machine_id: String,
    pub cpu_model: String,
    pub family: u32,
    pub model: u32,
    pub stepping: u32,
    pub microcode: String,
    pub kernel: String,
    pub spectre_v2: String,
    pub tsc_hz: f64,
    pub counters: String,
    pub rustc: String,
    pub callpatch_version: String,
    pub git_rev: String,
    pub date: String,
}

/// `calls.csv`: cost of one call of a flavor in a scenario. Cycles are TSC reference cycles unless
/// `timer` says otherwise.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallsRow {
    pub machine_id: String,
    pub flavor: String,
    pub scenario: String,
    pub param: String,
    pub unroll: u32,
    pub repeats: u32,
    pub cycles_min: f64,
    pub cycles_median: f64,
    pub cycles_p90: f64,
    pub ns_median: f64,
    pub instructions: String,
    pub branch_misses: String,
    pub timer: String,
}

/// `patch.csv`: latency of patching a batch of sites with one protocol.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PatchRow {
    pub machine_id: String,
    pub protocol: String,
    pub batch: u64,
    pub syncs: u64,
    pub latency_ns_min: f64,
    pub latency_ns_median: f64,
    pub traps: u64,
    // Appended by the patcher (the base columns alone cannot tell these measurements apart):
    /// Caller threads running the sites during the measurement (absent: 0, the quiet case).
    #[serde(default)]
    pub callers: u32,
    /// Text write method (`alias`, `mprotect`, `procmem`, `direct`; absent: empty, unknown).
    #[serde(default)]
    pub method: String,
    /// Median cost of one membarrier(SYNC_CORE) in the same run, with the same callers, ns; NaN when it
    /// could not be measured or the column is absent.
    #[serde(default = "unknown_ns")]
    pub sync_ns: f64,
    /// Sites the aligned policy patched through their trampoline, per batch.
    #[serde(default)]
    pub fallback: Option<u64>,
    /// Traps whose handler ran after their batch had finished.
    #[serde(default)]
    pub late_traps: Option<u64>,
}

fn unknown_ns() -> f64 {
    f64::NAN
}

/// `stress.csv`: a live-patching run with concurrent callers, and its verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StressRow {
    pub machine_id: String,
    pub protocol: String,
    pub callers: u32,
    pub seconds: f64,
    pub patches: u64,
    pub calls: u64,
    pub misdirected: u64,
    pub traps: u64,
    pub crashed: bool,
    // Appended by the patcher:
    /// Traps whose handler ran after their batch had finished.
    #[serde(default)]
    pub late_traps: Option<u64>,
    /// Calls that arrived nowhere (neither a target nor the catch zone).
    #[serde(default)]
    pub lost: Option<u64>,
    /// Site patches per second.
    #[serde(default)]
    pub patches_per_s: Option<f64>,
}

/// `hazard.csv`: torn executions of a cache-line-crossing site rewritten by one writer while a thread
/// executes it (run in a child process; `crashed` when the child died of a signal).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HazardRow {
    pub machine_id: String,
    /// `naive-bytewise`, `naive-split4` or `bp`.
    pub writer: String,
    pub patches: u64,
    /// Calls that executed a torn rel32 (a mix of old and new bytes).
    pub torn: u64,
    /// Absent: computed from `torn` and `patches` by [`HazardRow::per_million`].
    #[serde(default)]
    pub torn_per_million: Option<f64>,
    // Appended (not read by the report; absent in older files):
    /// Calls the executing thread made meanwhile.
    #[serde(default)]
    pub calls: u64,
    #[serde(default)]
    pub seconds: f64,
    #[serde(default)]
    pub crashed: bool,
}

impl HazardRow {
    /// Torn executions per million patches (from the column, else computed).
    pub fn per_million(&self) -> Option<f64> {
        self.torn_per_million.or_else(|| (self.patches > 0).then(|| self.torn as f64 * 1e6 / self.patches as f64))
    }
}

/// `census.csv`: call sites of one kind in one binary and how many cross each boundary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CensusRow {
    pub binary: String,
    pub sha256: String,
    pub kind: String,
    pub count: u64,
    pub cross64_rel32: u64,
    pub cross64_insn: u64,
    pub cross32_insn: u64,
    pub cross16_insn: u64,
    pub cross8_insn: u64,
    pub fallback_line: u64,
    pub fallback_word: u64,
}

/// `census_offsets.csv`: histogram of site start address mod 64.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CensusOffsetRow {
    pub binary: String,
    pub kind: String,
    pub offset_mod_64: u8,
    pub count: u64,
}

/// `perf.csv`: one event of a `callpatch perf` session, per call of one flavor in one scenario
/// (U/2U subtracted like `calls.csv`). `per_call` is the number or `unavailable (reason)`;
/// `read_path` is `rdpmc`, `read()`, `rdtsc` (the `tsc-ref-cycles` row) or `none`; `note` says when the
/// group was multiplexed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PerfRow {
    pub machine_id: String,
    pub flavor: String,
    pub scenario: String,
    pub param: String,
    pub event: String,
    pub per_call: String,
    pub read_path: String,
    pub note: String,
    pub unroll: u32,
    pub iterations: u64,
    pub repeats: u32,
}

/// Writes `rows` to `path` as CSV with a header, atomically: the rows go to `path.tmp` and are renamed
/// into place only when all of them were written, so a failed run never leaves a partial file that
/// looks complete.
pub fn write_csv<T: Serialize>(path: &std::path::Path, rows: &[T]) -> Result<(), csv::Error> {
    let tmp = path.with_extension("csv.tmp");
    let mut w = csv::Writer::from_path(&tmp)?;
    for r in rows {
        w.serialize(r)?;
    }
    w.flush()?;
    drop(w);
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Removes an output file an earlier run left at `path` and this run does not rewrite, so that it
/// cannot pass for this run's; a file that is not there is fine.
pub fn remove_stale(path: &std::path::Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Reads every row of a CSV file written by [`write_csv`] (or concatenated from several machines).
pub fn read_csv<T: for<'de> Deserialize<'de>>(path: &std::path::Path) -> Result<Vec<T>, csv::Error> {
    csv::Reader::from_path(path)?.deserialize().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_row_round_trips_with_documented_header() {
        let dir = std::env::temp_dir().join(format!("callpatch-rows-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("calls.csv");
        let row = CallsRow {
            machine_id: "m".into(),
            flavor: "retpoline".into(),
            scenario: "poly-random".into(),
            param: "4".into(),
            unroll: 16,
            repeats: 11,
            cycles_min: 30.5,
            cycles_median: 31.0,
            cycles_p90: 33.0,
            ns_median: 14.2,
            instructions: "unavailable (ENOENT)".into(),
            branch_misses: "unavailable (ENOENT)".into(),
            timer: "tsc-ref-cycles".into(),
        };
        write_csv(&path, std::slice::from_ref(&row)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines().next().unwrap(),
            "machine_id,flavor,scenario,param,unroll,repeats,cycles_min,cycles_median,cycles_p90,ns_median,instructions,branch_misses,timer"
        );
        assert_eq!(read_csv::<CallsRow>(&path).unwrap(), vec![row]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn perf_row_round_trips_with_documented_header() {
        let dir = std::env::temp_dir().join(format!("callpatch-perfrow-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("perf.csv");
        let row = PerfRow {
            machine_id: "m".into(),
            flavor: "retpoline".into(),
            scenario: "mono".into(),
            param: "".into(),
            event: "branch-misses".into(),
            per_call: "unavailable (ENOENT: no hardware PMU)".into(),
            read_path: "none".into(),
            note: "".into(),
            unroll: 16,
            iterations: 500,
            repeats: 40,
        };
        write_csv(&path, std::slice::from_ref(&row)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines().next().unwrap(),
            "machine_id,flavor,scenario,param,event,per_call,read_path,note,unroll,iterations,repeats"
        );
        assert_eq!(read_csv::<PerfRow>(&path).unwrap(), vec![row]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
