//! What the calls around a site look like: how many targets, in what order, how many distinct sites,
//! where in a cache line. Each scenario isolates one thing a predictor or the front end reacts to.
//!
//! - `mono`: every call goes to one target; the predictors are warm and right. The floor of a flavor.
//! - `poly-rr-K`: K targets in rotation: in loop iteration i, the j-th call goes to target (i + j) mod K,
//!   so every site cycles through all K targets, a pattern indirect predictors with path history learn.
//! - `poly-random-K`: K targets drawn from a fixed-seed pseudo-random sequence ([`SplitMix64`]) of
//!   [`SEQUENCE_LEN`] calls, far more than a predictor can memorise: the honest misprediction case.
//! - `sites-N`: N distinct call sites, each its own instruction at its own address, all run once per
//!   pass: pressure on the BTB, the uop cache and the L1i once N is in the thousands.
//! - `offset-B`: every site starts at byte B (0..63) of a 64-byte line; sites whose rel32 (B ≥ 60 for a
//!   5-byte call) or whole instruction crosses a line are the ones a patcher cannot store atomically.

use std::fmt;

/// Largest `sites-N` (distinct call sites in one probe).
pub const MAX_SITES: usize = 16384;
/// Largest `poly-K`.
pub const MAX_TARGETS: usize = 64;
/// Calls in one period of a poly selection sequence. Both orders use the same length so they touch
/// the same memory. Measured here: a 4096-call random period is partly learned (indirect
/// poly-random-2 costs 7.5 reference cycles instead of 9.2), 16384 and 65536 calls cost the same, so
/// 65536 (512 KiB of pointers per loop, L2-resident and read sequentially) leaves a margin.
pub const SEQUENCE_LEN: usize = 1 << 16;
/// Seed of the `poly-random` sequence (fixed, so every run and every machine sees the same calls).
pub const RANDOM_SEED: u64 = 0x00c0_ffee_ca11_5eed;

/// Order in which a poly scenario visits its targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Order {
    /// Iteration i, call j → target (i + j) mod K.
    RoundRobin,
    /// A fixed-seed pseudo-random target per call.
    Random,
}

/// One scenario a flavor is measured in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scenario {
    /// One target.
    Mono,
    /// `k` targets in `order`.
    Poly {
        /// Number of distinct targets.
        k: usize,
        /// How the calls walk through them.
        order: Order,
    },
    /// N distinct call sites.
    Sites(usize),
    /// Every site at byte B of a 64-byte line.
    Offset(usize),
}

impl Scenario {
    /// The K values of the standard poly scenarios.
    pub const POLY_K: [usize; 3] = [2, 4, 16];
    /// The N values of the standard sites scenarios.
    pub const SITES_N: [usize; 4] = [64, 1024, 4096, MAX_SITES];

