//! Per-thread caches of the typed pools: [`Cache`] (two magazines of free
//! slots for one pool), each thread's direct-mapped [`Table`] of caches with
//! its overflow list, and the thread-exit side of teardown ([`ExitGuard`],
//! [`retire`]).
//!
//! The pool's fast paths and slow paths (the parent module and `shared`) call
//! it on the thread that makes or drops a box, and the thread-local exit
//! guard calls it when that thread exits.
//!
//! A cache is owned by its thread, which reads and writes it without locks
//! or read-modify-write atomics; other threads only read its counters
//! (statistics, under the pool's registry lock) or take its `lock` in
//! teardown. See the parent module's docs for how a thread finds its cache
//! and for the teardown protocol.

use super::shared::{Inner, Registry};
use super::slot::{bump, release_chain, Counts, FreeSlot};
use super::{table_index, EMPTY_ENTRY, TABLE_SIZE};
use crate::pools::{lock, WithLock};
use crate::PoolMalloc;
use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;
use core::ptr;
use core::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering::*};
use std::sync::Mutex;

/// Cache states (`Cache::state`).
pub(super) const LIVE: u8 = 0;
/// The thread exited; the cache is empty and its pool frees it.
pub(super) const THREAD_GONE: u8 = 1;
/// The pool was dropped; the cache is empty and its thread frees it.
pub(super) const POOL_GONE: u8 = 2;

/// One thread's free slots for one pool: two magazines, `loaded` (taken from
/// and refilled first) and `spare` (either empty or full), in the manner of
/// Bonwick's magazine layer.
///
/// Owner: the thread whose table references it, while that thread holds a
/// borrow of the pool. Others touch it only through atomics (statistics,
/// under the pool's registry lock) or under `lock` in teardown (see the
/// module docs). So the `Cell` fields are never accessed by two threads at
/// once; the type is not `Sync`, and other threads reach it only through
/// raw pointers, under the protocols above.
#[repr(C, align(64))]
pub(super) struct Cache {
    /// Head of the loaded chain; it holds `loaded_len` slots.
    pub(super) loaded: Cell<*mut FreeSlot>,
    /// Slots in `loaded`, at most `mag`. Owner writes, statistics read.
    pub(super) loaded_len: AtomicUsize,
    /// Head of the spare chain; it holds `spare_len` slots.
    pub(super) spare: Cell<*mut FreeSlot>,
    /// Slots in `spare`: 0 or `mag`. Owner writes, statistics read.
    pub(super) spare_len: AtomicUsize,
    /// Magazine size of the pool (immutable).
    pub(super) mag: usize,
    /// PoolBoxes made by this thread (owner writes).
    pub(super) allocs: AtomicU64,
    /// PoolBoxes given back on this thread (owner writes).
    pub(super) frees: AtomicU64,
    /// Allocations that took a fresh slot from the pool layer (owner writes).
    pub(super) misses: AtomicU64,
    /// Slots this cache gave back to the pool layer (owner writes).
    pub(super) released: AtomicU64,
    /// The pool stamp this cache was last flushed for; a table entry holding
    /// this cache holds this stamp. Owner only.
    pub(super) synced: Cell<u64>,
    /// Next cache on the owner thread's overflow list. Owner only.
    pub(super) next_in_thread: Cell<*mut Cache>,
    /// The pool's generation and index (its stamp without the epoch).
    pub(super) base: u64,
    /// Slot layout of the pool (immutable).
    pub(super) slot: Layout,
    /// The pool's shared state: valid while the owner holds a borrow of the
    /// pool, or while `state` is `LIVE` and `lock` is held.
    pub(super) inner: *const Inner,
    /// Serialises thread exit against pool drop.
    pub(super) lock: Mutex<()>,
    /// `LIVE`, `THREAD_GONE` or `POOL_GONE`; changed only under `lock`.
    pub(super) state: AtomicU8,
    /// Next cache in the pool's registry. Guarded by the registry lock.
    pub(super) next_in_pool: Cell<*mut Cache>,
}

