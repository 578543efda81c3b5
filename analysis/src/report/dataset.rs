//! Loads the CSV files of one or many results folders and groups the rows by machine.
//!
//! Every measurement row carries `machine_id`, so CSVs gathered from a fleet (one folder per machine, or
//! files concatenated from many machines) plot side by side. When the same `machine_id` shows up in more
//! than one folder (two runs on one machine), each folder's rows stay a separate [`Run`] labelled with
//! the folder name, so runs are never silently averaged together. Census rows are keyed by binary and
//! content identity instead, build-id or sha256 (the same binary counted twice is shown once).
//!
//! A folder's subfolders that hold CSVs (`results/` with one folder per machine) are read too, beside
//! the CSVs the folder holds itself (`callpatch calls` writes `results/calls.csv`, `callpatch run`
//! `results/<machine_id>/`: `plot results/` reads both, never one silently); symbolic links such as
//! `results/latest` are resolved so a run is read once. A missing file is a note, not an error; a malformed one is an error naming file and record.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::report::error::ReportError;
use crate::report::rows::{CallsRow, CensusOffsetRow, CensusRow, HazardRow, MachineRow, PatchRow, StressRow};
use crate::report::validate::{self, Invalid, Validate};

/// The CSV files callpatch writes, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CsvFile {
    /// `machine.csv`: who produced the numbers, one row per machine.
    Machine,
    /// `calls.csv`: cost of one call of a flavor in a scenario.
    Calls,
    /// `patch.csv`: latency of patching a batch of sites with one protocol.
    Patch,
    /// `stress.csv`: live-patching runs with concurrent callers, and their verdicts.
    Stress,
    /// `hazard.csv`: torn executions of a line-crossing site rewritten while it runs.
    Hazard,
    /// `census.csv`: call sites per kind per binary, and how many cross each boundary.
    Census,
    /// `census_offsets.csv`: sites per kind per binary by start address mod 64.
    CensusOffsets,
}

impl CsvFile {
    /// Every file a results folder is read for, in reading order (`census_static_calls.csv` and
    /// `perf.csv` are not read for plots).
    pub const ALL: [CsvFile; 7] = [
        CsvFile::Machine,
        CsvFile::Calls,
        CsvFile::Patch,
        CsvFile::Stress,
        CsvFile::Hazard,
        CsvFile::Census,
        CsvFile::CensusOffsets,
    ];

    /// The file name inside a results folder.
    pub fn file_name(self) -> &'static str {
        match self {
            CsvFile::Machine => "machine.csv",
            CsvFile::Calls => "calls.csv",
            CsvFile::Patch => "patch.csv",
            CsvFile::Stress => "stress.csv",
            CsvFile::Hazard => "hazard.csv",
            CsvFile::Census => "census.csv",
            CsvFile::CensusOffsets => "census_offsets.csv",
        }
    }
}

/// Everything measured on one machine (in one folder, when the machine appears in several).
#[derive(Clone, Debug, Default)]
pub struct Run {
    /// How plots and the summary name this run: the machine_id, plus the folder name when needed.
    pub label: String,
    /// The `machine_id` column shared by every row of the run.
    pub machine_id: String,
    /// The folder's `machine.csv` row for this machine, if it has one.
    pub machine: Option<MachineRow>,
    /// The folder's `calls.csv` rows of this machine whose callee returned with a plain `ret` at placement
    /// 0 (both columns empty in older files): every plot, table and comparison of flavors reads these.
    pub calls: Vec<CallsRow>,
    /// The folder's `calls.csv` rows of this machine of the return-kind axis: callees returning through
    /// a thunk or placed in one half of a line (every kind but `ret`), one per placement, and `ret` at placements other than
    /// 0: read by the summary's return-kind sections only.
    pub returns: Vec<CallsRow>,
    /// The folder's `patch.csv` rows of this machine.
    pub patch: Vec<PatchRow>,
    /// The folder's `stress.csv` rows of this machine.
    pub stress: Vec<StressRow>,
    /// The folder's `hazard.csv` rows of this machine.
    pub hazard: Vec<HazardRow>,
}

