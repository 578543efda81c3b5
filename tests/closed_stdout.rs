//! A closed stdout (`callpatch census | head -1`) ends printing quietly: no panic, exit 0, and the CSVs
//! are written whole (issue 12, item 6).

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_callpatch");

/// A pipe whose read end is already closed: every write to it fails with EPIPE.
fn closed_pipe() -> Stdio {
    let mut fds = [0; 2];
    // SAFETY: pipe fills the two-element array it is given.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors were just created and are owned here alone.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    Stdio::from(write)
}

fn run_both(args: &[&str], out: &Path, reference: &Path, files: &[&str]) {
    let o = Command::new(BIN).args(args).arg("--out").arg(reference).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new(BIN).args(args).arg("--out").arg(out).stdout(closed_pipe()).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    for f in files {
        let got = std::fs::read_to_string(out.join(f)).unwrap_or_else(|e| panic!("{f}: {e}; {stderr}"));
        let want = std::fs::read_to_string(reference.join(f)).unwrap();
        assert_eq!(got.lines().count(), want.lines().count(), "{f} is not complete");
        assert!(got.ends_with('\n'));
    }
}

#[test]
fn census_into_a_closed_pipe_writes_its_csvs_and_exits_quietly() {
    let dir = tempfile::tempdir().unwrap();
    run_both(
        &["census", "/bin/true"],
        &dir.path().join("a"),
        &dir.path().join("b"),
        &["census.csv", "census_offsets.csv"],
    );
}

#[test]
fn patch_into_a_closed_pipe_writes_its_csv_and_exits_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["patch", "--quick", "--protocol", "aligned", "--batch", "1", "--callers", "0"];
    // Without membarrier SYNC_CORE the patch command refuses before measuring: nothing to check here.
    let probe = Command::new(BIN).args(args).arg("--out").arg(dir.path().join("probe")).output().unwrap();
    if !probe.status.success() && String::from_utf8_lossy(&probe.stderr).contains("membarrier") {
        eprintln!("skipped: no membarrier SYNC_CORE");
        return;
    }
    run_both(&args, &dir.path().join("a"), &dir.path().join("b"), &["patch.csv"]);
}
