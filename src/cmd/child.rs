//! Running an experiment in a child process, so that a crash (a torn instruction that jumps into the
//! weeds) ends the child, not the command: the parent re-runs this executable with a hidden `--child`
//! flag; the child writes its result rows to its stdout as CSV (serde, one type per command) and
//! nothing else; the parent reads them back as the same type and reports a death by signal as
//! `crashed`.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use anyhow::Context;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// How a child run ended.
pub struct ChildRun<R> {
    /// The result rows the child wrote (none if it failed or crashed before writing them).
    pub rows: Vec<R>,
    /// Exit code, if it exited.
    pub code: Option<i32>,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
}

/// Runs `callpatch <args>` (this same executable), waits for it and reads its result rows; stderr
/// passes through. Rows that do not parse are an error, unless a signal killed the child (its
/// output may stop mid-row; the crash is the result then).
pub fn run<R: DeserializeOwned>(args: &[String]) -> anyhow::Result<ChildRun<R>> {
    let exe = std::env::current_exe().context("finding this executable to re-run as a child")?;
    let out = super::tether::tie(&mut Command::new(&exe), false)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {} as a child", exe.display()))?;
    let signal = out.status.signal();
    let rows = csv::Reader::from_reader(out.stdout.as_slice()).deserialize().collect::<Result<Vec<R>, _>>();
    let rows = match (rows, signal) {
        (Ok(rows), _) => rows,
        (Err(_), Some(_)) => Vec::new(),
        (Err(e), None) => {
            return Err(e).with_context(|| format!("reading the result rows of `callpatch {}`", args.join(" ")))
        }
    };
    Ok(ChildRun { rows, code: out.status.code(), signal })
}

/// First thing in a child: no core file if it crashes (a crash is an expected outcome, reported).
pub fn enter() {
    let none = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: setrlimit only reads the struct we pass.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) };
}

/// Last thing in a child: its result rows, as CSV with a header, on stdout (flushed, so the child may
/// `exit` right after).
pub fn write_rows<R: Serialize>(rows: &[R]) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(std::io::stdout().lock());
    for row in rows {
        w.serialize(row).context("writing a result row to stdout")?;
    }
    w.flush().context("writing the result rows to stdout")
}
