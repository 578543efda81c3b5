//! `summary.md`: the results as Markdown that can be pasted into a mailing-list reply or a pull request
//! as it is — the machine, cycles per call and the ratio to a direct call, patch latency and syncs, the
//! stress verdict, the hazard table, the trade-off's break-even points, the census against theory, and
//! the plots by relative path. Every number is read from the CSVs; a missing file is a note, never a gap
//! filled in.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::census::crossing::{THEORY_INSN5_LINE, THEORY_REL32_LINE, THEORY_REL32_WORD};
use crate::report::dataset::{CsvFile, Dataset, Run};
use crate::report::error::ReportError;
use crate::report::interval::{compare, Interval, Order as IvOrder};
use crate::report::lookup::{cycles_unit, Load};
use crate::report::plots::census::rows as census_rows;
use crate::report::rows::CallsRow;
use crate::report::scenario::{Order, Scenario};
use crate::report::style::{duration_ns, sig2, sig3};
use crate::report::tradeoff::{sentence, Outcome, Tradeoff, BASELINES, NO_INTERVAL, PATCHED};
use callpatch_vocab::{Flavor, HazardWriter};

/// A plot written next to the summary.
#[derive(Clone, Debug)]
pub struct PlotFile {
    /// The file name without extension (`calls` for `calls.svg`/`calls.png`).
    pub stem: String,
    /// What the plot shows, for the summary's list.
    pub title: String,
}

/// Everything the summary shows.
pub struct SummaryInput<'a> {
    /// The loaded result folders.
    pub data: &'a Dataset,
    /// The trade-off models of each run (quiet, then busy where measured), in the order of `data.runs`.
    pub models: &'a [Vec<Tradeoff>],
    /// The plots written beside the summary.
    pub plots: &'a [PlotFile],
    /// Skipped plots and other notes.
    pub notes: &'a [String],
}

/// Renders the summary.
pub fn markdown(input: &SummaryInput) -> String {
    let d = input.data;
    let mut s = String::new();
    let _ = writeln!(s, "# callpatch results\n");
    let machines = d.runs.len();
    let _ = writeln!(
        s,
        "What a call costs on x86-64 (direct, indirect, retpoline, trampoline, inline patched) and what it costs to \
         patch call sites live, from {} (rebuilt from CSV by `callpatch plot`). Every number below is read from the \
         measurements; the trade-off section combines them and says how.\n",
        match machines {
            0 => "no machine".to_string(),
            1 => format!("machine `{}`", d.runs[0].label),
            n => format!(
                "{n} machines: {}",
                d.runs.iter().map(|r| format!("`{}`", r.label)).collect::<Vec<_>>().join(", ")
            ),
        }
    );
    if machines > 1 {
        fleet_table(&mut s, d);
    }
    for (i, run) in d.runs.iter().enumerate() {
        let _ = writeln!(s, "## Machine `{}`\n", run.label);
        s.push_str(&crate::report::this_kernel::section(run));
        machine(&mut s, run);
        headline(&mut s, run, input.models.get(i).and_then(|v| v.first()));
        calls(&mut s, run, d);
        s.push_str(&crate::report::returns::section(run));
        patch(&mut s, run, d);
        stress(&mut s, run, d);
        hazard(&mut s, run, d);
        for model in input.models.get(i).into_iter().flatten() {
            tradeoff(&mut s, model);
        }
    }
    census(&mut s, d);
    if !input.plots.is_empty() {
        let _ = writeln!(s, "## Plots\n");
        for p in input.plots {
            let _ = writeln!(s, "**{}** ([SVG]({}.svg))\n\n![{}]({}.png)\n", p.title, p.stem, p.title, p.stem);
        }
    }
    if !input.notes.is_empty() {
        let _ = writeln!(s, "## Notes\n");
        for n in input.notes {
            let _ = writeln!(s, "- {n}");
        }
        s.push('\n');
    }
    s
}