/// One binary's census: its rows per kind and its start-offset histogram.
#[derive(Clone, Debug, Default)]
pub struct CensusBinary {
    /// Short display name: the file name, plus the build-id (else sha256) prefix when two binaries
    /// share it.
    pub label: String,
    /// The `binary` column: the path the census read.
    pub path: String,
    /// The `sha256` column of `census.csv`; empty when not computed or when only `census_offsets.csv`
    /// names the binary.
    pub sha256: String,
    /// The `build_id` column of `census.csv` (GNU build-id); empty when the file had none.
    pub build_id: String,
    /// Its `census.csv` rows, one per kind.
    pub kinds: Vec<CensusRow>,
    /// Its `census_offsets.csv` rows: 64 per kind.
    pub offsets: Vec<CensusOffsetRow>,
}

/// All results read from the given folders.
#[derive(Clone, Debug, Default)]
pub struct Dataset {
    /// The folders actually read (after expanding parents and resolving links).
    pub folders: Vec<PathBuf>,
    /// Which CSV files were found in at least one folder.
    pub found: BTreeSet<CsvFile>,
    /// One run per machine per folder, machines in order of first appearance.
    pub runs: Vec<Run>,
    /// Every censused binary, once per path and SHA-256, in order of first appearance.
    pub binaries: Vec<CensusBinary>,
}

impl Dataset {
    /// True when at least one folder had `file`.
    pub fn has(&self, file: CsvFile) -> bool {
        self.found.contains(&file)
    }
}

/// Reads every results folder in `dirs` (see the module doc for how folders are expanded).
pub fn load(dirs: &[PathBuf]) -> Result<Dataset, ReportError> {
    let folders = resolve_folders(dirs)?;
    let mut found = BTreeSet::new();
    let mut per_folder = Vec::new();
    for folder in &folders {
        let files = read_folder(folder, &mut found)?;
        per_folder.push(files);
    }
    let runs = group_runs(&folders, &per_folder);
    let binaries = group_binaries(&per_folder);
    Ok(Dataset { folders, found, runs, binaries })
}

/// The rows of one folder.
#[derive(Default)]
struct FolderRows {
    machine: Vec<MachineRow>,
    calls: Vec<CallsRow>,
    patch: Vec<PatchRow>,
    stress: Vec<StressRow>,
    hazard: Vec<HazardRow>,
    census: Vec<CensusRow>,
    offsets: Vec<CensusOffsetRow>,
}

fn holds_results(dir: &Path) -> bool {
    CsvFile::ALL.iter().any(|f| dir.join(f.file_name()).is_file())
}

fn resolve_folders(dirs: &[PathBuf]) -> Result<Vec<PathBuf>, ReportError> {
    let expected = CsvFile::ALL.map(CsvFile::file_name).join(", ");
    let mut out: Vec<PathBuf> = Vec::new();
    let mut seen = BTreeSet::new();
    for dir in dirs {
        let meta =
            std::fs::metadata(dir).map_err(|e| ReportError::NotAFolder { path: dir.clone(), reason: e.to_string() })?;
        if !meta.is_dir() {
            return Err(ReportError::NotAFolder { path: dir.clone(), reason: "it is a file".into() });
        }
        let candidates = {
            let mut subs = Vec::new();
            for entry in std::fs::read_dir(dir).map_err(|e| ReportError::io(dir, e))? {
                let path = entry.map_err(|e| ReportError::io(dir, e))?.path();
                // A hidden folder is no run: `callpatch run` stages an unfinished one as `.NAME.partial-PID`.
                let hidden = path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
                if path.is_dir() && !hidden && holds_results(&path) {
                    subs.push(path);
                }
            }
            // Real folders before links to them (`results/latest`), so a run keeps its own name.
            subs.sort_by_key(|p| (p.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()), p.clone()));
            if holds_results(dir) {
                subs.insert(0, dir.clone());
            }
            subs
        };
        if candidates.is_empty() {
            return Err(ReportError::NoResults { path: dir.clone(), expected: expected.clone() });
        }
        for c in candidates {
            let canonical = std::fs::canonicalize(&c).map_err(|e| ReportError::io(&c, e))?;
            if seen.insert(canonical) {
                out.push(c);
            }
        }
    }
    Ok(out)
}

