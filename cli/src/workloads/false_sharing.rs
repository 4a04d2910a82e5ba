//! `false-sharing`: threads write hard to small blocks; the time shows
//! whether the allocator put different threads' blocks on one cache line
//! (the patterns of cache-scratch and cache-thrash).
//!
//! * `passive`: the main thread allocates N adjacent 8 B blocks and hands
//!   one to each thread. Each thread writes to its block, frees it, and then
//!   repeatedly allocates an 8 B block, writes to it hard and frees it. An
//!   allocator that reuses the handed-over block for that thread's own
//!   allocations keeps the threads on one cache line.
//! * `active`: no hand-over; each thread repeatedly allocates, writes hard
//!   and frees its own 8 B blocks. An allocator that serves several threads
//!   from one pool of blocks puts their blocks side by side.

use super::{alloc, join, layout, timed, Outcome, Params, SendPtr, WorkResult};
use std::alloc::GlobalAlloc;
use std::sync::{Arc, Barrier};
use std::thread;

const BLOCK: usize = 8;

/// Increments the word at `p` `writes` times through volatile accesses,
/// starting from zero; returns the final value.
///
/// # Safety
/// `p` must be a live block of at least 8 bytes owned by this thread.
#[inline(never)]
unsafe fn hammer(p: *mut u8, writes: u64) -> u64 {
    let w = p.cast::<u64>();
    // SAFETY: an aligned word inside the block (by the caller).
    unsafe {
        w.write_volatile(0);
        for _ in 0..writes {
            w.write_volatile(w.read_volatile() + 1);
        }
        w.read_volatile()
    }
}

fn worker<A: GlobalAlloc>(a: &A, given: Option<SendPtr>, rounds: u64, writes: u64, start: &Barrier) -> u64 {
    let l = layout(BLOCK, 8);
    start.wait();
    let mut sum = 0;
    if let Some(p) = given {
        // SAFETY: a live block handed to this thread alone.
        sum += unsafe { hammer(p.0, writes) };
        // SAFETY: allocated by the main thread with this layout; freed once.
        unsafe { a.dealloc(p.0, l) };
    }
    for _ in 0..rounds {
        let p = alloc(a, l);
        // SAFETY: a fresh 8 B block.
        sum += unsafe { hammer(p, writes) };
        // SAFETY: allocated above; freed once.
        unsafe { a.dealloc(p, l) };
    }
    sum
}

pub fn run<A: GlobalAlloc + Sync>(a: &'static A, p: &Params) -> WorkResult {
    let passive = p.variant == "passive";
    let rounds = p.pick(50_000u64, 400_000);
    let writes = p.pick(1_000u64, 5_000);
    let l = layout(BLOCK, 8);
    // Allocated back to back by one thread, so adjacent in most allocators.
    let given: Vec<Option<SendPtr>> =
        (0..p.threads).map(|_| if passive { Some(SendPtr(alloc(a, l))) } else { None }).collect();

    let start = Arc::new(Barrier::new(p.threads + 1));
    let mut handles = Vec::with_capacity(p.threads);
    for g in given {
        let start = Arc::clone(&start);
        let h = thread::Builder::new()
            .spawn(move || worker(a, g, rounds, writes, &start))
            .map_err(|e| format!("false-sharing: cannot start a thread: {e}"))?;
        handles.push(h);
    }
    let (seconds, sums) = timed(|| {
        start.wait();
        handles.into_iter().map(join).collect::<Result<Vec<u64>, String>>()
    });
    let checksum = sums?.iter().sum();
    Ok(Outcome { seconds, ops: p.threads as u64 * rounds, checksum, memory: None })
}
