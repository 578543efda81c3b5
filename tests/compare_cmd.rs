//! `callpatch compare` from the outside: a folder against a copy with its `retpoline` rows scaled by
//! 1.5 (exactly those rows found, +50%), a folder against itself (no change anywhere), the fallback for
//! files without the ratio columns, a cross-machine comparison, and bad input (one error line, exit 1,
//! no compare.csv). The result folders are SYNTHETIC, written here with the row types; nothing is timed.

use std::path::Path;
use std::process::{Command, Output};

use callpatch_analysis::report::rows::{read_csv, write_csv, CallsRow, MachineRow, PatchRow};
use callpatch_vocab::rows::CompareRow;
use callpatch_vocab::{Flavor, PatchSubject, Protocol};

fn callpatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_callpatch")).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn machine(id: &str) -> MachineRow {
    MachineRow {
        machine_id: id.into(),
        cpu_model: "Synthetic CPU".into(),
        family: 6,
        model: 85,
        stepping: 7,
        microcode: "0x1".into(),
        kernel: "6.1.0".into(),
        spectre_v2: "Mitigation: Retpolines".into(),
        tsc_hz: 2e9,
        counters: "unavailable (ENOENT)".into(),
        rustc: "rustc".into(),
        callpatch_version: "0.1.0".into(),
        git_rev: "0".into(),
        date: "2026-01-01T00:00:00Z".into(),
        spec_rstack_overflow: None,
        retbleed: None,
        its: None,
        cmdline: None,
        kernel_cfi: None,
        platform: None,
    }
}

/// Calls rows of four flavors in the quick scenarios, with ratios and 95% intervals of a few percent
/// (varied from row to row, as a real run's are); one row is flagged noisy.
fn calls_rows(id: &str) -> Vec<CallsRow> {
    let scenarios: [(&str, &str); 6] =
        [("mono", ""), ("poly-rr", "4"), ("poly-random", "4"), ("sites", "1024"), ("offset", "0"), ("offset", "62")];
    let flavors = [(Flavor::Direct, 1.0), (Flavor::Indirect, 1.1), (Flavor::Retpoline, 5.0), (Flavor::Lfence, 3.0)];
    let mut rows = Vec::new();
    for (fi, (flavor, base_ratio)) in flavors.into_iter().enumerate() {
        for (si, (scenario, param)) in scenarios.into_iter().enumerate() {
            if scenario.starts_with("poly") && !flavor.is_indirect() {
                continue;
            }
            let ratio = base_ratio * (1.0 + 0.1 * si as f64);
            let half = 0.01 + 0.005 * ((fi + si) % 4) as f64; // ±1% .. ±2.5%
            let cycles = 3.5 * ratio;
            rows.push(CallsRow {
                unroll: 32,
                repeats: 21,
                cycles_min: cycles * 0.97,
                cycles_median: cycles,
                cycles_p90: cycles * 1.04,
                ns_median: cycles / 2.0,
                instructions: "unavailable (ENOENT)".into(),
                branch_misses: "unavailable (ENOENT)".into(),
                timer: "tsc-ref-cycles".into(),
                baseline: Some("direct".into()),
                ratio_median: Some(ratio),
                ratio_lo: Some(ratio * (1.0 - half)),
                ratio_hi: Some(ratio * (1.0 + half)),
                samples: Some(40),
                discarded: Some(0),
                noisy: Some(fi == 3 && si == 5),
                note: Some(String::new()),
                ..CallsRow::new(id, flavor, scenario, param)
            });
        }
    }
    rows
}

fn patch_rows(id: &str) -> Vec<PatchRow> {
    let mut rows = Vec::new();
    for subject in [PatchSubject::Protocol(Protocol::Bp), PatchSubject::Protocol(Protocol::CsPrefix)] {
        for batch in [1u64, 10, 100] {
            let median = 1000.0 + 50.0 * batch as f64;
            rows.push(PatchRow {
                machine_id: id.into(),
                protocol: subject,
                batch,
                syncs: 3,
                latency_ns_min: median * 0.9,
                latency_ns_median: median,
                traps: 0,
                callers: 0,
                method: "alias".into(),
                sync_ns: 600.0,
                fallback: Some(0),
                late_traps: Some(0),
                latency_ns_lo: Some(median * 0.97),
                latency_ns_hi: Some(median * 1.03),
            });
        }
    }
    rows
}

fn write_folder(dir: &Path, id: &str, calls: &[CallsRow], patch: &[PatchRow]) {
    std::fs::create_dir_all(dir).unwrap();
    write_csv(&dir.join("machine.csv"), &[machine(id)]).unwrap();
    write_csv(&dir.join("calls.csv"), calls).unwrap();
    write_csv(&dir.join("patch.csv"), patch).unwrap();
}

