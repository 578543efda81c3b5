//! static_call! for Rust programs (see issue: static_call).
