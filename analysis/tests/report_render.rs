//! `render_all` end to end on SYNTHETIC results written by the test itself. The numbers are made up to
//! exercise the plumbing (reading, grouping, drawing, the model, the summary), not measurements; the
//! expected break-even points are computed by hand from them.

use std::path::Path;

use callpatch_analysis::report::rows::{write_csv, CallsRow, CensusOffsetRow, CensusRow, MachineRow};
use callpatch_analysis::report::{render_all, ReportError};

/// Synthetic machine identity.
fn machine(id: &str) -> MachineRow {
    MachineRow {
        machine_id: id.into(),
        cpu_model: format!("Synthetic CPU {id}"),
        family: 6,
        model: 85,
        stepping: 7,
        microcode: "0x5003604".into(),
        kernel: "6.1.0-synthetic".into(),
        spectre_v2: "Mitigation: Retpolines".into(),
        tsc_hz: 2.0e9,
        counters: "unavailable (ENOENT)".into(),
        rustc: "rustc 1.85.0".into(),
        callpatch_version: "0.1.0".into(),
        git_rev: "0000000".into(),
        date: "2025-01-01T00:00:00Z".into(),
        spec_rstack_overflow: None,
        retbleed: None,
        its: None,
        cmdline: None,
        kernel_cfi: None,
        platform: None,
    }
}

/// A calls row with ns = median / 2 (the synthetic TSC runs at 2 GHz).
fn call(id: &str, flavor: &str, scenario: &str, param: &str, min: f64, median: f64) -> CallsRow {
    CallsRow {
        unroll: 64,
        repeats: 11,
        cycles_min: min,
        cycles_median: median,
        cycles_p90: median * 1.05,
        ns_median: median / 2.0,
        instructions: "unavailable (ENOENT)".into(),
        branch_misses: "unavailable (ENOENT)".into(),
        timer: "tsc-ref-cycles".into(),
        ..CallsRow::new(id, flavor.parse().unwrap(), scenario, param)
    }
}

/// Synthetic calls: (flavor, mono median, random poly 2/4/16 medians). As in the real flavor table, only
/// flavors that take their target from a register or memory have poly rows; a direct-style site (direct,
/// trampoline, inline, cs-inline, trap) has one target. `scale` varies machines.
fn calls(id: &str, scale: f64) -> Vec<CallsRow> {
    let table: [(&str, f64, Option<[f64; 3]>); 9] = [
        ("direct", 2.0, None),
        ("indirect", 3.0, Some([11.0, 20.0, 26.0])),
        ("indirect-mem", 3.5, Some([12.0, 21.0, 27.0])),
        ("retpoline", 36.0, Some([38.0, 40.0, 41.0])),
        ("lfence", 22.0, Some([24.0, 25.0, 26.0])),
        ("trampoline", 3.0, None),
        ("inline", 2.0, None),
        ("cs-inline", 2.1, None),
        ("trap", 3000.0, None),
    ];
    let mut rows = Vec::new();
    for (flavor, mono, poly) in table {
        let m = mono * scale;
        rows.push(call(id, flavor, "mono", "", m * 0.95, m));
        rows.push(call(id, flavor, "sites", "16384", m * 1.4, m * 1.6));
        if let Some(p) = poly {
            rows.push(call(id, flavor, "poly-rr", "4", m, m * 1.1));
            for (k, v) in [2, 4, 16].into_iter().zip(p) {
                rows.push(call(id, flavor, "poly-random", &k.to_string(), v * scale * 0.9, v * scale));
            }
        }
    }
    rows
}

/// The patch.csv header, including the columns appended to its first schema (`callers` onwards).
const PATCH_HEADER: &str =
    "machine_id,protocol,batch,syncs,latency_ns_min,latency_ns_median,traps,callers,method,sync_ns,fallback,late_traps";

