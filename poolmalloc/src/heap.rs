//! Layer 5: the heap, pymalloc's core.
//!
//! A [`Heap`] owns pools and, for each size class, knows the pool it
//! allocates from (`current`, pymalloc's `usedpools[class]`), the other pools
//! that have free blocks (`avail`), and the pools with no free block (`full`).
//! It takes pools from arenas (or adopts abandoned ones) and gives empty ones
//! back, keeping a small stash of empty pools to avoid the arena lock on
//! every turnover.
//!
//! A heap is a single-threaded object: every method here must be called by
//! its one user at a time, either the thread that owns it or the holder of
//! the locked-mode lock. Other threads touch a heap only through its
//! [`RemoteHints`] (atomic). Nothing here takes a lock except the arena and
//! abandoned-list locks, once per pool, never per block.
//!
//! Heaps are never unmapped, so a stale pointer to a heap's hints is always
//! safe to write through (layer 6 recycles heap structures between threads).

use crate::abandoned::ABANDONED;
use crate::arena;
use crate::pool::{
    held_mark, owner_id, state, Block, Pool, PoolList, RemoteHints, Rng, OWNER_CHECKED, OWNER_FULL, OWNER_STASHED, POOL_SIZE,
    USER_OWNER_BIT,
};
use crate::size_class::{self, NUM_CLASSES, NUM_SINGLE};
use crate::sync::Local;
use core::ptr;
use crate::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Empty pools a heap keeps for reuse before returning them to arenas.
pub const STASH_MAX: usize = 4;
/// Most slices (64 KiB each) the empty pools in a heap's stash may span
/// together: room for one 1 MiB pool, or four single-slice ones and a
/// medium run.
pub const STASH_MAX_SLICES: usize = 20;
/// At most this many abandoned pools are adopted at once.
const ADOPT_BATCH: usize = 8;
/// Secure mode: blocks a heap holds back after they are freed. Each free
/// puts its block in a random slot and releases the block that was there,
/// so a freed block waits for a random number of later frees (32 on
/// average) before its pool can hand it out again.
pub const SECURE_RING: usize = 32;

/// Trim requests made so far (by `trim()` in any thread). Each heap compares
/// it with the last one it saw on its slow paths, and trims itself when it
/// changed: that is how a trim reaches the heaps of other live threads. A
/// heap whose thread never takes a slow path again (an idle thread) is not
/// reached.
pub static TRIM_REQUESTS: AtomicU64 = AtomicU64::new(0);

/// The pool every class points at when it has no pool: its free list is
/// always empty, so the fast path falls through to the slow path. Never
/// written.
pub static EMPTY_POOL: Pool = Pool::new(ptr::null_mut());

/// Address of [`EMPTY_POOL`].
#[inline(always)]
pub fn empty_pool() -> *mut Pool {
    &EMPTY_POOL as *const Pool as *mut Pool
}

/// What a heap is for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Kind {
    /// A thread's heap, or the locked-mode heap.
    Real = 0,
    /// A thread whose heap was abandoned at exit: uses the locked heap.
    Dead = 1,
    /// Locked mode is on: every thread uses the locked heap.
    LockedProxy = 2,
    /// Initial value of every thread's heap slot: sets up a heap on first use.
    /// This kind and the next are the ones a slow free must look at before
    /// anything else ([`Kind::set_up_or_wrapped`]).
    Uninit = 3,
    /// Debug mode is on: every request goes to the debug wrapper.
    DebugProxy = 4,
}

impl Kind {
    /// Whether the slot is not set up yet or names the debug wrapper (one
    /// compare).
    #[inline(always)]
    pub fn set_up_or_wrapped(self) -> bool {
        self as u8 >= Kind::Uninit as u8
    }
}

/// Counters kept per heap. Written by the heap's user, read by statistics.
pub struct HeapCounters {
    /// Blocks this heap's thread freed into pools owned by another heap.
    pub remote_frees: AtomicU64,
    /// Pools this heap adopted from the abandoned lists.
    pub adopted: AtomicU64,
}

impl HeapCounters {
    const fn new() -> Self {
        HeapCounters { remote_frees: AtomicU64::new(0), adopted: AtomicU64::new(0) }
    }
}

/// Bumps a counter that only one thread writes.
#[inline]
pub fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed) + n, Relaxed);
}

