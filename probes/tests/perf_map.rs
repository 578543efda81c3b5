//! The perf map a probe announces, read back by a fake perf: every named range parses back exactly,
//! lies in the probe's arena, and covers every call site and every target the probe runs.

use callpatch_probes::code::{EmitOptions, Flavor, Order, Probe, Scenario};
use callpatch_probes::measure::{parse_perf_map, write_perf_map, MapEntry};

#[test]
fn every_probe_range_parses_back_and_covers_its_code() {
    let dir = std::env::temp_dir().join(format!("callpatch-perfmap-probes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scenarios =
        [Scenario::Mono, Scenario::Poly { k: 4, order: Order::Random }, Scenario::Sites(64), Scenario::Offset(61)];
    let mut checked = 0;
    for flavor in Flavor::ALL {
        for scenario in scenarios.into_iter().filter(|s| s.supports(flavor)) {
            let probe = Probe::new(flavor, scenario, &EmitOptions { unroll: 8, ..EmitOptions::default() }).unwrap();
            let written: Vec<MapEntry> = probe.symbols().iter().map(MapEntry::from).collect();
            let path = dir.join(format!("perf-{flavor}-{scenario}.map"));
            write_perf_map(&path, &written).unwrap_or_else(|e| panic!("{flavor} {scenario}: {e}"));
            let parsed = parse_perf_map(&std::fs::read_to_string(&path).unwrap()).unwrap();

            assert_eq!(parsed.len(), written.len(), "{flavor} {scenario}");
            let (lo, hi) = (probe.arena().base(), probe.arena().base() + probe.arena().len());
            for sym in probe.symbols() {
                let e = parsed.iter().find(|e| e.name == sym.name).expect("every symbol is in the map");
                assert_eq!((e.start, e.size), (sym.addr, sym.len), "{}", sym.name);
                assert!(lo <= e.start && e.end() <= hi, "{} outside the arena", sym.name);
            }
            let named = |addr: usize| parsed.iter().any(|e| e.contains(addr));
            for site in probe.sites() {
                assert!(named(site.addr) && named(site.addr + site.len - 1), "{flavor} {scenario}: site {site:?}");
            }
            for t in probe.targets() {
                assert!(named(t.addr), "{flavor} {scenario}: target {t:?} unnamed");
            }
            if let Some(thunk) = probe.thunk() {
                assert!(named(thunk), "{flavor} {scenario}: thunk unnamed");
            }
            if let Some((trampoline, _)) = probe.trampoline() {
                assert!(named(trampoline), "{flavor} {scenario}: trampoline unnamed");
            }
            checked += 1;
        }
    }
    assert!(checked >= Flavor::ALL.len());
    std::fs::remove_dir_all(&dir).unwrap();
}
