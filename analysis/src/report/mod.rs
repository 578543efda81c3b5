//! Results: the CSV row types (one per output file), machine identity, plots and the summary.

pub mod machine;
pub mod rows;