/// A heap: per-class pool lists. See the module docs.
#[repr(C)]
pub struct Heap {
    /// Pool each class allocates from, or [`EMPTY_POOL`]. Heap user only.
    pub current: [Local<*mut Pool>; NUM_CLASSES],
    /// Pools other than `current` with at least one free block. Heap user.
    avail: [PoolList; NUM_CLASSES],
    /// Pools with no free block; their owner word carries `OWNER_FULL`.
    /// Heap user.
    full: [PoolList; NUM_CLASSES],
    /// Empty pools kept for reuse by any class. Heap user.
    stash: PoolList,
    /// Classes whose full pools received remote frees. Any thread.
    pub hints: RemoteHints,
    /// Owner value stamped on this heap's pools. Heap user / registry lock.
    pub owner: Local<usize>,
    /// See [`Kind`]. Fixed for the heap's lifetime.
    pub kind: Kind,
    /// Statistics.
    pub counters: HeapCounters,
    /// Next heap in the registry. Registry lock.
    pub reg_next: Local<*mut Heap>,
    /// Next heap on the free-heap list. Registry lock.
    pub free_next: Local<*mut Heap>,
    /// Blocks this heap's thread freed into one other heap's pool, not yet
    /// pushed: consecutive remote frees into the same pool are handed over
    /// as one chain with one compare-and-swap. Heap user.
    batch: RemoteBatch,
    /// Whether the heap adopts abandoned pools. Thread heaps and the locked
    /// heap do; a first-class `Heap` does not, since dropping it releases
    /// all of its pools at once. Heap user.
    pub adopts: Local<bool>,
    /// The last [`TRIM_REQUESTS`] value this heap acted on. Heap user.
    trims_seen: Local<u64>,
    /// Secure mode: blocks freed through this heap and held back before
    /// they go back to their pools (see [`SECURE_RING`]). Heap user.
    ring: [Local<*mut Block>; SECURE_RING],
    /// Secure mode: random choices. Heap user.
    rng: Rng,
}

impl Heap {
    /// A heap with no pools, of the given kind, owned by `owner`.
    pub const fn new(kind: Kind, owner: usize) -> Heap {
        let current = [const { Local::new(&EMPTY_POOL as *const Pool as *mut Pool) }; NUM_CLASSES];
        Heap {
            current,
            avail: [const { PoolList::new() }; NUM_CLASSES],
            full: [const { PoolList::new() }; NUM_CLASSES],
            stash: PoolList::new(),
            hints: RemoteHints::new(),
            owner: Local::new(owner),
            kind,
            counters: HeapCounters::new(),
            reg_next: Local::new(ptr::null_mut()),
            free_next: Local::new(ptr::null_mut()),
            adopts: Local::new(true),
            trims_seen: Local::new(0),
            batch: RemoteBatch::new(),
            ring: [const { Local::new(ptr::null_mut()) }; SECURE_RING],
            rng: Rng::new(),
        }
    }

    /// Fast path: pops a block of `class` from the current pool, or null.
    #[inline(always)]
    pub fn alloc_fast(&self, class: usize) -> *mut Block {
        debug_assert!(class < NUM_CLASSES);
        // SAFETY: class indices come from the size-class tables, which only
        // hold valid classes. `current` always points at a live pool owned by
        // this heap, or at EMPTY_POOL, whose list is empty so `pop` does not
        // write.
        unsafe { (*self.current.get_unchecked(class).get()).pop() }
    }

    /// Allocates a block of `class`: the fast path, then the slow path.
    #[inline(always)]
    pub fn alloc(&self, class: usize) -> *mut u8 {
        let b = self.alloc_fast(class);
        if !b.is_null() {
            return b.cast();
        }
        self.alloc_slow(class)
    }

    /// Slow path: refill the current pool, or switch to another pool.
    /// Null when memory is exhausted (state stays consistent).
    #[cold]
    pub fn alloc_slow(&self, class: usize) -> *mut u8 {
        debug_assert!(self.kind == Kind::Real);
        self.trim_if_asked();
        self.flush_remote();
        let owner = self.owner.get();
        loop {
            let p = self.current[class].get();
            if p != empty_pool() {
                // SAFETY: the current pool is live and owned by this heap.
                let pr = unsafe { &*p };
                // A pool taken from `avail` may be fully carved with blocks
                // on its local list: use them before calling it exhausted.
                if pr.refill(&self.rng) {
                    let b = pr.pop();
                    debug_assert!(!b.is_null());
                    self.check();
                    return b.cast();
                }
                if !pr.try_set_remote_full() {
                    continue; // remote frees arrived meanwhile; collect them
                }
                pr.set_owner_word(owner | OWNER_FULL);
                // SAFETY: `p` is on no list while current.
                unsafe { self.full[class].push(p) };
                self.current[class].set(empty_pool());
            }
            let mut next = self.avail[class].pop();
            if next.is_null() && self.hints.take(class) {
                self.rescan_full(class);
                next = self.avail[class].pop();
            }
            if next.is_null() {
                next = self.new_pool(class);
                if next.is_null() {
                    return ptr::null_mut();
                }
            }
            self.current[class].set(next);
        }
    }

    /// Moves full pools of `class` that received remote frees back to
    /// `avail` (or releases them if now empty).
    fn rescan_full(&self, class: usize) {
        let owner = self.owner.get();
        let mut p = self.full[class].head();
        while !p.is_null() {
            // SAFETY: pools on our lists are live and ours.
            let pr = unsafe { &*p };
            let next = pr.next.get();
            if pr.has_remote() {
                // SAFETY: `p` is on this list.
                unsafe { self.full[class].remove(p) };
                pr.set_owner_word(owner);
                pr.collect_remote();
                if pr.is_empty() {
                    self.release_empty(p, false);
                } else {
                    // SAFETY: `p` is now on no list.
                    unsafe { self.avail[class].push(p) };
                }
            }
            p = next;
        }
    }