/// Every `retpoline` row scaled by `f`: its ratio with its interval, and its cycles.
fn scale_retpoline(rows: &[CallsRow], f: f64) -> Vec<CallsRow> {
    rows.iter()
        .cloned()
        .map(|mut r| {
            if r.flavor == Flavor::Retpoline {
                r.ratio_median = r.ratio_median.map(|v| v * f);
                r.ratio_lo = r.ratio_lo.map(|v| v * f);
                r.ratio_hi = r.ratio_hi.map(|v| v * f);
                r.cycles_min *= f;
                r.cycles_median *= f;
                r.cycles_p90 *= f;
                r.ns_median *= f;
            }
            r
        })
        .collect()
}

/// Runs `compare BASE NEW --out OUT` and reads compare.csv back.
fn compare_ok(base: &Path, new: &Path, out: &Path) -> (String, Vec<CompareRow>) {
    let o = callpatch(&["compare", s(base), s(new), "--out", s(out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    (stdout(&o), read_csv(&out.join("compare.csv")).unwrap())
}

#[test]
fn a_copy_with_retpoline_scaled_by_1_5_finds_exactly_those_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, out) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("out"));
    let calls = calls_rows("m1");
    write_folder(&a, "m1", &calls, &patch_rows("m1"));
    write_folder(&b, "m1", &scale_retpoline(&calls, 1.5), &patch_rows("m1"));
    let (md, rows) = compare_ok(&a, &b, &out);

    assert_eq!(rows.len(), calls.len() + 6, "every key compared");
    let retpoline = calls.iter().filter(|r| r.flavor == Flavor::Retpoline).count();
    for r in &rows {
        assert_eq!(r.quantity, if r.kind == "calls" { "ratio" } else { "latency_ns" }, "{r:?}");
        if r.subject == "retpoline" {
            assert_eq!(r.verdict, "slower", "{r:?}");
            assert!((r.change_pct - 50.0).abs() < 0.5, "{r:?}");
            assert!(r.change_lo_pct > 5.0 && r.change_lo_pct < 50.0 && r.change_hi_pct > 50.0, "{r:?}");
        } else {
            assert_eq!(r.verdict, "no change", "{r:?}");
            assert!(r.change_pct.abs() < 1e-9, "{r:?}");
        }
    }
    assert_eq!(rows.iter().filter(|r| r.verdict == "slower").count(), retpoline);
    let noisy: Vec<&CompareRow> = rows.iter().filter(|r| r.noisy).collect();
    assert_eq!(noisy.len(), 1);
    assert_eq!(noisy[0].note, "noisy in both");

    let total = rows.len();
    assert!(md.contains(&format!("0 faster, {retpoline} slower, {} no change of {total} compared.", total - retpoline)));
    assert!(
        md.contains(
            "| retpoline | mono | 5.000× [4.900, 5.100] | 7.500× [7.350, 7.650] | +50.0% [+45.8, +54.3] | **slower** |"
        ),
        "{md}"
    );
    assert!(md.contains("| direct | mono | 1.000× [0.990, 1.010] | 1.000× [0.990, 1.010] | +0.0% [-1.4, +1.4] | no change (indistinguishable here, ±1.4%) |"), "{md}");
    assert!(md.contains("Same machine: m1."), "{md}");
}

#[test]
fn a_folder_against_itself_is_no_change_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, out) = (tmp.path().join("a"), tmp.path().join("out"));
    write_folder(&a, "m1", &calls_rows("m1"), &patch_rows("m1"));
    let (md, rows) = compare_ok(&a, &a, &out);
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r.verdict == "no change" && r.p_value == 1.0), "{rows:?}");
    assert!(md.contains(&format!("0 faster, 0 slower, {0} no change of {0} compared.", rows.len())), "{md}");
}