/// Writes `summary.md` into `out` atomically and returns its path.
pub fn write(input: &SummaryInput, out: &Path) -> Result<PathBuf, ReportError> {
    let path = out.join("summary.md");
    let mut tmp = crate::report::rows::temp_beside(&path, ".tmp").map_err(|e| ReportError::io(&path, e))?;
    std::io::Write::write_all(&mut tmp, markdown(input).as_bytes()).map_err(|e| ReportError::io(tmp.path(), e))?;
    tmp.persist(&path).map_err(|e| ReportError::io(&path, e.error))?;
    Ok(path)
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn missing(s: &mut String, d: &Dataset, file: CsvFile, what: &str) {
    let why = if d.has(file) { "has no rows for this machine" } else { "was not found" };
    let _ = writeln!(s, "_No {what}: `{}` {why}._\n", file.file_name());
}

fn machine(s: &mut String, run: &Run) {
    let Some(m) = &run.machine else {
        let _ = writeln!(s, "_No `machine.csv` row for this machine: CPU and kernel unknown._\n");
        return;
    };
    let _ = writeln!(s, "| | |\n|---|---|");
    let _ = writeln!(
        s,
        "| CPU | {} (family {}, model {}, stepping {}, microcode {}) |",
        cell(&m.cpu_model),
        m.family,
        m.model,
        m.stepping,
        cell(&m.microcode)
    );
    let _ = writeln!(s, "| kernel | {} |", cell(&m.kernel));
    let _ = writeln!(s, "| spectre_v2 | {} |", cell(&m.spectre_v2));
    let _ = writeln!(s, "| TSC | {:.3} GHz |", m.tsc_hz / 1e9);
    let _ = writeln!(s, "| hardware counters | {} |", cell(&m.counters));
    let _ = writeln!(
        s,
        "| callpatch | {} ({}), {}, {} |\n",
        cell(&m.callpatch_version),
        cell(&m.git_rev),
        cell(&m.rustc),
        cell(&m.date)
    );
}

const RANDOM4: Scenario = Scenario::Poly { k: 4, order: Order::Random };

/// `v` with its interval, `18.0 [17.8, 18.3]`, or `18.0 (no interval)`.
fn with_interval(iv: Interval, suffix: &str) -> String {
    if iv.known && iv.hi > iv.lo {
        format!("{}{suffix} [{}, {}]", sig3(iv.mid), sig3(iv.lo), sig3(iv.hi))
    } else if iv.known {
        format!("{}{suffix}", sig3(iv.mid))
    } else {
        format!("{}{suffix} (no interval)", sig3(iv.mid))
    }
}

/// The ratio of `row` to its baseline with its interval: the paired columns where measured, else the
/// ratio of medians, which has no interval.
fn ratio_of(run: &Run, row: &CallsRow) -> Option<Interval> {
    if let (Some(lo), Some(mid), Some(hi)) = (row.ratio_lo, row.ratio_median, row.ratio_hi)
        && let Some(iv) = Interval::new(lo, mid, hi)
    {
        return Some(iv);
    }
    let base = run.baseline_of(row)?.cycles_median;
    let is_base = run.baseline_of(row).is_some_and(|b| std::ptr::eq(b, row));
    (base > 0.0 && row.cycles_median.is_finite()).then(|| {
        let r = row.cycles_median / base;
        if is_base && run.paired() {
            Interval::exact(r)
        } else {
            Interval::point(r)
        }
    })
}

fn calls(s: &mut String, run: &Run, d: &Dataset) {
    let _ = writeln!(s, "### Cycles per call\n");
    if run.calls.is_empty() {
        return missing(s, d, CsvFile::Calls, "call costs");
    }
    let unit = cycles_unit(run.timer());
    let direct_poly = run.call(Flavor::Direct, RANDOM4).is_some();
    let paired = run.paired();
    let _ = writeln!(
        s,
        "{unit} (TSC ticks) per call, median (min in brackets), beside the same in estimated core cycles. Ratio = \
         this flavor's cost ÷ a direct call's{}{}.\n",
        if direct_poly || run.call(Flavor::Direct, Scenario::Mono).is_none() {
            " in the same scenario".to_string()
        } else {
            " (the poly-4 ratios are to the direct call's mono cost: direct has no poly row)".to_string()
        },
        if paired {
            ", measured in alternation with it: the median of the paired samples with its 95% interval in brackets; \
             `noisy` marks a row whose interval is wider than ±5% or that lost many samples"
        } else {
            ": a ratio of medians — no interval (older run), so no row is stated as k× another"
        }
    );
    let core = run.core_hz_est();
    match (core, run.machine.as_ref()) {
        (Some(hz), Some(m)) => {
            let _ = writeln!(
                s,
                "Estimated core cycles = TSC ticks × core clock ÷ TSC rate, with the core clock estimated in this run from \
                 a dependent add chain at {:.3} GHz (TSC {:.3} GHz): an estimate, which assumes the calls ran at the \
                 clock the chain ran at.",
                hz / 1e9,
                m.tsc_hz / 1e9
            );
        }
        _ => {
            let _ = writeln!(
                s,
                "Estimated core cycles: – here, because this run did not estimate the core clock (`core_hz_est` is \
                 empty or absent in `calls.csv`)."
            );
        }
    }
    let pmu = run.machine.as_ref().is_some_and(|m| m.counters.starts_with("available"));
    let _ = writeln!(
        s,
        "{}\n",
        if pmu {
            "A PMU is available on this machine, but `calls.csv` carries no measured core cycles: the comparison of \
             measured and estimated core cycles has not run."
        } else {
            "No PMU here (see hardware counters above): measured core cycles could not replace the estimate, and the \
             comparison of the two has not run."
        }
    );
    let _ = writeln!(
        s,
        "| flavor | mono, TSC ticks | est. core cycles | ratio | ns (mono) | random poly-4, TSC ticks | est. core cycles | \
         ratio |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for flavor in run.flavors() {
        let mono = run.call(flavor, Scenario::Mono);
        let poly = run.call(flavor, RANDOM4);
        if mono.is_none() && poly.is_none() {
            continue;
        }
        let show = |r: Option<&CallsRow>| match r {
            Some(r) => {
                let core = run.core_cycles(r, r.cycles_median).map_or("–".into(), sig3);
                let mut ratio = ratio_of(run, r).map_or("–".into(), |iv| with_interval(iv, "×"));
                if r.noisy == Some(true) {
                    ratio += " noisy";
                }
                (format!("{} ({})", sig3(r.cycles_median), sig3(r.cycles_min)), core, ratio)
            }
            None => ("–".into(), "–".into(), "–".into()),
        };
        let (m, mc, mr) = show(mono);
        let (p, pc, pr) = show(poly);
        let ns = mono.map_or("–".into(), |r| sig3(r.ns_median));
        let _ = writeln!(s, "| {} | {m} | {mc} | {mr} | {ns} | {p} | {pc} | {pr} |", cell(flavor.name()));
    }
    s.push('\n');
    let notes: Vec<&CallsRow> = run
        .calls
        .iter()
        .filter(|r| r.noisy == Some(true) || r.note.as_deref().is_some_and(|n| !n.is_empty()))
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(s, "Rows the measurement flagged:\n");
        for r in notes {
            let _ = writeln!(
                s,
                "- `{}` {}: {}{}",
                r.flavor,
                r.scenario(),
                if r.noisy == Some(true) { "noisy" } else { "note" },
                r.note.as_deref().filter(|n| !n.is_empty()).map_or(String::new(), |n| format!(" — {}", cell(n)))
            );
        }
        s.push('\n');
    }
}

