//! A hand-written assembly loop of the sequences the probes emit (`tests/fixtures/srso_alias_loop.s`):
//! `direct` + `ret`, `direct` + `srso-alias`, `retpoline` + `srso-alias`, `kcfi` + `ret`, `direct` +
//! `call-depth`, `direct` + `its-lower`, each as a U and a 2U loop.
//!
//! The normal tests check what holds by construction: the fixture calls what it says (the weight sum)
//! and its SRSO alias thunk has the bytes and the address relation of the probes' emitted one. The
//! `#[ignore]`d test is the agreement check, a measurement, not a test of behaviour: run it on a quiet
//! machine with `cargo test --release -p callpatch-probes --test asm_fixture -- --ignored --nocapture`;
//! it times each fixture loop in alternation with the emitted probe of the same sequence at four
//! placements and reports (and checks) that the total cost per call agrees within 10% and the extra
//! over `direct` + `ret` within max(10%, 0.3 tick).

use callpatch_probes::code::{EmitOptions, Flavor, Probe, ReturnKind, Scenario};
use callpatch_probes::measure::{self, Floor, Knobs, PairedKnobs, Side, Unroll};

std::arch::global_asm!(include_str!("fixtures/srso_alias_loop.s"), options(att_syntax));

unsafe extern "sysv64" {
    fn callpatch_fixture_direct_ret_u(iters: u64) -> u64;
    fn callpatch_fixture_direct_ret_2u(iters: u64) -> u64;
    fn callpatch_fixture_direct_srso_u(iters: u64) -> u64;
    fn callpatch_fixture_direct_srso_2u(iters: u64) -> u64;
    fn callpatch_fixture_retpoline_srso_u(iters: u64) -> u64;
    fn callpatch_fixture_retpoline_srso_2u(iters: u64) -> u64;
    fn callpatch_fixture_kcfi_ret_u(iters: u64) -> u64;
    fn callpatch_fixture_kcfi_ret_2u(iters: u64) -> u64;
    fn callpatch_fixture_direct_cd_u(iters: u64) -> u64;
    fn callpatch_fixture_direct_cd_2u(iters: u64) -> u64;
    fn callpatch_fixture_direct_its_u(iters: u64) -> u64;
    fn callpatch_fixture_direct_its_2u(iters: u64) -> u64;
}

unsafe extern "C" {
    static callpatch_fixture_srso_alias_untrain_ret: u8;
    static callpatch_fixture_srso_alias_safe_ret: u8;
    static callpatch_fixture_srso_alias_return_thunk: u8;
    static callpatch_fixture_call_depth_return_thunk: u8;
    static callpatch_fixture_target_cd_thunk: u8;
    static callpatch_fixture_its_return_thunk: u8;
}

type Loop = unsafe extern "sysv64" fn(u64) -> u64;

/// The sequences: the probe's flavor and return kind, and the fixture's U and 2U loops.
const SEQUENCES: [(Flavor, ReturnKind, Loop, Loop); 6] = [
    (Flavor::Direct, ReturnKind::Ret, callpatch_fixture_direct_ret_u, callpatch_fixture_direct_ret_2u),
    (Flavor::Direct, ReturnKind::SrsoAlias, callpatch_fixture_direct_srso_u, callpatch_fixture_direct_srso_2u),
    (Flavor::Retpoline, ReturnKind::SrsoAlias, callpatch_fixture_retpoline_srso_u, callpatch_fixture_retpoline_srso_2u),
    (Flavor::Kcfi, ReturnKind::Ret, callpatch_fixture_kcfi_ret_u, callpatch_fixture_kcfi_ret_2u),
    (Flavor::Direct, ReturnKind::CallDepth, callpatch_fixture_direct_cd_u, callpatch_fixture_direct_cd_2u),
    (Flavor::Direct, ReturnKind::ItsLower, callpatch_fixture_direct_its_u, callpatch_fixture_direct_its_2u),
];

fn run_fixture(f: Loop, iters: u64) -> u64 {
    // SAFETY: the fixture loops are sysv64 functions of the global_asm! above: they save rbx, use only
    // caller-saved registers, the stack and their own code, and loop `iters` (≥ 1) times.
    unsafe { f(iters.max(1)) }
}

fn addr(sym: &u8) -> usize {
    sym as *const u8 as usize
}

#[test]
fn the_fixture_calls_what_it_says() {
    for (flavor, ret, u, u2) in SEQUENCES {
        assert_eq!(run_fixture(u, 7), 7 * 32, "{flavor} {ret}");
        assert_eq!(run_fixture(u2, 7), 7 * 64, "{flavor} {ret}");
    }
}

#[test]
fn the_fixture_thunk_has_the_probes_bytes_and_address_relation() {
    // SAFETY: the three symbols are labels of the fixture's code, readable as bytes.
    let (untrain, safe_ret, thunk) = unsafe {
        (
            addr(&callpatch_fixture_srso_alias_untrain_ret),
            addr(&callpatch_fixture_srso_alias_safe_ret),
            addr(&callpatch_fixture_srso_alias_return_thunk),
        )
    };
    assert_eq!(untrain % 4096, 0);
    assert_eq!(safe_ret - untrain, 0x10_4104);
    assert_eq!(thunk, safe_ret + 7);
    // SAFETY: 7 + 7 bytes of the fixture's code from the safe return on (the thunk follows it).
    let fixture = unsafe { std::slice::from_raw_parts(safe_ret as *const u8, 14) };
    let p = Probe::new(
        Flavor::Direct,
        Scenario::Mono,
        &EmitOptions { ret: ReturnKind::SrsoAlias, ..EmitOptions::default() },
    )
    .unwrap();
    let t = p.return_thunk().unwrap();
    assert_eq!(fixture, p.arena().read(t.safe_ret.unwrap(), 14).as_slice(), "same bytes, same rel32");
}

