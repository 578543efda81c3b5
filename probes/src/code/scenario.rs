//! How a probe realises a scenario. The scenarios themselves (names, CLI spellings, standard K and N,
//! which flavors each supports) are the vocabulary's ([`callpatch_vocab::scenario`], re-exported
//! here); this module adds what only code generation needs: the poly selection sequence.
//!
//! - `poly-rr-K`: in loop iteration i, the j-th call goes to target (i + j) mod K.
//! - `poly-random-K`: K targets drawn from a fixed-seed pseudo-random sequence ([`SplitMix64`]) of
//!   [`SEQUENCE_LEN`] calls, far more than a predictor can memorise.

pub use callpatch_vocab::scenario::{Order, Scenario, MAX_SITES, MAX_TARGETS};

/// Calls in one period of a poly selection sequence. Both orders use the same length so they touch
/// the same memory. Measured here: a 4096-call random period is partly learned (indirect
/// poly-random-2 costs 7.5 reference cycles instead of 9.2), 16384 and 65536 calls cost the same, so
/// 65536 (512 KiB of pointers per loop, L2-resident and read sequentially) leaves a margin.
pub const SEQUENCE_LEN: usize = 1 << 16;
/// Seed of the `poly-random` sequence (fixed, so every run and every machine sees the same calls).
pub const RANDOM_SEED: u64 = 0x00c0_ffee_ca11_5eed;

/// The selection sequence of a scenario: an extension of the vocabulary's [`Scenario`], so that
/// `scenario.sequence(n)` reads as before.
pub trait ScenarioSequence {
    /// For a poly scenario, the target index of every call in one period of [`SEQUENCE_LEN`] calls,
    /// for a loop body of `body_calls` calls per iteration (round-robin depends on the body length:
    /// call j of iteration i goes to (i + j) mod K). `None` for the other scenarios.
    fn sequence(self, body_calls: usize) -> Option<Vec<u8>>;
}

impl ScenarioSequence for Scenario {
    fn sequence(self, body_calls: usize) -> Option<Vec<u8>> {
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
