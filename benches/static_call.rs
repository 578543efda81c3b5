//! `cargo bench --bench static_call` — one call through `static_call!` against the other ways to make
//! it: a direct call, a `fn` pointer, `&dyn Trait`, and an `enum` match; monomorphic (one target) and
//! polymorphic (four targets in a fixed random order). Every variant makes exactly one call per operation
//! into a function whose body is the same few arithmetic instructions, in a dependent chain of 64 calls
//! per iteration (criterion reports time per call).
//!
//! Then the cost of one update, in groups `update/1 site`, `update/100 sites` and `update/1000 sites`:
//! callpatch pointing a `static_call!` key with that many sites at the other of two targets, next to the
//! peer, the `static-keys` crate (0.8), enabling or disabling a key with that many `static_branch_unlikely!`
//! sites (criterion reports time per update). Each with no caller, and with 1 caller: a second thread
//! calling the function that holds the sites over and over while the updates are measured. The peer's
//! caller case is named unsupported: its docs allow an update only while no other thread runs, so it
//! measures what its mechanism costs, never that it is correct under a caller.
//!
//! `CALLPATCH_STATIC_CALL=generic` measures callpatch's generic (unpatched) backend instead.
//! `cargo bench --bench static_call -- --test` runs each once (CI); `-- update` runs only the updates.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use callpatch_static_call::static_call;
use callpatch_static_call::{Definition, StaticCall, Updatable};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use static_keys::{define_static_key_false, static_branch_unlikely, StaticFalseKey};

/// Calls per iteration: a dependent chain, unrolled by `rep64!` in every variant (no loop overhead).
const CHAIN: usize = 64;

#[macro_use]
#[path = "common/rep.rs"]
mod rep;
use rep::work;

fn body0(x: u64) -> u64 {
    work(x, 0)
}
fn body1(x: u64) -> u64 {
    work(x, 1)
}
fn body2(x: u64) -> u64 {
    work(x, 2)
}
fn body3(x: u64) -> u64 {
    work(x, 3)
}

// What a direct call, a fn pointer and an enum arm call: real functions, never inlined into the caller
// (a static call reaches the same body inlined into its shim: one call either way).
#[inline(never)]
fn direct0(x: u64) -> u64 {
    body0(x)
}
#[inline(never)]
fn direct1(x: u64) -> u64 {
    body1(x)
}
#[inline(never)]
fn direct2(x: u64) -> u64 {
    body2(x)
}
#[inline(never)]
fn direct3(x: u64) -> u64 {
    body3(x)
}
const DIRECT: [fn(u64) -> u64; 4] = [direct0, direct1, direct2, direct3];

trait Op {
    fn apply(&self, x: u64) -> u64;
}
struct Op0;
struct Op1;
struct Op2;
struct Op3;
impl Op for Op0 {
    fn apply(&self, x: u64) -> u64 {
        body0(x)
    }
}
impl Op for Op1 {
    fn apply(&self, x: u64) -> u64 {
        body1(x)
    }
}
impl Op for Op2 {
    fn apply(&self, x: u64) -> u64 {
        body2(x)
    }
}
impl Op for Op3 {
    fn apply(&self, x: u64) -> u64 {
        body3(x)
    }
}
const OPS: [&dyn Op; 4] = [&Op0, &Op1, &Op2, &Op3];

#[derive(Clone, Copy)]
enum Which {
    W0,
    W1,
    W2,
    W3,
}
const WHICH: [Which; 4] = [Which::W0, Which::W1, Which::W2, Which::W3];

#[inline(always)]
fn by_enum(w: Which, x: u64) -> u64 {
    match w {
        Which::W0 => direct0(x),
        Which::W1 => direct1(x),
        Which::W2 => direct2(x),
        Which::W3 => direct3(x),
    }
}

static_call! {
    static MONO: fn(u64) -> u64 = body0;
    static P0: fn(u64) -> u64 = body0;
    static P1: fn(u64) -> u64 = body1;
    static P2: fn(u64) -> u64 = body2;
    static P3: fn(u64) -> u64 = body3;
}