/// Synthetic patch.csv, as text in the patcher's shape: one membarrier = 20 µs quiet (30 µs with a
/// caller); quiet bp batch 1 = 64 µs, batch 10 = 66 µs; a caller makes every batch 1.5× slower.
fn patches(id: &str) -> String {
    let mut text = format!("{PATCH_HEADER}\n{id},membarrier,1,1,18000,20000,0,0,alias,20000,0,0\n");
    text += &format!("{id},membarrier,1,1,27000,30000,0,1,alias,30000,0,0\n");
    for (batch, bp, cs, al) in [
        (1u64, 64_000.0, 65_000.0, 22_000.0),
        (10, 66_000.0, 67_000.0, 23_000.0),
        (100, 80_000.0, 82_000.0, 30_000.0),
        (1000, 200_000.0, 210_000.0, 90_000.0),
    ] {
        for (callers, slow, sync, traps) in [(0, 1.0, 20_000, 0), (1, 1.5, 30_000, 7)] {
            for (protocol, syncs, ns, fallback) in
                [("bp", 3, bp, 0), ("cs-prefix", 3, cs, 0), ("aligned", 1, al, batch * 3 / 64)]
            {
                let ns = ns * slow;
                let traps = if protocol == "aligned" { 0 } else { traps };
                text += &format!(
                    "{id},{protocol},{batch},{syncs},{},{ns},{traps},{callers},alias,{sync},{fallback},{}\n",
                    ns * 0.9,
                    traps / 7
                );
            }
        }
    }
    text
}

/// Synthetic stress.csv, as text in the patcher's shape.
fn stress(id: &str) -> String {
    let mut text =
        "machine_id,protocol,callers,seconds,patches,calls,misdirected,traps,crashed,late_traps,lost,patches_per_s\n"
            .to_string();
    for p in ["bp", "cs-prefix", "aligned"] {
        text += &format!("{id},{p},2,3.0,150000,900000000,0,1234,false,98,0,50000\n");
    }
    text
}

/// Offsets biased towards 16-byte boundaries, as compilers align functions.
fn offset_counts(seed: u64) -> [u64; 64] {
    let mut c = [0u64; 64];
    for (o, slot) in c.iter_mut().enumerate() {
        *slot = 90 + (o as u64 * 7 + seed) % 23 + if o % 16 == 0 { 60 } else { 0 };
    }
    c
}

/// Census of three synthetic binaries, each row's crossing counts derived from its offsets.
fn census() -> (Vec<CensusRow>, Vec<CensusOffsetRow>) {
    let mut rows = Vec::new();
    let mut offsets = Vec::new();
    let binaries = [("/usr/lib/x86_64-linux-gnu/libc.so.6", "ab"), ("/boot/vmlinux-synthetic", "cd")];
    for (i, (bin, sha)) in binaries.into_iter().enumerate() {
        let sha256 = sha.repeat(32);
        let mut kinds = vec![("call_rel32", offset_counts(i as u64)), ("call_indirect", offset_counts(5 + i as u64))];
        if bin.contains("vmlinux") {
            kinds.push(("static_call_site", offset_counts(9)));
        }
        for (kind, counts) in kinds {
            let count: u64 = counts.iter().sum();
            let rel: u64 = counts[60..63].iter().sum();
            let insn: u64 = if kind == "call_indirect" { counts[63] } else { counts[60..64].iter().sum() };
            rows.push(CensusRow {
                binary: bin.into(),
                sha256: sha256.clone(),
                kind: kind.parse().unwrap(),
                count,
                cross64_rel32: if kind == "call_indirect" { 0 } else { rel },
                cross64_insn: insn,
                cross32_insn: insn * 2,
                cross16_insn: insn * 4,
                cross8_insn: insn * 8,
                fallback_line: if kind == "call_indirect" { 0 } else { rel },
                fallback_word: if kind == "call_indirect" { 0 } else { count * 3 / 8 },
                build_id: String::new(),
                its_lower: None,
                its_upper: None,
            });
            for (o, n) in counts.iter().enumerate() {
                offsets.push(CensusOffsetRow {
                    binary: bin.into(),
                    kind: kind.parse().unwrap(),
                    offset_mod_64: o as u8,
                    count: *n,
                });
            }
        }
    }
    (rows, offsets)
}

