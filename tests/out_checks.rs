//! A bad `--out` fails before any measuring, and a stress run that measured nothing says so and writes
//! no CSV (issue 12, item 9).

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_callpatch");

#[test]
fn an_out_under_a_regular_file_fails_before_measuring() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    for args in [&["census", "/bin/true"][..], &["calls", "--quick"], &["run", "--quick"]] {
        let o = Command::new(BIN).args(args).arg("--out").arg(file.join("sub")).output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains("file/sub"), "{args:?}: {stderr}");
        // Nothing measured, nothing printed: the folder was checked first.
        assert!(o.stdout.is_empty(), "{args:?} measured before checking --out: {}", String::from_utf8_lossy(&o.stdout));
    }
}

#[test]
fn a_stress_run_with_every_protocol_skipped_fails_and_writes_no_csv() {
    let dir = tempfile::tempdir().unwrap();
    // The procmem writer has no single atomic store, so both aligned protocols are skipped.
    let o = Command::new(BIN)
        .args(["stress", "--protocol", "aligned,aligned-8", "--method", "procmem", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    if stderr.contains("membarrier") {
        eprintln!("skipped: no membarrier SYNC_CORE ({stderr})");
        return;
    }
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("nothing was measured"), "{stderr}");
    assert!(!dir.path().join("stress.csv").exists(), "an empty stress.csv was written");
}
