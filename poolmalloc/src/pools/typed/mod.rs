//! Typed object pools, [`TypedPool<T>`] and [`PoolBox`], the Rust form of
//! CPython's per-type free lists (100 floats, 80 lists, 2000 tuples of each
//! small size, cleared by `gc.collect()`).
//!
//! Application code calls it: a program that makes and drops many values of
//! one type keeps a `TypedPool<T>` (often in a `static`) and allocates with
//! [`TypedPool::alloc`]. Slots come from poolmalloc's pools through
//! [`PoolMalloc`](crate::PoolMalloc) with the slot's layout and go back
//! there when a cache is over its cap or on [`TypedPool::trim`].
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
//! The pool's locks are `std::sync::Mutex`es, which `fork` does not reset: a
//! child must not use a pool whose depot or registry lock another thread of
//! the parent held at the time, nor take statistics (which walk the list of
//! pools under its lock) if another thread held that lock. Slots cached by
//! threads that do not exist in the child are not reused there (never
//! handed out twice).
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
//!   overflow search, exit). A `THREAD_GONE` cache is freed. Before all
//!   this the pool's shared state leaves the process-wide list of pools, so
//!   a statistics walk never meets a pool being torn down.
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
//!
//! # Modules
//!
//! * `slot`: free slots, chains of them, and event counts;
//! * `cache`: per-thread caches, the per-thread tables, thread exit;
//! * `shared`: a pool's shared state (registry of caches, depot), the slow
//!   paths, and the process-wide list of pools read by
//!   [`pools::stats()`](crate::pools::stats);
//! * `boxed`: [`PoolBox`] and its trait implementations.

mod boxed;
mod cache;
mod shared;
mod slot;
#[cfg(test)]
mod tests;

pub use boxed::PoolBox;

use super::{lock, WithLock};
use cache::{free_cache, sweep, LIVE, POOL_GONE, TABLE};
use core::alloc::Layout;
use core::fmt;
use core::marker::PhantomData;
use core::mem;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering::*};
use shared::{free_inner, release_depot, Core};
#[cfg(test)]
use slot::OUTSTANDING;
use slot::{bump, release_chain, slot_layout, FreeSlot};
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
        let t = inner.tally();
        let (counts, cached) = (t.counts, t.cached);
        st.threads = t.threads;
        st.live = counts.allocs.saturating_sub(counts.frees) as usize;
        st.cached = cached;
        st.hits = counts.allocs.saturating_sub(counts.misses);
        st.misses = counts.misses;
        st.released = counts.released;
        st.bytes = (st.live + st.cached) * slot_size;
        st
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
        // SAFETY: the pool was set up, so its shared state is on the list of
        // pools; after this no statistics walk reaches it.
        unsafe { shared::unlink(p) };
        // SAFETY: the pool's shared state, alive until freed below. Shared,
        // not exclusive: an exiting thread whose cache is still LIVE may be
        // absorbing its slots into the depot right now (it holds its cache's
        // lock and a shared reference), so the registry and the depot are
        // reached through their locks.
        let inner = unsafe { &*p };
        let mut c = inner.registry.with(|r| mem::replace(&mut r.head, ptr::null_mut()));
        while !c.is_null() {
            // SAFETY: registered caches are live while on the list.
            let cr = unsafe { &*c };
            let next = cr.next_in_pool.get();
            let held = lock(&cr.lock);
            if cr.state.load(Relaxed) == LIVE {
                let (l, ln, s, sn) = cr.take_all();
                // SAFETY: the owner cannot use the cache while we have
                // exclusive access to the pool, and its exit waits on the lock.
                let _ = unsafe { release_chain(l, ln, inner.slot) + release_chain(s, sn, inner.slot) };
                cr.state.store(POOL_GONE, Release);
                drop(held);
            } else {
                drop(held);
                // SAFETY: the thread is gone and the cache is off the registry.
                unsafe { free_cache(c) };
            }
            c = next;
        }
        // Every exiting thread that found its cache LIVE has finished (we took
        // each cache's lock after it), and later ones find POOL_GONE.
        inner.depot.with(|d| {
            // SAFETY: the depot's chains are ours; no thread can reach it now.
            unsafe { release_depot(d.chains, d.n_chains, d.loose, d.loose_len, inner.mag, inner.slot) };
        });
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

/// Totals over every live typed pool, for the pools' statistics
/// ([`pools::stats()`](crate::pools::stats); see [`totals`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Totals {
    /// Pools set up (used at least once) and not dropped.
    pub(super) pools: usize,
    /// Boxes alive in those pools.
    pub(super) live: usize,
    /// Free slots kept in their thread caches and depots.
    pub(super) cached: usize,
    /// Bytes of slot memory they hold from the pool layer.
    pub(super) bytes: usize,
    /// Allocations served from a cache.
    pub(super) hits: u64,
    /// Allocations that took a fresh slot from the pool layer.
    pub(super) misses: u64,
}

/// Sums the figures of every live typed pool, as [`TypedPool::stats`] would
/// give them, by walking the process-wide list of pools. A pool joins the
/// list on its first use (a `const` pool that was never used holds nothing
/// and is not counted) and leaves it when dropped.
///
/// Nothing is counted on the paths that make or drop a box: the walk reads
/// each thread cache's own counters, under the list's lock and each pool's
/// registry and depot locks (never a cache's). While other threads use the
/// pools the sums are approximate, since each cache is read at a slightly
/// different moment; they are exact when the pools are idle. It does not
/// allocate.
pub(super) fn totals() -> Totals {
    let (pools, counts, cached, bytes) = shared::walk_pools();
    Totals {
        pools,
        live: counts.allocs.saturating_sub(counts.frees) as usize,
        cached,
        bytes,
        hits: counts.allocs.saturating_sub(counts.misses),
        misses: counts.misses,
    }
}