/// A fixed pseudo-random sequence of target indices (xorshift), the same for every variant.
fn pattern() -> Vec<usize> {
    let mut s = 0x2545_f491_4f6c_dd1du64;
    (0..4096)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 32) as usize & 3
        })
        .collect()
}

fn mono(c: &mut Criterion) {
    let backend = callpatch_static_call::init();
    let mut g = c.benchmark_group("call/mono");
    g.throughput(Throughput::Elements(CHAIN as u64));
    g.bench_function(format!("static_call ({})", backend.name()), |b| {
        b.iter(|| {
            let mut x = black_box(1u64);
            rep64!(x = static_call!(MONO(x)););
            x
        })
    });
    g.bench_function("direct", |b| {
        b.iter(|| {
            let mut x = black_box(1u64);
            rep64!(x = direct0(x););
            x
        })
    });
    g.bench_function("fn pointer", |b| {
        let f = black_box(DIRECT[0]);
        b.iter(|| {
            let mut x = black_box(1u64);
            rep64!(x = f(x););
            x
        })
    });
    g.bench_function("dyn Trait", |b| {
        let op = black_box(OPS[0]);
        b.iter(|| {
            let mut x = black_box(1u64);
            rep64!(x = op.apply(x););
            x
        })
    });
    g.bench_function("enum match", |b| {
        let w = black_box(WHICH[0]);
        b.iter(|| {
            let mut x = black_box(1u64);
            rep64!(x = by_enum(w, x););
            x
        })
    });
    g.finish();
}

fn poly(c: &mut Criterion) {
    let backend = callpatch_static_call::init();
    let pat = pattern();
    let mut g = c.benchmark_group("call/poly-4");
    g.throughput(Throughput::Elements(CHAIN as u64));
    // Each variant walks the same index sequence; `at` carries over between iterations.
    g.bench_function(format!("static_call ({})", backend.name()), |b| {
        let mut at = 0;
        b.iter(|| {
            let mut x = black_box(1u64);
            rep64!(
                x = match pat[at] {
                    0 => static_call!(P0(x)),
                    1 => static_call!(P1(x)),
                    2 => static_call!(P2(x)),
                    _ => static_call!(P3(x)),
                };
                at = (at + 1) & 4095;
            );
            x
        })
    });
    g.bench_function("direct", |b| {
        let mut at = 0;
        b.iter(|| {
            let mut x = black_box(1u64);
            rep64!(
                x = match pat[at] {
                    0 => direct0(x),
                    1 => direct1(x),
                    2 => direct2(x),
                    _ => direct3(x),
                };
                at = (at + 1) & 4095;
            );
            x
        })
    });
    g.bench_function("fn pointer", |b| {
        let fs = black_box(DIRECT);
        let mut at = 0;
        b.iter(|| {
            let mut x = black_box(1u64);
            rep64!(
                x = fs[pat[at]](x);
                at = (at + 1) & 4095;
            );
            x
        })
    });
    g.bench_function("dyn Trait", |b| {
        let ops = black_box(OPS);
        let mut at = 0;
        b.iter(|| {
            let mut x = black_box(1u64);
            rep64!(
                x = ops[pat[at]].apply(x);
                at = (at + 1) & 4095;
            );
            x
        })
    });
    g.bench_function("enum match", |b| {
        let ws = black_box(WHICH);
        let mut at = 0;
        b.iter(|| {
            let mut x = black_box(1u64);
            rep64!(
                x = by_enum(ws[pat[at]], x);
                at = (at + 1) & 4095;
            );
            x
        })
    });
    g.finish();
}

static_call! {
    static U1: fn(u64) -> u64 = body0;
    static U100: fn(u64) -> u64 = body0;
    static U1000: fn(u64) -> u64 = body0;
}

#[inline(never)]
fn sites_1(x: u64) -> u64 {
    static_call!(U1(x))
}
#[inline(never)]
fn sites_100(mut x: u64) -> u64 {
    rep100!(x = static_call!(U100(x)););
    x
}
#[inline(never)]
fn sites_1000(mut x: u64) -> u64 {
    rep1000!(x = static_call!(U1000(x)););
    x
}

