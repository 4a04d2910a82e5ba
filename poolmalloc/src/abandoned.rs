//! Abandoned pools (layer 5): pools whose heap's thread exited while they
//! still held live blocks, kept by size class until another heap adopts
//! them (in its allocation slow path) or [`Abandoned::sweep`] finds them
//! empty and gives them back to their arenas.
//!
//! Threads: any thread may put, take or sweep; the lists are guarded by
//! one lock, taken once per pool, never per block. Blocks of an abandoned
//! pool are still freed by any thread through the pool's remote list.

use crate::arena;
use crate::lock::RawLock;
use crate::pool::{Pool, PoolList};
use crate::size_class::NUM_CLASSES;
use crate::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use crate::sync::Local;

/// Pools whose heaps' threads exited with blocks in use, by class.
pub(crate) struct Abandoned {
    /// Guards the lists.
    pub lock: RawLock,
    lists: [PoolList; NUM_CLASSES],
    /// Pools on the lists (read without the lock as a hint).
    count: AtomicUsize,
    /// Pools ever abandoned. Lock.
    abandoned_total: Local<u64>,
}

/// Pools ever handed to the abandoned lists.
pub(crate) fn abandoned_total() -> u64 {
    let _g = ABANDONED.lock.guard();
    // SAFETY: the abandoned lists' lock is held (guard `_g`).
    unsafe { ABANDONED.abandoned_total.get() }
}

/// The abandoned pools of the process.
pub(crate) static ABANDONED: Abandoned = Abandoned {
    lock: RawLock::new(),
    lists: [const { PoolList::new() }; NUM_CLASSES],
    count: AtomicUsize::new(0),
    abandoned_total: Local::new(0),
};

impl Abandoned {
    /// Adds a pool.
    ///
    /// # Safety
    /// `p` must be an ABANDONED pool on no list, held by the caller (its
    /// last owner, who gives it up here).
    pub unsafe fn put(&self, p: *mut Pool) {
        // SAFETY: by the caller, a live pool that we hold, so its class is
        // ours to read.
        let class = unsafe { (*p).class.get() } as usize;
        let _g = self.lock.guard();
        // SAFETY: `p` is on no list (by the caller); the lock is held (guard
        // `_g`), which makes us the lists' user.
        unsafe { self.lists[class].push(p) };
        self.count.fetch_add(1, Relaxed);
        // SAFETY: the lock is held (guard `_g`).
        unsafe { self.abandoned_total.set(self.abandoned_total.get() + 1) };
    }

    /// Takes up to `out.len()` pools of `class`; returns how many.
    pub(crate) fn take(&self, class: usize, out: &mut [*mut Pool]) -> usize {
        if self.count.load(Relaxed) == 0 {
            return 0;
        }
        let _g = self.lock.guard();
        let mut n = 0;
        while n < out.len() {
            // SAFETY: the lock is held (guard `_g`): we are the list's user.
            let p = unsafe { self.lists[class].pop() };
            if p.is_null() {
                break;
            }
            out[n] = p;
            n += 1;
        }
        self.count.fetch_sub(n, Relaxed);
        n
    }

    /// Collects remote frees on every abandoned pool and gives the empty ones
    /// back to the arenas.
    pub fn sweep(&self) {
        let _g = self.lock.guard();
        for list in &self.lists {
            // SAFETY: the lock is held (guard `_g`): we are the list's user.
            let mut p = unsafe { list.head() };
            while !p.is_null() {
                // SAFETY: pools on the lists are live; the lock makes us the
                // list's user (its links are ours) and the pools' holder, so
                // we own them (see `Pool`). `next` is read before `p` leaves
                // the list.
                unsafe {
                    let pr = &*p;
                    let next = pr.next.get();
                    pr.collect_remote();
                    if pr.is_empty() {
                        list.remove(p);
                        self.count.fetch_sub(1, Relaxed);
                        // The pool is empty, off the list, and ours.
                        arena::release_pools(&[p]);
                    }
                    p = next;
                }
            }
        }
    }
}

