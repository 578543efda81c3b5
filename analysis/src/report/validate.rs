//! Checks on read: a value no measurement can produce (a cost that is not a positive finite number, a
//! count above its total, a byte offset past the line) is an error naming the file, the line and the
//! column, instead of a plot drawn from it.
//!
//! A cost that may be unmeasured is an empty cell (NaN in memory, `note` says why) and stays accepted;
//! only the text `NaN`, `inf` or a number out of range is refused. `sync_ns` is the one column whose
//! documented "unknown" is the text `NaN` (see [`PatchRow`]).

use crate::report::rows::{CallsRow, CensusOffsetRow, CensusRow, HazardRow, MachineRow, PatchRow, StressRow};

/// Why one cell of a row is impossible.
#[derive(Clone, Debug, PartialEq)]
pub struct Invalid {
    /// The column's header.
    pub column: &'static str,
    /// What is wrong with the value, e.g. `-3 is not a positive finite number`.
    pub message: String,
}

/// A row type whose values can be checked once read.
pub trait Validate {
    /// Float columns whose non-empty cells must be finite numbers (checked on the text, since an empty
    /// cell and `NaN` read back alike).
    const FINITE: &'static [&'static str];

    /// Checks the values that went through deserialisation.
    fn check(&self) -> Result<(), Invalid>;
}

/// Checks the raw text of `T::FINITE` columns of one record.
pub fn check_text<T: Validate>(record: &csv::StringRecord, headers: &csv::StringRecord) -> Result<(), Invalid> {
    for &column in T::FINITE {
        let Some(text) = headers.iter().position(|h| h == column).and_then(|i| record.get(i)) else { continue };
        let text = text.trim();
        if text.parse::<f64>().is_ok_and(|v| !v.is_finite()) {
            return Err(Invalid { column, message: format!("{text} is not a finite number") });
        }
    }
    Ok(())
}

fn invalid(column: &'static str, message: String) -> Result<(), Invalid> {
    Err(Invalid { column, message })
}

/// `v` is a positive finite number.
fn positive(column: &'static str, v: f64) -> Result<(), Invalid> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        invalid(column, format!("{v} is not a positive finite number"))
    }
}

/// `v` is NaN (an empty, unmeasured cell) or a positive finite number.
fn positive_or_blank(column: &'static str, v: f64) -> Result<(), Invalid> {
    if v.is_nan() {
        Ok(())
    } else {
        positive(column, v)
    }
}

/// `v`, when present, is a positive finite number.
fn positive_opt(column: &'static str, v: Option<f64>) -> Result<(), Invalid> {
    v.map_or(Ok(()), |v| positive(column, v))
}

/// `v`, when present, is a finite number that is not negative.
fn not_negative_opt(column: &'static str, v: Option<f64>) -> Result<(), Invalid> {
    match v {
        Some(v) if !(v.is_finite() && v >= 0.0) => invalid(column, format!("{v} is not a finite number ≥ 0")),
        _ => Ok(()),
    }
}

/// A count is at most its total.
fn at_most(column: &'static str, v: u64, total_column: &str, total: u64) -> Result<(), Invalid> {
    if v <= total {
        Ok(())
    } else {
        invalid(column, format!("{v} is more than {total_column} ({total})"))
    }
}

impl Validate for MachineRow {
    const FINITE: &'static [&'static str] = &["tsc_hz"];

    fn check(&self) -> Result<(), Invalid> {
        positive("tsc_hz", self.tsc_hz)
    }
}

impl Validate for CallsRow {
    const FINITE: &'static [&'static str] = &[
        "cycles_min",
        "cycles_median",
        "cycles_p90",
        "ns_median",
        "ratio_median",
        "ratio_lo",
        "ratio_hi",
        "core_hz_est",
        "core_cycles_median",
    ];

    fn check(&self) -> Result<(), Invalid> {
        positive_or_blank("cycles_min", self.cycles_min)?;
        positive_or_blank("cycles_median", self.cycles_median)?;
        positive_or_blank("cycles_p90", self.cycles_p90)?;
        positive_or_blank("ns_median", self.ns_median)?;
        positive_opt("ratio_median", self.ratio_median)?;
        positive_opt("ratio_lo", self.ratio_lo)?;
        positive_opt("ratio_hi", self.ratio_hi)?;
        positive_opt("core_hz_est", self.core_hz_est)?;
        positive_opt("core_cycles_median", self.core_cycles_median)?;
        if self.unroll == 0 {
            return invalid("unroll", "0 calls per iteration".into());
        }
        Ok(())
    }
}

