//! `cargo bench --bench calls` — placeholder until its issue lands.
fn main() {}
