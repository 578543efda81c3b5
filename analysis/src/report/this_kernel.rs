//! This kernel, composed: from what `machine.csv` recorded of the running kernel's mitigations, which
//! call flavor and which return kind the kernel executes for an indirect call and for a static call,
//! and what the measured rows say each pair costs.
//!
//! The kernel's choice is read, never measured: `spectre_v2` decides the indirect call (retpoline,
//! `lfence`, or a plain `call *%reg` under (e/Auto)IBRS), the kernel config and `cfi=` whether a kCFI
//! check precedes it, `spec_rstack_overflow` whether every return goes through the SRSO thunk (the alias
//! form on family 0x19 and later), `retbleed` / `indirect_target_selection` whether returns and calls
//! carry call depth tracking ("Stuffing") or the ITS thunks ("Aligned branch/return thunks"). A static
//! call is an inline `call rel32` returning the same way. Under ITS, which sites are thunked depends on
//! where each one's last byte falls: the pair is composed for the lower half (the thunked one). What a
//! mechanism here does not model (the retbleed untraining thunks, kCFI with the ITS or call-depth
//! thunks) leaves that half unknown, with the reason.

use callpatch_vocab::{Flavor, ReturnKind};

use crate::report::rows::MachineRow;

/// The call and return this kernel executes, or why they could not be determined.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Composed {
    /// The flavor of an indirect call (`None`: not determined, see `unknown`).
    pub indirect: Option<Flavor>,
    /// The return kind of every kernel function (`None`: not determined).
    pub ret: Option<ReturnKind>,
    /// Why each known part was chosen, one line each.
    pub because: Vec<String>,
    /// What could not be determined or is not modelled here, one line each.
    pub unknown: Vec<String>,
}

/// Composes this kernel's call and return from its `machine.csv` row.
pub fn compose(m: &MachineRow) -> Composed {
    let mut c = compose_parts(m);
    if let (Some(f), Some(r)) = (c.indirect, c.ret)
        && !r.crosses(f)
    {
        c.unknown.push(format!("`{f}` returning through `{r}` is not modelled here"));
        c.indirect = None;
    }
    c
}

