//! Pinned timing and counters (see issue: foundation harness).
