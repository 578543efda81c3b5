//! The trade-off behind static calls, as a cost model built only from measured numbers.
//!
//! A key is called C times and updated P times. With mechanism m costing `call(m)` per call and
//! `update(m)` per update of a key with S sites, the workload costs `C·call(m) + P·update(m)`; per call
//! that is `call(m) + update(m) / R` with R = C / P, the calls per update. A mechanism with cheaper calls
//! and dearer updates (inline patching) beats one with dearer calls and cheaper updates (a trampoline,
//! a function pointer) once `R > R* = (update(a) − update(b)) / (call(b) − call(a))`.
//!
//! Inputs, all from the CSVs of one run (plus the census for the fallback fraction):
//! - call cost: `ns_median` of the flavor's `mono` row in `calls.csv` (between updates a key has one
//!   target, which is the mono case);
//! - retpoline, indirect: an update is one pointer store, which callpatch does not measure; it is drawn
//!   as free, a bound that favours these two mechanisms;
//! - trampoline: `bp` at batch 1 (the trampoline's `jmp`, patched as the kernel's
//!   `__static_call_transform` does);
//! - inline/bp, cs-prefix, aligned-only: protocol `bp`, `cs-prefix`, `aligned` at batch S, from the rows
//!   of one [`Load`]: quiet (fewest concurrent callers: a sync is a bare syscall) or busy (most callers:
//!   every sync interrupts their CPUs, the case of a key updated while its callers run);
//! - aligned-only's call cost mixes trampoline and inline by its fallback fraction f: census static call
//!   sites, else census `call rel32` sites, else the `fallback` column of `patch.csv`.
//!
//! A mechanism whose inputs are missing is left out with a note; no number is ever made up.
//!
//! Verdicts come from intervals ([`crate::report::interval`]): a call cost is `ratio × direct's cost`
//! over `[ratio_lo, ratio_hi]` (paired runs), an update cost `[latency_ns_lo, latency_ns_hi]` (else
//! min..median, noted). R* gets the interval of `(update(a) − update(b)) / (call(b) − call(a))`; where
//! the call difference's interval holds 0 the two are "indistinguishable here". A run without ratio
//! intervals (older `calls.csv`) keeps its medians but its verdicts say they have no interval.

use crate::report::dataset::{CensusBinary, Run};
use crate::report::interval::Interval;
use crate::report::lookup::Load;
use crate::report::scenario::Scenario;
use callpatch_vocab::{Flavor, Granule, Protocol};

/// Sites per key the model uses unless told otherwise.
pub const DEFAULT_SITES: u64 = 10;

/// One mechanism's measured costs.
#[derive(Clone, Debug, PartialEq)]
pub struct Mechanism {
    /// The mechanism's label (`inline/bp`, `trampoline`, `retpoline`, ...).
    pub name: &'static str,
    /// ns per call (the middle of `call`).
    pub call_ns: f64,
    /// ns per update of a key with S sites (0 when not measured, see `update_measured`).
    pub update_ns: f64,
    /// ns per call with its interval (no interval in older runs).
    pub call: Interval,
    /// ns per update with its interval (exactly 0 when not measured).
    pub update: Interval,
    /// False for pointer-based mechanisms, whose update (one store) is not measured and counted as free.
    pub update_measured: bool,
    /// Where the two numbers come from, for the summary.
    pub source: String,
}

impl Mechanism {
    /// Cost per call, updates amortised, at `calls_per_update` calls per update.
    pub fn cost_per_call(&self, calls_per_update: f64) -> f64 {
        self.call_ns + self.update_ns / calls_per_update
    }
}