/// The flavor of this kernel's own indirect calls, from the first clause of its spectre_v2 line, and
/// how to say it.
pub fn kernel_indirect(spectre_v2: &str) -> Option<(Flavor, &'static str)> {
    let first = spectre_v2.split(';').next().unwrap_or("");
    if first.contains("LFENCE") {
        Some((Flavor::Lfence, "`lfence; call *%reg` (the kernel's retpoline,lfence)"))
    } else if first.contains("Retpoline") {
        Some((Flavor::Retpoline, "retpolines"))
    } else if first.contains("IBRS") {
        Some((Flavor::Indirect, "plain indirect calls, their prediction restricted by (enhanced) IBRS in hardware"))
    } else if first.contains("Vulnerable") || first.contains("Not affected") {
        Some((Flavor::Indirect, "plain indirect calls, unmitigated"))
    } else {
        None
    }
}

/// "`a` costs ... `b`": a comparison of two costs (TSC ticks) stated only as far as their intervals
/// separate them.
fn compare_costs(a_name: &str, a: Interval, b_name: &str, b: Interval) -> String {
    let ticks = |iv: Interval| {
        if iv.known && iv.hi > iv.lo {
            format!("{} [{}, {}]", sig3(iv.mid), sig3(iv.lo), sig3(iv.hi))
        } else {
            sig3(iv.mid)
        }
    };
    match compare(a, b) {
        IvOrder::Indistinguishable { pm } => format!(
            "{a_name} and {b_name} cost the same here: indistinguishable (±{}%), {} vs {} ticks.",
            sig2(pm),
            ticks(a),
            ticks(b)
        ),
        IvOrder::Below => format!("{a_name} costs less than {b_name}: {} vs {} ticks.", ticks(a), ticks(b)),
        IvOrder::Above => format!("{a_name} costs more than {b_name}: {} vs {} ticks.", ticks(a), ticks(b)),
        IvOrder::Unknown { .. } => format!(
            "{a_name} costs {} ticks and {b_name} {} by the medians ({}×) — {NO_INTERVAL}.",
            sig3(a.mid),
            sig3(b.mid),
            sig3(a.mid / b.mid)
        ),
    }
}

