//! `free-then-idle`: a burst of small blocks is allocated and almost all of
//! it freed, then the program idles, and its RSS is sampled: does the
//! allocator give the freed memory back without being called again, or
//! only while it is being called? (The pattern of a long-lived server after
//! a burst of requests.)
//!
//! One thread allocates small blocks until their requested sizes add up to
//! 256 MiB (64 MiB at quick size). Block i has a size between 16 and 256 B
//! taken from a hash of i, so every allocator gets the same blocks, and a
//! tag at both ends. The thread then frees the blocks in the order they
//! were allocated, checking the tags, except one run of 1,024 consecutive
//! blocks in every 20 runs, which stays live: about 5% of the bytes, in
//! clusters over all the memory the burst used (the long-lived objects a
//! request leaves behind, allocated together). Memory a run of freed blocks
//! occupied can go back; memory shared with a kept run cannot, with any
//! allocator.
//! Only this allocate-and-free phase is timed.
//!
//! Then, for 2 s (1 s at quick size), the thread either sleeps (`sleep`)
//! or allocates, writes, checks and frees one 32 B block in a loop, the
//! fast path of every allocator (`fast`). Every 50 ms, starting at the end
//! of the free, it reads the process's RSS from `/proc/self/statm`.
//! Finally it checks and frees the blocks it kept.
//!
//! Memory figures: the live bytes are the requested bytes of the kept
//! blocks; the RSS after is the sample nearest 1 s after the free; the
//! final RSS is the last sample. The table of block addresses comes from
//! `System` (8 B per block); it is freed before the first sample, and the
//! kept blocks' addresses are in a table of their own.

use super::{alloc, cookie, layout, resident_bytes, timed, Memory, Outcome, Params, WorkResult, SEED};
use std::alloc::GlobalAlloc;
use std::thread;
use std::time::{Duration, Instant};

const MIN_SIZE: usize = 16;
const MAX_SIZE: usize = 256;
const ALIGN: usize = 8;
/// One run of `KEEP_RUN` consecutive blocks in `KEEP_EVERY` stays live
/// after the burst.
const KEEP_EVERY: usize = 20;
const KEEP_RUN: usize = 1024;
/// The time between two RSS samples.
const TICK: Duration = Duration::from_millis(50);
/// When the RSS after is read, counted from the end of the free.
const AFTER: Duration = Duration::from_secs(1);
/// The block the `fast` case allocates and frees while it idles.
const FAST_SIZE: usize = 32;
/// Fast-path pairs between two looks at the clock.
const CHECK_EVERY: usize = 256;

/// What the memory figures are, for the report.
pub const MEMORY: &str =
    "live = the blocks kept after the free (1 run of 1,024 in 20); RSS after = 1 s after the free; final RSS = the last sample";

const _: () = assert!(MIN_SIZE >= 16 && MAX_SIZE >= MIN_SIZE && AFTER.as_millis() % TICK.as_millis() == 0);

/// The size of block `i`.
fn size_of(i: usize) -> usize {
    MIN_SIZE + (cookie(i as u64 ^ SEED) % (MAX_SIZE - MIN_SIZE + 1) as u64) as usize
}

/// The number of blocks whose sizes first add up to `target` bytes.
fn block_count(target: usize) -> usize {
    let (mut count, mut total) = (0, 0);
    while total < target {
        total += size_of(count);
        count += 1;
    }
    count
}

fn new_block<A: GlobalAlloc>(a: &A, i: usize) -> *mut u8 {
    let size = size_of(i);
    let p = alloc(a, layout(size, ALIGN));
    // SAFETY: a fresh block of `size >= 16` bytes with alignment `ALIGN`.
    unsafe {
        p.cast::<u64>().write(cookie(i as u64));
        p.add(size - 8).cast::<u64>().write_unaligned(!cookie(i as u64));
    }
    p
}