    /// A pool for `class`: from the stash, from the abandoned lists, or from
    /// the arenas. Initialised, USED, on no list. Null if out of memory.
    fn new_pool(&self, class: usize) -> *mut Pool {
        let owner = self.owner.get();
        let p = self.stash_take(class);
        if !p.is_null() {
            // SAFETY: stashed pools are live, empty and ours.
            let pr = unsafe { &*p };
            pr.init(class, owner, &self.hints, arena::pool_end(pr));
            pr.state.store(state::USED, Relaxed);
            return p;
        }
        if self.adopts.get() {
            let p = self.adopt(class);
            if !p.is_null() {
                return p;
            }
        }
        let p = arena::acquire_pool(class);
        if p.is_null() {
            return p;
        }
        // SAFETY: a pool just taken from an arena is ours alone.
        let pr = unsafe { &*p };
        pr.init(class, owner, &self.hints, arena::pool_end(pr));
        pr.state.store(state::USED, Relaxed);
        p
    }

    /// Adopts abandoned pools of `class`; returns one with a free block (or
    /// null). Other adopted pools join `avail` or `full`.
    fn adopt(&self, class: usize) -> *mut Pool {
        let mut batch = [ptr::null_mut::<Pool>(); ADOPT_BATCH];
        let n = ABANDONED.take(class, &mut batch);
        if n == 0 {
            return ptr::null_mut();
        }
        bump(&self.counters.adopted, n as u64);
        let owner = self.owner.get();
        let mut result: *mut Pool = ptr::null_mut();
        for &p in &batch[..n] {
            // SAFETY: taken off the abandoned list, the pool is ours now.
            let pr = unsafe { &*p };
            pr.set_owner(owner, &self.hints);
            pr.state.store(state::USED, Relaxed);
            pr.collect_remote();
            let has_free = pr.has_free();
            if has_free && result.is_null() {
                result = p;
            } else if has_free {
                // SAFETY: `p` is on no list.
                unsafe { self.avail[class].push(p) };
            } else {
                self.file_full(p, class);
            }
        }
        result
    }

    /// Files a pool with no free block as full.
    fn file_full(&self, p: *mut Pool, class: usize) {
        // SAFETY: `p` is ours and on no list.
        let pr = unsafe { &*p };
        if pr.try_set_remote_full() {
            pr.set_owner_word(self.owner.get() | OWNER_FULL);
            // SAFETY: `p` is on no list.
            unsafe { self.full[class].push(p) };
        } else {
            pr.collect_remote();
            // SAFETY: `p` is on no list.
            unsafe { self.avail[class].push(p) };
        }
    }

    /// A local free into a pool filed as full (its owner word has
    /// `OWNER_FULL`): the pool goes back to `avail`.
    ///
    /// # Safety
    /// `p` must be a full pool of this heap and `b` a handed-out block of it.
    pub unsafe fn free_to_full(&self, p: *mut Pool, b: *mut Block) {
        // SAFETY: by the caller, `p` is ours and on our full list.
        let pr = unsafe { &*p };
        let class = pr.class.get() as usize;
        // SAFETY: as above.
        unsafe { self.full[class].remove(p) };
        pr.clear_remote_full();
        pr.set_owner_word(self.owner.get());
        // SAFETY: `b` is a handed-out block of `p`.
        let used = unsafe { pr.push(b) };
        if used == 0 {
            self.release_empty(p, false);
        } else {
            // SAFETY: `p` is on no list.
            unsafe { self.avail[class].push(p) };
        }
        self.check();
    }

    /// Frees a block of one of this heap's pools (full or not).
    ///
    /// # Safety
    /// `pool` must be a pool of this heap and `b` a handed-out block of it.
    pub unsafe fn free_owned(&self, pool: *mut Pool, b: *mut Block) {
        if crate::options::secure() {
            // SAFETY: forwarded from the caller.
            return unsafe { self.secure_free(pool, b) };
        }
        // SAFETY: by the caller.
        let pr = unsafe { &*pool };
        // SAFETY: `b` is in the pool's block area.
        if !unsafe { pr.may_free(b) } {
            return;
        }
        if pr.owner.load(Relaxed) & OWNER_FULL != 0 {
            // SAFETY: a full pool of this heap.
            unsafe { self.free_to_full(pool, b) };
        // SAFETY: a handed-out block of a pool of this heap.
        } else if unsafe { pr.push(b) } == 0 {
            // SAFETY: a USED pool of this heap, not full.
            unsafe { self.pool_emptied(pool) };
        }
    }

    /// Frees `p` if it is a block of one of this heap's pools; says whether
    /// it was (a first-class heap's free: a block of any other pool is left
    /// for the general path to route or report).
    ///
    /// # Safety
    /// `p` must be in an arena; if it is in one of this heap's pools, a
    /// block handed out and not freed since.
    pub unsafe fn free_if_owned(&self, p: *mut u8) -> bool {
        let mut pool = arena::pool_of(p);
        // SAFETY: `p` is in a live arena, whose header is mapped.
        let mut word = unsafe { (*pool).owner.load(Relaxed) };
        if word & OWNER_CHECKED != 0 || word == 0 {
            // A medium pool (or a later slice of one): its record, and a
            // check that `p` starts a block.
            pool = arena::leader_of(pool);
            // SAFETY: a record of a live arena.
            let pr = unsafe { &*pool };
            word = if pr.is_block_start(p) { pr.owner.load(Relaxed) } else { 0 };
        }
        // A stashed (empty) pool's word keeps OWNER_STASHED and does not
        // match: a free into it is reported by the general path.
        if word & !(OWNER_FULL | OWNER_CHECKED) != self.owner.get() {
            return false;
        }
        // SAFETY: one of our pools, and by the caller `p` is a handed-out
        // block.
        unsafe { self.free_owned(pool, p.cast()) };
        true
    }

