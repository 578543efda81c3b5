//! Input the CLI must refuse with one line and the right exit status, never a panic or a repeated
//! message: out-of-range numbers, negative values, clap's own usage errors. Nothing here measures.

use std::process::{Command, Output};

fn callpatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_callpatch")).args(args).output().expect("run callpatch")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// One `callpatch: error:` line containing `want`, and exit status `code`.
fn assert_refused(args: &[&str], code: i32, want: &str) {
    let out = callpatch(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    assert!(err.starts_with("callpatch: error: ") && err.contains(want), "{args:?}: {err} (want {want:?})");
}

#[test]
fn a_time_budget_no_clock_can_hold_is_refused_not_a_panic() {
    for cmd in ["stress", "hazard"] {
        assert_refused(&[cmd, "--seconds", "1e30"], 1, "--seconds 1e30 is too long");
    }
    assert_refused(&["perf", "--hold", "--seconds", "1e19"], 1, "--seconds 1e19 is too long");
}

#[test]
fn more_callers_than_cpus_are_refused_before_anything_starts() {
    for cmd in ["patch", "stress"] {
        assert_refused(&[cmd, "--callers", "1000"], 1, "--callers 1000: at most");
    }
}
