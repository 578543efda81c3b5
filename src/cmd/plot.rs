//! `callpatch plot` — not built yet (see its issue).

/// Options of `callpatch plot`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `callpatch plot`.
pub fn main(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`callpatch plot` is not implemented yet")
}