/// A second thread calling the function that holds the sites, over and over, from `spawn` until
/// `finish` or drop: dropping it (also when a panic unwinds past it) stops and joins the thread, so it
/// never spins on.
struct Caller {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Caller {
    /// Starts the thread and returns once it has made its first call.
    fn spawn(f: fn(u64) -> u64) -> Caller {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Arc::new(AtomicBool::new(false));
        let (stop2, started2) = (stop.clone(), started.clone());
        let thread = std::thread::spawn(move || {
            black_box(f(black_box(1)));
            started2.store(true, Ordering::Relaxed);
            while !stop2.load(Ordering::Relaxed) {
                black_box(f(black_box(1)));
            }
        });
        let caller = Caller { stop, thread: Some(thread) };
        while !started.load(Ordering::Relaxed) {
            let died = caller.thread.as_ref().is_some_and(JoinHandle::is_finished);
            assert!(!died, "the caller died before its first call");
            std::hint::spin_loop();
        }
        caller
    }

    /// Stops and joins the thread (a panic in it is raised here).
    fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().expect("joined once");
        thread.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
    }
}

impl Drop for Caller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // Only while unwinding (`finish` takes the thread otherwise): a panic of the caller too
            // would abort, so its result is dropped.
            let _ = thread.join();
        }
    }
}

/// One callpatch update-cost case: `sites` runs once (its sites are linked and live), the key must hold
/// `n` sites, then each iteration flips the key between two targets, with a [`Caller`] of `sites`
/// running the whole time if `with_caller`.
fn bench_update<D: Definition<Sig = fn(u64) -> u64> + Updatable>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    key: &'static StaticCall<D>,
    n: usize,
    sites: fn(u64) -> u64,
    with_caller: bool,
) {
    black_box(sites(black_box(1)));
    assert_eq!(key.sites().len(), n, "{name}: sites of {} in the site table", key.name());
    let caller = with_caller.then(|| Caller::spawn(sites));
    let mut flip = false;
    g.bench_function(name, |b| {
        b.iter(|| {
            flip = !flip;
            if flip { key.update(body1) } else { key.update(body0) }.unwrap()
        })
    });
    if let Some(caller) = caller {
        caller.finish();
    }
}

// The peer: the `static-keys` crate patches `static_branch_*!` sites (a 5-byte nop or jmp each) when its
// key is enabled or disabled. One key per size, with 1, 100 or 1000 branch sites in one function; a site
// calls `body1` when the key is enabled and `body0` otherwise, as the static calls above are pointed at
// one or the other.
define_static_key_false!(K1);
define_static_key_false!(K100);
define_static_key_false!(K1000);

#[inline(never)]
fn branches_1(x: u64) -> u64 {
    if static_branch_unlikely!(K1) {
        body1(x)
    } else {
        body0(x)
    }
}
#[inline(never)]
fn branches_100(mut x: u64) -> u64 {
    rep100!(x = if static_branch_unlikely!(K100) { body1(x) } else { body0(x) };);
    x
}
#[inline(never)]
fn branches_1000(mut x: u64) -> u64 {
    rep1000!(x = if static_branch_unlikely!(K1000) { body1(x) } else { body0(x) };);
    x
}

/// What `n` sites compute from 1 when each one calls `f`.
fn chain(n: usize, f: fn(u64) -> u64) -> u64 {
    (0..n).fold(1, |x, _| f(x))
}

