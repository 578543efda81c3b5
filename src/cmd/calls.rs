//! `callpatch calls` — not built yet (see its issue).

/// Options of `callpatch calls`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `callpatch calls`.
pub fn main(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`callpatch calls` is not implemented yet")
}
