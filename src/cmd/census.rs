//! `callpatch census` — not built yet (see its issue).

/// Options of `callpatch census`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `callpatch census`.
pub fn main(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`callpatch census` is not implemented yet")
}
