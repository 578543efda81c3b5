//! The scenario of a `calls.csv` row, parsed from its `scenario` and `param` columns.
//!
//! Accepted spellings (generous, so hand-written and older CSVs parse too): `mono`; `poly` with the
//! order in the name (`poly-random`, `poly-rr`, `poly-round-robin`) or none (`poly-4`), the target
//! count K in `param` or as digits in the name (`poly-random-4`); `sites` / `sites-N`; `offset` /
//! `offset-B`. Anything else is kept verbatim as [`Scenario::Other`].

use std::fmt;

/// The order in which a polymorphic site visits its K targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Order {
    /// Round-robin: the predictor learns the pattern completely.
    RoundRobin,
    /// Pseudo-random from a fixed seed: the honest misprediction case.
    Random,
    /// The row does not say.
    Unspecified,
}

/// What a `calls.csv` row measured.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scenario {
    Mono,
    Poly { k: u32, order: Order },
    Sites(u32),
    Offset(u32),
    Other(String),
}

impl Scenario {
    /// Parses the `scenario` and `param` columns.
    pub fn parse(scenario: &str, param: &str) -> Scenario {
        let s = scenario.trim().to_ascii_lowercase();
        let number = param.trim().parse::<u32>().ok().or_else(|| trailing_number(&s));
        if s == "mono" {
            return Scenario::Mono;
        }
        if s.starts_with("poly") {
            let order = if s.contains("rand") {
                Order::Random
            } else if s.contains("rr") || s.contains("round") || s.contains("robin") {
                Order::RoundRobin
            } else {
                Order::Unspecified
            };
            if let Some(k) = number {
                return Scenario::Poly { k, order };
            }
        } else if s.starts_with("sites") {
            if let Some(n) = number {
                return Scenario::Sites(n);
            }
        } else if s.starts_with("offset") {
            if let Some(b) = number {
                return Scenario::Offset(b);
            }
        }
        if param.trim().is_empty() {
            Scenario::Other(scenario.to_string())
        } else {
            Scenario::Other(format!("{scenario} {param}"))
        }
    }

    /// Random-order polymorphism with `k` targets, or mono when `k` is 1.
    pub fn random_targets(&self) -> Option<u32> {
        match self {
            Scenario::Mono => Some(1),
            Scenario::Poly { k, order: Order::Random } => Some(*k),
            _ => None,
        }
    }
}

fn trailing_number(s: &str) -> Option<u32> {
    let digits: String = s.chars().filter(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scenario::Mono => write!(f, "mono"),
            Scenario::Poly { k, order: Order::Random } => write!(f, "random poly-{k}"),
            Scenario::Poly { k, order: Order::RoundRobin } => write!(f, "round-robin poly-{k}"),
            Scenario::Poly { k, order: Order::Unspecified } => write!(f, "poly-{k}"),
            Scenario::Sites(n) => write!(f, "sites-{n}"),
            Scenario::Offset(b) => write!(f, "offset-{b}"),
            Scenario::Other(s) => write!(f, "{s}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_documented_spelling() {
        assert_eq!(Scenario::parse("mono", ""), Scenario::Mono);
        let random4 = Scenario::Poly { k: 4, order: Order::Random };
        assert_eq!(Scenario::parse("poly-random", "4"), random4);
        assert_eq!(Scenario::parse("poly-random-4", ""), random4);
        assert_eq!(Scenario::parse("poly-rr", "16"), Scenario::Poly { k: 16, order: Order::RoundRobin });
        assert_eq!(Scenario::parse("poly-4", ""), Scenario::Poly { k: 4, order: Order::Unspecified });
        assert_eq!(Scenario::parse("sites", "16384"), Scenario::Sites(16384));
        assert_eq!(Scenario::parse("offset-61", ""), Scenario::Offset(61));
        assert_eq!(Scenario::parse("weird", "x"), Scenario::Other("weird x".into()));
        assert_eq!(random4.to_string(), "random poly-4");
        assert_eq!(random4.random_targets(), Some(4));
        assert_eq!(Scenario::Mono.random_targets(), Some(1));
    }
}
