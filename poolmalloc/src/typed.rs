//! Layer 8: typed object pools, [`TypedPool<T>`] and [`PoolBox`], the Rust
//! form of CPython's per-type free lists (100 floats, 80 lists, 2000 tuples
//! of each small size, cleared by `gc.collect()`).
//!
//! Application code calls it: a program that makes and drops many values of
//! one type keeps a `TypedPool<T>` (often in a `static`) and allocates with
//! [`TypedPool::alloc`]. Slots come from poolmalloc's pools through
//! [`PoolMalloc`] with the slot's layout and go back there when a cache is
//! over its cap or on [`TypedPool::trim`].
//!
//! # Threads
//!
//! A pool is shared by reference between threads. Each thread keeps its own
//! cache of free slots for each pool it uses, so the common path takes no
//! lock and makes no atomic read-modify-write. A [`PoolBox`] may be dropped on
//! any thread: its slot goes into the dropping thread's cache for the same
//! pool. Caches exchange whole magazines through the pool's depot, under a
//! lock, so a producer/consumer pair reuses slots in both directions.
//!
//! Boxes borrow their pool (`PoolBox<'a, T>`). A box without a lifetime
//! would have to keep its pool alive by reference counting, one atomic
//! read-modify-write per box made and per box dropped, which is what the
//! per-thread caches exist to avoid. A `static` pool gives `'static` boxes
//! that can go anywhere; scoped threads share a local pool.
//!
//! Like `std::sync::Mutex`, the pool's locks are not reset by `fork`: a child
//! must not use a pool whose depot or registry lock another thread of the
//! parent held at the time. Slots cached by threads that do not exist in the
//! child are not reused there (never handed out twice).
//!
//! # How a thread finds its cache
//!
//! Every pool gets, on first use, a *stamp*: a generation number that no
//! other pool in the process will ever have, a table index, and a trim epoch.
//! Each thread has a fixed table of [`TABLE_SIZE`] entries in thread-local
//! storage, each holding a stamp and a pointer to a cache. The fast path
//! reads the pool's stamp, indexes the table with it and compares stamps:
//! equal means the entry is this thread's cache for this very pool, trimmed
//! no more recently than the cache was flushed. Table indices are handed out
//! lowest-free-first to live pools, so up to [`TABLE_SIZE`] live pools never
//! share an entry; beyond that pools share indices, and a thread keeps the
//! caches it moved out of an entry on a private overflow list that the slow
//! path searches. A pool's index is released when it is dropped; the
//! generation part of the stamp tells a stale entry from its new user.
//!
//! The table is a `const`-initialised thread-local without a destructor, so
//! reaching it is one thread-pointer-relative access with no liveness check
//! and no allocation. A separate thread-local guard, registered when the
//! thread makes its first cache, retires the caches at thread exit; boxes
//! dropped by later destructors of that thread go to the pool's depot.
//!
//! # Teardown
//!
//! A cache (per thread and pool) lives in memory from the pool layer, is
//! linked into its pool's registry and is referenced from its thread's table.
//! Two parties can end it, and its `lock` serialises them:
//!
//! * **Thread exit** (the guard's destructor): under the cache's lock, a
//!   cache whose pool is alive gives its slots to the pool's depot and is
//!   marked `THREAD_GONE`; the pool frees it later. A cache whose pool is
//!   gone is freed.
//! * **Pool drop**: the pool has exclusive access, so no thread is using any
//!   of its caches except to tear them down. Under each cache's lock, a live
//!   cache's slots are released to the pool layer and the cache is marked
//!   `POOL_GONE`; its thread frees it when it next meets it (index reuse,
//!   overflow search, exit). A `THREAD_GONE` cache is freed.
//!
//! A thread's destructor reads its caches' pools only under the cache lock
//! with the state still `LIVE`; a pool's drop takes every cache lock before it
//! frees its shared state, so that state is alive whenever it is read.
//!
//! [`TypedPool::trim`] cannot touch other threads' caches while they run
//! lock-free, so it releases the calling thread's cache and the depot at once
//! and advances the pool's epoch. Every other thread's stamp comparison then
//! fails on its next use of the pool, and that thread releases its cache
//! before going on. A thread that never uses the pool again releases its
//! cache when it exits or when the pool is dropped.

use crate::global::PoolMalloc;
use crate::lock::RawLock;
use crate::sync::Local;
use core::alloc::{GlobalAlloc, Layout};
use core::cell::{Cell, UnsafeCell};
use core::fmt;
use core::marker::PhantomData;
use core::mem::{self, ManuallyDrop};
use core::ops::{Deref, DerefMut};
use core::pin::Pin;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering::*};
use std::alloc::handle_alloc_error;

/// Default cap on free slots kept per pool: a single thread keeps at most
/// this many (see [`TypedPool::with_cap`]). It sits within CPython's range
/// (80 lists, 100 floats, 2000 tuples of each size).
pub const DEFAULT_CAP: usize = 1024;

/// Entries in each thread's cache table; live pools beyond this many share
/// entries.
pub const TABLE_SIZE: usize = 1 << INDEX_BITS;

// Stamp layout, high to low: generation (42 bits), table index (6 bits),
// trim epoch (16 bits).
const EPOCH_BITS: u32 = 16;
const INDEX_BITS: u32 = 6;
const GEN_SHIFT: u32 = EPOCH_BITS + INDEX_BITS;
const EPOCH_MASK: u64 = (1 << EPOCH_BITS) - 1;
const BASE_MASK: u64 = !EPOCH_MASK;
/// Largest generation; the stamp of a pool never equals [`EMPTY_ENTRY`].
const MAX_GEN: u64 = (1 << (64 - GEN_SHIFT)) - 2;
/// A pool's stamp before its first use (no entry ever holds it).
const UNASSIGNED: u64 = 0;
/// An empty table entry's stamp (no pool ever has it).
const EMPTY_ENTRY: u64 = u64::MAX;

const _: () = assert!(INDEX_BITS <= 6, "the index bitmap is one u64");
const _: () = assert!((MAX_GEN << GEN_SHIFT) | (((TABLE_SIZE as u64) - 1) << EPOCH_BITS) | EPOCH_MASK != EMPTY_ENTRY);

/// The next generation to hand out; generations are never reused.
static NEXT_GEN: AtomicU64 = AtomicU64::new(1);
/// Table indices held by live pools (bit i: index i is taken).
static INDEX_MAP: AtomicU64 = AtomicU64::new(0);

#[inline(always)]
const fn table_index(stamp: u64) -> usize {
    (stamp >> EPOCH_BITS) as usize & (TABLE_SIZE - 1)
}

// ---------------------------------------------------------------------------
// Slots and chains.

/// The first two words of a free slot: the next slot of its chain, and, in
/// the head slot of a chain parked in a depot, the next chain.
#[repr(C)]
struct FreeSlot {
    next: *mut FreeSlot,
    next_chain: *mut FreeSlot,
}