#[test]
fn files_without_ratios_fall_back_to_cycles_and_say_so() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, out) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("out"));
    let old_schema = |rows: Vec<CallsRow>| -> Vec<CallsRow> {
        rows.into_iter()
            .map(|r| CallsRow { ratio_median: None, ratio_lo: None, ratio_hi: None, noisy: None, ..r })
            .collect()
    };
    let calls = old_schema(calls_rows("m1"));
    let patch: Vec<PatchRow> =
        patch_rows("m1").into_iter().map(|r| PatchRow { latency_ns_lo: None, latency_ns_hi: None, ..r }).collect();
    write_folder(&a, "m1", &calls, &patch);
    write_folder(&b, "m1", &scale_retpoline(&calls, 1.5), &patch);
    let (md, rows) = compare_ok(&a, &b, &out);
    for r in &rows {
        assert_eq!(r.quantity, if r.kind == "calls" { "cycles" } else { "latency_ns_spread" }, "{r:?}");
        assert_eq!(r.verdict, if r.subject == "retpoline" { "slower" } else { "no change" }, "{r:?}");
        assert!(r.note.contains("fallback spread"), "{r:?}");
    }
    assert!(md.contains("compared by cycles_median"), "{md}");
    assert!(md.contains("| retpoline | mono | 17.50 cyc [16.97, 18.20] | 26.25 cyc [25.46, 27.30] | +50.0% [+42.8, +57.6] | **slower** |"), "{md}");
}

#[test]
fn another_machine_is_named_and_unmatched_rows_are_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, out) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("out"));
    let calls = calls_rows("m1");
    write_folder(&a, "m1", &calls, &patch_rows("m1"));
    let mut other: Vec<CallsRow> =
        calls_rows("m2").into_iter().filter(|r| !(r.flavor == Flavor::Lfence && r.scenario == "sites")).collect();
    let mut extra = other[0].clone();
    extra.flavor = Flavor::Trampoline;
    other.push(extra);
    write_folder(&b, "m2", &other, &[]);
    let (md, rows) = compare_ok(&a, &b, &out);
    assert!(md.contains("**Different machines**: m1 vs m2."), "{md}");
    assert!(
        md.contains("Only in BASE (not compared, 7): calls lfence sites-1024; patch bp batch 1, 0 callers, alias;"),
        "{md}"
    );
    assert!(md.contains("Only in NEW (not compared, 1): calls trampoline mono."), "{md}");
    assert!(rows.iter().all(|r| r.base_machine_id == "m1" && r.new_machine_id == "m2" && r.verdict == "no change"));
}

/// Runs compare on bad input: exit 1, one line `callpatch: error: ...` containing `want`, no compare.csv.
fn refused(base: &Path, new: &Path, want: &str) {
    let out = base.parent().unwrap().join("out");
    let o = callpatch(&["compare", s(base), s(new), "--out", s(&out)]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("callpatch: error: ") && err.contains(want), "{err}");
    assert!(stdout(&o).is_empty());
    assert!(!out.join("compare.csv").exists());
}

#[test]
fn bad_input_is_one_error_line_exit_1_and_no_file() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good");
    write_folder(&good, "m1", &calls_rows("m1"), &patch_rows("m1"));

    let missing = tmp.path().join("missing");
    refused(&missing, &good, &format!("{}: not a results folder", missing.display()));
    refused(&good, &missing, "missing: not a results folder");

    let no_calls = tmp.path().join("no-calls");
    std::fs::create_dir_all(&no_calls).unwrap();
    write_csv(&no_calls.join("machine.csv"), &[machine("m1")]).unwrap();
    refused(&good, &no_calls, "no-calls: no calls.csv");

    let nan = tmp.path().join("nan");
    let mut calls = calls_rows("m1");
    calls[2].ratio_median = Some(f64::NAN);
    write_folder(&nan, "m1", &calls, &patch_rows("m1"));
    assert!(std::fs::read_to_string(nan.join("calls.csv")).unwrap().contains(",NaN,"));
    // Refused on read, before comparing: the file, the line and the column.
    refused(&nan, &good, "nan/calls.csv:4: column ratio_median: NaN is not a finite number");

    let malformed = tmp.path().join("malformed");
    write_folder(&malformed, "m1", &calls_rows("m1"), &patch_rows("m1"));
    let mut text = std::fs::read_to_string(malformed.join("patch.csv")).unwrap();
    text.push_str("m1,bp,1000,3,1,two,0,0,alias,600,0,0,,\n");
    std::fs::write(malformed.join("patch.csv"), text).unwrap();
    refused(&good, &malformed, "(column `latency_ns_median`)");

    let inverted = tmp.path().join("inverted");
    let mut calls = calls_rows("m1");
    calls[0].ratio_lo = Some(1.2);
    write_folder(&inverted, "m1", &calls, &patch_rows("m1"));
    refused(&inverted, &good, "does not contain ratio_median");

    let twice = tmp.path().join("twice");
    let mut calls = calls_rows("m1");
    calls.push(calls[0].clone());
    write_folder(&twice, "m1", &calls, &patch_rows("m1"));
    refused(&good, &twice, "two rows for direct mono");

    let o = callpatch(&["compare", s(&good), s(&good), "--threshold", "-1"]);
    assert_eq!(o.status.code(), Some(2), "a usage error");
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
}
