//! What a call site is: the `kind` column of `census.csv`. The kinds are the
//! vocabulary's ([`callpatch_vocab::kind`]), re-exported here.

pub use callpatch_vocab::kind::SiteKind;