/// The layout of a slot for `T`: room for `T` and for a [`FreeSlot`].
const fn slot_layout<T>() -> Layout {
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
static OUTSTANDING: core::sync::atomic::AtomicIsize = core::sync::atomic::AtomicIsize::new(0);

/// Takes a fresh slot from the pool layer (null when out of memory).
fn slot_alloc(layout: Layout) -> *mut FreeSlot {
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
unsafe fn release_chain(mut head: *mut FreeSlot, len: usize, layout: Layout) -> u64 {
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
unsafe fn split_chain(head: &mut *mut FreeSlot, n: usize) -> *mut FreeSlot {
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
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

/// Event counts of a cache or of a pool's shared paths.
#[derive(Clone, Copy, Default)]
struct Counts {
    allocs: u64,
    frees: u64,
    misses: u64,
    released: u64,
}

impl Counts {
    fn add(&mut self, o: Counts) {
        self.allocs = self.allocs.wrapping_add(o.allocs);
        self.frees = self.frees.wrapping_add(o.frees);
        self.misses = self.misses.wrapping_add(o.misses);
        self.released = self.released.wrapping_add(o.released);
    }
}

// ---------------------------------------------------------------------------
// A value behind a lock.

/// A value guarded by a [`RawLock`]: the slow-path state of the typed and
/// buffer pools. The closure given to [`Locked::with`] must not take the
/// same lock again.
pub(crate) struct Locked<T> {
    lock: RawLock,
    value: UnsafeCell<T>,
}

// SAFETY: the value is only reached under the lock (or through `&mut self`),
// so sharing the wrapper hands the value from thread to thread one holder at
// a time, which `T: Send` allows.
unsafe impl<T: Send> Sync for Locked<T> {}

impl<T> Locked<T> {
    pub(crate) const fn new(value: T) -> Self {
        Locked { lock: RawLock::new(), value: UnsafeCell::new(value) }
    }

    /// Runs `f` on the value with the lock held.
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        struct Unlock<'a>(&'a RawLock);
        impl Drop for Unlock<'_> {
            fn drop(&mut self) {
                self.0.unlock();
            }
        }
        self.lock.lock();
        let _unlock = Unlock(&self.lock);
        // SAFETY: the lock is held until `_unlock` drops, so this is the only
        // reference to the value.
        f(unsafe { &mut *self.value.get() })
    }

    /// The value, through exclusive access.
    pub(crate) fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }
}

// ---------------------------------------------------------------------------
// Per-thread caches.

/// Cache states (`Cache::state`).
const LIVE: u8 = 0;
/// The thread exited; the cache is empty and its pool frees it.
const THREAD_GONE: u8 = 1;
/// The pool was dropped; the cache is empty and its thread frees it.
const POOL_GONE: u8 = 2;

/// One thread's free slots for one pool: two magazines, `loaded` (taken from
/// and refilled first) and `spare` (either empty or full), in the manner of
/// Bonwick's magazine layer.
///
/// Owner: the thread whose table references it, while that thread holds a
/// borrow of the pool. Others touch it only through atomics (statistics,
/// under the pool's registry lock) or under `lock` in teardown (see the
/// module docs).
#[repr(C, align(64))]
struct Cache {
    /// Head of the loaded chain; it holds `loaded_len` slots.
    loaded: Local<*mut FreeSlot>,
    /// Slots in `loaded`, at most `mag`. Owner writes, statistics read.
    loaded_len: AtomicUsize,
    /// Head of the spare chain; it holds `spare_len` slots.
    spare: Local<*mut FreeSlot>,
    /// Slots in `spare`: 0 or `mag`. Owner writes, statistics read.
    spare_len: AtomicUsize,
    /// Magazine size of the pool (immutable).
    mag: usize,
    /// PoolBoxes made by this thread (owner writes).
    allocs: AtomicU64,
    /// PoolBoxes given back on this thread (owner writes).
    frees: AtomicU64,
    /// Allocations that took a fresh slot from the pool layer (owner writes).
    misses: AtomicU64,
    /// Slots this cache gave back to the pool layer (owner writes).
    released: AtomicU64,
    /// The pool stamp this cache was last flushed for; a table entry holding
    /// this cache holds this stamp. Owner only.
    synced: Local<u64>,
    /// Next cache on the owner thread's overflow list. Owner only.
    next_in_thread: Local<*mut Cache>,
    /// The pool's generation and index (its stamp without the epoch).
    base: u64,
    /// Slot layout of the pool (immutable).
    slot: Layout,
    /// The pool's shared state: valid while the owner holds a borrow of the
    /// pool, or while `state` is `LIVE` and `lock` is held.
    inner: *const Inner,
    /// Serialises thread exit against pool drop.
    lock: RawLock,
    /// `LIVE`, `THREAD_GONE` or `POOL_GONE`; changed only under `lock`.
    state: AtomicU8,
    /// Next cache in the pool's registry. Guarded by the registry lock.
    next_in_pool: Local<*mut Cache>,
}

