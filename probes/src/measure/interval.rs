//! A 95% confidence interval on a median from order statistics: distribution-free and exact.
//!
//! For n independent samples of a continuous quantity with median m, each sample lies below m with
//! probability ½, so the number below is B ~ Binomial(n, ½). With the sample sorted,
//! x₍ₗ₎ ≤ m < x₍ᵤ₎ holds exactly when l ≤ B ≤ u − 1, so `[x₍ₗ₎, x₍ᵤ₎]` with u = n + 1 − l covers m
//! with probability 1 − 2·P(B ≤ l − 1). We take the largest l whose coverage is still ≥ 95%. No
//! assumption on the shape of the distribution (heavy tails, skew from interrupts) is needed; the
//! only assumption is independence, which is why the samples fed here are *block* estimates (each
//! one the median of several runs, taken after a warm-up) rather than single consecutive runs.
//!
//! Below 6 samples even `[min, max]` covers the median with less than 95% (n = 5: 1 − 2/32 =
//! 93.75%), so there is no interval: [`median_interval`] returns `None`.

/// The coverage every interval here is built for.
pub const CONFIDENCE: f64 = 0.95;

/// Fewest samples for which [`median_interval`] gives an interval.
pub const MIN_SAMPLES: usize = 6;

/// A median and its 95% confidence interval (`lo ≤ median ≤ hi`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    /// The lower end: the l-th smallest sample.
    pub lo: f64,
    /// The sample median (mean of the two middle values for an even count).
    pub median: f64,
    /// The upper end: the (n + 1 − l)-th smallest sample.
    pub hi: f64,
    /// The number of samples.
    pub n: usize,
}

impl Interval {
    /// The half-width relative to the median: the larger of (median − lo) and (hi − median), over
    /// the median. `0.05` means "within ±5%".
    pub fn relative_half_width(&self) -> f64 {
        (self.median - self.lo).max(self.hi - self.median) / self.median.abs()
    }

    /// True when the interval reaches further than `tolerance` (relative) from the median on either side.
    pub fn wider_than(&self, tolerance: f64) -> bool {
        // NaN (a zero median) counts as wide.
        let w = self.relative_half_width();
        w.is_nan() || w > tolerance
    }
}

/// P(B ≤ k) for B ~ Binomial(n, ½), summed in log space (exact enough for any n used here).
fn binomial_half_cdf(n: usize, k: usize) -> f64 {
    let ln_half_n = n as f64 * 0.5f64.ln();
    let mut ln_choose = 0.0f64; // ln C(n, 0)
    let mut sum = 0.0;
    for i in 0..=k.min(n) {
        if i > 0 {
            ln_choose += ((n + 1 - i) as f64).ln() - (i as f64).ln();
        }
        sum += (ln_choose + ln_half_n).exp();
    }
    sum.min(1.0)
}

/// The 1-based ranks (l, u) of the 95% interval for the median of n samples, or `None` for n < 6.
pub fn median_ranks(n: usize) -> Option<(usize, usize)> {
    if n < MIN_SAMPLES {
        return None;
    }
    // Coverage 1 − 2·F(l − 1) falls as l grows; keep the largest l that still covers 95%.
    let mut l = 1;
    while l < n.div_ceil(2) && 1.0 - 2.0 * binomial_half_cdf(n, l) >= CONFIDENCE {
        l += 1;
    }
    Some((l, n + 1 - l))
}

/// The median of `values` (NaN-free, any order) and its 95% interval from order statistics; `None`
/// for fewer than [`MIN_SAMPLES`] values.
pub fn median_interval(values: &[f64]) -> Option<Interval> {
    let (l, u) = median_ranks(values.len())?;
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let median = super::stats::median(&v)?;
    Some(Interval { lo: v[l - 1], median, hi: v[u - 1], n: v.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_match_the_published_table() {
        // Conover, Practical Nonparametric Statistics, table A3 / the usual sign-test table.
        assert_eq!(median_ranks(5), None);
        assert_eq!(median_ranks(6), Some((1, 6)));
        assert_eq!(median_ranks(8), Some((1, 8)));
        assert_eq!(median_ranks(9), Some((2, 8)));
        assert_eq!(median_ranks(10), Some((2, 9)));
        assert_eq!(median_ranks(15), Some((4, 12)));
        assert_eq!(median_ranks(20), Some((6, 15)));
        assert_eq!(median_ranks(31), Some((10, 22)));
        assert_eq!(median_ranks(100), Some((40, 61)));
    }

    #[test]
    fn coverage_is_at_least_95_percent_and_one_step_narrower_is_not() {
        for n in 6..200 {
            let (l, u) = median_ranks(n).unwrap();
            assert_eq!(l + u, n + 1);
            let cover = 1.0 - 2.0 * binomial_half_cdf(n, l - 1);
            assert!(cover >= CONFIDENCE, "n={n} l={l} covers {cover}");
            if l + 1 < u {
                let narrower = 1.0 - 2.0 * binomial_half_cdf(n, l);
                assert!(narrower < CONFIDENCE, "n={n}: l={} would still cover {narrower}", l + 1);
            }
        }
    }

    #[test]
    fn a_few_wild_samples_move_neither_the_median_nor_the_interval() {
        // 15 samples near 1.00 and 3 disturbed ones (a preempted block: 5x). The interval is taken
        // between ranks 5 and 14 of 18, so up to 4 outliers on one side stay outside it.
        let mut v: Vec<f64> = (0..15).map(|i| 1.0 + 0.001 * f64::from(i - 7)).collect();
        let clean = median_interval(&v).unwrap();
        v.extend([5.0, 4.8, 6.1]);
        let dirty = median_interval(&v).unwrap();
        assert!(dirty.hi <= 1.0075 && dirty.lo >= 0.993, "{dirty:?}");
        assert!((dirty.median - clean.median).abs() < 0.003, "{clean:?} vs {dirty:?}");
        assert!(!dirty.wider_than(0.05));
        assert!(dirty.lo <= dirty.median && dirty.median <= dirty.hi);
    }

    #[test]
    fn a_spread_sample_is_wider_than_five_percent() {
        let v = [0.8, 0.9, 1.0, 1.1, 1.2, 0.85, 1.15, 0.95, 1.05];
        let i = median_interval(&v).unwrap();
        assert_eq!(i.n, 9);
        assert!(i.wider_than(0.05), "{i:?}");
        assert!(i.lo <= i.median && i.median <= i.hi);
        assert!(median_interval(&v[..5]).is_none());
    }
}
