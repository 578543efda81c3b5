//! `--granule`, the option `patch` and `stress` share for choosing the `aligned` protocol's rule.

use callpatch_probes::patch::{Granule, Protocol};

/// `--granule 64|8`: the granule of `aligned` (flattened into a command's options).
#[derive(clap::Args, Debug, Clone)]
pub struct GranuleArg {
    /// Granule of `aligned`: 64 (cache line) or 8 (aligned word; same as `aligned-8`).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["64", "8"]))]
    pub granule: Option<String>,
}

impl GranuleArg {
    /// `protocols` in order with `--granule 8` applied (every `aligned` becomes `aligned-8`) and
    /// repeats that end up next to each other dropped.
    pub fn apply(&self, protocols: &[Protocol]) -> Vec<Protocol> {
        let word = self.granule.as_deref() == Some("8");
        let mut v: Vec<Protocol> = protocols
            .iter()
            .map(|&p| match p {
                Protocol::Aligned { .. } if word => Protocol::Aligned { granule: Granule::Word8 },
                p => p,
            })
            .collect();
        v.dedup();
        v
    }
}