/// When the mechanism with cheaper calls wins against the other.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Outcome {
    /// Wins once calls per update exceed `ratio`; `n` = ⌊ratio⌋, so "called more than n times";
    /// `interval`: R*'s 95% interval (its lower end clamped at 0), `None` in an older run.
    Above {
        /// R*, the break-even in calls per update.
        ratio: f64,
        /// ⌊R*⌋.
        n: u64,
        /// R*'s 95% interval.
        interval: Option<(f64, f64)>,
    },
    /// Cheaper calls and no dearer updates, both established by intervals: wins at any ratio.
    Always,
    /// Dearer calls, established by intervals: never wins.
    Never,
    /// The call costs' difference holds 0: they differ by at most `pm` percent of `other`'s.
    Indistinguishable {
        /// The bound, percent of `other`'s call cost.
        pm: f64,
    },
    /// An older run without intervals, and by the medians the calls are not cheaper
    /// (`cheaper_updates`: and by the medians no dearer updates, when they are): no verdict.
    Unresolved {
        /// Whether the calls are cheaper by the medians.
        cheaper_calls: bool,
    },
}

/// The break-even of `fast` (the patched mechanism) against `other`.
#[derive(Clone, Debug, PartialEq)]
pub struct BreakEven {
    /// The patched mechanism.
    pub fast: &'static str,
    /// The mechanism it is compared with.
    pub other: &'static str,
    /// What the intervals (or, in an older run, the medians) say.
    pub outcome: Outcome,
}

/// The model for one run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tradeoff {
    /// Which patch rows the update costs come from.
    pub load: Option<Load>,
    /// Concurrent callers during those patch measurements.
    pub callers: u32,
    /// S: sites per key actually used (the bp batch size measured closest to the one asked for).
    pub sites: u64,
    /// Every mechanism whose inputs were measured.
    pub mechanisms: Vec<Mechanism>,
    /// Each patched mechanism against each other one.
    pub break_evens: Vec<BreakEven>,
    /// Why a mechanism is missing, or which choice was made.
    pub notes: Vec<String>,
    /// The aligned-only fallback fraction and where it comes from.
    pub fallback: Option<(f64, String)>,
}

/// Patched mechanisms, compared against each of [`BASELINES`].
pub const PATCHED: [&str; 3] = ["inline/bp", "cs-prefix", "aligned-only"];
/// Mechanisms that never patch a call site.
pub const BASELINES: [&str; 3] = ["trampoline", "indirect", "retpoline"];

/// The break-even of `a` against `b` (see the module doc).
pub fn break_even(a: &Mechanism, b: &Mechanism) -> Outcome {
    let dc = b.call.minus(a.call);
    let du = a.update.minus(b.update);
    if !dc.known {
        // An older run: the medians alone, and no claim that needs an interval.
        return match (dc.mid > 0.0, du.mid > 0.0) {
            (true, true) => {
                let ratio = du.mid / dc.mid;
                Outcome::Above { ratio, n: ratio.floor() as u64, interval: None }
            }
            (true, false) => Outcome::Unresolved { cheaper_calls: true },
            (false, _) => Outcome::Unresolved { cheaper_calls: false },
        };
    }
    if dc.contains_zero() {
        return Outcome::Indistinguishable { pm: dc.reach_pct(b.call.mid) };
    }
    if dc.hi < 0.0 {
        return Outcome::Never;
    }
    if du.hi <= 0.0 {
        return Outcome::Always;
    }
    let ratio = (du.mid / dc.mid).max(0.0);
    let interval = du.over(dc).map(|r| (r.lo.max(0.0), r.hi));
    Outcome::Above { ratio, n: ratio.floor() as u64, interval }
}

/// A patch row's latency in ns with its interval: `[latency_ns_lo, latency_ns_hi]`, else min..median
/// (`false`: no interval column, the spread of the repeats stands in for it).
pub fn latency(r: &crate::report::rows::PatchRow) -> (Interval, bool) {
    match (r.latency_ns_lo, r.latency_ns_hi) {
        (Some(lo), Some(hi)) => match Interval::new(lo, r.latency_ns_median, hi) {
            Some(iv) => (iv, true),
            None => (Interval::exact(r.latency_ns_median), false),
        },
        _ => {
            let lo = r.latency_ns_min.min(r.latency_ns_median);
            let iv = Interval::new(lo, r.latency_ns_median, r.latency_ns_median);
            (iv.unwrap_or(Interval::exact(r.latency_ns_median)), false)
        }
    }
}