impl Cache {
    /// Takes a slot from the loaded magazine (null when it is empty).
    #[inline(always)]
    pub(super) fn pop(&self) -> *mut FreeSlot {
        let n = self.loaded_len.load(Relaxed);
        if n == 0 {
            return ptr::null_mut();
        }
        let top = self.loaded.get();
        // SAFETY: `loaded` holds `n > 0` free slots of this cache.
        self.loaded.set(unsafe { (*top).next });
        self.loaded_len.store(n - 1, Relaxed);
        bump(&self.allocs, 1);
        top
    }

    /// Puts a slot into the loaded magazine; false when it is full.
    ///
    /// # Safety
    /// `slot` must be a slot of this cache's pool that nothing else uses.
    #[inline(always)]
    pub(super) unsafe fn push(&self, slot: *mut FreeSlot) -> bool {
        let n = self.loaded_len.load(Relaxed);
        if n >= self.mag {
            return false;
        }
        // SAFETY: by the caller the slot is ours; it is large and aligned
        // enough for a `FreeSlot`.
        unsafe { ptr::addr_of_mut!((*slot).next).write(self.loaded.get()) };
        self.loaded.set(slot);
        self.loaded_len.store(n + 1, Relaxed);
        bump(&self.frees, 1);
        true
    }

    pub(super) fn counts(&self) -> Counts {
        Counts {
            allocs: self.allocs.load(Relaxed),
            frees: self.frees.load(Relaxed),
            misses: self.misses.load(Relaxed),
            released: self.released.load(Relaxed),
        }
    }

    pub(super) fn cached(&self) -> usize {
        self.loaded_len.load(Relaxed) + self.spare_len.load(Relaxed)
    }

    /// Takes both magazines out: `(loaded, loaded_len, spare, spare_len)`.
    /// The caller must own the cache or hold `lock` in teardown.
    pub(super) fn take_all(&self) -> (*mut FreeSlot, usize, *mut FreeSlot, usize) {
        let r = (self.loaded.get(), self.loaded_len.load(Relaxed), self.spare.get(), self.spare_len.load(Relaxed));
        self.loaded.set(ptr::null_mut());
        self.loaded_len.store(0, Relaxed);
        self.spare.set(ptr::null_mut());
        self.spare_len.store(0, Relaxed);
        r
    }

    /// Gives every cached slot back to the pool layer. Owner only.
    pub(super) fn flush(&self) {
        let (l, ln, s, sn) = self.take_all();
        // SAFETY: the chains are this cache's and were just detached.
        let n = unsafe { release_chain(l, ln, self.slot) + release_chain(s, sn, self.slot) };
        bump(&self.released, n);
    }
}

/// Allocates and registers this thread's cache for the pool behind `inner`.
/// Null when out of memory.
pub(super) fn new_cache(inner: &Inner, stamp: u64) -> *mut Cache {
    let layout = Layout::new::<Cache>();
    // SAFETY: a non-zero-size layout.
    let c = unsafe { PoolMalloc.alloc(layout) }.cast::<Cache>();
    if c.is_null() {
        return c;
    }
    let cache = Cache {
        loaded: Cell::new(ptr::null_mut()),
        loaded_len: AtomicUsize::new(0),
        spare: Cell::new(ptr::null_mut()),
        spare_len: AtomicUsize::new(0),
        mag: inner.mag,
        allocs: AtomicU64::new(0),
        frees: AtomicU64::new(0),
        misses: AtomicU64::new(0),
        released: AtomicU64::new(0),
        synced: Cell::new(stamp),
        next_in_thread: Cell::new(ptr::null_mut()),
        base: inner.base,
        slot: inner.slot,
        inner,
        lock: Mutex::new(()),
        state: AtomicU8::new(LIVE),
        next_in_pool: Cell::new(ptr::null_mut()),
    };
    // SAFETY: `c` is a fresh block for a `Cache`.
    unsafe { c.write(cache) };
    inner.registry.with(|r| {
        // SAFETY: we hold the registry lock.
        unsafe { sweep(r) };
        // SAFETY: `c` is ours until it is published by this assignment.
        unsafe { (*c).next_in_pool.set(r.head) };
        r.head = c;
    });
    c
}

