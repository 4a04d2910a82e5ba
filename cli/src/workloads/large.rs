//! `large`: blocks of 5-25 MiB allocated, grown or shrunk, and freed in a
//! loop (the pattern of malloc-large). Single thread.
//!
//! A few slots hold large blocks. Each step either replaces a slot's block
//! with a new one of random size, or reallocates it to a new random size
//! (where the allocator can, with `mremap`). Every page of new memory is
//! written, as a program would, so the time includes the page faults an
//! allocator causes by handing memory back to the OS and mapping it again;
//! the first and last words of each block are checked before it goes.

use super::{alloc, cookie, layout, realloc, timed, Outcome, Params, WorkResult, SEED};
use crate::rng::prelude::*;
use std::alloc::GlobalAlloc;

const SLOTS: usize = 4;
const MIN_SIZE: usize = 5 << 20;
const MAX_SIZE: usize = 25 << 20;
const PAGE: usize = 4096;
const ALIGN: usize = 16;

/// Writes one word in every page of `p[from..size]`, and the tag words.
///
/// # Safety
/// `p` must be a live block of `size` bytes; `from <= size`.
unsafe fn touch(p: *mut u8, from: usize, size: usize) {
    let mut off = from.next_multiple_of(PAGE);
    while off < size {
        // SAFETY: inside the block.
        unsafe { p.add(off).write(1) };
        off += PAGE;
    }
    // SAFETY: the first and last words are inside the block (size >= 16).
    unsafe {
        p.cast::<u64>().write(cookie(size as u64));
        p.add(size - 8).cast::<u64>().write_unaligned(cookie(!(size as u64)));
    }
}

/// Checks the tag words of a block of `size` bytes.
///
/// # Safety
/// `p` must be a live block of `size` bytes tagged by [`touch`].
unsafe fn tags_ok(p: *mut u8, size: usize) -> bool {
    // SAFETY: inside the block (by the caller).
    unsafe {
        p.cast::<u64>().read() == cookie(size as u64)
            && p.add(size - 8).cast::<u64>().read_unaligned() == cookie(!(size as u64))
    }
}

pub fn run<A: GlobalAlloc + Sync>(a: &'static A, p: &Params) -> WorkResult {
    let steps = p.pick(20, 300);
    let mut rng = Rng::new(SEED ^ 8);
    let mut slots: [(*mut u8, usize); SLOTS] = [(std::ptr::null_mut(), 0); SLOTS];
    let mut checksum = 0u64;

    let (seconds, result) = timed(|| -> Result<(), String> {
        for _ in 0..steps {
            let (blk, size) = &mut slots[rng.random_range(0..SLOTS)];
            let new_size =
                rng.random_range(MIN_SIZE / PAGE..=MAX_SIZE / PAGE) * PAGE - rng.random_range(0..PAGE / 2) * 8;
            if blk.is_null() {
                *blk = alloc(a, layout(new_size, ALIGN));
                // SAFETY: a fresh block of `new_size` bytes.
                unsafe { touch(*blk, 0, new_size) };
                *size = new_size;
                continue;
            }
            // SAFETY: a live block of `size` bytes, tagged when it was made.
            if !unsafe { tags_ok(*blk, *size) } {
                return Err(format!("large: block {:p} of {} B lost its tags", *blk, *size));
            }
            checksum = checksum.wrapping_add(*size as u64);
            if rng.random_ratio(1, 3) {
                // SAFETY: a live block of `size` bytes with this layout.
                let q = unsafe { realloc(a, *blk, layout(*size, ALIGN), new_size) };
                // SAFETY: realloc keeps the first word; the block has `new_size` bytes.
                if unsafe { q.cast::<u64>().read() } != cookie(*size as u64) {
                    return Err(format!("large: realloc from {} to {new_size} B lost the first word", *size));
                }
                // SAFETY: a live block of `new_size` bytes; pages below the
                // old size were already written.
                unsafe { touch(q, (*size).min(new_size), new_size) };
                *blk = q;
            } else {
                // SAFETY: allocated with this layout; freed once.
                unsafe { a.dealloc(*blk, layout(*size, ALIGN)) };
                *blk = alloc(a, layout(new_size, ALIGN));
                // SAFETY: a fresh block of `new_size` bytes.
                unsafe { touch(*blk, 0, new_size) };
            }
            *size = new_size;
        }
        Ok(())
    });
    result?;
    for (blk, size) in slots {
        if !blk.is_null() {
            // SAFETY: live blocks of `size` bytes, freed once.
            unsafe {
                checksum = checksum.wrapping_add(u64::from(tags_ok(blk, size)));
                a.dealloc(blk, layout(size, ALIGN));
            }
        }
    }
    Ok(Outcome { seconds, ops: steps as u64, checksum, memory: None })
}
