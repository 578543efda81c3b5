//! The one font the plots use, shipped in the repository (`analysis/assets/fonts/`, DejaVu Sans 2.37,
//! Bitstream Vera license with public-domain DejaVu changes) and compiled into the binary.
//!
//! plotters' default `ttf` feature looks fonts up through fontconfig and fails on a machine without
//! fonts, even when writing SVG (it measures text to lay out the axes). With the `ab_glyph` feature the
//! font comes from bytes registered here, so plots render the same on any machine.

use std::sync::OnceLock;

use crate::report::error::ReportError;

/// The family name every text style in the plots uses.
pub const FAMILY: &str = "sans-serif";

const FILE: &str = "analysis/assets/fonts/DejaVuSans.ttf";
static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Registers the shipped font with plotters under [`FAMILY`] (and the other generic family names, so a
/// default text style anywhere in plotters finds it too). Idempotent and thread-safe; must run before
/// any plot is drawn.
pub fn ensure_registered() -> Result<(), ReportError> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        ["sans-serif", "serif", "monospace"].iter().all(|family| {
            plotters::style::register_font(family, plotters::style::FontStyle::Normal, DEJAVU_SANS).is_ok()
        })
    });
    if ok {
        Ok(())
    } else {
        Err(ReportError::Font(FILE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_font_registers_and_measures_text() {
        ensure_registered().unwrap();
        ensure_registered().unwrap();
        use plotters::prelude::*;
        let mut svg = String::new();
        {
            let area = SVGBackend::with_string(&mut svg, (200, 50)).into_drawing_area();
            let style = TextStyle::from((FAMILY, 20).into_font());
            let (w, h) = area.estimate_text_size("cycles", &style).unwrap();
            // A real font gives a real width: six glyphs at 20 px are far wider than one glyph.
            assert!(w > 40 && h > 0, "{w}x{h}");
            area.draw_text("cycles", &style, (0, 0)).unwrap();
            area.present().unwrap();
        }
        assert!(svg.contains("cycles"));
    }
}
