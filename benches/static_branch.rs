//! `cargo bench --bench static_branch` — static branches, callpatch's `static_branch_unlikely!` next to
//! the `static-keys` crate's (0.8), like for like.
//!
//! `eval/*`: the cost of evaluating a branch, in a dependent chain of 64 evaluations per iteration (each
//! picks one of two few-instruction bodies; criterion's time is that of the 64, its throughput counts
//! evaluations), with the key disabled (the site is a nop: straight on) and enabled (the site jumps),
//! and a plain `AtomicBool` load as the baseline that static branches replace.
//!
//! `update/*`: the cost of one enable or disable of a key with 1, 100 or 1000 sites in one function, no
//! other thread running (the peer's docs allow an update only then). callpatch patches every site in
//! one bp batch (three SYNC_CORE membarriers); static-keys remaps each page it patches.
//!
//! `CALLPATCH_STATIC_CALL=generic` (or `trap-free`) measures that callpatch backend instead.
//! `cargo bench --bench static_branch -- --test` runs each once (CI).

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use callpatch_static_call::{static_branch, StaticBranch};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use static_keys::{define_static_key_false, StaticFalseKey};

/// Evaluations per iteration: a dependent chain, unrolled by `rep64!` in every variant.
const CHAIN: usize = 64;

#[macro_use]
#[path = "common/rep.rs"]
mod rep;
use rep::work;

static_branch! {
    static EVAL: StaticBranch = false;
    static C1: StaticBranch = false;
    static C100: StaticBranch = false;
    static C1000: StaticBranch = false;
}
define_static_key_false!(PEER_EVAL);
define_static_key_false!(K1);
define_static_key_false!(K100);
define_static_key_false!(K1000);
static PLAIN: AtomicBool = AtomicBool::new(false);

#[inline(never)]
fn chain_callpatch(mut x: u64) -> u64 {
    rep64!(x = if callpatch_static_call::static_branch_unlikely!(EVAL) { work(x, 1) } else { work(x, 0) };);
    x
}
#[inline(never)]
fn chain_static_keys(mut x: u64) -> u64 {
    rep64!(x = if static_keys::static_branch_unlikely!(PEER_EVAL) { work(x, 1) } else { work(x, 0) };);
    x
}
#[inline(never)]
fn chain_plain(mut x: u64) -> u64 {
    rep64!(x = if PLAIN.load(Ordering::Relaxed) { work(x, 1) } else { work(x, 0) };);
    x
}

/// What the chain computes from 1 when every evaluation returns `on`.
fn expected(on: bool) -> u64 {
    (0..CHAIN).fold(1, |x, _| work(x, on as u64))
}

/// Enables or disables the peer's key.
fn set_peer(key: &'static StaticFalseKey, on: bool) {
    // SAFETY: static-keys asks for `global_init` first (called in `main_init`) and for no other thread
    // running: criterion runs here without rayon, and this bench starts no thread.
    unsafe {
        if on {
            key.enable()
        } else {
            key.disable()
        }
    }
}

fn main_init() -> &'static str {
    static_keys::global_init();
    callpatch_static_call::init().name()
}

fn eval(c: &mut Criterion) {
    let backend = main_init();
    for on in [false, true] {
        let state = if on { "enabled" } else { "disabled" };
        let mut g = c.benchmark_group(format!("eval/{state}"));
        g.throughput(Throughput::Elements(CHAIN as u64));
        EVAL.set(on).unwrap();
        assert_eq!(chain_callpatch(1), expected(on));
        g.bench_function(format!("callpatch ({backend})"), |b| b.iter(|| chain_callpatch(black_box(1))));
        set_peer(&PEER_EVAL, on);
        assert_eq!(chain_static_keys(1), expected(on));
        g.bench_function("static-keys 0.8", |b| b.iter(|| chain_static_keys(black_box(1))));
        PLAIN.store(on, Ordering::Relaxed);
        assert_eq!(chain_plain(1), expected(on));
        g.bench_function("AtomicBool load", |b| b.iter(|| chain_plain(black_box(1))));
        g.finish();
    }
}

#[inline(never)]
fn callpatch_1(x: u64) -> u64 {
    if callpatch_static_call::static_branch_unlikely!(C1) {
        work(x, 1)
    } else {
        work(x, 0)
    }
}
#[inline(never)]
fn callpatch_100(mut x: u64) -> u64 {
    rep100!(x = if callpatch_static_call::static_branch_unlikely!(C100) { work(x, 1) } else { work(x, 0) };);
    x
}
#[inline(never)]
fn callpatch_1000(mut x: u64) -> u64 {
    rep1000!(x = if callpatch_static_call::static_branch_unlikely!(C1000) { work(x, 1) } else { work(x, 0) };);
    x
}
#[inline(never)]
fn static_keys_1(x: u64) -> u64 {
    if static_keys::static_branch_unlikely!(K1) {
        work(x, 1)
    } else {
        work(x, 0)
    }
}
#[inline(never)]
fn static_keys_100(mut x: u64) -> u64 {
    rep100!(x = if static_keys::static_branch_unlikely!(K100) { work(x, 1) } else { work(x, 0) };);
    x
}
#[inline(never)]
fn static_keys_1000(mut x: u64) -> u64 {
    rep1000!(x = if static_keys::static_branch_unlikely!(K1000) { work(x, 1) } else { work(x, 0) };);
    x
}

/// What `n` sites compute from 1 when every evaluation returns `on`.
fn chain(n: usize, on: bool) -> u64 {
    (0..n).fold(1, |x, _| work(x, on as u64))
}

/// One size: callpatch's key with `n` sites flipped each iteration, then the peer's.
fn update_group(
    g: &mut BenchmarkGroup<'_, WallTime>,
    backend: &str,
    n: usize,
    (key, sites): (&'static StaticBranch, fn(u64) -> u64),
    (peer, peer_sites): (&'static StaticFalseKey, fn(u64) -> u64),
) {
    assert_eq!(key.sites().len(), n, "sites of {}", key.name());
    for on in [true, false] {
        key.set(on).unwrap();
        assert_eq!(sites(black_box(1)), chain(n, on), "{}: every site {on}", key.name());
        set_peer(peer, on);
        assert_eq!(peer_sites(black_box(1)), chain(n, on), "static-keys: every site {on}");
    }
    g.bench_function(format!("callpatch ({backend})"), |b| {
        b.iter(|| if key.is_enabled() { key.disable() } else { key.enable() }.unwrap())
    });
    g.bench_function("static-keys 0.8", |b| b.iter(|| set_peer(peer, !peer.is_enabled())));
}

fn update(c: &mut Criterion) {
    let backend = main_init();
    let sizes: [(&str, usize, _, _); 3] = [
        ("1 site", 1, (&C1, callpatch_1 as fn(u64) -> u64), (&K1, static_keys_1 as fn(u64) -> u64)),
        ("100 sites", 100, (&C100, callpatch_100), (&K100, static_keys_100)),
        ("1000 sites", 1000, (&C1000, callpatch_1000), (&K1000, static_keys_1000)),
    ];
    for (label, n, ours, peer) in sizes {
        let mut g = c.benchmark_group(format!("update/{label}"));
        g.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
        update_group(&mut g, backend, n, ours, peer);
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = eval, update
}
criterion_main!(benches);
