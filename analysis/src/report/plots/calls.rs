//! Cycles per call by flavor (groups) and scenario (bars): the cost as the bar, the 95% interval as the
//! whisker (a paired run: ratio interval × the baseline's cycles; an older run has no interval and no
//! whisker, and says so). Scenarios shown: mono, poly-4 in each order measured, and the largest
//! sites-N — the questions "what does a call cost", "what if the target moves", "what if the code is
//! big". A group has bars only for the scenarios measured, side by side (no empty slot that reads as
//! 0). `trap`, a kernel round trip three decades above the rest, is not drawn: its cost is written
//! under the axis, so the 3–30-tick range stays readable on a linear axis.

use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::{legend, note, panels, DrawError, Plot};
use crate::report::dataset::Run;
use crate::report::lookup::cycles_unit;
use crate::report::scenario::{Order, RowScenario, Scenario};
use crate::report::style::{self, color, compact};
use callpatch_vocab::Flavor;

/// How the y axis of the calls plot is scaled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scale {
    /// Logarithmic when the tallest bar is more than 30 times the lowest, else linear.
    #[default]
    Auto,
    /// Linear.
    Linear,
    /// Logarithmic.
    Log,
}

/// The calls plot over every run that has `calls.csv` rows.
pub struct CallsPlot<'a> {
    runs: Vec<&'a Run>,
    scale: Scale,
}

const PANEL_H: u32 = 560;

impl<'a> CallsPlot<'a> {
    /// `None` when no run has calls rows.
    pub fn new(runs: &'a [Run], scale: Scale) -> Option<Self> {
        let runs: Vec<&Run> = runs.iter().filter(|r| !r.calls.is_empty()).collect();
        (!runs.is_empty()).then_some(CallsPlot { runs, scale })
    }
}

/// The scenarios the calls plot shows for `run`, in legend order.
pub fn shown_scenarios(run: &Run) -> Vec<RowScenario> {
    let all: Vec<RowScenario> = run.calls.iter().map(|r| r.scenario()).collect();
    let mut v = Vec::new();
    let mut push = |s: RowScenario| {
        if all.contains(&s) && !v.contains(&s) {
            v.push(s);
        }
    };
    push(Scenario::Mono.into());
    push(Scenario::Poly { k: 4, order: Order::RoundRobin }.into());
    push(RowScenario::Unordered { k: 4 });
    push(Scenario::Poly { k: 4, order: Order::Random }.into());
    let max_sites =
        all.iter().filter_map(|s| if let RowScenario::Known(Scenario::Sites(n)) = s { Some(*n) } else { None }).max();
    if let Some(n) = max_sites {
        push(Scenario::Sites(n).into());
    }
    v
}

impl Plot for CallsPlot<'_> {
    fn stem(&self) -> &'static str {
        "calls"
    }

    fn size(&self) -> (u32, u32) {
        (style::WIDTH, 60 + PANEL_H * self.runs.len() as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), DrawError> {
        let areas = panels(
            root,
            "Cost of one call, by flavor and scenario (bar: median; whisker: 95% interval)",
            self.runs.len(),
        )?;
        let contents: Vec<Contents> = self.runs.iter().map(|r| contents(r)).collect();
        // One y axis for all panels, so machines compare at a glance.
        let all = contents.iter().flat_map(|c| c.bars.iter());
        let lo = all.clone().map(|b| b.err.map_or(b.median, |e| e.0)).fold(f64::INFINITY, f64::min);
        let hi = all.map(|b| b.err.map_or(b.median, |e| e.1)).fold(0.0, f64::max);
        let (lo, hi) = if lo.is_finite() && hi > 0.0 { (lo.min(hi), hi) } else { (1.0, 10.0) };
        let log = match self.scale {
            Scale::Log => true,
            Scale::Linear => false,
            Scale::Auto => hi / lo > 30.0,
        };
        for ((run, c), area) in self.runs.iter().zip(&contents).zip(&areas) {
            draw_panel(run, c, area, log, (lo, hi))?;
        }
        Ok(())
    }
}