impl Cache {
    /// Takes a slot from the loaded magazine (null when it is empty).
    #[inline(always)]
    fn pop(&self) -> *mut FreeSlot {
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
    unsafe fn push(&self, slot: *mut FreeSlot) -> bool {
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

    fn counts(&self) -> Counts {
        Counts {
            allocs: self.allocs.load(Relaxed),
            frees: self.frees.load(Relaxed),
            misses: self.misses.load(Relaxed),
            released: self.released.load(Relaxed),
        }
    }

    fn cached(&self) -> usize {
        self.loaded_len.load(Relaxed) + self.spare_len.load(Relaxed)
    }

    /// Takes both magazines out: `(loaded, loaded_len, spare, spare_len)`.
    /// The caller must own the cache or hold `lock` in teardown.
    fn take_all(&self) -> (*mut FreeSlot, usize, *mut FreeSlot, usize) {
        let r = (self.loaded.get(), self.loaded_len.load(Relaxed), self.spare.get(), self.spare_len.load(Relaxed));
        self.loaded.set(ptr::null_mut());
        self.loaded_len.store(0, Relaxed);
        self.spare.set(ptr::null_mut());
        self.spare_len.store(0, Relaxed);
        r
    }

    /// Gives every cached slot back to the pool layer. Owner only.
    fn flush(&self) {
        let (l, ln, s, sn) = self.take_all();
        // SAFETY: the chains are this cache's and were just detached.
        let n = unsafe { release_chain(l, ln, self.slot) + release_chain(s, sn, self.slot) };
        bump(&self.released, n);
    }
}

/// Allocates and registers this thread's cache for the pool behind `inner`.
/// Null when out of memory.
fn new_cache(inner: &Inner, stamp: u64) -> *mut Cache {
    let layout = Layout::new::<Cache>();
    // SAFETY: a non-zero-size layout.
    let c = unsafe { PoolMalloc.alloc(layout) }.cast::<Cache>();
    if c.is_null() {
        return c;
    }
    let cache = Cache {
        loaded: Local::new(ptr::null_mut()),
        loaded_len: AtomicUsize::new(0),
        spare: Local::new(ptr::null_mut()),
        spare_len: AtomicUsize::new(0),
        mag: inner.mag,
        allocs: AtomicU64::new(0),
        frees: AtomicU64::new(0),
        misses: AtomicU64::new(0),
        released: AtomicU64::new(0),
        synced: Local::new(stamp),
        next_in_thread: Local::new(ptr::null_mut()),
        base: inner.base,
        slot: inner.slot,
        inner,
        lock: RawLock::new(),
        state: AtomicU8::new(LIVE),
        next_in_pool: Local::new(ptr::null_mut()),
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
unsafe fn free_cache(c: *mut Cache) {
    // SAFETY: `c` came from `PoolMalloc` with this layout.
    unsafe { PoolMalloc.dealloc(c.cast(), Layout::new::<Cache>()) };
}

/// Waits until whoever set a cache's final state has released its lock; after
/// this the cache may be freed. (The releasing side may still issue a futex
/// wake on the address, which is harmless after the memory is freed.)
fn wait_released(c: &Cache) {
    c.lock.lock();
    c.lock.unlock();
}

/// Frees the `THREAD_GONE` caches of a registry, folding their counts in.
///
/// # Safety
/// The registry lock must be held, and every cache on the list must be live
/// memory (the registry's invariant).
unsafe fn sweep(r: &mut Registry) {
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
struct Entry {
    stamp: Cell<u64>,
    cache: Cell<*mut Cache>,
}

/// Table phases (`Table::phase`): no cache made yet.
const FRESH: u8 = 0;
/// The exit guard is registered; caches may be made.
const GUARDED: u8 = 1;
/// The thread is exiting and its caches are retired; none are made again.
const EXITED: u8 = 2;

/// A thread's caches: direct-mapped by table index, plus an overflow list of
/// caches moved out of their entry by another pool with the same index.
/// Every cache of the thread is in exactly one entry or on the overflow list.
///
/// The table has no destructor, so the thread-local access on the fast path
/// needs no liveness check; [`ExitGuard`], registered before the first cache
/// is made, retires the caches at thread exit.
struct Table {
    entries: [Entry; TABLE_SIZE],
    overflow: Cell<*mut Cache>,
    /// `FRESH`, `GUARDED` or `EXITED`; caches exist only while `GUARDED`.
    phase: Cell<u8>,
}

impl Table {
    const fn new() -> Self {
        #[allow(clippy::declare_interior_mutable_const)]
        const EMPTY: Entry = Entry { stamp: Cell::new(EMPTY_ENTRY), cache: Cell::new(ptr::null_mut()) };
        Table { entries: [EMPTY; TABLE_SIZE], overflow: Cell::new(ptr::null_mut()), phase: Cell::new(FRESH) }
    }

    /// Whether this thread may make a cache: registers the exit guard first.
    fn may_make_cache(&self) -> bool {
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
    unsafe fn park(&self, c: *mut Cache) {
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
    fn take_overflow(&self, base: u64) -> *mut Cache {
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
    fn find(&self, base: u64) -> *mut Cache {
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
struct ExitGuard;

impl Drop for ExitGuard {
    /// Thread exit: every cache is handed back (see the module docs). Later
    /// uses of pools on this thread (from other destructors) take the shared
    /// path.
    fn drop(&mut self) {
        TABLE.with(|t| t.retire_all());
    }
}

impl Table {
    fn retire_all(&self) {
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
unsafe fn retire(c: *mut Cache) {
    // SAFETY: our caches stay allocated until the pool frees a `THREAD_GONE`
    // one, which cannot happen before we set that state below.
    let cr = unsafe { &*c };
    cr.lock.lock();
    if cr.state.load(Relaxed) == LIVE {
        // SAFETY: the state is LIVE and we hold the lock, so the pool's drop
        // has not passed this cache and its shared state is alive.
        let inner = unsafe { &*cr.inner };
        let (l, ln, s, sn) = cr.take_all();
        // SAFETY: the chains were detached from our cache.
        let n = unsafe { inner.absorb(l, ln, s, sn) };
        bump(&cr.released, n);
        cr.state.store(THREAD_GONE, Release);
        cr.lock.unlock();
    } else {
        cr.lock.unlock();
        // SAFETY: the pool is gone and so is our thread.
        unsafe { free_cache(c) };
    }
}

std::thread_local! {
    static TABLE: Table = const { Table::new() };
    static EXIT_GUARD: ExitGuard = const { ExitGuard };
}

// ---------------------------------------------------------------------------
// Shared state of a pool.

/// The pool's registry of thread caches.
struct Registry {
    /// Every cache of the pool that its pool has not freed, linked through
    /// `next_in_pool`: `LIVE` ones and `THREAD_GONE` ones not yet swept.
    head: *mut Cache,
    /// Counts of caches already freed.
    retired: Counts,
}

// SAFETY: the registry is reached only under its lock; the caches it links
// are shared by protocol (see `Cache`).
unsafe impl Send for Registry {}

/// Free slots shared by a pool's threads.
struct Depot {
    /// Full magazines (`mag` slots each), linked through the head slot's
    /// `next_chain`.
    chains: *mut FreeSlot,
    n_chains: usize,
    /// Single slots from exiting threads and from threads without a cache.
    loose: *mut FreeSlot,
    loose_len: usize,
    /// Counts of the operations served here directly (threads without a
    /// cache) and of the depot's own releases.
    counts: Counts,
}

// SAFETY: the depot is reached only under its lock; its slots are plain
// memory that it owns.
unsafe impl Send for Depot {}

impl Depot {
    fn cached(&self, mag: usize) -> usize {
        self.n_chains * mag + self.loose_len
    }
}

/// The heap-allocated part of a pool, created on first use. It does not move
/// when the `TypedPool` does, so caches may point at it.
struct Inner {
    /// Generation and index of the pool (its stamp without the epoch).
    base: u64,
    /// Whether the pool holds its index in `INDEX_MAP`.
    owns_index: bool,
    slot: Layout,
    /// Magazine size: `cap / 4`.
    mag: usize,
    /// Most slots the depot holds: `cap - 2 * mag`.
    depot_limit: usize,
    registry: Locked<Registry>,
    depot: Locked<Depot>,
}

impl Inner {
    /// Allocation without a thread cache (thread-local storage gone, or no
    /// memory for a cache). Null when out of memory.
    fn alloc_shared(&self, zst: bool) -> *mut FreeSlot {
        let p = self.depot.with(|d| {
            if zst {
                d.counts.allocs += 1;
                return NonNull::<FreeSlot>::dangling().as_ptr();
            }
            if d.loose_len == 0 && d.n_chains > 0 {
                d.loose = d.chains;
                // SAFETY: the depot holds `n_chains > 0` chains.
                d.chains = unsafe { (*d.loose).next_chain };
                d.n_chains -= 1;
                d.loose_len = self.mag;
            }
            if d.loose_len == 0 {
                return ptr::null_mut();
            }
            let p = d.loose;
            // SAFETY: `loose` holds `loose_len > 0` slots.
            d.loose = unsafe { (*p).next };
            d.loose_len -= 1;
            d.counts.allocs += 1;
            p
        });
        if !p.is_null() {
            return p;
        }
        let p = slot_alloc(self.slot);
        if !p.is_null() {
            self.depot.with(|d| {
                d.counts.allocs += 1;
                d.counts.misses += 1;
            });
        }
        p
    }

    /// Free without a thread cache.
    ///
    /// # Safety
    /// `slot` must be a slot of this pool that nothing else uses (anything
    /// for a zero-sized type).
    unsafe fn free_shared(&self, slot: *mut FreeSlot, zst: bool) {
        let kept = self.depot.with(|d| {
            d.counts.frees += 1;
            if zst {
                return true;
            }
            if d.cached(self.mag) >= self.depot_limit {
                d.counts.released += 1;
                return false;
            }
            // SAFETY: by the caller the slot is ours.
            unsafe { (*slot).next = d.loose };
            d.loose = slot;
            d.loose_len += 1;
            true
        });
        if !kept {
            // SAFETY: by the caller the slot is ours.
            unsafe { release_chain(slot, 1, self.slot) };
        }
    }

    /// Takes slots for a thread's empty cache: a full chain, or up to
    /// `max(mag, 1)` loose slots. Returns the chain and its length (0: none).
    fn take_for_cache(&self) -> (*mut FreeSlot, usize) {
        self.depot.with(|d| {
            if d.n_chains > 0 {
                let c = d.chains;
                // SAFETY: the depot holds `n_chains > 0` chains.
                d.chains = unsafe { (*c).next_chain };
                d.n_chains -= 1;
                return (c, self.mag);
            }
            let n = d.loose_len.min(self.mag.max(1));
            if n == 0 {
                return (ptr::null_mut(), 0);
            }
            // SAFETY: `loose` holds at least `n` slots.
            let c = unsafe { split_chain(&mut d.loose, n) };
            d.loose_len -= n;
            (c, n)
        })
    }

    /// Offers a full magazine to the depot; returns whether it was taken.
    ///
    /// # Safety
    /// `chain` must start a chain of `mag` free slots owned by the caller.
    unsafe fn offer_chain(&self, chain: *mut FreeSlot) -> bool {
        self.depot.with(|d| {
            if self.mag == 0 || d.cached(self.mag) + self.mag > self.depot_limit {
                return false;
            }
            // SAFETY: by the caller the chain is ours.
            unsafe { (*chain).next_chain = d.chains };
            d.chains = chain;
            d.n_chains += 1;
            true
        })
    }

    /// Takes an exiting thread's magazines: the spare if full and there is
    /// room, loaded slots one by one while there is room; the rest goes back
    /// to the pool layer. Returns the number released.
    ///
    /// # Safety
    /// The chains must hold the stated numbers of free slots of this pool,
    /// owned by the caller.
    unsafe fn absorb(&self, loaded: *mut FreeSlot, ln: usize, spare: *mut FreeSlot, sn: usize) -> u64 {
        let (mut loaded, mut ln, spare, sn) = (loaded, ln, spare, sn);
        let spare_kept = sn > 0 && sn == self.mag && {
            // SAFETY: forwarded from the caller.
            unsafe { self.offer_chain(spare) }
        };
        self.depot.with(|d| {
            while ln > 0 && d.cached(self.mag) < self.depot_limit {
                let p = loaded;
                // SAFETY: `loaded` holds `ln > 0` slots.
                loaded = unsafe { (*p).next };
                ln -= 1;
                // SAFETY: the slot is ours.
                unsafe { (*p).next = d.loose };
                d.loose = p;
                d.loose_len += 1;
            }
        });
        // SAFETY: what is left of the chains is ours.
        unsafe {
            release_chain(loaded, ln, self.slot) + if spare_kept { 0 } else { release_chain(spare, sn, self.slot) }
        }
    }
}

// ---------------------------------------------------------------------------
// The pool.

/// The part of a pool that does not depend on `T`.
struct Core {
    /// The pool's stamp (generation, index, epoch), `UNASSIGNED` before its
    /// first use. Set once from `UNASSIGNED`; afterwards only the epoch
    /// changes (by `trim`).
    stamp: AtomicU64,
    /// Shared state, null before first use; set once.
    inner: AtomicPtr<Inner>,
    /// The cap given at construction.
    cap: usize,
}

/// A pool of slots for values of type `T`, with per-thread caches of free
/// slots in front of poolmalloc's pools.
///
/// ```
/// use poolmalloc::TypedPool;
///
/// #[derive(Debug, PartialEq)]
/// struct Point { x: f64, y: f64, z: f64 }
///
/// let pool = TypedPool::new();
/// let mut p = pool.alloc(Point { x: 1.0, y: 2.0, z: 3.0 });
/// p.x += 1.0;
/// assert_eq!(*p, Point { x: 2.0, y: 2.0, z: 3.0 });
/// drop(p); // the slot goes into this thread's cache
/// let q = pool.alloc(Point { x: 0.0, y: 0.0, z: 0.0 }); // and is reused
/// assert_eq!(pool.stats().hits, 1);
/// let v = poolmalloc::PoolBox::into_inner(q);
/// assert_eq!(v.x, 0.0);
/// ```
///
/// Boxes borrow the pool, so they cannot outlive it. To send them to other
/// threads, put the pool in a `static` ([`TypedPool::new`] is `const`) or use
/// scoped threads:
///
/// ```
/// use poolmalloc::TypedPool;
/// use std::sync::mpsc;
///
/// static POOL: TypedPool<[u64; 4]> = TypedPool::new();
///
/// let (tx, rx) = mpsc::channel();
/// let consumer = std::thread::spawn(move || {
///     let mut sum = 0;
///     for b in rx {
///         let b: poolmalloc::PoolBox<'static, [u64; 4]> = b;
///         sum += b[0]; // dropped here: the slot joins this thread's cache
///     }
///     sum
/// });
/// for i in 0..1000 {
///     tx.send(POOL.alloc([i, 0, 0, 0])).unwrap();
/// }
/// drop(tx);
/// assert_eq!(consumer.join().unwrap(), 499_500);
/// assert_eq!(POOL.stats().live, 0);
/// ```
///
/// # Cap
///
/// Each thread keeps at most `cap / 2` free slots of a pool (two magazines of
/// `cap / 4`), and the pool's shared depot at most `cap - 2 * (cap / 4)`, so
/// a single thread never keeps more than `cap` and every further thread that
/// uses the pool adds at most `cap / 2`. Slots beyond that go back to the pool
/// layer at once. With a cap below 4 there are no thread caches and every
/// operation takes the depot's lock.
///
/// # Threads
///
/// `TypedPool<T>` is `Send` and `Sync` for every `T`: it never holds a `T`
/// (free slots are uninitialised memory), so sharing it moves no value
/// between threads. A `PoolBox<T>` is `Send` when `T: Send`.
pub struct TypedPool<T> {
    core: Core,
    _t: PhantomData<fn() -> T>,
}

impl<T> Default for TypedPool<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for TypedPool<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedPool").field("cap", &self.core.cap).field("stats", &self.stats()).finish()
    }
}

impl<T> TypedPool<T> {
    const SLOT: Layout = slot_layout::<T>();
    const IS_ZST: bool = mem::size_of::<T>() == 0;

    /// An empty pool with the [`DEFAULT_CAP`]. Nothing is allocated until
    /// first use, so this works in a `static`.
    pub const fn new() -> Self {
        Self::with_cap(DEFAULT_CAP)
    }

    /// An empty pool keeping at most `cap` free slots per single thread (see
    /// the type's docs for how the cap is shared). A cap of 0 caches nothing:
    /// every drop gives the slot straight back to the pool layer.
    pub const fn with_cap(cap: usize) -> Self {
        TypedPool {
            core: Core { stamp: AtomicU64::new(UNASSIGNED), inner: AtomicPtr::new(ptr::null_mut()), cap },
            _t: PhantomData,
        }
    }

    /// The cap given at construction.
    pub fn cap(&self) -> usize {
        self.core.cap
    }

    /// The layout of one slot: `T`'s, grown to at least two pointers.
    pub const fn slot_layout() -> Layout {
        Self::SLOT
    }

    /// Moves `value` into a slot of the pool.
    ///
    /// On out-of-memory this calls [`handle_alloc_error`], like `Box::new`.
    #[inline]
    pub fn alloc(&self, value: T) -> PoolBox<'_, T> {
        match self.try_alloc(value) {
            Ok(b) => b,
            Err(_) => handle_alloc_error(Self::SLOT),
        }
    }

    /// Moves `value` into a slot of the pool, or gives it back when memory
    /// is exhausted.
    #[inline]
    pub fn try_alloc(&self, value: T) -> Result<PoolBox<'_, T>, T> {
        let Some(slot) = NonNull::new(self.take_slot()) else { return Err(value) };
        // Zero-sized values live at a dangling pointer aligned for `T`.
        let ptr = if Self::IS_ZST { NonNull::dangling() } else { slot.cast::<T>() };
        // SAFETY: the slot is ours, sized and aligned for `T` (or `T` is
        // zero-sized and the pointer is dangling but aligned).
        unsafe { ptr.as_ptr().write(value) };
        Ok(PoolBox { ptr, pool: self, _owns: PhantomData })
    }

    /// A free slot (dangling for zero-sized types); null when out of memory.
    #[inline(always)]
    fn take_slot(&self) -> *mut FreeSlot {
        let s = self.core.stamp.load(Relaxed);
        let p = TABLE.with(|t| {
            let e = &t.entries[table_index(s)];
            if e.stamp.get() != s {
                return ptr::null_mut();
            }
            // SAFETY: an entry whose stamp equals the pool's holds this
            // thread's live cache of this pool (stamps are never reused).
            let c = unsafe { &*e.cache.get() };
            if Self::IS_ZST {
                bump(&c.allocs, 1);
                return NonNull::<T>::dangling().as_ptr().cast();
            }
            c.pop()
        });
        if !p.is_null() {
            return p;
        }
        self.core.take_slow(Self::SLOT, Self::IS_ZST)
    }

    /// Returns a slot (after its value was dropped or moved out).
    #[inline(always)]
    fn give_slot(&self, slot: NonNull<u8>) {
        let slot = slot.as_ptr().cast::<FreeSlot>();
        let s = self.core.stamp.load(Relaxed);
        let done = TABLE.with(|t| {
            let e = &t.entries[table_index(s)];
            if e.stamp.get() != s {
                return false;
            }
            // SAFETY: as in `take_slot`.
            let c = unsafe { &*e.cache.get() };
            if Self::IS_ZST {
                bump(&c.frees, 1);
                return true;
            }
            // SAFETY: the slot belonged to a box of this pool and is ours now.
            unsafe { c.push(slot) }
        });
        if !done {
            // SAFETY: as above.
            unsafe { self.core.give_slow(slot, Self::SLOT, Self::IS_ZST) }
        }
    }

    /// Gives every free slot this pool caches back to the pool layer, the way
    /// `gc.collect()` clears CPython's free lists. Live boxes are not
    /// affected.
    ///
    /// The calling thread's cache and the shared depot are emptied at once.
    /// Other threads' caches are emptied by those threads the next time they
    /// use the pool, or when they exit, or when the pool is dropped, since
    /// they are read without locks.
    pub fn trim(&self) {
        let Some(inner) = self.core.inner() else { return };
        // The thread that set the pool up may not have published the stamp
        // yet; the epoch must only ever be advanced on an assigned stamp.
        let _ = self.core.stamp.compare_exchange(UNASSIGNED, inner.base, Relaxed, Relaxed);
        let mut s = self.core.stamp.load(Relaxed);
        let s = loop {
            let n = (s & BASE_MASK) | (s.wrapping_add(1) & EPOCH_MASK);
            match self.core.stamp.compare_exchange_weak(s, n, Relaxed, Relaxed) {
                Ok(_) => break n,
                Err(v) => s = v,
            }
        };
        TABLE.with(|t| {
            let c = t.find(inner.base);
            if c.is_null() {
                return;
            }
            // SAFETY: our cache of this pool, which we are borrowing.
            let cr = unsafe { &*c };
            cr.flush();
            cr.synced.set(s);
            let e = &t.entries[table_index(s)];
            if e.cache.get() == c {
                e.stamp.set(s);
            }
        });
        let (chains, nc, loose, nl) = inner.depot.with(|d| {
            let r = (d.chains, d.n_chains, d.loose, d.loose_len);
            d.counts.released += (d.n_chains * inner.mag + d.loose_len) as u64;
            d.chains = ptr::null_mut();
            d.n_chains = 0;
            d.loose = ptr::null_mut();
            d.loose_len = 0;
            r
        });
        // SAFETY: the chains were detached from the depot and are ours.
        unsafe { release_depot(chains, nc, loose, nl, inner.mag, inner.slot) };
        inner.registry.with(|r| {
            // SAFETY: we hold the registry lock.
            unsafe { sweep(r) }
        });
    }

    /// A snapshot of the pool's figures. Other threads' figures are read
    /// without stopping them, so each is exact only when they are idle.
    pub fn stats(&self) -> TypedPoolStats {
        let slot_size = if Self::IS_ZST { 0 } else { Self::SLOT.size() };
        let mut st = TypedPoolStats { slot_size, cap: self.core.cap, ..TypedPoolStats::default() };
        let Some(inner) = self.core.inner() else { return st };
        let mut counts = Counts::default();
        let mut cached = 0;
        inner.registry.with(|r| {
            counts = r.retired;
            let mut c = r.head;
            while !c.is_null() {
                // SAFETY: registered caches are live while on the list, which
                // we hold the lock of.
                let cr = unsafe { &*c };
                counts.add(cr.counts());
                cached += cr.cached();
                if cr.state.load(Relaxed) == LIVE {
                    st.threads += 1;
                }
                c = cr.next_in_pool.get();
            }
        });
        inner.depot.with(|d| {
            counts.add(d.counts);
            cached += d.cached(inner.mag);
        });
        st.live = counts.allocs.saturating_sub(counts.frees) as usize;
        st.cached = cached;
        st.hits = counts.allocs.saturating_sub(counts.misses);
        st.misses = counts.misses;
        st.released = counts.released;
        st.bytes = (st.live + st.cached) * slot_size;
        st
    }
}

/// Gives a depot's chains and loose slots back to the pool layer.
///
/// # Safety
/// The arguments must describe chains detached from a depot, owned by the
/// caller.
unsafe fn release_depot(
    mut chains: *mut FreeSlot,
    nc: usize,
    loose: *mut FreeSlot,
    nl: usize,
    mag: usize,
    slot: Layout,
) {
    for _ in 0..nc {
        // SAFETY: the depot held `nc` chains of `mag` slots.
        let next = unsafe { (*chains).next_chain };
        // SAFETY: as above.
        unsafe { release_chain(chains, mag, slot) };
        chains = next;
    }
    // SAFETY: the depot held `nl` loose slots.
    unsafe { release_chain(loose, nl, slot) };
}

impl Core {
    /// The shared state, if the pool has been used.
    #[inline]
    fn inner(&self) -> Option<&Inner> {
        // SAFETY: once set, `inner` points at the pool's shared state until
        // the pool is dropped, which cannot happen while `self` is borrowed.
        unsafe { self.inner.load(Acquire).as_ref() }
    }

    /// Sets the pool up on first use; returns its shared state and current
    /// stamp, or `None` when out of memory.
    fn init(&self, slot: Layout) -> Option<(&Inner, u64)> {
        let inner = match self.inner() {
            Some(i) => i,
            None => {
                let gen = NEXT_GEN.fetch_add(1, Relaxed);
                assert!(gen <= MAX_GEN, "TypedPool generations exhausted");
                // SAFETY: a non-zero-size layout.
                let p = unsafe { PoolMalloc.alloc(Layout::new::<Inner>()) }.cast::<Inner>();
                if p.is_null() {
                    return None;
                }
                let mut map = INDEX_MAP.load(Relaxed);
                let claimed = loop {
                    if map == u64::MAX {
                        break None;
                    }
                    let bit = (!map).trailing_zeros();
                    match INDEX_MAP.compare_exchange_weak(map, map | (1 << bit), Relaxed, Relaxed) {
                        Ok(_) => break Some(bit as u64),
                        Err(v) => map = v,
                    }
                };
                let index = claimed.unwrap_or(gen % TABLE_SIZE as u64);
                let mag = self.cap / 4;
                let value = Inner {
                    base: (gen << GEN_SHIFT) | (index << EPOCH_BITS),
                    owns_index: claimed.is_some(),
                    slot,
                    mag,
                    depot_limit: self.cap - 2 * mag,
                    registry: Locked::new(Registry { head: ptr::null_mut(), retired: Counts::default() }),
                    depot: Locked::new(Depot {
                        chains: ptr::null_mut(),
                        n_chains: 0,
                        loose: ptr::null_mut(),
                        loose_len: 0,
                        counts: Counts::default(),
                    }),
                };
                // SAFETY: `p` is a fresh block for an `Inner`.
                unsafe { p.write(value) };
                match self.inner.compare_exchange(ptr::null_mut(), p, AcqRel, Acquire) {
                    // SAFETY: just published; alive until the pool drops.
                    Ok(_) => unsafe { &*p },
                    Err(other) => {
                        // Another thread set the pool up first.
                        // SAFETY: `p` was never published.
                        unsafe { free_inner(p) };
                        // SAFETY: as in `inner()`.
                        unsafe { &*other }
                    }
                }
            }
        };
        let _ = self.stamp.compare_exchange(UNASSIGNED, inner.base, Relaxed, Relaxed);
        Some((inner, self.stamp.load(Relaxed)))
    }

    /// This thread's cache for the pool, installed in its entry and flushed
    /// if the pool was trimmed since the cache last saw it. Null when out of
    /// memory for a new cache.
    ///
    /// # Safety
    /// `t` must be the calling thread's table, `s` the pool's current stamp
    /// and `inner` its shared state.
    unsafe fn resolve(t: &Table, s: u64, inner: &Inner) -> *mut Cache {
        let e = &t.entries[table_index(s)];
        let cur = e.cache.get();
        if !cur.is_null() && e.stamp.get() == s {
            return cur;
        }
        // SAFETY: our caches stay allocated until we free them.
        if !cur.is_null() && (e.stamp.get() & BASE_MASK) == (s & BASE_MASK) {
            // Ours, but the pool was trimmed since.
            // SAFETY: as above.
            let cr = unsafe { &*cur };
            cr.flush();
            cr.synced.set(s);
            e.stamp.set(s);
            return cur;
        }
        let mut c = t.take_overflow(s & BASE_MASK);
        if c.is_null() {
            if !t.may_make_cache() {
                return c;
            }
            c = new_cache(inner, s);
            if c.is_null() {
                return c;
            }
        } else {
            // SAFETY: our cache of this pool.
            let cr = unsafe { &*c };
            if cr.synced.get() != s {
                cr.flush();
                cr.synced.set(s);
            }
        }
        if !cur.is_null() {
            // SAFETY: `cur` leaves its entry and goes nowhere else.
            unsafe { t.park(cur) };
        }
        e.stamp.set(s);
        e.cache.set(c);
        c
    }

    #[cold]
    #[inline(never)]
    fn take_slow(&self, slot: Layout, zst: bool) -> *mut FreeSlot {
        let Some((inner, s)) = self.init(slot) else { return ptr::null_mut() };
        let from_cache = TABLE.with(|t| {
            // SAFETY: our table, the pool's stamp and shared state.
            let c = unsafe { Self::resolve(t, s, inner) };
            if c.is_null() {
                return None;
            }
            // SAFETY: our live cache of this pool.
            let c = unsafe { &*c };
            if zst {
                bump(&c.allocs, 1);
                return Some(NonNull::<FreeSlot>::dangling().as_ptr());
            }
            Some(Self::refill(c, inner))
        });
        match from_cache {
            Some(p) => p,
            None => inner.alloc_shared(zst),
        }
    }

    /// Allocation when the loaded magazine is empty: swap in the spare, else
    /// take slots from the depot, else a fresh slot from the pool layer.
    fn refill(c: &Cache, inner: &Inner) -> *mut FreeSlot {
        let p = c.pop();
        if !p.is_null() {
            return p;
        }
        let sn = c.spare_len.load(Relaxed);
        if sn > 0 {
            c.loaded.set(c.spare.get());
            c.spare.set(ptr::null_mut());
            c.loaded_len.store(sn, Relaxed);
            c.spare_len.store(0, Relaxed);
            return c.pop();
        }
        let (chain, n) = inner.take_for_cache();
        if n > 0 {
            c.loaded.set(chain);
            c.loaded_len.store(n, Relaxed);
            return c.pop();
        }
        let p = slot_alloc(inner.slot);
        if !p.is_null() {
            bump(&c.allocs, 1);
            bump(&c.misses, 1);
        }
        p
    }

    /// # Safety
    /// `slot` must be a slot of this pool that nothing else uses.
    #[cold]
    #[inline(never)]
    unsafe fn give_slow(&self, slot: *mut FreeSlot, layout: Layout, zst: bool) {
        // A box exists, so the pool is set up; `init` only reads it here.
        let Some((inner, s)) = self.init(layout) else { unreachable!("a pool with boxes is set up") };
        let done = TABLE.with(|t| {
            // SAFETY: our table, the pool's stamp and shared state.
            let c = unsafe { Self::resolve(t, s, inner) };
            if c.is_null() {
                return false;
            }
            // SAFETY: our live cache of this pool.
            let c = unsafe { &*c };
            if zst {
                bump(&c.frees, 1);
                return true;
            }
            // SAFETY: forwarded from the caller.
            unsafe { Self::spill(c, inner, slot) };
            true
        });
        if !done {
            // SAFETY: forwarded from the caller.
            unsafe { inner.free_shared(slot, zst) };
        }
    }

    /// Free when the loaded magazine is full: it becomes the spare; a full
    /// spare goes to the depot, or back to the pool layer if the depot is
    /// full.
    ///
    /// # Safety
    /// As for `give_slow`; `c` is the calling thread's cache of the pool.
    unsafe fn spill(c: &Cache, inner: &Inner, slot: *mut FreeSlot) {
        // SAFETY: forwarded from the caller.
        if unsafe { c.push(slot) } {
            return;
        }
        if c.mag == 0 {
            // No magazines: the depot takes the slot (and counts the free).
            // SAFETY: forwarded from the caller.
            unsafe { inner.free_shared(slot, false) };
            return;
        }
        let sn = c.spare_len.load(Relaxed);
        if sn > 0 {
            let spare = c.spare.get();
            // SAFETY: the spare is a full magazine of ours.
            if !unsafe { inner.offer_chain(spare) } {
                // SAFETY: as above.
                let n = unsafe { release_chain(spare, sn, c.slot) };
                bump(&c.released, n);
            }
        }
        c.spare.set(c.loaded.get());
        c.spare_len.store(c.loaded_len.load(Relaxed), Relaxed);
        c.loaded.set(ptr::null_mut());
        c.loaded_len.store(0, Relaxed);
        // SAFETY: forwarded from the caller; the loaded magazine is empty.
        let pushed = unsafe { c.push(slot) };
        debug_assert!(pushed);
    }
}

/// Frees a pool's shared state.
///
/// # Safety
/// `p` must be an `Inner` from `Core::init` that nothing references.
unsafe fn free_inner(p: *mut Inner) {
    // SAFETY: forwarded from the caller.
    unsafe {
        if (*p).owns_index {
            INDEX_MAP.fetch_and(!(1u64 << table_index((*p).base)), Relaxed);
        }
        ptr::drop_in_place(p);
        PoolMalloc.dealloc(p.cast(), Layout::new::<Inner>());
    }
}

impl<T> Drop for TypedPool<T> {
    /// Releases every cached slot, the other threads' included (see the
    /// module docs for the protocol).
    fn drop(&mut self) {
        let p = *self.core.inner.get_mut();
        if p.is_null() {
            return;
        }
        // SAFETY: the pool's shared state, alive until freed below; we have
        // exclusive access to the pool, so no thread uses it except to tear
        // down its cache.
        let inner = unsafe { &mut *p };
        let mut c = mem::replace(&mut inner.registry.get_mut().head, ptr::null_mut());
        while !c.is_null() {
            // SAFETY: registered caches are live while on the list.
            let cr = unsafe { &*c };
            let next = cr.next_in_pool.get();
            cr.lock.lock();
            if cr.state.load(Relaxed) == LIVE {
                let (l, ln, s, sn) = cr.take_all();
                // SAFETY: the owner cannot use the cache while we have
                // exclusive access to the pool, and its exit waits on the lock.
                let _ = unsafe { release_chain(l, ln, inner.slot) + release_chain(s, sn, inner.slot) };
                cr.state.store(POOL_GONE, Release);
                cr.lock.unlock();
            } else {
                cr.lock.unlock();
                // SAFETY: the thread is gone and the cache is off the registry.
                unsafe { free_cache(c) };
            }
            c = next;
        }
        let d = inner.depot.get_mut();
        // SAFETY: the depot's chains are ours; no thread can reach it now.
        unsafe { release_depot(d.chains, d.n_chains, d.loose, d.loose_len, inner.mag, inner.slot) };
        // SAFETY: nothing references the shared state any more.
        unsafe { free_inner(p) };
    }
}

// ---------------------------------------------------------------------------
// Statistics.

/// A snapshot of one [`TypedPool`]'s figures (see [`TypedPool::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TypedPoolStats {
    /// Boxes alive now (made and not yet dropped or unwrapped; leaked boxes
    /// stay counted).
    pub live: usize,
    /// Free slots kept in thread caches and the depot.
    pub cached: usize,
    /// Allocations served from a cache.
    pub hits: u64,
    /// Allocations that took a fresh slot from the pool layer.
    pub misses: u64,
    /// Slots given back to the pool layer (cap, trim, thread exit).
    pub released: u64,
    /// Bytes of slot memory held from the pool layer: `(live + cached) *
    /// slot_size`.
    pub bytes: usize,
    /// Size of one slot (0 for zero-sized types, which use no memory).
    pub slot_size: usize,
    /// Threads with a cache for the pool.
    pub threads: usize,
    /// The pool's cap.
    pub cap: usize,
}

impl fmt::Display for TypedPoolStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.hits + self.misses;
        let rate = if total == 0 { 0.0 } else { 100.0 * self.hits as f64 / total as f64 };
        writeln!(f, "typed pool: {}-byte slots, cap {}, {} thread caches", self.slot_size, self.cap, self.threads)?;
        writeln!(f, "  live      {:>12}", self.live)?;
        writeln!(f, "  cached    {:>12}", self.cached)?;
        writeln!(f, "  bytes     {:>12}", self.bytes)?;
        writeln!(f, "  hits      {:>12}  ({rate:.1}%)", self.hits)?;
        writeln!(f, "  misses    {:>12}", self.misses)?;
        write!(f, "  released  {:>12}", self.released)
    }
}

// ---------------------------------------------------------------------------
// Boxes.

/// A value of type `T` in a slot of a [`TypedPool`]: the pool's `Box`.
///
/// Dropping it drops the value and returns the slot to the pool (on whatever
/// thread it is dropped); [`PoolBox::into_inner`] moves the value out and
/// returns the slot as well. A box always goes back to the pool that made it:
/// it holds a reference to that pool, and no API accepts a box into another.
///
/// It implements what `Box<T>` does for sized `T`, except:
/// * `Default`, `From<T>` and `FromIterator`: a box needs a pool to come from;
/// * unsized values (`PoolBox<dyn Trait>`, `PoolBox<[T]>`), `CoerceUnsized`,
///   the `Fn*` traits and `Any` downcasting: these need unstable features or
///   unsized slots;
/// * `Clone` allocates the copy from the same pool.
pub struct PoolBox<'a, T> {
    /// The value; a live slot of `pool` (dangling for zero-sized `T`).
    ptr: NonNull<T>,
    pool: &'a TypedPool<T>,
    /// The box owns a `T` (for the drop checker).
    _owns: PhantomData<T>,
}

// SAFETY: the box owns its `T` like `Box<T>` does, and the pool is `Sync`.
unsafe impl<T: Send> Send for PoolBox<'_, T> {}
// SAFETY: a shared box gives out only `&T`.
unsafe impl<T: Sync> Sync for PoolBox<'_, T> {}

impl<T> Unpin for PoolBox<'_, T> {}

impl<'a, T> PoolBox<'a, T> {
    /// Moves the value out and returns the slot to the pool.
    pub fn into_inner(b: Self) -> T {
        let b = ManuallyDrop::new(b);
        // SAFETY: the slot holds a value we own; it is not used again.
        let v = unsafe { b.ptr.as_ptr().read() };
        b.pool.give_slot(b.ptr.cast());
        v
    }

    /// Leaks the box: the value and its slot are never given back (the pool
    /// counts it as live).
    pub fn leak(b: Self) -> &'a mut T {
        let b = ManuallyDrop::new(b);
        // SAFETY: the slot stays allocated and unused by the pool forever.
        unsafe { &mut *b.ptr.as_ptr() }
    }

    /// Pins the box. The value never moves until it is dropped: the slot is
    /// reused only after the box drops it.
    pub fn into_pin(b: Self) -> Pin<Self> {
        // SAFETY: the value lives at a fixed address until the box drops it,
        // and `into_inner` cannot be reached through a `Pin`.
        unsafe { Pin::new_unchecked(b) }
    }

    /// The pool the box came from (and will return its slot to).
    pub fn pool(b: &Self) -> &'a TypedPool<T> {
        b.pool
    }

    /// A raw pointer to the value.
    pub fn as_ptr(b: &Self) -> *const T {
        b.ptr.as_ptr()
    }

    /// A raw mutable pointer to the value.
    pub fn as_mut_ptr(b: &mut Self) -> *mut T {
        b.ptr.as_ptr()
    }
}

impl<T> Drop for PoolBox<'_, T> {
    fn drop(&mut self) {
        // Returns the slot even if the value's destructor panics.
        struct GiveBack<'b, T>(&'b TypedPool<T>, NonNull<u8>);
        impl<T> Drop for GiveBack<'_, T> {
            fn drop(&mut self) {
                self.0.give_slot(self.1);
            }
        }
        let _give = GiveBack(self.pool, self.ptr.cast());
        // SAFETY: the slot holds a value we own, dropped exactly once here.
        unsafe { ptr::drop_in_place(self.ptr.as_ptr()) };
    }
}

