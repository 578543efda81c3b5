//! What the calls around a site look like: how many targets, in what order, how many distinct sites,
//! where in a cache line. The `scenario` and `param` columns of
//! `calls.csv` and `perf.csv`, and the `--scenario` spellings of the command line.
//!
//! - `mono`: every call goes to one target; the predictors are warm and right. The floor of a flavor.
//! - `poly-rr-K`: K targets in rotation: in loop iteration i, the j-th call goes to target (i + j) mod K,
//!   so every site cycles through all K targets, a pattern indirect predictors with path history learn.
//! - `poly-random-K`: K targets drawn from a fixed-seed pseudo-random sequence far longer than a
//!   predictor can memorise: the honest misprediction case. (The sequence itself, how a probe is
//!   built, lives in `callpatch_probes::code::scenario`.)
//! - `sites-N`: N distinct call sites, each its own instruction at its own address, all run once per
//!   pass: pressure on the BTB, the uop cache and the L1i once N is in the thousands.
//! - `offset-B`: every site starts at byte B (0..63) of a 64-byte line; sites whose rel32 (B ≥ 60 for a
//!   5-byte call) or whole instruction crosses a line are the ones a patcher cannot store atomically.
//!
//! A row is read back leniently ([`RowScenario::parse`]): besides what callpatch writes (`poly-random`
//! with K in `param`) it accepts K in the name (`poly-random-4`), `poly-round-robin`, a poly row that
//! does not say its order (`poly-4`, [`RowScenario::Unordered`]) and keeps anything else verbatim
//! ([`RowScenario::Other`]), so a hand-made or foreign file still plots.

use std::fmt;
use std::str::FromStr;

use crate::crossing::CACHE_LINE;
use crate::flavor::Flavor;

/// Largest `sites-N` (distinct call sites in one probe).
pub const MAX_SITES: usize = 16384;
/// Largest `poly-K`.
pub const MAX_TARGETS: usize = 64;

/// Order in which a poly scenario visits its targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Order {
    /// Iteration i, call j → target (i + j) mod K.
    RoundRobin,
    /// A fixed-seed pseudo-random target per call.
    Random,
}

/// One scenario a flavor is measured in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scenario {
    /// One target.
    Mono,
    /// `k` targets in `order`.
    Poly {
        /// Number of distinct targets.
        k: usize,
        /// How the calls walk through them.
        order: Order,
    },
    /// N distinct call sites.
    Sites(usize),
    /// Every site at byte B of a 64-byte line.
    Offset(usize),
}

impl Scenario {
    /// The K values of the standard poly scenarios.
    pub const POLY_K: [usize; 3] = [2, 4, 16];
    /// The N values of the standard sites scenarios.
    pub const SITES_N: [usize; 4] = [64, 1024, 4096, MAX_SITES];
    /// What a command-line spelling may be, for error messages.
    pub const EXPECTED: &'static str = "expected mono, poly-rr[-K], poly-random[-K], poly, sites[-N] or offset[-B]";

