//! The hazard layout: the site's rel32 crosses a line and every torn mix is caught; bp never tears.
//! (The naive writers run here too: by construction a torn call lands in the catch zone and returns.)

use std::time::Duration;

use callpatch_probes::experiments::hazard::{self, HazardSite, HazardWriter};
use callpatch_probes::patch::NaiveStore;

#[test]
fn the_site_crosses_a_line_and_bp_never_tears_it() {
    let h = HazardSite::new().unwrap();
    assert!(h.crosses_line());
    assert_eq!(h.site() % 64, hazard::SITE_LINE_OFFSET);
    drop(h);
    let bp = hazard::run(HazardWriter::Bp, 2000, Duration::from_secs(3)).unwrap();
    assert!(bp.patches > 0 && bp.calls > 0);
    assert_eq!((bp.torn, bp.lost), (0, 0), "{bp:?}");
}

#[test]
fn naive_writers_lose_nothing_even_when_they_tear() {
    for how in NaiveStore::ALL {
        let out = hazard::run(HazardWriter::Naive(how), 20_000, Duration::from_secs(2)).unwrap();
        assert!(out.patches > 0 && out.calls > 0);
        // Every call either reached a target or was caught as torn: tears are counted, never lost.
        assert_eq!(out.lost, 0, "{out:?}");
    }
}
