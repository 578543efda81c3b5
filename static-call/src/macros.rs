//! `static_call!` (define a key; call through one) and `static_call_update!`.
//!
//! Expansion of a definition `static_call! { pub static LOG: fn(u32) -> u64 = log_plain; }`:
//! - `pub static LOG: StaticCall<LOG>`, the key, starting at `log_plain`;
//! - `pub struct LOG { .. }`, a marker type of the same name (types and values live in different
//!   namespaces, so the one path `LOG` names both), implementing [`Definition`](super::Definition) with the
//!   signature and the trampoline, a naked function in `.text.static_call_tramp`.
//!
//! Expansion of a call `static_call!(LOG(7))`, at the use site:
//! ```text
//!     2:  call <LOG as Definition>::trampoline    e8 rel32, 5 bytes (RET0, `xor eax, eax`, when disabled)
//!         .pushsection static_call_sites,"aR" ; .long 2b - . ; .long LOG - . ; .popsection
//! ```
//! with the arguments in `rdi, rsi, rdx, rcx, r8, r9`, the result in `rax`, and `clobber_abi("C")`.
//! The arguments are type-checked against the key's signature before any register is loaded.

/// Defines static call keys, or calls through one.
///
/// Define (at module level or in a block; attributes and visibility as for a `static`):
/// ```ignore
/// static_call! {
///     /// Logging back-end.
///     pub static LOG: fn(u32, u64) -> u64 = log_plain;
///     /// A hook that may be unset: its calls then return 0.
///     pub static HOOK: Option<fn(u64)> = None;
/// }
/// ```
/// Call (an expression; the arguments are evaluated first, left to right):
/// ```ignore
/// let n = static_call!(LOG(7, 8));
/// static_call!(crate::hooks::HOOK(n));
/// ```
/// Arguments and results are integers, `bool`, `char` or raw pointers, at most six arguments (see
/// [`abi`](crate::abi)). Change the target with [`static_call_update!`](crate::static_call_update).
///
/// A key other modules and crates may call but not retarget (the kernel's `EXPORT_STATIC_CALL_TRAMP`):
/// `#[call_only(update = NAME)]`, first among its attributes, declares beside it the updater static
/// `NAME` (of the visibility written before `NAME`, private here), the only way to retarget it:
/// ```
/// mod log {
///     use callpatch_static_call::static_call;
///     fn plain(x: u64) -> u64 { x }
///     fn tagged(x: u64) -> u64 { x | 1 << 63 }
///     static_call! {
///         #[call_only(update = LOG_UPDATE)]
///         pub static LOG: fn(u64) -> u64 = plain;
///     }
///     pub fn tag_everything() {
///         LOG_UPDATE.update(tagged).unwrap();
///     }
/// }
/// use callpatch_static_call::static_call;
/// assert_eq!(static_call!(log::LOG(1)), 1);
/// log::tag_everything();
/// assert_eq!(static_call!(log::LOG(1)), 1 | 1 << 63);
/// ```
/// Retargeting it from outside does not compile, through the key or through its private updater:
/// ```compile_fail,E0277
/// mod log {
///     use callpatch_static_call::static_call;
///     fn plain(x: u64) -> u64 { x }
///     static_call! { #[call_only(update = LOG_UPDATE)] pub static LOG: fn(u64) -> u64 = plain; }
/// }
/// fn mine(x: u64) -> u64 { x }
/// callpatch_static_call::static_call_update!(log::LOG, mine).unwrap();
/// ```
/// ```compile_fail,E0603
/// mod log {
///     use callpatch_static_call::static_call;
///     fn plain(x: u64) -> u64 { x }
///     static_call! { #[call_only(update = LOG_UPDATE)] pub static LOG: fn(u64) -> u64 = plain; }
/// }
/// fn mine(x: u64) -> u64 { x }
/// log::LOG_UPDATE.update(mine).unwrap();
/// ```
///
/// Anything else is a compile error that says why — a float, a reference, a float result:
/// ```compile_fail,E0277
/// # use callpatch_static_call::static_call;
/// fn f(x: f64) -> u64 { x as u64 }
/// static_call! { static K: fn(f64) -> u64 = f; }
/// ```
/// ```compile_fail,E0277
/// # use callpatch_static_call::static_call;
/// fn g(x: &u64) -> u64 { *x }
/// static_call! { static K: fn(&u64) -> u64 = g; }
/// ```
/// ```compile_fail,E0277
/// # use callpatch_static_call::static_call;
/// fn h(x: u64) -> f32 { x as f32 }
/// static_call! { static K: fn(u64) -> f32 = h; }
/// ```
#[macro_export]
macro_rules! static_call {
    () => {};
    (#[call_only(update = $uvis:vis $upd:ident)] $($def:tt)*) => {
        $crate::static_call! { @mode [call_only $uvis $upd] $($def)* }
    };
    (
        @mode [$($mode:tt)*]
        $(#[$attr:meta])*
        $vis:vis static $name:ident : fn($($arg:ty),* $(,)?) $(-> $ret:ty)? = $default:expr;
        $($more:tt)*
    ) => {
        $(#[$attr])*
        // SAFETY: this is the one key of the marker type `$name`.
        $vis static $name: $crate::StaticCall<$name> = unsafe {
            $crate::StaticCall::__new(
                ::core::concat!(::core::module_path!(), "::", ::core::stringify!($name)),
                $default,
            )
        };
        $crate::__static_call_definition!($vis $name, fn($($arg),*) $(-> $ret)?, false);
        $crate::__static_call_mode!($name, $($mode)*);
        $crate::static_call! { $($more)* }
    };
    (
        @mode [$($mode:tt)*]
        $(#[$attr:meta])*
        $vis:vis static $name:ident : Option<fn($($arg:ty),* $(,)?) $(-> $ret:ty)?> = None;
        $($more:tt)*
    ) => {
        $(#[$attr])*
        // SAFETY: this is the one key of the marker type `$name`.
        $vis static $name: $crate::StaticCall<$name> = unsafe {
            $crate::StaticCall::__new_none(::core::concat!(
                ::core::module_path!(),
                "::",
                ::core::stringify!($name)
            ))
        };
        $crate::__static_call_definition!($vis $name, fn($($arg),*) $(-> $ret)?, true);
        $crate::__static_call_mode!($name, $($mode)*);
        $crate::static_call! { $($more)* }
    };
    (
        @mode [$($mode:tt)*]
        $(#[$attr:meta])*
        $vis:vis static $name:ident : Option<fn($($arg:ty),* $(,)?) $(-> $ret:ty)?> = Some($default:expr);
        $($more:tt)*
    ) => {
        $(#[$attr])*
        // SAFETY: this is the one key of the marker type `$name`.
        $vis static $name: $crate::StaticCall<$name> = unsafe {
            $crate::StaticCall::__new(
                ::core::concat!(::core::module_path!(), "::", ::core::stringify!($name)),
                $default,
            )
        };
        $crate::__static_call_definition!($vis $name, fn($($arg),*) $(-> $ret)?, true);
        $crate::__static_call_mode!($name, $($mode)*);
        $crate::static_call! { $($more)* }
    };
    ($(#[$attr:meta])* $vis:vis static $($def:tt)*) => {
        $crate::static_call! { @mode [updatable] $(#[$attr])* $vis static $($def)* }
    };
    ($($key:ident)::+ ( $($arg:expr),* $(,)? )) => {
        $crate::__static_call_site!(
            @pair [$($key)::+] []
            [("rdi" 0) ("rsi" 1) ("rdx" 2) ("rcx" 3) ("r8" 4) ("r9" 5)]
            $($arg,)*
        )
    };
}

/// Points a key at a new target, or (`None`, only for `Option<fn>` keys) at no function; or several
/// keys at once, in one patch batch (three syncs in all, see [`update_all`](crate::update_all)).
///
/// ```ignore
/// static_call_update!(LOG, log_json)?;
/// static_call_update!(HOOK, None)?;
/// static_call_update! { LOG => log_plain, HOOK => Some(trace), crate::net::SEND => send_batched }?;
/// ```
/// The target is a fn item or a closure that captures nothing, of the key's exact fn type (checked at
/// compile time). Returns `Result<(), UpdateError>`; see [`StaticCall::update`](crate::StaticCall::update).
///
/// What does not compile — a target of another signature:
/// ```compile_fail,E0631
/// # use callpatch_static_call::{static_call, static_call_update};
/// fn f(x: u64) -> u64 { x }
/// fn g(x: u32) -> u64 { x as u64 }
/// static_call! { static K: fn(u64) -> u64 = f; }
/// static_call_update!(K, g).unwrap();
/// ```
/// `None` for a key not declared `Option<fn(..)>`:
/// ```compile_fail,E0277
/// # use callpatch_static_call::{static_call, static_call_update};
/// fn f(x: u64) -> u64 { x }
/// static_call! { static K: fn(u64) -> u64 = f; }
/// static_call_update!(K, None).unwrap();
/// ```
/// A closure that captures (the site's shim has nowhere to find the captures):
/// ```compile_fail,E0080
/// # use callpatch_static_call::{static_call, static_call_update};
/// fn f(x: u64) -> u64 { x }
/// static_call! { static K: fn(u64) -> u64 = f; }
/// let n = 5u64;
/// static_call_update!(K, move |x: u64| x + n).unwrap();
/// ```
/// In a several-key update, a target of another signature, or `None` for a key that is not
/// `Option<fn(..)>`:
/// ```compile_fail,E0631
/// # use callpatch_static_call::{static_call, static_call_update};
/// fn f(x: u64) -> u64 { x }
/// fn g(x: u32) -> u64 { x as u64 }
/// static_call! { static K: fn(u64) -> u64 = f; static L: fn(u64) -> u64 = f; }
/// static_call_update! { K => f, L => g }.unwrap();
/// ```
/// ```compile_fail,E0277
/// # use callpatch_static_call::{static_call, static_call_update};
/// fn f(x: u64) -> u64 { x }
/// static_call! { static K: fn(u64) -> u64 = f; static L: fn(u64) -> u64 = f; }
/// static_call_update! { K => f, L => None }.unwrap();
/// ```
/// A call with the wrong arguments:
/// ```compile_fail,E0308
/// # use callpatch_static_call::{static_call, static_call_update};
/// fn f(x: u64) -> u64 { x }
/// static_call! { static K: fn(u64) -> u64 = f; }
/// static_call!(K(1, 2));
/// ```
#[macro_export]
macro_rules! static_call_update {
    ($($key:ident)::+, None $(,)?) => {
        $crate::StaticCall::disable(&$($key)::+)
    };
    ($($key:ident)::+, Some($f:expr) $(,)?) => {
        $crate::StaticCall::update(&$($key)::+, $f)
    };
    ($($key:ident)::+, $f:expr $(,)?) => {
        $crate::StaticCall::update(&$($key)::+, $f)
    };
    ($($changes:tt)+) => {
        $crate::update_all(&$crate::__static_call_changes!([] $($changes)+))
    };
}

/// `A => f, B => None, C => Some(g)` into `[A.to(f), B.to_none(), C.to(g)]`, one item at a time.
#[doc(hidden)]
#[macro_export]
macro_rules! __static_call_changes {
    ([$($done:expr,)*] $(,)?) => {
        [$($done,)*]
    };
    ([$($done:expr,)*] $($key:ident)::+ => None $(, $($rest:tt)*)?) => {
        $crate::__static_call_changes!([$($done,)* $crate::StaticCall::to_none(&$($key)::+),] $($($rest)*)?)
    };
    ([$($done:expr,)*] $($key:ident)::+ => Some($f:expr) $(, $($rest:tt)*)?) => {
        $crate::__static_call_changes!([$($done,)* $crate::StaticCall::to(&$($key)::+, $f),] $($($rest)*)?)
    };
    ([$($done:expr,)*] $($key:ident)::+ => $f:expr $(, $($rest:tt)*)?) => {
        $crate::__static_call_changes!([$($done,)* $crate::StaticCall::to(&$($key)::+, $f),] $($($rest)*)?)
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __static_call_definition {
    ($vis:vis $name:ident, $sig:ty, $nullable:tt) => {
        #[doc(hidden)]
        #[allow(non_camel_case_types, dead_code)]
        $vis struct $name {
            _marker: (),
        }

        // SAFETY: the trampoline below is the 16-byte layout of `static_call::trampoline` whose generic
        // path jumps through the key `$name` (a `StaticCall<$name>`, key at offset 0), and `Sig` is the
        // type that key's targets were checked against.
        unsafe impl $crate::Definition for $name {
            type Sig = $sig;
            const NULLABLE: bool = $nullable;

            #[unsafe(naked)]
            #[unsafe(link_section = ".text.static_call_tramp")]
            unsafe extern "C" fn trampoline() {
                ::core::arch::naked_asm!(
                    ".byte 0xe9",
                    ".long 3f - . - 4",
                    ".byte 0xcc, 0xcc, 0xcc",
                    "3:",
                    "jmp qword ptr [rip + {key}]",
                    ".byte 0xcc, 0xcc",
                    ".balign 16, 0xcc",
                    key = sym $name,
                )
            }
        }

        $crate::__static_call_nullable!($name, $nullable);
    };
}

/// Who may retarget a key: anyone who can name it (`updatable`), or only through its updater static
/// (`call_only`, the kernel's `EXPORT_STATIC_CALL_TRAMP`: other crates call it, its own crate updates it).
#[doc(hidden)]
#[macro_export]
macro_rules! __static_call_mode {
    ($name:ident, updatable) => {
        // SAFETY: `$name` was not declared call-only.
        unsafe impl $crate::Updatable for $name {}
    };
    ($name:ident, call_only $uvis:vis $upd:ident) => {
        /// Retargets the call-only key of the same name (see `static_call!`'s `#[call_only]`).
        // SAFETY: the one updater of the key `$name`, declared with it.
        $uvis static $upd: $crate::Updater<$name> = unsafe { $crate::Updater::__new(&$name) };
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __static_call_nullable {
    ($name:ident, false) => {};
    ($name:ident, true) => {
        // SAFETY: declared `Option<fn(..)>`, and its `NULLABLE` is true.
        unsafe impl $crate::Nullable for $name {}
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __static_call_site {
    // Pair the next argument with the next C ABI argument register.
    (@pair [$($key:tt)*] [$($done:tt)*] [($reg:tt $idx:tt) $($regs:tt)*] $arg:expr, $($rest:tt)*) => {
        $crate::__static_call_site!(@pair [$($key)*] [$($done)* ($reg $idx $arg)] [$($regs)*] $($rest)*)
    };
    (@pair [$($key:tt)*] [$($done:tt)*] [] $arg:expr, $($rest:tt)*) => {
        ::core::compile_error!("a static call passes at most 6 arguments (the C ABI's integer argument registers)")
    };
    (@pair [$($key:tt)*] [$(($reg:tt $idx:tt $arg:expr))*] [$($regs:tt)*]) => {{
        // The key is a `StaticCall` of its own marker type, and the arguments have its signature's types.
        let _: &$crate::StaticCall<$($key)*> = &$($key)*;
        let __args: <<$($key)* as $crate::Definition>::Sig as $crate::Signature>::Args =
            ($($arg,)*);
        let __rax: u64;
        // SAFETY: the call enters the key's trampoline, which reaches an `extern "C"` shim of the key's
        // signature (or returns 0 for a disabled key); the arguments are in the C ABI registers, every
        // caller-saved register is declared clobbered, and without `nostack` the stack is aligned for a
        // call. The pushed section entry adds no code.
        unsafe {
            ::core::arch::asm!(
                "2:",
                "call {trampoline}",
                ".pushsection static_call_sites,\"aR\",@progbits",
                ".balign 4",
                ".long 2b - .",
                ".long {key} - .",
                ".popsection",
                trampoline = sym <$($key)* as $crate::Definition>::trampoline,
                key = sym $($key)*,
                $(in($reg) $crate::RegArg::to_reg(__args.$idx),)*
                out("rax") __rax,
                clobber_abi("C"),
            );
        }
        // SAFETY: `rax` is what the signature's `extern "C"` shim returned, or 0 for a disabled key.
        unsafe {
            <<<$($key)* as $crate::Definition>::Sig as $crate::Signature>::Ret
                as $crate::RegRet>::from_reg(__rax)
        }
    }};
}
