//! Interval arithmetic for the verdicts of the summary and the plots: a measured value with its 95%
//! interval, carried through the few operations a verdict needs (scale, difference, quotient), each
//! bound by the worst case of its operands' bounds. Treating the operands as independent makes the
//! result wider than a joint analysis would (two ratios to the same direct call share its noise), so
//! "indistinguishable" errs towards caution, never towards a verdict the data do not support.
//!
//! A value without an interval (older runs, whose `calls.csv` has no `ratio_lo`/`ratio_hi`) is
//! [`Interval::point`] with `known: false`; anything computed from it stays unknown, and the summary
//! says "no interval (older run)" rather than stating a verdict.

/// A value `mid` with its interval `[lo, hi]`; `known` is false when the bounds were not measured (a
/// point standing in for an interval).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    /// Lower end.
    pub lo: f64,
    /// The value (a median).
    pub mid: f64,
    /// Upper end.
    pub hi: f64,
    /// Whether `lo` and `hi` were measured (false: all three are the one known value).
    pub known: bool,
}

impl Interval {
    /// A measured value with its interval; `None` unless all three are finite and `lo ≤ mid ≤ hi`.
    pub fn new(lo: f64, mid: f64, hi: f64) -> Option<Interval> {
        let ok = lo.is_finite() && mid.is_finite() && hi.is_finite() && lo <= mid && mid <= hi;
        ok.then_some(Interval { lo, mid, hi, known: true })
    }

    /// A value whose interval was not measured.
    pub fn point(v: f64) -> Interval {
        Interval { lo: v, mid: v, hi: v, known: false }
    }

    /// An exact value (a constant, or a baseline that every compared value is a ratio to).
    pub fn exact(v: f64) -> Interval {
        Interval { lo: v, mid: v, hi: v, known: true }
    }

    /// `self × k` for `k ≥ 0`.
    pub fn scale(self, k: f64) -> Interval {
        Interval { lo: self.lo * k, mid: self.mid * k, hi: self.hi * k, known: self.known }
    }

    /// `self + other`.
    pub fn plus(self, other: Interval) -> Interval {
        Interval {
            lo: self.lo + other.lo,
            mid: self.mid + other.mid,
            hi: self.hi + other.hi,
            known: self.known && other.known,
        }
    }

    /// `self − other`: the lowest is self's lowest minus other's highest.
    pub fn minus(self, other: Interval) -> Interval {
        Interval {
            lo: self.lo - other.hi,
            mid: self.mid - other.mid,
            hi: self.hi - other.lo,
            known: self.known && other.known,
        }
    }

    /// `self ÷ other` when `other` lies wholly above 0 (else `None`: the quotient is unbounded).
    pub fn over(self, other: Interval) -> Option<Interval> {
        if other.lo <= 0.0 || !other.lo.is_finite() {
            return None;
        }
        let q = [self.lo / other.lo, self.lo / other.hi, self.hi / other.lo, self.hi / other.hi];
        let lo = q.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = q.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some(Interval { lo, mid: self.mid / other.mid, hi, known: self.known && other.known })
    }

    /// The interval holds 0: the sign of the value is not established.
    pub fn contains_zero(self) -> bool {
        self.lo <= 0.0 && self.hi >= 0.0
    }

    /// The farthest bound from 0 relative to `reference`, in percent: an interval around 0 says the
    /// value is within `±x%` of `reference`.
    pub fn reach_pct(self, reference: f64) -> f64 {
        if reference == 0.0 || !reference.is_finite() {
            return f64::INFINITY;
        }
        100.0 * self.lo.abs().max(self.hi.abs()) / reference.abs()
    }

    /// Half the interval's width relative to `reference`, in percent (`±x%`).
    pub fn half_width_pct(self, reference: f64) -> f64 {
        if reference == 0.0 || !reference.is_finite() {
            return f64::INFINITY;
        }
        100.0 * (self.hi - self.lo) / 2.0 / reference.abs()
    }
}