/// The lead of a machine's section: the comparison this kernel's own indirect calls face, then what
/// is specific to this CPU, each stated as far as the intervals allow.
fn headline(s: &mut String, run: &Run, model: Option<&Tradeoff>) {
    let Some(m) = &run.machine else { return };
    let _ = writeln!(s, "### Headline\n");
    let direct = run.cost(Flavor::Direct, Scenario::Mono);
    let inline = run.cost(Flavor::Inline, Scenario::Mono);
    match kernel_indirect(&m.spectre_v2) {
        Some((flavor, how)) => {
            let mut line = format!(
                "**This kernel's own indirect calls are {how}** (spectre_v2: `{}`), so the comparison that matters here \
                 is `{flavor}` against an inline patched call.",
                cell(m.spectre_v2.split(';').next().unwrap_or("").trim())
            );
            if let (Some(x), Some(i)) = (run.cost(flavor, Scenario::Mono), inline) {
                let _ =
                    write!(line, " {}", compare_costs(&format!("A `{flavor}` call (mono)"), x, "an `inline` call", i));
            }
            if let (Some(x), Some(dir)) = (run.call(flavor, Scenario::Mono), direct)
                && let Some(r) = ratio_of(run, x)
            {
                let _ = write!(
                    line,
                    " Against a direct call ({} ticks) it costs {}.",
                    sig3(dir.mid),
                    if r.known {
                        with_interval(r, "×")
                    } else {
                        format!("{}× by the medians — {NO_INTERVAL}", sig3(r.mid))
                    }
                );
            }
            let mech = match flavor {
                Flavor::Retpoline => Some("retpoline"),
                Flavor::Indirect => Some("indirect"),
                _ => None,
            };
            if let Some(b) =
                mech.and_then(|o| model?.break_evens.iter().find(|b| b.fast == "inline/bp" && b.other == o))
            {
                let _ = write!(line, " {}", sentence(b, model.map_or(0, |t| t.sites)));
            }
            let _ = writeln!(s, "{line}\n");
        }
        None => {
            let _ = writeln!(
                s,
                "This kernel's spectre_v2 line (`{}`) does not say how its indirect calls are made, so no comparison \
                 leads; see the tables below.\n",
                cell(&m.spectre_v2)
            );
        }
    }
    // What this CPU does, from its own rows.
    let mut specific = Vec::new();
    if let (Some(i), Some(dir)) = (run.cost(Flavor::Indirect, Scenario::Mono), direct) {
        specific.push(compare_costs("A predicted indirect call (mono, one target)", i, "a direct call", dir));
    }
    let ks: Vec<usize> = [4, 2, 16]
        .into_iter()
        .filter(|&k| {
            run.call(Flavor::Indirect, Scenario::Poly { k, order: Order::RoundRobin }).is_some()
                && run.call(Flavor::Indirect, Scenario::Poly { k, order: Order::Random }).is_some()
        })
        .collect();
    if let Some(&k) = ks.first() {
        let rr = run.cost(Flavor::Indirect, Scenario::Poly { k, order: Order::RoundRobin });
        let rnd = run.cost(Flavor::Indirect, Scenario::Poly { k, order: Order::Random });
        if let (Some(rr), Some(rnd)) = (rr, rnd) {
            let base = compare_costs(
                &format!("An indirect call rotating round-robin over {k} targets"),
                rr,
                "the same targets in random order",
                rnd,
            );
            let meaning = match compare(rr, rnd) {
                IvOrder::Below => "the predictor learns the rotation.".to_string(),
                IvOrder::Above | IvOrder::Indistinguishable { .. } => {
                    "the predictor does not learn the rotation.".to_string()
                }
                IvOrder::Unknown { below: true } => {
                    "The rotation is cheaper by the medians, as when a predictor learns it; no interval says so.".into()
                }
                IvOrder::Unknown { below: false } => "The rotation is not cheaper by the medians, as when a predictor \
                     does not learn it; no interval says so."
                    .into(),
            };
            let joined = if meaning.starts_with("the") {
                format!("{} — {meaning}", base.trim_end_matches('.'))
            } else {
                format!("{base} {meaning}")
            };
            specific.push(joined);
        }
    }
    if let (Some(t), Some(i)) = (run.cost(Flavor::Trampoline, Scenario::Mono), inline) {
        specific.push(compare_costs("A call through the trampoline (mono)", t, "an inline patched call", i));
    }
    if !specific.is_empty() {
        let _ = writeln!(s, "What this CPU does, from its own rows:\n");
        for line in specific {
            let _ = writeln!(s, "- {line}");
        }
        s.push('\n');
    }
}

