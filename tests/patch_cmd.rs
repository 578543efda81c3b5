//! `callpatch patch`, `stress` and `hazard` end to end on this machine: their CSVs with the documented
//! headers, exact accounting, and bad input refused with one error line and exit 1.

use std::process::{Command, Output};

use callpatch_analysis::report::rows::{read_csv, HazardRow, PatchRow, StressRow};

fn callpatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_callpatch")).args(args).output().expect("run callpatch")
}

fn scratch(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("callpatch-patchcmd-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[test]
fn patch_writes_rows_for_every_point_with_and_without_callers() {
    let dir = scratch("patch");
    let d = dir.to_str().unwrap();
    let out = callpatch(&["patch", "--quick", "--protocol", "bp,aligned", "--batch", "1,10", "--out", d]);
    let stdout = ok(&out);
    assert!(stdout.contains("vs limit 1/(3×sync)"), "{stdout}");
    let header = std::fs::read_to_string(dir.join("patch.csv")).unwrap();
    assert!(header.starts_with(
        "machine_id,protocol,batch,syncs,latency_ns_min,latency_ns_median,traps,callers,method,sync_ns,fallback,late_traps"
    ));
    let rows: Vec<PatchRow> = read_csv(&dir.join("patch.csv")).unwrap();
    // membarrier + 2 protocols × 2 batch sizes, for 0 and 1 callers.
    assert_eq!(rows.len(), 2 * (1 + 2 * 2));
    for r in &rows {
        let syncs = match r.protocol.name() {
            "bp" => 3,
            "aligned" | "membarrier" => 1,
            p => panic!("unexpected protocol {p}"),
        };
        assert_eq!(r.syncs, syncs, "{r:?}");
        assert!(r.latency_ns_min > 0.0 && r.latency_ns_min <= r.latency_ns_median, "{r:?}");
        // The interval on the median (every point has at least 6 repeats) and the trap accounting,
        // both by construction.
        let (lo, hi) = (r.latency_ns_lo.expect("interval"), r.latency_ns_hi.expect("interval"));
        assert!(lo <= r.latency_ns_median && r.latency_ns_median <= hi, "{r:?}");
        assert!(r.late_traps.expect("counted") <= r.traps, "{r:?}");
        assert!(r.sync_ns > 0.0 && r.method == "alias");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn stress_accounts_for_every_call_of_every_caller() {
    let dir = scratch("stress");
    let out = callpatch(&["stress", "--protocol", "bp,aligned-8", "--seconds", "0.3", "--out", dir.to_str().unwrap()]);
    let stdout = ok(&out);
    assert_eq!(stdout.matches("every call accounted for").count(), 2, "{stdout}");
    let rows: Vec<StressRow> = read_csv(&dir.join("stress.csv")).unwrap();
    assert_eq!(rows.iter().map(|r| r.protocol.name()).collect::<Vec<_>>(), ["bp", "aligned-8"]);
    for r in &rows {
        assert!(r.patches > 0 && r.calls > 0 && !r.crashed, "{r:?}");
        assert_eq!((r.misdirected, r.lost), (0, Some(0)), "{r:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn hazard_runs_every_writer_in_a_child_and_bp_never_tears() {
    let dir = scratch("hazard");
    let out = callpatch(&["hazard", "--patches", "5000", "--out", dir.to_str().unwrap()]);
    ok(&out);
    let rows: Vec<HazardRow> = read_csv(&dir.join("hazard.csv")).unwrap();
    let writers: Vec<&str> = rows.iter().map(|r| r.writer.name()).collect();
    assert_eq!(writers, ["naive-bytewise", "naive-split4", "bp"]);
    for r in &rows {
        assert!(!r.crashed, "{r:?}");
        assert_eq!(r.patches, 5000, "{r:?}");
    }
    assert_eq!(rows[2].torn, 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_input_is_one_line_and_exit_1() {
    // Exit 2: clap's usage errors; exit 1: the commands' own checks.
    for (argv, code) in [
        (&["patch", "--protocol", "bq"][..], 2),
        (&["patch", "--batch", "0"], 1),
        (&["patch", "--granule", "16"], 2),
        (&["stress", "--protocol", "naive"], 1),
        (&["stress", "--seconds", "-1"], 1),
        (&["stress", "--callers", "0"], 1),
        (&["hazard", "--seconds", "1", "--patches", "2"], 2),
        (&["hazard", "--writer", "naive"], 2),
        (&["hazard", "--patches", "0"], 1),
        (&["patch", "--bogus"], 2),
    ] {
        let out = callpatch(argv);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{argv:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{argv:?}: {stderr}");
        assert!(stderr.starts_with("callpatch: error: "), "{argv:?}: {stderr}");
    }
}