fn read_folder(dir: &Path, found: &mut BTreeSet<CsvFile>) -> Result<FolderRows, ReportError> {
    let mut rows = FolderRows::default();
    for file in CsvFile::ALL {
        let path = dir.join(file.file_name());
        if !path.is_file() {
            continue;
        }
        found.insert(file);
        match file {
            CsvFile::Machine => rows.machine = read_plain(&path)?,
            CsvFile::Calls => rows.calls = read_plain(&path)?,
            CsvFile::Patch => rows.patch = read_plain(&path)?,
            CsvFile::Stress => rows.stress = read_plain(&path)?,
            CsvFile::Hazard => rows.hazard = read_plain(&path)?,
            CsvFile::Census => rows.census = read_plain(&path)?,
            CsvFile::CensusOffsets => rows.offsets = read_plain(&path)?,
        }
    }
    Ok(rows)
}

/// Reads and checks every record of `path` ([`validate`]): an impossible value is an error naming the
/// file, the line and the column.
fn read_plain<T: DeserializeOwned + Validate>(path: &Path) -> Result<Vec<T>, ReportError> {
    let rows = read_records(path, |record, headers| {
        let row: T = record.deserialize(Some(headers))?;
        let line = record.position().map_or(0, |p| p.line());
        Ok(validate::check_text::<T>(record, headers).and_then(|()| row.check()).map(|()| row).map_err(|e| (line, e)))
    })?;
    rows.into_iter().collect::<Result<Vec<T>, (u64, Invalid)>>().map_err(|(line, Invalid { column, message })| {
        ReportError::Invalid { path: path.to_path_buf(), line, column, message }
    })
}

/// Reads every record of `path` with `parse`; a record that does not parse is an error naming the file,
/// the line and the column.
fn read_records<T>(
    path: &Path,
    parse: impl Fn(&csv::StringRecord, &csv::StringRecord) -> Result<T, csv::Error>,
) -> Result<Vec<T>, ReportError> {
    let err = |source: csv::Error, headers: Option<&csv::StringRecord>| {
        let column = match source.kind() {
            csv::ErrorKind::Deserialize { err, .. } => {
                err.field().and_then(|i| headers?.get(i as usize)).map(|name| name.to_string())
            }
            _ => None,
        };
        ReportError::Csv { path: path.to_path_buf(), column, source }
    };
    let mut reader = csv::Reader::from_path(path).map_err(|e| err(e, None))?;
    let headers = reader.headers().map_err(|e| err(e, None))?.clone();
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| err(e, Some(&headers)))?;
        out.push(parse(&record, &headers).map_err(|e| err(e, Some(&headers)))?);
    }
    Ok(out)
}

fn group_runs(folders: &[PathBuf], per_folder: &[FolderRows]) -> Vec<Run> {
    // Which folders each machine_id appears in, in order of first appearance.
    let mut order: Vec<String> = Vec::new();
    let mut folders_of: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    for (i, rows) in per_folder.iter().enumerate() {
        let ids = rows
            .machine
            .iter()
            .map(|r| &r.machine_id)
            .chain(rows.calls.iter().map(|r| &r.machine_id))
            .chain(rows.patch.iter().map(|r| &r.machine_id))
            .chain(rows.stress.iter().map(|r| &r.machine_id))
            .chain(rows.hazard.iter().map(|r| &r.machine_id));
        for id in ids {
            if !folders_of.contains_key(id) {
                order.push(id.clone());
            }
            folders_of.entry(id.clone()).or_default().insert(i);
        }
    }
    let mut runs = Vec::new();
    for id in order {
        let in_folders = &folders_of[&id];
        for &i in in_folders {
            let rows = &per_folder[i];
            let label = if in_folders.len() > 1 {
                let name = folders[i]
                    .file_name()
                    .map_or_else(|| folders[i].display().to_string(), |n| n.to_string_lossy().into_owned());
                format!("{id} ({name})")
            } else {
                id.clone()
            };
            runs.push(Run {
                label,
                machine_id: id.clone(),
                machine: rows.machine.iter().find(|r| r.machine_id == id).cloned(),
                calls: rows.calls.iter().filter(|r| r.machine_id == id && !thunked(r)).cloned().collect(),
                returns: rows.calls.iter().filter(|r| r.machine_id == id && thunked(r)).cloned().collect(),
                patch: rows.patch.iter().filter(|r| r.machine_id == id).cloned().collect(),
                stress: rows.stress.iter().filter(|r| r.machine_id == id).cloned().collect(),
                hazard: rows.hazard.iter().filter(|r| r.machine_id == id).cloned().collect(),
            });
        }
    }
    runs
}

