//! Errors of the reading and presentation side (`callpatch plot`, the plots and `summary.md`).
//!
//! A missing CSV is not an error (its plots and sections are skipped with a note); a file that exists
//! but cannot be read or parsed is, and names the file and the record.

use std::path::PathBuf;

/// Why results could not be loaded or presented.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A results folder named on the command line does not exist or is not a folder.
    #[error("{}: not a results folder ({reason})", path.display())]
    NotAFolder {
        /// The path as given.
        path: PathBuf,
        /// Why: the operating system's error, or `it is a file`.
        reason: String,
    },
    /// A folder (and its subfolders one level down) holds none of the CSV files callpatch writes.
    #[error("{}: no callpatch CSV files here or one level down (expected any of {expected})", path.display())]
    NoResults {
        /// The folder as given.
        path: PathBuf,
        /// The file names looked for, separated by commas.
        expected: String,
    },
    /// A CSV file exists but could not be read or one of its records does not parse.
    #[error("{}: {source}{}", path.display(), column.as_ref().map_or(String::new(), |c| format!(" (column `{c}`)")))]
    Csv {
        /// The CSV file.
        path: PathBuf,
        /// The header of the field that did not parse, when the reader names a field.
        column: Option<String>,
        /// The CSV reader's error, with the record's line.
        source: csv::Error,
    },
    /// A record parses but holds a value no measurement can produce ([`crate::report::validate`]).
    #[error("{}:{line}: column {column}: {message}", path.display())]
    Invalid {
        /// The CSV file.
        path: PathBuf,
        /// The record's line in the file (1 is the header).
        line: u64,
        /// The column's header.
        column: &'static str,
        /// What is wrong with the value.
        message: String,
    },
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The shipped font could not be registered with plotters.
    #[error("the shipped font {0} is not a valid font file")]
    Font(&'static str),
    /// plotters failed while drawing a plot.
    #[error("drawing {}: {message}", path.display())]
    Draw {
        /// The SVG or PNG file being drawn (removed on failure).
        path: PathBuf,
        /// plotters' error message.
        message: String,
    },
}

impl ReportError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ReportError::Io { path: path.into(), source }
    }
}