/// What one panel shows.
struct Contents {
    flavors: Vec<Flavor>,
    scenarios: Vec<RowScenario>,
    bars: Vec<Bar>,
    /// The `trap` flavor's mono cost (ticks, ns), written under the axis instead of drawn.
    trap: Option<(f64, f64)>,
    /// Some bar has an interval; none has in an older run.
    any_interval: bool,
}

fn contents(run: &Run) -> Contents {
    let flavors: Vec<Flavor> = run.flavors().into_iter().filter(|f| *f != Flavor::Trap).collect();
    let scenarios = shown_scenarios(run);
    let mut bars = Vec::new();
    for (g, flavor) in flavors.iter().enumerate() {
        // (series, cost, interval) of each scenario measured for this flavor.
        type Present = (usize, f64, Option<(f64, f64)>);
        let present: Vec<Present> = scenarios
            .iter()
            .enumerate()
            .filter_map(|(s, scenario)| {
                let iv = run.cost(*flavor, scenario.clone())?;
                let ok = |v: f64| v.is_finite() && v > 0.0;
                let err = (iv.known && iv.hi > iv.lo && ok(iv.lo) && ok(iv.hi)).then_some((iv.lo, iv.hi));
                ok(iv.mid).then_some((s, iv.mid, err))
            })
            .collect();
        let of = present.len();
        for (slot, (series, median, err)) in present.into_iter().enumerate() {
            bars.push(Bar { group: g, series, slot, of, err, median });
        }
    }
    let trap = run
        .call(Flavor::Trap, Scenario::Mono)
        .filter(|r| r.cycles_median > 0.0)
        .map(|r| (r.cycles_median, r.ns_median));
    let any_interval = bars.iter().any(|b| b.err.is_some());
    Contents { flavors, scenarios, bars, trap, any_interval }
}

struct Bar {
    group: usize,
    series: usize,
    /// Position among the group's bars, and how many the group has.
    slot: usize,
    of: usize,
    /// The 95% interval, `None` when the row has none.
    err: Option<(f64, f64)>,
    median: f64,
}

fn draw_panel<DB: DrawingBackend>(
    run: &Run,
    c: &Contents,
    area: &DrawingArea<DB, Shift>,
    log: bool,
    (lo, hi): (f64, f64),
) -> Result<(), DrawError> {
    let Contents { flavors, scenarios, bars, trap, any_interval } = c;
    if bars.is_empty() {
        return note(area, &format!("{}: no positive cycle counts in calls.csv", run.label));
    }
    let caption = panel_caption(run);
    let y_desc = format!("cycles per call ({})", cycles_unit(run.timer()));
    let n_series = scenarios.len().max(1);
    let x_range = -0.5..(flavors.len() as f64 - 0.5);
    let slot = 0.8 / n_series as f64;
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(caption, style::text(style::PANEL_TITLE_PX))
        .margin(12)
        .margin_right(24)
        .x_label_area_size(64)
        .y_label_area_size(84);
    let mut x_desc = "call flavor".to_string();
    if let Some((ticks, ns)) = trap {
        x_desc += &format!(
            "   ·   trap, not drawn: {} ticks ({}) per call, a kernel round trip",
            style::sig3(*ticks),
            style::duration_ns(*ns)
        );
    }
    if !any_interval {
        x_desc += "   ·   no interval in this run (older calls.csv): no whiskers";
    } else if flavors.contains(&Flavor::Direct) {
        x_desc += "   ·   direct: the baseline, no whisker";
    }
    let panel = Panel { area, flavors, scenarios, bars, slot, x_desc };
    if log {
        let (ylo, yhi) = style::decades(lo * 0.8, hi * 1.3);
        let mut chart = builder.build_cartesian_2d(x_range, super::axis("y", ylo, yhi, true)?.log_scale())?;
        panel.fill(&mut chart, ylo, format!("{y_desc}, log scale"))
    } else {
        let mut chart = builder.build_cartesian_2d(x_range, super::axis("y", 0.0, hi * 1.15, false)?)?;
        panel.fill(&mut chart, 0.0, y_desc)
    }
}

