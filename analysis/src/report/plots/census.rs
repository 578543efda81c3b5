//! Fraction of call sites that cross a 64-byte line, per binary and kind: the rel32 field alone (what
//! decides whether one atomic store can patch the site; drawn only for kinds that have one) and the
//! whole instruction, each against what a uniform start offset predicts for that kind: 3/64 for a
//! rel32, (n − 1)/64 for an n-byte instruction (a 5-byte call 4/64, a 6-byte jcc 5/64); a kind whose
//! length varies (an indirect call, a thunk call that may be a jcc) gets no instruction theory mark.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::legend::{self, Swatch};
use super::{DrawError, Plot};
use crate::census::crossing::{theory, LINE, THEORY_INSN5_LINE, THEORY_REL32_LINE};
use crate::census::SiteKind;
use crate::report::dataset::CensusBinary;
use crate::report::style::{self, color};

/// One bar pair.
pub struct Row {
    /// The bar pair's label (binary and kind).
    pub label: String,
    /// Sites of the kind.
    pub count: u64,
    /// Fraction whose rel32 crosses; `None` for a kind without a rel32 (the census then counts the last
    /// four bytes, which only says where the instruction ends).
    pub rel32: Option<f64>,
    /// Fraction whose whole instruction crosses a 64-byte line.
    pub insn: f64,
    /// The instruction length of every site of the kind, when it has one.
    pub insn_len: Option<u64>,
}

/// Whether a kind's sites carry a rel32, and their instruction length when all share one.
pub fn shape(kind: SiteKind) -> (bool, Option<u64>) {
    match kind {
        SiteKind::CallRel32
        | SiteKind::JmpRel32
        | SiteKind::FentryCall
        | SiteKind::StaticCallSite
        | SiteKind::ReturnSite
        | SiteKind::McountSite
        | SiteKind::CallSite => (true, Some(5)),
        SiteKind::JccRel32 => (true, Some(6)),
        // call/jmp rel32 (5 bytes) or jcc rel32 (6) to a thunk.
        SiteKind::ThunkCall | SiteKind::RetpolineSite => (true, None),
        SiteKind::EndbrEntry => (false, Some(4)),
        // ff /2, ff /4: 2 bytes through a register, up to 8 through memory; ret 1 or 3 bytes; a kCFI
        // preamble's first instruction.
        SiteKind::CallIndirect | SiteKind::JmpIndirect | SiteKind::Ret | SiteKind::CfiPreamble => (false, None),
    }
}

/// Every (binary, kind) with sites, binaries in census order, kinds in [`SiteKind::ALL`] order.
pub fn rows(binaries: &[CensusBinary]) -> Vec<Row> {
    let mut out = Vec::new();
    for b in binaries {
        let mut kinds: Vec<SiteKind> = b.kinds.iter().filter(|r| r.count > 0).map(|r| r.kind).collect();
        kinds.sort_unstable();
        kinds.dedup();
        for kind in kinds {
            let rs: Vec<_> = b.kinds.iter().filter(|r| r.kind == kind).collect();
            let count: u64 = rs.iter().map(|r| r.count).sum();
            let rel: u64 = rs.iter().map(|r| r.cross64_rel32).sum();
            let insn: u64 = rs.iter().map(|r| r.cross64_insn).sum();
            let (has_rel32, insn_len) = shape(kind);
            out.push(Row {
                label: format!("{} · {}", b.label, kind.name().replace('_', " ")),
                count,
                rel32: has_rel32.then_some(rel as f64 / count as f64),
                insn: insn as f64 / count as f64,
                insn_len,
            });
        }
    }
    out
}

/// The census fractions plot.
pub struct CensusPlot {
    rows: Vec<Row>,
}

const ROW_H: u32 = 50;
/// Room for the legend strip (up to two rows).
const STRIP_H: u32 = 60;

impl CensusPlot {
    /// `None` when the census has no sites.
    pub fn new(binaries: &[CensusBinary]) -> Option<Self> {
        let rows = rows(binaries);
        (!rows.is_empty()).then_some(CensusPlot { rows })
    }
}

