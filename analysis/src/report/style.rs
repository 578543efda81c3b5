//! The look shared by every plot: one font, text sizes readable at 100% zoom in a mail client or PR,
//! a colour-blind-safe palette (Okabe–Ito), and number formats for axes.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::font::FAMILY;

/// Plot width in pixels (SVG user units and PNG pixels alike).
pub const WIDTH: u32 = 1280;

/// Text size of a plot's title, px.
pub const TITLE_PX: u32 = 28;
/// Text size of a panel's title, px.
pub const PANEL_TITLE_PX: u32 = 22;
/// Text size of an axis description, px.
pub const AXIS_DESC_PX: u32 = 20;
/// Text size of tick labels, px.
pub const TICK_PX: u32 = 17;
/// Text size of legend entries, px.
pub const LEGEND_PX: u32 = 17;
/// Text size of notes under a chart, px.
pub const NOTE_PX: u32 = 17;

/// Okabe–Ito colours, most distinct first (yellow last: faint on white).
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),   // blue
    RGBColor(213, 94, 0),    // vermillion
    RGBColor(0, 158, 115),   // bluish green
    RGBColor(204, 121, 167), // reddish purple
    RGBColor(230, 159, 0),   // orange
    RGBColor(86, 180, 233),  // sky blue
    RGBColor(0, 0, 0),       // black
    RGBColor(240, 228, 66),  // yellow
];

/// The i-th series colour.
pub fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Grey for reference lines and bands.
pub const GREY: RGBColor = RGBColor(110, 110, 110);
/// Major and minor grid lines: present but quiet.
pub const GRID_BOLD: RGBColor = RGBColor(205, 205, 205);
/// Minor grid lines.
pub const GRID_LIGHT: RGBColor = RGBColor(240, 240, 240);

/// Light red for the crossing band.
pub const BAND: RGBColor = RGBColor(250, 205, 200);
/// Lighter red for offsets where only the instruction (not the rel32) crosses.
pub const BAND_LIGHT: RGBColor = RGBColor(253, 232, 228);

/// A text style in the shipped font.
pub fn text(px: u32) -> TextStyle<'static> {
    TextStyle::from((FAMILY, px).into_font()).color(&BLACK)
}

/// A text style anchored at `h`, `v`.
pub fn anchored(px: u32, h: HPos, v: VPos) -> TextStyle<'static> {
    text(px).pos(Pos::new(h, v))
}

/// Formats a positive axis value compactly: 0.5, 3, 20, 1.5k, 2M, 1e9.
pub fn compact(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 1e9 {
        let e = a.log10().floor() as i32;
        let m = v / 10f64.powi(e);
        if (m - m.round()).abs() < 1e-9 {
            format!("{}e{e}", m.round())
        } else {
            format!("{m:.1}e{e}")
        }
    } else if a >= 1e6 {
        trim(format!("{:.1}", v / 1e6)) + "M"
    } else if a >= 1e3 {
        trim(format!("{:.1}", v / 1e3)) + "k"
    } else if a >= 10.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        trim(format!("{v:.1}"))
    } else {
        trim(format!("{v:.2}"))
    }
}

fn trim(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Formats a measured number for a table: 3 significant figures, no exponent below 10⁹.
pub fn sig3(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A percentage or ratio to 2 significant figures (0.52, 3.1, 14, 120).
pub fn sig2(v: f64) -> String {
    let a = v.abs();
    if a >= 10.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A duration in ns as a readable string: 850 ns, 12.3 µs, 4.56 ms, 1.20 s.
pub fn duration_ns(ns: f64) -> String {
    let a = ns.abs();
    if a >= 1e9 {
        format!("{} s", sig3(ns / 1e9))
    } else if a >= 1e6 {
        format!("{} ms", sig3(ns / 1e6))
    } else if a >= 1e3 {
        format!("{} µs", sig3(ns / 1e3))
    } else {
        format!("{} ns", sig3(ns))
    }
}

/// A duration in ns as a short axis tick: 500 ns, 1 µs, 20 µs, 1.5 ms.
pub fn duration_tick(ns: f64) -> String {
    let a = ns.abs();
    if a >= 1e9 {
        format!("{} s", compact(ns / 1e9))
    } else if a >= 1e6 {
        format!("{} ms", compact(ns / 1e6))
    } else if a >= 1e3 {
        format!("{} µs", compact(ns / 1e3))
    } else {
        format!("{} ns", compact(ns))
    }
}

/// Lowest and highest power of 10 enclosing `[lo, hi]` (both positive).
pub fn decades(lo: f64, hi: f64) -> (f64, f64) {
    let lo = 10f64.powf(lo.max(f64::MIN_POSITIVE).log10().floor());
    let mut hi = 10f64.powf(hi.max(lo).log10().ceil());
    if hi <= lo {
        hi = lo * 10.0;
    }
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_numbers() {
        assert_eq!(compact(0.5), "0.5");
        assert_eq!(compact(3.0), "3");
        assert_eq!(compact(20.0), "20");
        assert_eq!(compact(1500.0), "1.5k");
        assert_eq!(compact(2e6), "2M");
        assert_eq!(compact(1e10), "1e10");
        assert_eq!(duration_ns(12_345.0), "12.3 µs");
        assert_eq!(decades(0.3, 250.0), (0.1, 1000.0));
    }
}
