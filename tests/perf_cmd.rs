//! `callpatch perf` end to end: the table and perf.csv on this machine, --hold's announcement and
//! perf map, and bad input refused with one error line.

use std::path::Path;
use std::process::{Command, Output};

use callpatch_analysis::report::rows::{read_csv, PerfRow};
use callpatch_probes::measure::parse_perf_map;

fn callpatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_callpatch")).args(args).output().expect("run callpatch")
}

/// A fresh temporary directory for one test, removed when it drops (a failing test's too).
fn scratch(test: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("callpatch-perfcmd-{test}-")).tempdir().unwrap()
}

#[test]
fn writes_per_call_rows_for_tsc_hardware_and_software_events() {
    let dir = scratch("rows");
    let out = callpatch(&[
        "perf",
        "--flavor",
        "retpoline",
        "--quick",
        "--seconds",
        "0",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<PerfRow> = read_csv(&dir.path().join("perf.csv")).unwrap();
    let events: Vec<&str> = rows.iter().map(|r| r.event.as_str()).collect();
    assert_eq!(
        events,
        ["tsc-ref-cycles", "cycles", "instructions", "branches", "branch-misses", "task-clock", "context-switches"]
    );
    let tsc: f64 = rows[0].per_call.parse().expect("TSC figure is a number");
    assert!(tsc > 0.0, "{tsc}");
    let task_clock: f64 = rows[5].per_call.parse().expect("task-clock is a number");
    assert!(task_clock > 0.0, "{task_clock}");
    for r in &rows[1..5] {
        // Either a number (a PMU) or the reason, with its errno name; never a bare 0.
        if r.per_call.parse::<f64>().is_err() {
            assert!(r.per_call.starts_with("unavailable (E"), "{}", r.per_call);
            assert!(stdout.contains("remedy:"), "{stdout}");
        }
        assert_eq!((r.flavor.name(), r.scenario.as_str()), ("retpoline", "mono"));
    }
    assert!(dir.path().join("machine.csv").exists());
    // Without --hold no outside perf reads the map: it goes when the process does.
    let map = stdout.lines().find_map(|l| l.strip_prefix("perf map: ")).expect("map announced");
    let map = map.split(' ').next().unwrap();
    assert!(!Path::new(map).exists(), "{map} left behind");
}

#[test]
fn hold_announces_pid_and_a_map_covering_the_probe() {
    // Its own folder: the default results/<machine_id> is locked by whichever command writes it, and
    // the tests of this file run in parallel.
    let dir = scratch("hold");
    let out = callpatch(&[
        "perf",
        "--flavor",
        "trampoline",
        "--hold",
        "--quick",
        "--seconds",
        "0.2",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let line = stdout.lines().find(|l| l.starts_with("holding trampoline mono")).expect("announcement");
    let pid: u32 = line.split("pid ").nth(1).unwrap().split(',').next().unwrap().parse().unwrap();
    let map = format!("/tmp/perf-{pid}.map");
    assert!(line.contains(&map), "{line}");
    let entries = parse_perf_map(&std::fs::read_to_string(&map).unwrap()).unwrap();
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    for want in
        ["callpatch_target_0", "callpatch_trampoline", "callpatch_trampoline_mono_u", "callpatch_trampoline_mono_2u"]
    {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    assert!(entries.iter().all(|e| e.size > 0) && entries.windows(2).all(|w| w[0].end() <= w[1].start));
    std::fs::remove_file(Path::new(&map)).unwrap();
}

#[test]
fn bad_input_is_one_error_line() {
    for args in [
        &["perf", "--event", "cycels"][..],
        &["perf", "--event", "rxyz"],
        &["perf", "--scenario", "poly"],
        &["perf", "--flavor", "jump"],
        &["perf", "--seconds=-1"],
        &["perf", "--seconds", "nan"],
        &["perf", "--seconds", "1e30"],
        &["perf", "--hold", "--seconds", "1e19"],
        &["perf", "--flavor", "direct", "--scenario", "poly-random-4"],
    ] {
        let dir = scratch("bad");
        let mut args = args.to_vec();
        args.extend(["--out", dir.path().to_str().unwrap()]);
        let out = callpatch(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("callpatch: error: "), "{args:?}: {stderr}");
    }
}
