//! `pareto`: random allocation and freeing with sizes from a Pareto
//! distribution truncated at 1 KiB (the pattern of alloc-test), once on one
//! thread (`pareto/1t`) and once on N threads (`pareto/nt`).
//!
//! Every thread does the same fixed amount of work on its own table of
//! slots: pick a slot; free the block there, or allocate one of a fresh size
//! and fill its first cache line. The N-thread time against the 1-thread
//! time shows how the allocator scales; ideal scaling keeps it equal.

use super::{alloc, join, layout, timed, Outcome, Params, SendPtr, WorkResult, SEED};
use crate::rng::{self, prelude::*};
use std::alloc::GlobalAlloc;
use std::sync::{Arc, Barrier};
use std::thread;

const SLOTS: usize = 8192;
const MIN_SIZE: usize = 16;
const MAX_SIZE: usize = 1024;
const ALPHA: f64 = 1.0;

fn worker<A: GlobalAlloc>(a: &A, seed: u64, ops: usize, start: &Barrier) -> u64 {
    let mut rng = Rng::new(seed);
    let sizes = SizeTable::new(16, &mut rng, |r| rng::pareto(r, MIN_SIZE, ALPHA, MAX_SIZE));
    let mut slots: Vec<(SendPtr, usize)> = vec![(SendPtr(std::ptr::null_mut()), 0); SLOTS];
    let mut sum = 0u64;
    start.wait();
    for _ in 0..ops {
        let slot = &mut slots[rng.random_range(0..SLOTS)];
        if slot.0 .0.is_null() {
            let size = sizes.pick(&mut rng);
            let p = alloc(a, layout(size, 8));
            // SAFETY: a fresh block of at least 16 bytes; the fill stays inside it.
            unsafe { p.write_bytes(size as u8, size.min(64)) };
            *slot = (SendPtr(p), size);
        } else {
            let (p, size) = *slot;
            // SAFETY: a live block whose first byte was written at allocation.
            sum = sum.wrapping_add(u64::from(unsafe { p.0.read() }) + size as u64);
            // SAFETY: allocated above with this layout; freed once.
            unsafe { a.dealloc(p.0, layout(size, 8)) };
            slot.0 = SendPtr(std::ptr::null_mut());
        }
    }
    for (p, size) in slots {
        if !p.0.is_null() {
            // SAFETY: a live block allocated above with this layout.
            unsafe { a.dealloc(p.0, layout(size, 8)) };
        }
    }
    sum
}

pub fn run<A: GlobalAlloc + Sync>(a: &'static A, p: &Params) -> WorkResult {
    let threads = if p.variant == "1t" { 1 } else { p.threads };
    let ops = p.pick(4_000_000, 50_000_000);
    // The threads set up their tables, then all start at once with the clock.
    let start = Arc::new(Barrier::new(threads + 1));
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        let start = Arc::clone(&start);
        let seed = Rng::derive(SEED ^ 6, t as u64).next_u64();
        let h = thread::Builder::new()
            .spawn(move || worker(a, seed, ops, &start))
            .map_err(|e| format!("pareto: cannot start a thread: {e}"))?;
        handles.push(h);
    }
    let (seconds, sums) = timed(|| {
        start.wait();
        handles.into_iter().map(join).collect::<Result<Vec<u64>, String>>()
    });
    let checksum = sums?.iter().fold(0u64, |h, &s| h.wrapping_add(s));
    Ok(Outcome { seconds, ops: (threads * ops) as u64, checksum, memory: None })
}
