//! `callpatch run` from the outside, with every measuring part skipped (the parts have their own tests;
//! `.ci/run` runs the whole `run --quick`): what it writes, and that nothing an earlier run left in the
//! folder survives to pass for this run's results.

use std::process::Command;

#[test]
fn a_rerun_leaves_no_earlier_result_behind() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m");
    std::fs::create_dir_all(out.join("logs")).unwrap();
    // What an earlier, fuller run left: a stress verdict, a plot and a log this run will not make.
    for stale in ["stress.csv", "patch.csv", "census_static_calls.csv", "patch_latency.png", "logs/stress.log"] {
        std::fs::write(out.join(stale), "stale\n").unwrap();
    }
    let o = Command::new(env!("CARGO_BIN_EXE_callpatch"))
        .args(["run", "--skip", "calls,patch,stress,hazard,census", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    for stale in ["stress.csv", "patch.csv", "census_static_calls.csv", "patch_latency.png", "logs/stress.log"] {
        assert!(!out.join(stale).exists(), "{stale} from the earlier run is still there");
    }
    let machine = std::fs::read_to_string(out.join("machine.csv")).unwrap();
    assert!(machine.starts_with("machine_id,cpu_model,"), "{machine}");
    assert_eq!(machine.lines().count(), 2);
    assert!(std::fs::read_to_string(out.join("summary.md")).unwrap().contains("patch.csv"));
    // An explicit --out makes no results/latest link beside it.
    assert!(!dir.path().join("latest").exists());
}

#[test]
fn an_unknown_part_is_one_error_line() {
    let o = Command::new(env!("CARGO_BIN_EXE_callpatch")).args(["run", "--skip", "everything"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "a usage error: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("callpatch: error: "), "{stderr}");
}
