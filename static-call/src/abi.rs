//! The register contract between a static call site and its target.
//!
//! A site is an `asm!` block that knows only the key, not the function it will reach, so it loads the
//! arguments where the System V C ABI puts integer-class arguments (`rdi, rsi, rdx, rcx, r8, r9`, in
//! order) and reads the result from `rax`, and declares every other caller-saved register clobbered
//! (`clobber_abi("C")`). Every target is reached through an `extern "C"` shim (see
//! [`super::signature`]), which reads exactly those registers. Rust's own ABI is unspecified, so a
//! Rust-ABI function is never called from a site directly.
//!
//! Hence the limit: arguments and return values are the scalar types that the C ABI passes in one
//! integer register — integers up to 64 bits, `bool`, `char` and raw pointers — and at most six
//! arguments. (Floats travel in `xmm` registers, aggregates and fat pointers in several registers or in
//! memory; pass a raw pointer instead.)

/// A type the C ABI passes in one integer register.
///
/// # Safety
/// `to_reg` must produce the register image that an `extern "C"` callee taking `Self` expects: the value,
/// zero-extended for unsigned types and `bool`, sign-extended for signed ones (LLVM marks small C-ABI
/// parameters `zeroext`/`signext` and relies on it).
#[diagnostic::on_unimplemented(
    message = "a static call cannot pass `{Self}` as an argument",
    label = "not passed in one integer register",
    note = "a static call site is an `asm!` call that loads the C ABI's integer argument registers \
            (rdi, rsi, rdx, rcx, r8, r9): integers up to 64 bits, `bool`, `char` and raw pointers",
    note = "`f32`/`f64` travel in xmm registers, slices and `&dyn` in two registers, structs by their \
            classification or in memory, and a reference makes the key's fn type generic over its \
            lifetime: pass a raw pointer to the value instead"
)]
pub unsafe trait RegArg: Copy {
    /// The 64-bit register image of `self`.
    fn to_reg(self) -> u64;
}

/// A type an `extern "C"` function returns in `rax`, for which the all-zero register is a valid value
/// (the value a disabled key's call yields).
///
/// # Safety
/// `from_reg(0)` must be a valid value, and `from_reg(r)` must be valid for every `r` whose low bits an
/// `extern "C"` function returning `Self` may leave in `rax`.
#[diagnostic::on_unimplemented(
    message = "a static call cannot return `{Self}`",
    label = "not returned in `rax` alone, or zero is not a valid value of it",
    note = "a static call site reads its result from `rax`, and a disabled key's call yields the all-zero \
            register: integers up to 64 bits, `bool`, `char`, raw pointers and `()`",
    note = "`f32`/`f64` come back in xmm0, larger values in two registers or memory; references and \
            `NonNull` have no zero value: return a raw pointer instead"
)]
pub unsafe trait RegRet: Sized {
    /// Reads the value from the `rax` image.
    ///
    /// # Safety
    /// `r` is zero or the `rax` left by an `extern "C"` function returning `Self`.
    unsafe fn from_reg(r: u64) -> Self;
}

macro_rules! unsigned {
    ($($t:ty),*) => {$(
        // SAFETY: zero extension of an unsigned value is the register image the ABI expects.
        unsafe impl RegArg for $t {
            #[inline(always)]
            fn to_reg(self) -> u64 {
                self as u64
            }
        }
        // SAFETY: every bit pattern of the low bits is a valid integer; truncation ignores the rest.
        unsafe impl RegRet for $t {
            #[inline(always)]
            unsafe fn from_reg(r: u64) -> $t {
                r as $t
            }
        }
    )*};
}

macro_rules! signed {
    ($($t:ty),*) => {$(
        // SAFETY: sign extension of a signed value is the register image the ABI expects.
        unsafe impl RegArg for $t {
            #[inline(always)]
            fn to_reg(self) -> u64 {
                self as i64 as u64
            }
        }
        // SAFETY: every bit pattern of the low bits is a valid integer; truncation ignores the rest.
        unsafe impl RegRet for $t {
            #[inline(always)]
            unsafe fn from_reg(r: u64) -> $t {
                r as $t
            }
        }
    )*};
}

unsigned!(u8, u16, u32, u64, usize);
signed!(i8, i16, i32, i64, isize);

// SAFETY: `bool` is zero-extended (0 or 1).
unsafe impl RegArg for bool {
    #[inline(always)]
    fn to_reg(self) -> u64 {
        self as u64
    }
}
// SAFETY: any low byte maps to a valid bool (nonzero is true); 0 is `false`.
unsafe impl RegRet for bool {
    #[inline(always)]
    unsafe fn from_reg(r: u64) -> bool {
        r as u8 != 0
    }
}

// SAFETY: a `char` is its scalar value, zero-extended.
unsafe impl RegArg for char {
    #[inline(always)]
    fn to_reg(self) -> u64 {
        self as u64
    }
}
// SAFETY: 0 is `'\0'`; otherwise the caller promises the low 32 bits came from a function returning `char`.
unsafe impl RegRet for char {
    #[inline(always)]
    unsafe fn from_reg(r: u64) -> char {
        // SAFETY: see the impl's contract: a valid scalar value or zero.
        unsafe { char::from_u32_unchecked(r as u32) }
    }
}

// SAFETY: a thin raw pointer is its address.
unsafe impl<T> RegArg for *const T {
    #[inline(always)]
    fn to_reg(self) -> u64 {
        self as usize as u64
    }
}
// SAFETY: every address is a valid raw pointer (null included).
unsafe impl<T> RegRet for *const T {
    #[inline(always)]
    unsafe fn from_reg(r: u64) -> *const T {
        r as usize as *const T
    }
}
// SAFETY: a thin raw pointer is its address.
unsafe impl<T> RegArg for *mut T {
    #[inline(always)]
    fn to_reg(self) -> u64 {
        self as usize as u64
    }
}
// SAFETY: every address is a valid raw pointer (null included).
unsafe impl<T> RegRet for *mut T {
    #[inline(always)]
    unsafe fn from_reg(r: u64) -> *mut T {
        r as usize as *mut T
    }
}

// SAFETY: nothing is read.
unsafe impl RegRet for () {
    #[inline(always)]
    unsafe fn from_reg(_: u64) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_extended_as_the_c_abi_expects() {
        assert_eq!((-1i8).to_reg(), u64::MAX);
        assert_eq!(0xffu8.to_reg(), 0xff);
        assert_eq!((-2i32).to_reg(), (-2i64) as u64);
        assert_eq!(u32::MAX.to_reg(), 0xffff_ffff);
        assert_eq!(true.to_reg(), 1);
        assert_eq!('é'.to_reg(), 0xe9);
    }

    #[test]
    fn zero_is_every_types_default_and_high_bits_are_ignored() {
        // SAFETY: 0 is valid for every RegRet type; the other images are what a C callee may leave.
        unsafe {
            assert_eq!(u32::from_reg(0xdead_0000_0000_0007), 7);
            assert_eq!(i16::from_reg(0xffff), -1);
            assert!(!bool::from_reg(0x100));
            assert!(bool::from_reg(1));
            assert_eq!(char::from_reg(0), '\0');
            assert!(<*const u8>::from_reg(0).is_null());
        }
    }
}
