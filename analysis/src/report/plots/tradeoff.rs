//! The trade-off itself: cost per call, updates amortised, against calls per update, for every mechanism
//! whose inputs were measured (model and sources: [`crate::report::tradeoff`]). Where the inline line
//! crosses another, inline starts to win; those break-even points are marked, with a bar over their
//! 95% interval where the run has one. Each line carries its own marker, staggered along x, so lines
//! that coincide (inline/bp and cs-prefix often do) stay distinguishable. One panel per run and load:
//! quiet updates, and updates with callers running where measured.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::calls::panel_caption;
use super::{legend, log_log_panel, panels, Axes, DrawError, Labels, Plot};
use crate::report::dataset::Run;
use crate::report::style::{self, color};
use crate::report::tradeoff::{Outcome, Tradeoff, BASELINES};

/// Drawing order (inline/bp last, on top: cs-prefix often lies right under it) and palette index.
pub const MECHANISMS: [(&str, usize); 6] =
    [("retpoline", 0), ("indirect", 1), ("trampoline", 2), ("cs-prefix", 3), ("aligned-only", 5), ("inline/bp", 6)];

/// The outline of the `i`-th mechanism's marker, in pixels around its point: octagon, triangle,
/// square, ×, diamond, + (one polyline each, so every marker is the same element type).
fn marker_shape(i: usize) -> Vec<(i32, i32)> {
    match i % 6 {
        0 => vec![(-2, -5), (2, -5), (5, -2), (5, 2), (2, 5), (-2, 5), (-5, 2), (-5, -2), (-2, -5)],
        1 => vec![(0, -6), (6, 5), (-6, 5), (0, -6)],
        2 => vec![(-5, -5), (5, -5), (5, 5), (-5, 5), (-5, -5)],
        3 => vec![(-5, -5), (5, 5), (0, 0), (5, -5), (-5, 5)],
        4 => vec![(0, -6), (6, 0), (0, 6), (-6, 0), (0, -6)],
        _ => vec![(-6, 0), (6, 0), (0, 0), (0, -6), (0, 6)],
    }
}

/// The trade-off plot over every run whose model has at least two mechanisms.
pub struct TradeoffPlot<'a> {
    items: Vec<(&'a Run, &'a Tradeoff)>,
}

const PANEL_H: u32 = 620;

impl<'a> TradeoffPlot<'a> {
    /// `None` when no model has a break-even to show (a patched mechanism and a baseline, both measured).
    pub fn new(items: Vec<(&'a Run, &'a Tradeoff)>) -> Option<Self> {
        let items: Vec<_> = items.into_iter().filter(|(_, t)| !t.break_evens.is_empty()).collect();
        (!items.is_empty()).then_some(TradeoffPlot { items })
    }
}

impl Plot for TradeoffPlot<'_> {
    fn stem(&self) -> &'static str {
        "tradeoff"
    }

    fn size(&self) -> (u32, u32) {
        (style::WIDTH, 60 + PANEL_H * self.items.len() as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), DrawError> {
        let areas = panels(root, "What a call costs once updates are paid for, by mechanism", self.items.len())?;
        // One pair of axes for all panels, so machines compare at a glance.
        let xhi = self.items.iter().map(|(_, t)| x_range(t).1).fold(1.0, f64::max);
        let ms = || self.items.iter().flat_map(|(_, t)| t.mechanisms.iter());
        let lo = ms().map(|m| m.cost_per_call(xhi)).fold(f64::INFINITY, f64::min);
        let hi = ms().map(|m| m.cost_per_call(1.0)).fold(0.0, f64::max);
        let axes = ((1.0, xhi), style::decades(lo * 0.8, hi * 1.3));
        for ((run, t), area) in self.items.iter().zip(&areas) {
            draw_panel(run, t, area, axes)?;
        }
        Ok(())
    }
}

fn x_range(t: &Tradeoff) -> (f64, f64) {
    let furthest = t
        .break_evens
        .iter()
        .filter_map(|b| if let Outcome::Above { ratio, .. } = b.outcome { Some(ratio) } else { None })
        .fold(1e4, f64::max);
    let (_, hi) = style::decades(1.0, (furthest * 20.0).min(1e12));
    (1.0, hi)
}

