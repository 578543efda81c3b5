//! `cargo bench --bench static_call` — placeholder until its issue lands.
fn main() {}