fn compose_parts(m: &MachineRow) -> Composed {
    let mut c = Composed::default();
    let cmdline = m.cmdline.as_deref().unwrap_or("");
    let opt = |key: &str| cmdline.split_whitespace().find_map(|w| w.strip_prefix(key));
    let line = |v: &Option<String>| v.clone().unwrap_or_else(|| "unknown (not recorded in machine.csv)".into());
    let (srso, retbleed, its) = (line(&m.spec_rstack_overflow), line(&m.retbleed), line(&m.its));

    // The return.
    if srso.contains("Safe RET") {
        let alias = m.family >= 0x19;
        c.ret = Some(if alias { ReturnKind::SrsoAlias } else { ReturnKind::Srso });
        c.because.push(format!(
            "spec_rstack_overflow: `{srso}` on family {:#x}: every return is `jmp {}`",
            m.family,
            if alias { "srso_alias_return_thunk" } else { "srso_return_thunk" }
        ));
    } else if retbleed.contains("Stuffing") || its.contains("Stuffing") {
        c.ret = Some(ReturnKind::CallDepth);
        c.because.push(format!(
            "retbleed `{retbleed}`, indirect_target_selection `{its}`: call depth tracking: every call counts \
             `sarq $5`, every return is `jmp call_depth_return_thunk` (the counter per CPU there, per thread here)"
        ));
    } else if retbleed.contains("untrained return thunk") {
        c.unknown.push(format!("retbleed: `{retbleed}`: that return thunk is not modelled here"));
    } else if its.contains("return thunk") {
        c.ret = Some(ReturnKind::ItsLower);
        c.because.push(format!(
            "indirect_target_selection `{its}`: a return whose byte is in the lower half of its line is \
             `jmp its_return_thunk`; composed for that half (in the upper half it stays `ret`: the `its-upper` rows)"
        ));
    } else if srso.starts_with("unknown") && retbleed.starts_with("unknown") {
        c.unknown.push("the return mitigations were not recorded (an older machine.csv)".into());
    } else {
        c.ret = Some(ReturnKind::Ret);
        c.because.push(format!("spec_rstack_overflow `{srso}`, retbleed `{retbleed}`: returns stay `ret`"));
    }

    // The indirect call.
    let v2 = m.spectre_v2.as_str();
    let base = if v2.contains("Retpolines") {
        Flavor::Retpoline
    } else if v2.contains("LFENCE") {
        Flavor::Lfence
    } else if its.contains("Aligned branch") {
        // A `call *%reg` whose last byte is in the lower half goes through a thunk of its own.
        Flavor::ItsThunk
    } else {
        Flavor::Indirect
    };
    let cfi_off = matches!(opt("cfi="), Some("off")) || matches!(opt("mitigations="), Some("off"));
    match (m.kernel_cfi.as_deref(), opt("cfi=")) {
        (cfg, Some(mode)) if mode.contains("fineibt") && cfg != Some("n") => {
            // FineIBT needs IBT, which the kernel does not combine with retpolines (it keeps kCFI).
            let f = match base {
                Flavor::Indirect => Flavor::Fineibt,
                Flavor::Retpoline => Flavor::KcfiRetpoline,
                other => {
                    c.unknown.push(format!("`cfi={mode}` with `{other}` is not modelled here"));
                    return c;
                }
            };
            c.indirect = Some(f);
            c.because.push(format!(
                "`cfi={mode}` on the command line, spectre_v2 `{v2}`: an indirect call is `{f}` (assumed: \
                 whether the CPU has IBT, which FineIBT needs, is not checked)"
            ));
            return c;
        }
        (Some("y"), _) if !cfi_off => {
            let f = match base {
                Flavor::Retpoline => Flavor::KcfiRetpoline,
                Flavor::Indirect => Flavor::Kcfi,
                other => {
                    c.unknown.push(format!("kCFI with `{other}` is not modelled here"));
                    return c;
                }
            };
            c.indirect = Some(f);
            c.because.push(format!(
                "spectre_v2 `{v2}`, kernel built with kCFI (the runtime mode is not in sysfs: assumed kCFI, as \
                 without IBT)"
            ));
            return c;
        }
        (Some(v), _) if v.starts_with("unknown") => {
            c.unknown.push(format!("whether kCFI checks each indirect call: {v}; composed without"));
        }
        _ => {}
    }
    c.indirect = Some(base);
    c.because.push(format!("spectre_v2: `{v2}`: an indirect call is `{base}`"));
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::dataset::Run;
    use crate::report::rows::CallsRow;

    fn machine(family: u32, v2: &str, srso: &str, cfi: &str, cmdline: &str) -> MachineRow {
        MachineRow {
            machine_id: "m".into(),
            cpu_model: "cpu".into(),
            family,
            model: 1,
            stepping: 1,
            microcode: "0x1".into(),
            kernel: "6.18".into(),
            spectre_v2: v2.into(),
            tsc_hz: 3e9,
            counters: "unavailable (x)".into(),
            rustc: "r".into(),
            callpatch_version: "0".into(),
            git_rev: "g".into(),
            date: "d".into(),
            spec_rstack_overflow: Some(srso.into()),
            retbleed: Some("Not affected".into()),
            its: Some("Not affected".into()),
            cmdline: Some(cmdline.into()),
            kernel_cfi: Some(cfi.into()),
            platform: Some("guest".into()),
        }
    }

    #[test]
    fn the_zen3_guest_of_this_fleet_is_a_retpoline_returning_through_the_srso_alias_thunk() {
        let m = machine(0x19, "Mitigation: Retpolines; IBPB: conditional", "Mitigation: Safe RET", "n", "");
        let c = compose(&m);
        assert_eq!((c.indirect, c.ret), (Some(Flavor::Retpoline), Some(ReturnKind::SrsoAlias)), "{c:?}");
        let zen2 = compose(&machine(0x17, "Mitigation: Retpolines", "Mitigation: Safe RET", "n", ""));
        assert_eq!(zen2.ret, Some(ReturnKind::Srso));
        let kcfi = compose(&machine(0x19, "Mitigation: Retpolines", "Mitigation: Safe RET", "y", ""));
        assert_eq!(kcfi.indirect, Some(Flavor::KcfiRetpoline));
        let off = compose(&machine(0x19, "Mitigation: Retpolines", "Mitigation: Safe RET", "y", "cfi=off"));
        assert_eq!(off.indirect, Some(Flavor::Retpoline));
        let fine = compose(&machine(0x19, "Mitigation: Enhanced / Automatic IBRS", "Not affected", "y", "cfi=fineibt"));
        assert_eq!(fine.indirect, Some(Flavor::Fineibt));
    }

    fn row(flavor: Flavor, scenario: &str, param: &str, ret: ReturnKind, placement: u32, ticks: f64) -> CallsRow {
        let row = crate::report::rows::test_calls_row(flavor, scenario, param, ticks, ticks / 3.0);
        CallsRow { ret: Some(ret), placement: Some(placement), ..row }
    }

    fn run_of(m: MachineRow, rows: Vec<CallsRow>) -> Run {
        let (returns, calls) = rows.into_iter().partition(|r| r.ret.unwrap().is_placed() || r.placement.unwrap() > 0);
        Run { machine: Some(m), calls, returns, ..Run::default() }
    }

    #[test]
    fn the_section_leads_with_the_saving_when_placements_separate_and_says_indistinguishable_when_not() {
        let m = machine(0x19, "Mitigation: Retpolines", "Mitigation: Safe RET", "n", "");
        let alias = ReturnKind::SrsoAlias;
        let mut rows = Vec::new();
        for p in 0..4 {
            rows.push(row(Flavor::Inline, "mono", "", alias, p, 18.0 + 0.2 * p as f64));
            rows.push(row(Flavor::Retpoline, "mono", "", alias, p, 36.0 + 0.3 * p as f64));
            // poly: overlapping the static call at one placement.
            rows.push(row(Flavor::Retpoline, "poly-random", "4", alias, p, [17.0, 19.0, 18.5, 18.2][p as usize]));
        }
        let text = section(&run_of(m.clone(), rows.clone()));
        assert!(text.contains("static call: `inline` + `srso-alias`"), "{text}");
        assert!(text.contains("| indirect call: `retpoline` + `srso-alias` | mono |"), "{text}");
        let mono = text.lines().find(|l| l.contains("| mono |") && l.contains("retpoline")).unwrap();
        assert!(mono.contains("[17.4, 18.9] over the placements"), "{mono}");
        assert!(mono.contains("no `bp` batch-1 row"), "no update cost without patch.csv: {mono}");
        let poly = text.lines().find(|l| l.contains("poly-random-4")).unwrap();
        assert!(poly.contains("indistinguishable here"), "{poly}");
        assert!(text.contains("cannot reproduce"), "{text}");
        // Three placements: layout-dependent, never a verdict.
        let few: Vec<CallsRow> = rows.into_iter().filter(|r| r.placement != Some(3)).collect();
        let text = section(&run_of(m.clone(), few));
        assert!(text.contains("layout-dependent (fewer than 4 placements)"), "{text}");
        // Separated the other way: the static call costs more, which is no saving (and not "indistinguishable").
        let cheaper: Vec<CallsRow> = (0..4)
            .flat_map(|p| {
                [
                    row(Flavor::Inline, "mono", "", alias, p, 18.0 + 0.2 * p as f64),
                    row(Flavor::Retpoline, "mono", "", alias, p, 12.0 + 0.1 * p as f64),
                ]
            })
            .collect();
        let text = section(&run_of(m, cheaper));
        let mono = text.lines().find(|l| l.contains("| mono |") && l.contains("retpoline")).unwrap();
        assert!(mono.contains("none: the static call costs 6.20 ticks more, [5.70, 6.60]"), "{mono}");
    }

    #[test]
    fn eibrs_is_a_plain_call_and_what_is_not_modelled_is_said() {
        let intel = compose(&machine(6, "Mitigation: Enhanced / Automatic IBRS", "Not affected", "unknown (x)", ""));
        assert_eq!((intel.indirect, intel.ret), (Some(Flavor::Indirect), Some(ReturnKind::Ret)), "{intel:?}");
        assert!(intel.unknown.iter().any(|u| u.contains("kCFI")), "{intel:?}");
        let mut stuff = machine(6, "Mitigation: Retpolines", "Not affected", "n", "");
        stuff.retbleed = Some("Mitigation: Stuffing".into());
        let c = compose(&stuff);
        assert_eq!((c.indirect, c.ret), (Some(Flavor::Retpoline), Some(ReturnKind::CallDepth)), "{c:?}");
        // kCFI with the call-depth retpoline thunk is not modelled: said, not guessed.
        stuff.kernel_cfi = Some("y".into());
        let c = compose(&stuff);
        assert_eq!((c.indirect, c.ret), (None, Some(ReturnKind::CallDepth)), "{c:?}");
        assert!(c.unknown.iter().any(|u| u.contains("kcfi-retpoline") && u.contains("call-depth")), "{c:?}");
        let mut its = machine(6, "Mitigation: Enhanced / Automatic IBRS; BHI: BHI_DIS_S", "Not affected", "n", "");
        its.its = Some("Mitigation: Aligned branch/return thunks".into());
        let c = compose(&its);
        assert_eq!((c.indirect, c.ret), (Some(Flavor::ItsThunk), Some(ReturnKind::ItsLower)), "{c:?}");
        assert!(c.because.iter().any(|b| b.contains("upper half")), "{c:?}");
        let mut untrained = machine(0x17, "Mitigation: Retpolines", "Not affected", "n", "");
        untrained.retbleed = Some("Mitigation: untrained return thunk; SMT vulnerable".into());
        let c = compose(&untrained);
        assert_eq!(c.ret, None);
        assert!(c.unknown.iter().any(|u| u.contains("untrained return thunk")), "{c:?}");
        // FineIBT is never combined with retpolines: the kernel keeps kCFI.
        let fine = compose(&machine(6, "Mitigation: Retpolines", "Not affected", "y", "cfi=fineibt"));
        assert_eq!(fine.indirect, Some(Flavor::KcfiRetpoline));
    }
}

