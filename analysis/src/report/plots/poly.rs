//! Indirect call vs retpoline vs inline call as the number of targets visited in random order grows
//! (K = 1 is the mono scenario). Round-robin orders are left out: the predictor learns them, which
//! hides the cost a real polymorphic call site pays. An inline (direct-style) site has one target —
//! changing it means patching — so it has only a mono row and is drawn as a flat dashed line: the cost
//! each of K specialised sites would pay.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::calls::panel_caption;
use super::{legend, note, panels, DrawError, Plot};
use crate::report::dataset::Run;
use crate::report::lookup::cycles_unit;
use crate::report::style::{self, color, compact};
use callpatch_vocab::Flavor;

/// The flavors compared, in legend order.
pub const FLAVORS: [Flavor; 3] = [Flavor::Indirect, Flavor::Retpoline, Flavor::Inline];

/// The polymorphism plot over every run with random poly rows.
pub struct PolyPlot<'a> {
    runs: Vec<&'a Run>,
}

const PANEL_H: u32 = 520;

/// Median cycles per call of `flavor` by number of random targets, sorted by K.
pub fn series(run: &Run, flavor: Flavor) -> Vec<(u32, f64)> {
    let mut v: Vec<(u32, f64)> = run
        .calls
        .iter()
        .filter(|r| r.flavor == flavor && r.cycles_median > 0.0)
        .filter_map(|r| Some((u32::try_from(r.scenario().random_targets()?).ok()?, r.cycles_median)))
        .collect();
    v.sort_by_key(|p| p.0);
    v.dedup_by_key(|p| p.0);
    v
}

impl<'a> PolyPlot<'a> {
    /// `None` when no run has a random poly-K row (K > 1) for any compared flavor.
    pub fn new(runs: &'a [Run]) -> Option<Self> {
        let runs: Vec<&Run> =
            runs.iter().filter(|r| FLAVORS.iter().any(|f| series(r, *f).iter().any(|p| p.0 > 1))).collect();
        (!runs.is_empty()).then_some(PolyPlot { runs })
    }
}

impl Plot for PolyPlot<'_> {
    fn stem(&self) -> &'static str {
        "poly"
    }

    fn size(&self) -> (u32, u32) {
        (style::WIDTH, 60 + PANEL_H * self.runs.len() as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), DrawError> {
        let areas =
            panels(root, "Call cost as the number of targets (visited in random order) grows", self.runs.len())?;
        // One pair of axes for all panels, so machines compare at a glance.
        let points = || self.runs.iter().flat_map(|r| FLAVORS.iter().flat_map(|f| series(r, *f)));
        let k_max = points().map(|p| p.0).max().unwrap_or(1).max(2);
        let y_max = points().map(|p| p.1).fold(0.0, f64::max);
        for (run, area) in self.runs.iter().zip(&areas) {
            draw_panel(run, area, k_max, y_max)?;
        }
        Ok(())
    }
}

fn draw_panel<DB: DrawingBackend>(
    run: &Run,
    area: &DrawingArea<DB, Shift>,
    k_max: u32,
    y_max: f64,
) -> Result<(), DrawError> {
    // (palette index, flavor, (K, median cycles) points)
    type Line<'f> = (usize, &'f str, Vec<(u32, f64)>);
    let lines: Vec<Line> =
        FLAVORS.iter().enumerate().map(|(i, f)| (i, f.name(), series(run, *f))).filter(|l| !l.2.is_empty()).collect();
    if lines.is_empty() || y_max <= 0.0 {
        return note(area, &format!("{}: no random poly-K rows", run.label));
    }
    let mut chart = ChartBuilder::on(area)
        .caption(panel_caption(run), style::text(style::PANEL_TITLE_PX))
        .margin(12)
        .margin_right(24)
        .x_label_area_size(56)
        .y_label_area_size(84)
        .build_cartesian_2d(
            super::axis("x", 0.85, k_max as f64 * 1.18, true)?.log_scale().base(2.0),
            super::axis("y", 0.0, y_max * 1.15, false)?,
        )?;
    chart
        .configure_mesh()
        .bold_line_style(style::GRID_BOLD)
        .light_line_style(style::GRID_LIGHT)
        .x_desc("targets visited in random order (K; 1 = mono), log scale")
        .y_desc(format!("cycles per call, median ({})", cycles_unit(run.timer())))
        .axis_desc_style(style::text(style::AXIS_DESC_PX))
        .label_style(style::text(style::TICK_PX))
        .x_label_formatter(&|v| compact(*v))
        .y_label_formatter(&|v| compact(*v))
        .draw()?;
    let mut labels = Vec::new();
    let mut drawn = Vec::new();
    for (i, flavor, points) in &lines {
        let c = color(*i);
        let pts: Vec<(f64, f64)> = points.iter().map(|&(k, y)| (k as f64, y)).collect();
        if let [(1, mono)] = points.as_slice() {
            let s = ShapeStyle::from(&c).stroke_width(3);
            let flat = vec![(0.85, *mono), (k_max as f64 * 1.18, *mono)];
            let label = format!("{flavor}: one target per site (mono), drawn flat");
            chart
                .draw_series(DashedLineSeries::new(flat.clone(), 12, 8, s))?
                .label(label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], s));
            labels.push(label);
            drawn.push(flat);
        } else {
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(3)))?
                .label(*flavor)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(3)));
            labels.push(flavor.to_string());
            drawn.push(pts.clone());
        }
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 5, c.filled())))?;
    }
    for flavor in FLAVORS.iter().filter(|f| !lines.iter().any(|l| **f == l.1)) {
        let label = format!("{flavor}: not measured");
        chart.draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?.label(label.clone());
        labels.push(label);
    }
    legend(&mut chart, &labels, &drawn)
}
