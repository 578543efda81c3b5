//! Every measurement parameter in one plain struct (nanoBench style): the same values are written
//! into each CSV row (`unroll`, `repeats`), so any number can be traced to how it was taken.

/// How one point is measured by [`super::per_call`].
///
/// - `unroll` (U): calls per loop iteration in the [`super::Unroll::Single`] body; the
///   [`super::Unroll::Double`] body has 2U.
/// - `iterations`: loop iterations per timed run (the same for U and 2U).
/// - `repeats` (R): timed U/2U pairs; min, median and p90 are taken over these R differences.
/// - `warmup`: untimed U/2U pairs first (fault in pages, train predictors, settle the frequency).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Knobs {
    /// U: calls per loop iteration in the shorter loop (the longer one has 2U).
    pub unroll: u32,
    /// N: loop iterations per timed run.
    pub iterations: u64,
    /// R: timed U/2U pairs.
    pub repeats: u32,
    /// Untimed U/2U pairs first.
    pub warmup: u32,
}

impl Default for Knobs {
    /// The full measurement: 32 calls per iteration, 2 000 iterations, 21 repeats, 3 warm-ups.
    fn default() -> Self {
        Knobs { unroll: 32, iterations: 2_000, repeats: 21, warmup: 3 }
    }
}

impl Knobs {
    /// A fast pass (`--quick`): fewer iterations and repeats; the median is still over 7 pairs.
    pub fn quick() -> Self {
        Knobs { unroll: 16, iterations: 500, repeats: 7, warmup: 2 }
    }

    /// Checks that every knob is non-zero, so that the per-call division is defined.
    pub fn validate(&self) -> Result<(), super::MeasureError> {
        let bad = |what: &str| Err(super::MeasureError::BadKnobs(format!("{what} must be at least 1")));
        if self.unroll == 0 {
            return bad("unroll");
        }
        if self.iterations == 0 {
            return bad("iterations");
        }
        if self.repeats == 0 {
            return bad("repeats");
        }
        Ok(())
    }
}
