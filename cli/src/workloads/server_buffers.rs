//! `server-buffers`: connection buffers of 1-64 KiB passed around a ring of
//! threads through bounded queues (the medium-block path, across threads).
//!
//! N threads (the `--threads` count) form a ring: thread i sends buffers to
//! thread i+1 through a bounded channel and receives thread i-1's. A sender
//! allocates a buffer of uniform random size 1-64 KiB, writes a tag word at
//! its start and at its end and a stamp into every 4 KiB page (so fresh
//! pages are faulted in, as a read into the buffer would), and sends it. The
//! receiver checks both tags and the stamps. One buffer in 8 is then grown
//! with `realloc` to a random larger size up to 64 KiB; the receiver checks
//! that the old contents survived and writes the new end tag. Then it frees
//! the buffer. Whether a buffer grows, and to what size, follows from the
//! buffer's own number, so the checksum does not depend on scheduling.
//!
//! A thread that cannot send because its successor's queue is full receives
//! instead, and a thread that has sent its share keeps receiving until its
//! predecessor's share has arrived: a thread blocks only on an empty queue
//! whose sender still has buffers to send, so the ring cannot deadlock.

use super::{alloc, cookie, join, layout, realloc, timed, Outcome, Params, SendPtr, WorkResult, SEED};
use crate::rng::prelude::*;
use std::alloc::GlobalAlloc;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread;

const MIN_SIZE: usize = 1 << 10;
const MAX_SIZE: usize = 64 << 10;
/// Buffers a queue holds before its sender must wait.
const QUEUE: usize = 16;
/// One buffer in `GROW_EVERY` is grown by its receiver.
const GROW_EVERY: u64 = 8;
const PAGE: usize = 4096;
const ALIGN: usize = 8;

/// A buffer in flight: its block, its size and its number.
struct Packet {
    block: SendPtr,
    size: usize,
    id: u64,
}

/// The word stamped into page `page` of buffer `id`.
fn stamp(id: u64, page: usize) -> u64 {
    cookie(id.wrapping_mul(0x1_0000).wrapping_add(page as u64))
}

fn tail_tag(id: u64, size: usize) -> u64 {
    cookie(!id ^ size as u64)
}

/// Reads the unaligned word at byte `at` of a block.
///
/// # Safety
/// `p` must be a live block with at least `at + 8` bytes.
unsafe fn read(p: *mut u8, at: usize) -> u64 {
    // SAFETY: by the caller.
    unsafe { p.add(at).cast::<u64>().read_unaligned() }
}

/// Writes the unaligned word at byte `at` of a block.
///
/// # Safety
/// `p` must be a live block with at least `at + 8` bytes.
unsafe fn write(p: *mut u8, at: usize, v: u64) {
    // SAFETY: by the caller.
    unsafe { p.add(at).cast::<u64>().write_unaligned(v) }
}

/// The byte offsets of the page stamps of a buffer of `size` bytes: one
/// word at the start of each 4 KiB page after the first, clear of the tail.
fn stamps(size: usize) -> impl Iterator<Item = (usize, usize)> {
    (1..size.div_ceil(PAGE)).map(|page| (page, page * PAGE)).filter(move |&(_, at)| at + 16 <= size)
}

fn new_packet<A: GlobalAlloc>(a: &A, id: u64, size: usize) -> Packet {
    let p = alloc(a, layout(size, ALIGN));
    // SAFETY: a fresh block of `size >= MIN_SIZE` bytes; every offset
    // written is at least 8 bytes from its end.
    unsafe {
        write(p, 0, cookie(id));
        for (page, at) in stamps(size) {
            write(p, at, stamp(id, page));
        }
        write(p, size - 8, tail_tag(id, size));
    }
    Packet { block: SendPtr(p), size, id }
}

/// Checks the head tag and the page stamps of the first `size` bytes, and
/// the tail tag written for a buffer of `tail_size` bytes at its end.
fn check(pk: &Packet, size: usize, tail_size: usize, when: &str) -> Result<(), String> {
    let p = pk.block.0;
    // SAFETY: the block is live and has at least `size` bytes; every offset
    // read is at least 8 bytes from `size`.
    let ok = unsafe {
        read(p, 0) == cookie(pk.id)
            && stamps(size).all(|(page, at)| read(p, at) == stamp(pk.id, page))
            && read(p, size - 8) == tail_tag(pk.id, tail_size)
    };
    if ok {
        Ok(())
    } else {
        Err(format!("server-buffers: buffer {} ({size} B at {p:p}) is corrupted {when}", pk.id))
    }
}