    /// Blocks in use in this heap's pools (walks the arenas; for tests and
    /// reports).
    pub fn blocks_in_use(&self) -> usize {
        let mut n = 0;
        let owner = self.owner.get();
        let _g = arena::ARENAS.lock.guard();
        arena::ARENAS.for_each(|a, free, _| {
            for (i, p) in a.pools.iter().enumerate() {
                if free & (1 << i) == 0 && owner_id(p.owner.load(Relaxed)) == owner {
                    n += p.used() as usize;
                }
            }
        });
        n
    }

    /// Gives every pool back to the arenas at once, whatever blocks are
    /// still in them (a first-class heap being dropped). Afterwards the heap
    /// holds nothing.
    pub fn release_everything(&self) {
        // Held-back blocks are this heap's own (a first-class heap frees
        // only into its own pools), dead with it.
        for slot in &self.ring {
            slot.set(ptr::null_mut());
        }
        let mut batch = [ptr::null_mut::<Pool>(); 64];
        let mut n = 0;
        let put = |p: *mut Pool, batch: &mut [*mut Pool; 64], n: &mut usize| {
            batch[*n] = p;
            *n += 1;
            if *n == batch.len() {
                // SAFETY: the pools are this heap's, on no list, and their
                // blocks are dead with the heap.
                unsafe { arena::release_pools(&batch[..]) };
                *n = 0;
            }
        };
        for class in 0..NUM_CLASSES {
            let cur = self.current[class].get();
            self.current[class].set(empty_pool());
            if cur != empty_pool() {
                put(cur, &mut batch, &mut n);
            }
            for list in [&self.avail[class], &self.full[class]] {
                loop {
                    let p = list.pop();
                    if p.is_null() {
                        break;
                    }
                    put(p, &mut batch, &mut n);
                }
            }
        }
        loop {
            let p = self.stash.pop();
            if p.is_null() {
                break;
            }
            put(p, &mut batch, &mut n);
        }
        // SAFETY: as above.
        unsafe { arena::release_pools(&batch[..n]) };
        self.hints.clear();
    }

    /// A local free left `p` with no block in use.
    ///
    /// # Safety
    /// `p` must be a USED pool of this heap, not filed as full.
    #[cold]
    pub unsafe fn pool_emptied(&self, p: *mut Pool) {
        // SAFETY: by the caller.
        let pr = unsafe { &*p };
        let class = pr.class.get() as usize;
        if self.current[class].get() == p {
            return; // keep the pool we allocate from
        }
        // SAFETY: a USED, non-current, non-full pool of ours is on `avail`.
        unsafe { self.avail[class].remove(p) };
        self.release_empty(p, false);
        self.check();
    }

    /// A stashed pool that can serve `class` (as many slices, as long, since
    /// slice 0 is shorter, and starting on the alignment the class needs),
    /// taken off the stash; null if none.
    fn stash_take(&self, class: usize) -> *mut Pool {
        let k = size_class::slices(class);
        let mut p = self.stash.head();
        while !p.is_null() {
            // SAFETY: stashed pools are live, empty and ours.
            let pr = unsafe { &*p };
            let fits = pr.slices.get() as usize == k
                && (class < NUM_SINGLE
                    || (arena::pool_area(pr) == k * POOL_SIZE
                        && pr.start.get().addr() % (size_class::run_align(class) * POOL_SIZE) == 0));
            if fits {
                // SAFETY: `p` is on the stash.
                unsafe { self.stash.remove(p) };
                return p;
            }
            p = pr.next.get();
        }
        ptr::null_mut()
    }

    /// Slices spanned by the stashed pools.
    fn stash_slices(&self) -> usize {
        let mut n = 0;
        let mut p = self.stash.head();
        while !p.is_null() {
            // SAFETY: stashed pools are live and ours.
            let pr = unsafe { &*p };
            n += pr.slices.get() as usize;
            p = pr.next.get();
        }
        n
    }

    /// An empty pool on no list: into the stash, or back to its arena.
    fn release_empty(&self, p: *mut Pool, to_arena: bool) {
        // SAFETY: `p` is ours, empty and on no list.
        let pr = unsafe { &*p };
        let room = self.stash.len() < STASH_MAX
            && self.stash_slices() + pr.slices.get() as usize <= STASH_MAX_SLICES;
        if !to_arena && room {
            pr.set_owner_word(self.owner.get() | OWNER_STASHED);
            pr.state.store(state::EMPTY, Relaxed);
            // SAFETY: `p` is on no list.
            unsafe { self.stash.push(p) };
        } else {
            // SAFETY: `p` is ours and empty.
            unsafe { arena::release_pools(&[p]) };
        }
    }

    /// Trims this heap if a trim was requested since it last looked (see
    /// [`TRIM_REQUESTS`]). Heap user, on a slow path.
    #[inline]
    pub fn trim_if_asked(&self) {
        let asked = TRIM_REQUESTS.load(Relaxed);
        if asked != self.trims_seen.get() {
            self.trims_seen.set(asked);
            self.trim();
        }
    }

