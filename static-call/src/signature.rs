//! A key's function type, and the `extern "C"` shim through which a site reaches each target.
//!
//! A key is declared with a plain Rust fn type, `fn(u32, u64) -> u64`; [`Signature`] gives its argument
//! tuple and return type. A target is any zero-sized `Copy` callable of that type — a fn item or a
//! non-capturing closure — and [`Target::SHIM`] is the address of `shim::<F>`, an `extern "C"` function
//! generated for that one callable type. The shim reads the C ABI registers that the site loaded (see
//! [`super::abi`]), conjures the zero-sized `F` and calls it; LLVM inlines `F`'s body into the shim, so a
//! patched site costs one direct call, like a direct call to the Rust function.
//!
//! Why a shim rather than the function itself: a site is an `asm!` block and can only assume the C
//! calling convention; Rust's own is unspecified. Why zero-sized: the shim has no environment to read a
//! closure's captures from, so only callables that *are* their code can be targets (checked at compile
//! time). A target that panics aborts the process, after one line naming the target and its keys: the
//! shim catches the panic, because unwinding cannot cross the site's `asm!` call (see `panicked`).

use std::ptr::NonNull;

use super::abi::{RegArg, RegRet};

/// A fn type that a static call key can have: at most six [`RegArg`] arguments, a [`RegRet`] result.
///
/// # Safety
/// Implemented only here, for `fn(A0, .., An) -> R`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the type of a static call key",
    label = "not a static call signature",
    note = "a key's type is `fn(A0, .., An) -> R` with at most six arguments that the C ABI passes in one \
            integer register each (integers, `bool`, `char`, raw pointers) and such a result or `()`",
    note = "a reference makes the fn type generic over its lifetime (`for<'a> fn(&'a T)`), which a key cannot \
            be: pass `*const T` (or `*mut T`, or an address) instead"
)]
pub unsafe trait Signature: Copy + 'static {
    /// The argument types as a tuple, `(A0, A1, ..)`.
    type Args;
    /// The return type.
    type Ret: RegRet;
    /// Number of arguments.
    const ARITY: usize;
}

/// A callable that can be the target of a key of signature `S`: zero-sized, `Copy`, and of type `S`.
///
/// # Safety
/// `SHIM` is the address of an `extern "C"` function with `S`'s parameters and return type.
pub unsafe trait Target<S: Signature>: Copy + 'static {
    /// Address of the `extern "C"` shim that calls this callable. Evaluating it fails to compile when the
    /// callable is not zero-sized (a closure that captures).
    const SHIM: *const ();
    /// Address of a Rust-ABI function of type `S` that calls this callable (what
    /// [`StaticCall::query`](crate::StaticCall::query) returns).
    const RUST: *const ();
}

/// Produces a value of a zero-sized type.
///
/// # Safety
/// `F` is zero-sized and `Copy`, and a value of it has existed (it was handed to `StaticCall::update` or
/// to the key's definition): a `Copy` ZST has no bytes and no drop, so a new value is a copy of that one.
#[inline(always)]
unsafe fn conjure<F: Copy>() -> F {
    const {
        assert!(
            size_of::<F>() == 0,
            "a static call target must be zero-sized (a fn item or a closure without captures)"
        )
    };
    // SAFETY: a read of zero bytes from an aligned non-null pointer; validity per the function contract.
    unsafe { NonNull::<F>::dangling().read() }
}

/// A target panicked: says which target and which keys point at it, and aborts. A panic cannot unwind
/// through a static call site: the site's `asm!` call has no unwind table entry (that needs
/// `options(may_unwind)`, which is not stable Rust), so the unwinder would fail there with "failed to
/// initiate panic" or abort with "panic in a function that cannot unwind", naming neither. Catching it in
/// the shim costs nothing on the path that does not panic (a landing pad, no instruction).
#[cold]
#[inline(never)]
fn panicked(target: &str, shim: usize) -> ! {
    let mut keys: Vec<&str> = Vec::new();
    for site in super::sites::all() {
        // SAFETY: site table entries come only from `static_call!` call sites, whose key operand is a
        // `StaticCall` static.
        let key = unsafe { super::key::key_at(site.key()) };
        if key.target() == Some(shim) && !keys.contains(&key.name()) {
            keys.push(key.name());
        }
    }
    let keys = if keys.is_empty() { "no key now".to_string() } else { keys.join(", ") };
    eprintln!(
        "callpatch: static_call: target {target} (of static call {keys}) panicked; a panic cannot unwind \
         through a static call site, so the process aborts"
    );
    std::process::abort()
}