/// Writes a complete synthetic results folder for machine `id`.
fn write_full(dir: &Path, id: &str, scale: f64) {
    std::fs::create_dir_all(dir).unwrap();
    write_csv(&dir.join("machine.csv"), &[machine(id)]).unwrap();
    write_csv(&dir.join("calls.csv"), &calls(id, scale)).unwrap();
    std::fs::write(dir.join("patch.csv"), patches(id)).unwrap();
    std::fs::write(dir.join("stress.csv"), stress(id)).unwrap();
    std::fs::write(
        dir.join("hazard.csv"),
        format!(
            "machine_id,writer,patches,torn,torn_per_million,calls,seconds,crashed\n\
             {id},naive-bytewise,1000000,35000,35000,2000000000,5.0,false\n\
             {id},naive-split4,1000000,150,150,2000000000,5.0,false\n{id},bp,1000000,0,0,2000000000,5.0,false\n"
        ),
    )
    .unwrap();
    let (c, o) = census();
    write_csv(&dir.join("census.csv"), &c).unwrap();
    write_csv(&dir.join("census_offsets.csv"), &o).unwrap();
}

const PLOTS: [&str; 6] = ["calls", "poly", "patch_latency", "tradeoff", "offsets", "census"];

/// The `width` and `height` attributes of an SVG's root element.
fn svg_size(svg: &str) -> (u32, u32) {
    let attr = |name: &str| -> u32 {
        let at = svg.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        svg[at..].split('"').next().unwrap().parse().unwrap()
    };
    (attr("width"), attr("height"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn full_results_give_every_plot_in_svg_and_png_and_a_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("synthetic-a");
    write_full(&dir, "synthetic-a", 1.0);
    let done = render_all(std::slice::from_ref(&dir), &dir).unwrap();
    assert!(done.notes.is_empty(), "{:?}", done.notes);
    assert_eq!(done.machines, vec!["synthetic-a".to_string()]);
    for stem in PLOTS {
        let svg_path = dir.join(format!("{stem}.svg"));
        let png_path = dir.join(format!("{stem}.png"));
        assert!(done.files.contains(&svg_path) && done.files.contains(&png_path), "{stem}");
        let svg = read(&svg_path);
        assert!(svg.len() > 1000, "{stem}.svg is {} bytes", svg.len());
        let png = image::open(&png_path).unwrap_or_else(|e| panic!("{stem}.png: {e}"));
        // Same drawing, same size in both formats.
        assert_eq!((png.width(), png.height()), svg_size(&svg), "{stem}");
        assert_eq!(png.width(), 1280, "{stem}");
        // Not a blank canvas: a plot has many distinct colours (text antialiasing, series).
        let rgb = png.to_rgb8();
        let non_white = rgb.pixels().filter(|p| p.0 != [255, 255, 255]).count();
        assert!(non_white > 5000, "{stem}.png has {non_white} non-white pixels");
    }
    for (stem, labels) in [
        ("calls", &["call flavor", "cycles per call (TSC reference cycles", "random poly-4", "retpoline"][..]),
        (
            "poly",
            &["targets visited in random order", "indirect", "inline: one target per site (mono), drawn flat"][..],
        ),
        (
            "patch_latency",
            &[
                "sites patched in one batch",
                "3-sync floor: 3 × membarrier = 60.0 µs (bp, cs-prefix; no callers)",
                "cs-prefix",
            ][..],
        ),
        ("tradeoff", &["calls per update, C / P", "inline/bp = trampoline at 4000 calls/update", "aligned-only"][..]),
        ("offsets", &["site start address mod 64 (bytes)", "rel32 crosses (start 60–62)", "vmlinux-synthetic"][..]),
        ("census", &["uniform theory 3/64 = 4.69%", "uniform theory 4/64 = 6.25%", "libc.so.6 · call rel32"][..]),
    ] {
        let svg = read(&dir.join(format!("{stem}.svg")));
        for label in labels {
            assert!(svg.contains(label), "{stem}.svg lacks {label:?}");
        }
    }

    let summary = read(&dir.join("summary.md"));
    assert_eq!(done.files.last().unwrap(), &dir.join("summary.md"));
    for expected in [
        "## Machine `synthetic-a`",
        "| CPU | Synthetic CPU synthetic-a (family 6, model 85, stepping 7, microcode 0x5003604) |",
        "| flavor | mono, TSC ticks | est. core cycles | ratio | ns (mono) | random poly-4, TSC ticks | est. core cycles | ratio |",
        // retpoline: mono median 36 (min 34.2), 18× direct's 2; random poly-4 40 (min 36), to direct mono.
        // Older schema: no core clock estimate, and ratios of medians say they have no interval.
        "| retpoline | 36.0 (34.2) | – | 18.0× (no interval) | 18.0 | 40.0 (36.0) | – | 20.0× (no interval) |",
        "| direct | 2.00 (1.90) | – | 1.00× (no interval) | 1.00 | – | – | – |",
        "| trap | 3000 (2850) | – | 1500× (no interval) | 1500 | – | – | – |",
        "the comparison of the two has not run",
        "**This kernel's own indirect calls are retpolines** (spectre_v2: `Mitigation: Retpolines`)",
        "One membarrier(SYNC_CORE) costs 20.0 µs here",
        "| protocol | batch | callers | syncs | median | min | per site | traps | late traps | fell back | ÷ 3-sync floor |",
        "| bp | 1000 | 0 | 3 | 200 µs | 180 µs | 200 ns | 0 | 0 | 0 | 3.33 |",
        // With 1 caller the floor is 3 × that run's 30 µs sync: 300 / 90 = 3.33.
        "| bp | 1000 | 1 | 3 | 300 µs | 270 µs | 300 ns | 7 | 1 | 0 | 3.33 |",
        "One membarrier(SYNC_CORE) costs 30.0 µs here (same run) with 1 caller thread running (each sync interrupts their CPUs)",
        "| aligned | 1000 | 0 | 1 | 90.0 µs | 81.0 µs | 90.0 ns | 0 | 0 | 46 | – |",
        "- `bp`: one batch of 1000 sites takes 200 µs; 1000 single patches would take 64.0 ms — 320× faster batched.",
        "**Verdict: pass** — 2700000000 calls made while 450000 patches were applied live",
        "| bp | 2 | 3.00 | 150000 | 900000000 | 0 | 0 | 1234 | 98 | no | pass |",
        "| naive-split4 | 1000000 | 150 | 150 |",
        "| bp | 1000000 | 0 | 0 |",
        // Break-evens, by hand: inline 1.0 ns/call + 66 µs/update (bp batch 10); trampoline 1.5 ns + 64 µs
        // (bp batch 1): (66000 − 64000) / (1.5 − 1.0) = 4000. Against indirect (1.5 ns, free updates):
        // 66000 / 0.5 = 132000. Against retpoline (18 ns): 66000 / 17 = 3882.35.
        // The older schema has no intervals: the same numbers, saying so.
        "- **inline/bp beats the trampoline once a key with 10 sites is called more than 4000 times per update on this machine — by the medians: no interval (older run).**",
        "- inline/bp beats an indirect call once a key with 10 sites is called more than 132000 times per update on this machine — by the medians: no interval (older run).",
        "- inline/bp beats a retpoline once a key with 10 sites is called more than 3882 times per update on this machine — by the medians: no interval (older run).",
        "| inline/bp | > 4000 (no interval) | > 132000 (no interval) | > 3882 (no interval) |",
        // The same with the 1-caller rows (1.5× slower): inline 99 µs per update, the trampoline 96 µs:
        // (99000 − 96000) / 0.5 = 6000; and batching: 1000 × 96 µs / 300 µs = 320×.
        "#### The same with 1 caller thread running the sites during updates",
        "- **inline/bp beats the trampoline once a key with 10 sites is called more than 6000 times per update on this machine — by the medians: no interval (older run).**",
        "- `bp` (with 1 caller): one batch of 1000 sites takes 300 µs; 1000 single patches would take 96.0 ms — 320× faster batched.",
        "| retpoline | 18.0 ns | – (counted as 0) |",
        "A uniform start offset predicts 4.69% (3/64) of rel32 fields and 6.25% (4/64) of 5-byte calls",
        "![Cycles per call by flavor and scenario](calls.png)",
        "![The trade-off: cost per call with updates paid for](tradeoff.png)",
    ] {
        assert!(summary.contains(expected), "summary.md lacks {expected:?}\n---\n{summary}");
    }
    // aligned-only: its fallback fraction is the census's static call sites.
    let (rows, _) = census();
    let sc = rows.iter().find(|r| r.kind == "static_call_site").unwrap();
    let f = sc.fallback_line as f64 / sc.count as f64;
    let expected_call = f * 1.5 + (1.0 - f) * 1.0;
    assert!(summary.contains(&format!("{:.2}% of sites on `trampoline`", f * 100.0)), "{summary}");
    assert!(summary.contains(&format!("| aligned-only | {:.2} ns | 23.0 µs |", expected_call)), "{summary}");
}

#[test]
fn two_machines_plot_side_by_side() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("results/synthetic-a");
    let b = tmp.path().join("results/synthetic-b");
    write_full(&a, "synthetic-a", 1.0);
    write_full(&b, "synthetic-b", 1.5);
    // `results/latest` points at one of them: read once, not twice.
    std::os::unix::fs::symlink(&b, tmp.path().join("results/latest")).unwrap();
    let out = tmp.path().join("fleet");
    let done = render_all(&[tmp.path().join("results")], &out).unwrap();
    assert_eq!(done.machines, vec!["synthetic-a".to_string(), "synthetic-b".to_string()]);
    for stem in ["calls", "poly", "patch_latency", "tradeoff"] {
        let svg = read(&out.join(format!("{stem}.svg")));
        assert!(svg.contains("synthetic-a — Synthetic CPU synthetic-a"), "{stem}");
        assert!(svg.contains("synthetic-b — Synthetic CPU synthetic-b"), "{stem}");
    }
    let summary = read(&out.join("summary.md"));
    assert!(summary.contains("## Machine `synthetic-a`") && summary.contains("## Machine `synthetic-b`"));
    assert!(summary.contains("| flavor | `synthetic-a` | `synthetic-b` |"), "{summary}");
    // Machine b's calls cost 1.5× more, so its inline-vs-trampoline break-even is (66000−64000)/0.75.
    assert!(summary.contains("more than 2666 times per update"), "{summary}");
    // The census is the same binaries twice: shown once.
    assert_eq!(summary.matches("| libc.so.6 | call_rel32 |").count(), 1, "{summary}");
}

#[test]
fn one_machine_in_two_folders_stays_two_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("monday"), tmp.path().join("tuesday"));
    write_full(&a, "same-box", 1.0);
    write_full(&b, "same-box", 1.2);
    let done = render_all(&[a, b], &tmp.path().join("out")).unwrap();
    assert_eq!(done.machines, vec!["same-box (monday)".to_string(), "same-box (tuesday)".to_string()]);
}

