//! `server`: the pattern of larson. N lineages of threads, each owning a
//! table of slots filled with blocks of 8-1000 B.
//!
//! A thread replaces randomly chosen slots with new blocks of random size,
//! then starts a new thread, hands it the table and exits. The successor
//! frees blocks that its predecessor (now gone) or the main thread
//! allocated, so most frees cross threads and land in abandoned heaps. The
//! main thread fills the tables before the clock starts and frees them
//! after it stops. Each block carries a tag, checked when it is freed.

use super::{alloc, cookie, join, layout, timed, Outcome, Params, SendPtr, WorkResult, SEED};
use crate::rng::prelude::*;
use std::alloc::GlobalAlloc;
use std::thread::{self, JoinHandle};

const MIN_SIZE: usize = 8;
const MAX_SIZE: usize = 1000;

/// One lineage's state, passed from thread to thread.
struct Table {
    blocks: Vec<(SendPtr, usize)>,
    rng: Rng,
    checksum: u64,
}

/// What a thread of a lineage returns: its successor, or the final table.
enum Step {
    Next(JoinHandle<Result<Step, String>>),
    Done(Table),
}

fn new_block<A: GlobalAlloc>(a: &A, rng: &mut Rng) -> (SendPtr, usize) {
    let size = rng.random_range(MIN_SIZE..=MAX_SIZE);
    let p = alloc(a, layout(size, 8));
    // SAFETY: a fresh block of at least 8 bytes.
    unsafe { p.cast::<u64>().write(cookie(size as u64)) };
    (SendPtr(p), size)
}

/// Checks a block's tag and frees it.
fn free_block<A: GlobalAlloc>(a: &A, (p, size): (SendPtr, usize)) -> Result<u64, String> {
    // SAFETY: a live block of `size >= 8` bytes whose first word was written by `new_block`.
    let tag = unsafe { p.0.cast::<u64>().read() };
    if tag != cookie(size as u64) {
        return Err(format!(
            "server: block {:p} of {size} B has tag {tag:#x}, expected {:#x}",
            p.0,
            cookie(size as u64)
        ));
    }
    // SAFETY: allocated by `new_block` with this layout; freed once.
    unsafe { a.dealloc(p.0, layout(size, 8)) };
    Ok(size as u64)
}

fn generation<A: GlobalAlloc + Sync>(
    a: &'static A,
    mut table: Table,
    left: usize,
    replacements: usize,
) -> Result<Step, String> {
    let slots = table.blocks.len();
    for _ in 0..replacements {
        let i = table.rng.random_range(0..slots);
        let fresh = new_block(a, &mut table.rng);
        let old = std::mem::replace(&mut table.blocks[i], fresh);
        table.checksum = table.checksum.wrapping_add(free_block(a, old)?);
    }
    if left == 0 {
        return Ok(Step::Done(table));
    }
    let next = thread::Builder::new()
        .spawn(move || generation(a, table, left - 1, replacements))
        .map_err(|e| format!("server: cannot start a thread: {e}"))?;
    Ok(Step::Next(next))
}

pub fn run<A: GlobalAlloc + Sync>(a: &'static A, p: &Params) -> WorkResult {
    let slots = p.pick(2000, 5000);
    let replacements = p.pick(16_000, 40_000);
    let generations = p.pick(40, 100);

    let mut tables = Vec::with_capacity(p.threads);
    for t in 0..p.threads {
        let mut rng = Rng::derive(SEED ^ 3, t as u64);
        let blocks = (0..slots).map(|_| new_block(a, &mut rng)).collect();
        tables.push(Table { blocks, rng, checksum: 0 });
    }

    let (seconds, finished) = timed(|| -> Result<Vec<Table>, String> {
        let mut heads = Vec::with_capacity(p.threads);
        for table in tables {
            let h = thread::Builder::new()
                .spawn(move || generation(a, table, generations - 1, replacements))
                .map_err(|e| format!("server: cannot start a thread: {e}"))?;
            heads.push(h);
        }
        let mut done = Vec::with_capacity(p.threads);
        for mut h in heads {
            loop {
                match join(h)?? {
                    Step::Next(next) => h = next,
                    Step::Done(table) => break done.push(table),
                }
            }
        }
        Ok(done)
    });

    let mut checksum = 0u64;
    for table in finished? {
        checksum = checksum.wrapping_add(table.checksum);
        for b in table.blocks {
            checksum = checksum.wrapping_add(free_block(a, b)?);
        }
    }
    Ok(Outcome { seconds, ops: (p.threads * generations * replacements) as u64, checksum, memory: None })
}