/// True for a row of the return-kind axis: a callee returning through a thunk, or with `ret` at a
/// placement other than 0 (measured beside the thunks).
fn thunked(r: &CallsRow) -> bool {
    r.ret.is_some_and(|k| k.is_placed()) || r.placement.is_some_and(|p| p > 0)
}

fn group_binaries(per_folder: &[FolderRows]) -> Vec<CensusBinary> {
    let mut binaries: Vec<CensusBinary> = Vec::new();
    for rows in per_folder {
        // Binaries in this folder, in file order; offsets have no identity columns, so they take the
        // build-id and sha256 that census.csv of the same folder gives for their path.
        let mut paths: Vec<&str> = Vec::new();
        for r in rows.census.iter().map(|r| r.binary.as_str()).chain(rows.offsets.iter().map(|r| r.binary.as_str())) {
            if !paths.contains(&r) {
                paths.push(r);
            }
        }
        for path in paths {
            let row = rows.census.iter().find(|r| r.binary == path);
            let sha = row.map_or("", |r| r.sha256.as_str());
            let build_id = row.map_or("", |r| r.build_id.as_str());
            let known = binaries.iter().any(|b| {
                b.path == path
                    && ((b.sha256 == sha && !sha.is_empty()) || (b.build_id == build_id && !build_id.is_empty()))
            });
            if known {
                continue;
            }
            binaries.push(CensusBinary {
                label: String::new(),
                path: path.to_string(),
                sha256: sha.to_string(),
                build_id: build_id.to_string(),
                kinds: rows.census.iter().filter(|r| r.binary == path).cloned().collect(),
                offsets: rows.offsets.iter().filter(|r| r.binary == path).cloned().collect(),
            });
        }
    }
    let names: Vec<String> = binaries.iter().map(|b| file_name(&b.path)).collect();
    for (i, b) in binaries.iter_mut().enumerate() {
        let shared = names.iter().filter(|n| **n == names[i]).count() > 1;
        // The content identity's first 8 hex digits: the build-id, else the SHA-256.
        let id = if b.build_id.is_empty() { &b.sha256 } else { &b.build_id };
        b.label = if shared && !id.is_empty() {
            format!("{} ({})", names[i], id.get(..8).unwrap_or(id))
        } else if shared {
            b.path.clone()
        } else {
            names[i].clone()
        };
    }
    binaries
}

fn file_name(path: &str) -> String {
    Path::new(path).file_name().map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_with_results_of_its_own_and_machine_folders_beside_them_reads_all_of_them() {
        let tmp = tempfile::tempdir().unwrap();
        let (top, m1, hidden) = (tmp.path(), tmp.path().join("m1"), tmp.path().join(".m2.partial-1"));
        for d in [&m1, &hidden] {
            std::fs::create_dir(d).unwrap();
        }
        for d in [top, m1.as_path(), hidden.as_path()] {
            std::fs::write(d.join("machine.csv"), "").unwrap();
        }
        std::os::unix::fs::symlink(&m1, top.join("latest")).unwrap();
        let folders = resolve_folders(&[top.to_path_buf()]).unwrap();
        assert_eq!(folders, [top.to_path_buf(), m1], "the folder, its machine folder once, no staging folder");
    }
}
