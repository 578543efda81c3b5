//! Impossible values in SYNTHETIC results (written here) are refused on read with one error naming the
//! file, the line and the column; values that would hand plotters an axis it cannot draw end in an
//! error instead of a hang. Every rendering runs under a watchdog, so a regression fails, not hangs.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use callpatch_analysis::report::dataset::Run;
use callpatch_analysis::report::plots::{self, patch_latency::PatchLatencyPlot};
use callpatch_analysis::report::rows::PatchRow;
use callpatch_analysis::report::{render_all, ReportError};
use callpatch_vocab::PatchSubject;

const MACHINE: &str = "machine_id,cpu_model,family,model,stepping,microcode,kernel,spectre_v2,tsc_hz,counters,rustc,\
                       callpatch_version,git_rev,date\n";
const CALLS: &str = "machine_id,flavor,scenario,param,unroll,repeats,cycles_min,cycles_median,cycles_p90,ns_median,\
                     instructions,branch_misses,timer,baseline,ratio_median,ratio_lo,ratio_hi,samples,discarded,noisy,\
                     note,core_hz_est,core_cycles_median\n";
const PATCH: &str = "machine_id,protocol,batch,syncs,latency_ns_min,latency_ns_median,traps,callers,method,sync_ns,\
                     fallback,late_traps\n";
const CENSUS: &str = "binary,sha256,kind,count,cross64_rel32,cross64_insn,cross32_insn,cross16_insn,cross8_insn,\
                      fallback_line,fallback_word\n";
const OFFSETS: &str = "binary,kind,offset_mod_64,count\n";

/// A results folder: a machine, two calls rows (the second a `direct` row left unmeasured, with empty
/// cost cells, as `calls` writes it) and a patch run; `edit` replaces one file's text.
fn folder(edit: (&str, &str)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut files = vec![
        ("machine.csv", format!("{MACHINE}m,CPU,6,85,7,0x1,6.1,x,2000000000,u,rustc,0.1,0,2025\n")),
        (
            "calls.csv",
            format!(
                "{CALLS}m,retpoline,mono,,32,45,30,31,33,15.5,u,u,tsc-ref-cycles,direct mono,8,7.9,8.1,15,0,false,,,\n\
                 m,direct,mono,,32,0,,,,,u,u,tsc-ref-cycles,direct mono,,,,0,0,true,not measured: emission failed,,\n"
            ),
        ),
        (
            "patch.csv",
            format!(
                "{PATCH}m,membarrier,1,1,18000,20000,0,0,alias,20000,0,0\nm,bp,1,3,60000,65000,0,0,alias,20000,0,0\n\
                 m,bp,10,3,61000,66000,0,0,alias,20000,0,0\n"
            ),
        ),
        ("census.csv", format!("{CENSUS}/bin/x,ab,call_rel32,100,5,6,10,20,40,5,37\n")),
        ("census_offsets.csv", format!("{OFFSETS}/bin/x,call_rel32,3,100\n")),
    ];
    for (name, text) in &mut files {
        if *name == edit.0 {
            *text = edit.1.to_string();
        }
    }
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

/// Runs `f` on another thread and fails the test if it has not returned within a minute.
fn within_a_minute<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60)).expect("rendering hung (no result within 60 s)")
}

fn render(dir: &Path) -> Result<(), ReportError> {
    let dirs = vec![dir.to_path_buf()];
    let out: PathBuf = dir.to_path_buf();
    within_a_minute(move || render_all(&dirs, &out).map(|_| ()))
}

/// Renders a folder with one file replaced and returns the error's text.
fn refused(file: &str, text: String) -> String {
    let dir = folder((file, &text));
    let err = render(dir.path()).expect_err("an impossible value was drawn").to_string();
    assert!(!dir.path().join("summary.md").exists(), "{err}");
    err
}

fn assert_names(err: &str, file_line: &str, column: &str, what: &str) {
    assert!(err.contains(file_line), "{err} (want {file_line})");
    assert!(err.contains(&format!(": column {column}: {what}")), "{err} (want column {column}: {what})");
}

#[test]
fn the_good_folder_renders_and_an_unmeasured_row_stays_accepted() {
    let dir = folder(("", ""));
    render(dir.path()).unwrap();
    assert!(dir.path().join("summary.md").is_file());
}

