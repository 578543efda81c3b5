//! `callpatch calls` records how it measured (two runs with different `--arena` or `--cpu` do not look
//! identical in their `calls.csv`) and reports each row as it finishes.

use std::process::Command;

use callpatch_analysis::report::rows::{read_csv, CallsRow};

#[test]
fn the_arena_mode_and_the_pinned_cpu_are_in_every_row_and_rows_stream_as_they_finish() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_callpatch"))
        .args(["calls", "--quick", "--flavor", "direct", "--scenario", "mono", "--arena", "dualmap", "--cpu", "0"])
        .arg("--out")
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = read_csv::<CallsRow>(&tmp.path().join("calls.csv")).unwrap();
    assert!(!rows.is_empty());
    for r in &rows {
        assert_eq!((r.arena.as_deref(), r.cpu), (Some("dualmap"), Some(0)), "{r:?}");
    }
    // Each row is reported as it finishes, not only in the table at the end.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.lines().any(|l| l.starts_with("  direct mono: ") && l.contains("direct mono")), "{stderr}");
}

#[test]
fn a_thunk_return_kind_is_a_verified_row_named_by_kind_and_placement() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_callpatch"))
        .args(["calls", "--quick", "--flavor", "direct", "--thunk-flavor", "direct", "--scenario", "mono"])
        .args(["--ret", "srso", "--placements", "1", "--out"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = read_csv::<CallsRow>(&tmp.path().join("calls.csv")).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = &rows[0];
    assert_eq!((r.ret.map(|k| k.name()), r.placement), (Some("srso"), Some(0)), "{r:?}");
    assert_eq!(r.baseline.as_deref(), Some("direct mono"));
    // Measured (the probe was emitted and its weight sum verified) or, on a host too busy, said why.
    assert!(r.cycles_median.is_finite() || r.note.is_some(), "{r:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("srso p0"), "{stdout}");
}

#[test]
fn an_unknown_return_kind_is_one_line_and_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_callpatch")).args(["calls", "--ret", "srso-alais"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown return kind `srso-alais`"), "{stderr}");
}