impl<'a, T> From<PoolBox<'a, T>> for Pin<PoolBox<'a, T>> {
    fn from(b: PoolBox<'a, T>) -> Self {
        PoolBox::into_pin(b)
    }
}

impl<T> Deref for PoolBox<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the slot holds a live value owned by the box.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T> DerefMut for PoolBox<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for `deref`, and the box is borrowed mutably.
        unsafe { self.ptr.as_mut() }
    }
}

impl<T: Clone> Clone for PoolBox<'_, T> {
    /// Clones the value into a new slot of the same pool.
    fn clone(&self) -> Self {
        self.pool.alloc((**self).clone())
    }
}

impl<T> AsRef<T> for PoolBox<'_, T> {
    fn as_ref(&self) -> &T {
        self
    }
}

impl<T> AsMut<T> for PoolBox<'_, T> {
    fn as_mut(&mut self) -> &mut T {
        self
    }
}

impl<T> core::borrow::Borrow<T> for PoolBox<'_, T> {
    fn borrow(&self) -> &T {
        self
    }
}

impl<T> core::borrow::BorrowMut<T> for PoolBox<'_, T> {
    fn borrow_mut(&mut self) -> &mut T {
        self
    }
}

impl<T: fmt::Debug> fmt::Debug for PoolBox<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: fmt::Display> fmt::Display for PoolBox<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

