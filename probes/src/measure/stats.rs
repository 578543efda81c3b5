//! Order statistics of a sample of per-call costs.
//!
//! The minimum is the least-disturbed run (nothing but the calls plus noise that only ever adds);
//! the median is what a caller typically pays and is robust to the odd preempted run; p90 shows the
//! tail. Means are avoided: one interrupt in one run would drag them.

/// Min, median and 90th percentile of a sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// The smallest value.
    pub min: f64,
    /// The median (mean of the two middle values for an even count).
    pub median: f64,
    /// The 90th percentile.
    pub p90: f64,
}

/// Summarises `values` (NaN-free; order does not matter). Median of an even count is the mean of the
/// two middle values; p90 is the nearest-rank percentile. Returns `None` for an empty sample.
pub fn summarize(values: &[f64]) -> Option<Summary> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
    // Nearest rank: the smallest value with at least 90% of the sample at or below it.
    let rank = (0.9 * n as f64).ceil() as usize;
    let p90 = v[rank.clamp(1, n) - 1];
    Some(Summary { min: v[0], median, p90 })
}

/// The median alone (see [`summarize`]).
pub fn median(values: &[f64]) -> Option<f64> {
    summarize(values).map(|s| s.median)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_even_and_p90() {
        let s = summarize(&[5.0, 1.0, 3.0]).unwrap();
        assert_eq!((s.min, s.median, s.p90), (1.0, 3.0, 5.0));
        let s = summarize(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!((s.min, s.median), (1.0, 2.5));
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(summarize(&ten).unwrap().p90, 9.0);
        let hundred: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(summarize(&hundred).unwrap().p90, 90.0);
        assert!(summarize(&[]).is_none());
    }
}