#[test]
fn missing_files_skip_their_plots_with_a_note() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    write_csv(&dir.join("machine.csv"), &[machine("only-calls")]).unwrap();
    write_csv(&dir.join("calls.csv"), &calls("only-calls", 1.0)).unwrap();
    let done = render_all(std::slice::from_ref(&dir), &dir).unwrap();
    for stem in ["calls", "poly"] {
        assert!(dir.join(format!("{stem}.svg")).is_file() && dir.join(format!("{stem}.png")).is_file());
    }
    for stem in ["patch_latency", "tradeoff", "offsets", "census"] {
        assert!(!dir.join(format!("{stem}.svg")).exists(), "{stem}");
    }
    assert_eq!(
        done.notes,
        vec![
            "patch_latency.svg/.png skipped: patch.csv not found.",
            "tradeoff.svg/.png skipped: needs both calls.csv and patch.csv.",
            "offsets.svg/.png skipped: census_offsets.csv not found.",
            "census.svg/.png skipped: census.csv not found.",
        ]
    );
    let summary = read(&dir.join("summary.md"));
    assert!(summary.contains("_No patch measurements: `patch.csv` was not found._"), "{summary}");
    assert!(summary.contains("_No census: `census.csv` was not found._"));
    assert!(summary.contains("- tradeoff.svg/.png skipped: needs both calls.csv and patch.csv."));
    assert!(summary.contains("trampoline left out: no quiet `bp` batch-1 row in patch.csv."), "{summary}");
}

