//! A criterion [`Measurement`] in cycles: core cycles from the hardware `cycles` counter where the
//! PMU allows (perf-event2 through `callpatch_probes::measure::counters`), else TSC reference cycles
//! (`lfence; rdtsc; lfence`). Which one is in use is in the unit criterion prints (`cycles` or
//! `ref-cycles`), so a number is never passed off as the other kind.
//!
//! Values are `f64` so a bench may subtract two readings (the U/2U method) and keep the sign of the
//! noise instead of clamping it away.

use std::cell::RefCell;

use callpatch_probes::measure::counters::{CounterGroup, EventSpec};
use callpatch_probes::measure::tsc;
use criterion::measurement::{Measurement, ValueFormatter};
use criterion::Throughput;

/// Where the counts come from.
enum Source {
    /// The `cycles` hardware event of this thread, user space only.
    Core(RefCell<CounterGroup>),
    /// TSC ticks (reference cycles: a fixed rate, not the core clock).
    Tsc,
}

/// Cycles as a criterion measurement; see the module docs.
pub struct Cycles {
    source: Source,
    formatter: Unit,
}

impl Cycles {
    /// Opens the hardware `cycles` counter, or falls back to the TSC and says why on stderr.
    pub fn new() -> Cycles {
        let opened = EventSpec::parse("cycles").and_then(|spec| {
            let mut g = CounterGroup::open(&[spec])?;
            g.enable()?;
            g.read()?;
            Ok(g)
        });
        match opened {
            Ok(g) => Cycles { source: Source::Core(RefCell::new(g)), formatter: Unit("cycles") },
            Err(e) => {
                eprintln!("hardware cycles unavailable ({}); measuring TSC reference cycles", e.reason());
                Cycles { source: Source::Tsc, formatter: Unit("ref-cycles") }
            }
        }
    }

    /// `cycles` (core, from the PMU) or `ref-cycles` (TSC).
    pub fn unit(&self) -> &'static str {
        self.formatter.0
    }

    fn now(&self) -> u64 {
        match &self.source {
            Source::Core(g) => {
                // The group was read successfully when opened; a later failure is a broken PMU.
                g.borrow_mut().read().expect("reading the cycles counter").values[0]
            }
            Source::Tsc => tsc::read(),
        }
    }
}

impl Measurement for Cycles {
    type Intermediate = u64;
    type Value = f64;

    fn start(&self) -> u64 {
        self.now()
    }

    fn end(&self, start: u64) -> f64 {
        self.now().wrapping_sub(start) as f64
    }

    fn add(&self, a: &f64, b: &f64) -> f64 {
        a + b
    }

    fn zero(&self) -> f64 {
        0.0
    }

    fn to_f64(&self, v: &f64) -> f64 {
        *v
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        &self.formatter
    }
}

/// Prints values unscaled, in the measurement's unit.
struct Unit(&'static str);

impl ValueFormatter for Unit {
    fn scale_values(&self, _typical: f64, _values: &mut [f64]) -> &'static str {
        self.0
    }

    fn scale_throughputs(&self, _typical: f64, throughput: &Throughput, values: &mut [f64]) -> &'static str {
        let per = match throughput {
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) => *n as f64,
            Throughput::Elements(n) | Throughput::ElementsAndBytes { elements: n, .. } => *n as f64,
            Throughput::Bits(n) => *n as f64,
        };
        for v in values {
            *v = per / *v;
        }
        "per cycle"
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        self.0
    }
}