macro_rules! signatures {
    ($($n:literal: $shim:ident, $thunk:ident($($a:ident: $A:ident),*);)*) => {$(
        // SAFETY: the argument tuple and return type are exactly those of the fn type.
        unsafe impl<R: RegRet + 'static, $($A: RegArg + 'static),*> Signature for fn($($A),*) -> R {
            type Args = ($($A,)*);
            type Ret = R;
            const ARITY: usize = $n;
        }

        extern "C" fn $shim<R, $($A,)* F: Fn($($A),*) -> R + Copy>($($a: $A),*) -> R {
            // SAFETY: `F: Target` is only used by code that held a value of `F` (see `conjure`).
            let f: F = unsafe { conjure::<F>() };
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f($($a),*))) {
                Ok(r) => r,
                Err(_) => panicked(
                    std::any::type_name::<F>(),
                    $shim::<R, $($A,)* F> as extern "C" fn($($A),*) -> R as usize,
                ),
            }
        }

        fn $thunk<R, $($A,)* F: Fn($($A),*) -> R + Copy>($($a: $A),*) -> R {
            // SAFETY: as in the shim.
            let f: F = unsafe { conjure::<F>() };
            f($($a),*)
        }

        // SAFETY: the shim is `extern "C" fn(A0, .., An) -> R`, the signature's parameters and result.
        unsafe impl<R: RegRet + 'static, $($A: RegArg + 'static,)* F: Fn($($A),*) -> R + Copy + 'static>
            Target<fn($($A),*) -> R> for F
        {
            const SHIM: *const () = {
                assert!(
                    size_of::<F>() == 0,
                    "a static call target must be zero-sized: a fn item or a closure that captures nothing"
                );
                $shim::<R, $($A,)* F> as extern "C" fn($($A),*) -> R as *const ()
            };
            const RUST: *const () = $thunk::<R, $($A,)* F> as fn($($A),*) -> R as *const ();
        }
    )*};
}

signatures! {
    0: shim0, thunk0();
    1: shim1, thunk1(a0: A0);
    2: shim2, thunk2(a0: A0, a1: A1);
    3: shim3, thunk3(a0: A0, a1: A1, a2: A2);
    4: shim4, thunk4(a0: A0, a1: A1, a2: A2, a3: A3);
    5: shim5, thunk5(a0: A0, a1: A1, a2: A2, a3: A3, a4: A4);
    6: shim6, thunk6(a0: A0, a1: A1, a2: A2, a3: A3, a4: A4, a5: A5);
}

/// The shim address of `f` for signature `S` (what a site calls once patched to `f`). A shim is a
/// generic instance, so without shared generics (release builds) each crate that names it has its own
/// copy: compare with a key's [`target`](super::Key::target) rather than with a `shim_of` from another crate.
pub fn shim_of<S: Signature, F: Target<S>>(f: F) -> usize {
    let _witness = f;
    F::SHIM as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(a: u32, b: u64) -> u64 {
        a as u64 + b
    }

    #[test]
    fn the_shim_is_a_c_abi_function_that_calls_the_target() {
        let shim = shim_of::<fn(u32, u64) -> u64, _>(add);
        // SAFETY: SHIM is `extern "C" fn(u32, u64) -> u64` by `Target`'s contract.
        let f: extern "C" fn(u32, u64) -> u64 = unsafe { std::mem::transmute(shim) };
        assert_eq!(f(2, 40), 42);
        let neg = shim_of::<fn(i8) -> i64, _>(|x: i8| x as i64 * 3);
        // SAFETY: as above, for `fn(i8) -> i64`.
        let g: extern "C" fn(i8) -> i64 = unsafe { std::mem::transmute(neg) };
        assert_eq!(g(-5), -15);
        assert_eq!(<fn(u8, u8, u8, u8, u8, u8) as Signature>::ARITY, 6);
    }

    #[test]
    fn each_callable_type_has_its_own_shim() {
        fn one() -> u32 {
            1
        }
        fn two() -> u32 {
            2
        }
        assert_ne!(shim_of::<fn() -> u32, _>(one), shim_of::<fn() -> u32, _>(two));
        assert_eq!(shim_of::<fn() -> u32, _>(one), shim_of::<fn() -> u32, _>(one));
    }
}