#[test]
fn extra_and_optional_columns_are_read_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    write_csv(&dir.join("calls.csv"), &calls("m", 1.0)).unwrap();
    // No membarrier row: the sync cost comes from the sync_ns column (of the quiet rows); columns in a
    // different order and an unknown one appended.
    std::fs::write(
        dir.join("patch.csv"),
        "protocol,machine_id,batch,syncs,latency_ns_min,latency_ns_median,traps,callers,method,sync_ns,fallback,late_traps,future\n\
         bp,m,1,3,60000,64000,0,0,alias,25000,0,0,x\n\
         bp,m,10,3,60000,66000,0,0,alias,25000,0,0,x\n\
         bp,m,10,3,90000,99000,17,1,alias,40000,0,2,x\n",
    )
    .unwrap();
    std::fs::write(dir.join("hazard.csv"), "machine_id,writer,patches,torn,extra\nm,naive-split4,2000000,300,y\n")
        .unwrap();
    let done = render_all(std::slice::from_ref(&dir), &dir).unwrap();
    assert!(dir.join("patch_latency.png").is_file());
    let svg = read(&dir.join("patch_latency.svg"));
    assert!(svg.contains("3-sync floor: 3 × membarrier = 75.0 µs"));
    assert!(svg.contains("bp, 1 caller") && svg.contains("bp, 0 callers"), "{svg}");
    let summary = read(&dir.join("summary.md"));
    // Torn per million computed from the counts when the column is absent.
    assert!(summary.contains("| naive-split4 | 2000000 | 300 | 150 |"), "{summary}");
    // The model uses the quiet (0 callers) rows: (66000 − 64000) / 0.5.
    assert!(summary.contains("more than 4000 times per update"), "{summary}");
    assert!(done.notes.iter().any(|n| n.contains("census.csv not found")));
}

