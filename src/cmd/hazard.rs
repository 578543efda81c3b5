//! `callpatch hazard` — not built yet (see its issue).

/// Options of `callpatch hazard`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `callpatch hazard`.
pub fn main(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`callpatch hazard` is not implemented yet")
}
