//! `callpatch perf` — not built yet (see its issue).

/// Options of `callpatch perf`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `callpatch perf`.
pub fn main(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`callpatch perf` is not implemented yet")
}