struct Panel<'p, DB: DrawingBackend> {
    area: &'p DrawingArea<DB, Shift>,
    flavors: &'p [Flavor],
    scenarios: &'p [RowScenario],
    bars: &'p [Bar],
    slot: f64,
    x_desc: String,
}

impl<DB: DrawingBackend> Panel<'_, DB> {
    /// A group's bars side by side, centred on the group: as many as it has, each a slot wide.
    fn bar_x(&self, b: &Bar) -> (f64, f64) {
        let x0 = b.group as f64 - b.of as f64 * self.slot / 2.0 + b.slot as f64 * self.slot;
        (x0 + self.slot * 0.06, x0 + self.slot * 0.94)
    }

    /// Draws mesh, bars, whiskers, group labels and legend on a linear or logarithmic y axis whose
    /// bottom is `floor`.
    fn fill<'c, Y>(
        &self,
        chart: &mut ChartContext<'c, DB, Cartesian2d<RangedCoordf64, Y>>,
        floor: f64,
        y_desc: String,
    ) -> Result<(), DrawError>
    where
        DB: 'c,
        Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        chart
            .configure_mesh()
            .bold_line_style(style::GRID_BOLD)
            .light_line_style(style::GRID_LIGHT)
            .disable_x_mesh()
            .x_labels(0)
            .y_desc(y_desc)
            .x_desc(self.x_desc.as_str())
            .axis_desc_style(style::text(style::AXIS_DESC_PX))
            .label_style(style::text(style::TICK_PX))
            .y_label_formatter(&|v| compact(*v))
            .draw()?;
        for (s, scenario) in self.scenarios.iter().enumerate() {
            let c = color(s);
            chart
                .draw_series(self.bars.iter().filter(|b| b.series == s).map(|b| {
                    let (x0, x1) = self.bar_x(b);
                    Rectangle::new([(x0, floor), (x1, b.median)], c.filled())
                }))?
                .label(scenario.to_string())
                .legend(move |(x, y)| Rectangle::new([(x, y - 7), (x + 14, y + 7)], c.filled()));
        }
        let ink = ShapeStyle::from(&BLACK).stroke_width(2);
        for b in self.bars {
            let Some((lo, hi)) = b.err else { continue };
            let (x0, x1) = self.bar_x(b);
            let xm = (x0 + x1) / 2.0;
            let cap = (x1 - x0) * 0.25;
            chart.draw_series([
                PathElement::new(vec![(xm, lo), (xm, hi)], ink),
                PathElement::new(vec![(xm - cap, lo), (xm + cap, lo)], ink),
                PathElement::new(vec![(xm - cap, hi), (xm + cap, hi)], ink),
            ])?;
        }
        label_groups(self.area, chart, self.flavors, floor)?;
        let labels: Vec<String> = self.scenarios.iter().map(|s| s.to_string()).collect();
        let outlines: Vec<Vec<(f64, f64)>> = self
            .bars
            .iter()
            .flat_map(|b| {
                let (x0, x1) = self.bar_x(b);
                let top = b.err.map_or(b.median, |e| e.1);
                [x0, (x0 + x1) / 2.0, x1].map(|x| vec![(x, floor), (x, top)])
            })
            .collect();
        legend(chart, &labels, &outlines)
    }
}

/// The panel caption: machine label and CPU model when known.
pub fn panel_caption(run: &Run) -> String {
    match &run.machine {
        Some(m) if !m.cpu_model.is_empty() => format!("{} — {}", run.label, m.cpu_model),
        _ => run.label.clone(),
    }
}

/// Writes each flavor's name under its group (plotters' numeric axis cannot place category labels).
pub(crate) fn label_groups<DB: DrawingBackend, X, Y>(
    area: &DrawingArea<DB, Shift>,
    chart: &ChartContext<'_, DB, Cartesian2d<X, Y>>,
    names: &[Flavor],
    y_axis: f64,
) -> Result<(), DrawError>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let base = area.get_base_pixel();
    let style = style::anchored(style::TICK_PX, HPos::Center, VPos::Top);
    for (g, name) in names.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(g as f64, y_axis));
        area.draw_text(name.name(), &style, (px - base.0, py - base.1 + 8))?;
    }
    Ok(())
}