    /// The `scenario` column of `calls.csv`: `mono`, `poly-rr`, `poly-random`, `sites` or `offset`.
    pub const fn name(self) -> &'static str {
        match self {
            Scenario::Mono => "mono",
            Scenario::Poly { order: Order::RoundRobin, .. } => "poly-rr",
            Scenario::Poly { order: Order::Random, .. } => "poly-random",
            Scenario::Sites(_) => "sites",
            Scenario::Offset(_) => "offset",
        }
    }

    /// The `param` column: K, N or B (none for mono).
    pub const fn param(self) -> Option<usize> {
        match self {
            Scenario::Mono => None,
            Scenario::Poly { k, .. } => Some(k),
            Scenario::Sites(n) => Some(n),
            Scenario::Offset(b) => Some(b),
        }
    }

    /// Whether `flavor` can be measured in this scenario: poly needs a site whose target changes
    /// without patching, i.e. an indirect flavor ([`Flavor::is_indirect`]); `trap` runs in `mono` only
    /// (microseconds per call).
    pub fn supports(self, flavor: Flavor) -> bool {
        if flavor == Flavor::Trap {
            return self == Scenario::Mono;
        }
        !self.is_poly() || flavor.is_indirect()
    }

    /// Every standard scenario: mono, poly-{rr,random}-{2,4,16}, sites-{64,1024,4096,16384},
    /// offset-{0..63}.
    pub fn all() -> Vec<Scenario> {
        let mut v = vec![Scenario::Mono];
        for order in [Order::RoundRobin, Order::Random] {
            v.extend(Scenario::POLY_K.map(|k| Scenario::Poly { k, order }));
        }
        v.extend(Scenario::SITES_N.map(Scenario::Sites));
        v.extend((0..CACHE_LINE).map(Scenario::Offset));
        v
    }

    /// The `--quick` set: one of each kind, and two offsets (a site clear of the line end and one whose
    /// rel32 crosses it).
    pub fn quick() -> Vec<Scenario> {
        vec![
            Scenario::Mono,
            Scenario::Poly { k: 4, order: Order::RoundRobin },
            Scenario::Poly { k: 4, order: Order::Random },
            Scenario::Sites(1024),
            Scenario::Offset(0),
            Scenario::Offset(62),
        ]
    }

    /// Parses a command-line spelling: one scenario (`mono`, `poly-rr-4`, `poly-random-16`,
    /// `sites-1024`, `offset-17`) or a group (`poly-rr`, `poly-random`, `poly`, `sites`, `offset`:
    /// every standard value).
    pub fn parse_list(s: &str) -> Result<Vec<Scenario>, String> {
        let all = Scenario::all();
        let group: Vec<Scenario> =
            all.iter().copied().filter(|sc| sc.name() == s || (s == "poly" && sc.is_poly())).collect();
        if !group.is_empty() {
            return Ok(group);
        }
        let bad = |why: String| format!("bad scenario `{s}`: {why}");
        let (head, num) = s.rsplit_once('-').ok_or_else(|| bad(Scenario::EXPECTED.into()))?;
        let n: usize = num.parse().map_err(|_| bad(Scenario::EXPECTED.into()))?;
        let sc = match head {
            "poly-rr" => Scenario::Poly { k: n, order: Order::RoundRobin },
            "poly-random" => Scenario::Poly { k: n, order: Order::Random },
            "sites" => Scenario::Sites(n),
            "offset" => Scenario::Offset(n),
            _ => return Err(bad(Scenario::EXPECTED.into())),
        };
        sc.validate().map_err(bad)?;
        Ok(vec![sc])
    }

    /// The scenario of a row's `scenario` and `param` columns, in any spelling [`RowScenario::parse`]
    /// accepts; an error (naming the columns) for a poly row without an order or an unknown scenario.
    pub fn from_columns(scenario: &str, param: &str) -> Result<Scenario, String> {
        match RowScenario::parse(scenario, param) {
            RowScenario::Known(sc) => Ok(sc),
            RowScenario::Unordered { k } => Err(format!("scenario `{scenario}` (K = {k}) does not say its order")),
            RowScenario::Other(_) => Err(format!("unknown scenario `{scenario}` with param `{param}`")),
        }
    }

    /// Checks the parameter's range: K in 2..=64, N in 1..=16384, B in 0..=63.
    pub fn validate(self) -> Result<(), String> {
        match self {
            Scenario::Poly { k, .. } if !(2..=MAX_TARGETS).contains(&k) => {
                Err(format!("K = {k} targets is outside 2..={MAX_TARGETS}"))
            }
            Scenario::Sites(n) if !(1..=MAX_SITES).contains(&n) => {
                Err(format!("N = {n} sites is outside 1..={MAX_SITES}"))
            }
            Scenario::Offset(b) if b >= CACHE_LINE => Err(format!("B = {b} is not a byte of a {CACHE_LINE}-byte line")),
            _ => Ok(()),
        }
    }

    /// True for the poly scenarios.
    pub const fn is_poly(self) -> bool {
        matches!(self, Scenario::Poly { .. })
    }

    /// Number of distinct targets the scenario calls.
    pub const fn targets(self) -> usize {
        match self {
            Scenario::Poly { k, .. } => k,
            _ => 1,
        }
    }
}

impl fmt::Display for Scenario {
    /// The command-line spelling (`mono`, `poly-random-4`, `sites-1024`, `offset-17`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.param() {
            Some(p) => write!(f, "{}-{p}", self.name()),
            None => f.write_str(self.name()),
        }
    }
}

