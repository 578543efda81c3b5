//! Static branch tests with evaluating threads: an updater flips one key `rounds` times while threads
//! evaluate its sites and count, every evaluation accounted for. (No key here: each test file brings
//! its own, so include this file alone with `#[path]`.)
//!
//! The updater publishes a sequence number: odd while an update is in flight, even (`2k`) once the
//! k-th update has returned. An evaluation made entirely inside one even period must return that
//! period's state (the new one, once the update returned; the old one, before the next began); one
//! that overlaps an update may return the old or the new state. The updater waits, after each update,
//! until every thread has made one such checked evaluation, so every thread sees every state.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::stop::StopOnDrop;

/// What the threads counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Evaluations made (of every site in `evaluate`'s result).
    pub evaluations: u64,
    /// Evaluations that returned `true` / `false`.
    pub trues: u64,
    /// As above.
    pub falses: u64,
    /// Evaluations inside one stable period, checked against that period's state.
    pub checked: u64,
    /// Checked evaluations that returned the other state.
    pub wrong: u64,
}

/// Runs `threads` evaluating threads (each calling `evaluate`, which evaluates every site of one key
/// and returns their results) while this thread calls `set(state)` for `rounds` alternating states,
/// starting from `!initial`. Returns the counts of all threads together.
pub fn flip_under_evaluation<const N: usize>(
    threads: usize,
    rounds: u64,
    initial: bool,
    evaluate: fn() -> [bool; N],
    set: &(dyn Fn(bool) + Sync),
) -> Counts {
    let state_of = |seq: u64| initial ^ ((seq / 2) % 2 == 1);
    let seq = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let seen: Vec<AtomicU64> = (0..threads).map(|_| AtomicU64::new(u64::MAX)).collect();
    let counts: Vec<std::sync::Mutex<Counts>> = (0..threads).map(|_| Default::default()).collect();
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        for t in 0..threads {
            let (seq, stop, seen, counts) = (&seq, &stop, &seen[t], &counts[t]);
            s.spawn(move || {
                let mut c = Counts::default();
                while !stop.load(Ordering::Relaxed) {
                    let before = seq.load(Ordering::SeqCst);
                    let results = evaluate();
                    let after = seq.load(Ordering::SeqCst);
                    c.evaluations += N as u64;
                    let trues = results.iter().filter(|&&b| b).count() as u64;
                    c.trues += trues;
                    c.falses += N as u64 - trues;
                    if before == after && before % 2 == 0 {
                        c.checked += N as u64;
                        c.wrong += results.iter().filter(|&&b| b != state_of(before)).count() as u64;
                        seen.store(before, Ordering::SeqCst);
                    }
                }
                *counts.lock().unwrap() = c;
            });
        }
        let wait_all_seen = |period: u64| {
            let deadline = Instant::now() + Duration::from_secs(20);
            while seen.iter().any(|s| s.load(Ordering::SeqCst) != period) {
                assert!(
                    Instant::now() < deadline,
                    "an evaluating thread made no checked evaluation in period {period}"
                );
                std::thread::yield_now();
            }
        };
        wait_all_seen(0);
        for k in 1..=rounds {
            seq.store(2 * k - 1, Ordering::SeqCst);
            set(state_of(2 * k));
            seq.store(2 * k, Ordering::SeqCst);
            wait_all_seen(2 * k);
        }
    });
    counts.iter().map(|c| *c.lock().unwrap()).fold(Counts::default(), |a, c| Counts {
        evaluations: a.evaluations + c.evaluations,
        trues: a.trues + c.trues,
        falses: a.falses + c.falses,
        checked: a.checked + c.checked,
        wrong: a.wrong + c.wrong,
    })
}
