//! `callpatch stress` — not built yet (see its issue).

/// Options of `callpatch stress`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `callpatch stress`.
pub fn main(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`callpatch stress` is not implemented yet")
}
