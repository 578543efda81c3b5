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

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::report::error::ReportError;
use crate::report::font;

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
    let svg_tmp = out.join(format!("{stem}.tmp.svg"));
    draw_into(plot, SVGBackend::new(&svg_tmp, size), &svg_tmp)?;
    std::fs::rename(&svg_tmp, &svg).map_err(|e| ReportError::io(&svg, e))?;
    // The bitmap encoder picks the format from the extension, hence `.tmp.png` rather than `.png.tmp`.
    let png = out.join(format!("{stem}.png"));
    let png_tmp = out.join(format!("{stem}.tmp.png"));
    draw_into(plot, BitMapBackend::new(&png_tmp, size), &png_tmp)?;
    std::fs::rename(&png_tmp, &png).map_err(|e| ReportError::io(&png, e))?;
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

/// Draws a one-line note centred in `area` (used where a panel has no data).
pub fn note<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, message: &str) -> Result<(), DrawError> {
    use plotters::style::text_anchor::{HPos, VPos};
    let (w, h) = area.dim_in_pixel();
    let style = crate::report::style::anchored(crate::report::style::NOTE_PX, HPos::Center, VPos::Center);
    area.draw_text(message, &style, (w as i32 / 2, h as i32 / 2))?;
    Ok(())
}
