//! The shared state of a typed pool: [`Inner`] (its cache registry and its
//! depot of free slots, each behind a lock), [`Core`] (the part of a
//! `TypedPool` that does not depend on the value type, with the slow paths
//! of allocation and free), and the process-wide list of pools that
//! [`pools::stats()`](crate::pools::stats) walks.
//!
//! `Inner` is allocated from the pool layer on a pool's first use and does
//! not move afterwards, so thread caches and the list of pools may point at
//! it. Threads reach the depot and the registry only under their locks, and
//! an `Inner`'s list links only under the list's lock; the type is not
//! `Sync`, and threads share it through raw pointers under those locks. The
//! slow paths here, called by `TypedPool` on the thread that makes or drops a
//! box, run when that thread's cache is empty, full, missing or out of date.

use super::cache::{new_cache, Cache, Table, LIVE, TABLE};
use super::slot::{bump, release_chain, slot_alloc, split_chain, Counts, FreeSlot};
use super::{table_index, BASE_MASK, EPOCH_BITS, GEN_SHIFT, INDEX_MAP, MAX_GEN, NEXT_GEN, TABLE_SIZE, UNASSIGNED};
use crate::pools::WithLock;
use crate::PoolMalloc;
use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering::*};
use std::sync::Mutex;

/// The pool's registry of thread caches.
pub(super) struct Registry {
    /// Every cache of the pool that its pool has not freed, linked through
    /// `next_in_pool`: `LIVE` ones and `THREAD_GONE` ones not yet swept.
    pub(super) head: *mut Cache,
    /// Counts of caches already freed.
    pub(super) retired: Counts,
}

// SAFETY: the registry is reached only under its lock; the caches it links
// are shared by protocol (see `Cache`).
unsafe impl Send for Registry {}

/// Free slots shared by a pool's threads.
pub(super) struct Depot {
    /// Full magazines (`mag` slots each), linked through the head slot's
    /// `next_chain`.
    pub(super) chains: *mut FreeSlot,
    pub(super) n_chains: usize,
    /// Single slots from exiting threads and from threads without a cache.
    pub(super) loose: *mut FreeSlot,
    pub(super) loose_len: usize,
    /// Counts of the operations served here directly (threads without a
    /// cache) and of the depot's own releases.
    pub(super) counts: Counts,
}

// SAFETY: the depot is reached only under its lock; its slots are plain
// memory that it owns.
unsafe impl Send for Depot {}

impl Depot {
    pub(super) fn cached(&self, mag: usize) -> usize {
        self.n_chains * mag + self.loose_len
    }
}

/// The heap-allocated part of a pool, created on first use. It does not move
/// when the `TypedPool` does, so caches may point at it.
pub(super) struct Inner {
    /// Generation and index of the pool (its stamp without the epoch).
    pub(super) base: u64,
    /// Whether the pool holds its index in `INDEX_MAP`.
    pub(super) owns_index: bool,
    pub(super) slot: Layout,
    /// Magazine size: `cap / 4`.
    pub(super) mag: usize,
    /// Most slots the depot holds: `cap - 2 * mag`.
    pub(super) depot_limit: usize,
    /// Bytes of memory one box uses: the slot size, or 0 for zero-sized
    /// types (whose boxes take no slot).
    pub(super) slot_bytes: usize,
    pub(super) registry: Mutex<Registry>,
    pub(super) depot: Mutex<Depot>,
    /// Neighbours on the list of pools ([`POOLS`]). Guarded by its lock.
    pub(super) prev_pool: Cell<*mut Inner>,
    pub(super) next_pool: Cell<*mut Inner>,
}

/// A pool's figures summed over its caches and its depot (see
/// [`Inner::tally`]).
pub(super) struct Tally {
    pub(super) counts: Counts,
    /// Free slots in caches and the depot.
    pub(super) cached: usize,
    /// Caches whose thread is alive.
    pub(super) threads: usize,
}

