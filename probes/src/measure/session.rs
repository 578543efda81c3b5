//! A counter session: one probe measured under a chosen perf event group, for `callpatch perf`.
//!
//! The requested events (default: the hardware group) are counted with the same U/2U subtraction as
//! the cycle figures, so every count is *per call*, with loop overhead and read costs cancelled. The
//! software group {task-clock, context-switches} is always measured too, in its own pass: it needs no
//! PMU, so a machine without counters (or a user denied them) still gets kernel-counted figures next
//! to the TSC reference cycles, together with the one reason the hardware events are missing.
//!
//! The time budget (`seconds`) sets the number of U/2U repeats: one pair is timed after warm-up and
//! the repeats are however many pairs fit in each pass's share (at least `knobs.repeats`).

use super::counters::{self, CounterError, CounterGroup, EventKind, EventSpec, ReadPath};
use super::harness::{measure, Counted, Measured, Unroll};
use super::{tsc, Knobs, MeasureError};

/// One event's per-call figure.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    /// The event name (`cycles`, `r00c4`, `task-clock`, ... or `tsc-ref-cycles`).
    pub event: String,
    /// Median per call, or why there is none.
    pub per_call: Counted,
    /// How it was read: `rdpmc`, `read()`, `rdtsc`, or `none`.
    pub read_path: String,
    /// Multiplexing note: empty when the group counted all the time.
    pub note: String,
}

/// What a session measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Session {
    /// The knobs actually used (`repeats` from the time budget).
    pub knobs: Knobs,
    /// TSC reference cycles per call (from the first pass).
    pub tsc: Measured,
    /// `tsc-ref-cycles` first, then the requested events, then the software events not requested.
    pub figures: Vec<Figure>,
    /// Why the requested group could not be opened, if it could not (its figures are then
    /// unavailable with this reason; see [`CounterError::remedy`]).
    pub counters_error: Option<CounterError>,
}

/// Measures `run` (see [`super::per_call`] for its contract) under `events` and the software group,
/// spending about `seconds` in the timed repeats.
pub fn counter_session(
    knobs: &Knobs,
    events: &[EventSpec],
    seconds: f64,
    run: &mut dyn FnMut(Unroll, u64),
) -> Result<Session, MeasureError> {
    knobs.validate()?;
    let software: Vec<EventSpec> =
        counters::software_events().into_iter().filter(|s| !events.iter().any(|e| e.kind == s.kind)).collect();
    let (requested, counters_error) = match CounterGroup::open(events) {
        Ok(g) => (Some(g), None),
        Err(e) => (None, Some(e)),
    };
    // If the requested group failed, its software members can still be counted in the software pass.
    let software: Vec<EventSpec> = match &counters_error {
        Some(_) => {
            events.iter().filter(|e| matches!(e.kind, EventKind::Software(_))).cloned().chain(software).collect()
        }
        None => software,
    };
    let passes = usize::from(requested.is_some()) + usize::from(!software.is_empty());
    let knobs = Knobs { repeats: repeats_for(knobs, seconds / passes.max(1) as f64, run)?, ..*knobs };

    let mut figures = Vec::new();
    let mut first: Option<Measured> = None;
    if let Some(mut g) = requested {
        let m = measure(&knobs, Some(&mut g), run)?;
        figures.extend(event_figures(events, &m));
        first = Some(m);
    } else if let Some(e) = &counters_error {
        for ev in events.iter().filter(|e| !matches!(e.kind, EventKind::Software(_))) {
            figures.push(Figure {
                event: ev.name.clone(),
                per_call: Counted::Unavailable(e.reason()),
                read_path: "none".into(),
                note: String::new(),
            });
        }
    }
    if !software.is_empty() {
        let mut g = CounterGroup::open(&software).map_err(|e| MeasureError::CounterRead(e.to_string()))?;
        let m = measure(&knobs, Some(&mut g), run)?;
        figures.extend(event_figures(&software, &m));
        first.get_or_insert(m);
    }
    let tsc_m = match first {
        Some(m) => m,
        None => measure(&knobs, None, run)?,
    };
    figures.insert(
        0,
        Figure {
            event: tsc::TIMER_LABEL.into(),
            per_call: Counted::Value(tsc_m.cycles.median),
            read_path: "rdtsc".into(),
            note: format!(
                "min {:.2}, p90 {:.2} ref cycles; {:.2} ns",
                tsc_m.cycles.min, tsc_m.cycles.p90, tsc_m.ns_median
            ),
        },
    );
    Ok(Session { knobs, tsc: tsc_m, figures, counters_error })
}

