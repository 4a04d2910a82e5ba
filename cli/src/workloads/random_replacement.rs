//! `random-replacement`: one thread keeps a large table of slots about half
//! full, freeing and filling slots in random order long after its live set
//! has stopped growing (the pattern of alloc-test, and of any long-running
//! program). What it shows is fragmentation: how much memory the allocator
//! holds for a live set of a fixed size once blocks are freed all over its
//! pools.
//!
//! The table has 131,072 slots (16,384 at quick size). Before the clock
//! starts, each slot is filled with probability 1/2. Each step then picks a
//! slot at random: a live slot's block is freed, an empty slot gets a new
//! block. So a step frees a random live block with probability live/slots
//! and fills a random empty slot otherwise, which pulls the live count back
//! towards half: it stays within a few hundred of it. The clock runs for
//! 4,000,000 steps (200,000 at quick size).
//!
//! Sizes: `1-16` uniform over 1-16 B, `1-1024` uniform over 1-1024 B,
//! `inv-square` inverse-square over 8 B-32 KiB (mean about 67 B, with a
//! long tail of medium blocks).
//!
//! Each block carries a tag made from its serial number: its first and last
//! words, or, below 16 B, its first word, or below 8 B each of its bytes.
//! The tag is checked when the block is freed, and folded into the checksum.
//!
//! Memory figures: the live bytes are the most requested bytes live after
//! any step (the filled table before the clock included); the RSS after is
//! read from `/proc/self/statm` when the clock stops, with the live blocks
//! still allocated. Then the remaining blocks are checked and freed.

use super::{alloc, cookie, layout, resident_bytes, timed, Memory, Outcome, Params, WorkResult, SEED};
use crate::rng::{self, prelude::*};
use std::alloc::GlobalAlloc;

const ALIGN: usize = 8;

/// What the memory figures are, for the report.
pub const MEMORY: &str =
    "live = the most requested bytes live after any step; RSS after = when the loop ends, blocks still live";

/// The sizes of a case, drawn ahead into a table.
fn sizes(variant: &str, rng: &mut Rng) -> SizeTable {
    match variant {
        "1-16" => SizeTable::new(16, rng, |r| r.random_range(1..=16)),
        "1-1024" => SizeTable::new(16, rng, |r| r.random_range(1..=1024)),
        _ => SizeTable::new(16, rng, |r| rng::inverse_square(r, 8, 32 << 10)),
    }
}

/// One slot of the table: empty when `p` is null.
#[derive(Clone, Copy)]
struct Slot {
    p: *mut u8,
    size: u32,
    serial: u32,
}

const EMPTY: Slot = Slot { p: std::ptr::null_mut(), size: 0, serial: 0 };

fn tag(serial: u32, size: usize) -> u64 {
    cookie((u64::from(serial) << 24) ^ size as u64)
}

/// Writes the tag of a block.
///
/// # Safety
/// `p` must be a live block of `size >= 1` bytes, aligned to 8.
unsafe fn put(p: *mut u8, size: usize, t: u64) {
    // SAFETY: every write lies within the block's `size` bytes; the first
    // word is aligned to `ALIGN`.
    unsafe {
        if size >= 8 {
            p.cast::<u64>().write(t);
            if size >= 16 {
                p.add(size - 8).cast::<u64>().write_unaligned(!t);
            }
        } else {
            for (i, b) in t.to_le_bytes().into_iter().take(size).enumerate() {
                p.add(i).write(b);
            }
        }
    }
}

/// Whether a block still holds the tag `put` wrote.
///
/// # Safety
/// As for [`put`].
unsafe fn holds(p: *mut u8, size: usize, t: u64) -> bool {
    // SAFETY: every read lies within the block's `size` bytes; the first
    // word is aligned to `ALIGN`.
    unsafe {
        if size >= 8 {
            p.cast::<u64>().read() == t && (size < 16 || p.add(size - 8).cast::<u64>().read_unaligned() == !t)
        } else {
            t.to_le_bytes().into_iter().take(size).enumerate().all(|(i, b)| p.add(i).read() == b)
        }
    }
}

fn new_block<A: GlobalAlloc>(a: &A, serial: u32, size: usize) -> Slot {
    let p = alloc(a, layout(size, ALIGN));
    // SAFETY: a fresh block of `size >= 1` bytes with alignment `ALIGN`.
    unsafe { put(p, size, tag(serial, size)) };
    Slot { p, size: size as u32, serial }
}

/// Checks a block's tag and frees it; returns what it adds to the checksum.
fn free_block<A: GlobalAlloc>(a: &A, s: Slot) -> Result<u64, String> {
    let size = s.size as usize;
    let t = tag(s.serial, size);
    // SAFETY: a live block of `size` bytes written by `new_block`.
    if !unsafe { holds(s.p, size, t) } {
        return Err(format!("random-replacement: block {} ({size} B at {:p}) lost its tag", s.serial, s.p));
    }
    // SAFETY: allocated by `new_block` with this layout; freed once.
    unsafe { a.dealloc(s.p, layout(size, ALIGN)) };
    Ok(t.wrapping_add(size as u64))
}

pub fn run<A: GlobalAlloc + Sync>(a: &'static A, p: &Params) -> WorkResult {
    let n = p.pick(16_384, 131_072);
    let steps = p.pick(200_000u32, 4_000_000);
    let mut rng = Rng::new(SEED ^ 18);
    let sizes = sizes(p.variant, &mut rng);

    let mut slots = vec![EMPTY; n];
    let (mut made, mut live) = (0u32, 0u64);
    for s in slots.iter_mut() {
        if rng.random_ratio(1, 2) {
            made += 1;
            *s = new_block(a, made, sizes.pick(&mut rng));
            live += u64::from(s.size);
        }
    }

    let (seconds, looped) = timed(|| -> Result<(u64, u64), String> {
        let (mut sum, mut peak) = (0u64, live);
        for _ in 0..steps {
            let s = &mut slots[rng.random_range(0..n)];
            if s.p.is_null() {
                made += 1;
                *s = new_block(a, made, sizes.pick(&mut rng));
                live += u64::from(s.size);
                peak = peak.max(live);
            } else {
                sum = sum.wrapping_add(free_block(a, *s)?);
                live -= u64::from(s.size);
                *s = EMPTY;
            }
        }
        Ok((sum, peak))
    });
    let (mut checksum, peak) = looped?;
    let rss = resident_bytes()?;

    for s in slots.into_iter().filter(|s| !s.p.is_null()) {
        checksum = checksum.wrapping_add(free_block(a, s)?);
    }
    let memory = Memory { live_bytes: peak, rss_after_bytes: rss, final_rss_bytes: None };
    Ok(Outcome { seconds, ops: u64::from(steps), checksum, memory: Some(memory) })
}
