//! `random-sizes`: N threads replacing blocks of sizes drawn from an
//! inverse-square distribution over 4 B-32 KiB, for a fixed time (the
//! pattern of glibc's thread benchmark). The score is operations per second.
//!
//! Each thread owns a table of slots. An operation picks a slot, frees the
//! block in it, allocates a new one and writes its first and last words.
//! Most blocks are tiny, with a long tail of medium sizes, so many size
//! classes are live at once.

use super::{alloc, join, layout, Outcome, Params, SendPtr, WorkResult, SEED};
use crate::rng::{self, prelude::*};
use std::alloc::GlobalAlloc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

const SLOTS: usize = 2048;
const MIN_SIZE: usize = 4;
const MAX_SIZE: usize = 32 << 10;
/// Operations between two looks at the clock.
const CHECK_EVERY: u64 = 256;

fn worker<A: GlobalAlloc>(a: &A, seed: u64, duration: Duration, start: &Barrier) -> (u64, f64, u64) {
    let mut rng = Rng::new(seed);
    let sizes = SizeTable::new(16, &mut rng, |r| rng::inverse_square(r, MIN_SIZE, MAX_SIZE));
    let mut slots: Vec<(SendPtr, usize)> = vec![(SendPtr(std::ptr::null_mut()), 0); SLOTS];
    let mut touched = 0u64;
    start.wait();
    let t0 = Instant::now();
    let mut ops = 0u64;
    loop {
        for _ in 0..CHECK_EVERY {
            let slot = &mut slots[rng.random_range(0..SLOTS)];
            if !slot.0 .0.is_null() {
                // SAFETY: a live block allocated below with this layout.
                unsafe { a.dealloc(slot.0 .0, layout(slot.1, 4)) };
            }
            let size = sizes.pick(&mut rng);
            let p = alloc(a, layout(size, 4));
            // SAFETY: a fresh block of `size >= 4` bytes.
            unsafe {
                p.cast::<u32>().write(size as u32);
                p.add(size - 4).cast::<u32>().write_unaligned(ops as u32);
                touched = touched.wrapping_add(u64::from(p.cast::<u32>().read()));
            }
            *slot = (SendPtr(p), size);
            ops += 1;
        }
        if t0.elapsed() >= duration {
            break;
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    for (p, size) in slots {
        if !p.0.is_null() {
            // SAFETY: a live block allocated above with this layout.
            unsafe { a.dealloc(p.0, layout(size, 4)) };
        }
    }
    (ops, elapsed, touched)
}

pub fn run<A: GlobalAlloc + Sync>(a: &'static A, p: &Params) -> WorkResult {
    let duration = Duration::from_millis(p.pick(120, 2000));
    let start = Arc::new(Barrier::new(p.threads));
    let mut handles = Vec::with_capacity(p.threads);
    for t in 0..p.threads {
        let start = Arc::clone(&start);
        let h = thread::Builder::new()
            .spawn(move || worker(a, Rng::derive(SEED ^ 5, t as u64).next_u64(), duration, &start))
            .map_err(|e| format!("random-sizes: cannot start a thread: {e}"))?;
        handles.push(h);
    }
    let (mut ops, mut seconds, mut checksum) = (0u64, 0f64, 0u64);
    for h in handles {
        let (o, s, c) = join(h)?;
        ops += o;
        seconds = seconds.max(s);
        checksum = checksum.wrapping_add(c);
    }
    Ok(Outcome { seconds, ops, checksum, memory: None })
}