fn patch(s: &mut String, run: &Run, d: &Dataset) {
    let _ = writeln!(s, "### Patch latency and syncs\n");
    let protocols = run.protocols();
    if protocols.is_empty() {
        return missing(s, d, CsvFile::Patch, "patch measurements");
    }
    let syncs: Vec<(u32, f64)> = run.caller_counts().into_iter().filter_map(|c| Some((c, run.sync_ns(c)?))).collect();
    if syncs.is_empty() {
        let _ =
            writeln!(s, "_The cost of one membarrier was not recorded in `patch.csv`: the 3-sync floor is unknown._\n");
    }
    for &(callers, ns) in &syncs {
        let with = match callers {
            0 => String::new(),
            c => format!(" with {c} caller thread{} running (each sync interrupts their CPUs)", plural(c)),
        };
        let _ = writeln!(
            s,
            "One membarrier(SYNC_CORE) costs {} here (same run){with}, so a protocol with 3 syncs per batch cannot \
             finish a batch in less than {}: at most {:.0} batches per second.\n",
            duration_ns(ns),
            duration_ns(3.0 * ns),
            1e9 / (3.0 * ns)
        );
    }
    let sync_for = |callers: u32| syncs.iter().find(|(c, _)| *c == callers).map(|(_, ns)| *ns);
    let many_methods = run.patch_methods().len() > 1;
    let any_late = run.patch.iter().any(|r| r.late_traps.is_some());
    let any_fallback = run.patch.iter().any(|r| r.fallback.is_some());
    let mut header = String::from("| protocol | batch | callers |");
    let mut rule = String::from("|---|---:|---:|");
    if many_methods {
        header += " method |";
        rule += "---|";
    }
    header += " syncs | median | min | per site | traps |";
    rule += "---:|---:|---:|---:|---:|";
    if any_late {
        header += " late traps |";
        rule += "---:|";
    }
    if any_fallback {
        header += " fell back |";
        rule += "---:|";
    }
    if !syncs.is_empty() {
        header += " ÷ 3-sync floor |";
        rule += "---:|";
    }
    let _ = writeln!(s, "{header}\n{rule}");
    for protocol in &protocols {
        let mut rows: Vec<_> = run.patch.iter().filter(|r| r.protocol.protocol() == Some(*protocol)).collect();
        rows.sort_by_key(|r| (r.callers, r.method.clone(), r.batch));
        for r in rows {
            let mut line = format!("| {} | {} | {} |", cell(r.protocol.name()), r.batch, r.callers);
            if many_methods {
                let _ = write!(line, " {} |", cell(&r.method));
            }
            let _ = write!(
                line,
                " {} | {} | {} | {} | {} |",
                r.syncs,
                duration_ns(r.latency_ns_median),
                duration_ns(r.latency_ns_min),
                duration_ns(r.latency_ns_median / r.batch.max(1) as f64),
                r.traps
            );
            if any_late {
                let _ = write!(line, " {} |", r.late_traps.map_or("–".into(), |v| format!("{v}")));
            }
            if any_fallback {
                let _ = write!(line, " {} |", r.fallback.map_or("–".into(), |v| format!("{v}")));
            }
            // The floor is a 3-sync protocol's, with the row's own number of callers; other rows have none.
            match (syncs.is_empty(), sync_for(r.callers)) {
                (true, _) => {}
                (false, Some(ns)) if r.syncs == 3 => {
                    let _ = write!(line, " {:.2} |", r.latency_ns_median / (3.0 * ns));
                }
                (false, _) => line.push_str(" – |"),
            }
            let _ = writeln!(s, "{line}");
        }
    }
    s.push('\n');
    for callers in run.caller_counts() {
        for protocol in &protocols {
            let rows = run.patch_rows(protocol.name(), callers);
            let (Some(one), Some(big)) = (rows.iter().find(|r| r.batch == 1), rows.iter().max_by_key(|r| r.batch))
            else {
                continue;
            };
            if big.batch <= 1 {
                continue;
            }
            let singles = one.latency_ns_median * big.batch as f64;
            let with = match callers {
                0 => String::new(),
                c => format!(" (with {c} caller{})", plural(c)),
            };
            let _ = writeln!(
                s,
                "- `{protocol}`{with}: one batch of {} sites takes {}; {} single patches would take {} — {:.0}× faster \
                 batched.",
                big.batch,
                duration_ns(big.latency_ns_median),
                big.batch,
                duration_ns(singles),
                singles / big.latency_ns_median
            );
        }
    }
    s.push('\n');
}

