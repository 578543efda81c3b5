//! `cargo bench --bench patch` — placeholder until its issue lands.
fn main() {}
