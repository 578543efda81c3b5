//! The bytes that go into executable memory: what each flavor's site holds, and the probes built
//! from them. The memory itself (arena) and the patchable instruction forms are `callpatch_patcher`'s,
//! re-exported here.
//!
//! - [`flavor`]: the flavor table — which bytes each kind of call site holds.
//! - [`scenario`]: mono, poly-K (round-robin, random), sites-N, offset-B.
//! - [`emit`]: laying assembled code and exact-byte sites into an arena.
//! - [`ret`]: how a target returns — `ret` or a `jmp` to a kernel return thunk, and where it sits.
//! - [`probe`]: one flavor × scenario as two runnable loops (U and 2U calls per iteration).

pub mod emit;
pub mod flavor;
pub mod probe;
pub mod ret;
pub mod scenario;

pub use callpatch_patcher::{arena, insn, text_writer};
pub use callpatch_patcher::{decode, encode, Insn, InsnBytes};
pub use callpatch_patcher::{Arena, ArenaMode, CACHE_LINE};
pub use callpatch_patcher::{TextWriter, WriteMethod};
pub use emit::EmitError;
pub use flavor::{Flavor, FlavorSite, SiteForm};
pub use probe::{EmitOptions, Probe, ProbeSite, Symbol, Target};
pub use ret::{ReturnKind, ReturnThunk};
pub use scenario::{Order, Scenario, ScenarioSequence};