/// Checks block `i`'s tags and frees it; returns what it adds to the checksum.
fn free_block<A: GlobalAlloc>(a: &A, p: *mut u8, i: usize) -> Result<u64, String> {
    let size = size_of(i);
    // SAFETY: block `i`, live, of `size >= 16` bytes, written by `new_block`.
    let (head, tail) = unsafe { (p.cast::<u64>().read(), p.add(size - 8).cast::<u64>().read_unaligned()) };
    if (head, tail) != (cookie(i as u64), !cookie(i as u64)) {
        return Err(format!("free-then-idle: block {i} ({size} B at {p:p}) has tags {head:#x} and {tail:#x}"));
    }
    // SAFETY: allocated by `new_block` with this layout; freed once.
    unsafe { a.dealloc(p, layout(size, ALIGN)) };
    Ok(head.wrapping_add(size as u64))
}

/// Allocates, checks and frees one small block at a time until `due` after
/// `start`; `pairs` counts them across calls.
fn spin<A: GlobalAlloc>(a: &A, start: Instant, due: Duration, pairs: &mut u64) -> Result<(), String> {
    let l = layout(FAST_SIZE, ALIGN);
    while start.elapsed() < due {
        for _ in 0..CHECK_EVERY {
            let v = cookie(*pairs);
            let p = alloc(a, l);
            // SAFETY: a fresh block of `FAST_SIZE` bytes with alignment
            // `ALIGN`, freed once with its layout.
            let got = unsafe {
                p.cast::<u64>().write(v);
                let got = p.cast::<u64>().read();
                a.dealloc(p, l);
                got
            };
            if got != v {
                return Err(format!("free-then-idle: a {FAST_SIZE} B block at {p:p} read back {got:#x}"));
            }
            *pairs += 1;
        }
    }
    Ok(())
}

pub fn run<A: GlobalAlloc + Sync>(a: &'static A, p: &Params) -> WorkResult {
    let count = block_count(p.pick(64 << 20, 256 << 20));
    let idle = Duration::from_secs(p.pick(1, 2));
    let fast = p.variant == "fast";
    let ticks = (idle.as_millis() / TICK.as_millis()) as u32;

    let mut blocks: Vec<*mut u8> = Vec::with_capacity(count);
    let mut kept: Vec<(usize, *mut u8)> = Vec::with_capacity(count.div_ceil(KEEP_EVERY) + KEEP_RUN);
    let mut samples: Vec<(Duration, u64)> = Vec::with_capacity(ticks as usize + 1);

    let (seconds, burst) = timed(|| -> Result<u64, String> {
        for i in 0..count {
            blocks.push(new_block(a, i));
        }
        let mut sum = 0u64;
        for (i, &b) in blocks.iter().enumerate() {
            if (i / KEEP_RUN) % KEEP_EVERY == 0 {
                kept.push((i, b));
            } else {
                sum = sum.wrapping_add(free_block(a, b, i)?);
            }
        }
        Ok(sum)
    });
    let start = Instant::now();
    let mut checksum = burst?;
    drop(blocks);

    let mut pairs = 0u64;
    for k in 0..=ticks {
        let due = TICK * k;
        if fast {
            spin(a, start, due, &mut pairs)?;
        } else if let Some(wait) = due.checked_sub(start.elapsed()) {
            thread::sleep(wait);
        }
        samples.push((start.elapsed(), resident_bytes()?));
    }
    let after = samples.iter().min_by_key(|(t, _)| t.abs_diff(AFTER)).map_or(0, |s| s.1);
    let last = samples.last().map_or(0, |s| s.1);

    let mut live = 0u64;
    for &(i, b) in &kept {
        live += size_of(i) as u64;
        checksum = checksum.wrapping_add(free_block(a, b, i)?);
    }
    let memory = Memory { live_bytes: live, rss_after_bytes: after, final_rss_bytes: Some(last) };
    Ok(Outcome { seconds, ops: count as u64, checksum, memory: Some(memory) })
}
