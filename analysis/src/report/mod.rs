//! Results: the CSV row types (one per output file), loading results of one or many machines, the
//! plots and `summary.md`.
//!
//! Entry points for commands: [`render_all`] (`callpatch plot`, and `callpatch run` after measuring),
//! [`compare::compare`] (`callpatch compare`).

pub mod compare;
pub mod dataset;
pub mod error;
pub mod font;
pub mod interval;
pub mod lookup;
pub mod machine;
pub mod plots;
pub mod render;
pub mod returns;
pub mod rows;
pub mod scenario;
pub mod style;
pub mod summary;
pub mod this_kernel;
pub mod tradeoff;
pub mod validate;

pub use error::ReportError;
pub use render::{render_all, render_all_with, RenderOptions, Rendered};
