//! `callpatch patch` — not built yet (see its issue).

/// Options of `callpatch patch`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `callpatch patch`.
pub fn main(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`callpatch patch` is not implemented yet")
}
