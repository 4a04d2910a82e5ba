//! `many-medium`: one thread holds a great many medium blocks at once,
//! then frees them (the pattern of Python programs that keep many big lists
//! or dicts alive).
//!
//! The thread allocates 100,000 blocks of 40,000 B (20,000 at quick size),
//! writing the first and the last byte of each, so two pages of every block
//! are touched. It then frees them all in a random order, checking both
//! bytes of each, and finally checks that a 100 B allocation still
//! succeeds. An allocator that maps each such block on its own needs a
//! mapping per live block, which is what this workload shows: the count of
//! mappings and the metadata kept per medium block.

use super::{alloc, layout, timed, Outcome, Params, WorkResult, SEED};
use crate::rng::prelude::*;
use std::alloc::GlobalAlloc;

const SIZE: usize = 40_000;
const ALIGN: usize = 8;
const PROBE: usize = 100;

fn first_byte(i: usize) -> u8 {
    (i as u8) ^ 0xA5
}

fn last_byte(i: usize) -> u8 {
    ((i >> 8) as u8) ^ 0x3C
}

pub fn run<A: GlobalAlloc + Sync>(a: &'static A, p: &Params) -> WorkResult {
    let count = p.pick(20_000, 100_000);
    let mut blocks: Vec<*mut u8> = Vec::with_capacity(count);
    // The order of the frees: a seeded shuffle, drawn before the clock starts.
    let mut order: Vec<usize> = (0..count).collect();
    let mut rng = Rng::new(SEED ^ 17);
    for i in (1..count).rev() {
        order.swap(i, rng.random_range(0..i + 1));
    }

    let (seconds, result) = timed(|| -> Result<u64, String> {
        for i in 0..count {
            let b = alloc(a, layout(SIZE, ALIGN));
            // SAFETY: a fresh block of `SIZE` bytes.
            unsafe {
                b.write(first_byte(i));
                b.add(SIZE - 1).write(last_byte(i));
            }
            blocks.push(b);
        }
        let mut sum = 0u64;
        for &i in &order {
            let b = blocks[i];
            // SAFETY: block `i` is live (each index appears once in `order`)
            // and has `SIZE` bytes.
            let (first, last) = unsafe { (b.read(), b.add(SIZE - 1).read()) };
            if (first, last) != (first_byte(i), last_byte(i)) {
                return Err(format!("many-medium: block {i} at {b:p} holds {first:#x} and {last:#x}"));
            }
            sum = sum.wrapping_mul(31).wrapping_add(u64::from(first) << 8 | u64::from(last));
            // SAFETY: allocated above with this layout; freed once.
            unsafe { a.dealloc(b, layout(SIZE, ALIGN)) };
        }
        // SAFETY: the layout has a non-zero size.
        let probe = unsafe { a.alloc(layout(PROBE, ALIGN)) };
        if probe.is_null() {
            return Err(format!("many-medium: a {PROBE} B allocation failed after the frees"));
        }
        // SAFETY: a fresh block of `PROBE` bytes, freed once with its layout.
        unsafe {
            probe.write_bytes(0x5A, PROBE);
            sum = sum.wrapping_add(u64::from(probe.add(PROBE - 1).read()));
            a.dealloc(probe, layout(PROBE, ALIGN));
        }
        Ok(sum)
    });
    Ok(Outcome { seconds, ops: count as u64, checksum: result?, memory: None })
}