impl Validate for PatchRow {
    const FINITE: &'static [&'static str] = &["latency_ns_min", "latency_ns_median", "latency_ns_lo", "latency_ns_hi"];

    fn check(&self) -> Result<(), Invalid> {
        if self.batch == 0 {
            return invalid("batch", "0 sites per batch".into());
        }
        positive("latency_ns_min", self.latency_ns_min)?;
        positive("latency_ns_median", self.latency_ns_median)?;
        positive_opt("latency_ns_lo", self.latency_ns_lo)?;
        positive_opt("latency_ns_hi", self.latency_ns_hi)?;
        // NaN is this column's "unknown"; anything else must be a cost.
        if !self.sync_ns.is_nan() {
            positive("sync_ns", self.sync_ns)?;
        }
        if let Some(late) = self.late_traps {
            at_most("late_traps", late, "traps", self.traps)?;
        }
        if let Some(fallback) = self.fallback {
            at_most("fallback", fallback, "batch", self.batch)?;
        }
        Ok(())
    }
}

impl Validate for StressRow {
    const FINITE: &'static [&'static str] = &["seconds", "patches_per_s"];

    fn check(&self) -> Result<(), Invalid> {
        // A crashed child's row has 0 seconds.
        not_negative_opt("seconds", Some(self.seconds))?;
        not_negative_opt("patches_per_s", self.patches_per_s)?;
        if let Some(late) = self.late_traps {
            at_most("late_traps", late, "traps", self.traps)?;
        }
        Ok(())
    }
}

impl Validate for HazardRow {
    const FINITE: &'static [&'static str] = &["torn_per_million", "seconds"];

    fn check(&self) -> Result<(), Invalid> {
        not_negative_opt("torn_per_million", self.torn_per_million)?;
        not_negative_opt("seconds", Some(self.seconds))?;
        if self.crashed && (self.patches, self.torn, self.calls) != (0, 0, 0) {
            return invalid("crashed", "a crashed writer has no counts, but patches, torn or calls is not 0".into());
        }
        Ok(())
    }
}

impl Validate for CensusRow {
    const FINITE: &'static [&'static str] = &[];

    fn check(&self) -> Result<(), Invalid> {
        let parts = [
            ("cross64_rel32", self.cross64_rel32),
            ("cross64_insn", self.cross64_insn),
            ("cross32_insn", self.cross32_insn),
            ("cross16_insn", self.cross16_insn),
            ("cross8_insn", self.cross8_insn),
            ("fallback_line", self.fallback_line),
            ("fallback_word", self.fallback_word),
        ];
        for (column, v) in parts {
            at_most(column, v, "count", self.count)?;
        }
        Ok(())
    }
}

impl Validate for CensusOffsetRow {
    const FINITE: &'static [&'static str] = &[];

    fn check(&self) -> Result<(), Invalid> {
        if self.offset_mod_64 >= 64 {
            return invalid(
                "offset_mod_64",
                format!("{} is not a byte of a 64-byte line (0..=63)", self.offset_mod_64),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_is_wrong() {
        assert_eq!(positive("cycles_median", -3.0).unwrap_err().message, "-3 is not a positive finite number");
        assert!(
            positive("x", 0.0).is_err() && positive("x", f64::INFINITY).is_err() && positive("x", f64::NAN).is_err()
        );
        assert!(positive_or_blank("x", f64::NAN).is_ok() && positive_or_blank("x", 0.0).is_err());
        assert_eq!(at_most("torn", 3, "calls", 2).unwrap_err().message, "3 is more than calls (2)");
    }
}