/// The fraction of sites the aligned-only policy leaves on the trampoline, from the census.
fn census_fallback(binaries: &[CensusBinary]) -> Option<(f64, String)> {
    for (kind, what) in [("static_call_site", "static call sites"), ("call_rel32", "call rel32 sites")] {
        let rows: Vec<_> =
            binaries.iter().flat_map(|b| b.kinds.iter().map(move |r| (b, r))).filter(|(_, r)| r.kind == kind).collect();
        let count: u64 = rows.iter().map(|(_, r)| r.count).sum();
        if count == 0 {
            continue;
        }
        let fallback: u64 = rows.iter().map(|(_, r)| r.fallback_line).sum();
        let mut names: Vec<&str> = rows.iter().map(|(b, _)| b.label.as_str()).collect();
        names.dedup();
        let source = format!("census, {what} of {}: {fallback} of {count}", names.join(", "));
        return Some((fallback as f64 / count as f64, source));
    }
    None
}

/// The bp batch size closest to `wanted` on a log scale (ties to the smaller).
fn closest_batch(run: &Run, wanted: u64) -> Option<u64> {
    let target = (wanted.max(1) as f64).ln();
    run.patch_quiet(Protocol::Bp.name())
        .iter()
        .map(|r| r.batch)
        .filter(|&b| b > 0)
        .min_by(|&a, &b| ((a as f64).ln() - target).abs().total_cmp(&((b as f64).ln() - target).abs()).then(a.cmp(&b)))
}

