//! Abandoned pools (layer 5): pools whose heap's thread exited while they
//! still held live blocks, kept by size class until another heap adopts
//! them (in its allocation slow path) or [`Abandoned::sweep`] finds them
//! empty and gives them back to their arenas.
//!
//! Threads: any thread may put, take or sweep; the lists are guarded by
//! one lock, taken once per pool, never per block. Blocks of an abandoned
//! pool are still freed by any thread through the pool's remote list (see
//! [`crate::handover`]).
//!
//! The lists are generic over the node type so that loom can build them
//! (pool records cannot be built under `--cfg loom`): `tests/loom_handover.rs`
//! runs the hand-over of a pool through these lists and their lock.

use crate::list::{Links, List};
use crate::lock::RawLock;
use crate::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use crate::sync::Local;

/// Nodes (pools) whose heaps' threads exited with blocks in use, in `N`
/// lists (one per size class).
pub struct Abandoned<T, L, const N: usize> {
    /// Guards the lists.
    pub lock: RawLock,
    lists: [List<T, L>; N],
    /// Nodes on the lists (read without the lock as a hint).
    count: AtomicUsize,
    /// Nodes ever abandoned. Lock.
    total: Local<u64>,
}

impl<T, L: Links<T>, const N: usize> Abandoned<T, L, N> {
    /// Empty lists.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Abandoned {
            lock: RawLock::new(),
            lists: [const { List::new() }; N],
            count: AtomicUsize::new(0),
            total: Local::new(0),
        }
    }

    /// Empty lists.
    #[cfg(loom)]
    #[allow(clippy::new_without_default)] // loom's atomics are built at run time, inside a model
    pub fn new() -> Self {
        Abandoned {
            lock: RawLock::new(),
            lists: core::array::from_fn(|_| List::new()),
            count: AtomicUsize::new(0),
            total: Local::new(0),
        }
    }

    /// Adds `p` to the list of `class`.
    ///
    /// # Safety
    /// `p` must be a live node on no list, held by the caller (its last
    /// owner, who gives it up here), whose links stay valid while it is on
    /// the list; `class` must be below `N`.
    pub unsafe fn put(&self, p: *mut T, class: usize) {
        let _g = self.lock.guard();
        // SAFETY: `p` is on no list (by the caller); the lock is held (guard
        // `_g`), which makes us the lists' user.
        unsafe { self.lists[class].push(p) };
        self.count.fetch_add(1, Relaxed);
        // SAFETY: the lock is held (guard `_g`).
        unsafe { self.total.set(self.total.get() + 1) };
    }

    /// Takes up to `out.len()` nodes of `class`; returns how many. Each one
    /// taken is the caller's, on no list.
    pub fn take(&self, class: usize, out: &mut [*mut T]) -> usize {
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

    /// Nodes ever put on the lists.
    pub fn total(&self) -> u64 {
        let _g = self.lock.guard();
        // SAFETY: the lock is held (guard `_g`).
        unsafe { self.total.get() }
    }

    /// With the lock held, calls `done` on every node; those for which it
    /// returns true leave their list, and `gone` is then called on each of
    /// them (still under the lock: it owns the node now).
    ///
    /// `done` runs as the nodes' holder (the lock makes the sweeper the
    /// holder of every abandoned node), so it may take remote frees.
    pub fn sweep(&self, mut done: impl FnMut(*mut T) -> bool, mut gone: impl FnMut(*mut T)) {
        let _g = self.lock.guard();
        for list in &self.lists {
            // SAFETY: the lock is held (guard `_g`): we are the list's user.
            let mut p = unsafe { list.head() };
            while !p.is_null() {
                // SAFETY: as above; `next` is read before `p` leaves the list.
                let next = unsafe { List::<T, L>::next(p) };
                if done(p) {
                    // SAFETY: `p` is on this list, whose user we are.
                    unsafe { list.remove(p) };
                    self.count.fetch_sub(1, Relaxed);
                    gone(p);
                }
                p = next;
            }
        }
    }
}

#[cfg(not(loom))]
pub(crate) use pools::*;

#[cfg(not(loom))]
mod pools {
    use super::Abandoned;
    use crate::arena;
    use crate::pool::{Pool, PoolLinks};
    use crate::size_class::NUM_CLASSES;

    /// The abandoned pools of the process, by class.
    pub(crate) static ABANDONED: Abandoned<Pool, PoolLinks, NUM_CLASSES> = Abandoned::new();

    /// Pools ever handed to the abandoned lists.
    pub(crate) fn abandoned_total() -> u64 {
        ABANDONED.total()
    }

    /// Collects remote frees on every abandoned pool and gives the empty ones
    /// back to the arenas.
    pub(crate) fn sweep() {
        ABANDONED.sweep(
            |p| {
                // SAFETY: pools on the lists are live, and the lists' lock,
                // held by `sweep`, makes us their holder: we own them (see
                // `Pool`).
                unsafe {
                    (*p).collect_remote();
                    (*p).is_empty()
                }
            },
            // SAFETY: the pool is empty, off the list, and ours.
            |p| unsafe { arena::release_pools(&[p]) },
        );
    }
}
