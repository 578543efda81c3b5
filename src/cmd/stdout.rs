//! What the commands print on stdout (tables, `wrote FILE`) is for a reader who may go away:
//! `callpatch census | head -1` closes the pipe after one line. Printing then stops quietly instead of
//! panicking as `println!` does, so the command still writes its files and exits 0. Use the `outln!`
//! and `out!` macros (defined in `main.rs`) for every line on stdout.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write to stdout failed (a closed pipe, a full disk): nothing more is printed.
static STOPPED: AtomicBool = AtomicBool::new(false);

/// Writes `args` (and a newline with `newline`) to stdout, unless an earlier write failed; a failure
/// stops printing for the rest of the process.
pub fn write(args: std::fmt::Arguments, newline: bool) {
    if STOPPED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    let written = out.write_fmt(args).and_then(|()| if newline { out.write_all(b"\n") } else { Ok(()) });
    if written.and_then(|()| if newline { Ok(()) } else { out.flush() }).is_err() {
        STOPPED.store(true, Ordering::Relaxed);
    }
}

/// Flushes stdout, with the same rule.
pub fn flush() {
    if !STOPPED.load(Ordering::Relaxed) && std::io::stdout().flush().is_err() {
        STOPPED.store(true, Ordering::Relaxed);
    }
}
