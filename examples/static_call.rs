//! A hot path calling a hash back-end through a static call from several threads, while the main
//! thread swaps the back-end live. Every back-end counts its calls per thread; at the end the counts
//! must add up to the calls the threads made, every result must be one of the back-ends' hashes, and
//! every site must call the key's current target. Exits 1 otherwise.
//!
//! ```sh
//! cargo run --release --example static_call -- --seconds 2 --threads 2
//! CALLPATCH_STATIC_CALL=generic cargo run --release --example static_call   # no code patching
//! ```

use std::cell::Cell;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use callpatch_patcher::Insn;
use callpatch_static_call::Backend;
use callpatch_static_call::{static_call, static_call_update};
use clap::Parser;

/// Swap a static call's target while threads call it; prove no call is lost or misdirected.
#[derive(Parser)]
struct Args {
    /// How long the callers run.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Caller threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Pause between two updates, in microseconds.
    #[arg(long, default_value_t = 200)]
    pause_us: u64,
}

const NAMES: [&str; 3] = ["fnv1a", "splitmix64", "murmur3-fmix"];

thread_local! {
    /// Calls that reached each back-end from this thread.
    static REACHED: [Cell<u64>; 3] = const { [Cell::new(0), Cell::new(0), Cell::new(0)] };
}

fn count(which: usize) {
    REACHED.with(|r| r[which].set(r[which].get() + 1));
}

fn fnv1a_hash(x: u64) -> u64 {
    x.to_le_bytes().iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}
fn splitmix_hash(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
fn murmur_hash(x: u64) -> u64 {
    let mut k = x ^ (x >> 33);
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

fn fnv1a(x: u64) -> u64 {
    count(0);
    fnv1a_hash(x)
}
fn splitmix(x: u64) -> u64 {
    count(1);
    splitmix_hash(x)
}
fn murmur(x: u64) -> u64 {
    count(2);
    murmur_hash(x)
}

static_call! {
    /// The hash back-end of the hot path.
    static HASH: fn(u64) -> u64 = fnv1a;
}

/// The hot path: one static call site.
#[inline(never)]
fn hash(x: u64) -> u64 {
    static_call!(HASH(x))
}

/// A second site of the same key, so an update patches several.
#[inline(never)]
fn hash_again(x: u64) -> u64 {
    static_call!(HASH(x ^ 1))
}

struct CallerTotals {
    calls: u64,
    misdirected: u64,
    reached: [u64; 3],
}

fn caller(stop: &AtomicBool, seed: u64) -> CallerTotals {
    let (mut calls, mut misdirected, mut x) = (0u64, 0u64, seed);
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..256 {
            let (a, b) = (hash(black_box(x)), hash_again(black_box(x)));
            for (input, h) in [(x, a), (x ^ 1, b)] {
                let ok = h == fnv1a_hash(input) || h == splitmix_hash(input) || h == murmur_hash(input);
                misdirected += u64::from(!ok);
            }
            calls += 2;
            x = x.wrapping_add(a | 1);
        }
    }
    let reached = REACHED.with(|r| [r[0].get(), r[1].get(), r[2].get()]);
    CallerTotals { calls, misdirected, reached }
}

fn main() {
    let args = Args::parse();
    if !(args.seconds > 0.0 && args.seconds.is_finite()) || args.threads == 0 {
        eprintln!("static_call: error: --seconds must be a positive number and --threads at least 1");
        std::process::exit(1);
    }
    let backend = callpatch_static_call::init();
    let sites = HASH.sites();
    println!(
        "backend: {}, {} sites of {} ({} caller threads, {} s)",
        backend.name(),
        sites.len(),
        HASH.name(),
        args.threads,
        args.seconds
    );

    let stop = AtomicBool::new(false);
    let updates = AtomicU64::new(0);
    let (totals, update_time) = std::thread::scope(|s| {
        let callers: Vec<_> = (0..args.threads)
            .map(|t| {
                s.spawn({
                    let stop = &stop;
                    move || caller(stop, t as u64 * 0x1234_5678)
                })
            })
            .collect();
        let t0 = Instant::now();
        let mut spent = Duration::ZERO;
        let mut i = 0usize;
        while t0.elapsed().as_secs_f64() < args.seconds {
            i += 1;
            let u = Instant::now();
            let r = match i % 3 {
                0 => static_call_update!(HASH, fnv1a),
                1 => static_call_update!(HASH, splitmix),
                _ => static_call_update!(HASH, murmur),
            };
            spent += u.elapsed();
            if let Err(e) = r {
                eprintln!("static_call: error: {e}");
                std::process::exit(1);
            }
            updates.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_micros(args.pause_us));
        }
        stop.store(true, Ordering::Relaxed);
        let totals: Vec<CallerTotals> = callers.into_iter().map(|h| h.join().expect("caller thread")).collect();
        (totals, spent)
    });

    let calls: u64 = totals.iter().map(|t| t.calls).sum();
    let misdirected: u64 = totals.iter().map(|t| t.misdirected).sum();
    let mut reached = [0u64; 3];
    for t in &totals {
        for (r, n) in reached.iter_mut().zip(t.reached) {
            *r += n;
        }
    }
    let n_updates = updates.load(Ordering::Relaxed);
    println!("updates: {n_updates} (mean {:.1} us each)", update_time.as_secs_f64() * 1e6 / n_updates.max(1) as f64);
    println!("{:<14} {:>14}", "implementation", "calls");
    for (name, n) in NAMES.iter().zip(reached) {
        println!("{name:<14} {n:>14}");
    }
    let reached_total: u64 = reached.iter().sum();
    println!("{:<14} {:>14}", "total reached", reached_total);
    println!("{:<14} {:>14}", "calls made", calls);
    println!("{:<14} {:>14}", "misdirected", misdirected);

    let mut failures = Vec::new();
    if reached_total != calls {
        failures.push(format!("{calls} calls made but {reached_total} reached a back-end"));
    }
    if misdirected != 0 {
        failures.push(format!("{misdirected} calls returned no back-end's hash"));
    }
    if sites.len() < 2 {
        failures.push(format!("only {} sites of HASH in the site table (2 uses compiled in)", sites.len()));
    }
    let direct = Insn::Call(HASH.target().expect("HASH always has a target"));
    let through_trampoline = Insn::Call(HASH.trampoline());
    for site in &sites {
        // Trap-free: only a site inside one aligned 8-byte word calls its target directly.
        let inline = match backend {
            Backend::Inline => true,
            Backend::TrapFree => callpatch_patcher::fits_one_word(site.addr(), 5),
            Backend::Generic => false,
        };
        let expected = if inline { direct } else { through_trampoline };
        if site.insn() != Some(expected) {
            failures.push(format!("site {:#x} holds {:?}, expected {expected:?}", site.addr(), site.insn()));
        }
    }
    if failures.is_empty() {
        println!("ok: every call reached a back-end, none lost, every site calls the current target");
    } else {
        for f in failures {
            eprintln!("static_call: error: {f}");
        }
        std::process::exit(1);
    }
}