/// Builds the model for `run` with keys of (about) `wanted_sites` sites.
pub fn model(run: &Run, binaries: &[CensusBinary], wanted_sites: u64, load: Load) -> Tradeoff {
    let mut t = Tradeoff { load: Some(load), ..Tradeoff::default() };
    // Without patch rows every update is missing, and each mechanism says so below.
    let callers = run.callers_for(load).unwrap_or(0);
    t.callers = callers;
    let load_word = load.name();
    let sites = closest_batch(run, wanted_sites).unwrap_or(wanted_sites);
    if sites != wanted_sites {
        t.notes.push(format!("S = {sites}: the bp batch size measured closest to the {wanted_sites} sites asked for."));
    }
    t.sites = sites;
    // A cost that is not a positive finite number (NaN, 0) is treated as not measured.
    let usable = |v: f64| v.is_finite() && v > 0.0;
    let call = |flavor: Flavor| run.cost_ns(flavor, Scenario::Mono).filter(|v| usable(v.mid));
    let update = |protocol: Protocol, batch: u64| {
        let r = run.patch_at(protocol.name(), batch, callers).filter(|r| usable(r.latency_ns_median))?;
        Some(latency(r))
    };
    let mut min_median = false;
    let mut note_latency = |(iv, measured): (Interval, bool)| {
        min_median |= !measured;
        iv
    };
    let missing = |t: &mut Tradeoff, name: &str, what: String| t.notes.push(format!("{name} left out: {what}."));

    for (name, flavor) in [("retpoline", Flavor::Retpoline), ("indirect", Flavor::Indirect)] {
        match call(flavor) {
            Some(c) => t.mechanisms.push(Mechanism {
                name,
                call_ns: c.mid,
                update_ns: 0.0,
                call: c,
                update: Interval::exact(0.0),
                update_measured: false,
                source: format!("call: `{flavor}` mono; update: one pointer store, not measured, counted as free"),
            }),
            None => missing(&mut t, name, format!("no `{flavor}` mono row in calls.csv")),
        }
    }
    let tramp_call = call(Flavor::Trampoline);
    match (tramp_call, update(Protocol::Bp, 1)) {
        (Some(c), Some(u)) => t.mechanisms.push(Mechanism {
            name: "trampoline",
            call_ns: c.mid,
            update_ns: u.0.mid,
            call: c,
            update: note_latency(u),
            update_measured: true,
            source: "call: `trampoline` mono; update: `bp` batch 1 (the trampoline's jmp)".into(),
        }),
        (None, _) => missing(&mut t, "trampoline", "no `trampoline` mono row in calls.csv".into()),
        (_, None) => missing(&mut t, "trampoline", format!("no {load_word} `bp` batch-1 row in patch.csv")),
    }
    let inline_call = call(Flavor::Inline);
    for (name, flavor, protocol) in
        [("inline/bp", Flavor::Inline, Protocol::Bp), ("cs-prefix", Flavor::CsInline, Protocol::CsPrefix)]
    {
        match (call(flavor), update(protocol, sites)) {
            (Some(c), Some(u)) => t.mechanisms.push(Mechanism {
                name,
                call_ns: c.mid,
                update_ns: u.0.mid,
                call: c,
                update: note_latency(u),
                update_measured: true,
                source: format!("call: `{flavor}` mono; update: `{protocol}` batch {sites}"),
            }),
            (None, _) => missing(&mut t, name, format!("no `{flavor}` mono row in calls.csv")),
            (_, None) => missing(&mut t, name, format!("no {load_word} `{protocol}` batch-{sites} row in patch.csv")),
        }
    }
    let fallback = census_fallback(binaries).or_else(|| {
        let r = run.patch_at(Protocol::Aligned { granule: Granule::Line }.name(), sites, callers)?;
        let fb = r.fallback? as f64;
        Some((fb / r.batch.max(1) as f64, format!("patch.csv, aligned batch {sites}: {fb} fell back")))
    });
    t.fallback = fallback.clone();
    match (inline_call, tramp_call, update(Protocol::Aligned { granule: Granule::Line }, sites), fallback) {
        (Some(ci), Some(ct), Some(u), Some((f, from))) => t.mechanisms.push(Mechanism {
            name: "aligned-only",
            call_ns: f * ct.mid + (1.0 - f) * ci.mid,
            update_ns: u.0.mid,
            call: ct.scale(f).plus(ci.scale(1.0 - f)),
            update: note_latency(u),
            update_measured: true,
            source: format!(
                "call: {:.2}% of sites on `trampoline`, the rest `inline` ({from}); update: `aligned` batch {sites}",
                f * 100.0
            ),
        }),
        (None, _, _, _) | (_, None, _, _) => {
            missing(&mut t, "aligned-only", "needs both `inline` and `trampoline` mono rows in calls.csv".into())
        }
        (_, _, None, _) => {
            missing(&mut t, "aligned-only", format!("no {load_word} `aligned` batch-{sites} row in patch.csv"))
        }
        (_, _, _, None) => missing(
            &mut t,
            "aligned-only",
            "no measured fallback fraction (no census.csv, and no `fallback` column in patch.csv)".into(),
        ),
    }

    if min_median {
        t.notes.push(
            "patch.csv has no latency interval (latency_ns_lo, latency_ns_hi): update costs span min..median of the \
             repeats instead."
                .into(),
        );
    }
    for fast in PATCHED {
        for other in BASELINES {
            let a = t.mechanisms.iter().find(|m| m.name == fast);
            let b = t.mechanisms.iter().find(|m| m.name == other);
            if let (Some(a), Some(b)) = (a, b) {
                t.break_evens.push(BreakEven { fast, other, outcome: break_even(a, b) });
            }
        }
    }
    t
}

impl Tradeoff {
    /// The mechanism called `name`, if its inputs were all measured.
    pub fn mechanism(&self, name: &str) -> Option<&Mechanism> {
        self.mechanisms.iter().find(|m| m.name == name)
    }

    /// The break-even of `fast` against `other`, if both are present.
    pub fn break_even(&self, fast: &str, other: &str) -> Option<Outcome> {
        self.break_evens.iter().find(|b| b.fast == fast && b.other == other).map(|b| b.outcome)
    }
}

/// How the summary names a mechanism as the object of a comparison.
pub fn object(name: &str) -> &str {
    match name {
        "trampoline" => "the trampoline",
        "indirect" => "an indirect call",
        "retpoline" => "a retpoline",
        o => o,
    }
}

/// Said of a verdict computed from medians alone.
pub const NO_INTERVAL: &str = "no interval (older run)";

