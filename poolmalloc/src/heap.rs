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

/// The fewest blocks a pool must hold to be armed for thinning (blocks of
/// up to 4 KiB). A pool of fewer thins out after a handful of frees, so in
/// churn it would give its pages back and fault them in again at every
/// turn: armed, hand-off churn of 16 B – 64 KiB blocks made 240 system
/// calls per million operations instead of 45. Such pools still go back
/// whole when they empty.
pub const ARM_MIN_BLOCKS: usize = 16;

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
    /// The heap profiler samples this thread: every allocation takes the
    /// thread layer's profiling path, which counts it and allocates from
    /// the thread's own heap (held in the lifecycle's second slot).
    ProfProxy = 5,
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
    /// Heap profiler: bytes this heap's user may still allocate before the
    /// next sample. Heap user.
    pub prof_left: Local<isize>,
    /// Heap profiler: the state of the sampling intervals' random numbers
    /// (0 until the first draw). Heap user.
    pub prof_rng: Local<u64>,
    /// Per small class, the last pool that thinned out (fell to half its
    /// blocks in use after it was full), waiting for the next one to thin:
    /// then, if it is still thin, its free pages go back to the OS (see
    /// [`pool_thinned`](Self::pool_thinned)). Heap user.
    thin: [Waiting; NUM_SINGLE],
    /// The registry's fork count when the heap got its user. Registry lock.
    pub epoch: Local<u64>,
    /// Per small class, how many times the slow path took another pool to
    /// allocate from. Heap user.
    switches: [Local<u32>; NUM_SINGLE],
}

