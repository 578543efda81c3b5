//! The one font the plots use, shipped in the repository (`analysis/assets/fonts/`, DejaVu Sans 2.37,
//! Bitstream Vera license with public-domain DejaVu changes) and compiled into the binary, and the
//! text path of the PNG plots ([`Glyphs`]).
//!
//! plotters' default `ttf` feature looks fonts up through fontconfig and fails on a machine without
//! fonts, even when writing SVG (it measures text to lay out the axes). With the `ab_glyph` feature the
//! font comes from bytes registered here, so plots render the same on any machine.
//!
//! plotters 0.3.7 measures text with each glyph's advance and the font's kerning, but its bitmap
//! drawing places each glyph's *ink box* at the pen position, dropping the glyph's left side bearing:
//! a glyph with a wide bearing (`b`, `1`, `8`) is pulled left against its neighbour and leaves a gap
//! after it ("b y flavor", "163 84"). [`Glyphs`] wraps the bitmap backend and draws text itself,
//! each glyph at pen position + its own bearing (sub-pixel), so a PNG spaces text as the font does.
//! SVG text is laid out by the viewer and needs no fix.

use std::sync::OnceLock;

use ab_glyph::{point, Font, FontRef, ScaleFont};
use plotters_backend::text_anchor::{HPos, VPos};
use plotters_backend::{BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingBackend, DrawingErrorKind};

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

fn shipped() -> Option<&'static FontRef<'static>> {
    static FONT: OnceLock<Option<FontRef<'static>>> = OnceLock::new();
    FONT.get_or_init(|| FontRef::try_from_slice(DEJAVU_SANS).ok()).as_ref()
}

/// A drawing backend that draws text with the shipped font's advances, side bearings and kerning
/// (see the module doc) and hands everything else to the backend it wraps. Every family maps to the
/// shipped font, as [`ensure_registered`] makes plotters do.
pub struct Glyphs<DB>(pub DB);