#[test]
fn the_fixtures_mitigation_code_is_the_probes_but_for_the_counter_offset() {
    // SAFETY: labels of the fixture's code, readable as bytes.
    let (cd_thunk, call_thunk, its) = unsafe {
        (
            addr(&callpatch_fixture_call_depth_return_thunk),
            addr(&callpatch_fixture_target_cd_thunk),
            addr(&callpatch_fixture_its_return_thunk),
        )
    };
    // SAFETY: bytes of the fixture's code from those labels (the thunk is 128 bytes, the others less).
    let read = |at: usize, n: usize| unsafe { std::slice::from_raw_parts(at as *const u8, n) }.to_vec();
    let probe =
        |ret| Probe::new(Flavor::Direct, Scenario::Mono, &EmitOptions { ret, ..EmitOptions::default() }).unwrap();
    // The `%fs:` displacement (bytes 5..9 of each counter access) differs: two counters.
    let unmask = |mut b: Vec<u8>, at: &[usize]| {
        for &i in at {
            b[i..i + 4].fill(0);
        }
        b
    };
    let cd = probe(ReturnKind::CallDepth);
    let entry = cd.return_thunk().unwrap().entry;
    let len = 10 + 4 + 16 * 6 + 7 + 13 + 2;
    assert_eq!(
        unmask(read(cd_thunk, len), &[5, len - 15 + 5]),
        unmask(cd.arena().read(entry, len), &[5, len - 15 + 5]),
        "call_depth_return_thunk"
    );
    let target = cd.targets()[0].addr - 10;
    assert_eq!(unmask(read(call_thunk, 10), &[5]), unmask(cd.arena().read(target, 10), &[5]), "the call thunk");
    assert_eq!(its % 64, 32);
    let lower = probe(ReturnKind::ItsLower);
    assert_eq!(read(its, 2), lower.arena().read(lower.return_thunk().unwrap().entry, 2), "its_return_thunk");
}

/// Ticks per call of `a` and `b` timed in alternation (the paired method), medians.
fn paired(a: &mut dyn FnMut(Unroll, u64), b: &mut dyn FnMut(Unroll, u64)) -> (f64, f64) {
    let knobs = Knobs { unroll: 32, iterations: 2000, repeats: 1, warmup: 1 };
    let pk = PairedKnobs::full();
    let p = measure::measure_paired(&mut Side { knobs, run: a }, &mut Side { knobs, run: b }, &pk, &mut Floor::new())
        .unwrap();
    (p.flavor.map_or(f64::NAN, |s| s.median), p.baseline.map_or(f64::NAN, |s| s.median))
}

#[test]
#[ignore = "a measurement: run on a quiet machine, see the module docs"]
fn the_fixture_and_the_probes_agree() {
    measure::pin_current_thread(None).unwrap();
    let mut fixture_cost = Vec::new();
    let mut probe_costs: Vec<Vec<f64>> = Vec::new();
    for (flavor, ret, u, u2) in SEQUENCES {
        let mut costs = Vec::new();
        let mut fix = Vec::new();
        for placement in 0..4 {
            let options = EmitOptions { ret, placement, ..EmitOptions::default() };
            let probe = Probe::new(flavor, Scenario::Mono, &options).unwrap();
            probe.verify().unwrap();
            let mut sink = 0u64;
            let mut run_probe = |un: Unroll, iters: u64| sink ^= std::hint::black_box(probe.run(un, iters));
            let mut sink2 = 0u64;
            let mut run_fix = |un: Unroll, iters: u64| {
                let f = if un == Unroll::Single { u } else { u2 };
                sink2 ^= std::hint::black_box(run_fixture(f, iters));
            };
            let (f, p) = paired(&mut run_fix, &mut run_probe);
            println!("{flavor} + {ret} placement {placement}: fixture {f:.2}, probe {p:.2} ticks per call");
            fix.push(f);
            costs.push(p);
        }
        fix.sort_by(f64::total_cmp);
        fixture_cost.push(fix[fix.len() / 2]);
        probe_costs.push(costs);
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut failures = Vec::new();
    for (i, (flavor, ret, ..)) in SEQUENCES.iter().enumerate() {
        let (fx, pr) = (fixture_cost[i], median(&probe_costs[i]));
        let total_ok = (fx / pr - 1.0).abs() <= 0.10;
        println!("{flavor} + {ret}: total fixture {fx:.2} vs probe {pr:.2} ticks: within 10%: {total_ok}");
        if !total_ok {
            failures.push(format!("{flavor} + {ret} total"));
        }
        if i > 0 {
            let fx_extra = fx - fixture_cost[0];
            let extras: Vec<f64> = (0..4).map(|p| probe_costs[i][p] - probe_costs[0][p]).collect();
            let (lo, hi) = (
                extras.iter().copied().fold(f64::INFINITY, f64::min),
                extras.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            );
            let tol = (0.10 * median(&extras).abs()).max(0.3);
            let ok = fx_extra >= lo - tol && fx_extra <= hi + tol;
            println!(
                "{flavor} + {ret}: extra over direct + ret: fixture {fx_extra:.2}, probes {lo:.2}..{hi:.2} over 4 placements \
                 (tolerance {tol:.2}): {ok}"
            );
            if !ok {
                failures.push(format!("{flavor} + {ret} extra"));
            }
        }
    }
    assert!(failures.is_empty(), "disagree: {failures:?}");
}
