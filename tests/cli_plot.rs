//! `callpatch plot` from the outside: exit codes, the one-line error, and files written. The CSVs are
//! tiny SYNTHETIC ones written here; the rendering itself is tested in callpatch-analysis.

use std::path::Path;
use std::process::{Command, Output};

fn callpatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_callpatch")).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A results folder with one synthetic machine: identity and two flavors, mono only.
fn synthetic_results(dir: &Path) {
    std::fs::write(
        dir.join("machine.csv"),
        "machine_id,cpu_model,family,model,stepping,microcode,kernel,spectre_v2,tsc_hz,counters,rustc,callpatch_version,git_rev,date\n\
         cli-test,Synthetic CPU,6,85,7,0x1,6.1.0,Mitigation: Retpolines,2000000000,unavailable (ENOENT),rustc,0.1.0,0,2025-01-01\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("calls.csv"),
        "machine_id,flavor,scenario,param,unroll,repeats,cycles_min,cycles_median,cycles_p90,ns_median,instructions,branch_misses,timer\n\
         cli-test,direct,mono,,64,11,1.9,2.0,2.1,1.0,u,u,tsc-ref-cycles\n\
         cli-test,retpoline,mono,,64,11,34,36,37,18,u,u,tsc-ref-cycles\n",
    )
    .unwrap();
}

#[test]
fn plot_rebuilds_into_the_folder_and_notes_what_it_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    synthetic_results(tmp.path());
    let out = callpatch(&["plot", tmp.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("(1 machine: cli-test)"), "{stdout}");
    assert!(stdout.contains("note: patch_latency.svg/.png skipped: patch.csv not found."), "{stdout}");
    for f in ["calls.svg", "calls.png", "summary.md"] {
        let path = tmp.path().join(f);
        assert!(std::fs::metadata(&path).unwrap().len() > 0, "{f}");
        assert!(stdout.contains(&format!("wrote {}", path.display())), "{stdout}");
    }
    let summary = std::fs::read_to_string(tmp.path().join("summary.md")).unwrap();
    // TSC ticks beside estimated core cycles (none in this older-schema fixture), a ratio without interval.
    assert!(summary.contains("| retpoline | 36.0 (34.0) | – | 18.0× (no interval) | 18.0 | – | – | – |"), "{summary}");
}

#[test]
fn a_missing_folder_is_one_error_line_and_exit_1() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let out = callpatch(&["plot", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with(&format!("callpatch: error: {}: not a results folder", missing.display())), "{err}");
}

#[test]
fn a_malformed_csv_names_file_line_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    synthetic_results(tmp.path());
    let calls = tmp.path().join("calls.csv");
    let mut text = std::fs::read_to_string(&calls).unwrap();
    text.push_str("cli-test,inline,mono,,64,11,1.9,two,2.1,1.0,u,u,tsc-ref-cycles\n");
    std::fs::write(&calls, text).unwrap();
    let out = callpatch(&["plot", tmp.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("calls.csv") && err.contains("line: 4") && err.contains("(column `cycles_median`)"), "{err}");
    assert!(!tmp.path().join("summary.md").exists());
}

#[test]
fn several_folders_need_an_out_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for d in [&a, &b] {
        std::fs::create_dir(d).unwrap();
        synthetic_results(d);
    }
    let out = callpatch(&["plot", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--out DIR"), "{}", stderr(&out));
    let fleet = tmp.path().join("fleet");
    let out = callpatch(&["plot", a.to_str().unwrap(), b.to_str().unwrap(), "--out", fleet.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Same machine_id in two folders: two runs, named by folder.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("2 machines: cli-test (a), cli-test (b)"), "{stdout}");
    assert!(fleet.join("calls.png").is_file() && fleet.join("summary.md").is_file());
}

/// `fleet/`: the result sets kept in the repository, one folder per machine, CSV only, each labelled
/// guest or bare metal in `fleet/README.md`; `callpatch plot` draws them side by side.
#[test]
fn the_fleet_in_the_repository_plots_side_by_side() {
    let fleet = Path::new(env!("CARGO_MANIFEST_DIR")).join("fleet");
    let readme = std::fs::read_to_string(fleet.join("README.md")).unwrap();
    let mut machines = Vec::new();
    for entry in std::fs::read_dir(&fleet).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_dir() {
            continue;
        }
        let id = path.file_name().unwrap().to_str().unwrap().to_string();
        for file in std::fs::read_dir(&path).unwrap() {
            let name = file.unwrap().file_name().into_string().unwrap();
            assert!(name.ends_with(".csv"), "fleet/{id}/{name}: the fleet keeps CSV only");
        }
        let machine = std::fs::read_to_string(path.join("machine.csv")).unwrap();
        assert!(machine.lines().nth(1).unwrap().starts_with(&format!("{id},")), "fleet/{id}/machine.csv");
        let row = readme.lines().find(|l| l.starts_with(&format!("| `{id}/` |"))).expect("a README row");
        assert!(row.contains("guest") || row.contains("bare metal"), "{row}");
        machines.push(id);
    }
    assert!(machines.len() >= 2, "{machines:?}");
    let tmp = tempfile::tempdir().unwrap();
    let out = callpatch(&["plot", fleet.to_str().unwrap(), "--out", tmp.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("({} machines: ", machines.len())), "{stdout}");
    let summary = std::fs::read_to_string(tmp.path().join("summary.md")).unwrap();
    for id in &machines {
        assert!(summary.contains(&format!("## Machine `{id}`")), "{id}");
    }
    assert!(std::fs::metadata(tmp.path().join("calls.png")).unwrap().len() > 0);
}