/// Whether `a` is below, above or not distinguishable from `b`, from their difference's interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Order {
    /// `a < b`: the whole interval of `b − a` lies above 0.
    Below,
    /// `a > b`.
    Above,
    /// The interval of `b − a` holds 0; `pm`: the two differ by at most this many percent of `b`.
    Indistinguishable {
        /// Half-width of the overlap, percent of `b`.
        pm: f64,
    },
    /// At least one side has no interval; `a_mid < b_mid` is all that is known.
    Unknown {
        /// `a_mid < b_mid`.
        below: bool,
    },
}

/// Compares `a` with `b` (see [`Order`]).
pub fn compare(a: Interval, b: Interval) -> Order {
    let d = b.minus(a);
    if !d.known {
        return Order::Unknown { below: d.mid > 0.0 };
    }
    if d.contains_zero() {
        Order::Indistinguishable { pm: d.reach_pct(b.mid) }
    } else if d.lo > 0.0 {
        Order::Below
    } else {
        Order::Above
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(lo: f64, mid: f64, hi: f64) -> Interval {
        Interval::new(lo, mid, hi).unwrap()
    }

    #[test]
    fn new_rejects_what_is_not_an_interval() {
        assert!(Interval::new(2.0, 1.0, 3.0).is_none());
        assert!(Interval::new(f64::NAN, 1.0, 3.0).is_none());
        assert!(Interval::new(1.0, 1.0, f64::INFINITY).is_none());
        assert!(Interval::new(1.0, 1.0, 1.0).is_some());
    }

    #[test]
    fn difference_takes_the_far_bounds() {
        let d = iv(9.0, 10.0, 11.0).minus(iv(1.0, 2.0, 4.0));
        assert_eq!((d.lo, d.mid, d.hi), (5.0, 8.0, 10.0));
        assert!(!d.contains_zero());
        assert!(iv(1.0, 2.0, 3.0).minus(iv(1.5, 2.5, 3.5)).contains_zero());
    }

    #[test]
    fn quotient_over_a_positive_interval_and_none_over_zero() {
        let q = iv(100.0, 200.0, 300.0).over(iv(1.0, 2.0, 4.0)).unwrap();
        assert_eq!((q.lo, q.mid, q.hi), (25.0, 100.0, 300.0));
        assert!(iv(1.0, 2.0, 3.0).over(iv(-1.0, 1.0, 2.0)).is_none());
        assert!(iv(1.0, 2.0, 3.0).over(iv(0.0, 1.0, 2.0)).is_none());
    }

    #[test]
    fn scale_and_unknown_propagate() {
        let s = iv(0.9, 1.0, 1.1).scale(10.0);
        assert!((s.lo - 9.0).abs() < 1e-12 && (s.hi - 11.0).abs() < 1e-12 && s.known);
        let p = Interval::point(3.0);
        assert!(!p.plus(s).known && !s.minus(p).known);
        assert!(Interval::exact(3.0).minus(s).known);
    }

    #[test]
    fn compare_says_indistinguishable_when_the_difference_holds_zero() {
        assert_eq!(compare(iv(0.9, 1.0, 1.1), iv(1.5, 2.0, 2.5)), Order::Below);
        assert_eq!(compare(iv(1.5, 2.0, 2.5), iv(0.9, 1.0, 1.1)), Order::Above);
        // b − a = [−0.1, 0.1] around b = 1.0: ±10%.
        let Order::Indistinguishable { pm } = compare(iv(0.95, 1.0, 1.05), iv(0.95, 1.0, 1.05)) else { panic!() };
        assert!((pm - 10.0).abs() < 1e-9, "{pm}");
        assert_eq!(compare(Interval::point(1.0), Interval::point(2.0)), Order::Unknown { below: true });
    }

    #[test]
    fn half_width_is_relative_and_guarded() {
        assert!((iv(0.9, 1.0, 1.1).half_width_pct(1.0) - 10.0).abs() < 1e-9);
        assert!(iv(0.9, 1.0, 1.1).half_width_pct(0.0).is_infinite());
    }
}