    /// Collects remote frees everywhere and gives every empty pool (and the
    /// stash) back to the arenas.
    pub fn trim(&self) {
        self.flush_ring();
        self.flush_remote();
        for class in 0..NUM_CLASSES {
            let cur = self.current[class].get();
            if cur != empty_pool() {
                // SAFETY: the current pool is ours.
                let pr = unsafe { &*cur };
                pr.collect_remote();
                if pr.is_empty() {
                    self.current[class].set(empty_pool());
                    self.release_empty(cur, true);
                }
            }
            let mut p = self.avail[class].head();
            while !p.is_null() {
                // SAFETY: pools on our lists are ours.
                let pr = unsafe { &*p };
                let next = pr.next.get();
                pr.collect_remote();
                if pr.is_empty() {
                    // SAFETY: `p` is on this list.
                    unsafe { self.avail[class].remove(p) };
                    self.release_empty(p, true);
                }
                p = next;
            }
            self.rescan_full(class);
        }
        self.flush_stash();
        self.check();
    }

    fn flush_stash(&self) {
        loop {
            let p = self.stash.pop();
            if p.is_null() {
                break;
            }
            // SAFETY: stashed pools are ours and empty.
            unsafe { arena::release_pools(&[p]) };
        }
    }

    /// Hands every pool over: empty ones to the arenas, the rest to the
    /// abandoned lists for other heaps to adopt. Afterwards the heap holds
    /// nothing and can be reused.
    pub fn abandon(&self) {
        self.flush_ring();
        self.flush_remote();
        for class in 0..NUM_CLASSES {
            let cur = self.current[class].get();
            self.current[class].set(empty_pool());
            if cur != empty_pool() {
                self.abandon_pool(cur);
            }
            loop {
                let p = self.avail[class].pop();
                if p.is_null() {
                    break;
                }
                self.abandon_pool(p);
            }
            loop {
                let p = self.full[class].pop();
                if p.is_null() {
                    break;
                }
                self.abandon_pool(p);
            }
        }
        self.flush_stash();
        self.hints.clear();
    }

    fn abandon_pool(&self, p: *mut Pool) {
        // SAFETY: `p` is ours and on no list.
        let pr = unsafe { &*p };
        pr.collect_remote();
        if pr.is_empty() {
            self.release_empty(p, true);
            return;
        }
        pr.clear_remote_full();
        pr.set_owner(0, ptr::null());
        pr.state.store(state::ABANDONED, Relaxed);
        // SAFETY: `p` is a live pool with blocks in use, on no list.
        unsafe { ABANDONED.put(p) };
    }

    /// Forgets every pool without touching them (fork child: the pools are
    /// reclaimed by walking the arenas instead).
    pub fn forget_all(&self) {
        for slot in &self.ring {
            slot.set(ptr::null_mut());
        }
        self.batch.pool.set(ptr::null_mut());
        self.batch.len.set(0);
        for class in 0..NUM_CLASSES {
            self.current[class].set(empty_pool());
            self.avail[class].clear();
            self.full[class].clear();
        }
        self.stash.clear();
        self.hints.clear();
    }

    /// Checks the heap's structural invariants (with the `debug-invariants`
    /// feature; otherwise does nothing).
    #[inline]
    pub fn check(&self) {
        #[cfg(feature = "debug-invariants")]
        self.check_invariants();
    }

    /// Full scan of the heap's structural invariants. Panics on violation.
    pub fn check_invariants(&self) {
        let owner = self.owner.get();
        for class in 0..NUM_CLASSES {
            let cur = self.current[class].get();
            if cur != empty_pool() {
                // SAFETY: the current pool is ours.
                let pr = unsafe { &*cur };
                assert_eq!(pr.owner.load(Relaxed), owner | pr.owner_flags(), "current pool owned by its heap");
                check_pool(pr, class);
            }
            for (list, full) in [(&self.avail[class], false), (&self.full[class], true)] {
                let mut p = list.head();
                let mut n = 0;
                while !p.is_null() {
                    // SAFETY: pools on our lists are ours.
                    let pr = unsafe { &*p };
                    let want = if full { owner | OWNER_FULL } else { owner };
                    assert_eq!(pr.owner.load(Relaxed), want | pr.owner_flags(), "list pool owner word");
                    assert!(p != cur, "current pool is on no list");
                    check_pool(pr, class);
                    n += 1;
                    p = pr.next.get();
                }
                assert_eq!(n, list.len());
            }
        }
    }
}