#[test]
fn unknown_floor_is_stated_on_the_plot() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    // No membarrier row and no usable sync cost (NaN: the writer could not measure one).
    std::fs::write(
        dir.join("patch.csv"),
        format!("{PATCH_HEADER}\nm,bp,1,3,60000,64000,0,0,alias,NaN,0,0\nm,bp,10,3,61000,66000,0,0,alias,NaN,0,0\n"),
    )
    .unwrap();
    render_all(std::slice::from_ref(&dir), &dir).unwrap();
    assert!(read(&dir.join("patch_latency.svg")).contains("3-sync floor unknown"));
    assert!(read(&dir.join("summary.md")).contains("the 3-sync floor is unknown"));
}

#[test]
fn malformed_csv_is_an_error_naming_the_file_and_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    write_csv(&dir.join("calls.csv"), &calls("m", 1.0)).unwrap();
    let mut text = read(&dir.join("calls.csv"));
    // The paired columns (baseline .. placement) empty, as a row that could not be paired.
    text.push_str("m,direct,mono,,64,11,fast,2.0,2.1,1.0,u,u,tsc-ref-cycles,,,,,,,,,,,,,,\n");
    std::fs::write(dir.join("calls.csv"), text).unwrap();
    let err = render_all(std::slice::from_ref(&dir), &dir).unwrap_err();
    assert!(matches!(err, ReportError::Csv { .. }), "{err:?}");
    let msg = err.to_string();
    let line = calls("m", 1.0).len() + 2; // header, the rows, then the bad one
    assert!(msg.contains("calls.csv") && msg.contains(&format!("line: {line}")), "{msg}");
    assert!(msg.ends_with("(column `cycles_min`)"), "{msg}");
    assert!(!dir.join("summary.md").exists(), "no summary from half-read results");
}

