//! Two `callpatch` commands writing into one folder: every file is wholly one writer's or the second
//! refuses, and a busy folder is refused with one line naming the holder (issue 12, item 3).

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::{signal, start_run_with_a_part, wait_exit, BIN};

const FILES: [&str; 3] = ["census.csv", "census_offsets.csv", "sites.csv"];

fn census(binary: &str, out: &Path) -> std::process::Child {
    Command::new(BIN)
        .args(["census", binary, "--by-site"])
        .arg(out.join("sites.csv"))
        .arg("--out")
        .arg(out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn refused(o: &Output) -> bool {
    let stderr = String::from_utf8_lossy(&o.stderr);
    !o.status.success() && stderr.lines().count() == 1 && stderr.contains("is in use by another callpatch (pid ")
}

#[test]
fn two_census_writers_into_one_folder_never_mix_files() {
    let dir = tempfile::tempdir().unwrap();
    let binaries = ["/bin/true", "/bin/cat"];
    let mut alone = Vec::new();
    for (i, b) in binaries.iter().enumerate() {
        let out = dir.path().join(format!("alone{i}"));
        let o = census(b, &out).wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        alone.push(FILES.map(|f| std::fs::read(out.join(f)).unwrap()));
    }
    assert_ne!(alone[0][0], alone[1][0]);
    for round in 0..20 {
        let out = dir.path().join(format!("shared{round}"));
        let writers: Vec<_> = binaries.iter().map(|b| census(b, &out)).collect();
        let outputs: Vec<Output> = writers.into_iter().map(|w| w.wait_with_output().unwrap()).collect();
        for o in &outputs {
            assert!(o.status.success() || refused(o), "round {round}: {}", String::from_utf8_lossy(&o.stderr));
        }
        assert!(outputs.iter().any(|o| o.status.success()), "round {round}: both refused");
        for (k, f) in FILES.iter().enumerate() {
            let bytes = std::fs::read(out.join(f)).unwrap();
            assert!(bytes == alone[0][k] || bytes == alone[1][k], "round {round}: {f} mixes both writers");
        }
        let names = common::names(&out);
        assert!(names.iter().all(|n| !n.contains("tmp")), "round {round}: temporary files left: {names:?}");
    }
}

#[test]
fn a_busy_folder_is_refused_with_one_line_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m");
    let (mut run, _part) = start_run_with_a_part(dir.path(), &["--out", out.to_str().unwrap()]);
    let pid = run.id();
    let second_run =
        Command::new(BIN).args(["run", "--skip", "calls,patch,stress,hazard,census", "--out"]).arg(&out).output();
    let census = Command::new(BIN).args(["census", "/bin/true", "--out"]).arg(&out).output();
    signal(pid, libc::SIGTERM);
    wait_exit(&mut run, Duration::from_secs(10));
    for o in [second_run.unwrap(), census.unwrap()] {
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(&format!("is in use by another callpatch (pid {pid})")), "{stderr}");
    }
}