/// Frees the memory of a cache nobody references any more.
///
/// # Safety
/// `c` must be an empty cache whose thread and pool are both done with it.
pub(super) unsafe fn free_cache(c: *mut Cache) {
    // SAFETY: `c` came from `PoolMalloc` with this layout.
    unsafe { PoolMalloc.dealloc(c.cast(), Layout::new::<Cache>()) };
}

/// Waits until whoever set a cache's final state has released its lock; after
/// this the cache may be freed. (The releasing side may still be finishing
/// the mutex's unlock, a futex wake on the lock's address that does not read
/// the memory, which is harmless after it is freed.)
pub(super) fn wait_released(c: &Cache) {
    drop(lock(&c.lock));
}

/// Frees the `THREAD_GONE` caches of a registry, folding their counts in.
///
/// # Safety
/// The registry lock must be held, and every cache on the list must be live
/// memory (the registry's invariant).
pub(super) unsafe fn sweep(r: &mut Registry) {
    let mut prev: *mut Cache = ptr::null_mut();
    let mut c = r.head;
    while !c.is_null() {
        // SAFETY: registered caches are live while on the list.
        let cr = unsafe { &*c };
        let next = cr.next_in_pool.get();
        if cr.state.load(Acquire) == THREAD_GONE {
            wait_released(cr);
            r.retired.add(cr.counts());
            if prev.is_null() {
                r.head = next;
            } else {
                // SAFETY: `prev` is a live registered cache.
                unsafe { (*prev).next_in_pool.set(next) };
            }
            // SAFETY: the thread is gone and the cache is off the registry.
            unsafe { free_cache(c) };
        } else {
            prev = c;
        }
        c = next;
    }
}

// ---------------------------------------------------------------------------
// Per-thread tables.

/// One table entry: a stamp and the cache it belongs to (`EMPTY_ENTRY` and
/// null when unused).
pub(super) struct Entry {
    pub(super) stamp: Cell<u64>,
    pub(super) cache: Cell<*mut Cache>,
}

/// Table phases (`Table::phase`): no cache made yet.
pub(super) const FRESH: u8 = 0;
/// The exit guard is registered; caches may be made.
pub(super) const GUARDED: u8 = 1;
/// The thread is exiting and its caches are retired; none are made again.
pub(super) const EXITED: u8 = 2;

/// A thread's caches: direct-mapped by table index, plus an overflow list of
/// caches moved out of their entry by another pool with the same index.
/// Every cache of the thread is in exactly one entry or on the overflow list.
///
/// The table has no destructor, so the thread-local access on the fast path
/// needs no liveness check; [`ExitGuard`], registered before the first cache
/// is made, retires the caches at thread exit.
pub(super) struct Table {
    pub(super) entries: [Entry; TABLE_SIZE],
    pub(super) overflow: Cell<*mut Cache>,
    /// `FRESH`, `GUARDED` or `EXITED`; caches exist only while `GUARDED`.
    pub(super) phase: Cell<u8>,
}

impl Table {
    pub(super) const fn new() -> Self {
        #[allow(clippy::declare_interior_mutable_const)]
        const EMPTY: Entry = Entry { stamp: Cell::new(EMPTY_ENTRY), cache: Cell::new(ptr::null_mut()) };
        Table { entries: [EMPTY; TABLE_SIZE], overflow: Cell::new(ptr::null_mut()), phase: Cell::new(FRESH) }
    }

    /// Whether this thread may make a cache: registers the exit guard first.
    pub(super) fn may_make_cache(&self) -> bool {
        match self.phase.get() {
            GUARDED => true,
            EXITED => false,
            _ => {
                // Fails only while the thread's destructors run.
                if EXIT_GUARD.try_with(|_| ()).is_err() {
                    return false;
                }
                self.phase.set(GUARDED);
                true
            }
        }
    }

    /// Puts a cache moved out of its entry aside: freed if its pool is gone,
    /// else onto the overflow list.
    ///
    /// # Safety
    /// `c` must be one of this thread's caches, in no entry or list.
    pub(super) unsafe fn park(&self, c: *mut Cache) {
        // SAFETY: our caches stay allocated until we free them.
        let cr = unsafe { &*c };
        if cr.state.load(Acquire) == POOL_GONE {
            wait_released(cr);
            // SAFETY: the pool is gone and we no longer reference it.
            unsafe { free_cache(c) };
        } else {
            cr.next_in_thread.set(self.overflow.get());
            self.overflow.set(c);
        }
    }