#[test]
fn folders_without_results_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let err = render_all(std::slice::from_ref(&missing), tmp.path()).unwrap_err();
    assert!(matches!(err, ReportError::NotAFolder { .. }), "{err}");
    assert!(err.to_string().starts_with(&format!("{}: not a results folder", missing.display())));
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let err = render_all(std::slice::from_ref(&empty), tmp.path()).unwrap_err();
    assert!(err.to_string().contains("no callpatch CSV files here or one level down"), "{err}");
    let file = tmp.path().join("calls.csv");
    std::fs::write(&file, "x").unwrap();
    assert!(matches!(render_all(&[file], tmp.path()), Err(ReportError::NotAFolder { .. })));
}

/// `calls(id, 1.0)` as a paired run writes it: every row a ratio to direct in its scenario (else direct
/// mono) with a ±5% interval (retpoline ±2%), 30 samples, and a core clock estimated at 3 GHz against
/// the 2 GHz TSC. `trampoline_mono` replaces the trampoline's mono cost.
fn paired_calls(id: &str, trampoline_mono: f64) -> Vec<CallsRow> {
    let mut rows = calls(id, 1.0);
    for r in rows.iter_mut().filter(|r| r.flavor.name() == "trampoline" && r.scenario == "mono") {
        (r.cycles_min, r.cycles_median, r.ns_median) = (trampoline_mono * 0.95, trampoline_mono, trampoline_mono / 2.0);
    }
    let direct: Vec<(String, String, f64)> = rows
        .iter()
        .filter(|r| r.flavor.name() == "direct")
        .map(|r| (r.scenario.clone(), r.param.clone(), r.cycles_median))
        .collect();
    for r in rows.iter_mut() {
        r.core_hz_est = Some(3.0e9);
        r.core_cycles_median = Some(r.cycles_median * 1.5);
        r.samples = Some(30);
        r.discarded = Some(1);
        r.noisy = Some(false);
        if r.flavor.name() == "direct" {
            continue;
        }
        let same = direct.iter().find(|d| d.0 == r.scenario && d.1 == r.param);
        let (base, name) = match same {
            Some(d) => (d.2, "direct".to_string()),
            None => (direct.iter().find(|d| d.0 == "mono").unwrap().2, "direct mono".to_string()),
        };
        let pm = if r.flavor.name() == "retpoline" { 0.02 } else { 0.05 };
        let ratio = r.cycles_median / base;
        r.baseline = Some(name);
        r.ratio_median = Some(ratio);
        r.ratio_lo = Some(ratio * (1.0 - pm));
        r.ratio_hi = Some(ratio * (1.0 + pm));
    }
    rows
}

