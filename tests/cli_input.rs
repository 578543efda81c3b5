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

#[test]
fn usage_errors_exit_2_on_one_line_with_clap_s_details_and_tips() {
    assert_refused(&["plto", "x"], 2, "unrecognized subcommand 'plto'; tip: a similar subcommand exists: 'plot'");
    assert_refused(&["calls", "--flavr", "x"], 2, "tip: a similar argument exists: '--flavor'");
    assert_refused(&["plot"], 2, "the following required arguments were not provided: <DIR>...");
}

#[test]
fn a_negative_number_reaches_its_own_check() {
    assert_refused(&["hazard", "--seconds", "-1"], 1, "--seconds must be a positive number, got -1");
    assert_refused(&["patch", "--callers", "-1"], 2, "invalid value '-1' for '--callers <CALLERS>'");
}

#[test]
fn an_error_s_cause_is_printed_once() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("calls.csv"),
        "machine_id,flavor,scenario,param,unroll,repeats,cycles_min,cycles_median,cycles_p90,ns_median,instructions,branch_misses,timer\n\
         m,retpolin,mono,,16,11,1,1,1,1,x,x,tsc-ref-cycles\n",
    )
    .unwrap();
    let dir = tmp.path().to_str().unwrap();
    let out = callpatch(&["plot", dir]);
    assert_eq!(stderr(&out).matches("unknown flavor `retpolin`").count(), 1, "{}", stderr(&out));
    // A readable folder, but --out names a file: creating the folder fails with EEXIST.
    let calls = tmp.path().join("calls.csv");
    std::fs::write(&calls, std::fs::read_to_string(&calls).unwrap().replace("retpolin", "retpoline")).unwrap();
    let file = tmp.path().join("machine.csv");
    std::fs::write(&file, "").unwrap();
    let out = callpatch(&["plot", dir, "--out", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).matches("File exists").count(), 1, "{}", stderr(&out));
}
