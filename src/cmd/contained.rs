//! Running an experiment in a child process, so that a crash (a torn instruction that jumps into the
//! weeds) ends the child, not the command: the parent re-runs this executable with a hidden `--child`
//! flag, reads the child's result lines from its stdout, and reports a death by signal as `crashed`.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use anyhow::Context;

/// How a child run ended.
pub struct ChildRun {
    /// Everything the child printed on stdout (its result lines).
    pub stdout: String,
    /// Exit code, if it exited.
    pub code: Option<i32>,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
}

/// Runs `callpatch <args>` (this same executable) and waits for it; stderr passes through.
pub fn run_child(args: &[String]) -> anyhow::Result<ChildRun> {
    let exe = std::env::current_exe().context("finding this executable to re-run as a child")?;
    let out = Command::new(&exe)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {} as a child", exe.display()))?;
    Ok(ChildRun {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        code: out.status.code(),
        signal: out.status.signal(),
    })
}

/// First thing in a child: no core file if it crashes (a crash is an expected outcome, reported).
pub fn enter_child() {
    let none = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: setrlimit only reads the struct we pass.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) };
}

/// The value of `key=value` among whitespace-separated fields of a result line.
pub fn field<T: std::str::FromStr>(line: &str, key: &str) -> anyhow::Result<T> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("child result line `{line}` lacks a valid `{key}=`"))
}