/// Secure mode's frees.
impl Heap {
    /// A free in secure mode, of a block of any heap's pool (the caller has
    /// checked that `b` starts a block of `pool`): checked for a double
    /// free, then held back in a random slot of this heap's ring, whose
    /// previous occupant goes back to its pool. Medium blocks go back at
    /// once.
    ///
    /// # Safety
    /// `b` must be a block of `pool` that the caller gives up, and `pool` a
    /// live pool record; if `pool` is this heap's, the caller is its user.
    pub unsafe fn secure_free(&self, pool: *mut Pool, b: *mut Block) {
        // SAFETY: by the caller.
        let pr = unsafe { &*pool };
        // A block held back here, on the pool's local list or in its store is
        // free already. A handed-out block carries none of their marks unless
        // the program wrote one there, and then the searches clear it. The
        // mark word is the program's while the block is handed out, maybe
        // never written: under Miri every search runs instead.
        #[cfg(not(miri))]
        // SAFETY: `b` starts a block, at least two words long; a volatile
        // read keeps the compiler from reasoning about the bytes.
        let m = Some(unsafe { ptr::read_volatile(ptr::addr_of!((*b).mark)) });
        #[cfg(miri)]
        let m: Option<usize> = None;
        let may_be = |mark: usize| m.is_none_or(|m| m == mark);
        if may_be(held_mark(b)) && self.ring.iter().any(|s| s.get() == b) {
            crate::fault::invalid_free(b.cast(), "double free");
            return;
        }
        // Only the owner may walk the pool's lists.
        if owner_id(pr.owner.load(Relaxed)) == self.owner.get()
            && ((may_be(pr.store_mark(b)) && pr.in_store(b.cast()))
                || (may_be(pr as *const Pool as usize) && pr.on_local_list(b)))
        {
            crate::fault::invalid_free(b.cast(), "double free");
            return;
        }
        let word = pr.owner.load(Relaxed);
        if pr.is_medium() || (word & USER_OWNER_BIT != 0 && owner_id(word) != self.owner.get()) {
            // Not held back: a medium block may be a megabyte, and a thread
            // that goes idle would keep it from its pool; a block of a
            // first-class heap must not outlive that heap in this ring.
            // SAFETY: a block of `pool`, given up by the caller, freed once
            // as far as the checks above can tell; it carries the held mark
            // that `secure_release` expects.
            unsafe {
                (*b).mark = held_mark(b);
                return self.secure_release(b);
            }
        }
        let slot = &self.ring[self.rng.below(SECURE_RING)];
        let old = slot.get();
        // SAFETY: the caller gives `b` up: its second word is ours.
        unsafe { (*b).mark = held_mark(b) };
        slot.set(b);
        if !old.is_null() {
            // SAFETY: a block freed through this heap earlier, held back.
            unsafe { self.secure_release(old) };
        }
    }

    /// Sends a held-back block back to its pool: into the store if the pool
    /// is this heap's, else as a remote free.
    ///
    /// # Safety
    /// `b` must be a block freed through this heap and held back since.
    unsafe fn secure_release(&self, b: *mut Block) {
        // A block goes back once: released, it loses the held mark. A block
        // freed twice, by two threads (each holding it back), or after the
        // program wrote over its mark, is caught here.
        // SAFETY: the block is ours to read until it goes back.
        if unsafe { (*b).mark } != held_mark(b) {
            crate::fault::invalid_free(b.cast(), "double free (or written after free)");
            return;
        }
        let pool = arena::leader_of(arena::pool_of(b.cast()));
        // SAFETY: the pool holds `b`, which counts as in use, so it is live.
        let pr = unsafe { &*pool };
        let word = pr.owner.load(Relaxed);
        if owner_id(word) != self.owner.get() {
            // SAFETY: a handed-out block of another heap's pool, given up.
            unsafe {
                if pr.is_medium() {
                    self.free_remote_now(pool, b);
                } else {
                    self.free_remote(pool, b);
                }
            }
            return;
        }
        // SAFETY: a handed-out block of our pool.
        unsafe { pr.secure_push(b) };
        let used = pr.used() - 1;
        pr.used.store(used, Relaxed);
        let class = pr.class.get() as usize;
        if word & OWNER_FULL != 0 {
            // SAFETY: a full pool of this heap is on its full list.
            unsafe { self.full[class].remove(pool) };
            pr.clear_remote_full();
            pr.set_owner_word(self.owner.get());
            if used == 0 {
                self.release_empty(pool, false);
            } else {
                // SAFETY: `pool` is on no list.
                unsafe { self.avail[class].push(pool) };
            }
        } else if used == 0 {
            // SAFETY: a USED pool of this heap, not full.
            unsafe { self.pool_emptied(pool) };
        }
        self.check();
    }

    /// Sends every held-back block back to its pool.
    pub fn flush_ring(&self) {
        for slot in &self.ring {
            let b = slot.get();
            if !b.is_null() {
                slot.set(ptr::null_mut());
                // SAFETY: a held-back block.
                unsafe { self.secure_release(b) };
            }
        }
    }
}

/// Remote frees held back to be pushed as one chain (see `Heap::batch`).
/// At most [`REMOTE_BATCH`] blocks, all of one pool; they count as in use
/// until pushed.
struct RemoteBatch {
    pool: Local<*mut Pool>,
    head: Local<*mut Block>,
    tail: Local<*mut Block>,
    len: Local<u32>,
}

/// Most remote frees a heap holds back before pushing them.
pub const REMOTE_BATCH: u32 = 32;

impl RemoteBatch {
    const fn new() -> Self {
        RemoteBatch {
            pool: Local::new(ptr::null_mut()),
            head: Local::new(ptr::null_mut()),
            tail: Local::new(ptr::null_mut()),
            len: Local::new(0),
        }
    }
}