impl FromStr for Scenario {
    type Err = String;
    /// One scenario in its command-line spelling (the inverse of `Display`); a group is an error.
    fn from_str(s: &str) -> Result<Self, String> {
        match Scenario::parse_list(s)?.as_slice() {
            [one] => Ok(*one),
            many => Err(format!("`{s}` is a group of {} scenarios, not one", many.len())),
        }
    }
}

/// The scenario of a `calls.csv` row as read back, leniently (see the module docs): a
/// [`Scenario`] when the row says one, else what can still be said about it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RowScenario {
    /// A scenario callpatch measures.
    Known(Scenario),
    /// A poly row with `k` targets that does not say in which order (`poly-4`).
    Unordered {
        /// Number of distinct targets.
        k: usize,
    },
    /// Anything else, verbatim (`scenario`, or `scenario param` when `param` is not empty).
    Other(String),
}

impl RowScenario {
    /// Parses the `scenario` and `param` columns (case and surrounding blanks ignored): `mono`; `poly`
    /// with the order in the name (`poly-random`, `poly-rr`, `poly-round-robin`) or none (`poly-4`), K in
    /// `param` or as digits in the name (`poly-random-4`); `sites` / `sites-N`; `offset` / `offset-B`.
    /// Never fails: anything else is [`RowScenario::Other`]. Ranges are not checked (a row says what
    /// was measured).
    pub fn parse(scenario: &str, param: &str) -> RowScenario {
        let s = scenario.trim().to_ascii_lowercase();
        let number = param.trim().parse::<usize>().ok().or_else(|| digits(&s));
        if s == "mono" {
            return RowScenario::Known(Scenario::Mono);
        }
        let known = |sc| Some(RowScenario::Known(sc));
        let parsed = match number {
            Some(k) if s.starts_with("poly") => {
                if s.contains("rand") {
                    known(Scenario::Poly { k, order: Order::Random })
                } else if s.contains("rr") || s.contains("round") || s.contains("robin") {
                    known(Scenario::Poly { k, order: Order::RoundRobin })
                } else {
                    Some(RowScenario::Unordered { k })
                }
            }
            Some(n) if s.starts_with("sites") => known(Scenario::Sites(n)),
            Some(b) if s.starts_with("offset") => known(Scenario::Offset(b)),
            _ => None,
        };
        parsed.unwrap_or_else(|| {
            RowScenario::Other(if param.trim().is_empty() {
                scenario.to_string()
            } else {
                format!("{scenario} {param}")
            })
        })
    }

    /// Random-order polymorphism with `k` targets, or 1 for mono (one target is the K = 1 end of the
    /// random series).
    pub fn random_targets(&self) -> Option<usize> {
        match self {
            RowScenario::Known(Scenario::Mono) => Some(1),
            RowScenario::Known(Scenario::Poly { k, order: Order::Random }) => Some(*k),
            _ => None,
        }
    }
}

impl From<Scenario> for RowScenario {
    fn from(sc: Scenario) -> Self {
        RowScenario::Known(sc)
    }
}

