//! A baseline's floor: the per-call cost it shows when nothing else contends for its core.
//!
//! On a shared host the core a guest's vCPU runs on is not its own. Measured on the 2-vCPU AMD EPYC
//! guest this suite was built on, the same `direct mono` probe, timed back to back for a minute,
//! costs either 4.0 TSC ticks per call (a tight cluster, ±2%) or 4.7–6.5 (median ~5.3), switching
//! every few hundred milliseconds to seconds, with no switch, migration or gap to show it: the
//! signature of a busy SMT sibling or host neighbour that shares the front end. Flavors do not slow
//! down alike (a front-end-bound direct call +30%, a retpoline, whose cost is a pipeline refill, +10%),
//! so the *ratio* changes with the host's state: a trampoline measures 1.20× direct in the quiet state
//! and 1.3–1.5× in the contended one, and a row measured during one or the other differs run to run by
//! far more than its interval.
//!
//! Pairing cannot remove this (both sides are hit, unequally); what can is to measure in the quiet
//! state only. The baseline is the same probe for every row of a run, so its quiet cost can be
//! learned: the floor is the lowest *cluster* of its clean block estimates so far in the run, the
//! smallest estimate x with at least [`Floor::CLUSTER`] estimates (and at least 1 in
//! [`Floor::SHARE`] of all) within `x × (1 + CLUSTER_WIDTH)`. A cluster, not the minimum: one spurious
//! low estimate cannot set it, and a baseline whose estimates spread continuously (a 1024-site loop
//! that overflows the L1i spreads by ±5%) does not see its floor slide into the extreme tail as
//! estimates accumulate. A block pair whose baseline ran more than a tolerance above the floor was
//! measured in the contended state and is discarded ([`super::paired`]); a row that finds no quiet
//! block pair within its budget says so instead of reporting the contended ratio.

/// Every clean block estimate a baseline has shown (TSC ticks per call), sorted, and the floor.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Floor {
    sorted: Vec<f64>,
    floor: Option<f64>,
}

impl Floor {
    /// Fewest estimates in the floor's cluster.
    pub const CLUSTER: usize = 5;
    /// The cluster holds at least one in SHARE of all estimates seen.
    pub const SHARE: usize = 50;
    /// The cluster's relative width.
    pub const CLUSTER_WIDTH: f64 = 0.025;

    /// A floor that has seen nothing.
    pub fn new() -> Self {
        Floor::default()
    }

    /// Records one clean baseline block estimate (non-finite or non-positive values are ignored).
    pub fn observe(&mut self, estimate: f64) {
        if !(estimate.is_finite() && estimate > 0.0) {
            return;
        }
        let at = self.sorted.partition_point(|&x| x <= estimate);
        self.sorted.insert(at, estimate);
        let need = Floor::CLUSTER.max(self.sorted.len().div_ceil(Floor::SHARE));
        self.floor =
            self.sorted.windows(need).find(|w| w[need - 1] <= w[0] * (1.0 + Floor::CLUSTER_WIDTH)).map(|w| w[0]);
    }

    /// The floor, once a cluster exists.
    pub fn value(&self) -> Option<f64> {
        self.floor
    }

    /// Estimates seen, and how many of them lie more than `tolerance` above the floor (0 without a
    /// floor): the share of the run the host spent contending for this core, as the baseline saw it.
    pub fn above(&self, tolerance: f64) -> (usize, usize) {
        let n = self.sorted.len();
        let at = self.floor.map_or(n, |f| self.sorted.partition_point(|&x| x <= f * (1.0 + tolerance)));
        (n, n - at)
    }

    /// True when `estimate` is within `tolerance` (relative) above the floor, or no floor is known yet.
    pub fn admits(&self, estimate: f64, tolerance: f64) -> bool {
        self.floor.is_none_or(|f| estimate <= f * (1.0 + tolerance))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_is_the_lowest_cluster_and_wild_low_values_cannot_set_it() {
        let mut f = Floor::new();
        // The contended state first: its own cluster is the floor until a quieter one appears.
        for x in [5.3, 5.38, 5.4, 5.35, 5.32, 6.1] {
            f.observe(x);
        }
        assert_eq!(f.value(), Some(5.3));
        // Spurious low estimates (a timer glitch in a U run) are not a cluster.
        for x in [0.5, 2.0, 3.1, f64::NAN, -1.0] {
            f.observe(x);
        }
        assert_eq!(f.value(), Some(5.3), "{f:?}");
        // The quiet state: five estimates within 2.5% of 4.0.
        for x in [4.02, 4.0, 4.05, 4.03, 4.01] {
            f.observe(x);
        }
        assert_eq!(f.value(), Some(4.0), "{f:?}");
        assert!(f.admits(4.2, 0.05) && !f.admits(4.3, 0.05));
        assert_eq!(f.above(0.05), (14, 6), "the six contended estimates");
    }

    #[test]
    fn a_continuous_spread_keeps_its_floor_out_of_the_extreme_tail() {
        // 1000 estimates spread evenly over 5.0..6.0: the floor needs 20 of them within 2.5%, so it
        // sits near the low end but admits a usable share (those up to 5% above it).
        let mut f = Floor::new();
        for i in 0..1000 {
            f.observe(5.0 + f64::from((i * 7919) % 1000) / 1000.0);
        }
        let floor = f.value().unwrap();
        assert!((5.0..5.01).contains(&floor), "{floor}");
        let admitted = (0..1000).filter(|i| f.admits(5.0 + f64::from(*i) / 1000.0, 0.05)).count();
        assert!(admitted >= 200, "{admitted}");
    }

    #[test]
    fn no_floor_admits_everything() {
        let mut f = Floor::new();
        for x in [4.0, 4.0, 4.0, 4.0, 9.0] {
            f.observe(x);
        }
        assert_eq!(f.value(), None);
        assert!(f.admits(100.0, 0.05));
    }
}