fn stress(s: &mut String, run: &Run, d: &Dataset) {
    let _ = writeln!(s, "### Live patching under load (stress)\n");
    if run.stress.is_empty() {
        return missing(s, d, CsvFile::Stress, "stress runs");
    }
    let any_lost = run.stress.iter().any(|r| r.lost.is_some());
    let any_late = run.stress.iter().any(|r| r.late_traps.is_some());
    let _ = writeln!(
        s,
        "| protocol | callers | seconds | patches | calls | misdirected |{} traps |{} crashed | verdict |\n|---|---:|---:|---:|---:|---:|{}---:|{}---|---|",
        if any_lost { " lost |" } else { "" },
        if any_late { " late traps |" } else { "" },
        if any_lost { "---:|" } else { "" },
        if any_late { "---:|" } else { "" },
    );
    let mut failed = Vec::new();
    let (mut calls, mut patches) = (0u64, 0u64);
    for r in &run.stress {
        let ok = r.misdirected == 0 && !r.crashed && r.lost.unwrap_or(0) == 0;
        if !ok {
            failed.push(r.protocol);
        }
        calls += r.calls;
        patches += r.patches;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |{} {} |{} {} | {} |",
            cell(r.protocol.name()),
            r.callers,
            sig3(r.seconds),
            r.patches,
            r.calls,
            r.misdirected,
            if any_lost { format!(" {} |", r.lost.map_or("–".into(), |v| v.to_string())) } else { String::new() },
            r.traps,
            if any_late {
                format!(" {} |", r.late_traps.map_or("–".into(), |v| v.to_string()))
            } else {
                String::new()
            },
            if r.crashed { "yes" } else { "no" },
            if ok { "pass" } else { "**FAIL**" }
        );
    }
    if failed.is_empty() {
        let _ = writeln!(
            s,
            "\n**Verdict: pass** — {calls} calls made while {patches} patches were applied live, none misdirected, none \
             lost, no crash.\n"
        );
    } else {
        let _ = writeln!(
            s,
            "\n**Verdict: FAIL** — calls went wrong under: {}.\n",
            failed.iter().map(|p| p.name()).collect::<Vec<_>>().join(", ")
        );
    }
}