#[test]
fn paired_runs_state_verdicts_with_intervals_and_lead_with_the_kernels_own_indirect_call() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("retpoline-box");
    write_full(&a, "retpoline-box", 1.0);
    // The trampoline's mono cost 2.1 ± 5% against inline's 2.0 ± 5%: the intervals overlap.
    write_csv(&a.join("calls.csv"), &paired_calls("retpoline-box", 2.1)).unwrap();
    render_all(std::slice::from_ref(&a), &a).unwrap();
    let summary = read(&a.join("summary.md"));
    for expected in [
        "**This kernel's own indirect calls are retpolines** (spectre_v2: `Mitigation: Retpolines`), so the comparison \
         that matters here is `retpoline` against an inline patched call.",
        // Separated: retpoline 18 ns [17.64, 18.36] vs inline 1 ns [0.95, 1.05], update [59.4, 66] µs (min..median).
        "inline/bp beats a retpoline once a key with 10 sites is called more than 3882 times per update on this \
         machine (95% interval 3411–3979).",
        // Overlapping: calls differ by [−0.0525, 0.1525] ns, at most 15% of the trampoline's 1.05.
        "inline/bp and the trampoline: their calls are indistinguishable here (±15%)",
        "| inline/bp | indistinguishable (±15%) |",
        // TSC ticks beside estimated core cycles (× 3 GHz / 2 GHz), the ratio with its interval.
        "| retpoline | 36.0 (34.2) | 54.0 | 18.0× [17.6, 18.4] | 18.0 |",
        "from a dependent add chain at 3.000 GHz (TSC 2.000 GHz): an estimate",
        "the comparison of the two has not run",
        "patch.csv has no latency interval (latency_ns_lo, latency_ns_hi): update costs span min..median",
    ] {
        assert!(summary.contains(expected), "summary.md lacks {expected:?}\n---\n{summary}");
    }
    for never in ["never beats", "no interval (older run)"] {
        assert!(!summary.contains(never), "a paired run says {never:?}\n---\n{summary}");
    }

    // An eIBRS kernel: its indirect calls are plain, so inline is compared with a plain indirect call.
    let b = tmp.path().join("eibrs-box");
    write_full(&b, "eibrs-box", 1.0);
    write_csv(&b.join("calls.csv"), &paired_calls("eibrs-box", 3.0)).unwrap();
    let mut m = machine("eibrs-box");
    m.spectre_v2 =
        "Mitigation: Enhanced / Automatic IBRS; IBPB: conditional; RSB filling; PBRSB-eIBRS: SW sequence".into();
    write_csv(&b.join("machine.csv"), &[m]).unwrap();
    render_all(std::slice::from_ref(&b), &b).unwrap();
    let summary = read(&b.join("summary.md"));
    let lead = summary.split("### Headline").nth(1).unwrap().split("###").next().unwrap();
    assert!(lead.contains("**This kernel's own indirect calls are plain indirect calls"), "{lead}");
    assert!(lead.contains("is `indirect` against an inline patched call"), "{lead}");
    assert!(
        lead.contains("inline/bp beats an indirect call once a key with 10 sites") && lead.contains("(95% interval "),
        "{lead}"
    );
    assert!(!lead.contains("retpoline"), "{lead}");
}

#[test]
fn binaries_are_told_apart_by_build_id_when_no_sha256_was_computed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    write_csv(&dir.join("machine.csv"), &[machine("ids")]).unwrap();
    write_csv(&dir.join("calls.csv"), &calls("ids", 1.0)).unwrap();
    let (mut rows, _) = census();
    rows.retain(|r| r.binary.ends_with("libc.so.6"));
    let mut other = rows.clone();
    for (r, id) in
        rows.iter_mut().map(|r| (r, "1122334455667788")).chain(other.iter_mut().map(|r| (r, "99aabbccddeeff00")))
    {
        r.sha256.clear();
        r.build_id = id.to_string();
    }
    for r in &mut other {
        r.binary = "/opt/other/libc.so.6".into();
    }
    rows.extend(other);
    write_csv(&dir.join("census.csv"), &rows).unwrap();
    render_all(std::slice::from_ref(&dir), &dir).unwrap();
    let summary = read(&dir.join("summary.md"));
    assert!(summary.contains("`libc.so.6 (11223344)` build-id `1122334455667788`"), "{summary}");
    assert!(summary.contains("`libc.so.6 (99aabbcc)` build-id `99aabbccddeeff00`"), "{summary}");
}
