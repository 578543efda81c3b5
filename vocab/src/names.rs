//! What every named word of the vocabulary shares: it is written as its `name()` and read back with
//! `FromStr`, in CSV files (serde, behind the `serde` feature) as on the command line, and a row's
//! column can be compared with the name as text.

/// Implements, for a `Copy` type with `const fn name(self) -> &'static str` and `FromStr<Err = String>`:
/// `Display` as the name, comparison with `str`, and (feature `serde`) `Serialize` as the name and
/// `Deserialize` from it, where an unknown name is an error that quotes it.
macro_rules! by_name {
    ($t:ty) => {
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                self.name() == other
            }
        }

        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.name() == *other
            }
        }

        #[cfg(feature = "serde")]
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }

        #[cfg(feature = "serde")]
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

pub(crate) use by_name;

/// The one of `all` whose name is `s`, or the error every such list gives: ``unknown {what} `s`
/// (expected one of: a, b, …)``.
pub(crate) fn parse_among<T: Copy>(all: &[T], name: fn(T) -> &'static str, what: &str, s: &str) -> Result<T, String> {
    all.iter().copied().find(|&x| name(x) == s).ok_or_else(|| {
        let names: Vec<&str> = all.iter().map(|&x| name(x)).collect();
        format!("unknown {what} `{s}` (expected one of: {})", names.join(", "))
    })
}
