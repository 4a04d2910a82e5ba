//! `handoff`: arrays of live blocks inherited by new threads, generation
//! after generation (the pattern of larson, with fewer, longer-lived
//! threads than `server`).
//!
//! T threads (the `--threads` count) run at a time. Each owns an array of
//! slots holding live blocks; a step frees the block in a random slot and
//! puts a new block of random size there. After a fixed number of steps
//! every thread exits, and when all of them are gone, T new threads start
//! and each inherits one of the arrays. So after the first generation every
//! free is of a block allocated by a thread that has exited, and whatever
//! an exited thread's heap still holds must be reclaimed or reused.
//!
//! Sizes are uniform in log2: every octave (16-32 B, 32-64 B, ...) gets
//! the same share of the blocks. The `small` case draws 16-1024 B; the
//! `medium` case draws 16 B-64 KiB, where blocks above 32 KiB are 1 in 12
//! but about half of the bytes.
//!
//! The main thread fills the arrays before the clock starts and frees what
//! is left after it stops. Each block carries a tag at its start and at its
//! end, checked when it is freed.

use super::{alloc, cookie, join, layout, timed, Outcome, Params, SendPtr, WorkResult, SEED};
use crate::rng::prelude::*;
use std::alloc::GlobalAlloc;
use std::sync::Arc;
use std::thread;

const MIN_SIZE: usize = 16;
const ALIGN: usize = 8;

/// The largest size of a case.
fn max_size(variant: &str) -> usize {
    if variant == "medium" {
        64 << 10
    } else {
        1 << 10
    }
}

/// Uniform in log2 over `[MIN_SIZE, hi]`, at `u` in `[0, 1)`.
fn log_uniform(u: f64, hi: usize) -> usize {
    let span = (hi as f64 / MIN_SIZE as f64).log2();
    ((MIN_SIZE as f64 * (u * span).exp2()) as usize).clamp(MIN_SIZE, hi)
}

/// A live block: where, its size, and its serial number in its array.
#[derive(Clone, Copy)]
struct Block {
    p: SendPtr,
    size: usize,
    serial: u64,
}

/// One array of slots, passed from generation to generation.
struct Slots {
    blocks: Vec<Block>,
    rng: Rng,
    checksum: u64,
    /// Blocks allocated so far; the next block's serial.
    made: u64,
}

fn tags(serial: u64, size: usize) -> (u64, u64) {
    (cookie(serial ^ ((size as u64) << 40)), cookie(!serial))
}

fn new_block<A: GlobalAlloc>(a: &A, serial: u64, size: usize) -> Block {
    let p = alloc(a, layout(size, ALIGN));
    let (head, tail) = tags(serial, size);
    // SAFETY: a fresh block of `size >= 16` bytes.
    unsafe {
        p.cast::<u64>().write(head);
        p.add(size - 8).cast::<u64>().write_unaligned(tail);
    }
    Block { p: SendPtr(p), size, serial }
}

/// Checks a block's tags and frees it; returns what it adds to the checksum.
fn free_block<A: GlobalAlloc>(a: &A, b: Block) -> Result<u64, String> {
    let p = b.p.0;
    // SAFETY: a live block of `b.size >= 16` bytes written by `new_block`.
    let got = unsafe { (p.cast::<u64>().read(), p.add(b.size - 8).cast::<u64>().read_unaligned()) };
    if got != tags(b.serial, b.size) {
        return Err(format!("handoff: block {p:p} of {} B has tags {:#x} and {:#x}", b.size, got.0, got.1));
    }
    // SAFETY: allocated by `new_block` with this layout; freed once.
    unsafe { a.dealloc(p, layout(b.size, ALIGN)) };
    Ok(got.0.wrapping_add(b.size as u64))
}

impl Slots {
    fn fresh<A: GlobalAlloc>(&mut self, a: &A, sizes: &SizeTable) -> Block {
        let size = sizes.pick(&mut self.rng);
        self.made += 1;
        new_block(a, self.made, size)
    }
}

/// One thread's life: `steps` replacements in its inherited array.
fn generation<A: GlobalAlloc>(a: &A, mut s: Slots, steps: usize, sizes: &SizeTable) -> Result<Slots, String> {
    let n = s.blocks.len();
    for _ in 0..steps {
        let i = s.rng.random_range(0..n);
        let fresh = s.fresh(a, sizes);
        let old = std::mem::replace(&mut s.blocks[i], fresh);
        s.checksum = s.checksum.wrapping_add(free_block(a, old)?);
    }
    Ok(s)
}

pub fn run<A: GlobalAlloc + Sync>(a: &'static A, p: &Params) -> WorkResult {
    let threads = p.threads.max(1);
    let slots = p.pick(4_000, 20_000);
    let steps = p.pick(40_000, 400_000);
    let generations = p.pick(3, 4);
    let hi = max_size(p.variant);
    let sizes =
        Arc::new(SizeTable::new(16, &mut Rng::derive(SEED ^ 15, hi as u64), |r| log_uniform(r.random::<f64>(), hi)));

    let mut arrays = Vec::with_capacity(threads);
    for t in 0..threads {
        let mut s =
            Slots { blocks: Vec::with_capacity(slots), rng: Rng::derive(SEED ^ 16, t as u64), checksum: 0, made: 0 };
        for _ in 0..slots {
            let b = s.fresh(a, &sizes);
            s.blocks.push(b);
        }
        arrays.push(s);
    }

    let (seconds, finished) = timed(|| -> Result<Vec<Slots>, String> {
        let mut arrays = arrays;
        for _ in 0..generations {
            let mut handles = Vec::with_capacity(threads);
            for s in arrays.drain(..) {
                let sizes = Arc::clone(&sizes);
                let h = thread::Builder::new()
                    .spawn(move || generation(a, s, steps, &sizes))
                    .map_err(|e| format!("handoff: cannot start a thread: {e}"))?;
                handles.push(h);
            }
            for h in handles {
                arrays.push(join(h)??);
            }
        }
        Ok(arrays)
    });

    let mut checksum = 0u64;
    for s in finished? {
        checksum = checksum.wrapping_add(s.checksum);
        for b in s.blocks {
            checksum = checksum.wrapping_add(free_block(a, b)?);
        }
    }
    Ok(Outcome { seconds, ops: (threads * generations * steps) as u64, checksum, memory: None })
}
