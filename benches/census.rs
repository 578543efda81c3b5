//! `cargo bench --bench census` — placeholder until its issue lands.
fn main() {}