impl Heap {
    /// A free of a block of another heap's pool, by this heap's thread.
    /// Consecutive frees into one pool are chained and pushed together.
    ///
    /// # Safety
    /// `b` must be a handed-out block of `pool`, given up by the caller;
    /// `pool` is not this heap's.
    pub unsafe fn free_remote(&self, pool: *mut Pool, b: *mut Block) {
        let bt = &self.batch;
        if bt.pool.get() != pool {
            self.trim_if_asked();
            self.flush_remote();
            bt.pool.set(pool);
            bt.tail.set(b);
            bt.head.set(ptr::null_mut());
        }
        // SAFETY: the caller gives `b` up; its first two words are ours, and
        // `pool` is a live pool record.
        unsafe { *b = Block { next: bt.head.get(), mark: (*pool).remote_mark() } };
        bt.head.set(b);
        bt.len.set(bt.len.get() + 1);
        if bt.len.get() >= REMOTE_BATCH {
            self.flush_remote();
        }
    }

    /// A free of a block of another heap's medium pool: pushed at once, not
    /// held back. A held-back chain waits until this thread frees into
    /// another pool or takes its slow path, which an idle thread may never
    /// do; for medium blocks that could pin megabytes, while one
    /// compare-and-swap per block costs little next to their size.
    ///
    /// # Safety
    /// As for [`free_remote`](Self::free_remote).
    pub unsafe fn free_remote_now(&self, pool: *mut Pool, b: *mut Block) {
        // SAFETY: forwarded from the caller.
        unsafe { (*pool).push_remote(b) };
        bump(&self.counters.remote_frees, 1);
    }

    /// The pool whose remote frees this heap holds back, or null.
    pub fn batch_pool(&self) -> *mut Pool {
        self.batch.pool.get()
    }

    /// Pushes the held-back remote frees, if any.
    pub fn flush_remote(&self) {
        let bt = &self.batch;
        let pool = bt.pool.get();
        if pool.is_null() {
            return;
        }
        let n = bt.len.get();
        // SAFETY: the chain holds blocks of `pool`, which stays live while
        // they count as in use.
        unsafe { (*pool).push_remote_chain(bt.head.get(), bt.tail.get(), n) };
        bump(&self.counters.remote_frees, n as u64);
        bt.pool.set(ptr::null_mut());
        bt.len.set(0);
    }
}

