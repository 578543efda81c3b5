//! A static call key: the statically allocated state of one `static_call!` definition.
//!
//! The kernel's `struct static_call_key` holds the current function; so does [`Key`], as the pointer that
//! the trampoline's generic path jumps through. `static_call!` defines, under one name, a `static` of
//! type [`StaticCall<NAME>`] (the value) and a marker type `NAME` (the type namespace) that implements
//! [`Definition`]: its fn signature and its trampoline. Sites name both, so a site is type-checked against
//! its key and records that key's address; an update can only install a target of the key's signature
//! and only touches sites recorded for that key.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicPtr, Ordering};

use super::signature::{Signature, Target};
use super::sites::{self, CallSite};
use super::trampoline::{return_zero, zero_stub};
use super::update::{self, Change, UpdateError};

/// What `static_call!` generates for each key; implemented only by that macro.
///
/// # Safety
/// `trampoline` is the 16-byte trampoline of [`super::trampoline`], its generic path jumps through the
/// key of the `static` of the same name, and `Sig` is the signature that key's targets have.
pub unsafe trait Definition: Sized + 'static {
    /// The key's fn type.
    type Sig: Signature;
    /// Whether the key may be disabled (its sites then become RET0, `xor eax, eax`).
    const NULLABLE: bool;
    /// The trampoline (a naked function; not callable from Rust).
    ///
    /// # Safety
    /// Never call it: only sites jump to it, with the arguments in the C ABI registers.
    unsafe extern "C" fn trampoline();
}

/// Marks keys that anyone who can name them may retarget: every key not declared
/// `#[call_only(update = ..)]`. A call-only key is updated only through its [`Updater`].
///
/// # Safety
/// Implemented by `static_call!` exactly for the keys not declared call-only.
#[diagnostic::on_unimplemented(
    message = "static call `{Self}` is exported call-only: it cannot be retargeted here",
    label = "declared `#[call_only(update = ..)]`",
    note = "its defining module retargets it through the updater static named in `#[call_only(update = ..)]`"
)]
pub unsafe trait Updatable: Definition {}

/// The right to retarget one call-only key: `static_call!` declares it beside the key, with the name and
/// visibility given in `#[call_only(update = ..)]` (the kernel's `EXPORT_STATIC_CALL_TRAMP`: other
/// modules may call the key, only its own updates it).
#[derive(Debug)]
pub struct Updater<D: 'static> {
    key: &'static StaticCall<D>,
}

impl<D: Definition> Updater<D> {
    #[doc(hidden)]
    /// Used by `static_call!`.
    ///
    /// # Safety
    /// Only for the updater declared with the call-only key `key`.
    pub const unsafe fn __new(key: &'static StaticCall<D>) -> Self {
        Updater { key }
    }

    /// As [`StaticCall::update`], for the call-only key.
    pub fn update<F: Target<D::Sig>>(&self, f: F) -> Result<(), UpdateError> {
        update::update_all(&[self.to(f)])
    }

    /// As [`StaticCall::to`], for the call-only key.
    pub fn to<F: Target<D::Sig>>(&self, f: F) -> Change {
        self.key.change_to(f)
    }
}

impl<D: Nullable> Updater<D> {
    /// As [`StaticCall::disable`], for the call-only key.
    pub fn disable(&self) -> Result<(), UpdateError> {
        update::update_all(&[self.to_none()])
    }

    /// As [`StaticCall::to_none`], for the call-only key.
    pub fn to_none(&self) -> Change {
        self.key.change_to_none()
    }
}

/// Marks keys declared `Option<fn(..)>`: those may be set to "no function".
///
/// # Safety
/// Implemented by `static_call!` exactly when `Definition::NULLABLE` is true.
pub unsafe trait Nullable: Definition {}

/// The type-erased state of a key; the trampoline's generic path reads `current` at offset 0.
#[repr(C)]
#[derive(Debug)]
pub struct Key {
    /// Address the generic path jumps to: a target's shim, or the zero stub when disabled.
    current: AtomicPtr<()>,
    /// A Rust-ABI function of the key's type calling the current target (null when disabled): what
    /// `query` returns. Changed with `current`, under the static call lock.
    query: AtomicPtr<()>,
    trampoline: unsafe extern "C" fn(),
    nullable: bool,
    name: &'static str,
}

impl Key {
    /// The key's name, `module::path::NAME`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Address of the key's trampoline.
    pub fn trampoline(&self) -> usize {
        self.trampoline as usize
    }

    /// Whether the key may be disabled.
    pub fn is_nullable(&self) -> bool {
        self.nullable
    }

    /// Address of the key (what site entries record).
    pub fn addr(&self) -> usize {
        self as *const Key as usize
    }

    /// The current target's shim address; `None` when the key is disabled.
    pub fn target(&self) -> Option<usize> {
        let t = self.current.load(Ordering::Acquire) as usize;
        (t != zero_stub()).then_some(t)
    }

    /// The sites that call this key, from the site table (every copy of the machine code of every
    /// `static_call!` use that the linker kept), sorted by address.
    pub fn sites(&self) -> Vec<CallSite> {
        sites::all().into_iter().filter(|s| s.key() == self.addr()).collect()
    }