/// One call+return pair's cost over the placements it was measured at, TSC ticks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    /// Median over the placements of each placement's median cost.
    pub mid: f64,
    /// Cheapest placement.
    pub lo: f64,
    /// Dearest placement.
    pub hi: f64,
    /// Placements measured.
    pub placements: usize,
}

/// Fewer placements than this and a difference of about a tick may be the layout's, not the mechanism's.
pub const MIN_PLACEMENTS: usize = 4;

/// The cost of `flavor` returning through `ret` in `scenario` (CLI spelling) at each placement
/// measured, TSC ticks, in placement order.
pub fn costs(run: &crate::report::dataset::Run, flavor: Flavor, ret: ReturnKind, scenario: &str) -> Vec<(u32, f64)> {
    let mut v: Vec<(u32, f64)> = run
        .calls
        .iter()
        .chain(&run.returns)
        .filter(|r| r.flavor == flavor && r.ret.unwrap_or(ReturnKind::Ret) == ret && r.cli_scenario() == scenario)
        .map(|r| (r.placement.unwrap_or(0), r.cycles_median))
        .filter(|(_, c)| c.is_finite() && *c > 0.0)
        .collect();
    v.sort_by_key(|x| x.0);
    v.dedup_by_key(|x| x.0);
    v
}

/// The median and range of a set of values, `None` when empty.
pub fn spread_of(mut v: Vec<f64>) -> Option<Spread> {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    (n > 0).then(|| Spread { mid: v[n / 2], lo: v[0], hi: v[n - 1], placements: n })
}

