//! `producer-consumer`: half the threads only allocate, the other half only
//! free (the pattern of xmalloc-test).
//!
//! With N threads there are max(1, N/2) producer-consumer pairs. A producer
//! allocates 64 B blocks, writes a sequence number and its cookie into each,
//! and pushes it through a bounded single-producer single-consumer ring; its
//! consumer checks the block and frees it. Every free is a remote free, in a
//! steady stream. The ring is preallocated and lock-free, so its cost is
//! small and the same for every allocator.

use super::{alloc, cookie, join, layout, timed, Outcome, Params, WorkResult};
use std::alloc::GlobalAlloc;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

const BLOCK: usize = 64;
const RING: usize = 1024;

/// A value on its own cache lines.
#[repr(align(128))]
struct Padded<T>(T);

/// A bounded single-producer single-consumer queue of block pointers.
///
/// Invariant: `head <= tail <= head + RING`; slots `head..tail` (mod RING)
/// hold pushed pointers not yet popped. Only the producer stores `tail` and
/// only the consumer stores `head`.
struct Ring {
    slots: Box<[AtomicPtr<u8>]>,
    head: Padded<AtomicUsize>,
    tail: Padded<AtomicUsize>,
}

impl Ring {
    fn new() -> Self {
        Ring {
            slots: (0..RING).map(|_| AtomicPtr::new(std::ptr::null_mut())).collect(),
            head: Padded(AtomicUsize::new(0)),
            tail: Padded(AtomicUsize::new(0)),
        }
    }
}

/// Waits politely: spin briefly, then yield (more threads than CPUs).
fn backoff(spins: &mut u32) {
    *spins += 1;
    if *spins < 64 {
        std::hint::spin_loop();
    } else {
        thread::yield_now();
    }
}

fn produce<A: GlobalAlloc>(a: &A, ring: &Ring, first: u64, count: u64) {
    let l = layout(BLOCK, 8);
    let mut tail = 0usize;
    let mut head_seen = 0usize;
    for seq in first..first + count {
        let p = alloc(a, l);
        // SAFETY: a fresh 64 B block; both words are inside it.
        unsafe {
            p.cast::<u64>().write(seq);
            p.add(BLOCK - 8).cast::<u64>().write(cookie(seq));
        }
        let mut spins = 0;
        while tail - head_seen == RING {
            head_seen = ring.head.0.load(Ordering::Acquire);
            if tail - head_seen == RING {
                backoff(&mut spins);
            }
        }
        ring.slots[tail % RING].store(p, Ordering::Relaxed);
        tail += 1;
        ring.tail.0.store(tail, Ordering::Release);
    }
}

fn consume<A: GlobalAlloc>(a: &A, ring: &Ring, count: u64) -> Result<u64, String> {
    let l = layout(BLOCK, 8);
    let mut head = 0usize;
    let mut tail_seen = 0usize;
    let mut sum = 0u64;
    for _ in 0..count {
        let mut spins = 0;
        while head == tail_seen {
            tail_seen = ring.tail.0.load(Ordering::Acquire);
            if head == tail_seen {
                backoff(&mut spins);
            }
        }
        let p = ring.slots[head % RING].load(Ordering::Relaxed);
        head += 1;
        ring.head.0.store(head, Ordering::Release);
        // SAFETY: the producer wrote both words before publishing the block
        // (release on `tail`, acquired above); the block is ours now.
        let (seq, check) = unsafe { (p.cast::<u64>().read(), p.add(BLOCK - 8).cast::<u64>().read()) };
        if check != cookie(seq) {
            return Err(format!("producer-consumer: block {p:p} holds {seq}/{check:#x}, cookie mismatch"));
        }
        sum = sum.wrapping_add(seq);
        // SAFETY: allocated by the producer with this layout, freed once.
        unsafe { a.dealloc(p, l) };
    }
    Ok(sum)
}

pub fn run<A: GlobalAlloc + Sync>(a: &'static A, p: &Params) -> WorkResult {
    let pairs = (p.threads / 2).max(1);
    let per_pair = p.pick(2_000_000u64, 40_000_000) / pairs as u64;
    let rings: Vec<Arc<Ring>> = (0..pairs).map(|_| Arc::new(Ring::new())).collect();

    let (seconds, sums) = timed(|| -> Result<Vec<u64>, String> {
        let mut handles = Vec::with_capacity(pairs);
        for (i, ring) in rings.iter().enumerate() {
            let first = i as u64 * per_pair;
            let r = Arc::clone(ring);
            let producer = thread::Builder::new()
                .spawn(move || produce(a, &r, first, per_pair))
                .map_err(|e| format!("producer-consumer: cannot start a thread: {e}"))?;
            let r = Arc::clone(ring);
            let consumer = thread::Builder::new()
                .spawn(move || consume(a, &r, per_pair))
                .map_err(|e| format!("producer-consumer: cannot start a thread: {e}"))?;
            handles.push((producer, consumer));
        }
        let mut sums = Vec::with_capacity(pairs);
        for (producer, consumer) in handles {
            join(producer)?;
            sums.push(join(consumer)??);
        }
        Ok(sums)
    });

    let checksum = sums?.iter().fold(0u64, |h, &s| h.wrapping_add(s));
    Ok(Outcome { seconds, ops: per_pair * pairs as u64, checksum, memory: None })
}
