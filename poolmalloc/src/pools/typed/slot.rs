//! Free slots of the typed pools and the chains they form: the slot layout
//! for a type, taking fresh slots from the pool layer and giving chains of
//! them back, and the event counts kept by caches and depots.
//!
//! The caches, the depots and the pool's slow paths call it. Every function
//! here works on slots the caller owns (a thread's cache, or a depot under
//! its lock), so nothing here synchronises; the counters in [`Counts`] are
//! plain sums folded together by whoever holds them.

use crate::PoolMalloc;
use core::alloc::{GlobalAlloc, Layout};
use core::mem;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The first two words of a free slot: the next slot of its chain, and, in
/// the head slot of a chain parked in a depot, the next chain.
#[repr(C)]
pub(super) struct FreeSlot {
    pub(super) next: *mut FreeSlot,
    pub(super) next_chain: *mut FreeSlot,
}

/// The layout of a slot for `T`: room for `T` and for a [`FreeSlot`].
pub(super) const fn slot_layout<T>() -> Layout {
    let align = if mem::align_of::<T>() > mem::align_of::<FreeSlot>() {
        mem::align_of::<T>()
    } else {
        mem::align_of::<FreeSlot>()
    };
    let size =
        if mem::size_of::<T>() > mem::size_of::<FreeSlot>() { mem::size_of::<T>() } else { mem::size_of::<FreeSlot>() };
    match Layout::from_size_align((size + align - 1) & !(align - 1), align) {
        Ok(l) => l,
        Err(_) => panic!("type too large for a TypedPool"),
    }
}

/// Slots obtained from the pool layer and not yet released, across all pools
/// (unit tests only, to check that nothing leaks).
#[cfg(test)]
pub(super) static OUTSTANDING: core::sync::atomic::AtomicIsize = core::sync::atomic::AtomicIsize::new(0);

/// Takes a fresh slot from the pool layer (null when out of memory).
pub(super) fn slot_alloc(layout: Layout) -> *mut FreeSlot {
    // SAFETY: slot layouts have a non-zero size.
    let p = unsafe { PoolMalloc.alloc(layout) };
    #[cfg(test)]
    if !p.is_null() {
        OUTSTANDING.fetch_add(1, Relaxed);
    }
    p.cast()
}

/// Gives a chain of `len` slots back to the pool layer; returns `len`.
///
/// # Safety
/// `head` must start a chain of exactly `len` free slots of `layout`, owned
/// by the caller.
pub(super) unsafe fn release_chain(mut head: *mut FreeSlot, len: usize, layout: Layout) -> u64 {
    for _ in 0..len {
        // SAFETY: by the caller, `head` is a free slot of the chain.
        let next = unsafe { (*head).next };
        // SAFETY: the slot came from `PoolMalloc` with `layout`.
        unsafe { PoolMalloc.dealloc(head.cast(), layout) };
        head = next;
    }
    #[cfg(test)]
    OUTSTANDING.fetch_sub(len as isize, Relaxed);
    len as u64
}

/// Splits the first `n` slots off the chain at `*head`; returns them.
///
/// # Safety
/// The chain at `*head` must hold at least `n >= 1` free slots.
pub(super) unsafe fn split_chain(head: &mut *mut FreeSlot, n: usize) -> *mut FreeSlot {
    let first = *head;
    let mut last = first;
    for _ in 1..n {
        // SAFETY: the chain holds at least `n` slots.
        last = unsafe { (*last).next };
    }
    // SAFETY: `last` is the `n`th slot of the chain.
    *head = unsafe { (*last).next };
    first
}

/// Adds `n` to a counter only its owner writes (a plain load and store).
#[inline(always)]
pub(super) fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

/// Event counts of a cache or of a pool's shared paths.
#[derive(Clone, Copy, Default)]
pub(super) struct Counts {
    pub(super) allocs: u64,
    pub(super) frees: u64,
    pub(super) misses: u64,
    pub(super) released: u64,
}

impl Counts {
    pub(super) fn add(&mut self, o: Counts) {
        self.allocs = self.allocs.wrapping_add(o.allocs);
        self.frees = self.frees.wrapping_add(o.frees);
        self.misses = self.misses.wrapping_add(o.misses);
        self.released = self.released.wrapping_add(o.released);
    }
}
