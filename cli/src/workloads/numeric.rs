//! `numeric`: many short-lived 16-64 B objects in the shape of big-number
//! arithmetic (the pattern of cfrac). Single thread.
//!
//! Numbers are arrays of 2-8 64-bit limbs, each in its own block. Every
//! step combines kept numbers and earlier temporaries with multiply, add,
//! subtract and reduce, each result a fresh block sized to its length; at
//! the end of the step two temporaries replace two kept numbers and the rest
//! are freed at once, newest first. The arithmetic is real (carries,
//! truncated products) and the checksum folds in every result, so the
//! blocks must hold what was written to them.

use super::{alloc, layout, mix, timed, Outcome, Params, WorkResult, SEED};
use crate::rng::prelude::*;
use std::alloc::GlobalAlloc;

const MIN_LIMBS: usize = 2;
const MAX_LIMBS: usize = 8;
/// Numbers kept from step to step.
const KEPT: usize = 64;
/// Temporaries made per step.
const TEMPS: usize = 16;

/// A number: `len` limbs in a block of `len * 8` bytes.
#[derive(Clone, Copy)]
struct Num {
    limbs: *mut u64,
    len: usize,
}

impl Num {
    fn new<A: GlobalAlloc>(a: &A, len: usize) -> Num {
        Num { limbs: alloc(a, layout(len * 8, 8)).cast(), len }
    }

    /// # Safety
    /// `self` must be live and not freed while the slice is used.
    unsafe fn get<'a>(self) -> &'a [u64] {
        // SAFETY: a live block of `len` initialised limbs (by the caller).
        unsafe { std::slice::from_raw_parts(self.limbs, self.len) }
    }

    /// # Safety
    /// `self` must be live, and no other reference to its limbs may exist.
    unsafe fn get_mut<'a>(self) -> &'a mut [u64] {
        // SAFETY: a live block of `len` limbs, not aliased (by the caller).
        unsafe { std::slice::from_raw_parts_mut(self.limbs, self.len) }
    }

    /// # Safety
    /// `self` must be a live number of `a`; it is dead afterwards.
    unsafe fn free<A: GlobalAlloc>(self, a: &A) {
        // SAFETY: allocated by `Num::new` with this layout.
        unsafe { a.dealloc(self.limbs.cast(), layout(self.len * 8, 8)) }
    }
}

/// Computes `op(x, y)` into the fresh, unaliased `out`.
fn combine(op: usize, x: &[u64], y: &[u64], out: &mut [u64]) {
    match op {
        // Product, truncated to the result's length.
        0 => {
            out.fill(0);
            for (i, &xi) in x.iter().enumerate() {
                let mut carry = 0u128;
                for (j, &yj) in y.iter().enumerate() {
                    let k = i + j;
                    if k >= out.len() {
                        break;
                    }
                    let t = u128::from(xi) * u128::from(yj) + u128::from(out[k]) + carry;
                    out[k] = t as u64;
                    carry = t >> 64;
                }
            }
        }
        // Sum, with carries.
        1 => {
            let mut carry = 0u64;
            for (k, o) in out.iter_mut().enumerate() {
                let (s1, c1) = x.get(k).copied().unwrap_or(0).overflowing_add(y.get(k).copied().unwrap_or(0));
                let (s2, c2) = s1.overflowing_add(carry);
                *o = s2;
                carry = u64::from(c1 | c2);
            }
        }
        // Difference, with borrows.
        2 => {
            let mut borrow = 0u64;
            for (k, o) in out.iter_mut().enumerate() {
                let (d1, b1) = x.get(k).copied().unwrap_or(0).overflowing_sub(y.get(k).copied().unwrap_or(0));
                let (d2, b2) = d1.overflowing_sub(borrow);
                *o = d2;
                borrow = u64::from(b1 | b2);
            }
        }
        // Reduction by a one-limb modulus, limb by limb.
        _ => {
            let m = y[0] | 1;
            for (k, o) in out.iter_mut().enumerate() {
                *o = (x[k] % m) ^ x[x.len() - 1 - k];
            }
        }
    }
}

pub fn run<A: GlobalAlloc + Sync>(a: &'static A, p: &Params) -> WorkResult {
    let steps = p.pick(60_000, 1_500_000);
    let mut rng = Rng::new(SEED);
    let mut kept: Vec<Num> = Vec::with_capacity(KEPT);
    for _ in 0..KEPT {
        let n = Num::new(a, rng.random_range(MIN_LIMBS..=MAX_LIMBS));
        // SAFETY: fresh and unaliased.
        for l in unsafe { n.get_mut() } {
            *l = rng.next_u64();
        }
        kept.push(n);
    }
    let mut temps: Vec<Num> = Vec::with_capacity(TEMPS);
    let mut checksum = 0u64;

    let (seconds, ()) = timed(|| {
        for _ in 0..steps {
            for _ in 0..TEMPS {
                let pool = kept.len() + temps.len();
                let pick = |i: usize| if i < kept.len() { kept[i] } else { temps[i - kept.len()] };
                let x = pick(rng.random_range(0..pool));
                let y = pick(rng.random_range(0..pool));
                let op = rng.random_range(0..4);
                let len = match op {
                    0 => (x.len + y.len).min(MAX_LIMBS),
                    1 => (x.len.max(y.len) + 1).min(MAX_LIMBS),
                    2 => x.len.max(y.len),
                    _ => rng.random_range(MIN_LIMBS..=x.len),
                };
                let r = Num::new(a, len);
                // SAFETY: `x` and `y` are live (kept or this step's
                // temporaries); `r` is fresh, so it aliases neither.
                unsafe { combine(op, x.get(), y.get(), r.get_mut()) };
                // SAFETY: `r` was just written.
                checksum = mix(checksum, unsafe { r.get() }[len - 1]);
                temps.push(r);
            }
            // Keep the last result and one other; free the rest, newest first.
            let keep_other = rng.random_range(0..TEMPS - 1);
            for (slot, t) in [(rng.random_range(0..KEPT), TEMPS - 1), (rng.random_range(0..KEPT), keep_other)] {
                // SAFETY: a live kept number, replaced below.
                unsafe { kept[slot].free(a) };
                kept[slot] = temps[t];
            }
            for (i, t) in temps.drain(..).enumerate().rev() {
                if i != TEMPS - 1 && i != keep_other {
                    // SAFETY: a live temporary not kept.
                    unsafe { t.free(a) };
                }
            }
        }
    });

    for n in kept {
        // SAFETY: live kept numbers, each freed once.
        checksum = mix(checksum, unsafe { n.get() }.iter().fold(0, |h, &l| mix(h, l)));
        // SAFETY: as above.
        unsafe { n.free(a) };
    }
    Ok(Outcome { seconds, ops: (steps * TEMPS) as u64, checksum, memory: None })
}