/// The sentence the summary states for a break-even.
pub fn sentence(b: &BreakEven, sites: u64) -> String {
    let other = object(b.other);
    match b.outcome {
        Outcome::Above { n, interval: Some((lo, hi)), .. } => format!(
            "{} beats {other} once a key with {sites} sites is called more than {n} times per update on this machine \
             (95% interval {}–{}).",
            b.fast,
            lo.floor() as u64,
            if hi.is_finite() { format!("{}", hi.ceil() as u64) } else { "∞".into() }
        ),
        Outcome::Above { n, interval: None, .. } => format!(
            "{} beats {other} once a key with {sites} sites is called more than {n} times per update on this machine \
             — by the medians: {NO_INTERVAL}.",
            b.fast
        ),
        Outcome::Always => format!("{} beats {other} at any number of calls per update on this machine.", b.fast),
        Outcome::Never => {
            format!("{} never beats {other} on this machine: its calls are dearer, beyond their intervals.", b.fast)
        }
        Outcome::Indistinguishable { pm } => format!(
            "{} and {other}: their calls are indistinguishable here (±{}%), so no number of calls per update \
             separates them; only the update costs differ.",
            b.fast,
            crate::report::style::sig2(pm)
        ),
        Outcome::Unresolved { cheaper_calls: false } => {
            format!("{}'s calls are not cheaper than {other}'s by the medians — {NO_INTERVAL}, so no verdict.", b.fast)
        }
        Outcome::Unresolved { cheaper_calls: true } => format!(
            "{} has cheaper calls and no dearer updates than {other} by the medians — {NO_INTERVAL}: no verdict.",
            b.fast
        ),
    }
}

