//! The timer: the time-stamp counter read between two `lfence`s, calibrated once to nanoseconds.
//!
//! On CPUs with `constant_tsc` the TSC ticks at a fixed rate whatever the core frequency (turbo,
//! power states), and with `nonstop_tsc` it keeps ticking in deep C-states. Its ticks are therefore
//! **reference cycles**, not core cycles: a 3-cycle `imul` takes fewer TSC ticks when the core turbos
//! above the TSC rate, more when it runs below it. callpatch reports TSC ticks as reference cycles
//! (`timer = tsc-ref-cycles`) and converts them to ns with the rate calibrated here; core cycles come
//! only from the hardware `cycles` counter where one exists.
//!
//! `rdtsc` is not ordered with the instructions around it; the `lfence` before it waits for every
//! earlier instruction to complete locally, the `lfence` after it keeps later instructions from
//! starting before the read (Intel SDM, RDTSC). That fixed fence cost cancels in the U/2U difference.

use std::sync::OnceLock;
use std::time::Duration;

use super::MeasureError;

/// Reads the TSC between two `lfence`s: everything before has completed, nothing after has started.
#[inline(always)]
pub fn read() -> u64 {
    use core::arch::x86_64::{_mm_lfence, _rdtsc};
    // SAFETY: lfence (SSE2) and rdtsc are part of the x86-64 baseline; they read no memory and have
    // no effect besides ordering and returning the counter. (A kernel could set CR4.TSD to fault
    // rdtsc in user space; Linux only does that under PR_SET_TSC, which callpatch never uses.)
    unsafe {
        _mm_lfence();
        let t = _rdtsc();
        _mm_lfence();
        t
    }
}

/// The TSC-related CPU flags from `/proc/cpuinfo`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TscFlags {
    /// Ticks at a constant rate across P-states (frequency changes).
    pub constant_tsc: bool,
    /// Keeps ticking in deep C-states.
    pub nonstop_tsc: bool,
}

/// Parses the `flags` line of the first processor in a `/proc/cpuinfo` text.
pub fn parse_flags(cpuinfo: &str) -> Option<TscFlags> {
    let line = cpuinfo.lines().find(|l| l.starts_with("flags"))?;
    let flags: Vec<&str> = line.split_once(':')?.1.split_whitespace().collect();
    Some(TscFlags { constant_tsc: flags.contains(&"constant_tsc"), nonstop_tsc: flags.contains(&"nonstop_tsc") })
}

/// This machine's TSC flags (read once).
pub fn flags() -> Result<TscFlags, MeasureError> {
    static FLAGS: OnceLock<Result<TscFlags, String>> = OnceLock::new();
    FLAGS
        .get_or_init(|| {
            let text = std::fs::read_to_string("/proc/cpuinfo").map_err(|e| format!("reading /proc/cpuinfo: {e}"))?;
            parse_flags(&text).ok_or_else(|| "no `flags` line in /proc/cpuinfo".to_string())
        })
        .clone()
        .map_err(MeasureError::Tsc)
}

/// Checks that TSC ticks are a clock here: `constant_tsc` and `nonstop_tsc` both present.
pub fn check_invariant() -> Result<TscFlags, MeasureError> {
    let f = flags()?;
    let mut missing = Vec::new();
    if !f.constant_tsc {
        missing.push("constant_tsc");
    }
    if !f.nonstop_tsc {
        missing.push("nonstop_tsc");
    }
    if missing.is_empty() {
        Ok(f)
    } else {
        Err(MeasureError::Tsc(format!(
            "/proc/cpuinfo lacks {}: TSC ticks would not be a fixed-rate clock",
            missing.join(" and ")
        )))
    }
}

/// The label written in the `timer` column for TSC-based figures.
pub const TIMER_LABEL: &str = "tsc-ref-cycles";

/// TSC ticks per second, calibrated once per process against `CLOCK_MONOTONIC_RAW` (the
/// unadjusted hardware clock, no NTP slewing). Fails if the TSC is not invariant.
pub fn hz() -> Result<f64, MeasureError> {
    static HZ: OnceLock<Result<f64, String>> = OnceLock::new();
    HZ.get_or_init(|| {
        check_invariant().map_err(|e| e.to_string())?;
        calibrate(Duration::from_millis(20), 3)
    })
    .clone()
    .map_err(MeasureError::Tsc)
}

/// Converts reference cycles to nanoseconds with the calibrated rate.
pub fn cycles_to_ns(cycles: f64) -> Result<f64, MeasureError> {
    Ok(cycles / hz()? * 1e9)
}

fn monotonic_raw_ns() -> Result<u64, String> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; clock_gettime writes only into it.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_RAW, &mut ts) };
    if rc != 0 {
        return Err(format!("clock_gettime(CLOCK_MONOTONIC_RAW): {}", std::io::Error::last_os_error()));
    }
    Ok(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// One (TSC, ns) pair: the clock read bracketed by two TSC reads, the tightest of a few tries kept so
/// that an interrupt between the reads does not skew the pair.
fn paired_sample() -> Result<(f64, f64), String> {
    let mut best: Option<(u64, f64, f64)> = None;
    for _ in 0..7 {
        let t0 = read();
        let ns = monotonic_raw_ns()?;
        let t1 = read();
        let width = t1.wrapping_sub(t0);
        if best.is_none_or(|b| width < b.0) {
            best = Some((width, (t0 as f64 + t1 as f64) / 2.0, ns as f64));
        }
    }
    let (_, tsc, ns) = best.expect("at least one sample");
    Ok((tsc, ns))
}

/// Measures the TSC rate over `rounds` sleeps of `span` each and returns the median rate.
fn calibrate(span: Duration, rounds: usize) -> Result<f64, String> {
    let mut rates = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let (tsc0, ns0) = paired_sample()?;
        std::thread::sleep(span);
        let (tsc1, ns1) = paired_sample()?;
        if ns1 <= ns0 || tsc1 <= tsc0 {
            return Err("TSC or CLOCK_MONOTONIC_RAW did not advance during calibration".into());
        }
        rates.push((tsc1 - tsc0) / (ns1 - ns0) * 1e9);
    }
    super::stats::median(&rates).ok_or_else(|| "no calibration rounds".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_advances() {
        let a = read();
        let b = read();
        assert!(b > a, "TSC went from {a} to {b}");
    }

    #[test]
    fn flags_parse() {
        let text = "processor\t: 0\nflags\t\t: fpu tsc constant_tsc rep_good nopl\n";
        assert_eq!(parse_flags(text), Some(TscFlags { constant_tsc: true, nonstop_tsc: false }));
        assert_eq!(parse_flags("processor : 0\n"), None);
    }

    #[test]
    fn calibrated_rate_matches_a_second_calibration() {
        // Two independent calibrations of a fixed-rate counter agree closely; a broken pairing or
        // unit error (ns vs us) would be off by orders of magnitude. Skips where the TSC is not
        // invariant (hz() is then an error, which is itself checked).
        match check_invariant() {
            Ok(_) => {
                let hz = hz().unwrap();
                assert!((1e8..1e11).contains(&hz), "TSC rate {hz} Hz is implausible");
                let again = calibrate(Duration::from_millis(10), 3).unwrap();
                assert!((again / hz - 1.0).abs() < 0.01, "calibrations disagree: {hz} vs {again}");
            }
            Err(e) => assert!(matches!(hz(), Err(MeasureError::Tsc(_))), "{e}"),
        }
    }
}
