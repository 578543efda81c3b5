//! Tests that must run in a process of their own (a policy that cannot be undone, an abort, the one
//! SIGTRAP disposition): this test binary again, running one ignored test.

use std::process::{Command, Output};

/// The command that runs the ignored test `test` alone in a child process.
pub fn command(test: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--ignored", "--exact", test, "--nocapture", "--test-threads=1"]);
    c
}

/// Runs `test` in a child and checks that it ran and passed; its output.
pub fn passes(test: &str) -> Output {
    let out = command(test).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the child failed ({}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("1 passed"), "the child test did not run:\n{stdout}");
    out
}
