//! `network`: packet buffers of fixed sizes acquired, filled, handed to
//! another thread and released there (the article's network-programming
//! case).
//!
//! With N threads there are max(1, N/2) sender-receiver pairs joined by a
//! bounded channel. A sender acquires a buffer of 1.5 KiB (most packets),
//! 9 KiB (jumbo frames) or 64 KiB (large segments), fills all of it, stamps
//! a sequence number at both ends and sends it; the receiver checks the
//! stamps, sums the payload's first bytes and releases the buffer. The
//! `malloc` case gets every buffer from the allocator under test. The
//! `bufferpool` case takes them from one shared `poolmalloc::BufferPool`
//! (2, 16 and 64 KiB classes, default retained cap) and drops them on the
//! receiving thread. The pool's storage always comes from `PoolMalloc`, so
//! that case does not depend on the allocator under test: it runs once, as
//! the `buffer-pool` comparator, and its ratios are taken against the
//! `malloc` case's poolmalloc row.

use super::{alloc, cookie, join, layout, timed, Outcome, Params, SendPtr, WorkResult, SEED};
use crate::rng::prelude::*;
use poolmalloc::{Buffer, BufferPool};
use std::alloc::GlobalAlloc;
use std::sync::mpsc;
use std::thread;

/// Buffer sizes and their shares out of 16.
const SIZES: [(usize, usize); 3] = [(1536, 11), (9 << 10, 4), (64 << 10, 1)];
const IN_FLIGHT: usize = 64;
const ALIGN: usize = 64;

fn packet_size(rng: &mut Rng) -> usize {
    let mut r = rng.random_range(0..16);
    for (size, share) in SIZES {
        if r < share {
            return size;
        }
        r -= share;
    }
    SIZES[0].0
}

/// Where senders get packet buffers and where receivers put them back.
trait Source: Copy + Send + 'static {
    /// A packet buffer; it owns its memory.
    type Packet: Send + 'static;
    /// A buffer with at least `size` bytes.
    fn acquire(self, size: usize) -> Self::Packet;
    /// The first `size` bytes of a buffer acquired with `size`.
    fn bytes(p: &mut Self::Packet, size: usize) -> &mut [u8];
    /// Gives back a buffer acquired with `size`.
    fn release(self, p: Self::Packet, size: usize);
}

/// Plain allocation from the allocator under test.
struct Malloc<A: 'static>(&'static A);

impl<A> Clone for Malloc<A> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<A> Copy for Malloc<A> {}

/// A block from [`Malloc::acquire`]; only that function makes one.
struct Block(SendPtr);

impl<A: GlobalAlloc + Sync> Source for Malloc<A> {
    type Packet = Block;

    #[inline(always)]
    fn acquire(self, size: usize) -> Block {
        Block(SendPtr(alloc(self.0, layout(size, ALIGN))))
    }

    #[inline(always)]
    fn bytes(p: &mut Block, size: usize) -> &mut [u8] {
        // SAFETY: a `Block` is a live allocation of `size` bytes (the size
        // it was acquired with), owned by whoever holds the `Block`.
        unsafe { std::slice::from_raw_parts_mut(p.0 .0, size) }
    }

    #[inline(always)]
    fn release(self, p: Block, size: usize) {
        // SAFETY: allocated by `acquire` with this layout; consumed here, so
        // freed once.
        unsafe { self.0.dealloc(p.0 .0, layout(size, ALIGN)) }
    }
}

/// The one pool the `bufferpool` case uses (default retained cap).
static BUFFERS: BufferPool = BufferPool::new();

/// Buffers from [`BUFFERS`].
#[derive(Clone, Copy)]
struct Pooled;

impl Source for Pooled {
    type Packet = Buffer<'static>;

    #[inline(always)]
    fn acquire(self, size: usize) -> Buffer<'static> {
        BUFFERS.acquire(size)
    }

    #[inline(always)]
    fn bytes<'p>(p: &'p mut Buffer<'static>, size: usize) -> &'p mut [u8] {
        &mut p[..size]
    }

    #[inline(always)]
    fn release(self, p: Buffer<'static>, _size: usize) {
        drop(p);
    }
}

fn send<S: Source>(s: S, tx: mpsc::SyncSender<(S::Packet, usize, u64)>, seed: u64, first: u64, count: u64) {
    let mut rng = Rng::new(seed);
    for seq in first..first + count {
        let size = packet_size(&mut rng);
        let mut p = s.acquire(size);
        let b = S::bytes(&mut p, size);
        b.fill(seq as u8);
        b[..8].copy_from_slice(&cookie(seq).to_ne_bytes());
        b[size - 8..].copy_from_slice(&cookie(!seq).to_ne_bytes());
        if let Err(mpsc::SendError((p, size, _))) = tx.send((p, size, seq)) {
            // The receiver stopped on a corrupt packet; it reports why.
            s.release(p, size);
            return;
        }
    }
}

fn word(b: &[u8]) -> u64 {
    u64::from_ne_bytes(b[..8].try_into().expect("8 bytes"))
}

fn receive<S: Source>(s: S, rx: mpsc::Receiver<(S::Packet, usize, u64)>) -> Result<u64, String> {
    let mut sum = 0u64;
    for (mut p, size, seq) in rx {
        let b = S::bytes(&mut p, size);
        let (head, tail, body) = (word(b), word(&b[size - 8..]), b[8]);
        if head != cookie(seq) || tail != cookie(!seq) || body != seq as u8 {
            return Err(format!("network: packet {seq} ({size} B at {:p}) arrived corrupted", b.as_ptr()));
        }
        sum = sum.wrapping_add(seq ^ size as u64).wrapping_add(u64::from(body));
        s.release(p, size);
    }
    Ok(sum)
}

/// The `malloc` case: every buffer from the allocator under test.
pub fn run<A: GlobalAlloc + Sync>(a: &'static A, p: &Params) -> WorkResult {
    packets(Malloc(a), p)
}

/// The `bufferpool` case: every buffer from one shared `BufferPool`.
pub fn run_buffer_pool(p: &Params) -> WorkResult {
    packets(Pooled, p)
}

fn packets<S: Source>(s: S, p: &Params) -> WorkResult {
    let pairs = (p.threads / 2).max(1);
    let per_pair = p.pick(150_000u64, 1_500_000) / pairs as u64;

    let (seconds, sums) = timed(|| -> Result<Vec<u64>, String> {
        let mut handles = Vec::with_capacity(pairs);
        for i in 0..pairs {
            let (tx, rx) = mpsc::sync_channel(IN_FLIGHT);
            let seed = Rng::derive(SEED ^ 10, i as u64).next_u64();
            let first = i as u64 * per_pair;
            let sender = thread::Builder::new()
                .spawn(move || send(s, tx, seed, first, per_pair))
                .map_err(|e| format!("network: cannot start a thread: {e}"))?;
            let receiver = thread::Builder::new()
                .spawn(move || receive(s, rx))
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
    Ok(Outcome { seconds, ops: per_pair * pairs as u64, checksum, memory: None })
}