/// Checks a received buffer, sometimes grows it, and frees it. Returns what
/// it adds to the checksum.
fn consume<A: GlobalAlloc>(a: &A, mut pk: Packet) -> Result<u64, String> {
    check(&pk, pk.size, pk.size, "on arrival")?;
    let h = cookie(pk.id ^ 0xB0FF);
    if h % GROW_EVERY == 0 {
        let old = pk.size;
        let new = old + ((h >> 8) as usize) % (MAX_SIZE - old + 1);
        // SAFETY: a live block allocated with this layout; `new >= old > 0`.
        pk.block = SendPtr(unsafe { realloc(a, pk.block.0, layout(old, ALIGN), new) });
        pk.size = new;
        check(&pk, old, old, "after realloc")?;
        // SAFETY: the block now has `new >= 16` bytes.
        unsafe { write(pk.block.0, new - 8, tail_tag(pk.id, new)) };
    }
    // SAFETY: the block has at least `MIN_SIZE` bytes.
    let last = unsafe { read(pk.block.0, pk.size - 8) };
    let sum = (pk.id ^ pk.size as u64).wrapping_add(last);
    // SAFETY: a live block of `pk.size` bytes with this layout, freed once.
    unsafe { a.dealloc(pk.block.0, layout(pk.size, ALIGN)) };
    Ok(sum)
}

/// One thread of the ring: sends `count` buffers numbered from `first` and
/// receives `expected` buffers from its predecessor.
fn node<A: GlobalAlloc>(
    a: &A,
    tx: SyncSender<Packet>,
    rx: Receiver<Packet>,
    mut rng: Rng,
    first: u64,
    count: u64,
    expected: u64,
) -> Result<u64, String> {
    let (mut sent, mut received, mut sum) = (0u64, 0u64, 0u64);
    let mut pending: Option<Packet> = None;
    let hung_up = || "server-buffers: a ring neighbour stopped early".to_string();
    while sent < count || received < expected {
        while let Ok(pk) = rx.try_recv() {
            sum = sum.wrapping_add(consume(a, pk)?);
            received += 1;
        }
        if sent < count {
            let pk = match pending.take() {
                Some(pk) => pk,
                None => new_packet(a, first + sent, rng.random_range(MIN_SIZE..=MAX_SIZE)),
            };
            match tx.try_send(pk) {
                Ok(()) => sent += 1,
                Err(TrySendError::Full(pk)) => {
                    pending = Some(pk);
                    if received < expected {
                        sum = sum.wrapping_add(consume(a, rx.recv().map_err(|_| hung_up())?)?);
                        received += 1;
                    } else {
                        thread::yield_now();
                    }
                }
                Err(TrySendError::Disconnected(pk)) => {
                    // SAFETY: allocated by `new_packet` with this layout; never sent.
                    unsafe { a.dealloc(pk.block.0, layout(pk.size, ALIGN)) };
                    return Err(hung_up());
                }
            }
        } else if received < expected {
            sum = sum.wrapping_add(consume(a, rx.recv().map_err(|_| hung_up())?)?);
            received += 1;
        }
    }
    Ok(sum)
}

pub fn run<A: GlobalAlloc + Sync>(a: &'static A, p: &Params) -> WorkResult {
    let threads = p.threads.max(1);
    let per_thread = p.pick(40_000u64, 400_000) / threads as u64;

    let mut senders = Vec::with_capacity(threads);
    let mut receivers = Vec::with_capacity(threads);
    for _ in 0..threads {
        let (tx, rx) = mpsc::sync_channel::<Packet>(QUEUE);
        senders.push(tx);
        receivers.push(rx);
    }
    // Thread i sends on channel i and receives on channel i-1.
    receivers.rotate_right(1);

    let (seconds, sums) = timed(|| -> Result<Vec<u64>, String> {
        let mut handles = Vec::with_capacity(threads);
        for (i, (tx, rx)) in senders.into_iter().zip(receivers).enumerate() {
            let rng = Rng::derive(SEED ^ 14, i as u64);
            let first = i as u64 * per_thread;
            let h = thread::Builder::new()
                .spawn(move || node(a, tx, rx, rng, first, per_thread, per_thread))
                .map_err(|e| format!("server-buffers: cannot start a thread: {e}"))?;
            handles.push(h);
        }
        handles.into_iter().map(|h| join(h)?).collect()
    });
    let checksum = sums?.iter().fold(0u64, |h, &s| h.wrapping_add(s));
    Ok(Outcome { seconds, ops: per_thread * threads as u64, checksum, memory: None })
}