/// One static-keys update-cost case: checks that enabling and disabling `key` switches all `n` branch
/// sites of `branches`, then each iteration flips the key, with a [`Caller`] of `branches` running the
/// whole time if `with_caller`.
fn bench_update_static_keys(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    key: &'static StaticFalseKey,
    n: usize,
    branches: fn(u64) -> u64,
    with_caller: bool,
) {
    // SAFETY: `enable` and `disable` ask for `global_init` first (`update_cost` called it) and for no
    // other thread running: criterion runs here without rayon, no caller is alive yet (the last one was
    // joined), and every update is made by this thread, one after another.
    unsafe { key.enable() };
    assert_eq!(branches(black_box(1)), chain(n, body1), "{name}: every branch site enabled");
    // SAFETY: as above.
    unsafe { key.disable() };
    assert_eq!(branches(black_box(1)), chain(n, body0), "{name}: every branch site disabled");
    let caller = with_caller.then(|| Caller::spawn(branches));
    g.bench_function(name, |b| {
        b.iter(|| {
            // SAFETY: without a caller, as above. With one, the contract is NOT met: the docs say "Never
            // call this method when there are multi-threads running", and the caller runs the very code
            // these updates rewrite (each site's page is replaced by a patched copy, with mmap and mremap,
            // while the caller may be executing in it). That is acceptable here only because this case
            // measures what the mechanism costs, not whether it is correct under a caller: the caller's
            // results are discarded, and the case's name says it is unsupported. A crash of the caller
            // would end the benchmark run, not pass silently.
            unsafe {
                if key.is_enabled() {
                    key.disable()
                } else {
                    key.enable()
                }
            }
        })
    });
    if let Some(caller) = caller {
        caller.finish();
    }
}

/// The peer's case with a caller, named unsupported: the docs of its `enable` and `disable` say "Never
/// call this method when there are multi-threads running. Spawn threads after this method is called."
/// (its README: "it is very dangerous if you modify a static key in a multi-threads environment").
/// Kept short enough for criterion to print whole (it cuts titles at 100 characters).
const PEER_WITH_CALLER: &str = "static-keys 0.8, 1 caller (unsupported: docs: update only while single-threaded)";

/// The settings of every update group.
fn update_group_named<'a>(c: &'a mut Criterion, label: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(format!("update/{label}"));
    g.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    g
}

/// callpatch's cells of group `update/<label>`: without and with a caller.
fn callpatch_cells<D: Definition<Sig = fn(u64) -> u64> + Updatable>(
    c: &mut Criterion,
    label: &str,
    n: usize,
    (key, sites): (&'static StaticCall<D>, fn(u64) -> u64),
) {
    let backend = callpatch_static_call::init();
    let mut g = update_group_named(c, label);
    let callpatch = format!("callpatch ({})", backend.name());
    bench_update(&mut g, &format!("{callpatch}, no caller"), key, n, sites, false);
    bench_update(&mut g, &format!("{callpatch}, 1 caller"), key, n, sites, true);
    g.finish();
}

/// The peer's cells of group `update/<label>`: without and with a caller.
fn peer_cells(
    c: &mut Criterion,
    label: &str,
    n: usize,
    (peer_key, branches): (&'static StaticFalseKey, fn(u64) -> u64),
) {
    let mut g = update_group_named(c, label);
    bench_update_static_keys(&mut g, "static-keys 0.8, no caller", peer_key, n, branches, false);
    bench_update_static_keys(&mut g, PEER_WITH_CALLER, peer_key, n, branches, true);
    g.finish();
}

/// Groups `update/1 site`, `update/100 sites`, `update/1000 sites`: callpatch's cells for every size
/// first, then the peer's. static-keys patches a site by replacing its page with a patched anonymous
/// copy (`mremap`), which splits the program's text mapping for the rest of the process: measured after
/// it, a callpatch update of 1000 sites with a caller took 233 µs instead of 166 (more mappings, more
/// `mprotect` ranges, each restore a TLB shootdown of the caller's CPU). First, callpatch sees the text
/// as a program has it.
fn update_cost(c: &mut Criterion) {
    static_keys::global_init();
    callpatch_cells(c, "1 site", 1, (&U1, sites_1));
    callpatch_cells(c, "100 sites", 100, (&U100, sites_100));
    callpatch_cells(c, "1000 sites", 1000, (&U1000, sites_1000));
    peer_cells(c, "1 site", 1, (&K1, branches_1));
    peer_cells(c, "100 sites", 100, (&K100, branches_100));
    peer_cells(c, "1000 sites", 1000, (&K1000, branches_1000));
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = mono, poly, update_cost
}
criterion_main!(benches);