    /// Sets what `query` returns (`0`: disabled).
    pub(crate) fn set_query(&self, rust: usize) {
        self.query.store(rust as *mut (), Ordering::Release);
    }

    /// Sets the generic path's destination (the fallback's whole update: one atomic store).
    pub(crate) fn set_current(&self, target: Option<usize>) {
        let p = target.unwrap_or(zero_stub()) as *mut ();
        self.current.store(p, Ordering::Release);
    }
}

/// The key at `addr`.
///
/// # Safety
/// `addr` is the address of a `StaticCall` static (as every site table entry records).
pub(crate) unsafe fn key_at(addr: usize) -> &'static Key {
    // SAFETY: a `StaticCall` is `repr(C)` with its `Key` at offset 0, and statics live forever.
    unsafe { &*(addr as *const Key) }
}

/// A static call key: see `static_call!`. `D` is the key's marker type.
#[repr(C)]
#[derive(Debug)]
pub struct StaticCall<D> {
    key: Key,
    _def: PhantomData<fn() -> D>,
}

impl<D: Definition> StaticCall<D> {
    #[doc(hidden)]
    /// Used by `static_call!`: a key whose default target is `f`.
    ///
    /// # Safety
    /// Only for the one `static` named like `D`, whose address `D::trampoline` reads: another key of
    /// the same `D` would patch `D`'s trampoline.
    pub const unsafe fn __new<F: Target<D::Sig>>(name: &'static str, f: F) -> Self {
        let _witness = f;
        Self::with_current(name, F::SHIM, F::RUST)
    }

    #[doc(hidden)]
    /// Used by `static_call!`: a nullable key that starts disabled.
    ///
    /// # Safety
    /// As for [`Self::__new`].
    pub const unsafe fn __new_none(name: &'static str) -> Self
    where
        D: Nullable,
    {
        Self::with_current(name, return_zero as *const (), std::ptr::null())
    }

    const fn with_current(name: &'static str, current: *const (), query: *const ()) -> Self {
        StaticCall {
            key: Key {
                current: AtomicPtr::new(current as *mut ()),
                query: AtomicPtr::new(query as *mut ()),
                trampoline: D::trampoline,
                nullable: D::NULLABLE,
                name,
            },
            _def: PhantomData,
        }
    }

    /// The key's type-erased state.
    pub fn key(&self) -> &Key {
        &self.key
    }

    fn change_to<F: Target<D::Sig>>(&'static self, f: F) -> Change {
        let _witness = f;
        Change { key: &self.key, target: Some(F::SHIM as usize), query: F::RUST as usize }
    }

    fn change_to_none(&'static self) -> Change {
        Change { key: &self.key, target: None, query: 0 }
    }

    /// The kernel's `static_call_query`: a function of the key's type that calls its current target, as
    /// of the last update (`None` when disabled). It is not the target's own fn pointer (a static call
    /// keeps only the code it jumps to), so compare results by calling, not by address.
    pub fn query(&self) -> Option<D::Sig> {
        let p = self.key.query.load(Ordering::Acquire);
        const { assert!(size_of::<D::Sig>() == size_of::<*mut ()>(), "a key's type is a fn pointer") };
        // SAFETY: a non-null `query` is always `Target::<D::Sig>::RUST` of a target of this key (set by
        // `to` through an update, or by the definition), a function of type `D::Sig`; fn pointers and
        // data pointers have the same size and representation on x86-64.
        (!p.is_null()).then(|| unsafe { std::mem::transmute_copy::<*mut (), D::Sig>(&p) })
    }
}

impl<D: Updatable> StaticCall<D> {
    /// Points the key at `f`: with inline patching, the trampoline and every site of this key are
    /// rewritten in one bp batch (three syncs); otherwise `key.current` is stored. Calls made by other
    /// threads meanwhile reach the old or the new target. Initialises static calls first if needed.
    pub fn update<F: Target<D::Sig>>(&'static self, f: F) -> Result<(), UpdateError> {
        update::update_all(&[self.to(f)])
    }

    /// This key's part of a several-key update ([`update_all`](crate::update_all)): point it at `f`.
    pub fn to<F: Target<D::Sig>>(&'static self, f: F) -> Change {
        self.change_to(f)
    }
}

impl<D: Nullable + Updatable> StaticCall<D> {
    /// Sets the key to "no function": sites become RET0 (`xor eax, eax`), the trampoline jumps to a
    /// function returning 0, and a call returns the return type's zero value (0, `false`, null, `()`).
    pub fn disable(&'static self) -> Result<(), UpdateError> {
        update::update_all(&[self.to_none()])
    }

    /// This key's part of a several-key update ([`update_all`](crate::update_all)): disable it.
    pub fn to_none(&'static self) -> Change {
        self.change_to_none()
    }
}

impl<D> std::ops::Deref for StaticCall<D> {
    type Target = Key;
    fn deref(&self) -> &Key {
        &self.key
    }
}