/// Every method below but `new` reads or writes the heap's state, which
/// belongs to the heap's user (see the module docs): they are `unsafe`, and
/// their contract is that **the caller is the heap's user**: the thread that
/// owns the heap, or the holder of the locked-mode lock for the locked heap.
/// The user owns every pool the heap holds (current, on its lists, in its
/// stash), so inside these methods the pools' owner-only fields are ours too.
/// Sentinel heaps (kinds other than [`Kind::Real`]) have no user: nothing
/// writes their fields, so [`alloc_fast`](Self::alloc_fast) may read them
/// from any thread.
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
            prof_left: Local::new(0),
            prof_rng: Local::new(0),
            thin: [const { Waiting::new() }; NUM_SINGLE],
            epoch: Local::new(0),
            switches: [const { Local::new(0) }; NUM_SINGLE],
        }
    }

    /// Fast path: pops a block of `class` from the current pool, or null.
    ///
    /// # Safety
    /// The caller must be the heap's user, or the heap must be a sentinel (a
    /// kind other than [`Kind::Real`]): nothing ever writes a sentinel's
    /// fields, and all its classes have [`EMPTY_POOL`].
    #[inline(always)]
    pub unsafe fn alloc_fast(&self, class: usize) -> *mut Block {
        debug_assert!(class < NUM_CLASSES);
        // SAFETY: class indices come from the size-class tables, which only
        // hold valid classes. By the caller we are the heap's user, or
        // nobody writes `current`. `current` always points at a live pool
        // owned by this heap (so we are its owner), or at EMPTY_POOL, whose
        // list is empty and never written, so `pop` only reads it.
        unsafe { (*self.current.get_unchecked(class).get()).pop() }
    }

    /// Allocates a block of `class`: the fast path, then the slow path.
    ///
    /// # Safety
    /// The caller must be the heap's user.
    #[inline(always)]
    pub unsafe fn alloc(&self, class: usize) -> *mut u8 {
        // SAFETY: by the caller, we are the heap's user.
        let b = unsafe { self.alloc_fast(class) };
        if !b.is_null() {
            return b.cast();
        }
        // SAFETY: as above.
        unsafe { self.alloc_slow(class) }
    }

    /// Slow path: refill the current pool, or switch to another pool.
    /// Null when memory is exhausted (state stays consistent).
    ///
    /// # Safety
    /// The caller must be the heap's user.
    #[cold]
    pub unsafe fn alloc_slow(&self, class: usize) -> *mut u8 {
        debug_assert!(self.kind == Kind::Real);
        // SAFETY: by the caller we are the heap's user: its fields and lists
        // are ours, and so is every pool it holds, the current pool among
        // them (live while current). A pool leaves `current` before it is
        // filed as full, and `next` comes off `avail` or fresh from
        // `new_pool`, on no list.
        unsafe {
            self.trim_if_asked();
            self.flush_remote();
            let owner = self.owner.get();
            loop {
                let p = self.current[class].get();
                if p != empty_pool() {
                    let pr = &*p;
                    // A pool taken from `avail` may be fully carved with blocks
                    // on its local list: use them before calling it exhausted.
                    if pr.refill(&self.rng) {
                        let b = pr.pop();
                        debug_assert!(!b.is_null());
                        self.check();
                        return b.cast();
                    }
                    if !pr.file_full(owner | OWNER_FULL) {
                        continue; // remote frees arrived meanwhile; collect them
                    }
                    // `p` is on no list while current.
                    self.full[class].push(p);
                    self.current[class].set(empty_pool());
                    arena::report_in_use(p);
                    self.arm(pr, class);
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
                if let Some(n) = self.switches.get(class) {
                    n.set(n.get().wrapping_add(1));
                }
                self.current[class].set(next);
                arena::report_current(next);
            }
        }
    }

    /// Moves full pools of `class` that received remote frees back to
    /// `avail` (or releases them if now empty).
    ///
    /// # Safety
    /// The caller must be the heap's user.
    unsafe fn rescan_full(&self, class: usize) {
        // SAFETY: by the caller we are the heap's user: the lists and the
        // pools on them are live and ours. `next` is read before `p` leaves
        // the list; once off it, `p` is on no list.
        unsafe {
            let owner = self.owner.get();
            let mut p = self.full[class].head();
            while !p.is_null() {
                let pr = &*p;
                let next = pr.next.get();
                if pr.has_remote() {
                    self.full[class].remove(p);
                    pr.set_owner_word(owner);
                    pr.collect_remote();
                    if pr.is_empty() {
                        self.release_empty(p, false);
                    } else {
                        arena::report_in_use(p);
                        self.avail[class].push(p);
                    }
                }
                p = next;
            }
        }
    }

    /// A pool for `class`: from the stash, from the abandoned lists, or from
    /// the arenas. Initialised, USED, on no list. Null if out of memory.
    ///
    /// # Safety
    /// The caller must be the heap's user.
    unsafe fn new_pool(&self, class: usize) -> *mut Pool {
        // SAFETY: by the caller we are the heap's user: its fields and stash
        // are ours.
        let (owner, p) = unsafe { (self.owner.get(), self.stash_take(class)) };
        if !p.is_null() {
            // SAFETY: stashed pools are live, empty and ours, and `p` is now
            // off the stash: we hold it with no block out, as `init` needs.
            unsafe {
                let pr = &*p;
                pr.init(class, owner, &self.hints, arena::pool_end(pr));
                pr.hand.state.store(state::USED, Relaxed);
            }
            return p;
        }
        // SAFETY: we are the heap's user (by the caller).
        if unsafe { self.adopts.get() } {
            // SAFETY: as above.
            let p = unsafe { self.adopt(class) };
            if !p.is_null() {
                return p;
            }
        }
        let p = arena::acquire_pool(class);
        if p.is_null() {
            return p;
        }
        // SAFETY: a pool just taken from an arena is ours alone, with no
        // block out, as `init` needs; the arena set its `slices` before.
        unsafe {
            let pr = &*p;
            pr.init(class, owner, &self.hints, arena::pool_end(pr));
            pr.hand.state.store(state::USED, Relaxed);
        }
        p
    }

    /// Adopts abandoned pools of `class`; returns one with a free block (or
    /// null). Other adopted pools join `avail` or `full`.
    ///
    /// # Safety
    /// The caller must be the heap's user.
    unsafe fn adopt(&self, class: usize) -> *mut Pool {
        let mut batch = [ptr::null_mut::<Pool>(); ADOPT_BATCH];
        let n = ABANDONED.take(class, &mut batch);
        if n == 0 {
            return ptr::null_mut();
        }
        bump(&self.counters.adopted, n as u64);
        // SAFETY: by the caller we are the heap's user.
        let owner = unsafe { self.owner.get() };
        let mut result: *mut Pool = ptr::null_mut();
        for &p in &batch[..n] {
            // SAFETY: taken off the abandoned list, the pool is ours now (we
            // are its owner), on no list; we are the heap's user, so its
            // lists are ours.
            unsafe {
                let pr = &*p;
                pr.adopt(owner, &self.hints);
                pr.collect_remote();
                arena::report_in_use(p);
                let has_free = pr.has_free();
                if has_free && result.is_null() {
                    result = p;
                } else if has_free {
                    self.avail[class].push(p);
                } else {
                    self.file_full(p, class);
                }
            }
        }
        result
    }

    /// Files a pool with no free block as full.
    ///
    /// # Safety
    /// The caller must be the heap's user; `p` must be a pool of this heap
    /// (of `class`) on no list.
    unsafe fn file_full(&self, p: *mut Pool, class: usize) {
        // SAFETY: by the caller, `p` is ours and on no list, and we are the
        // heap's user.
        unsafe {
            let pr = &*p;
            if pr.file_full(self.owner.get() | OWNER_FULL) {
                self.full[class].push(p);
            } else {
                pr.collect_remote();
                arena::report_in_use(p);
                self.avail[class].push(p);
            }
        }
    }

    /// A local free into a pool filed as full (its owner word has
    /// `OWNER_FULL`): the pool goes back to `avail`.
    ///
    /// # Safety
    /// The caller must be the heap's user; `p` must be a full pool of this
    /// heap and `b` a handed-out block of it.
    pub unsafe fn free_to_full(&self, p: *mut Pool, b: *mut Block) {
        // SAFETY: by the caller, `p` is ours and on our full list, `b` a
        // handed-out block of it, and we are the heap's user. Once off the
        // full list, `p` is on no list.
        unsafe {
            let pr = &*p;
            let class = pr.class();
            self.full[class].remove(p);
            pr.withdraw_full(self.owner.get());
            self.avail[class].push(p);
            if pr.push(b) == 0 {
                self.pool_emptied(p);
            } else {
                arena::report_in_use(p);
            }
            self.check();
        }
    }

    /// Frees a block of one of this heap's pools (full or not).
    ///
    /// # Safety
    /// The caller must be the heap's user; `pool` must be a pool of this heap
    /// and `b` a handed-out block of it.
    pub unsafe fn free_owned(&self, pool: *mut Pool, b: *mut Block) {
        if crate::options::secure() {
            // SAFETY: forwarded from the caller.
            return unsafe { self.secure_free(pool, b) };
        }
        // SAFETY: by the caller.
        let pr = unsafe { &*pool };
        if pr.hand.owner.load(Relaxed) & (OWNER_FULL | OWNER_CHECKED) != 0 {
            // SAFETY: forwarded from the caller.
            return unsafe { self.free_owned_flagged(pool, b) };
        }
        // SAFETY: `b` is in the pool's block area, and we own the pool (the
        // heap's user owns its pools).
        if !unsafe { pr.may_free(b) } {
            return;
        }
        // SAFETY: a handed-out block of a pool of this heap, which we own.
        if unsafe { pr.push(b) } == 0 {
            // SAFETY: a USED pool of this heap, not full; we are its user.
            unsafe { self.pool_emptied(pool) };
        }
    }

    /// [`free_owned`](Self::free_owned) into a pool whose owner word has a
    /// flag: a full pool, or a checked one, which may have cold pages (a
    /// block on one is free already).
    ///
    /// # Safety
    /// As for [`free_owned`](Self::free_owned), outside secure mode.
    #[cold]
    #[inline(never)]
    unsafe fn free_owned_flagged(&self, pool: *mut Pool, b: *mut Block) {
        // SAFETY: by the caller.
        let pr = unsafe { &*pool };
        if pr.in_cold(b.cast()) {
            // Its mark went with the page, so `may_free` could not tell.
            crate::fault::invalid_free(b.cast(), "double free");
            return;
        }
        // SAFETY: `b` is in the pool's block area, and we own the pool (the
        // heap's user owns its pools).
        if !unsafe { pr.may_free(b) } {
            return;
        }
        if pr.hand.owner.load(Relaxed) & OWNER_FULL != 0 {
            // SAFETY: a full pool of this heap; we are its user.
            unsafe { self.free_to_full(pool, b) };
        // SAFETY: a handed-out block of a pool of this heap, which we own.
        } else if unsafe { pr.push(b) } == 0 {
            // SAFETY: a USED pool of this heap, not full; we are its user.
            unsafe { self.pool_emptied(pool) };
        }
    }

    /// Frees `p` if it is a block of one of this heap's pools; says whether
    /// it was (a first-class heap's free: a block of any other pool is left
    /// for the general path to route or report).
    ///
    /// # Safety
    /// The caller must be the heap's user. `p` must be a handed-out block of
    /// a pool (of this heap or not), not freed since.
    pub unsafe fn free_if_owned(&self, p: *mut u8) -> bool {
        let mut pool = arena::pool_of(p);
        // SAFETY: `p` is in a live arena, whose header is mapped.
        let mut word = unsafe { (*pool).hand.owner.load(Relaxed) };
        if word & OWNER_CHECKED != 0 || word == 0 {
            // A medium pool (or a later slice of one): its record, and a
            // check that `p` starts a block.
            pool = arena::leader_of(pool);
            // SAFETY: a record of a live arena.
            let pr = unsafe { &*pool };
            // SAFETY: by the caller `p` is a handed-out block of this pool,
            // so the geometry was written before we got it.
            word = if unsafe { pr.is_block_start(p) } { pr.hand.owner.load(Relaxed) } else { 0 };
        }
        // A stashed (empty) pool's word keeps OWNER_STASHED and does not
        // match: a free into it is reported by the general path.
        // SAFETY: by the caller, we are the heap's user.
        if word & !(OWNER_FULL | OWNER_CHECKED) != unsafe { self.owner.get() } {
            return false;
        }
        // SAFETY: a record of a live arena.
        unsafe { (*pool).prof_free(p) };
        // SAFETY: one of our pools, we are the heap's user, and by the caller
        // `p` is a handed-out block.
        unsafe { self.free_owned(pool, p.cast()) };
        true
    }

    /// Blocks in use in this heap's pools (walks the arenas; for tests and
    /// reports).
    ///
    /// # Safety
    /// The caller must be the heap's user.
    pub unsafe fn blocks_in_use(&self) -> usize {
        let mut n = 0;
        // SAFETY: by the caller, we are the heap's user.
        let owner = unsafe { self.owner.get() };
        let _g = arena::ARENAS.lock.guard();
        // SAFETY: the arena lock is held (guard `_g`).
        unsafe {
            arena::ARENAS.for_each(|a, free, _| {
                for (i, p) in a.pools.iter().enumerate() {
                    if free & (1 << i) == 0 && owner_id(p.hand.owner.load(Relaxed)) == owner {
                        n += p.used() as usize;
                    }
                }
            })
        };
        n
    }

    /// Gives every pool back to the arenas at once, whatever blocks are
    /// still in them (a first-class heap being dropped). Afterwards the heap
    /// holds nothing.
    ///
    /// # Safety
    /// The caller must be the heap's user.
    pub unsafe fn release_everything(&self) {
        // SAFETY: by the caller, we are the heap's user.
        unsafe { self.forget_all_thin() };
        // Held-back blocks are this heap's own (a first-class heap frees
        // only into its own pools), dead with it.
        for slot in &self.ring {
            // SAFETY: by the caller, we are the heap's user.
            unsafe { slot.set(ptr::null_mut()) };
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
            // SAFETY: we are the heap's user (by the caller): `current` and
            // the lists are ours.
            unsafe {
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
        }
        loop {
            // SAFETY: we are the heap's user: the stash is ours.
            let p = unsafe { self.stash.pop() };
            if p.is_null() {
                break;
            }
            put(p, &mut batch, &mut n);
        }
        // SAFETY: as above.
        unsafe { arena::release_pools(&batch[..n]) };
        self.hints.clear();
    }

    /// A local free left `p` with no block in use, or, if the pool is
    /// armed, at its floor (the fast path's one branch serves both).
    ///
    /// # Safety
    /// The caller must be the heap's user; `p` must be a USED pool of this
    /// heap, not filed as full.
    #[cold]
    pub unsafe fn pool_emptied(&self, p: *mut Pool) {
        // SAFETY: by the caller, `p` is a live pool of ours and we are the
        // heap's user. A USED, non-current, non-full pool of ours is on
        // `avail`; once off it, on no list.
        unsafe {
            let pr = &*p;
            if pr.floor() != 0 {
                if self.current[pr.class()].get() != p {
                    arena::report_in_use(p);
                }
                return self.pool_thinned(p);
            }
            let class = pr.class();
            if self.current[class].get() == p {
                return; // keep the pool we allocate from
            }
            self.avail[class].remove(p);
            self.release_empty(p, false);
            self.check();
        }
    }

    /// Arms a small pool just filed as full, so that the heap hears when
    /// frees bring it down to half its blocks (see [`Pool::arm`]). Not in
    /// secure mode, whose frees all take the checked path, and not a pool
    /// of fewer than [`ARM_MIN_BLOCKS`] blocks.
    ///
    /// # Safety
    /// The caller must be the heap's user and `pr` a pool of this heap.
    #[inline]
    unsafe fn arm(&self, pr: &Pool, class: usize) {
        if class < NUM_SINGLE && pr.capacity() >= ARM_MIN_BLOCKS && !crate::options::secure() {
            // SAFETY: by the caller, we own the pool. A single-slice pool
            // holds at most 4,096 blocks, so half of them fits 16 bits.
            unsafe { pr.arm((pr.capacity() / 2) as u16) };
        }
    }

    /// An armed pool fell to its floor, half its blocks: it is disarmed,
    /// and it waits (one per class) until the next pool of its class does
    /// the same. That pool comes after it in the program's order of frees,
    /// so by then the frees that were thinning the first one have usually
    /// passed it. If it is still at most three eighths in use, and the
    /// program did not allocate blocks of the class meanwhile (neither from
    /// another pool nor, on balance, from the current one: in churn, freed
    /// pages are wanted again soon, and giving them back would cost an
    /// `madvise` and page faults per turn), its wholly free pages go back
    /// to the OS at once ([`Pool::cool`]). This is how
    /// the memory of a burst that left a few blocks in every pool it used
    /// goes back without another call, the fast paths unchanged: a program
    /// that then sleeps keeps at most one waiting pool per class.
    ///
    /// A pool that keeps emptying is released before its turn and costs a
    /// compare; one that is refilled meanwhile is skipped; the walk of its
    /// free list happens once per thinning, after at least half a pool of
    /// frees.
    ///
    /// # Safety
    /// The caller must be the heap's user; `p` a USED pool of this heap.
    #[cold]
    unsafe fn pool_thinned(&self, p: *mut Pool) {
        // SAFETY: by the caller, we own `p` and are the heap's user.
        unsafe {
            let pr = &*p;
            pr.disarm();
            let class = pr.class();
            if class >= NUM_SINGLE {
                return;
            }
            let w = &self.thin[class];
            let (waiting, generation) = (w.pool.get(), w.generation.get());
            let switches = self.switches[class].get();
            let in_current = (*self.current[class].get()).used();
            // Whether the program allocated blocks of the class meanwhile:
            // from another pool, or more than it freed from the current one.
            let allocated = switches != w.switches.get() || in_current > w.in_current.get();
            w.pool.set(p);
            w.generation.set(pr.generation());
            w.switches.set(switches);
            w.in_current.set(in_current);
            // A class the program allocates from (churn) will want the pages
            // again soon: they stay.
            if !waiting.is_null() && waiting != p && !allocated {
                self.cool_if_thin(waiting, generation, class);
            }
        }
    }

    /// Gives back the free pages of `p` if it is still this heap's pool of
    /// `class` in the same generation, not current, not full, and at most
    /// three eighths in use (see [`pool_thinned`](Self::pool_thinned)).
    /// Returns the bytes given back.
    ///
    /// # Safety
    /// The caller must be the heap's user; `p` must be a pool record in a
    /// live arena (a pool this heap held and has not released, which
    /// `forget_thin` ensures).
    unsafe fn cool_if_thin(&self, p: *mut Pool, generation: u32, class: usize) -> usize {
        // SAFETY: `p` is in a live arena (by the caller). Once the owner word
        // names this heap, with neither the full nor the stashed flag, the
        // pool is ours: a USED pool that is current or on `avail`.
        unsafe {
            let pr = &*p;
            let owner = self.owner.get();
            if pr.hand.owner.load(Relaxed) & !OWNER_CHECKED != owner
                || pr.generation() != generation
                || pr.class() != class
                || self.current[class].get() == p
            {
                return 0;
            }
            let used = pr.used() as usize;
            if used == 0 || used * 8 > pr.capacity() * 3 {
                return 0;
            }
            pr.cool()
        }
    }

    /// Forgets `p` as a pool waiting to be cooled: it leaves the heap.
    ///
    /// # Safety
    /// The caller must be the heap's user.
    #[inline]
    unsafe fn forget_thin(&self, p: *mut Pool) {
        // SAFETY: by the caller, the waiting slots are ours.
        unsafe {
            for w in &self.thin {
                if w.pool.get() == p {
                    w.pool.set(ptr::null_mut());
                }
            }
        }
    }

    /// Forgets every pool waiting to be cooled.
    ///
    /// # Safety
    /// The caller must be the heap's user.
    unsafe fn forget_all_thin(&self) {
        for w in &self.thin {
            // SAFETY: by the caller, the waiting slots are ours.
            unsafe { w.pool.set(ptr::null_mut()) };
        }
    }

    /// Whether `p` is on this heap's list of available pools of its class
    /// (a walk: for a rare path).
    ///
    /// # Safety
    /// The caller must be the heap's user; `p` a pool record in a live
    /// arena that the caller owns.
    pub unsafe fn is_available(&self, p: *mut Pool) -> bool {
        // SAFETY: by the caller, we own `p` (its class is ours to read) and
        // are the heap's user (its lists are ours).
        unsafe {
            let class = (*p).class();
            let mut q = self.avail[class].head();
            while !q.is_null() {
                if q == p {
                    return true;
                }
                q = (*q).next.get();
            }
        }
        false
    }

    /// A stashed pool that can serve `class` (as many slices, as long, since
    /// slice 0 is shorter, and starting on the alignment the class needs),
    /// taken off the stash; null if none.
    ///
    /// # Safety
    /// The caller must be the heap's user.
    unsafe fn stash_take(&self, class: usize) -> *mut Pool {
        let k = size_class::slices(class);
        // SAFETY: by the caller we are the heap's user: the stash is ours,
        // and stashed pools are live, empty and ours (we own them, and the
        // arena set their `slices` before handing them out).
        unsafe {
            let mut p = self.stash.head();
            while !p.is_null() {
                let pr = &*p;
                let fits = pr.slices.get() as usize == k
                    && (class < NUM_SINGLE
                        || (arena::pool_area(pr) == k * POOL_SIZE
                            && pr.start.get().addr() % (size_class::run_align(class) * POOL_SIZE) == 0));
                if fits {
                    self.stash.remove(p);
                    return p;
                }
                p = pr.next.get();
            }
        }
        ptr::null_mut()
    }

    /// Slices spanned by the stashed pools.
    ///
    /// # Safety
    /// The caller must be the heap's user.
    unsafe fn stash_slices(&self) -> usize {
        let mut n = 0;
        // SAFETY: by the caller we are the heap's user: the stash and the
        // pools on it are live and ours.
        unsafe {
            let mut p = self.stash.head();
            while !p.is_null() {
                let pr = &*p;
                n += pr.slices.get() as usize;
                p = pr.next.get();
            }
        }
        n
    }

    /// An empty pool on no list: into the stash, or back to its arena.
    ///
    /// # Safety
    /// The caller must be the heap's user; `p` must be an empty pool of this
    /// heap on no list.
    unsafe fn release_empty(&self, p: *mut Pool, to_arena: bool) {
        // SAFETY: by the caller, `p` is ours, empty and on no list, and we
        // are the heap's user (the stash is ours).
        unsafe {
            self.forget_thin(p);
            arena::report_in_use(p);
            let pr = &*p;
            let room = self.stash.len() < STASH_MAX
                && self.stash_slices() + pr.slices.get() as usize <= STASH_MAX_SLICES;
            if !to_arena && room {
                pr.set_owner_word(self.owner.get() | OWNER_STASHED);
                pr.hand.state.store(state::EMPTY, Relaxed);
                self.stash.push(p);
            } else {
                arena::release_pools(&[p]);
            }
        }
    }

    /// Trims this heap if a trim was requested since it last looked (see
    /// [`TRIM_REQUESTS`]). Heap user, on a slow path.
    ///
    /// # Safety
    /// The caller must be the heap's user.
    #[inline]
    pub unsafe fn trim_if_asked(&self) {
        let asked = TRIM_REQUESTS.load(Relaxed);
        // SAFETY: by the caller, we are the heap's user.
        unsafe {
            if asked != self.trims_seen.get() {
                self.trims_seen.set(asked);
                self.trim();
            }
        }
    }

    /// Collects remote frees everywhere, gives every empty pool (and the
    /// stash) back to the arenas, and gives back the wholly free pages of
    /// the pools in use, the current ones aside ([`Pool::cool`]).
    ///
    /// # Safety
    /// The caller must be the heap's user.
    pub unsafe fn trim(&self) {
        // SAFETY: by the caller we are the heap's user: `current`, the lists
        // and the pools they hold are live and ours. `next` is read before
        // `p` leaves `avail`; once off it, `p` is on no list.
        unsafe {
            self.flush_ring();
            self.flush_remote();
            for class in 0..NUM_CLASSES {
                let cur = self.current[class].get();
                if cur != empty_pool() {
                    let pr = &*cur;
                    pr.collect_remote();
                    if pr.is_empty() {
                        self.current[class].set(empty_pool());
                        self.release_empty(cur, true);
                    }
                }
                let mut p = self.avail[class].head();
                while !p.is_null() {
                    let pr = &*p;
                    let next = pr.next.get();
                    pr.collect_remote();
                    arena::report_in_use(p);
                    if pr.is_empty() {
                        self.avail[class].remove(p);
                        self.release_empty(p, true);
                    } else if class < NUM_SINGLE {
                        pr.cool();
                    }
                    p = next;
                }
                self.rescan_full(class);
            }
            self.flush_stash();
            self.check();
        }
    }

    /// # Safety
    /// The caller must be the heap's user.
    unsafe fn flush_stash(&self) {
        loop {
            // SAFETY: by the caller, we are the heap's user: the stash is ours.
            let p = unsafe { self.stash.pop() };
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
    ///
    /// # Safety
    /// The caller must be the heap's user.
    pub unsafe fn abandon(&self) {
        // SAFETY: by the caller we are the heap's user: `current` and the
        // lists are ours, and each pool taken from them is ours and on no
        // list.
        unsafe {
            self.forget_all_thin();
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
        }
        self.hints.clear();
    }

    /// # Safety
    /// The caller must be the heap's user; `p` must be a pool of this heap
    /// on no list.
    unsafe fn abandon_pool(&self, p: *mut Pool) {
        // SAFETY: by the caller, `p` is ours (we own it) and on no list, and
        // we are the heap's user.
        unsafe {
            self.forget_thin(p);
            let pr = &*p;
            pr.collect_remote();
            arena::report_in_use(p);
            if pr.is_empty() {
                self.release_empty(p, true);
                return;
            }
            pr.abandon();
            // `p` is a live pool with blocks in use, on no list.
            ABANDONED.put(p, pr.class());
        }
    }

    /// Forgets every pool without touching them (fork child: the pools are
    /// reclaimed by walking the arenas instead).
    ///
    /// # Safety
    /// The caller must be the heap's user: in a fork child, its one thread.
    pub unsafe fn forget_all(&self) {
        // SAFETY: by the caller we are the heap's user: every field here is
        // ours.
        unsafe {
            self.forget_all_thin();
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
        }
        self.hints.clear();
    }

    /// Checks the heap's structural invariants (with the `debug-invariants`
    /// feature; otherwise does nothing).
    ///
    /// # Safety
    /// The caller must be the heap's user.
    #[inline]
    pub unsafe fn check(&self) {
        #[cfg(feature = "debug-invariants")]
        // SAFETY: forwarded from the caller.
        unsafe {
            self.check_invariants()
        };
    }

    /// Full scan of the heap's structural invariants. Panics on violation.
    ///
    /// # Safety
    /// The caller must be the heap's user.
    pub unsafe fn check_invariants(&self) {
        // SAFETY: by the caller we are the heap's user: `current`, the lists
        // and the pools they hold are live and ours.
        unsafe {
            let owner = self.owner.get();
            for class in 0..NUM_CLASSES {
                let cur = self.current[class].get();
                if cur != empty_pool() {
                    let pr = &*cur;
                    assert_eq!(owner_word(pr), owner | pr.owner_flags(), "current pool owned by its heap");
                    check_pool(pr, class);
                }
                for (list, full) in [(&self.avail[class], false), (&self.full[class], true)] {
                    let mut p = list.head();
                    let mut n = 0;
                    while !p.is_null() {
                        let pr = &*p;
                        let want = if full { owner | OWNER_FULL } else { owner };
                        assert_eq!(owner_word(pr), want | pr.owner_flags(), "list pool owner word");
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
    /// The caller must be this heap's user. `b` must be a block of `pool`
    /// that the caller gives up, and `pool` a live pool record.
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
        // SAFETY: by the caller, we are the heap's user: the ring is ours.
        if may_be(held_mark(b)) && self.ring.iter().any(|s| unsafe { s.get() } == b) {
            crate::fault::invalid_free(b.cast(), "double free");
            return;
        }
        // Only the owner may walk the pool's lists.
        // SAFETY: we are the heap's user (by the caller), so `owner` is ours
        // to read; the store and the local list are read only when the
        // pool's owner word names this heap, that is when we own the pool.
        if unsafe {
            owner_id(pr.hand.owner.load(Relaxed)) == self.owner.get()
                && ((may_be(pr.store_mark(b)) && pr.in_store(b.cast()))
                    || (may_be(pr as *const Pool as usize) && pr.on_local_list(b)))
        } {
            crate::fault::invalid_free(b.cast(), "double free");
            return;
        }
        let word = pr.hand.owner.load(Relaxed);
        // SAFETY: we hold `b`, a handed-out block of the pool (by the
        // caller), so its class was written before we got it; `owner` is
        // ours as the heap's user.
        if unsafe { pr.is_medium() || (word & USER_OWNER_BIT != 0 && owner_id(word) != self.owner.get()) } {
            // Not held back: a medium block may be a megabyte, and a thread
            // that goes idle would keep it from its pool; a block of a
            // first-class heap must not outlive that heap in this ring.
            // SAFETY: a block of `pool`, given up by the caller, freed once
            // as far as the checks above can tell; it carries the held mark
            // that `secure_release` expects. We are the heap's user.
            unsafe {
                (*b).mark = held_mark(b);
                return self.secure_release(b);
            }
        }
        // SAFETY: we are the heap's user (by the caller): the generator and
        // the ring are ours. The caller gives `b` up: its second word is
        // ours. `old` is a block freed through this heap earlier, held back.
        unsafe {
            let slot = &self.ring[self.rng.below(SECURE_RING)];
            let old = slot.get();
            (*b).mark = held_mark(b);
            slot.set(b);
            if !old.is_null() {
                self.secure_release(old);
            }
        }
    }

    /// Sends a held-back block back to its pool: into the store if the pool
    /// is this heap's, else as a remote free.
    ///
    /// # Safety
    /// The caller must be the heap's user; `b` must be a block freed through
    /// this heap and held back since.
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
        let word = pr.hand.owner.load(Relaxed);
        // SAFETY: by the caller, we are the heap's user.
        if owner_id(word) != unsafe { self.owner.get() } {
            // SAFETY: a handed-out block of another heap's pool, given up;
            // holding it, we may read the pool's class. We are the heap's
            // user.
            unsafe {
                if pr.is_medium() {
                    self.free_remote_now(pool, b);
                } else {
                    self.free_remote(pool, b);
                }
            }
            return;
        }
        // SAFETY: a handed-out block of our pool: we are the heap's user, so
        // we own the pool; a full pool of this heap is on its full list, and
        // a USED one that is not full is current or on `avail`.
        unsafe {
            pr.secure_push(b);
            let used = pr.drop_used(1);
            let class = pr.class();
            if word & OWNER_FULL != 0 {
                self.full[class].remove(pool);
                pr.withdraw_full(self.owner.get());
                if used == 0 {
                    self.release_empty(pool, false);
                } else {
                    // `pool` is on no list.
                    self.avail[class].push(pool);
                }
            } else if used == 0 {
                self.pool_emptied(pool);
            }
            self.check();
        }
    }

    /// Sends every held-back block back to its pool.
    ///
    /// # Safety
    /// The caller must be the heap's user.
    pub unsafe fn flush_ring(&self) {
        for slot in &self.ring {
            // SAFETY: by the caller we are the heap's user: the ring is ours,
            // and a non-null slot holds a held-back block.
            unsafe {
                let b = slot.get();
                if !b.is_null() {
                    slot.set(ptr::null_mut());
                    self.secure_release(b);
                }
            }
        }
    }
}

/// Remote frees held back to be pushed as one chain (see `Heap::batch`).
/// At most [`REMOTE_BATCH`] blocks, all of one pool; they count as in use
/// until pushed. Heap user.
struct RemoteBatch {
    pool: Local<*mut Pool>,
    head: Local<*mut Block>,
    tail: Local<*mut Block>,
    len: Local<u32>,
}

/// A heap's pool of one small class waiting to be cooled (see
/// [`Heap::pool_thinned`]). Heap user.
struct Waiting {
    /// The pool, or null.
    pool: Local<*mut Pool>,
    /// Its generation when it thinned.
    generation: Local<u32>,
    /// The class's pool switches then.
    switches: Local<u32>,
    /// The blocks in use in the class's current pool then.
    in_current: Local<u32>,
}

impl Waiting {
    const fn new() -> Self {
        Waiting {
            pool: Local::new(ptr::null_mut()),
            generation: Local::new(0),
            switches: Local::new(0),
            in_current: Local::new(0),
        }
    }
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
    /// The caller must be the heap's user. `b` must be a handed-out block of
    /// `pool`, given up by the caller; `pool` is not this heap's.
    pub unsafe fn free_remote(&self, pool: *mut Pool, b: *mut Block) {
        let bt = &self.batch;
        // SAFETY: by the caller we are the heap's user: the batch is ours.
        // The caller gives `b` up; its first two words are ours, and `pool`
        // is a live pool record.
        unsafe {
            if bt.pool.get() != pool {
                self.trim_if_asked();
                self.flush_remote();
                bt.pool.set(pool);
                bt.tail.set(b);
                bt.head.set(ptr::null_mut());
            }
            *b = Block { next: bt.head.get(), mark: (*pool).remote_mark() };
            bt.head.set(b);
            bt.len.set(bt.len.get() + 1);
            if bt.len.get() >= REMOTE_BATCH {
                self.flush_remote();
            }
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
    ///
    /// # Safety
    /// The caller must be the heap's user.
    pub unsafe fn batch_pool(&self) -> *mut Pool {
        // SAFETY: by the caller, we are the heap's user.
        unsafe { self.batch.pool.get() }
    }

    /// Pushes the held-back remote frees, if any.
    ///
    /// # Safety
    /// The caller must be the heap's user.
    pub unsafe fn flush_remote(&self) {
        let bt = &self.batch;
        // SAFETY: by the caller we are the heap's user: the batch is ours.
        // The chain holds blocks of `pool`, which stays live while they
        // count as in use, and we give them up.
        unsafe {
            let pool = bt.pool.get();
            if pool.is_null() {
                return;
            }
            let n = bt.len.get();
            (*pool).push_remote_chain(bt.head.get(), bt.tail.get(), n);
            bump(&self.counters.remote_frees, n as u64);
            bt.pool.set(ptr::null_mut());
            bt.len.set(0);
        }
    }
}

/// A pool's owner word for the invariant check, without an `OWNER_CHECKED`
/// that the heap profiler no longer needs (the pool's last sampled block was
/// freed by another thread; the owner clears the bit at its next free).
///
/// # Safety
/// The caller must be the pool's owner.
unsafe fn owner_word(pr: &Pool) -> usize {
    let word = pr.hand.owner.load(Relaxed);
    // SAFETY: by the caller.
    if unsafe { pr.owner_flags() } == 0 {
        word & !OWNER_CHECKED
    } else {
        word
    }
}

/// Invariants of one USED pool of `class`.
///
/// # Safety
/// The caller must be the pool's owner (see [`Pool`]).
unsafe fn check_pool(p: &Pool, class: usize) {
    assert_eq!(p.hand.state.load(Relaxed), state::USED);
    // SAFETY: by the caller, we own the pool: its owner-only fields and
    // geometry are ours, and so are the blocks on its local list.
    unsafe {
        assert_eq!(p.class(), class);
        let bs = p.block_size();
        let mut free = 0usize;
        let mut b = p.free.get();
        while !b.is_null() {
            let a = b as usize;
            assert!(a >= p.start.get() as usize && a < p.bump.get() as usize, "free block inside carved area");
            assert_eq!((a - p.start.get() as usize) % bs, 0, "free block on a block boundary");
            assert!(!p.in_cold(b.cast()), "no free block on a cold page is listed");
            free += 1;
            b = (*b).next;
        }
        free += p.store_len();
        let uncarved = (p.end() as usize - p.bump.get() as usize) / bs;
        let cold = p.cold_blocks();
        assert_eq!(free + p.used() as usize + uncarved + cold, p.capacity(), "blocks add up to capacity: {free} free, {} used ({} floor), {uncarved} uncarved, {cold} cold, bs {bs}", p.used(), p.floor());
    }
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

    // Every heap in these tests comes from `test_heap` and is used by the
    // test's own thread alone, which is therefore its user (and the owner of
    // its pools); the helpers below ask their callers for just that.

    /// A heap of the test's own, with an owner id that no thread and no
    /// other heap has (bit 1 set, as first-class heaps' ids), that does not
    /// adopt other threads' abandoned pools.
    fn test_heap() -> Box<Heap> {
        static IDS: AtomicUsize = AtomicUsize::new(1);
        let id = ((usize::MAX >> 12) - IDS.fetch_add(1, Relaxed)) << 6 | 2;
        let h = Box::new(Heap::new(Kind::Real, id));
        // SAFETY: a fresh heap, seen by this thread only.
        unsafe { h.adopts.set(false) };
        h
    }

    /// Allocates `n` blocks of `class`, fills each whole block with a byte
    /// of its own, and checks where it landed.
    ///
    /// # Safety
    /// The caller must be `h`'s user.
    unsafe fn fill(h: &Heap, class: usize, n: usize, out: &mut Vec<(*mut u8, usize, u8)>) {
        let bs = class_size(class);
        for i in 0..n {
            // SAFETY: by the caller, we are the heap's user.
            let p = unsafe { h.alloc(class) };
            assert!(!p.is_null());
            assert_eq!(p.addr() % crate::size_class::ALIGNMENT, 0);
            assert_eq!(ownership::tag_of(p.addr()), TAG_ARENA);
            // SAFETY: `p` is in an arena; its pool's header is mapped. We are
            // the heap's user, so we own the pool.
            unsafe {
                let pool = &*arena::pool_of(p);
                assert_eq!(pool.class(), class);
                assert_eq!(owner_id(pool.hand.owner.load(Relaxed)), h.owner.get());
            }
            let byte = (class * 31 + i) as u8;
            // SAFETY: a fresh block of `bs` bytes.
            unsafe { p.write_bytes(byte, bs) };
            out.push((p, bs, byte));
        }
    }

    /// Checks a block's first and last bytes and gives it back.
    ///
    /// # Safety
    /// The caller must be `h`'s user, and the block a live one of `h` that
    /// `fill` made.
    unsafe fn check_and_free(h: &Heap, (p, bs, byte): (*mut u8, usize, u8)) {
        // SAFETY: a live block of `bs` bytes that this test filled and now
        // gives back to its heap, whose user we are (by the caller).
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
        // SAFETY: the test's own heap (see above); every block freed is a
        // live one that `fill` made.
        unsafe {
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
        }
        arena::check_invariants();
    }

    #[test]
    fn remote_frees_reach_the_owner() {
        let owner = test_heap();
        let other = test_heap();
        let n = if cfg!(miri) { 50 } else { 500 };
        let mut live = Vec::new();
        // SAFETY: both heaps are the test's own (see above). The blocks
        // `other` frees are handed-out blocks of pools it does not own, each
        // given up once; the pool read below is the owner's current pool,
        // live; the blocks freed at the end are live ones `fill` made.
        unsafe {
            fill(&owner, 2, n, &mut live);
            // `other` frees the blocks: they are held back in its batch, then
            // pushed onto the pools' remote lists as chains.
            for &(p, _, _) in &live {
                other.free_remote(arena::pool_of(p), p.cast());
            }
            other.flush_remote();
            assert_eq!(other.counters.remote_frees.load(Relaxed), n as u64);
            // They count as in use until the owner collects them, which trim
            // does: the pool is then empty and goes back to its arena.
            let pool = arena::pool_of(live[0].0);
            assert!((*pool).has_remote());
            assert_eq!((*pool).used() as usize, n);
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
    }

    /// Pools a heap holds for `class`: current, available and full.
    ///
    /// # Safety
    /// The caller must be `h`'s user.
    unsafe fn pools_of(h: &Heap, class: usize) -> usize {
        // SAFETY: by the caller, we are the heap's user.
        unsafe {
            let cur = usize::from(h.current[class].get() != empty_pool());
            cur + h.avail[class].len() + h.full[class].len()
        }
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
        // SAFETY: the test's own heap (see above); every block freed is a
        // live one that `fill` made, freed once.
        unsafe {
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
    }

    /// A burst that leaves a cluster of live blocks in the middle of every
    /// pool it filled, freed in the order it was allocated (the shape of a
    /// server after a burst of requests): once the next pool of the class
    /// thins out, the one before gives its wholly free pages back, with no
    /// further call. The cluster is intact, the given-back pages read as
    /// zero, frees into the pool are checked, and refilling reuses the cold
    /// blocks before any new pool.
    #[test]
    fn a_thinned_pool_gives_its_free_pages_back() {
        let class = crate::size_class::class_of(if cfg!(miri) { 512 } else { 64 });
        let bs = class_size(class);
        let per_pool = crate::pool::POOL_SIZE / bs;
        let unit = crate::pool::cold_unit();
        let h = test_heap();
        let mut live = Vec::new();
        // Freed blocks on cold pages are read below as raw pool memory,
        // which stays mapped.
        // SAFETY: the test's own heap (see above); every block freed is a
        // live one that `fill` made, freed once; pool records are read for
        // pools the heap holds, whose owner we are.
        unsafe {
            fill(&h, class, per_pool * 5 + 1, &mut live);
            let taken = pools_of(&h, class);
            // In each pool, keep the 8 blocks from the middle of its blocks.
            let mut kept = Vec::new();
            let mut freed = Vec::new();
            let mut seen: Vec<(*mut Pool, usize)> = Vec::new();
            for &b in &live {
                let pool = arena::pool_of(b.0);
                let k = match seen.iter_mut().find(|(p, _)| *p == pool) {
                    Some((_, k)) => {
                        *k += 1;
                        *k
                    }
                    None => {
                        seen.push((pool, 0));
                        0
                    }
                };
                let n = (*pool).capacity();
                if (n / 2..n / 2 + 8).contains(&k) {
                    kept.push(b);
                } else {
                    freed.push(b.0);
                    check_and_free(&h, b);
                }
            }
            // Every pool that was full and thinned out before another one
            // did has cold pages: all of them but the last two.
            let full_pools: Vec<*mut Pool> = seen.iter().map(|s| s.0).filter(|&p| (*p).capacity() == per_pool).collect();
            assert!(full_pools.len() >= 4);
            let cooled: Vec<*mut Pool> = full_pools.iter().copied().filter(|&p| (*p).in_cold((*p).start.get())).collect();
            assert!(cooled.len() + 2 >= full_pools.len(), "{} of {} pools cooled", cooled.len(), full_pools.len());
            for &p in &cooled {
                let pr = &*p;
                assert_ne!(pr.hand.owner.load(Relaxed) & OWNER_CHECKED, 0, "frees into a cold pool are checked");
                assert_eq!(pr.used(), 8);
                // The first page holds only freed blocks: it went back and
                // reads as zero.
                let first = pr.start.get();
                assert!((0..unit).all(|i| first.add(i).read() == 0), "a cold page reads as zero");
            }
            for &b in &kept {
                assert_eq!((b.0.read(), b.0.add(bs - 1).read()), (b.2, b.2), "kept blocks survive");
            }
            h.check_invariants();
            // Refill every block the pools hold: the cold blocks come back
            // before any new pool.
            let room: usize = seen.iter().map(|s| (*s.0).capacity()).sum::<usize>() - kept.len();
            assert_eq!(seen.len(), taken);
            let mut again = Vec::new();
            fill(&h, class, room, &mut again);
            assert_eq!(pools_of(&h, class), taken, "the cold blocks are reused before any new pool");
            for &p in &cooled {
                assert!(!(*p).in_cold((*p).start.get()), "no pool is cold once refilled");
                assert_eq!((*p).hand.owner.load(Relaxed) & OWNER_CHECKED, 0, "and its frees are fast again");
            }
            h.check_invariants();
            for b in kept.into_iter().chain(again) {
                check_and_free(&h, b);
            }
            h.check_invariants();
            h.release_everything();
        }
    }

    /// `trim` gives back the wholly free pages of every pool in use but the
    /// current one, armed or not, and the blocks left live are intact.
    #[test]
    fn trim_gives_back_the_free_pages_of_pools_in_use() {
        let class = crate::size_class::class_of(if cfg!(miri) { 512 } else { 64 });
        let per_pool = crate::pool::POOL_SIZE / class_size(class);
        let h = test_heap();
        let mut live = Vec::new();
        // SAFETY: the test's own heap (see above); every block freed is a
        // live one that `fill` made, freed once; pool records are read for
        // pools the heap holds.
        unsafe {
            fill(&h, class, per_pool * 3, &mut live);
            // Keep the first 4 blocks of each pool and free the rest, last
            // first.
            let mut kept = Vec::new();
            let mut counts: Vec<(*mut Pool, usize)> = Vec::new();
            for b in live.into_iter().rev() {
                let pool = arena::pool_of(b.0);
                let i = (b.0.addr() - (*pool).start.get().addr()) / class_size(class);
                if !counts.iter().any(|c| c.0 == pool) {
                    counts.push((pool, 0));
                }
                if i < 4 {
                    kept.push(b);
                } else {
                    check_and_free(&h, b);
                }
            }
            let last_block = |pr: &Pool| pr.start.get().wrapping_add((pr.capacity() - 1) * class_size(class));
            // Thinning cooled each pool but the last to thin (the first
            // one): trim must do that one too.
            let before: Vec<bool> = counts.iter().map(|&(p, _)| (*p).in_cold(last_block(&*p))).collect();
            h.trim();
            let current = h.current[class].get();
            let mut by_trim = 0;
            for (&(pool, _), &was) in counts.iter().zip(&before) {
                let pr = &*pool;
                if pool == current || pr.used() == 0 {
                    continue;
                }
                assert!(pr.in_cold(last_block(pr)), "the last page of a pool with 4 blocks in use went back");
                by_trim += usize::from(!was);
            }
            assert!(by_trim >= 1, "trim cooled a pool that thinning had not");
            for &b in &kept {
                assert_eq!((b.0.read(), b.0.add(class_size(class) - 1).read()), (b.2, b.2), "kept blocks survive");
            }
            h.check_invariants();
            for b in kept {
                check_and_free(&h, b);
            }
            h.check_invariants();
            h.release_everything();
        }
    }

    #[test]
    fn a_dropped_heap_gives_its_pools_back_with_blocks_in_them() {
        let h = test_heap();
        let mut live = Vec::new();
        // SAFETY: the test's own heap (see above).
        unsafe {
            fill(&h, 10, if cfg!(miri) { 30 } else { 300 }, &mut live);
            fill(&h, 50, 5, &mut live);
            h.release_everything();
            for c in 0..crate::size_class::NUM_CLASSES {
                assert!(h.current[c].get() == empty_pool());
            }
            h.check_invariants();
        }
        arena::check_invariants();
        // SAFETY: as above.
        unsafe {
            // The heap is empty and usable again.
            fill(&h, 10, 3, &mut Vec::new());
            h.release_everything();
        }
    }
}
