//! The plots. Each file draws one figure on any plotters backend; [`render`] writes it as SVG and PNG
//! (same size, same drawing), each through a temporary name renamed into place, so a failed drawing
//! never leaves a file that looks complete. Runs of several machines become stacked panels.

pub mod calls;
pub mod census;
pub mod legend;
pub mod offsets;
pub mod patch_latency;
pub mod poly;
pub mod tradeoff;

use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::Ranged;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::report::error::ReportError;
use crate::report::font;
use crate::report::rows::temp_beside;

/// A drawing failure, as text (plotters' error types are generic over the backend).
#[derive(Debug)]
pub struct DrawError(pub String);

impl<E: std::error::Error + Send + Sync> From<DrawingAreaErrorKind<E>> for DrawError {
    fn from(e: DrawingAreaErrorKind<E>) -> Self {
        DrawError(e.to_string())
    }
}

/// One figure.
pub trait Plot {
    /// File stem: the plot is written as `<stem>.svg` and `<stem>.png`.
    fn stem(&self) -> &'static str;
    /// Size in pixels.
    fn size(&self) -> (u32, u32);
    /// Draws the figure on `root` (already filled white).
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), DrawError>;
}

/// Writes `plot` to `out/<stem>.svg` and `out/<stem>.png`; returns both paths.
pub fn render<P: Plot>(plot: &P, out: &Path) -> Result<Vec<PathBuf>, ReportError> {
    font::ensure_registered()?;
    let stem = plot.stem();
    let size = plot.size();
    let svg = out.join(format!("{stem}.svg"));
    let svg_tmp = temp_beside(&svg, ".tmp.svg").map_err(|e| ReportError::io(&svg, e))?;
    draw_into(plot, SVGBackend::new(svg_tmp.path(), size), svg_tmp.path())?;
    svg_tmp.persist(&svg).map_err(|e| ReportError::io(&svg, e.error))?;
    // The bitmap encoder picks the format from the extension, hence `.tmp.png` rather than `.png.tmp`.
    let png = out.join(format!("{stem}.png"));
    let png_tmp = temp_beside(&png, ".tmp.png").map_err(|e| ReportError::io(&png, e))?;
    // Text through font::Glyphs: plotters' own bitmap text drops each glyph's side bearing.
    draw_into(plot, font::Glyphs(BitMapBackend::new(png_tmp.path(), size)), png_tmp.path())?;
    png_tmp.persist(&png).map_err(|e| ReportError::io(&png, e.error))?;
    Ok(vec![svg, png])
}

fn draw_into<P: Plot, DB: DrawingBackend>(plot: &P, backend: DB, path: &Path) -> Result<(), ReportError> {
    let fail = |message: String| {
        let _ = std::fs::remove_file(path);
        ReportError::Draw { path: path.to_path_buf(), message }
    };
    let root = backend.into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
    plot.draw(&root).map_err(|e| fail(e.0))?;
    root.present().map_err(|e| fail(e.to_string()))?;
    Ok(())
}

/// Splits `root` into `n` panels stacked vertically, below a figure title.
pub fn panels<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    n: usize,
) -> Result<Vec<DrawingArea<DB, Shift>>, DrawError> {
    let body = root.titled(title, crate::report::style::text(crate::report::style::TITLE_PX))?;
    Ok(body.split_evenly((n.max(1), 1)))
}

/// The range `lo..hi` of an axis, checked: both ends finite and `lo < hi`, and on a log axis `lo > 0`
/// with a finite `hi / lo`. plotters' key points loop forever on an infinite end or a zero start of a
/// log axis, so no range reaches it unchecked; an input value that leads to one (say `1e308` cycles,
/// scaled up for headroom) is this one error instead of a hang.
pub fn axis(name: &str, lo: f64, hi: f64, log: bool) -> Result<std::ops::Range<f64>, DrawError> {
    let drawable = lo.is_finite() && hi.is_finite() && lo < hi && (!log || (lo > 0.0 && (hi / lo).is_finite()));
    if drawable {
        Ok(lo..hi)
    } else {
        let scale = if log { "log " } else { "" };
        Err(DrawError(format!(
            "the {name} {scale}axis would run from {lo:e} to {hi:e}, which cannot be drawn (an input value is out of range)"
        )))
    }
}

/// Axes: ((x from, x to), (y from, y to)).
pub type Axes = ((f64, f64), (f64, f64));

/// A chart with logarithmic x and y axes.
pub type LogLogChart<'a, DB> = ChartContext<'a, DB, Cartesian2d<LogCoord<f64>, LogCoord<f64>>>;

