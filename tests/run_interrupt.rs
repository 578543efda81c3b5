//! `callpatch run` stopped by a signal to it alone: its parts die with it and nothing writes into the
//! folder afterwards (issue 12, item 1).

mod common;

use std::time::Duration;

use common::{assert_dead_and_quiet, signal, start_run_with_a_part, wait_exit};

#[test]
fn sigterm_to_run_alone_leaves_no_part_alive_and_nothing_written_after() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("m");
        let (mut run, part) = start_run_with_a_part(dir.path(), &["--out", out.to_str().unwrap()]);
        signal(run.id(), sig);
        let status = wait_exit(&mut run, Duration::from_secs(10));
        assert!(!status.success(), "an interrupted run must not exit 0");
        assert_dead_and_quiet(dir.path(), out.to_str().unwrap(), part);
    }
}

#[test]
fn sigkill_to_run_alone_leaves_no_part_alive() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m");
    let (mut run, part) = start_run_with_a_part(dir.path(), &["--out", out.to_str().unwrap()]);
    signal(run.id(), libc::SIGKILL);
    wait_exit(&mut run, Duration::from_secs(10));
    assert_dead_and_quiet(dir.path(), out.to_str().unwrap(), part);
}
