//! Helpers the CLI's process tests share: finding a process's children, waiting with a deadline,
//! snapshotting a folder.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// The ids of the live (not zombie) processes whose parent is `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(id) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{id}/stat")) else { continue };
        // Fields after the command name, which is in parentheses and may hold spaces.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else { continue };
        let mut fields = rest.split(' ');
        let state = fields.next().unwrap_or("");
        let ppid: u32 = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        if ppid == pid && state != "Z" {
            out.push(id);
        }
    }
    out
}

/// The ids of the live processes whose command line mentions `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(id) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(cmd) = std::fs::read(format!("/proc/{id}/cmdline")) else { continue };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let zombie = std::fs::read_to_string(format!("/proc/{id}/stat"))
            .map(|s| s.rfind(')').is_some_and(|i| s[i + 2..].starts_with('Z')))
            .unwrap_or(true);
        if cmd.contains(needle) && !zombie {
            out.push((id, cmd));
        }
    }
    out
}

/// Polls `f` every 20 ms until it returns `Some` or `limit` passes.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for `child` to exit (at most `limit`); kills it and panics if it does not.
pub fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    match wait_for(limit, || child.try_wait().unwrap()) {
        Some(status) => status,
        None => {
            let _ = child.kill();
            panic!("pid {} did not exit within {limit:?}", child.id());
        }
    }
}

/// Sends `sig` to `pid` only.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill takes plain integers; the pid is our own child, not yet reaped.
    let rc = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
}

/// Every file under `dir` (relative path → modification time and bytes).
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (SystemTime, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            if meta.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap_or_default();
                out.insert(path.strip_prefix(dir).unwrap().to_path_buf(), (meta.modified().unwrap(), bytes));
            }
        }
    }
    out
}

/// The names in `dir`.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

pub const BIN: &str = env!("CARGO_BIN_EXE_callpatch");

/// Starts `run --quick` with only the (slow, in a debug build) calls part, in `cwd`, with `extra`
/// arguments, and returns it once its part is running, with that part's pid.
pub fn start_run_with_a_part(cwd: &Path, extra: &[&str]) -> (std::process::Child, u32) {
    let mut run = Command::new(BIN)
        .current_dir(cwd)
        .args(["run", "--quick", "--skip", "patch,stress,hazard,census"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = run.id();
    let Some(part) = wait_for(Duration::from_secs(30), || children_of(pid).first().copied()) else {
        let _ = run.kill();
        panic!("run started no part within 30 s");
    };
    // Let the part get into its measuring.
    std::thread::sleep(Duration::from_millis(300));
    (run, part)
}

/// After `run` was stopped: no process mentions `needle` any longer, and nothing changes under `dir`.
pub fn assert_dead_and_quiet(dir: &Path, needle: &str, part: u32) {
    let gone = wait_for(Duration::from_secs(5), || processes_mentioning(needle).is_empty().then_some(()));
    let alive = processes_mentioning(needle);
    for (pid, _) in &alive {
        // SAFETY: plain integers; cleaning up what the test started.
        unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
    }
    assert!(gone.is_some(), "still alive after run was stopped: {alive:?}");
    assert!(!Path::new(&format!("/proc/{part}/cmdline")).exists() || processes_mentioning(needle).is_empty());
    let before = snapshot(dir);
    std::thread::sleep(Duration::from_secs(2));
    let after = snapshot(dir);
    assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>(), "files came or went");
    assert!(before == after, "a file under {} changed after run was stopped", dir.display());
}