    /// Removes and returns the overflow cache for the pool `base` (null if
    /// none), freeing caches of dropped pools on the way.
    pub(super) fn take_overflow(&self, base: u64) -> *mut Cache {
        let mut prev: *mut Cache = ptr::null_mut();
        let mut c = self.overflow.get();
        while !c.is_null() {
            // SAFETY: our caches stay allocated until we free them.
            let cr = unsafe { &*c };
            let next = cr.next_in_thread.get();
            let gone = cr.state.load(Acquire) == POOL_GONE;
            if gone || cr.base == base {
                if prev.is_null() {
                    self.overflow.set(next);
                } else {
                    // SAFETY: `prev` is one of our caches.
                    unsafe { (*prev).next_in_thread.set(next) };
                }
                if !gone {
                    return c;
                }
                wait_released(cr);
                // SAFETY: the pool is gone and the cache is off our lists.
                unsafe { free_cache(c) };
            } else {
                prev = c;
            }
            c = next;
        }
        ptr::null_mut()
    }

    /// This thread's cache for the pool `base`, wherever it is (null if none).
    pub(super) fn find(&self, base: u64) -> *mut Cache {
        let e = &self.entries[table_index(base)];
        let c = e.cache.get();
        // SAFETY: our caches stay allocated until we free them.
        if !c.is_null() && unsafe { (*c).base } == base {
            return c;
        }
        let mut c = self.overflow.get();
        while !c.is_null() {
            // SAFETY: as above.
            let cr = unsafe { &*c };
            if cr.base == base && cr.state.load(Relaxed) == LIVE {
                return c;
            }
            c = cr.next_in_thread.get();
        }
        ptr::null_mut()
    }
}

/// Retires the thread's caches when the thread exits.
pub(super) struct ExitGuard;

impl Drop for ExitGuard {
    /// Thread exit: every cache is handed back (see the module docs). Later
    /// uses of pools on this thread (from other destructors) take the shared
    /// path.
    fn drop(&mut self) {
        TABLE.with(|t| t.retire_all());
    }
}

impl Table {
    pub(super) fn retire_all(&self) {
        self.phase.set(EXITED);
        for e in &self.entries {
            e.stamp.set(EMPTY_ENTRY);
            let c = e.cache.replace(ptr::null_mut());
            if !c.is_null() {
                // SAFETY: the thread is exiting and no longer uses the cache.
                unsafe { retire(c) };
            }
        }
        let mut c = self.overflow.replace(ptr::null_mut());
        while !c.is_null() {
            // SAFETY: our caches stay allocated until we free them or retire them.
            let next = unsafe { (*c).next_in_thread.get() };
            // SAFETY: as above.
            unsafe { retire(c) };
            c = next;
        }
    }
}

/// The thread side of teardown: an exiting thread gives up one of its caches.
///
/// # Safety
/// `c` must be a cache of the calling thread that it will not touch again.
pub(super) unsafe fn retire(c: *mut Cache) {
    // SAFETY: our caches stay allocated until the pool frees a `THREAD_GONE`
    // one, which cannot happen before we set that state below.
    let cr = unsafe { &*c };
    let held = lock(&cr.lock);
    if cr.state.load(Relaxed) == LIVE {
        // SAFETY: the state is LIVE and we hold the lock, so the pool's drop
        // has not passed this cache and its shared state is alive.
        let inner = unsafe { &*cr.inner };
        let (l, ln, s, sn) = cr.take_all();
        // SAFETY: the chains were detached from our cache.
        let n = unsafe { inner.absorb(l, ln, s, sn) };
        bump(&cr.released, n);
        cr.state.store(THREAD_GONE, Release);
        drop(held);
    } else {
        drop(held);
        // SAFETY: the pool is gone and so is our thread.
        unsafe { free_cache(c) };
    }
}

std::thread_local! {
    pub(super) static TABLE: Table = const { Table::new() };
    pub(super) static EXIT_GUARD: ExitGuard = const { ExitGuard };
}
