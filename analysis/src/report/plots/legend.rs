//! A legend drawn as a strip of entries above a chart, left to right, wrapping as needed: for plots
//! whose data fill the whole plotting area (histograms, long bar lists), where plotters' in-chart
//! legend box would hide data.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::DrawError;
use crate::report::style;

/// How an entry is marked.
#[derive(Clone, Copy, Debug)]
pub enum Swatch {
    /// A filled box (bars, bands).
    Fill(RGBColor),
    /// A solid line.
    Line(RGBColor),
    /// A dashed line (reference values).
    Dashed(RGBColor),
}

const ROW_H: i32 = 26;
const SWATCH_W: i32 = 26;
const GAP: i32 = 28;

/// Height the strip needs for `entries` in a strip `width` pixels wide.
pub fn height<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[(Swatch, String)],
    width: u32,
) -> Result<u32, DrawError> {
    Ok(layout(area, entries, width)?.last().map_or(0, |p| (p.1 + ROW_H + 6) as u32))
}

fn layout<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[(Swatch, String)],
    width: u32,
) -> Result<Vec<(i32, i32)>, DrawError> {
    let font = style::text(style::LEGEND_PX);
    let (mut x, mut y) = (0, 4);
    let mut out = Vec::new();
    for (_, label) in entries {
        let w = SWATCH_W + 8 + area.estimate_text_size(label, &font)?.0 as i32;
        if x > 0 && x + w > width as i32 {
            x = 0;
            y += ROW_H;
        }
        out.push((x, y));
        x += w + GAP;
    }
    Ok(out)
}

/// Draws the strip into `area`, starting `left` pixels in.
pub fn draw<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[(Swatch, String)],
    left: i32,
) -> Result<(), DrawError> {
    let (w, _) = area.dim_in_pixel();
    let font = style::anchored(style::LEGEND_PX, HPos::Left, VPos::Center);
    for ((swatch, label), (x, y)) in entries.iter().zip(layout(area, entries, w - left as u32)?) {
        let (x, cy) = (left + x, y + ROW_H / 2);
        match swatch {
            Swatch::Fill(c) => area.draw(&Rectangle::new([(x + 4, cy - 8), (x + SWATCH_W - 4, cy + 8)], c.filled()))?,
            Swatch::Line(c) => area.draw(&PathElement::new(vec![(x, cy), (x + SWATCH_W, cy)], c.stroke_width(3)))?,
            Swatch::Dashed(c) => {
                for seg in [(x, x + 9), (x + 15, x + SWATCH_W)] {
                    area.draw(&PathElement::new(vec![(seg.0, cy), (seg.1, cy)], c.stroke_width(2)))?;
                }
            }
        }
        area.draw_text(label, &font, (x + SWATCH_W + 8, cy))?;
    }
    Ok(())
}