fn draw_panel<DB: DrawingBackend>(
    run: &Run,
    t: &Tradeoff,
    area: &DrawingArea<DB, Shift>,
    axes: Axes,
) -> Result<(), DrawError> {
    let ((xlo, xhi), _) = axes;
    let mut chart = log_log_panel(
        area,
        format!(
            "{} — a key with S = {} sites, {}",
            panel_caption(run),
            t.sites,
            match (t.load, t.callers) {
                (Some(crate::report::lookup::Load::Busy), c) | (_, c @ 1..) => {
                    format!(
                        "updated while {c} caller{} run{}",
                        if c == 1 { "" } else { "s" },
                        if c == 1 { "s" } else { "" }
                    )
                }
                _ => "updated with no caller running".to_string(),
            }
        ),
        axes,
        "calls per update, C / P (log scale)",
        "cost per call incl. updates, (C·call + P·update) / C (log)",
    )?;
    // A hyperbola on log-log axes is smooth: 96 points draw it without visible corners.
    let xs: Vec<f64> = (0..=96).map(|i| xlo * (xhi / xlo).powf(f64::from(i) / 96.0)).collect();
    let mut legend_labels = Vec::new();
    let mut drawn = Vec::new();
    for (k, (name, palette)) in MECHANISMS.into_iter().enumerate() {
        let Some(m) = t.mechanism(name) else { continue };
        let c = color(palette);
        let update = if m.update_measured {
            format!("{} per update", style::duration_ns(m.update_ns))
        } else {
            "update = a pointer store (not measured, drawn free)".to_string()
        };
        let label = format!("{}: {} per call, {update}", m.name, style::duration_ns(m.call_ns));
        let curve: Vec<(f64, f64)> = xs.iter().map(|&x| (x, m.cost_per_call(x))).collect();
        chart.draw_series(LineSeries::new(curve.clone(), c.stroke_width(2)))?.label(label.clone()).legend(
            move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (20, 0)], c.stroke_width(3))
                    + PathElement::new(
                        marker_shape(k).into_iter().map(|(a, b)| (a + 10, b)).collect::<Vec<_>>(),
                        c.stroke_width(2),
                    )
            },
        );
        // Markers every 12 points, each mechanism's shifted by 2, so coinciding lines alternate.
        chart.draw_series(
            curve
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 12 == (2 * k) % 12)
                .map(|(_, p)| EmptyElement::at(*p) + PathElement::new(marker_shape(k), c.stroke_width(2))),
        )?;
        legend_labels.push(label);
        drawn.push(curve);
    }
    // Break-even points of inline/bp against each baseline, labelled with N. Labels are kept apart;
    // leader lines go first and labels on a white backing after, so no line crosses any text.
    let base = area.get_base_pixel();
    let mut placed = Labels::default();
    let font = style::anchored(style::LEGEND_PX, HPos::Left, VPos::Bottom);
    let mut labels = Vec::new();
    if let Some(inline) = t.mechanism("inline/bp") {
        for other in BASELINES {
            let Some(Outcome::Above { ratio, n, interval }) = t.break_even("inline/bp", other) else { continue };
            if ratio < xlo || ratio > xhi {
                continue;
            }
            let y = inline.cost_per_call(ratio);
            if let Some((lo, hi)) = interval {
                // The break-even's 95% interval as a bar along x, capped, clipped to the axis.
                let (lo, hi) = (lo.max(xlo), hi.min(xhi));
                let ink = BLACK.stroke_width(2);
                let caps = [lo, hi].map(|x| EmptyElement::at((x, y)) + PathElement::new(vec![(0, -6), (0, 6)], ink));
                chart.draw_series([PathElement::new(vec![(lo, y), (hi, y)], ink)])?;
                chart.draw_series(caps)?;
                drawn.push(vec![(lo, y), (hi, y)]);
            }
            chart.draw_series([Circle::new((ratio, y), 7, BLACK.stroke_width(3))])?;
            drawn.push(vec![(ratio, y)]);
            let (px, py) = chart.backend_coord(&(ratio, y));
            let (px, py) = (px - base.0, py - base.1);
            let text = match interval {
                Some((lo, hi)) => format!(
                    "inline/bp = {other} at {n} [{}–{}] calls/update",
                    style::compact(lo.floor()),
                    if hi.is_finite() { style::compact(hi.ceil()) } else { "∞".into() }
                ),
                None => format!("inline/bp = {other} at {n} calls/update (no interval)"),
            };
            let (w, h) = area.estimate_text_size(&text, &font)?;
            let (w, h) = (w as i32, h as i32);
            let (lx, ly) = placed.place(px + 10, py - 10, w + 4, h + 4);
            if ly != py - 10 {
                area.draw(&PathElement::new(vec![(px + 5, py - 5), (lx, ly - h / 2)], style::GREY.stroke_width(1)))?;
            }
            labels.push((text, lx, ly, w, h));
        }
    }
    for (text, lx, ly, w, h) in labels {
        area.draw(&Rectangle::new([(lx - 2, ly - h - 1), (lx + w + 2, ly + 1)], WHITE.mix(0.85).filled()))?;
        area.draw_text(&text, &font, (lx, ly))?;
    }
    legend(&mut chart, &legend_labels, &drawn)
}
