//! `callpatch run` — not built yet (see its issue).

/// Options of `callpatch run`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `callpatch run`.
pub fn main(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`callpatch run` is not implemented yet")
}
