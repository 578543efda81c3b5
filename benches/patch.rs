//! `cargo bench --bench patch`: wall time of one `patch_batch` per protocol, for one site and for
//! batches of 100 and 1000 sites, on a W^X (dual-mapped) arena through its RW alias, no callers
//! running (`callpatch patch` measures with callers, and the membarrier floor, in one run).
//!
//! Each criterion iteration patches the first N sites of a set of live sites from one target to the other; the
//! direction alternates across iterations, so every batch validates against the bytes the previous
//! one wrote. `cargo bench --bench patch -- --test` runs each benchmark once (CI).

use std::time::{Duration, Instant};

use callpatch_probes::code::{ArenaMode, WriteMethod};
use callpatch_probes::experiments::live_sites::{LiveSites, Placement};
use callpatch_probes::patch::Protocol;
use criterion::Criterion;

const SIZES: [usize; 3] = [1, 100, 1000];

fn bench_patch(c: &mut Criterion) {
    let protocols = Protocol::SAFE.into_iter().chain([Protocol::Naive]);
    for protocol in protocols {
        let bed =
            LiveSites::new(protocol, 1000, Placement::Spread, ArenaMode::DualMap).expect("building the live sites");
        let writer = bed.writer(WriteMethod::Alias).expect("a writer for the bed");
        let mut group = c.benchmark_group(format!("patch/{protocol}"));
        for n in SIZES {
            let batches = [bed.retarget(n, 0, 1), bed.retarget(n, 1, 0)];
            let mut next = 0;
            group.bench_function(format!("batch-{n}"), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let t = Instant::now();
                        bed.patch(&writer, protocol, &batches[next]).expect("a valid batch");
                        total += t.elapsed();
                        next ^= 1;
                    }
                    total
                })
            });
            // Leave the sites on target 0 for the next size.
            if next == 1 {
                bed.patch(&writer, protocol, &batches[1]).expect("a valid batch");
            }
        }
        group.finish();
    }
}

fn main() {
    let mut c = Criterion::default().warm_up_time(Duration::from_millis(300)).configure_from_args();
    bench_patch(&mut c);
    c.final_summary();
}