    /// The `scenario` column of `calls.csv`: `mono`, `poly-rr`, `poly-random`, `sites` or `offset`.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Mono => "mono",
            Scenario::Poly { order: Order::RoundRobin, .. } => "poly-rr",
            Scenario::Poly { order: Order::Random, .. } => "poly-random",
            Scenario::Sites(_) => "sites",
            Scenario::Offset(_) => "offset",
        }
    }

    /// The `param` column: K, N or B (none for mono).
    pub fn param(self) -> Option<usize> {
        match self {
            Scenario::Mono => None,
            Scenario::Poly { k, .. } => Some(k),
            Scenario::Sites(n) => Some(n),
            Scenario::Offset(b) => Some(b),
        }
    }

    /// Whether `flavor` can be measured in this scenario: poly needs a site whose target changes
    /// without patching, i.e. an indirect flavor (see [`super::flavor`]); `trap` runs in `mono` only
    /// (microseconds per call).
    pub fn supports(self, flavor: super::Flavor) -> bool {
        if flavor == super::Flavor::Trap {
            return self == Scenario::Mono;
        }
        !matches!(self, Scenario::Poly { .. }) || flavor.is_indirect()
    }

    /// Every standard scenario: mono, poly-{rr,random}-{2,4,16}, sites-{64,1024,4096,16384},
    /// offset-{0..63}.
    pub fn all() -> Vec<Scenario> {
        let mut v = vec![Scenario::Mono];
        for order in [Order::RoundRobin, Order::Random] {
            v.extend(Scenario::POLY_K.map(|k| Scenario::Poly { k, order }));
        }
        v.extend(Scenario::SITES_N.map(Scenario::Sites));
        v.extend((0..super::CACHE_LINE).map(Scenario::Offset));
        v
    }

    /// The `--quick` set: one of each kind, and two offsets (a site clear of the line end and one whose
    /// rel32 crosses it).
    pub fn quick() -> Vec<Scenario> {
        vec![
            Scenario::Mono,
            Scenario::Poly { k: 4, order: Order::RoundRobin },
            Scenario::Poly { k: 4, order: Order::Random },
            Scenario::Sites(1024),
            Scenario::Offset(0),
            Scenario::Offset(62),
        ]
    }

    /// Parses a command-line spelling: one scenario (`mono`, `poly-rr-4`, `poly-random-16`,
    /// `sites-1024`, `offset-17`) or a group (`poly-rr`, `poly-random`, `poly`, `sites`, `offset`:
    /// every standard value).
    pub fn parse_list(s: &str) -> Result<Vec<Scenario>, String> {
        let all = Scenario::all();
        let group: Vec<Scenario> =
            all.iter().copied().filter(|sc| sc.name() == s || (s == "poly" && sc.is_poly())).collect();
        if !group.is_empty() {
            return Ok(group);
        }
        let bad = |why: String| format!("bad scenario `{s}`: {why}");
        let (head, num) = s.rsplit_once('-').ok_or_else(|| bad(Scenario::EXPECTED.into()))?;
        let n: usize = num.parse().map_err(|_| bad(Scenario::EXPECTED.into()))?;
        let sc = match head {
            "poly-rr" => Scenario::Poly { k: n, order: Order::RoundRobin },
            "poly-random" => Scenario::Poly { k: n, order: Order::Random },
            "sites" => Scenario::Sites(n),
            "offset" => Scenario::Offset(n),
            _ => return Err(bad(Scenario::EXPECTED.into())),
        };
        sc.validate().map_err(bad)?;
        Ok(vec![sc])
    }

    const EXPECTED: &'static str = "expected mono, poly-rr[-K], poly-random[-K], poly, sites[-N] or offset[-B]";

    /// Checks the parameter's range: K in 2..=64, N in 1..=16384, B in 0..=63.
    pub fn validate(self) -> Result<(), String> {
        match self {
            Scenario::Poly { k, .. } if !(2..=MAX_TARGETS).contains(&k) => {
                Err(format!("K = {k} targets is outside 2..={MAX_TARGETS}"))
            }
            Scenario::Sites(n) if !(1..=MAX_SITES).contains(&n) => {
                Err(format!("N = {n} sites is outside 1..={MAX_SITES}"))
            }
            Scenario::Offset(b) if b >= super::CACHE_LINE => {
                Err(format!("B = {b} is not a byte of a {}-byte line", super::CACHE_LINE))
            }
            _ => Ok(()),
        }
    }

    /// True for the poly scenarios.
    pub fn is_poly(self) -> bool {
        matches!(self, Scenario::Poly { .. })
    }

    /// Number of distinct targets the scenario calls.
    pub fn targets(self) -> usize {
        match self {
            Scenario::Poly { k, .. } => k,
            _ => 1,
        }
    }

    /// For a poly scenario, the target index of every call in one period of [`SEQUENCE_LEN`] calls,
    /// for a loop body of `body_calls` calls per iteration (round-robin depends on the body length:
    /// call j of iteration i goes to (i + j) mod K). `None` for the other scenarios.
    pub fn sequence(self, body_calls: usize) -> Option<Vec<u8>> {
        let Scenario::Poly { k, order } = self else { return None };
        assert!(SEQUENCE_LEN.is_multiple_of(body_calls), "body of {body_calls} calls must divide the sequence");
        Some(match order {
            Order::RoundRobin => (0..SEQUENCE_LEN).map(|m| ((m / body_calls + m % body_calls) % k) as u8).collect(),
            Order::Random => {
                let mut rng = SplitMix64(RANDOM_SEED);
                (0..SEQUENCE_LEN).map(|_| (rng.next_u64() % k as u64) as u8).collect()
            }
        })
    }
}

