//! Unrolling for the static call and static branch benches: `rep8!`, `rep64!`, `rep10!`, `rep100!` and
//! `rep1000!` repeat their body that many times (a repeated `static_call!` or `static_branch_*!` is one
//! more site each time), and `work`, the few dependent instructions each target or arm runs.

#![allow(unused_macros)]

macro_rules! rep8 {
    ($($t:tt)*) => { $($t)* $($t)* $($t)* $($t)* $($t)* $($t)* $($t)* $($t)* };
}
macro_rules! rep64 {
    ($($t:tt)*) => { rep8!(rep8!($($t)*);); };
}
macro_rules! rep10 {
    ($($t:tt)*) => { $($t)* $($t)* $($t)* $($t)* $($t)* $($t)* $($t)* $($t)* $($t)* $($t)* };
}
macro_rules! rep100 {
    ($($t:tt)*) => { rep10!(rep10!($($t)*);); };
}
macro_rules! rep1000 {
    ($($t:tt)*) => { rep10!(rep100!($($t)*);); };
}

/// A few dependent arithmetic instructions, distinct per `k` (a target's or an arm's body).
#[inline(always)]
pub fn work(x: u64, k: u64) -> u64 {
    (x ^ k).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17)
}