impl Inner {
    /// Sums the figures of every cache and of the depot, under the registry
    /// lock and then the depot lock. Other threads' counters are read
    /// without stopping them, so the sums are exact only when they are idle.
    pub(super) fn tally(&self) -> Tally {
        let mut t = Tally { counts: Counts::default(), cached: 0, threads: 0 };
        self.registry.with(|r| {
            t.counts = r.retired;
            let mut c = r.head;
            while !c.is_null() {
                // SAFETY: registered caches are live while on the list, which
                // we hold the lock of.
                let cr = unsafe { &*c };
                t.counts.add(cr.counts());
                t.cached += cr.cached();
                if cr.state.load(Relaxed) == LIVE {
                    t.threads += 1;
                }
                c = cr.next_in_pool.get();
            }
        });
        self.depot.with(|d| {
            t.counts.add(d.counts);
            t.cached += d.cached(self.mag);
        });
        t
    }

    /// Allocation without a thread cache (thread-local storage gone, or no
    /// memory for a cache). Null when out of memory.
    pub(super) fn alloc_shared(&self, zst: bool) -> *mut FreeSlot {
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
    pub(super) unsafe fn free_shared(&self, slot: *mut FreeSlot, zst: bool) {
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
    pub(super) fn take_for_cache(&self) -> (*mut FreeSlot, usize) {
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
    pub(super) unsafe fn offer_chain(&self, chain: *mut FreeSlot) -> bool {
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
    pub(super) unsafe fn absorb(&self, loaded: *mut FreeSlot, ln: usize, spare: *mut FreeSlot, sn: usize) -> u64 {
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

/// The part of a pool that does not depend on `T`.
pub(super) struct Core {
    /// The pool's stamp (generation, index, epoch), `UNASSIGNED` before its
    /// first use. Set once from `UNASSIGNED`; afterwards only the epoch
    /// changes (by `trim`).
    pub(super) stamp: AtomicU64,
    /// Shared state, null before first use; set once.
    pub(super) inner: AtomicPtr<Inner>,
    /// The cap given at construction.
    pub(super) cap: usize,
}

/// Gives a depot's chains and loose slots back to the pool layer.
///
/// # Safety
/// The arguments must describe chains detached from a depot, owned by the
/// caller.
pub(super) unsafe fn release_depot(
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
    pub(super) fn inner(&self) -> Option<&Inner> {
        // SAFETY: once set, `inner` points at the pool's shared state until
        // the pool is dropped, which cannot happen while `self` is borrowed.
        unsafe { self.inner.load(Acquire).as_ref() }
    }

    /// Sets the pool up on first use; returns its shared state and current
    /// stamp, or `None` when out of memory.
    pub(super) fn init(&self, slot: Layout, zst: bool) -> Option<(&Inner, u64)> {
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
                    slot_bytes: if zst { 0 } else { slot.size() },
                    registry: Mutex::new(Registry { head: ptr::null_mut(), retired: Counts::default() }),
                    depot: Mutex::new(Depot {
                        chains: ptr::null_mut(),
                        n_chains: 0,
                        loose: ptr::null_mut(),
                        loose_len: 0,
                        counts: Counts::default(),
                    }),
                    prev_pool: Cell::new(ptr::null_mut()),
                    next_pool: Cell::new(ptr::null_mut()),
                };
                // SAFETY: `p` is a fresh block for an `Inner`.
                unsafe { p.write(value) };
                match self.inner.compare_exchange(ptr::null_mut(), p, AcqRel, Acquire) {
                    Ok(_) => {
                        // SAFETY: just published, and not on the list yet.
                        unsafe { link(p) };
                        // SAFETY: alive until the pool drops.
                        unsafe { &*p }
                    }
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
    pub(super) unsafe fn resolve(t: &Table, s: u64, inner: &Inner) -> *mut Cache {
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
    pub(super) fn take_slow(&self, slot: Layout, zst: bool) -> *mut FreeSlot {
        let Some((inner, s)) = self.init(slot, zst) else { return ptr::null_mut() };
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
    pub(super) fn refill(c: &Cache, inner: &Inner) -> *mut FreeSlot {
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
    pub(super) unsafe fn give_slow(&self, slot: *mut FreeSlot, layout: Layout, zst: bool) {
        // A box exists, so the pool is set up; `init` only reads it here.
        let Some((inner, s)) = self.init(layout, zst) else { unreachable!("a pool with boxes is set up") };
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
    pub(super) unsafe fn spill(c: &Cache, inner: &Inner, slot: *mut FreeSlot) {
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
pub(super) unsafe fn free_inner(p: *mut Inner) {
    // SAFETY: forwarded from the caller.
    unsafe {
        if (*p).owns_index {
            INDEX_MAP.fetch_and(!(1u64 << table_index((*p).base)), Relaxed);
        }
        ptr::drop_in_place(p);
        PoolMalloc.dealloc(p.cast(), Layout::new::<Inner>());
    }
}

// ---------------------------------------------------------------------------
// The list of pools.

/// Every set-up pool's shared state, linked through `prev_pool` and
/// `next_pool`. An `Inner` is on the list from just after [`Core::init`]
/// publishes it until the start of its pool's drop, so whoever holds the
/// list's lock may read any `Inner` on it. The lock is taken before a pool's
/// registry or depot lock, and only on set-up, drop and statistics, never on
/// the paths that make or drop a box.
pub(super) static POOLS: Mutex<PoolList> = Mutex::new(PoolList { head: ptr::null_mut(), len: 0 });

/// The head of the list of pools and its length.
pub(super) struct PoolList {
    head: *mut Inner,
    /// Pools on the list.
    len: usize,
}

// SAFETY: reached only under the list's lock; the `Inner`s it links are
// shared by the protocol on `POOLS`.
unsafe impl Send for PoolList {}

/// Puts a freshly published pool on the list.
///
/// # Safety
/// `p` must be a live `Inner` that is not on the list.
unsafe fn link(p: *mut Inner) {
    POOLS.with(|l| {
        // SAFETY: by the caller `p` is live; its list fields and those of the
        // old head are guarded by the lock we hold.
        unsafe {
            (*p).prev_pool.set(ptr::null_mut());
            (*p).next_pool.set(l.head);
            if !l.head.is_null() {
                (*l.head).prev_pool.set(p);
            }
        }
        l.head = p;
        l.len += 1;
    });
}

/// Takes a pool off the list; afterwards no statistics walk can reach it.
///
/// # Safety
/// `p` must be a live `Inner` on the list.
pub(super) unsafe fn unlink(p: *mut Inner) {
    POOLS.with(|l| {
        // SAFETY: `p` and its neighbours are on the list, so they are live,
        // and their list fields are guarded by the lock we hold.
        unsafe {
            let (prev, next) = ((*p).prev_pool.get(), (*p).next_pool.get());
            if prev.is_null() {
                l.head = next;
            } else {
                (*prev).next_pool.set(next);
            }
            if !next.is_null() {
                (*next).prev_pool.set(prev);
            }
        }
        l.len -= 1;
    });
}

/// Sums over every pool on the list: `(pools, counts, cached slots, bytes)`.
/// Takes the list's lock, then each pool's registry and depot locks in turn.
pub(super) fn walk_pools() -> (usize, Counts, usize, usize) {
    POOLS.with(|l| {
        let (mut counts, mut cached, mut bytes) = (Counts::default(), 0, 0);
        let mut p = l.head;
        while !p.is_null() {
            // SAFETY: pools on the list are live while we hold its lock.
            let inner = unsafe { &*p };
            let t = inner.tally();
            let live = t.counts.allocs.saturating_sub(t.counts.frees) as usize;
            counts.add(t.counts);
            cached += t.cached;
            bytes += (live + t.cached) * inner.slot_bytes;
            p = inner.next_pool.get();
        }
        (l.len, counts, cached, bytes)
    })
}
