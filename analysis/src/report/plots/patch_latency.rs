//! Patch latency against batch size per protocol (log-log), with the floor the protocol's syncs set:
//! `bp` and `cs-prefix` need 3 membarrier(SYNC_CORE) syncs per batch however large, so no batch can
//! finish faster than 3 × the cost of one sync measured in the same run. The floor is drawn for those
//! two only (its label says so; the 1-sync aligned protocols are not bound by it). The legend is a
//! strip above each panel, so the axis ends just above the data instead of leaving decades of room
//! for a legend box.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::calls::panel_caption;
use super::legend::{self, Swatch};
use super::{log_log_panel, panels, Axes, DrawError, Plot};
use crate::report::dataset::Run;
use crate::report::lookup::SYNC_PROTOCOL;
use crate::report::style::{self, color};

/// One line: a protocol (with its caller count, when the run measured several).
pub struct Line {
    /// The legend label.
    pub label: String,
    /// The protocol's name.
    pub protocol: String,
    /// Palette index: one colour per protocol (and write method).
    pub color: usize,
    /// Measured with the fewest callers (drawn solid; with callers, dashed).
    pub quiet: bool,
    /// (batch, median latency ns, min latency ns)
    pub points: Vec<(u64, f64, f64)>,
}

/// The lines of one run: one per protocol, number of concurrent callers and write method (the last two
/// named only when the run measured more than one).
pub fn lines(run: &Run) -> Vec<Line> {
    let methods = run.patch_methods();
    let mut all_callers: Vec<u32> = run.patch.iter().map(|r| r.callers).collect();
    all_callers.sort_unstable();
    all_callers.dedup();
    let mut out: Vec<Line> = Vec::new();
    let protocols = run.protocols();
    for (pi, protocol) in protocols.iter().enumerate() {
        for (mi, &method) in methods.iter().enumerate() {
            for &c in &all_callers {
                let mut points: Vec<(u64, f64, f64)> = run
                    .patch
                    .iter()
                    .filter(|r| {
                        r.protocol.protocol() == Some(*protocol) && r.callers == c && r.method.as_str() == method
                    })
                    .filter(|r| r.batch > 0 && r.latency_ns_median > 0.0)
                    .map(|r| (r.batch, r.latency_ns_median, r.latency_ns_min))
                    .collect();
                if points.is_empty() {
                    continue;
                }
                points.sort_by_key(|p| p.0);
                let mut label = protocol.to_string();
                if all_callers.len() > 1 {
                    label += &format!(", {c} caller{}", if c == 1 { "" } else { "s" });
                }
                if methods.len() > 1 {
                    label += &format!(", {method}");
                }
                out.push(Line {
                    label,
                    protocol: protocol.to_string(),
                    color: pi + mi * protocols.len(),
                    quiet: Some(&c) == all_callers.first(),
                    points,
                });
            }
        }
    }
    out
}

/// The 3-sync floor (3 × one membarrier) per caller count measured, quiet first.
fn floors(run: &Run) -> Vec<(u32, f64)> {
    run.caller_counts().into_iter().filter_map(|c| Some((c, 3.0 * run.sync_ns(c)?))).collect()
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
        let areas = panels(
            root,
            "Time to patch a batch of call sites, by protocol (median; small circles: min)",
            self.runs.len(),
        )?;
        // One pair of axes for all panels, so machines compare at a glance.
        let (mut b_max, mut lo, mut hi) = (1u64, f64::INFINITY, 0.0f64);
        for run in &self.runs {
            for p in lines(run).iter().flat_map(|l| l.points.clone()) {
                b_max = b_max.max(p.0);
                lo = lo.min(p.1).min(if p.2 > 0.0 { p.2 } else { p.1 });
                hi = hi.max(p.1);
            }
            for (_, f) in floors(run) {
                lo = lo.min(f);
                hi = hi.max(f);
            }
        }
        // The legend is a strip above the panel: the axis needs no headroom beyond the data.
        let (lo, hi) = if lo.is_finite() && hi > 0.0 { (lo.min(hi), hi) } else { (1.0, 10.0) };
        let (ylo, yhi) = style::decades(lo * 0.8, hi * 1.5);
        let axes = ((0.8, b_max as f64 * 1.5), (ylo, yhi));
        for (run, area) in self.runs.iter().zip(&areas) {
            draw_panel(run, area, axes)?;
        }
        Ok(())
    }
}

fn draw_panel<DB: DrawingBackend>(run: &Run, area: &DrawingArea<DB, Shift>, axes: Axes) -> Result<(), DrawError> {
    let lines = lines(run);
    let ((xlo, xhi), _) = axes;
    let floors = floors(run);
    let floor_label = |callers: u32, f: f64| match callers {
        0 => format!("3-sync floor: 3 × membarrier = {} (bp, cs-prefix; no callers)", style::duration_ns(f)),
        c => format!(
            "3-sync floor with {c} caller{}: 3 × membarrier = {} (bp, cs-prefix)",
            if c == 1 { "" } else { "s" },
            style::duration_ns(f)
        ),
    };
    let mut entries: Vec<(Swatch, String)> = lines
        .iter()
        .map(|l| (if l.quiet { Swatch::Line(color(l.color)) } else { Swatch::Dashed(color(l.color)) }, l.label.clone()))
        .collect();
    entries.extend(floors.iter().map(|&(c, f)| (Swatch::Dashed(style::GREY), floor_label(c, f))));
    let body = area.titled(&panel_caption(run), style::text(style::PANEL_TITLE_PX))?;
    let (w, _) = body.dim_in_pixel();
    let strip_h = legend::height(&body, &entries, w.saturating_sub(120))?;
    let (strip, body) = body.split_vertically(strip_h);
    legend::draw(&strip, &entries, 100)?;
    let area = &body;
    let mut chart = log_log_panel(
        area,
        String::new(),
        axes,
        "sites patched in one batch (log scale)",
        "time per batch (log scale)",
    )?;

    for line in &lines {
        let c = color(line.color);
        let median: Vec<(f64, f64)> = line.points.iter().map(|p| (p.0 as f64, p.1)).collect();
        let s = ShapeStyle::from(&c).stroke_width(3);
        if line.quiet {
            chart.draw_series(LineSeries::new(median.clone(), s))?;
        } else {
            chart.draw_series(DashedLineSeries::new(median.clone(), 10, 6, s))?;
        }
        chart.draw_series(median.iter().map(|&p| Circle::new(p, 5, c.filled())))?;
        chart.draw_series(line.points.iter().map(|p| Circle::new((p.0 as f64, p.2), 3, c.stroke_width(2))))?;
    }
    for (i, &(_, f)) in floors.iter().enumerate() {
        // The quiet floor dashed, a floor with callers running dotted (short dashes).
        let grey = ShapeStyle::from(&style::GREY).stroke_width(2);
        let (dash, gap) = if i == 0 { (10, 6) } else { (3, 5) };
        chart.draw_series(DashedLineSeries::new(vec![(xlo, f), (xhi, f)], dash, gap, grey))?;
    }
    if floors.is_empty() {
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
    Ok(())
}