#[test]
fn impossible_costs_are_refused_with_file_line_and_column() {
    let row = |min: &str, median: &str| {
        format!("{CALLS}m,direct,mono,,32,45,2,2,2,1,u,u,t,,,,,,,,,,\nm,retpoline,mono,,32,45,{min},{median},33,15,u,u,t,,,,,,,,,,\n")
    };
    let cases = [
        (row("30", "-3"), "cycles_median", "-3 is not a positive finite number"),
        (row("30", "0"), "cycles_median", "0 is not a positive finite number"),
        (row("30", "NaN"), "cycles_median", "NaN is not a finite number"),
        (row("inf", "31"), "cycles_min", "inf is not a finite number"),
    ];
    for (text, column, what) in cases {
        let err = refused("calls.csv", text);
        assert_names(&err, "calls.csv:3:", column, what);
    }
    let err = refused("machine.csv", format!("{MACHINE}m,CPU,6,85,7,0x1,6.1,x,NaN,u,rustc,0.1,0,2025\n"));
    assert_names(&err, "machine.csv:2:", "tsc_hz", "NaN is not a finite number");
}

#[test]
fn impossible_counts_are_refused_with_file_line_and_column() {
    let err = refused(
        "patch.csv",
        format!("{PATCH}m,membarrier,1,1,18000,20000,0,0,alias,20000,0,0\nm,bp,0,3,1,2,0,0,alias,20000,0,0\n"),
    );
    assert_names(&err, "patch.csv:3:", "batch", "0 sites per batch");
    let err = refused("patch.csv", format!("{PATCH}m,membarrier,1,1,0,0,0,0,alias,NaN,0,0\n"));
    assert_names(&err, "patch.csv:2:", "latency_ns_min", "0 is not a positive finite number");
    let err = refused("census.csv", format!("{CENSUS}/bin/x,ab,call_rel32,100,101,6,10,20,40,5,37\n"));
    assert_names(&err, "census.csv:2:", "cross64_rel32", "101 is more than count (100)");
    let err = refused("census_offsets.csv", format!("{OFFSETS}/bin/x,call_rel32,3,100\n/bin/x,call_rel32,99,1\n"));
    assert_names(&err, "census_offsets.csv:3:", "offset_mod_64", "99 is not a byte of a 64-byte line");
}

#[test]
fn a_cost_too_large_to_draw_ends_in_an_error_not_a_hang() {
    let text = format!("{CALLS}m,direct,mono,,32,45,2,2,2,1,u,u,t,,,,,,,,,,\nm,retpoline,mono,,32,45,30,1e308,1e308,15,u,u,t,,,,,,,,,,\n");
    let dir = folder(("calls.csv", &text));
    let err = render(dir.path()).expect_err("1e308 cycles cannot be drawn").to_string();
    assert!(err.contains("calls") && err.contains("axis would run from"), "{err}");
}

#[test]
fn a_zero_sync_latency_reaching_the_plot_ends_in_an_error_not_a_hang() {
    // Reading refuses a zero latency; this is the plot's own guard, for rows built in memory.
    let row = |protocol: PatchSubject, batch: u64, ns: f64| PatchRow {
        machine_id: "m".into(),
        protocol,
        batch,
        syncs: 3,
        latency_ns_min: ns,
        latency_ns_median: ns,
        traps: 0,
        callers: 0,
        method: "alias".into(),
        sync_ns: f64::NAN,
        fallback: None,
        late_traps: None,
        latency_ns_lo: None,
        latency_ns_hi: None,
    };
    let bp = PatchSubject::Protocol(callpatch_vocab::Protocol::Bp);
    let run = Run {
        label: "m".into(),
        machine_id: "m".into(),
        patch: vec![row(PatchSubject::Membarrier, 1, 0.0), row(bp, 1, 60000.0), row(bp, 10, 61000.0)],
        ..Run::default()
    };
    let out = tempfile::tempdir().unwrap();
    let path = out.path().to_path_buf();
    let result = within_a_minute(move || {
        let runs = [run];
        plots::render(&PatchLatencyPlot::new(&runs).unwrap(), &path).map(|_| ())
    });
    let err = result.expect_err("a zero floor cannot be drawn on a log axis").to_string();
    assert!(err.contains("y log axis would run from") && err.contains("cannot be drawn"), "{err}");
}

#[test]
fn a_bp_hazard_row_with_torn_calls_is_a_failure_in_the_summary() {
    // A measured failure, not an impossible value: `hazard` writes the row and exits 1, and `run`
    // still renders it, so the summary must say FAIL instead of listing it like any other writer.
    let text = "machine_id,writer,patches,torn,torn_per_million,calls,seconds,crashed\n\
                m,naive-bytewise,1000,40,40000,5000,1,false\nm,bp,1000,3,3000,5000,1,false\n";
    let dir = folder(("", ""));
    std::fs::write(dir.path().join("hazard.csv"), text).unwrap();
    render(dir.path()).unwrap();
    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(summary.contains("**Verdict: FAIL** — bp tore 3 calls"), "{summary}");
    // And `plot` reports it: everything drawn, then a failure (not exit 0 without complaint).
    let failures = render_all(&[dir.path().to_path_buf()], dir.path()).unwrap().failures;
    assert_eq!(failures, ["m: hazard.csv: bp tore 3 calls"]);
}