/// All the digits of `s`, as one number (`poly-random-16` → 16).
fn digits(s: &str) -> Option<usize> {
    let digits: String = s.chars().filter(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

impl fmt::Display for RowScenario {
    /// The label plots and tables show: `mono`, `random poly-4`, `round-robin poly-4`, `poly-4`,
    /// `sites-16384`, `offset-61`, or the row's own words.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RowScenario::Known(Scenario::Poly { k, order: Order::Random }) => write!(f, "random poly-{k}"),
            RowScenario::Known(Scenario::Poly { k, order: Order::RoundRobin }) => write!(f, "round-robin poly-{k}"),
            RowScenario::Known(sc) => write!(f, "{sc}"),
            RowScenario::Unordered { k } => write!(f, "poly-{k}"),
            RowScenario::Other(s) => f.write_str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip_and_groups_expand() {
        for sc in Scenario::all() {
            assert_eq!(Scenario::parse_list(&sc.to_string()), Ok(vec![sc]), "{sc}");
            assert_eq!(sc.to_string().parse::<Scenario>(), Ok(sc), "{sc}");
        }
        assert_eq!(Scenario::parse_list("offset").unwrap().len(), 64);
        assert_eq!(Scenario::parse_list("poly-random").unwrap().len(), 3);
        assert_eq!(Scenario::parse_list("poly").unwrap().len(), 6);
        assert_eq!(Scenario::parse_list("sites-7"), Ok(vec![Scenario::Sites(7)]));
        for bad in ["offset-64", "poly-rr-1", "sites-0", "sites-16385", "mon", "poly-x-4", "offset-a"] {
            assert!(Scenario::parse_list(bad).is_err(), "{bad}");
        }
        assert!("poly".parse::<Scenario>().unwrap_err().contains("group"));
    }

    #[test]
    fn poly_is_only_for_indirect_flavors() {
        let poly = Scenario::Poly { k: 4, order: Order::Random };
        let yes: Vec<_> = Flavor::ALL.into_iter().filter(|f| poly.supports(*f)).collect();
        let indirect = [Flavor::Indirect, Flavor::IndirectMem, Flavor::Retpoline, Flavor::Lfence, Flavor::Kcfi];
        assert_eq!(yes, [&indirect[..], &[Flavor::KcfiRetpoline, Flavor::Fineibt, Flavor::ItsThunk]].concat());
        assert!(Flavor::ALL.iter().all(|f| Scenario::Mono.supports(*f)));
        assert!(Flavor::ALL.iter().all(|f| Scenario::Offset(3).supports(*f) == (*f != Flavor::Trap)));
    }

    #[test]
    fn rows_read_back_as_written() {
        for sc in Scenario::all() {
            let param = sc.param().map(|p| p.to_string()).unwrap_or_default();
            assert_eq!(Scenario::from_columns(sc.name(), &param), Ok(sc), "{sc}");
            assert_eq!(Scenario::from_columns(&sc.to_string(), ""), Ok(sc), "{sc}");
        }
    }

    #[test]
    fn parses_every_documented_row_spelling() {
        let known = |sc| RowScenario::Known(sc);
        let random4 = Scenario::Poly { k: 4, order: Order::Random };
        let rr16 = Scenario::Poly { k: 16, order: Order::RoundRobin };
        assert_eq!(RowScenario::parse("mono", ""), known(Scenario::Mono));
        assert_eq!(RowScenario::parse(" Mono ", "7"), known(Scenario::Mono));
        assert_eq!(RowScenario::parse("poly-random", "4"), known(random4));
        assert_eq!(RowScenario::parse("poly-random-4", ""), known(random4));
        assert_eq!(RowScenario::parse("poly-rr", "16"), known(rr16));
        assert_eq!(RowScenario::parse("poly-rr-16", ""), known(rr16));
        assert_eq!(RowScenario::parse("poly-round-robin", "16"), known(rr16));
        assert_eq!(RowScenario::parse("poly-4", ""), RowScenario::Unordered { k: 4 });
        assert_eq!(RowScenario::parse("sites", "16384"), known(Scenario::Sites(16384)));
        assert_eq!(RowScenario::parse("sites-64", ""), known(Scenario::Sites(64)));
        assert_eq!(RowScenario::parse("offset-61", ""), known(Scenario::Offset(61)));
        assert_eq!(RowScenario::parse("offset", "0"), known(Scenario::Offset(0)));
        assert_eq!(RowScenario::parse("weird", "x"), RowScenario::Other("weird x".into()));
        assert_eq!(RowScenario::parse("poly", ""), RowScenario::Other("poly".into()));
        assert_eq!(known(random4).to_string(), "random poly-4");
        assert_eq!(known(rr16).to_string(), "round-robin poly-16");
        assert_eq!(RowScenario::Unordered { k: 4 }.to_string(), "poly-4");
        assert_eq!(known(Scenario::Sites(16384)).to_string(), "sites-16384");
        assert_eq!(known(random4).random_targets(), Some(4));
        assert_eq!(known(Scenario::Mono).random_targets(), Some(1));
        assert_eq!(known(rr16).random_targets(), None);
        assert!(Scenario::from_columns("poly-4", "").unwrap_err().contains("order"));
        assert!(Scenario::from_columns("weird", "x").unwrap_err().contains("`weird`"));
    }
}