fn hazard(s: &mut String, run: &Run, d: &Dataset) {
    let _ = writeln!(s, "### Torn-write hazard (patching a line-crossing site without a protocol)\n");
    if run.hazard.is_empty() {
        return missing(s, d, CsvFile::Hazard, "hazard measurements");
    }
    let _ = writeln!(s, "| writer | patches | torn executions | per million patches |\n|---|---:|---:|---:|");
    for r in &run.hazard {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            cell(r.writer.name()),
            r.patches,
            r.torn,
            r.per_million().map_or("–".into(), sig3)
        );
    }
    s.push('\n');
    // bp must never tear: a row that says it did is a measured failure of the protocol, shown as one.
    for r in run.hazard.iter().filter(|r| r.writer == HazardWriter::Bp && (r.torn > 0 || r.crashed)) {
        let _ = writeln!(
            s,
            "**Verdict: FAIL** — bp tore {} calls{}: the protocol is broken on this machine.\n",
            r.torn,
            if r.crashed { " and its writer crashed" } else { "" }
        );
    }
}

fn tradeoff(s: &mut String, t: &Tradeoff) {
    if t.load == Some(Load::Busy) {
        let _ = writeln!(
            s,
            "#### The same with {} caller thread{} running the sites during updates\n\nEvery sync now interrupts the \
             callers' CPUs, as it does for a key updated while its callers run; update costs are the patch rows \
             measured with {} caller{}.\n",
            t.callers,
            plural(t.callers),
            t.callers,
            plural(t.callers)
        );
    } else {
        let _ = writeln!(s, "### The trade-off: when does patching pay?\n");
    }
    if t.mechanisms.is_empty() {
        let _ = writeln!(s, "_Not enough measurements for the model._\n");
    } else {
        let _ = writeln!(
            s,
            "A key with S = {} sites, called C times and updated P times, costs C × call + P × update.\n",
            t.sites
        );
        let _ = writeln!(s, "| mechanism | per call | per update | from |\n|---|---:|---:|---|");
        for m in &t.mechanisms {
            let update = if m.update_measured { duration_ns(m.update_ns) } else { "– (counted as 0)".into() };
            let _ = writeln!(s, "| {} | {} | {update} | {} |", m.name, duration_ns(m.call_ns), cell(&m.source));
        }
        s.push('\n');
    }
    for b in t.break_evens.iter().filter(|b| b.fast == "inline/bp") {
        let line = sentence(b, t.sites);
        if b.other == "trampoline" && matches!(b.outcome, Outcome::Above { .. }) {
            let _ = writeln!(s, "- **{line}**");
        } else {
            let _ = writeln!(s, "- {line}");
        }
    }
    if !t.break_evens.is_empty() {
        let _ = writeln!(
            s,
            "\nCalls per update above which the patched mechanism (row) is cheaper than the other (column):\n"
        );
        let _ = writeln!(s, "| | {} |\n|---|{}", BASELINES.join(" | "), "---:|".repeat(BASELINES.len()));
        for fast in PATCHED {
            if !t.break_evens.iter().any(|b| b.fast == fast) {
                continue;
            }
            let mut line = format!("| {fast} |");
            for other in BASELINES {
                let v = crate::report::tradeoff::cell(t.break_even(fast, other));
                let _ = write!(line, " {v} |");
            }
            let _ = writeln!(s, "{line}");
        }
    }
    s.push('\n');
    for n in &t.notes {
        let _ = writeln!(s, "- _{n}_");
    }
    if !t.notes.is_empty() {
        s.push('\n');
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn census(s: &mut String, d: &Dataset) {
    let _ = writeln!(s, "## Census: call sites that cross a 64-byte line\n");
    let rows = census_rows(&d.binaries);
    if rows.is_empty() {
        let why = if d.has(CsvFile::Census) { "has no sites" } else { "was not found" };
        let _ = writeln!(s, "_No census: `census.csv` {why}._\n");
        return;
    }
    let _ = writeln!(
        s,
        "A uniform start offset predicts {:.2}% (3/64) of rel32 fields and {:.2}% (4/64) of 5-byte calls crossing a \
         line; the aligned-only policy would leave 3/64 of sites on the trampoline under the line rule and {:.1}% \
         (3/8) under the 8-byte-word rule.\n",
        THEORY_REL32_LINE * 100.0,
        THEORY_INSN5_LINE * 100.0,
        THEORY_REL32_WORD * 100.0
    );
    let _ = writeln!(
        s,
        "| binary | kind | sites | rel32 crosses | insn crosses | aligned-only fallback (line) | (word) |\n|---|---|---:|---:|---:|---:|---:|"
    );
    for b in &d.binaries {
        let mut kinds: Vec<_> = b.kinds.iter().filter(|r| r.count > 0).collect();
        kinds.sort_by_key(|r| r.kind);
        for r in kinds {
            let pct = |v: u64| format!("{v} ({:.2}%)", 100.0 * v as f64 / r.count as f64);
            // A kind without a rel32 (an indirect call) has nothing one store could patch.
            let (has_rel32, _) = crate::report::plots::census::shape(r.kind);
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} |",
                cell(&b.label),
                cell(r.kind.name()),
                r.count,
                if has_rel32 { pct(r.cross64_rel32) } else { "– (no rel32)".into() },
                pct(r.cross64_insn),
                if has_rel32 { pct(r.fallback_line) } else { "–".into() },
                if has_rel32 { pct(r.fallback_word) } else { "–".into() },
            );
        }
    }
    s.push('\n');
    let shas: Vec<String> = d
        .binaries
        .iter()
        .filter(|b| !b.sha256.is_empty() || !b.build_id.is_empty())
        .map(|b| match (b.build_id.is_empty(), b.sha256.is_empty()) {
            (false, true) => format!("`{}` build-id `{}`", b.label, b.build_id),
            (true, _) => format!("`{}` sha256 `{}`", b.label, b.sha256),
            (false, false) => format!("`{}` build-id `{}` sha256 `{}`", b.label, b.build_id, b.sha256),
        })
        .collect();
    if !shas.is_empty() {
        let _ = writeln!(s, "Binaries: {}.\n", shas.join("; "));
    }
}

