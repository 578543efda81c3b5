//! Running an experiment in a child process, so that a crash (a torn instruction that jumps into the
//! weeds) ends the child, not the command: the parent re-runs this executable with a hidden `--child`
//! flag; the child writes its result rows to its stdout as CSV (serde, one type per command) and
//! nothing else; the parent reads them back as the same type and reports a death by signal as
//! `crashed`.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

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

/// Runs `callpatch <args>` (this same executable), waits for it at most `limit` and reads its result
/// rows; stderr passes through. Rows that do not parse are an error, unless a signal killed the child
/// (its output may stop mid-row; the crash is the result then). A child still running at `limit` is
/// killed and is an error: no wait is unbounded.
pub fn run<R: DeserializeOwned>(args: &[String], limit: Duration) -> anyhow::Result<ChildRun<R>> {
    let exe = std::env::current_exe().context("finding this executable to re-run as a child")?;
    let mut cmd = Command::new(&exe);
    super::tether::tie(&mut cmd, false).args(args);
    let (status, stdout) =
        run_bounded(&mut cmd, limit).with_context(|| format!("running `callpatch {}` as a child", args.join(" ")))?;
    let signal = status.signal();
    let rows = csv::Reader::from_reader(stdout.as_slice()).deserialize().collect::<Result<Vec<R>, _>>();
    let rows = match (rows, signal) {
        (Ok(rows), _) => rows,
        (Err(_), Some(_)) => Vec::new(),
        (Err(e), None) => {
            return Err(e).with_context(|| format!("reading the result rows of `callpatch {}`", args.join(" ")))
        }
    };
    Ok(ChildRun { rows, code: status.code(), signal })
}

/// The limit for a child that measures for `seconds`: twice that, plus a minute for start-up, emission
/// and a loaded machine. Past it the child is stuck, not slow.
pub fn limit_for(seconds: f64) -> Duration {
    Duration::try_from_secs_f64(2.0 * seconds + 60.0).unwrap_or(Duration::MAX)
}

/// Starts `cmd` (stdin null, stdout captured, stderr inherited) and waits for it at most `limit`; a
/// child still running then is killed (SIGKILL) and reaped, and the result is an error saying so. The
/// stdout is drained by a thread meanwhile, so a child that writes more than a pipe holds never blocks.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> anyhow::Result<(ExitStatus, Vec<u8>)> {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()?;
    let mut pipe = child.stdout.take().context("the child's stdout was not captured")?;
    let reader = std::thread::Builder::new().name("child-stdout".into()).spawn(move || {
        let mut out = Vec::new();
        pipe.read_to_end(&mut out).map(|_| out)
    });
    let reader = match reader {
        Ok(r) => r,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e).context("starting the thread that reads the child's stdout");
        }
    };
    let deadline = Instant::now().checked_add(limit);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            let _ = reader.join();
            anyhow::bail!("it did not finish within {:.0} s and was killed", limit.as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = reader.join().map_err(|_| anyhow::anyhow!("the thread reading the child's stdout panicked"))??;
    Ok((status, stdout))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_that_never_ends_is_killed_at_its_limit_and_is_an_error() {
        let start = Instant::now();
        let mut cmd = Command::new("sleep");
        cmd.arg("60");
        let e = run_bounded(&mut cmd, Duration::from_millis(300)).unwrap_err().to_string();
        assert!(e.contains("did not finish within") && e.contains("killed"), "{e}");
        assert!(start.elapsed() < Duration::from_secs(30), "the wait was not bounded: {:?}", start.elapsed());
    }

    #[test]
    fn a_child_that_ends_gives_its_status_and_its_whole_stdout() {
        // More than a pipe buffer (64 KiB), so a parent that only waited would deadlock.
        let mut cmd = Command::new("head");
        cmd.args(["-c", "300000", "/dev/zero"]);
        let (status, out) = run_bounded(&mut cmd, Duration::from_secs(30)).unwrap();
        assert!(status.success());
        assert_eq!(out.len(), 300_000);
    }
}
