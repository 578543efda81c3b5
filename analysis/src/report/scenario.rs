//! The scenario of a `calls.csv` row, parsed from its `scenario` and `param` columns: the vocabulary's
//! [`Scenario`], and [`RowScenario`] for a row read back leniently (every accepted spelling is listed
//! at [`RowScenario::parse`]; its `Display` is the label plots and tables show, e.g. `random poly-4`).

pub use callpatch_vocab::scenario::{Order, RowScenario, Scenario};
