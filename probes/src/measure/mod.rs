//! Pinned, fenced timing of call sequences, in the style of nanoBench and uarch-bench.
//!
//! # The method
//!
//! 1. **Pin** the measuring thread to one CPU ([`pin_current_thread`]); the allowed CPU list is read
//!    once, before anything is pinned, and the pin is verified with `sched_getcpu`.
//! 2. **Time with the TSC** between `lfence`s ([`tsc::read`]). TSC ticks are *reference cycles*: on a
//!    CPU with `constant_tsc`/`nonstop_tsc` they tick at a fixed rate whatever the core clock does, so
//!    they convert to ns ([`tsc::hz`], calibrated once against `CLOCK_MONOTONIC_RAW`) but are not core
//!    cycles. A core that turbos above the TSC rate does a 3-cycle `imul` in fewer than 3 ticks. Core
//!    cycles come only from the hardware `cycles` counter, where there is one ([`counters`]).
//! 3. **Two unroll counts.** The loop is timed with U calls per iteration and with 2U
//!    ([`Unroll`]); the difference divided by U × iterations is the cost of one call, with the loop
//!    overhead, the fences and the timer reads cancelled exactly rather than estimated
//!    ([`harness`]). A 2U run that is not slower than the U run is rejected as non-monotonic.
//! 4. **Repeat and keep order statistics** ([`stats`]): R interleaved U/2U pairs give R paired
//!    estimates; their median is what a call typically costs, p90 the tail. The minimum comes from
//!    the fastest U run and the fastest 2U run: interrupts, preemption and cache misses only ever add
//!    time, so each loop's fastest run is its least-disturbed one (a paired minimum would instead
//!    catch the repeat whose U run was disturbed most). Means are not reported: one interrupt would
//!    drag them.
//! 5. **Count** where the PMU allows: the same U/2U subtraction over a perf group {cycles,
//!    instructions, branches, branch-misses} gives core cycles, instructions and branch misses per
//!    call. Without a PMU (a VM without passthrough: `ENOENT`) those are
//!    [`Counted::Unavailable`] with the errno and reason, never 0.
//!
//! Every knob (U, iterations, R, warm-up) is one plain struct, [`Knobs`], written into each CSV row.
//!
//! `callpatch calls` builds on this with [`paired`]: each flavor is timed in short blocks alternating
//! with its baseline, runs disturbed by a context switch, a migration or a TSC gap are dropped
//! ([`disturb`]), block pairs whose baseline ran above its quiet-host floor are set aside ([`floor`]),
//! and the ratio comes with a 95% interval from order statistics ([`interval`]). The
//! core clock is estimated in the same run from a dependent `add` chain ([`core_clock`]).
//!
//! For outside tools: [`session`] measures a probe under any perf event group (`callpatch perf`), and
//! [`perf_map`] announces generated code in `/tmp/perf-<pid>.map` so `perf report` can name it.

pub mod core_clock;
pub mod counters;
pub mod disturb;
pub mod error;
pub mod floor;
pub mod harness;
pub mod interval;
pub mod knobs;
pub mod paired;
pub mod perf_map;
pub mod pin;
pub mod session;
pub mod stats;
pub mod tsc;

pub use counters::{hardware_counters_status, CounterError, CounterGroup, EventSpec, Reading};
pub use error::MeasureError;
pub use floor::Floor;
pub use harness::{measure, per_call, Counted, Measured, PerCall, Unroll};
pub use interval::Interval;
pub use knobs::Knobs;
pub use paired::{measure_paired, Paired, PairedKnobs, Side};
pub use perf_map::{parse_perf_map, perf_map_path, write_own_perf_map, write_perf_map, MapEntry, PerfMapError};
pub use pin::{allowed_cores, pin_current_thread};
pub use session::{counter_session, Figure, Session};
pub use stats::Summary;