/// Invariants of one USED pool of `class`.
fn check_pool(p: &Pool, class: usize) {
    assert_eq!(p.state.load(Relaxed), state::USED);
    assert_eq!(p.class.get() as usize, class);
    let bs = p.block_size.get() as usize;
    let mut free = 0usize;
    let mut b = p.free.get();
    while !b.is_null() {
        let a = b as usize;
        assert!(a >= p.start.get() as usize && a < p.bump.get() as usize, "free block inside carved area");
        assert_eq!((a - p.start.get() as usize) % bs, 0, "free block on a block boundary");
        free += 1;
        // SAFETY: free-list blocks are ours.
        b = unsafe { (*b).next };
    }
    free += p.store_len();
    let uncarved = (p.end.get() as usize - p.bump.get() as usize) / bs;
    assert_eq!(free + p.used() as usize + uncarved, p.capacity.get() as usize, "blocks add up to capacity");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ownership::{self, TAG_ARENA};
    use crate::pool::owner_id;
    use crate::size_class::class_size;
    use crate::sync::atomic::AtomicUsize;
    use std::boxed::Box;
    use std::vec::Vec;

    /// A heap of the test's own, with an owner id that no thread and no
    /// other heap has (bit 1 set, as first-class heaps' ids), that does not
    /// adopt other threads' abandoned pools.
    fn test_heap() -> Box<Heap> {
        static IDS: AtomicUsize = AtomicUsize::new(1);
        let id = ((usize::MAX >> 12) - IDS.fetch_add(1, Relaxed)) << 6 | 2;
        let h = Box::new(Heap::new(Kind::Real, id));
        h.adopts.set(false);
        h
    }

    /// Allocates `n` blocks of `class`, fills each whole block with a byte
    /// of its own, and checks where it landed.
    fn fill(h: &Heap, class: usize, n: usize, out: &mut Vec<(*mut u8, usize, u8)>) {
        let bs = class_size(class);
        for i in 0..n {
            let p = h.alloc(class);
            assert!(!p.is_null());
            assert_eq!(p.addr() % crate::size_class::ALIGNMENT, 0);
            assert_eq!(ownership::tag_of(p.addr()), TAG_ARENA);
            // SAFETY: `p` is in an arena; its pool's header is mapped.
            let pool = unsafe { &*arena::pool_of(p) };
            assert_eq!(pool.class.get() as usize, class);
            assert_eq!(owner_id(pool.owner.load(Relaxed)), h.owner.get());
            let byte = (class * 31 + i) as u8;
            // SAFETY: a fresh block of `bs` bytes.
            unsafe { p.write_bytes(byte, bs) };
            out.push((p, bs, byte));
        }
    }

    /// Checks a block's first and last bytes and gives it back.
    fn check_and_free(h: &Heap, (p, bs, byte): (*mut u8, usize, u8)) {
        // SAFETY: a live block of `bs` bytes that this test filled and now
        // gives back to its heap.
        unsafe {
            assert_eq!((p.read(), p.add(bs - 1).read()), (byte, byte), "block contents survive");
            h.free_owned(arena::pool_of(p), p.cast());
        }
    }

    #[test]
    fn blocks_of_several_classes_come_and_go() {
        let n = if cfg!(miri) { 40 } else { 400 };
        let classes = [0, 1, 6, 31, 32, 45, crate::size_class::NUM_CLASSES - 1];
        let h = test_heap();
        let mut live = Vec::new();
        for &c in &classes {
            fill(&h, c, n, &mut live);
        }
        let mut addrs: Vec<usize> = live.iter().map(|b| b.0.addr()).collect();
        addrs.sort_unstable();
        for w in addrs.windows(2) {
            assert!(w[1] - w[0] >= 16, "blocks do not overlap");
        }
        h.check_invariants();
        // Free every other block, allocate as many again, then free all.
        let (keep, gone): (Vec<_>, Vec<_>) = live.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
        for (_, b) in gone {
            check_and_free(&h, b);
        }
        h.check_invariants();
        let mut live: Vec<_> = keep.into_iter().map(|(_, b)| b).collect();
        for &c in &classes {
            fill(&h, c, n / 2, &mut live);
        }
        h.check_invariants();
        for b in live {
            check_and_free(&h, b);
        }
        h.check_invariants();
        h.trim();
        h.check_invariants();
        for c in 0..crate::size_class::NUM_CLASSES {
            assert!(h.current[c].get() == empty_pool(), "trim gives every empty pool back");
        }
        arena::check_invariants();
    }

    #[test]
    fn remote_frees_reach_the_owner() {
        let owner = test_heap();
        let other = test_heap();
        let n = if cfg!(miri) { 50 } else { 500 };
        let mut live = Vec::new();
        fill(&owner, 2, n, &mut live);
        // `other` frees the blocks: they are held back in its batch, then
        // pushed onto the pools' remote lists as chains.
        for &(p, _, _) in &live {
            // SAFETY: a handed-out block of a pool `other` does not own.
            unsafe { other.free_remote(arena::pool_of(p), p.cast()) };
        }
        other.flush_remote();
        assert_eq!(other.counters.remote_frees.load(Relaxed), n as u64);
        // They count as in use until the owner collects them, which trim
        // does: the pool is then empty and goes back to its arena.
        let pool = arena::pool_of(live[0].0);
        // SAFETY: the pool is the owner's current pool, live.
        unsafe {
            assert!((*pool).has_remote());
            assert_eq!((*pool).used() as usize, n);
        }
        assert!(owner.current[2].get() == pool);
        owner.trim();
        assert!(owner.current[2].get() == empty_pool(), "every remote free was collected");
        owner.check_invariants();
        // Blocks freed remotely and collected are handed out again.
        let mut again = Vec::new();
        fill(&owner, 2, n, &mut again);
        for (&(p, _, _), &(q, _, _)) in again.iter().zip(&again[1..]) {
            assert_ne!(p, q);
        }
        for blk in again {
            check_and_free(&owner, blk);
        }
        owner.check_invariants();
        owner.release_everything();
        other.release_everything();
    }

    /// Pools a heap holds for `class`: current, available and full.
    fn pools_of(h: &Heap, class: usize) -> usize {
        let cur = usize::from(h.current[class].get() != empty_pool());
        cur + h.avail[class].len() + h.full[class].len()
    }

    /// Regression: the slow path used to file a fully carved pool with
    /// free blocks on its local list as full, so random replacement kept
    /// taking fresh pools and left freed blocks behind.
    #[test]
    fn refilling_after_random_frees_reuses_the_freed_blocks() {
        // 16-byte blocks; under Miri 1 KiB blocks, for fewer of them.
        let class = if cfg!(miri) { crate::size_class::class_of(1024) } else { 0 };
        let per_pool = crate::pool::POOL_SIZE / class_size(class);
        let pools = if cfg!(miri) { 2 } else { 32 };
        let n = per_pool * pools;
        let h = test_heap();
        let mut live = Vec::new();
        fill(&h, class, n, &mut live);
        // An arena's pool 0 is shorter (the header takes its first pages), so
        // a fill that gets one takes a pool more; which pools it gets depends
        // on what other tests left in the arenas.
        let taken = pools_of(&h, class);
        assert!((pools..=pools + 1).contains(&taken), "{taken} pools for {pools} pools' worth of blocks");
        // Free a random half (xorshift, fixed seed).
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in (1..live.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            live.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let gone = live.split_off(n / 2);
        for b in gone {
            check_and_free(&h, b);
        }
        h.check_invariants();
        fill(&h, class, n - n / 2, &mut live);
        h.check_invariants();
        assert_eq!(pools_of(&h, class), taken, "the freed blocks are reused before any new pool");
        for b in live {
            check_and_free(&h, b);
        }
        h.release_everything();
    }

    #[test]
    fn a_dropped_heap_gives_its_pools_back_with_blocks_in_them() {
        let h = test_heap();
        let mut live = Vec::new();
        fill(&h, 10, if cfg!(miri) { 30 } else { 300 }, &mut live);
        fill(&h, 50, 5, &mut live);
        h.release_everything();
        for c in 0..crate::size_class::NUM_CLASSES {
            assert!(h.current[c].get() == empty_pool());
        }
        h.check_invariants();
        arena::check_invariants();
        // The heap is empty and usable again.
        fill(&h, 10, 3, &mut Vec::new());
        h.release_everything();
    }
}
