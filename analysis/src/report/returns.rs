//! The return-kind table of `summary.md`: every flavor × return kind × scenario measured, its cost over
//! the placements of targets and thunks, and what the return adds to the same flavor returning with
//! `ret` at the same placement. A difference of about a tick moves with the layout, so a row is read over its placements: with
//! fewer than [`MIN_PLACEMENTS`] it is marked layout-dependent, and an extra whose range over the
//! placements holds zero is "indistinguishable here".

use std::fmt::Write as _;

use callpatch_vocab::{Flavor, ReturnKind};

use crate::report::dataset::Run;
use crate::report::style::sig3;
use crate::report::this_kernel::{extra, spread, MIN_PLACEMENTS};

/// The section, empty when the run measured no thunk return kind.
pub fn section(run: &Run) -> String {
    if run.returns.is_empty() {
        return String::new();
    }
    let mut keys: Vec<(Flavor, ReturnKind, String)> = run
        .returns
        .iter()
        .filter_map(|r| r.ret.filter(|k| k.is_placed()).map(|k| (r.flavor, k, r.cli_scenario())))
        .collect();
    keys.sort();
    keys.dedup();
    let mut s = String::from("### Return kinds\n\n");
    s.push_str(
        "Cost per call in TSC ticks: median over the placements [cheapest, dearest placement]; extra over the same \
         flavor returning with `ret`, placement by placement: median [range] of the differences, each taken at one \
         layout of targets and thunks.\n\n",
    );
    s.push_str("| flavor | return | scenario | cost | extra over `ret` |\n|---|---|---|---|---|\n");
    for (flavor, ret, scenario) in keys {
        let Some(x) = spread(run, flavor, ret, &scenario) else { continue };
        let extra = match extra(run, flavor, ret, &scenario) {
            None => "no `ret` row at these placements".to_string(),
            Some(d) if d.placements < MIN_PLACEMENTS => {
                format!("layout-dependent: {} at {} placement(s)", sig3(d.mid), d.placements)
            }
            Some(d) if d.lo > 0.0 || d.hi < 0.0 => format!("{} [{}, {}]", sig3(d.mid), sig3(d.lo), sig3(d.hi)),
            Some(d) => format!("indistinguishable here ({} to {})", sig3(d.lo), sig3(d.hi)),
        };
        let _ = writeln!(
            s,
            "| `{flavor}` | `{ret}` | {scenario} | {} [{}, {}] ({} placements) | {extra} |",
            sig3(x.mid),
            sig3(x.lo),
            sig3(x.hi),
            x.placements
        );
    }
    s.push('\n');
    s
}
