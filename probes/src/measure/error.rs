//! The one error type of the measurement harness: every way a number can be refused.

use thiserror::Error;

/// Why a measurement could not be taken (or was refused as meaningless).
#[derive(Debug, Error)]
pub enum MeasureError {
    /// The thread's allowed-CPU mask could not be read or is empty.
    #[error("cannot read the allowed CPU list (sched_getaffinity): {0}")]
    NoAllowedCores(String),
    /// The requested CPU is not in the allowed list read at start-up.
    #[error("CPU {cpu} is not in this process's allowed CPU list {allowed:?}")]
    CpuNotAllowed {
        /// The CPU asked for.
        cpu: usize,
        /// The allowed list.
        allowed: Vec<usize>,
    },
    /// `sched_setaffinity` refused to pin the thread.
    #[error("pinning the thread to CPU {cpu} failed (sched_setaffinity)")]
    PinFailed {
        /// The CPU asked for.
        cpu: usize,
    },
    /// The thread was pinned but `sched_getcpu` reports another CPU.
    #[error("pinned to CPU {wanted} but sched_getcpu reports CPU {got}")]
    PinMismatch {
        /// The CPU pinned to.
        wanted: usize,
        /// The CPU the thread runs on.
        got: i64,
    },
    /// The TSC is not usable as a clock (missing `constant_tsc`/`nonstop_tsc`, or calibration failed).
    #[error("TSC unusable as a timer: {0}")]
    Tsc(String),
    /// The measurement parameters make no sense (zero unroll, zero iterations, ...).
    #[error("bad measurement knobs: {0}")]
    BadKnobs(String),
    /// The loop with 2U calls was not slower than the loop with U calls, so the difference does not
    /// measure the calls: the `run` closure ignores the unroll, or the noise swamps the signal.
    #[error(
        "non-monotonic measurement: median t(2U) = {double_median} <= median t(U) = {single_median} reference \
         cycles; the body does not scale with the unroll count, or noise dominates (raise iterations)"
    )]
    NonMonotonic {
        /// Median time of the U loop.
        single_median: f64,
        /// Median time of the 2U loop.
        double_median: f64,
    },
    /// A counter that had opened could not be read.
    #[error("reading perf counters failed: {0}")]
    CounterRead(String),
}
