//! Histogram of call-site start offsets within a 64-byte line, one panel per binary (and per kind shown:
//! static call sites where the census found a kernel table, `call rel32` sites everywhere), with the band
//! where a 5-byte call's rel32 crosses the line (start 60–62; at 63 only the opcode byte is in the first
//! line) and the count a uniform start offset predicts.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::legend::{self, Swatch};
use super::{DrawError, Plot};
use crate::census::crossing::{insn_crosses, rel32_crosses, LINE, THEORY_REL32_LINE};
use crate::census::SiteKind;
use crate::report::dataset::CensusBinary;
use crate::report::style::{self, compact};

/// Kinds given a panel, in order, when a binary has offsets for them.
pub const KINDS: [SiteKind; 2] = [SiteKind::StaticCallSite, SiteKind::CallRel32];

/// Length of the instructions of the kinds shown (5-byte `call rel32`; a static call site is a call or
/// tail `jmp rel32`, also 5 bytes).
const INSN_LEN: u64 = 5;

/// One histogram.
pub struct Histogram {
    /// The censused binary.
    pub binary: String,
    /// The kind of site counted.
    pub kind: SiteKind,
    /// Sites per start offset 0..63.
    pub counts: [u64; 64],
}

impl Histogram {
    /// Sites in all 64 bins.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// The histograms the plot shows.
pub fn histograms(binaries: &[CensusBinary]) -> Vec<Histogram> {
    let mut v = Vec::new();
    for b in binaries {
        for kind in KINDS {
            let mut counts = [0u64; 64];
            for r in b.offsets.iter().filter(|r| r.kind == kind && u64::from(r.offset_mod_64) < LINE) {
                counts[usize::from(r.offset_mod_64)] += r.count;
            }
            if counts.iter().any(|&c| c > 0) {
                v.push(Histogram { binary: b.label.clone(), kind, counts });
            }
        }
    }
    v
}

/// The offsets plot.
pub struct OffsetsPlot {
    hists: Vec<Histogram>,
}

const PANEL_H: u32 = 340;
/// Room for the legend strip (one row at this width).
const STRIP_H: u32 = 36;
/// Legend indent: lines up with the plotting area.
const LEFT: i32 = 100;

impl OffsetsPlot {
    /// `None` when no binary has offsets for a shown kind.
    pub fn new(binaries: &[CensusBinary]) -> Option<Self> {
        let hists = histograms(binaries);
        (!hists.is_empty()).then_some(OffsetsPlot { hists })
    }
}

impl Plot for OffsetsPlot {
    fn stem(&self) -> &'static str {
        "offsets"
    }

    fn size(&self) -> (u32, u32) {
        (style::WIDTH, 60 + STRIP_H + PANEL_H * self.hists.len() as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), DrawError> {
        let body = root.titled("Where call sites start within a 64-byte cache line", style::text(style::TITLE_PX))?;
        let entries = [
            (Swatch::Fill(style::color(0)), "call sites starting at this offset".to_string()),
            (Swatch::Fill(style::BAND), "rel32 crosses (start 60–62)".to_string()),
            (Swatch::Fill(style::BAND_LIGHT), "only the opcode crosses (63)".to_string()),
            (Swatch::Dashed(BLACK), "uniform start: sites ÷ 64".to_string()),
        ];
        let strip_h = legend::height(&body, &entries, style::WIDTH - 2 * LEFT as u32)?;
        let (strip, rest) = body.split_vertically(strip_h);
        legend::draw(&strip, &entries, LEFT)?;
        for (h, area) in self.hists.iter().zip(&rest.split_evenly((self.hists.len(), 1))) {
            draw_panel(h, area)?;
        }
        Ok(())
    }
}

fn draw_panel<DB: DrawingBackend>(h: &Histogram, area: &DrawingArea<DB, Shift>) -> Result<(), DrawError> {
    let total = h.total();
    let uniform = total as f64 / LINE as f64;
    let y_max = h.counts.iter().copied().max().unwrap_or(0) as f64;
    let y_top = y_max.max(uniform) * 1.12;
    let crossing: u64 = (0..LINE).filter(|&o| rel32_crosses(o, INSN_LEN, LINE)).map(|o| h.counts[o as usize]).sum();
    let caption = format!(
        "{} — {}: {} sites, rel32 crosses a line at {} ({:.2}%; uniform theory {:.2}%)",
        h.binary,
        h.kind.name().replace('_', " "),
        total,
        crossing,
        100.0 * crossing as f64 / total.max(1) as f64,
        100.0 * THEORY_REL32_LINE
    );
    let mut chart = ChartBuilder::on(area)
        .caption(caption, style::text(style::PANEL_TITLE_PX))
        .margin(12)
        .margin_right(24)
        .x_label_area_size(56)
        .y_label_area_size(84)
        .build_cartesian_2d(-0.5..63.5, super::axis("y", 0.0, y_top.max(1.0), false)?)?;
    chart
        .configure_mesh()
        .bold_line_style(style::GRID_BOLD)
        .light_line_style(style::GRID_LIGHT)
        .disable_x_mesh()
        .x_labels(64)
        .x_desc("site start address mod 64 (bytes)")
        .y_desc("sites")
        .axis_desc_style(style::text(style::AXIS_DESC_PX))
        .label_style(style::text(style::TICK_PX))
        .x_label_formatter(&|v: &f64| if v.round() as i64 % 4 == 0 { format!("{v:.0}") } else { String::new() })
        .y_label_formatter(&|v| compact(*v))
        .draw()?;
    let rel32_band: Vec<u64> = (0..LINE).filter(|&o| rel32_crosses(o, INSN_LEN, LINE)).collect();
    let insn_only: Vec<u64> =
        (0..LINE).filter(|&o| insn_crosses(o, INSN_LEN, LINE) && !rel32_crosses(o, INSN_LEN, LINE)).collect();
    let band = |offsets: &[u64], fill: RGBColor| -> Vec<Rectangle<(f64, f64)>> {
        offsets
            .iter()
            .map(|&o| Rectangle::new([(o as f64 - 0.5, 0.0), (o as f64 + 0.5, y_top)], fill.filled()))
            .collect()
    };
    chart.draw_series(band(&rel32_band, style::BAND))?;
    chart.draw_series(band(&insn_only, style::BAND_LIGHT))?;
    let bar = style::color(0);
    chart.draw_series((0..LINE).map(|o| {
        Rectangle::new([(o as f64 - 0.38, 0.0), (o as f64 + 0.38, h.counts[o as usize] as f64)], bar.filled())
    }))?;
    let theory = ShapeStyle::from(&BLACK).stroke_width(2);
    chart.draw_series(DashedLineSeries::new(vec![(-0.5, uniform), (63.5, uniform)], 10, 6, theory))?;
    Ok(())
}
