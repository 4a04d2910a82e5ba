//! `migrate`: objects of power-of-two sizes move between threads and are
//! reallocated on the way; the threads are destroyed and recreated every
//! round (the pattern of mstress and rptest).
//!
//! Objects live in a shared table of atomic slots. Each round starts N new
//! threads; each thread takes objects out of random slots and frees them,
//! reallocates them to another power of two and puts them back, or
//! allocates new ones. Then the threads exit, leaving their objects to the
//! next round's threads, so blocks are freed and resized long after the
//! heap that allocated them was abandoned. Each object starts with its size
//! and a check word, verified on every take.

use super::{alloc, cookie, join, layout, realloc, timed, Outcome, Params, WorkResult, SEED};
use crate::rng::prelude::*;
use std::alloc::GlobalAlloc;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Arc;
use std::thread;

const ALIGN: usize = 16;
/// Sizes are 2^4 (16 B) to 2^16 (64 KiB), mostly small.
const MIN_SHIFT: u32 = 4;
const MAX_SHIFT: u32 = 16;

fn random_size(rng: &mut Rng) -> usize {
    // Each shift above the minimum is half as likely as the one below it.
    let extra = (rng.next_u64() | 1 << 63).trailing_zeros().min(MAX_SHIFT - MIN_SHIFT);
    1 << (MIN_SHIFT + extra)
}

/// Writes the header: the size and its check word.
///
/// # Safety
/// `p` must be a live block of at least 16 bytes.
unsafe fn stamp(p: *mut u8, size: usize) {
    // SAFETY: both words are inside the block (by the caller).
    unsafe {
        p.cast::<u64>().write(size as u64);
        p.cast::<u64>().add(1).write(cookie(size as u64 ^ p as u64));
    }
}

/// Reads and checks the header; returns the size.
///
/// # Safety
/// `p` must be a live object stamped by [`stamp`].
unsafe fn check(p: *mut u8) -> Result<usize, String> {
    // SAFETY: the header words are inside the block (by the caller).
    let (size, word) = unsafe { (p.cast::<u64>().read(), p.cast::<u64>().add(1).read()) };
    if !(16..=1 << MAX_SHIFT).contains(&size) || !size.is_power_of_two() || word != cookie(size ^ p as u64) {
        return Err(format!("migrate: object {p:p} has a corrupt header ({size:#x}, {word:#x})"));
    }
    Ok(size as usize)
}

fn worker<A: GlobalAlloc>(a: &A, slots: &[AtomicPtr<u8>], seed: u64, ops: usize) -> Result<u64, String> {
    let mut rng = Rng::new(seed);
    let mut sum = 0u64;
    for _ in 0..ops {
        let slot = &slots[rng.random_range(0..slots.len())];
        let p = slot.swap(std::ptr::null_mut(), Ordering::Acquire);
        let put = if p.is_null() {
            let size = random_size(&mut rng);
            let q = alloc(a, layout(size, ALIGN));
            // SAFETY: a fresh block of at least 16 bytes.
            unsafe { stamp(q, size) };
            q
        } else {
            // SAFETY: a live object, now owned by this thread.
            let size = unsafe { check(p)? };
            sum = sum.wrapping_add(size as u64);
            if rng.random_ratio(1, 2) {
                // SAFETY: allocated with this layout; freed once.
                unsafe { a.dealloc(p, layout(size, ALIGN)) };
                continue;
            }
            let new_size = random_size(&mut rng);
            // SAFETY: a live block of `size` bytes with this layout.
            let q = unsafe { realloc(a, p, layout(size, ALIGN), new_size) };
            // SAFETY: realloc keeps the first min(size, new_size) >= 16 bytes.
            if unsafe { q.cast::<u64>().read() } != size as u64 {
                return Err(format!("migrate: realloc from {size} to {new_size} B lost the header"));
            }
            // SAFETY: a live block of at least 16 bytes.
            unsafe { stamp(q, new_size) };
            q
        };
        let displaced = slot.swap(put, Ordering::AcqRel);
        if !displaced.is_null() {
            // Another thread filled the slot meanwhile; that object is ours now.
            // SAFETY: a live object, owned by this thread after the swap.
            let size = unsafe { check(displaced)? };
            // SAFETY: allocated with this layout; freed once.
            unsafe { a.dealloc(displaced, layout(size, ALIGN)) };
        }
    }
    Ok(sum)
}

pub fn run<A: GlobalAlloc + Sync>(a: &'static A, p: &Params) -> WorkResult {
    let rounds = p.pick(16, 100);
    let ops = p.pick(40_000, 60_000);
    let slots: Arc<Vec<AtomicPtr<u8>>> =
        Arc::new((0..p.pick(4096, 16_384)).map(|_| AtomicPtr::new(std::ptr::null_mut())).collect());

    let (seconds, sum) = timed(|| -> Result<u64, String> {
        let mut sum = 0u64;
        for round in 0..rounds {
            let mut handles = Vec::with_capacity(p.threads);
            for t in 0..p.threads {
                let slots = Arc::clone(&slots);
                let seed = Rng::derive(SEED ^ 7, (round * p.threads + t) as u64).next_u64();
                let h = thread::Builder::new()
                    .spawn(move || worker(a, &slots, seed, ops))
                    .map_err(|e| format!("migrate: cannot start a thread: {e}"))?;
                handles.push(h);
            }
            for h in handles {
                sum = sum.wrapping_add(join(h)??);
            }
        }
        Ok(sum)
    });
    let mut checksum = sum?;
    for slot in slots.iter() {
        let q = slot.swap(std::ptr::null_mut(), Ordering::Acquire);
        if !q.is_null() {
            // SAFETY: a live object left by the last round; all threads have exited.
            let size = unsafe { check(q)? };
            checksum = checksum.wrapping_add(size as u64);
            // SAFETY: allocated with this layout; freed once.
            unsafe { a.dealloc(q, layout(size, ALIGN)) };
        }
    }
    Ok(Outcome { seconds, ops: (rounds * p.threads * ops) as u64, checksum, memory: None })
}