impl fmt::Display for Scenario {
    /// The command-line spelling (`mono`, `poly-random-4`, `sites-1024`, `offset-17`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.param() {
            Some(p) => write!(f, "{}-{p}", self.name()),
            None => f.write_str(self.name()),
        }
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny, well-mixed 64-bit generator, plenty for choosing
/// targets; fixed seed, so the "random" calls are the same on every run.
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64-bit value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::Flavor;

    #[test]
    fn spellings_round_trip_and_groups_expand() {
        for sc in Scenario::all() {
            assert_eq!(Scenario::parse_list(&sc.to_string()), Ok(vec![sc]), "{sc}");
        }
        assert_eq!(Scenario::parse_list("offset").unwrap().len(), 64);
        assert_eq!(Scenario::parse_list("poly-random").unwrap().len(), 3);
        assert_eq!(Scenario::parse_list("poly").unwrap().len(), 6);
        assert_eq!(Scenario::parse_list("sites-7"), Ok(vec![Scenario::Sites(7)]));
        for bad in ["offset-64", "poly-rr-1", "sites-0", "sites-16385", "mon", "poly-x-4", "offset-a"] {
            assert!(Scenario::parse_list(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn poly_is_only_for_indirect_flavors() {
        let poly = Scenario::Poly { k: 4, order: Order::Random };
        let yes: Vec<_> = Flavor::ALL.into_iter().filter(|f| poly.supports(*f)).collect();
        assert_eq!(yes, [Flavor::Indirect, Flavor::IndirectMem, Flavor::Retpoline, Flavor::Lfence]);
        assert!(Flavor::ALL.iter().all(|f| Scenario::Mono.supports(*f)));
        assert!(Flavor::ALL.iter().all(|f| Scenario::Offset(3).supports(*f) == (*f != Flavor::Trap)));
    }

    #[test]
    fn sequences_use_every_target_and_random_is_fixed_and_unpredictable_by_rotation() {
        for k in Scenario::POLY_K {
            let rr = Scenario::Poly { k, order: Order::RoundRobin }.sequence(32).unwrap();
            // Call j of iteration i → (i + j) mod K: each site rotates through all K targets.
            assert_eq!(rr[..3], [0, 1, 2 % k as u8]);
            assert_eq!(rr[32 + 5], ((1 + 5) % k) as u8);
            let rnd = Scenario::Poly { k, order: Order::Random }.sequence(32).unwrap();
            assert_eq!(rnd, Scenario::Poly { k, order: Order::Random }.sequence(64).unwrap());
            for seq in [&rr, &rnd] {
                let mut seen = vec![0usize; k];
                seq.iter().for_each(|&t| seen[t as usize] += 1);
                assert!(seen.iter().all(|&c| c > SEQUENCE_LEN / k / 2), "{seen:?}");
            }
            // A random sequence changes target on about (K-1)/K of the calls.
            let changes = rnd.windows(2).filter(|w| w[0] != w[1]).count() as f64 / SEQUENCE_LEN as f64;
            let expect = (k - 1) as f64 / k as f64;
            assert!((changes - expect).abs() < 0.02, "k={k}: {changes} vs {expect}");
        }
    }
}
