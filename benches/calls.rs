//! `cargo bench --bench calls`: cycles per call of representative flavors, mono and poly-random-4,
//! with criterion and a cycles [`Measurement`](criterion::measurement::Measurement) (core cycles
//! where the PMU allows, TSC reference cycles otherwise; the unit printed says which).
//!
//! Each criterion iteration runs the probe's loop for [`INNER`] iterations with U calls and as many
//! with 2U, and reports the difference divided by U × INNER — the U/2U method of `callpatch calls` —
//! so one criterion iteration's value is the cost of one call, loop overhead cancelled. INNER keeps
//! each timed run thousands of calls long even when criterion asks for one iteration, so the cost of
//! switching between the two loops (their sites are cold in the predictors for a moment) does not
//! land on a handful of calls. `cargo bench --bench calls -- --test` runs each
//! benchmark once (CI); `-- --quick` is criterion's short mode.

#[path = "common/cycles.rs"]
mod cycles;

use std::time::Duration;

use callpatch_probes::code::{EmitOptions, Flavor, Order, Probe, Scenario};
use callpatch_probes::measure::{self, Unroll};
use criterion::measurement::Measurement;
use criterion::Criterion;
use cycles::Cycles;

const MONO: [Flavor; 6] =
    [Flavor::Direct, Flavor::Indirect, Flavor::Retpoline, Flavor::Lfence, Flavor::Trampoline, Flavor::Inline];
/// Loop iterations per criterion iteration.
const INNER: u64 = 256;
const POLY: [Flavor; 3] = [Flavor::Indirect, Flavor::Retpoline, Flavor::Lfence];

fn bench_calls(c: &mut Criterion<Cycles>) {
    // A second reader for the subtraction inside the routine (criterion's own instance is not lent).
    let clock = Cycles::new();
    let poly = Scenario::Poly { k: 4, order: Order::Random };
    for (scenario, flavors) in [(Scenario::Mono, &MONO[..]), (poly, &POLY[..])] {
        let mut group = c.benchmark_group(format!("calls/{scenario}"));
        for &flavor in flavors {
            let probe = Probe::new(flavor, scenario, &EmitOptions::default()).expect("emitting a probe");
            probe.verify().expect("the probe calls what its scenario says");
            let calls = probe.unroll() as f64 * INNER as f64;
            group.bench_function(flavor.name(), |b| {
                b.iter_custom(|iters| {
                    let t = clock.start();
                    std::hint::black_box(probe.run(Unroll::Double, iters * INNER));
                    let double = clock.end(t);
                    let t = clock.start();
                    std::hint::black_box(probe.run(Unroll::Single, iters * INNER));
                    let single = clock.end(t);
                    (double - single) / calls
                })
            });
        }
        group.finish();
    }
}

fn main() {
    match measure::pin_current_thread(None) {
        Ok(cpu) => eprintln!("pinned to CPU {cpu}"),
        Err(e) => eprintln!("not pinned ({e}); numbers may include migrations"),
    }
    let clock = Cycles::new();
    eprintln!("unit: {} per call", clock.unit());
    let mut c = Criterion::default()
        .with_measurement(clock)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    bench_calls(&mut c);
    c.final_summary();
}