impl<T> fmt::Pointer for PoolBox<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Pointer::fmt(&self.ptr, f)
    }
}

impl<T: PartialEq> PartialEq for PoolBox<'_, T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: Eq> Eq for PoolBox<'_, T> {}

impl<T: PartialOrd> PartialOrd for PoolBox<'_, T> {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        (**self).partial_cmp(&**other)
    }
}

impl<T: Ord> Ord for PoolBox<'_, T> {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        (**self).cmp(&**other)
    }
}

impl<T: core::hash::Hash> core::hash::Hash for PoolBox<'_, T> {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        (**self).hash(state)
    }
}

impl<T: core::hash::Hasher> core::hash::Hasher for PoolBox<'_, T> {
    fn finish(&self) -> u64 {
        (**self).finish()
    }
    fn write(&mut self, bytes: &[u8]) {
        (**self).write(bytes)
    }
}

impl<T: Iterator> Iterator for PoolBox<'_, T> {
    type Item = T::Item;
    fn next(&mut self) -> Option<T::Item> {
        (**self).next()
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (**self).size_hint()
    }
}

impl<T: DoubleEndedIterator> DoubleEndedIterator for PoolBox<'_, T> {
    fn next_back(&mut self) -> Option<T::Item> {
        (**self).next_back()
    }
}

