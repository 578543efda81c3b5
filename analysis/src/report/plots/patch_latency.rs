//! Patch latency against batch size per protocol (log-log), with the floor the protocol's syncs set:
//! `bp` and `cs-prefix` need 3 membarrier(SYNC_CORE) syncs per batch however large, so no batch can
//! finish faster than 3 × the cost of one sync measured in the same run.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::calls::{legend, panel_caption};
use super::{panels, DrawError, Plot};
use crate::report::dataset::Run;
use crate::report::lookup::SYNC_PROTOCOL;
use crate::report::style::{self, color, compact, duration_tick};

/// One line: a protocol (with its caller count, when the run measured several).
pub struct Line {
    pub label: String,
    pub protocol: String,
    /// (batch, median latency ns, min latency ns)
    pub points: Vec<(u64, f64, f64)>,
}

/// The lines of one run: one per protocol and number of concurrent callers.
pub fn lines(run: &Run) -> Vec<Line> {
    let mut out: Vec<Line> = Vec::new();
    for protocol in run.protocols() {
        let rows: Vec<_> = run.patch.iter().filter(|r| r.row.protocol == protocol).collect();
        let mut callers: Vec<u32> = rows.iter().map(|r| r.extra.callers()).collect();
        callers.sort_unstable();
        callers.dedup();
        for &c in &callers {
            let mut points: Vec<(u64, f64, f64)> = rows
                .iter()
                .filter(|r| r.extra.callers() == c && r.row.batch > 0 && r.row.latency_ns_median > 0.0)
                .map(|r| (r.row.batch, r.row.latency_ns_median, r.row.latency_ns_min))
                .collect();
            points.sort_by_key(|p| p.0);
            if points.is_empty() {
                continue;
            }
            let label = if callers.len() > 1 {
                format!("{protocol}, {c} caller{}", if c == 1 { "" } else { "s" })
            } else {
                protocol.clone()
            };
            out.push(Line { label, protocol: protocol.clone(), points });
        }
    }
    out
}

/// The patch latency plot over every run with patch rows.
pub struct PatchLatencyPlot<'a> {
    runs: Vec<&'a Run>,
}

const PANEL_H: u32 = 560;

impl<'a> PatchLatencyPlot<'a> {
    /// `None` when no run has protocol rows.
    pub fn new(runs: &'a [Run]) -> Option<Self> {
        let runs: Vec<&Run> = runs.iter().filter(|r| !lines(r).is_empty()).collect();
        (!runs.is_empty()).then_some(PatchLatencyPlot { runs })
    }
}

impl Plot for PatchLatencyPlot<'_> {
    fn stem(&self) -> &'static str {
        "patch_latency"
    }

    fn size(&self) -> (u32, u32) {
        (style::WIDTH, 60 + PANEL_H * self.runs.len() as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), DrawError> {
        let areas =
            panels(root, "Time to patch a batch of call sites, by protocol (median; dots: min)", self.runs.len())?;
        // One pair of axes for all panels, so machines compare at a glance.
        let (mut b_max, mut lo, mut hi) = (1u64, f64::INFINITY, 0.0f64);
        for run in &self.runs {
            for p in lines(run).iter().flat_map(|l| l.points.clone()) {
                b_max = b_max.max(p.0);
                lo = lo.min(p.1).min(if p.2 > 0.0 { p.2 } else { p.1 });
                hi = hi.max(p.1);
            }
            if let Some(s) = run.sync_ns() {
                lo = lo.min(3.0 * s);
                hi = hi.max(3.0 * s);
            }
        }
        let (ylo, yhi) = style::decades(lo * 0.8, hi * 1.5);
        let axes = ((0.8, b_max as f64 * 1.5), (ylo, yhi));
        for (run, area) in self.runs.iter().zip(&areas) {
            draw_panel(run, area, axes)?;
        }
        Ok(())
    }
}

/// Axes: ((x from, x to), (y from, y to)).
type Axes = ((f64, f64), (f64, f64));

fn draw_panel<DB: DrawingBackend>(run: &Run, area: &DrawingArea<DB, Shift>, axes: Axes) -> Result<(), DrawError> {
    let lines = lines(run);
    let floor = run.sync_ns().map(|s| 3.0 * s);
    let ((xlo, xhi), (ylo, yhi)) = axes;
    let mut chart = ChartBuilder::on(area)
        .caption(panel_caption(run), style::text(style::PANEL_TITLE_PX))
        .margin(12)
        .margin_right(24)
        .x_label_area_size(56)
        .y_label_area_size(96)
        .build_cartesian_2d((xlo..xhi).log_scale(), (ylo..yhi).log_scale())?;
    chart
        .configure_mesh()
        .bold_line_style(style::GRID_BOLD)
        .light_line_style(style::GRID_LIGHT)
        .x_desc("sites patched in one batch (log scale)")
        .y_desc("time per batch (log scale)")
        .axis_desc_style(style::text(style::AXIS_DESC_PX))
        .label_style(style::text(style::TICK_PX))
        .x_label_formatter(&|v| compact(*v))
        .y_label_formatter(&|v| duration_tick(*v))
        .draw()?;
    for (i, line) in lines.iter().enumerate() {
        let c = color(i);
        let median: Vec<(f64, f64)> = line.points.iter().map(|p| (p.0 as f64, p.1)).collect();
        chart
            .draw_series(LineSeries::new(median.clone(), c.stroke_width(3)))?
            .label(line.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(3)));
        chart.draw_series(median.iter().map(|&p| Circle::new(p, 5, c.filled())))?;
        chart.draw_series(line.points.iter().map(|p| Circle::new((p.0 as f64, p.2), 3, c.stroke_width(2))))?;
    }
    let grey = ShapeStyle::from(&style::GREY).stroke_width(2);
    match floor {
        Some(f) => {
            chart
                .draw_series(DashedLineSeries::new(vec![(xlo, f), (xhi, f)], 10, 6, grey))?
                .label(format!("3-sync floor: 3 × membarrier = {} (bp, cs-prefix)", style::duration_ns(f)))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey));
        }
        None => {
            let (w, h) = chart.plotting_area().dim_in_pixel();
            let base = chart.plotting_area().get_base_pixel();
            let abs = area.get_base_pixel();
            let style = style::anchored(style::NOTE_PX, HPos::Right, VPos::Bottom);
            area.draw_text(
                &format!("3-sync floor unknown: patch.csv has no `{SYNC_PROTOCOL}` row or sync_ns column"),
                &style,
                (base.0 - abs.0 + w as i32 - 10, base.1 - abs.1 + h as i32 - 10),
            )?;
        }
    }
    legend(&mut chart)
}