/// A log-log panel in the house style, its grid and axes drawn: `caption` above (none when empty), a count on x
/// (`x_desc`, compact ticks), a duration on y (`y_desc`, duration ticks). Shared by the patch latency
/// and trade-off plots so both read the same way.
pub fn log_log_panel<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    caption: String,
    ((xlo, xhi), (ylo, yhi)): Axes,
    x_desc: &str,
    y_desc: &str,
) -> Result<LogLogChart<'a, DB>, DrawError> {
    use crate::report::style::{self, compact, duration_tick};
    let mut builder = ChartBuilder::on(area);
    if !caption.is_empty() {
        builder.caption(caption, style::text(style::PANEL_TITLE_PX));
    }
    let mut chart = builder
        .margin(12)
        .margin_right(24)
        .x_label_area_size(56)
        .y_label_area_size(96)
        .build_cartesian_2d(axis("x", xlo, xhi, true)?.log_scale(), axis("y", ylo, yhi, true)?.log_scale())?;
    chart
        .configure_mesh()
        .bold_line_style(style::GRID_BOLD)
        .light_line_style(style::GRID_LIGHT)
        .x_desc(x_desc)
        .y_desc(y_desc)
        .axis_desc_style(style::text(style::AXIS_DESC_PX))
        .label_style(style::text(style::TICK_PX))
        .x_label_formatter(&|v| compact(*v))
        .y_label_formatter(&|v| duration_tick(*v))
        .draw()?;
    Ok(chart)
}

/// Places text labels so they do not overlap: each new label moves up until its box is clear.
#[derive(Default)]
pub struct Labels {
    boxes: Vec<(i32, i32, i32, i32)>,
}

impl Labels {
    /// Reserves a `w`×`h` box whose bottom-left corner is wanted at (`x`, `y`); returns the bottom-left
    /// corner granted (same `x`, `y` moved up as needed).
    pub fn place(&mut self, x: i32, y: i32, w: i32, h: i32) -> (i32, i32) {
        let mut y = y;
        loop {
            let candidate = (x, y - h, x + w, y);
            let hit = self
                .boxes
                .iter()
                .find(|b| b.0 < candidate.2 && candidate.0 < b.2 && b.1 < candidate.3 && candidate.1 < b.3);
            match hit {
                Some(b) => y = b.1 - 2,
                None => {
                    self.boxes.push(candidate);
                    return (x, y);
                }
            }
        }
    }
}

/// Draws the chart's series legend in the corner of the plotting area that hides the least data.
/// `labels` are the series labels (to size the box); `polylines` are the drawn data in chart
/// coordinates (lines, bar outlines), sampled along each segment to find the emptiest corner.
pub fn legend<'c, DB, X, Y>(
    chart: &mut ChartContext<'c, DB, Cartesian2d<X, Y>>,
    labels: &[String],
    polylines: &[Vec<(X::ValueType, Y::ValueType)>],
) -> Result<(), DrawError>
where
    DB: DrawingBackend + 'c,
    X: Ranged,
    Y: Ranged,
{
    use crate::report::style;
    let font = style::text(style::LEGEND_PX);
    let (x0, y0) = chart.plotting_area().get_base_pixel();
    let (w, h) = chart.plotting_area().dim_in_pixel();
    let mut text_w = 0;
    for l in labels {
        text_w = text_w.max(chart.plotting_area().estimate_text_size(l, &font)?.0 as i32);
    }
    // plotters' box: a swatch, a gap and the text per row, with a margin; 10 px off the frame.
    let (bw, bh) = (text_w + 60, labels.len() as i32 * (style::LEGEND_PX as i32 + 6) + 24);
    let mut pixels = Vec::new();
    for line in polylines {
        let px: Vec<(i32, i32)> = line.iter().map(|p| chart.backend_coord(p)).collect();
        pixels.extend(px.first().copied());
        for seg in px.windows(2) {
            for i in 1..=24 {
                let t = f64::from(i) / 24.0;
                let lerp = |a: i32, b: i32| a + (f64::from(b - a) * t) as i32;
                pixels.push((lerp(seg[0].0, seg[1].0), lerp(seg[0].1, seg[1].1)));
            }
        }
    }
    let (w, h) = (w as i32, h as i32);
    let corners = [
        (SeriesLabelPosition::UpperLeft, x0, y0),
        (SeriesLabelPosition::UpperRight, x0 + w - bw, y0),
        (SeriesLabelPosition::LowerRight, x0 + w - bw, y0 + h - bh),
        (SeriesLabelPosition::LowerLeft, x0, y0 + h - bh),
    ];
    let hidden =
        |cx: i32, cy: i32| pixels.iter().filter(|p| p.0 >= cx && p.0 <= cx + bw && p.1 >= cy && p.1 <= cy + bh).count();
    // The first corner with the fewest hidden samples (ties keep the reading order above).
    let mut best = (usize::MAX, SeriesLabelPosition::UpperLeft);
    for (pos, cx, cy) in corners {
        let n = hidden(cx, cy);
        if n < best.0 {
            best = (n, pos);
        }
    }
    chart
        .configure_series_labels()
        .position(best.1)
        .label_font(font)
        .background_style(WHITE.mix(0.9))
        .border_style(style::GREY)
        .draw()?;
    Ok(())
}

/// Draws a one-line note centred in `area` (used where a panel has no data).
pub fn note<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, message: &str) -> Result<(), DrawError> {
    use plotters::style::text_anchor::{HPos, VPos};
    let (w, h) = area.dim_in_pixel();
    let style = crate::report::style::anchored(crate::report::style::NOTE_PX, HPos::Center, VPos::Center);
    area.draw_text(message, &style, (w as i32 / 2, h as i32 / 2))?;
    Ok(())
}
