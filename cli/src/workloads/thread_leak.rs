//! `thread-leak`: threads exit while holding live blocks, over and over
//! (the pattern of mleak). The figure to watch is peak RSS: nothing may be
//! lost when a thread's heap is abandoned.
//!
//! Each round starts N threads. Thread i first frees the blocks that thread
//! i of the previous round left behind (allocated by a thread that no longer
//! exists), then allocates a batch of 16 B-1 KiB blocks with a few of
//! 4-16 KiB, frees every other one, and exits holding the rest. The live
//! set stays the same size from round to round, so a flat peak RSS means
//! abandoned memory is reused.

use super::{alloc, cookie, join, layout, timed, Outcome, Params, SendPtr, WorkResult, SEED};
use crate::rng::prelude::*;
use std::alloc::GlobalAlloc;
use std::thread;

type Blocks = Vec<(SendPtr, usize)>;

fn free_all<A: GlobalAlloc>(a: &A, blocks: Blocks) -> Result<u64, String> {
    let mut sum = 0u64;
    for (p, size) in blocks {
        // SAFETY: a live block of `size >= 16` bytes tagged at allocation.
        let tag = unsafe { p.0.cast::<u64>().read() };
        if tag != cookie(size as u64) {
            return Err(format!("thread-leak: block {:p} of {size} B has tag {tag:#x}", p.0));
        }
        sum = sum.wrapping_add(size as u64);
        // SAFETY: allocated with this layout; freed once.
        unsafe { a.dealloc(p.0, layout(size, 8)) };
    }
    Ok(sum)
}

fn worker<A: GlobalAlloc>(a: &A, inherited: Blocks, seed: u64, batch: usize) -> Result<(Blocks, u64), String> {
    let sum = free_all(a, inherited)?;
    let mut rng = Rng::new(seed);
    let mut kept = Vec::with_capacity(batch / 2 + 1);
    for i in 0..batch {
        let size =
            if rng.random_ratio(1, 64) { rng.random_range(4 << 10..=16 << 10) } else { rng.random_range(16..=1024) };
        let p = alloc(a, layout(size, 8));
        // SAFETY: a fresh block of at least 16 bytes.
        unsafe { p.cast::<u64>().write(cookie(size as u64)) };
        if i % 2 == 0 {
            kept.push((SendPtr(p), size));
        } else {
            // SAFETY: allocated just above with this layout.
            unsafe { a.dealloc(p, layout(size, 8)) };
        }
    }
    Ok((kept, sum))
}

pub fn run<A: GlobalAlloc + Sync>(a: &'static A, p: &Params) -> WorkResult {
    let rounds = p.pick(100, 400);
    let batch = p.pick(4000, 8000);
    let mut left: Vec<Blocks> = (0..p.threads).map(|_| Vec::new()).collect();

    let (seconds, sum) = timed(|| -> Result<u64, String> {
        let mut sum = 0u64;
        for round in 0..rounds {
            let mut handles = Vec::with_capacity(p.threads);
            for (t, inherited) in left.drain(..).enumerate() {
                let seed = Rng::derive(SEED ^ 9, (round * p.threads + t) as u64).next_u64();
                let h = thread::Builder::new()
                    .spawn(move || worker(a, inherited, seed, batch))
                    .map_err(|e| format!("thread-leak: cannot start a thread: {e}"))?;
                handles.push(h);
            }
            for h in handles {
                let (kept, s) = join(h)??;
                sum = sum.wrapping_add(s);
                left.push(kept);
            }
        }
        Ok(sum)
    });
    let mut checksum = sum?;
    for blocks in left {
        checksum = checksum.wrapping_add(free_all(a, blocks)?);
    }
    Ok(Outcome { seconds, ops: (rounds * p.threads * batch) as u64, checksum, memory: None })
}
