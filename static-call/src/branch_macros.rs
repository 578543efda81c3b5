//! `static_branch!` (define a key), `static_branch_likely!` and `static_branch_unlikely!` (evaluate one).
//!
//! Expansion of `static_branch_unlikely!(FEATURE)`, an `asm!` goto whose label block yields `true`:
//! ```text
//!         .p2align 3,,4                   a site never straddles an aligned 8-byte word (≤ 4 bytes of nop)
//!     2:  jmp 3f                          e9 rel32, 5 bytes: the patched site
//!     4:                                  (falls through: false)
//!         .pushsection .text.static_branch_stub
//!     3:  test byte ptr [FEATURE], 1      the generic stub: the key's state byte
//!         jnz  yes                        (`jz` for likely)
//!         jmp  4b
//!         .popsection
//!         .pushsection static_branch_sites,"aR" ; .long 2b-., yes-., FEATURE-., 3b-., likely ; .popsection
//! ```
//! `static_branch_likely!` is the same with the fallthrough meaning `true` and the label `false`, so the
//! likely path is the straight one, as in the kernel.

/// Defines static branch keys (the kernel's `DEFINE_STATIC_KEY_FALSE` / `DEFINE_STATIC_KEY_TRUE`).
///
/// ```
/// use callpatch_static_call::{static_branch, static_branch_likely, static_branch_unlikely};
///
/// static_branch! {
///     /// Extra checks, off by default.
///     pub static CHECKS: StaticBranch = false;
///     /// The fast path, on by default.
///     pub static FAST: StaticBranch = true;
/// }
///
/// assert!(!static_branch_unlikely!(CHECKS));
/// CHECKS.enable().unwrap();
/// assert!(static_branch_unlikely!(CHECKS));
/// assert!(static_branch_likely!(FAST));
/// FAST.disable().unwrap();
/// assert!(!static_branch_likely!(FAST) && !FAST.is_enabled());
/// ```
#[macro_export]
macro_rules! static_branch {
    () => {};
    (
        $(#[$attr:meta])*
        $vis:vis static $name:ident : StaticBranch = $default:expr;
        $($more:tt)*
    ) => {
        $(#[$attr])*
        $vis static $name: $crate::StaticBranch = $crate::StaticBranch::__new(
            ::core::concat!(::core::module_path!(), "::", ::core::stringify!($name)),
            $default,
        );
        $crate::static_branch! { $($more)* }
    };
}

/// Evaluates a static branch key expected to be disabled (the kernel's `static_branch_unlikely`): a
/// `bool`, `true` when the key is enabled. The `true` path is out of line: a 5-byte nop falls through to
/// `false`; enabling the key patches the nop into a jump.
///
/// ```ignore
/// if static_branch_unlikely!(TRACING) { trace(event) }
/// ```
/// The key must be a [`StaticBranch`](crate::StaticBranch) static (what `static_branch!` defines):
/// ```compile_fail,E0308
/// # use callpatch_static_call::static_branch_unlikely;
/// static FLAG: bool = false;
/// let _ = static_branch_unlikely!(FLAG);
/// ```
#[macro_export]
macro_rules! static_branch_unlikely {
    ($($key:ident)::+) => {
        $crate::__static_branch_site!([$($key)::+] false)
    };
}

/// Evaluates a static branch key expected to be enabled (the kernel's `static_branch_likely`): a `bool`,
/// `true` when the key is enabled. The `true` path is the straight one: a 5-byte nop falls through to
/// `true`; disabling the key patches the nop into a jump.
#[macro_export]
macro_rules! static_branch_likely {
    ($($key:ident)::+) => {
        $crate::__static_branch_site!([$($key)::+] true)
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __static_branch_site {
    ([$($key:tt)*] $likely:tt) => {{
        let _: &$crate::StaticBranch = &$($key)*;
        'static_branch: {
            // SAFETY: the asm only reads the key's state byte (in its stub) and jumps to its own label or
            // falls through; it pushes nothing (`nostack`), declares the flags clobbered (the stub's
            // `test`), and the pushed sections add an out-of-line stub and a table entry, no code inline
            // besides the 5-byte site and its alignment nop.
            unsafe {
                ::core::arch::asm!(
                    ".p2align 3, , 4",
                    "2:",
                    ".byte 0xe9",
                    ".long 3f - . - 4",
                    "4:",
                    ".pushsection .text.static_branch_stub,\"ax\",@progbits",
                    "3:",
                    "test byte ptr [rip + {key}], 1",
                    ".if {likely}",
                    "jz {yes}",
                    ".else",
                    "jnz {yes}",
                    ".endif",
                    "jmp 4b",
                    ".popsection",
                    ".pushsection static_branch_sites,\"aR\",@progbits",
                    ".balign 4",
                    ".long 2b - .",
                    ".long {yes} - .",
                    ".long {key} - .",
                    ".long 3b - .",
                    ".long {likely}",
                    ".popsection",
                    key = sym $($key)*,
                    likely = const $likely as u8,
                    yes = label {
                        break 'static_branch !$likely;
                    },
                    options(nostack),
                );
            }
            $likely
        }
    }};
}