/// The table cell for a break-even.
pub fn cell(o: Option<Outcome>) -> String {
    match o {
        Some(Outcome::Above { n, interval: Some((lo, hi)), .. }) => {
            format!(
                "> {n} [{}, {}]",
                lo.floor() as u64,
                if hi.is_finite() { format!("{}", hi.ceil() as u64) } else { "∞".into() }
            )
        }
        Some(Outcome::Above { n, interval: None, .. }) => format!("> {n} (no interval)"),
        Some(Outcome::Always) => "always".into(),
        Some(Outcome::Never) => "never".into(),
        Some(Outcome::Indistinguishable { pm }) => format!("indistinguishable (±{}%)", crate::report::style::sig2(pm)),
        Some(Outcome::Unresolved { .. }) => "no verdict (no interval)".into(),
        None => "–".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &'static str, call_ns: f64, update_ns: f64) -> Mechanism {
        Mechanism {
            name,
            call_ns,
            update_ns,
            call: Interval::point(call_ns),
            update: Interval::point(update_ns),
            update_measured: true,
            source: String::new(),
        }
    }

    /// A mechanism whose call cost has the interval `call` and whose update is `update`, measured.
    fn mi(name: &'static str, call: (f64, f64, f64), update: (f64, f64, f64)) -> Mechanism {
        let call = Interval::new(call.0, call.1, call.2).unwrap();
        let update = Interval::new(update.0, update.1, update.2).unwrap();
        Mechanism {
            name,
            call_ns: call.mid,
            update_ns: update.mid,
            call,
            update,
            update_measured: true,
            source: String::new(),
        }
    }

    #[test]
    fn break_even_with_intervals() {
        // Calls 1.0 ± 0.05 vs 1.5 ± 0.05: difference [0.4, 0.6]; updates 66 µs ± 1 vs 64 µs ± 1: [0, 4000].
        let inline = mi("inline/bp", (0.95, 1.0, 1.05), (65_000.0, 66_000.0, 67_000.0));
        let tramp = mi("trampoline", (1.45, 1.5, 1.55), (63_000.0, 64_000.0, 65_000.0));
        let Outcome::Above { ratio, n, interval: Some((lo, hi)) } = break_even(&inline, &tramp) else { panic!() };
        assert_eq!((ratio, n), (4000.0, 4000));
        assert!(lo == 0.0 && (hi - 10_000.0).abs() < 1e-6, "{lo} {hi}");
        // Overlapping calls: indistinguishable, however different the updates.
        let close = mi("trampoline", (0.98, 1.02, 1.08), (1_000.0, 2_000.0, 3_000.0));
        let Outcome::Indistinguishable { pm } = break_even(&inline, &close) else { panic!() };
        assert!((pm - 0.13 / 1.02 * 100.0).abs() < 1e-9, "{pm}");
        assert_eq!(break_even(&tramp, &inline), Outcome::Never);
        let free = mi("indirect", (1.45, 1.5, 1.55), (0.0, 0.0, 0.0));
        assert_eq!(break_even(&mi("x", (0.9, 1.0, 1.1), (0.0, 0.0, 0.0)), &free), Outcome::Always);
    }

    #[test]
    fn break_even_is_the_crossing_of_the_two_cost_lines() {
        let inline = m("inline/bp", 0.5, 150_000.0);
        let tramp = m("trampoline", 0.75, 120_000.0);
        let Outcome::Above { ratio, n, interval: None } = break_even(&inline, &tramp) else { panic!() };
        assert_eq!(ratio, 120_000.0);
        assert_eq!(n, 120_000);
        assert_eq!(inline.cost_per_call(ratio), tramp.cost_per_call(ratio));
        // "more than n times": at n + 1 calls per update inline is cheaper, at n it is not.
        assert!(inline.cost_per_call((n + 1) as f64) < tramp.cost_per_call((n + 1) as f64));
        assert!(inline.cost_per_call(n as f64) >= tramp.cost_per_call(n as f64));
    }

    /// A run read back from synthetic CSVs (patch.csv as text in the patcher's full shape, so this
    /// test does not depend on which columns `PatchRow` has).
    fn run(calls: &[(&str, f64)], patches: &[(&str, u64, f64)]) -> Run {
        use crate::report::rows::{write_csv, CallsRow};
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<CallsRow> = calls
            .iter()
            .map(|&(flavor, ns)| crate::report::rows::test_calls_row(flavor.parse().unwrap(), "mono", "", ns, ns))
            .collect();
        write_csv(&dir.path().join("calls.csv"), &rows).unwrap();
        let mut text = String::from(
            "machine_id,protocol,batch,syncs,latency_ns_min,latency_ns_median,traps,callers,method,sync_ns,fallback,late_traps\n",
        );
        for (protocol, batch, ns) in patches {
            text += &format!("m,{protocol},{batch},3,{ns},{ns},0,0,alias,20000,0,0\n");
        }
        std::fs::write(dir.path().join("patch.csv"), text).unwrap();
        let mut data = crate::report::dataset::load(&[dir.path().to_path_buf()]).unwrap();
        data.runs.remove(0)
    }

    #[test]
    fn model_uses_the_closest_measured_batch_and_skips_unusable_numbers() {
        let r = run(
            &[("trampoline", 1.5), ("inline", 1.0), ("indirect", f64::NAN)],
            &[("bp", 1, 64_000.0), ("bp", 8, 66_000.0), ("bp", 100, 80_000.0)],
        );
        let t = model(&r, &[], 10, Load::Quiet);
        assert_eq!(t.sites, 8);
        assert!(t.notes.iter().any(|n| n.starts_with("S = 8:")), "{:?}", t.notes);
        assert_eq!(t.mechanism("inline/bp").unwrap().update_ns, 66_000.0);
        assert!(t.mechanism("indirect").is_none(), "NaN cost is not a measurement");
        assert_eq!(
            t.break_even("inline/bp", "trampoline"),
            Some(Outcome::Above { ratio: 4000.0, n: 4000, interval: None })
        );
        assert!(t.notes.iter().any(|n| n.starts_with("aligned-only left out")), "{:?}", t.notes);
    }

    #[test]
    fn fractional_break_even_floors() {
        let a = m("inline/bp", 1.0, 1000.0);
        let b = m("indirect", 4.0, 0.0);
        assert_eq!(break_even(&a, &b), Outcome::Above { ratio: 1000.0 / 3.0, n: 333, interval: None });
        // Without intervals no "never" and no "always": the medians alone decide nothing.
        assert_eq!(break_even(&b, &a), Outcome::Unresolved { cheaper_calls: false });
        assert_eq!(break_even(&m("x", 1.0, 0.0), &b), Outcome::Unresolved { cheaper_calls: true });
    }
}
