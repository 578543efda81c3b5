//! `--seconds`: a time budget given as a number of seconds, checked where it is read, so that no later
//! `Duration` conversion or `Instant + Duration` can panic on it.

use std::time::{Duration, Instant};

/// `s` as a `Duration` that a deadline `now + it` can be computed for: a finite number, positive
/// (or zero when `zero_ok`), not so large that the deadline overflows. An error is one line naming
/// the option and the value.
pub fn budget(s: f64, zero_ok: bool) -> anyhow::Result<Duration> {
    let least = if zero_ok { "a non-negative" } else { "a positive" };
    if !(s.is_finite() && (s > 0.0 || (zero_ok && s == 0.0))) {
        anyhow::bail!("--seconds must be {least} number, got {s}");
    }
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| Instant::now().checked_add(*d).is_some())
        .ok_or_else(|| anyhow::anyhow!("--seconds {s:e} is too long: no clock deadline lies that far ahead"))
}

#[cfg(test)]
mod tests {
    use super::budget;

    #[test]
    fn refuses_what_a_duration_or_deadline_cannot_hold() {
        assert_eq!(budget(1.5, false).unwrap().as_millis(), 1500);
        assert!(budget(0.0, true).is_ok() && budget(0.0, false).is_err());
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            assert!(budget(bad, true).unwrap_err().to_string().contains("must be a non-negative number"), "{bad}");
        }
        for huge in [1e19, 1e30] {
            assert!(budget(huge, false).unwrap_err().to_string().contains("is too long"), "{huge}");
        }
    }
}
