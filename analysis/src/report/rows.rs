//! One row type per CSV file that `callpatch` writes, and how they are written and read. The row types
//! are the vocabulary's ([`callpatch_vocab::rows`], re-exported here, where every column is described);
//! this module adds the files: atomic writing, reading back (a file with a name this build does not know
//! is an error that quotes the name), removing a stale one.

use serde::{Deserialize, Serialize};

pub use callpatch_vocab::rows::{
    CallsRow, CensusOffsetRow, CensusRow, HazardRow, MachineRow, PatchRow, PerfRow, SiteRow, StaticCallKeyRow,
    StressRow,
};

/// Writes `rows` to `path` as CSV with a header, atomically: the rows go to a temporary file of a
/// unique name beside `path` (`.NAME.XXXXXX.tmp`) that is renamed into place only when all of them
/// were written, so a failed run never leaves a partial file that looks complete, and two writers of
/// one file each leave a whole file of their own (the last rename wins).
pub fn write_csv<T: Serialize>(path: &std::path::Path, rows: &[T]) -> Result<(), csv::Error> {
    let tmp = temp_beside(path, ".tmp")?;
    let mut w = csv::Writer::from_writer(tmp.as_file());
    for r in rows {
        w.serialize(r)?;
    }
    w.flush()?;
    drop(w);
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// A new temporary file of a unique name beside `path`, `.NAME.XXXXXX<suffix>`, with the permissions
/// a plain file would get, removed unless persisted.
pub fn temp_beside(path: &std::path::Path, suffix: &str) -> std::io::Result<tempfile::NamedTempFile> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    let name = path.file_name().map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    // 0o666 less the umask, as for any file created plainly (tempfile's default is 0o600).
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o666);
    tempfile::Builder::new().prefix(&format!(".{name}.")).suffix(suffix).permissions(mode).tempfile_in(dir)
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

/// A `calls.csv` row for unit tests: `flavor` in `scenario` (`param`), every cycle column `ticks`,
/// `ns_median` as given, nothing measured beside them.
#[cfg(test)]
pub(crate) fn test_calls_row(
    flavor: callpatch_vocab::Flavor,
    scenario: &str,
    param: &str,
    ticks: f64,
    ns: f64,
) -> CallsRow {
    CallsRow {
        unroll: 32,
        repeats: 45,
        cycles_min: ticks,
        cycles_median: ticks,
        cycles_p90: ticks,
        ns_median: ns,
        instructions: "unavailable (x)".into(),
        branch_misses: "unavailable (x)".into(),
        timer: "tsc-ref-cycles".into(),
        ..CallsRow::new("m", flavor, scenario, param)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callpatch_vocab::Flavor;

    #[test]
    fn calls_row_round_trips_with_documented_header() {
        let dir = tempfile::Builder::new().prefix("callpatch-rows-").tempdir().unwrap();
        let path = dir.path().join("calls.csv");
        let row = CallsRow {
            machine_id: "m".into(),
            flavor: Flavor::Retpoline,
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
            baseline: Some("direct mono".into()),
            ratio_median: Some(8.8),
            ratio_lo: Some(8.7),
            ratio_hi: Some(9.0),
            samples: Some(21),
            discarded: Some(2),
            noisy: Some(false),
            note: Some(String::new()),
            core_hz_est: Some(3.7e9),
            core_cycles_median: Some(44.1),
            arena: None,
            cpu: None,
            ret: None,
            placement: None,
        };
        write_csv(&path, std::slice::from_ref(&row)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines().next().unwrap(),
            "machine_id,flavor,scenario,param,unroll,repeats,cycles_min,cycles_median,cycles_p90,ns_median,instructions,branch_misses,timer,\
             baseline,ratio_median,ratio_lo,ratio_hi,samples,discarded,noisy,note,core_hz_est,core_cycles_median,arena,cpu,ret,placement"
        );
        let back = read_csv::<CallsRow>(&path).unwrap();
        // An empty note reads back as no note.
        assert_eq!(back, vec![CallsRow { note: None, ..row }]);
    }

    #[test]
    fn perf_row_round_trips_with_documented_header() {
        let dir = tempfile::Builder::new().prefix("callpatch-perfrow-").tempdir().unwrap();
        let path = dir.path().join("perf.csv");
        let row = PerfRow {
            machine_id: "m".into(),
            flavor: Flavor::Retpoline,
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
    }

    #[test]
    fn an_unknown_flavor_is_an_error_that_names_it() {
        let dir = tempfile::Builder::new().prefix("callpatch-rows-bad-").tempdir().unwrap();
        let path = dir.path().join("calls.csv");
        std::fs::write(
            &path,
            "machine_id,flavor,scenario,param,unroll,repeats,cycles_min,cycles_median,cycles_p90,ns_median,instructions,branch_misses,timer\n\
             m,retpolin,mono,,16,11,1,1,1,1,x,x,tsc-ref-cycles\n",
        )
        .unwrap();
        let err = read_csv::<CallsRow>(&path).unwrap_err().to_string();
        assert!(err.contains("unknown flavor `retpolin`"), "{err}");
    }
}