fn event_figures(events: &[EventSpec], m: &Measured) -> Vec<Figure> {
    let path = m.read_path.map_or("none".to_string(), |p: ReadPath| p.to_string());
    let note = if m.running_fraction < 1.0 {
        format!("multiplexed: counted {:.1}% of the time", 100.0 * m.running_fraction)
    } else {
        String::new()
    };
    events
        .iter()
        .zip(&m.counts)
        .map(|(e, c)| Figure {
            event: e.name.clone(),
            per_call: c.clone(),
            read_path: path.clone(),
            note: note.clone(),
        })
        .collect()
}

/// Repeats that fit in `seconds`: warm up, time one U/2U pair, divide (at least `knobs.repeats`, at
/// most one million).
fn repeats_for(knobs: &Knobs, seconds: f64, run: &mut dyn FnMut(Unroll, u64)) -> Result<u32, MeasureError> {
    if !(seconds.is_finite() && seconds >= 0.0) {
        return Err(MeasureError::BadKnobs(format!("seconds must be a non-negative number, got {seconds}")));
    }
    for _ in 0..knobs.warmup {
        run(Unroll::Single, knobs.iterations);
        run(Unroll::Double, knobs.iterations);
    }
    let t0 = tsc::read();
    run(Unroll::Single, knobs.iterations);
    run(Unroll::Double, knobs.iterations);
    let pair = tsc::read().wrapping_sub(t0).max(1) as f64;
    let fit = (seconds * tsc::hz()? / pair).floor();
    Ok((fit.min(1e6) as u32).max(knobs.repeats))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin(ticks: u64) {
        let start = tsc::read();
        while tsc::read().wrapping_sub(start) < ticks {}
    }

    #[test]
    fn session_reports_tsc_requested_and_software_figures() {
        let knobs = Knobs { unroll: 4, iterations: 20, repeats: 5, warmup: 1 };
        let events: Vec<EventSpec> =
            ["cycles", "instructions", "r00c4"].iter().map(|n| EventSpec::parse(n).unwrap()).collect();
        let s = counter_session(&knobs, &events, 0.05, &mut |u, iters| spin(300 * iters * u.calls(4))).unwrap();
        let names: Vec<&str> = s.figures.iter().map(|f| f.event.as_str()).collect();
        assert_eq!(names, ["tsc-ref-cycles", "cycles", "instructions", "r00c4", "task-clock", "context-switches"]);
        let tsc = s.figures[0].per_call.value().unwrap();
        assert!((tsc - 300.0).abs() < 30.0, "{tsc}");
        assert!(s.knobs.repeats >= 5);
        match &s.counters_error {
            Some(e) => {
                for f in &s.figures[1..4] {
                    assert_eq!(f.per_call, Counted::Unavailable(e.reason()));
                }
            }
            None => assert!(s.figures[1].per_call.value().is_some_and(|c| c > 0.0)),
        }
        let task_clock = s.figures[4].per_call.value().expect("task-clock is a software event");
        assert!(task_clock > 0.0, "{task_clock}");
        assert_eq!(s.figures[4].read_path, "read()");
    }

    #[test]
    fn software_only_request_needs_no_pmu() {
        let knobs = Knobs { unroll: 2, iterations: 10, repeats: 3, warmup: 0 };
        let events = vec![EventSpec::parse("task-clock").unwrap()];
        let s = counter_session(&knobs, &events, 0.0, &mut |u, iters| spin(200 * iters * u.calls(2))).unwrap();
        assert!(s.counters_error.is_none());
        let names: Vec<&str> = s.figures.iter().map(|f| f.event.as_str()).collect();
        assert_eq!(names, ["tsc-ref-cycles", "task-clock", "context-switches"]);
        assert_eq!(s.knobs.repeats, 3);
    }
}