impl Plot for CensusPlot {
    fn stem(&self) -> &'static str {
        "census"
    }

    fn size(&self) -> (u32, u32) {
        (style::WIDTH, 150 + STRIP_H + ROW_H * self.rows.len() as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), DrawError> {
        let n = self.rows.len();
        let body = root.titled("Call sites that cross a 64-byte cache line", style::text(style::TITLE_PX))?;
        let (c_rel, c_insn) = (color(1), color(0));
        let entries = [
            (Swatch::Fill(c_rel), "rel32 (last 4 bytes) crosses: one atomic store cannot patch it".to_string()),
            (Swatch::Fill(c_insn), "instruction crosses".to_string()),
            (Swatch::Dashed(BLACK), format!("uniform theory 3/64 = {:.2}% (rel32)", THEORY_REL32_LINE * 100.0)),
            (
                Swatch::Dashed(BLACK),
                format!(
                    "uniform theory 4/64 = {:.2}% (5-byte insn), 5/64 = {:.2}% (6-byte jcc): the mark on each bar",
                    THEORY_INSN5_LINE * 100.0,
                    theory(6, LINE) * 100.0
                ),
            ),
        ];
        let strip_h = legend::height(&body, &entries, style::WIDTH - 40)?;
        let (strip, area) = body.split_vertically(strip_h);
        legend::draw(&strip, &entries, 20)?;

        let tick = style::text(style::TICK_PX);
        let labels: Vec<String> = self.rows.iter().map(|r| format!("{} ({} sites)", r.label, r.count)).collect();
        let mut label_w = 0;
        for l in &labels {
            label_w = label_w.max(area.estimate_text_size(l, &tick)?.0);
        }
        let widest = self.rows.iter().map(|r| r.insn.max(r.rel32.unwrap_or(0.0))).fold(theory(6, LINE), f64::max);
        let x_max = widest * 100.0 * 1.22;
        let mut chart = ChartBuilder::on(&area)
            .margin(14)
            .margin_right(30)
            .x_label_area_size(56)
            .y_label_area_size(label_w + 24)
            .build_cartesian_2d(super::axis("x", 0.0, x_max, false)?, -0.5..(n as f64 - 0.5))?;
        chart
            .configure_mesh()
            .bold_line_style(style::GRID_BOLD)
            .light_line_style(style::GRID_LIGHT)
            .disable_y_mesh()
            .y_labels(0)
            .x_desc("sites crossing a line (% of the kind's sites)")
            .axis_desc_style(style::text(style::AXIS_DESC_PX))
            .label_style(style::text(style::TICK_PX))
            .x_label_formatter(&|v| format!("{v:.0}%"))
            .draw()?;
        // Row i is drawn top-down; the rel32 bar above the instruction bar.
        let y = |i: usize| (n - 1 - i) as f64;
        let rel_bar = |i: usize| (y(i) + 0.04, y(i) + 0.36);
        let insn_bar = |i: usize| (y(i) - 0.36, y(i) - 0.04);
        chart.draw_series(self.rows.iter().enumerate().filter_map(|(i, r)| {
            let (y0, y1) = rel_bar(i);
            Some(Rectangle::new([(0.0, y0), (r.rel32? * 100.0, y1)], c_rel.filled()))
        }))?;
        chart.draw_series(self.rows.iter().enumerate().map(|(i, r)| {
            let (y0, y1) = insn_bar(i);
            Rectangle::new([(0.0, y0), (r.insn * 100.0, y1)], c_insn.filled())
        }))?;
        // Each bar's own theory, as a dashed mark across it: 3/64 for a rel32, (n − 1)/64 for an n-byte
        // instruction.
        for (i, r) in self.rows.iter().enumerate() {
            let marks = [
                r.rel32.map(|_| (THEORY_REL32_LINE, rel_bar(i))),
                r.insn_len.map(|len| (theory(len, LINE), insn_bar(i))),
            ];
            // Black, so the mark shows over its own bar as well as past its end.
            for (frac, (y0, y1)) in marks.into_iter().flatten() {
                let s = ShapeStyle::from(&BLACK).stroke_width(3);
                let x = frac * 100.0;
                chart.draw_series(DashedLineSeries::new(vec![(x, y0 - 0.06), (x, y1 + 0.06)], 5, 3, s))?;
            }
        }
        let base = area.get_base_pixel();
        let right = style::anchored(style::TICK_PX, HPos::Right, VPos::Center);
        let value = style::anchored(style::TICK_PX - 1, HPos::Left, VPos::Center);
        let value_at = |frac: f64, yc: f64| -> Result<(), DrawError> {
            let text = format!("{:.2}%", frac * 100.0);
            let (px, py) = chart.backend_coord(&(frac * 100.0, yc));
            let (w, h) = area.estimate_text_size(&text, &value)?;
            let (x, y) = (px - base.0 + 6, py - base.1);
            // A white backing keeps the number readable where a theory line passes behind it.
            area.draw(&Rectangle::new(
                [(x - 2, y - h as i32 / 2 - 1), (x + w as i32 + 2, y + h as i32 / 2 + 1)],
                WHITE.filled(),
            ))?;
            area.draw_text(&text, &value, (x, y))?;
            Ok(())
        };
        let none = style::anchored(style::TICK_PX - 1, HPos::Left, VPos::Center);
        for (i, r) in self.rows.iter().enumerate() {
            let (y0, y1) = rel_bar(i);
            match r.rel32 {
                Some(f) => value_at(f, (y0 + y1) / 2.0)?,
                None => {
                    let (px, py) = chart.backend_coord(&(0.0, (y0 + y1) / 2.0));
                    area.draw_text("no rel32", &none, (px - base.0 + 6, py - base.1))?;
                }
            }
            let (y0, y1) = insn_bar(i);
            value_at(r.insn, (y0 + y1) / 2.0)?;
        }
        for (i, l) in labels.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(0.0, y(i)));
            area.draw_text(l, &right, (px - base.0 - 10, py - base.1))?;
        }
        Ok(())
    }
}