impl<DB: DrawingBackend> DrawingBackend for Glyphs<DB> {
    type ErrorType = DB::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.0.get_size()
    }
    fn ensure_prepared(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.ensure_prepared()
    }
    fn present(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.present()
    }
    fn draw_pixel(
        &mut self,
        point: BackendCoord,
        color: BackendColor,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_pixel(point, color)
    }
    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_line(from, to, style)
    }
    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_rect(upper_left, bottom_right, style, fill)
    }
    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_path(path, style)
    }
    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_circle(center, radius, style, fill)
    }
    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.fill_polygon(vert, style)
    }
    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        (iw, ih): (u32, u32),
        src: &[u8],
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.blit_bitmap(pos, (iw, ih), src)
    }
    fn estimate_text_size<TStyle: BackendTextStyle>(
        &self,
        text: &str,
        style: &TStyle,
    ) -> Result<(u32, u32), DrawingErrorKind<Self::ErrorType>> {
        self.0.estimate_text_size(text, style)
    }

    /// plotters' own text drawing (anchor from the measured layout box, the rotation applied per
    /// pixel, the same vertical placement), with each glyph drawn where the font puts it.
    fn draw_text<TStyle: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &TStyle,
        pos: BackendCoord,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        let color = style.color();
        let Some(font) = shipped() else { return self.0.draw_text(text, style, pos) };
        if color.alpha == 0.0 {
            return Ok(());
        }
        let ((min_x, min_y), (max_x, max_y)) =
            style.layout_box(text).map_err(|e| DrawingErrorKind::FontError(Box::new(e)))?;
        let (width, height) = (max_x - min_x, max_y - min_y);
        let dx = match style.anchor().h_pos {
            HPos::Left => 0,
            HPos::Right => -width,
            HPos::Center => -width / 2,
        };
        let dy = match style.anchor().v_pos {
            VPos::Top => 0,
            VPos::Center => -height / 2,
            VPos::Bottom => -height,
        };
        let trans = style.transform();
        let (w, h) = self.get_size();
        let px = style.size() as f32;
        let scaled = font.as_scaled(px);
        let mut pen = 0f32;
        let mut prev = None;
        for c in text.chars() {
            let id = scaled.glyph_id(c);
            if let Some(p) = prev {
                pen += scaled.kern(p, id);
            }
            prev = Some(id);
            let glyph = id.with_scale_and_position(px, point(pen, 0.0));
            pen += scaled.h_advance(id);
            let Some(outline) = font.outline_glyph(glyph) else { continue };
            let bounds = outline.px_bounds();
            // plotters puts the baseline half the size below the top of the layout box; kept, so
            // text sits where every layout in the plots expects it.
            let (gx, gy) = (bounds.min.x as i32, (px / 2.0 + bounds.min.y) as i32);
            let mut ink = Vec::new();
            outline.draw(|x, y, coverage| ink.push((gx + x as i32, gy + y as i32, coverage)));
            for (x, y, coverage) in ink {
                let (x, y) = trans.transform(x + dx - min_x, y + dy - min_y);
                let (x, y) = (pos.0 + x, pos.1 + y);
                if x >= 0 && x < w as i32 && y >= 0 && y < h as i32 {
                    let c = BackendColor { alpha: color.alpha * f64::from(coverage), rgb: color.rgb };
                    self.0.draw_pixel((x, y), c)?;
                }
            }
        }
        Ok(())
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

    /// The columns of `buf` (RGB, `w` wide) that hold ink, as runs of blank columns between inked ones.
    fn blank_runs(buf: &[u8], w: usize) -> Vec<usize> {
        let h = buf.len() / 3 / w;
        let inked: Vec<bool> = (0..w)
            .map(|x| (0..h).any(|y| buf[3 * (y * w + x)..3 * (y * w + x) + 3].iter().any(|&v| v < 160)))
            .collect();
        let first = inked.iter().position(|&i| i).unwrap();
        let last = inked.iter().rposition(|&i| i).unwrap();
        let mut runs = Vec::new();
        let mut run = 0;
        for &i in &inked[first..=last] {
            if i {
                if run > 0 {
                    runs.push(run);
                }
                run = 0;
            } else {
                run += 1;
            }
        }
        runs
    }

    /// Each pair of "by flavor" and "16384" drawn into a PNG: the blank columns between the two glyphs
    /// are the gap the font sets (right bearing of the first, kerning, left bearing of the second),
    /// within a pixel. plotters' own bitmap path made it the first glyph's two bearings instead: about
    /// 3 pixels too many after `b` or `1` at 48 px.
    #[test]
    fn glyph_pairs_are_spaced_as_the_font_sets_them() {
        ensure_registered().unwrap();
        use plotters::prelude::*;
        let font = shipped().unwrap();
        let px = 48.0f32;
        let scaled = font.as_scaled(px);
        for pair in ["by", "16", "63", "38", "84"] {
            let mut chars = pair.chars();
            let (a, b) = (scaled.glyph_id(chars.next().unwrap()), scaled.glyph_id(chars.next().unwrap()));
            let ink = |id: ab_glyph::GlyphId, x: f32| {
                font.outline_glyph(id.with_scale_and_position(px, point(x, 0.0))).unwrap().px_bounds()
            };
            let expected = ink(b, scaled.h_advance(a) + scaled.kern(a, b)).min.x - ink(a, 0.0).max.x;
            let (w, h) = (160usize, 80usize);
            let mut buf = vec![255u8; w * h * 3];
            {
                let area = Glyphs(BitMapBackend::with_buffer(&mut buf, (w as u32, h as u32))).into_drawing_area();
                area.draw_text(pair, &crate::report::style::text(px as u32), (10, 10)).unwrap();
                area.present().unwrap();
            }
            let gaps = blank_runs(&buf, w);
            let gap = gaps.iter().copied().max().unwrap_or(0) as f32;
            assert!((gap - expected).abs() <= 1.0, "{pair}: {gap} blank columns, the font sets {expected}");
        }
    }
}
