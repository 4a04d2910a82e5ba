//! `network`: packet buffers of fixed sizes acquired, filled, handed to
//! another thread and released there (the article's network-programming
//! case).
//!
//! With N threads there are max(1, N/2) sender-receiver pairs joined by a
//! bounded channel. A sender acquires a buffer of 1.5 KiB (most packets),
//! 9 KiB (jumbo frames) or 64 KiB (large segments), fills all of it, stamps
//! a sequence number at both ends and sends it; the receiver checks the
//! stamps, sums the payload's first bytes and releases the buffer. The
//! `malloc` case gets every buffer from the allocator under test; a
//! `BufferPool` case will compare poolmalloc's buffer pools against it.

use super::{alloc, cookie, join, layout, timed, Outcome, Params, SendPtr, WorkResult, SEED};
use crate::rng::Rng;
use std::alloc::GlobalAlloc;
use std::sync::mpsc;
use std::thread;

/// Buffer sizes and their shares out of 16.
const SIZES: [(usize, usize); 3] = [(1536, 11), (9 << 10, 4), (64 << 10, 1)];
const IN_FLIGHT: usize = 64;
const ALIGN: usize = 64;

fn packet_size(rng: &mut Rng) -> usize {
    let mut r = rng.below(16);
    for (size, share) in SIZES {
        if r < share {
            return size;
        }
        r -= share;
    }
    SIZES[0].0
}

fn send<A: GlobalAlloc>(a: &A, tx: mpsc::SyncSender<(SendPtr, usize, u64)>, seed: u64, first: u64, count: u64) {
    let mut rng = Rng::new(seed);
    for seq in first..first + count {
        let size = packet_size(&mut rng);
        let p = alloc(a, layout(size, ALIGN));
        // SAFETY: a fresh block of `size` bytes; the stamps are inside it.
        unsafe {
            p.write_bytes(seq as u8, size);
            p.cast::<u64>().write(cookie(seq));
            p.add(size - 8).cast::<u64>().write(cookie(!seq));
        }
        if tx.send((SendPtr(p), size, seq)).is_err() {
            // The receiver stopped on a corrupt packet; it reports why.
            // SAFETY: the block was not sent; freed once.
            unsafe { a.dealloc(p, layout(size, ALIGN)) };
            return;
        }
    }
}

fn receive<A: GlobalAlloc>(a: &A, rx: mpsc::Receiver<(SendPtr, usize, u64)>) -> Result<u64, String> {
    let mut sum = 0u64;
    for (p, size, seq) in rx {
        // SAFETY: a live buffer of `size` bytes, filled before it was sent.
        let (head, tail, body) =
            unsafe { (p.0.cast::<u64>().read(), p.0.add(size - 8).cast::<u64>().read(), p.0.add(8).read()) };
        if head != cookie(seq) || tail != cookie(!seq) || body != seq as u8 {
            return Err(format!("network: packet {seq} ({size} B at {:p}) arrived corrupted", p.0));
        }
        sum = sum.wrapping_add(seq ^ size as u64).wrapping_add(u64::from(body));
        // SAFETY: allocated by the sender with this layout; freed once.
        unsafe { a.dealloc(p.0, layout(size, ALIGN)) };
    }
    Ok(sum)
}

pub fn run<A: GlobalAlloc + Sync>(a: &'static A, p: &Params) -> WorkResult {
    let pairs = (p.threads / 2).max(1);
    let per_pair = p.pick(150_000u64, 1_500_000) / pairs as u64;

    let (seconds, sums) = timed(|| -> Result<Vec<u64>, String> {
        let mut handles = Vec::with_capacity(pairs);
        for i in 0..pairs {
            let (tx, rx) = mpsc::sync_channel(IN_FLIGHT);
            let seed = Rng::derive(SEED ^ 10, i as u64).next_u64();
            let first = i as u64 * per_pair;
            let sender = thread::Builder::new()
                .spawn(move || send(a, tx, seed, first, per_pair))
                .map_err(|e| format!("network: cannot start a thread: {e}"))?;
            let receiver = thread::Builder::new()
                .spawn(move || receive(a, rx))
                .map_err(|e| format!("network: cannot start a thread: {e}"))?;
            handles.push((sender, receiver));
        }
        let mut sums = Vec::with_capacity(pairs);
        for (sender, receiver) in handles {
            join(sender)?;
            sums.push(join(receiver)??);
        }
        Ok(sums)
    });
    let checksum = sums?.iter().fold(0u64, |h, &s| h.wrapping_add(s));
    Ok(Outcome { seconds, ops: per_pair * pairs as u64, checksum })
}