impl<T: ExactSizeIterator> ExactSizeIterator for PoolBox<'_, T> {}

impl<T: core::iter::FusedIterator> core::iter::FusedIterator for PoolBox<'_, T> {}

impl<T: core::future::Future + Unpin> core::future::Future for PoolBox<'_, T> {
    type Output = T::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut core::task::Context<'_>) -> core::task::Poll<T::Output> {
        Pin::new(&mut **self).poll(cx)
    }
}

impl<T: std::error::Error> std::error::Error for PoolBox<'_, T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        (**self).source()
    }
}

impl<T: std::io::Read> std::io::Read for PoolBox<'_, T> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        (**self).read(buf)
    }
}

impl<T: std::io::Write> std::io::Write for PoolBox<'_, T> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        (**self).write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        (**self).flush()
    }
}

impl<T: std::io::BufRead> std::io::BufRead for PoolBox<'_, T> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        (**self).fill_buf()
    }
    fn consume(&mut self, amt: usize) {
        (**self).consume(amt)
    }
}

impl<T: std::io::Seek> std::io::Seek for PoolBox<'_, T> {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        (**self).seek(pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::sync::{Arc, Barrier, Mutex, MutexGuard};

    /// The tests that count outstanding slots run one at a time.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn serial() -> MutexGuard<'static, ()> {
        SERIAL.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn outstanding() -> isize {
        OUTSTANDING.load(Relaxed)
    }

    #[test]
    fn stamps_are_unique_and_never_empty() {
        let _s = serial();
        let pools: Vec<TypedPool<u64>> = (0..3).map(|_| TypedPool::new()).collect();
        let stamps: Vec<u64> = pools
            .iter()
            .map(|p| {
                drop(p.alloc(1));
                p.core.stamp.load(Relaxed)
            })
            .collect();
        for (i, &s) in stamps.iter().enumerate() {
            assert_ne!(s, UNASSIGNED);
            assert_ne!(s, EMPTY_ENTRY);
            for &t in &stamps[i + 1..] {
                assert_ne!(s & BASE_MASK, t & BASE_MASK);
                assert_ne!(table_index(s), table_index(t), "few live pools get distinct indices");
            }
        }
    }

    #[test]
    fn single_thread_keeps_at_most_cap() {
        let _s = serial();
        let base = outstanding();
        let pool = TypedPool::<[u64; 4]>::with_cap(100);
        let boxes: Vec<_> = (0..1000).map(|i| pool.alloc([i; 4])).collect();
        assert_eq!(outstanding() - base, 1000);
        drop(boxes);
        let st = pool.stats();
        assert_eq!(st.cached, 100);
        assert_eq!(st.released, 900);
        assert_eq!(outstanding() - base, 100);
        pool.trim();
        assert_eq!(outstanding(), base);
        assert_eq!(pool.stats().cached, 0);
    }

    #[test]
    fn pool_drop_releases_caches_of_live_threads() {
        let _s = serial();
        let base = outstanding();
        let pool = Arc::new(TypedPool::<[u64; 6]>::with_cap(400));
        let threads = 4;
        let filled = Arc::new(Barrier::new(threads + 1));
        let resume = Arc::new(Barrier::new(threads + 1));
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (pool, filled, resume) = (pool.clone(), filled.clone(), resume.clone());
                std::thread::spawn(move || {
                    let boxes: Vec<_> = (0..300).map(|i| pool.alloc([t as u64, i, 0, 0, 0, 0])).collect();
                    drop(boxes);
                    drop(pool);
                    filled.wait();
                    // The pool is dropped while this thread still has a cache
                    // for it in its table.
                    resume.wait();
                    // A new pool may reuse the old one's table index; the stale
                    // cache must be recognised and freed, not used.
                    let fresh = TypedPool::<[u64; 6]>::with_cap(8);
                    let b = fresh.alloc([1; 6]);
                    assert_eq!(*b, [1; 6]);
                })
            })
            .collect();
        filled.wait();
        let st = pool.stats();
        assert_eq!(st.threads, threads);
        assert_eq!(st.live, 0);
        assert_eq!(st.cached as isize, outstanding() - base);
        assert!(st.cached >= threads * 100, "each thread caches its slots: {st}");
        drop(Arc::try_unwrap(pool).expect("the threads dropped their handles"));
        assert_eq!(outstanding(), base, "pool drop released every thread's cache");
        resume.wait();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(outstanding(), base);
    }

    #[test]
    fn thread_exit_hands_slots_to_the_depot() {
        let _s = serial();
        let base = outstanding();
        let pool = Arc::new(TypedPool::<u128>::with_cap(64));
        let p2 = pool.clone();
        std::thread::spawn(move || {
            let boxes: Vec<_> = (0..208u128).map(|i| p2.alloc(i)).collect();
            drop(boxes);
            assert_eq!(p2.stats().cached, 64);
        })
        .join()
        .unwrap();
        let st = pool.stats();
        assert_eq!(st.threads, 0, "the exited thread's cache is retired");
        assert_eq!(st.cached, 32, "the depot keeps what fits in its share of the cap");
        assert_eq!(st.cached as isize, outstanding() - base);
        // This thread reuses the depot's slots.
        let b = pool.alloc(7);
        assert_eq!(pool.stats().misses, 208);
        assert_eq!(pool.stats().hits, 1);
        drop(b);
        pool.trim();
        assert_eq!(outstanding(), base);
        drop(pool);
        assert_eq!(outstanding(), base);
    }

    #[test]
    fn trim_makes_other_threads_flush_on_next_use() {
        let _s = serial();
        let base = outstanding();
        let pool = TypedPool::<[u8; 48]>::with_cap(100);
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        std::thread::scope(|s| {
            let pool = &pool;
            s.spawn(move || {
                drop((0..100).map(|_| pool.alloc([3; 48])).collect::<Vec<_>>());
                done_tx.send(()).unwrap();
                go_rx.recv().unwrap();
                drop(pool.alloc([4; 48]));
                done_tx.send(()).unwrap();
                go_rx.recv().unwrap();
            });
            done_rx.recv().unwrap();
            assert_eq!(pool.stats().cached, 100);
            pool.trim();
            // The other thread's cache (50) is out of reach until it next uses
            // the pool; the depot (50) is released at once.
            assert_eq!(pool.stats().cached, 50);
            go_tx.send(()).unwrap();
            done_rx.recv().unwrap();
            assert_eq!(pool.stats().cached, 1, "flushed, then one slot freed into it");
            assert_eq!(outstanding() - base, 1);
            go_tx.send(()).unwrap();
        });
        drop(pool);
        assert_eq!(outstanding(), base);
    }

    #[test]
    fn more_live_pools_than_table_entries() {
        let _s = serial();
        let base = outstanding();
        let pools: Vec<TypedPool<(u64, u64, u64)>> = (0..TABLE_SIZE * 2 + 3).map(|_| TypedPool::with_cap(8)).collect();
        for round in 0..3u64 {
            let boxes: Vec<_> = pools.iter().enumerate().map(|(i, p)| p.alloc((i as u64, round, 0))).collect();
            for (i, b) in boxes.iter().enumerate() {
                assert_eq!(**b, (i as u64, round, 0));
                assert!(ptr::eq(PoolBox::pool(b), &pools[i]));
            }
        }
        for p in &pools {
            let st = p.stats();
            assert_eq!((st.live, st.cached, st.hits + st.misses), (0, 1, 3));
        }
        drop(pools);
        assert_eq!(outstanding(), base);
        TABLE.with(|t| {
            let mut c = t.overflow.get();
            while !c.is_null() {
                // SAFETY: this thread's cache.
                assert_eq!(unsafe { (*c).state.load(Relaxed) }, POOL_GONE);
                // SAFETY: as above.
                c = unsafe { (*c).next_in_thread.get() };
            }
        });
        // Pools made now find the stale entries and overflow caches and free them.
        let later: Vec<TypedPool<u8>> = (0..TABLE_SIZE).map(|_| TypedPool::new()).collect();
        for p in &later {
            drop(p.alloc(1));
        }
        drop(later);
        assert_eq!(outstanding(), base);
    }

    #[test]
    fn cap_below_four_uses_only_the_depot() {
        let _s = serial();
        let base = outstanding();
        let pool = TypedPool::<u64>::with_cap(3);
        let boxes: Vec<_> = (0..10).map(|i| pool.alloc(i)).collect();
        drop(boxes);
        let st = pool.stats();
        assert_eq!((st.cached, st.released, st.threads), (3, 7, 1));
        let again: Vec<_> = (0..5).map(|i| pool.alloc(i)).collect();
        assert_eq!(pool.stats().hits, 3);
        drop(again);
        drop(pool);
        assert_eq!(outstanding(), base);
    }
}
