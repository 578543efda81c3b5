//! `callpatch run` writes into a staging folder beside its target and renames it into place only when
//! complete: an interrupted run leaves the previous complete run as it was (issue 12, item 2).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{assert_dead_and_quiet, names, signal, snapshot, start_run_with_a_part, wait_exit, BIN};

#[test]
fn an_interrupted_run_leaves_the_previous_complete_run_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    // A previous complete run into the default folder, results/<machine_id>, with results/latest.
    let o = Command::new(BIN)
        .current_dir(dir.path())
        .args(["run", "--skip", "calls,patch,stress,hazard,census"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let results = dir.path().join("results");
    let latest = std::fs::read_link(results.join("latest")).unwrap();
    let out = results.join(&latest);
    // The folder's lock file (`.callpatch.lock`, the pid of its last writer) is no result.
    let results_in = |dir: &Path| {
        let mut files = snapshot(dir);
        files.remove(Path::new(".callpatch.lock"));
        files
    };
    let previous = results_in(&out);
    assert!(previous.contains_key(Path::new("summary.md")), "{:?}", previous.keys());
    let listing = names(&results);

    let (mut run, part) = start_run_with_a_part(dir.path(), &[]);
    signal(run.id(), libc::SIGTERM);
    let status = wait_exit(&mut run, Duration::from_secs(10));
    assert!(!status.success());
    assert_dead_and_quiet(dir.path(), out.to_str().unwrap(), part);

    let now = results_in(&out);
    assert_eq!(previous.keys().collect::<Vec<_>>(), now.keys().collect::<Vec<_>>(), "the folder's files changed");
    for (name, (_, bytes)) in &previous {
        assert!(&now[name].1 == bytes, "{} changed", name.display());
    }
    assert_eq!(std::fs::read_link(results.join("latest")).unwrap(), latest);
    // Anything else beside it is named as incomplete.
    for name in names(&results) {
        assert!(listing.contains(&name) || name.contains("partial"), "{name} passes for a finished run");
    }
}

#[test]
fn a_later_run_removes_an_earlier_runs_staging_leftover() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m");
    // What a run killed with SIGKILL leaves: its staging folder, named as incomplete.
    let leftover = dir.path().join(".m.partial-4000000");
    std::fs::create_dir_all(leftover.join("logs")).unwrap();
    std::fs::write(leftover.join("calls.csv"), "stale\n").unwrap();
    // A file of the folder's that run does not write (from `callpatch perf`) survives the swap.
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("perf.csv"), "kept\n").unwrap();
    let o = Command::new(BIN)
        .args(["run", "--skip", "calls,patch,stress,hazard,census", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!leftover.exists(), "the staging leftover is still there: {:?}", names(dir.path()));
    assert!(out.join("summary.md").is_file());
    assert!(out.join("machine.csv").is_file());
    assert_eq!(std::fs::read_to_string(out.join("perf.csv")).unwrap(), "kept\n");
}