/// Ratio to direct (mono) of every flavor, one column per machine.
fn fleet_table(s: &mut String, d: &Dataset) {
    let runs: Vec<&Run> = d.runs.iter().filter(|r| !r.calls.is_empty()).collect();
    if runs.len() < 2 {
        return;
    }
    let mut flavors: Vec<Flavor> = runs.iter().flat_map(|r| r.flavors()).collect();
    flavors.sort_unstable();
    flavors.dedup();
    let _ = writeln!(s, "## Across machines: mono call cost, ratio to a direct call\n");
    let _ = writeln!(
        s,
        "| flavor |{}\n|---|{}",
        runs.iter().map(|r| format!(" `{}` |", r.label)).collect::<String>(),
        "---:|".repeat(runs.len())
    );
    for f in &flavors {
        let mut line = format!("| {} |", cell(f.name()));
        for r in &runs {
            let v = r.call(*f, Scenario::Mono).map(|c| c.cycles_median);
            let base = r.call(Flavor::Direct, Scenario::Mono).map(|c| c.cycles_median).filter(|b| *b > 0.0);
            match (v, base) {
                (Some(v), Some(b)) => {
                    let _ = write!(line, " {} ({:.2}×) |", sig3(v), v / b);
                }
                (Some(v), None) => {
                    let _ = write!(line, " {} |", sig3(v));
                }
                _ => line.push_str(" – |"),
            }
        }
        let _ = writeln!(s, "{line}");
    }
    let _ = writeln!(s, "\nMedian cycles per call in the mono scenario (each machine's own timer, see its section).\n");
}