/// The cost of `flavor` returning through `ret` in `scenario` (CLI spelling) over its placements.
pub fn spread(run: &crate::report::dataset::Run, flavor: Flavor, ret: ReturnKind, scenario: &str) -> Option<Spread> {
    spread_of(costs(run, flavor, ret, scenario).into_iter().map(|x| x.1).collect())
}

/// What returning through `ret` adds to `flavor` returning with `ret`, placement by placement (each
/// difference taken at one layout), over the placements both were measured at.
pub fn extra(run: &crate::report::dataset::Run, flavor: Flavor, ret: ReturnKind, scenario: &str) -> Option<Spread> {
    let base = costs(run, flavor, ReturnKind::Ret, scenario);
    let d: Vec<f64> = costs(run, flavor, ret, scenario)
        .into_iter()
        .filter_map(|(p, c)| base.iter().find(|b| b.0 == p).map(|b| c - b.1))
        .collect();
    spread_of(d)
}

/// The "This kernel, composed" section of `summary.md`: the kernel's own lines, the composed pair for an
/// indirect call and for a static call, their costs, the saving per call and the break-even calls per
/// update (a `bp` update of one site, quiet), and what could not be determined.
pub fn section(run: &crate::report::dataset::Run) -> String {
    use crate::report::style::sig3;
    use std::fmt::Write as _;
    let mut s = String::from("### This kernel, composed\n\n");
    let Some(m) = &run.machine else {
        s.push_str("_No `machine.csv` row: the kernel's mitigations are unknown._\n\n");
        return s;
    };
    let or_unknown = |v: &Option<String>| v.clone().unwrap_or_else(|| "not recorded".into());
    let _ = writeln!(
        s,
        "Kernel `{}`, platform: {} (a hypervisor can hide CPU features: a guest may report Retpolines where the host \
         uses AutoIBRS). Its own lines: spectre_v2 `{}`; spec_rstack_overflow `{}`; retbleed `{}`; \
         indirect_target_selection `{}`; kCFI in its config `{}`; command line `{}`.\n",
        m.kernel,
        or_unknown(&m.platform),
        m.spectre_v2,
        or_unknown(&m.spec_rstack_overflow),
        or_unknown(&m.retbleed),
        or_unknown(&m.its),
        or_unknown(&m.kernel_cfi),
        m.cmdline.clone().filter(|c| !c.is_empty()).unwrap_or_else(|| "no mitigation options".into()),
    );
    let c = compose(m);
    for b in &c.because {
        let _ = writeln!(s, "- {b}");
    }
    for u in &c.unknown {
        let _ = writeln!(s, "- not determined: {u}");
    }
    s.push('\n');
    let (Some(indirect), Some(ret)) = (c.indirect, c.ret) else {
        s.push_str("_The pair this kernel executes could not be composed (above), so no comparison._\n\n");
        return s.clone() + USER_SPACE;
    };
    let ns = |t: f64| t / m.tsc_hz * 1e9;
    let fmt = |x: &Spread| {
        format!(
            "{} ticks ({} ns) [{}, {}] over {} placement(s)",
            sig3(x.mid),
            sig3(ns(x.mid)),
            sig3(x.lo),
            sig3(x.hi),
            x.placements
        )
    };
    let static_call = spread(run, Flavor::Inline, ret, "mono");
    let _ = writeln!(
        s,
        "| call + return | scenario | cost per call | saving per call by a static call | break-even calls per update |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|");
    if let Some(st) = static_call {
        let _ = writeln!(s, "| static call: `inline` + `{ret}` | mono | {} | | |", fmt(&st));
    }
    let update = run
        .callers_for(crate::report::lookup::Load::Quiet)
        .and_then(|c| run.patch_at(callpatch_vocab::Protocol::Bp.name(), 1, c))
        .map(|r| r.latency_ns_median);
    let mut missing = Vec::new();
    for scenario in ["mono", "poly-random-4"] {
        let Some(x) = spread(run, indirect, ret, scenario) else {
            missing.push(format!("`{indirect}` + `{ret}` in {scenario}"));
            continue;
        };
        let (saving, even) = match static_call {
            Some(st) => {
                let (mid, lo, hi) = (x.mid - st.mid, x.lo - st.hi, x.hi - st.lo);
                let few = x.placements.min(st.placements) < MIN_PLACEMENTS;
                let saving = if few {
                    format!("{} ticks, layout-dependent (fewer than {MIN_PLACEMENTS} placements)", sig3(mid))
                } else if lo > 0.0 {
                    format!(
                        "{} ticks ({} ns), [{}, {}] over the placements",
                        sig3(mid),
                        sig3(ns(mid)),
                        sig3(lo),
                        sig3(hi)
                    )
                } else if hi < 0.0 {
                    format!(
                        "none: the static call costs {} ticks more, [{}, {}] over the placements",
                        sig3(-mid),
                        sig3(-hi),
                        sig3(-lo)
                    )
                } else {
                    format!("indistinguishable here ({} to {} ticks over the placements)", sig3(lo), sig3(hi))
                };
                let even = match update {
                    Some(u) if !few && lo > 0.0 => {
                        format!(
                            "{} [{}, {}] (bp update of one site: {} ns)",
                            sig3(u / ns(mid)),
                            sig3(u / ns(hi)),
                            sig3(u / ns(lo)),
                            sig3(u)
                        )
                    }
                    Some(_) => "–".into(),
                    None => "no `bp` batch-1 row in patch.csv".into(),
                };
                (saving, even)
            }
            None => ("no static call row".into(), "–".into()),
        };
        let _ = writeln!(s, "| indirect call: `{indirect}` + `{ret}` | {scenario} | {} | {saving} | {even} |", fmt(&x));
    }
    s.push('\n');
    if static_call.is_none() {
        missing.push(format!("`inline` + `{ret}` in mono"));
    }
    if !missing.is_empty() {
        let _ = writeln!(
            s,
            "_Not measured in this run: {} (`callpatch calls --ret {ret} --thunk-flavor inline,{indirect}`)._\n",
            missing.join(", ")
        );
    }
    s.push_str(USER_SPACE);
    s
}

/// What a user-space measurement cannot reproduce of a kernel's mitigations.
const USER_SPACE: &str = "User space cannot reproduce what the kernel does on entry and exit: IBRS, eIBRS and \
AutoIBRS, IBPB, BHI clearing, return untraining and RSB stuffing. The costs above are those of the call and \
return sequences alone, executed in user space, where `endbr64` is a NOP (no user-mode IBT).\n\n";
