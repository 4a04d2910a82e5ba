//! Layer 6: how threads reach heaps, per block.
//!
//! * **Per-thread heaps (default).** Each thread's heap slot (see
//!   [`crate::lifecycle`]) points at its heap. The allocation fast path is a
//!   TLS load, two loads and a store: no lock, no atomic read-modify-write,
//!   no call through a pointer. A sentinel heap in the slot sends the first
//!   allocation of a thread to [`lifecycle::init_thread`].
//! * **Local frees** compare the pool's owner word with the caller's thread
//!   id ([`crate::tid`]): one load and one compare.
//! * **Cross-thread frees** push onto the pool's remote list; see
//!   [`crate::pool`] and [`crate::remote`]. The freeing thread's heap holds
//!   back consecutive frees of small blocks into one pool (at most
//!   [`REMOTE_BATCH`](crate::heap::REMOTE_BATCH)) and pushes them as one chain
//!   with one CAS; it pushes them when a block of another pool comes, when it
//!   next takes its allocation slow path, at `trim()`, and at thread exit.
//!   Until then they count as in use. A thread that frees before it ever
//!   allocates gets its heap at its first cross-thread free.
//! * **Locked mode** (`LockedPoolMalloc`, `POOLMALLOC_THREADS=locked`): one
//!   global heap behind one lock, the pymalloc-under-the-GIL model. In this
//!   mode every thread's slot points at a proxy sentinel, so the per-thread
//!   fast path costs nothing extra for the mode test.
//!
//! Process set-up, thread exit, trim and fork are in [`crate::lifecycle`];
//! the heap structures themselves in [`crate::registry`].

use crate::arena;
use crate::heap::{Heap, Kind};
use crate::lifecycle::{self, current_heap};
use crate::options;
use crate::os;
use crate::prof;
use crate::pool::{owner_id, state, Block, Pool, LOCKED_OWNER, OWNER_CHECKED, OWNER_FULL};
use crate::registry::{LOCKED_HEAP, LOCKED_LOCK, ORPHAN_REMOTE_FREES};
use crate::size_class::ALIGNMENT;
use crate::sync::atomic::Ordering::*;
use crate::tid::thread_id;

// ---------------------------------------------------------------------------
// Small-block allocation and free.

/// Allocates a block of `class` from the calling thread's heap. In debug
/// mode every thread's slot holds the debug proxy heap, whose classes are
/// empty, so the request falls through to the slow path, which hands it to
/// `wrapped`: the debug wrapper's entry for the same request (the layer
/// above names it; this layer never names the debug wrapper).
#[inline(always)]
pub fn alloc(class: usize, wrapped: impl FnOnce() -> *mut u8) -> *mut u8 {
    let h = current_heap();
    // SAFETY: the slot always points at a live heap: this thread's own, whose
    // user we are, or a sentinel, whose fields nothing writes.
    let b = unsafe { (*h).alloc_fast(class) };
    if !b.is_null() {
        return b.cast();
    }
    alloc_slow(wrapped, class, h)
}

/// Slow path of [`alloc`]; sets `errno` to `ENOMEM` when it returns null.
/// The wrapper's closure comes first and callers pass `move` closures: the
/// request size it captures is then already in the first argument register
/// when `malloc` jumps here, and never spilled to the stack (each costs an
/// instruction on the fast path, `bench --instructions`).
#[cold]
#[inline(never)]
fn alloc_slow(wrapped: impl FnOnce() -> *mut u8, class: usize, h: *mut Heap) -> *mut u8 {
    // A thread the heap profiler samples comes here for every allocation:
    // it is sent on first, with nothing else done.
    // SAFETY: the slot always points at a live heap.
    if unsafe { (*h).kind } == Kind::ProfProxy {
        return prof_alloc(class);
    }
    alloc_slow_other(wrapped, class, h)
}

/// [`alloc_slow`] for every slot but the profiler's proxy.
#[inline(never)]
fn alloc_slow_other(wrapped: impl FnOnce() -> *mut u8, class: usize, h: *mut Heap) -> *mut u8 {
    // SAFETY: the slot always points at a live heap.
    let p = match unsafe { (*h).kind } {
        Kind::Real if prof::sampling() => {
            // The profiler started: this thread's allocations take the
            // profiling path from now on.
            lifecycle::enter_profiling(h);
            return prof_alloc(class);
        }
        // SAFETY: the calling thread owns its real heap.
        Kind::Real => unsafe { real_alloc_slow(h, class) },
        Kind::Uninit => {
            lifecycle::init_thread();
            return alloc(class, wrapped);
        }
        Kind::DebugProxy => return wrapped(),
        Kind::ProfProxy => return prof_alloc(class),
        Kind::Dead | Kind::LockedProxy => locked_alloc(class),
    };
    if p.is_null() {
        os::set_errno(libc::ENOMEM);
    }
    p
}

/// The slow path of a thread's own heap `h`; when memory is exhausted,
/// gives back what is held but not live (cached huge spans, free pools'
/// pages, all-free arenas, this heap's empty pools) and tries once more.
///
/// # Safety
/// `h` must be the calling thread's own heap.
unsafe fn real_alloc_slow(h: *mut Heap, class: usize) -> *mut u8 {
    // SAFETY: by the caller, we are the heap's user.
    match unsafe { (*h).alloc_slow(class) } {
        p if p.is_null() => {
            lifecycle::trim();
            // SAFETY: as above.
            unsafe { (*h).alloc_slow(class) }
        }
        p => p,
    }
}

/// The heap profiler's path: every allocation of a thread it samples comes
/// here (its slot names the profiler's proxy, whose classes are empty). The
/// block comes from the thread's own heap, fast path first; its bytes count
/// down to the next sample (see [`crate::prof`]). A sampled block's pool
/// gets `OWNER_CHECKED`, so that every free into it takes the slow path,
/// which finds the sample's record again.
#[cold]
#[inline(never)]
fn prof_alloc(class: usize) -> *mut u8 {
    // First thing, with no frame of its own: where the stack walk starts.
    prof_alloc_at(class, prof::here())
}

#[inline(never)]
fn prof_alloc_at(class: usize, at: (usize, usize)) -> *mut u8 {
    let h = lifecycle::profiled_heap();
    // SAFETY: the second slot holds the thread's own heap, whose user we
    // are.
    let b = unsafe { (*h).alloc_fast(class) };
    if b.is_null() {
        // SAFETY: as above.
        return unsafe { prof_alloc_refill(h, class, at) };
    }
    // SAFETY: as above.
    unsafe { prof_count(h, b.cast(), class, at) }
}

/// Counts a block of `class` down; samples it when the count runs out.
///
/// # Safety
/// `h` must be the calling thread's own heap, `p` a block just taken from
/// it.
#[inline(always)]
unsafe fn prof_count(h: *mut Heap, p: *mut u8, class: usize, at: (usize, usize)) -> *mut u8 {
    let size = crate::size_class::class_size(class);
    // SAFETY: by the caller, the heap's fields are ours.
    unsafe {
        let left = (*h).prof_left.get() - size as isize;
        (*h).prof_left.set(left);
        if left > 0 {
            return p;
        }
        prof_sample(h, p, size, at)
    }
}

/// The profiling path's slow path: the heap's own, with the out-of-memory
/// retry.
///
/// # Safety
/// As for [`prof_count`].
#[cold]
#[inline(never)]
unsafe fn prof_alloc_refill(h: *mut Heap, class: usize, at: (usize, usize)) -> *mut u8 {
    // SAFETY: by the caller.
    let p = unsafe { real_alloc_slow(h, class) };
    if p.is_null() {
        os::set_errno(libc::ENOMEM);
        return p;
    }
    // SAFETY: by the caller; `p` was just taken from `h`.
    unsafe { prof_count(h, p, class, at) }
}

/// The count ran out: draws the next one and samples `p`. If the profiler
/// stopped, the thread leaves its path instead (so a stop reaches each
/// thread at its next sample).
///
/// # Safety
/// As for [`prof_count`].
#[cold]
#[inline(never)]
unsafe fn prof_sample(h: *mut Heap, p: *mut u8, size: usize, at: (usize, usize)) -> *mut u8 {
    if !prof::sampling() {
        lifecycle::leave_profiling();
        return p;
    }
    // SAFETY: by the caller, the heap's fields are ours.
    unsafe {
        let mut rng = (*h).prof_rng.get();
        let first = rng == 0;
        (*h).prof_left.set(prof::next_interval(&mut rng));
        (*h).prof_rng.set(rng);
        if first {
            // A thread's first count starts here: its first block is not a
            // sample (it would be one in every thread, a bias).
            return p;
        }
    }
    if prof::record(p, size, at) {
        // A medium block may start in a later slice of its pool's run.
        let pool = arena::owning_pool(p);
        // SAFETY: a block we just took from our own heap: its pool is ours.
        let pr = unsafe { &*pool };
        if pr.prof_samples.fetch_add(1, Relaxed) == 0 {
            let word = pr.hand.owner.load(Relaxed);
            pr.hand.owner.store(word | OWNER_CHECKED, Relaxed);
        }
    }
    p
}

/// Allocates from the locked heap; when memory is exhausted, gives back what
/// is held but not live and tries once more (as [`alloc`] does).
pub fn locked_alloc(class: usize) -> *mut u8 {
    let p = {
        let _g = LOCKED_LOCK.guard();
        // SAFETY: the locked heap's lock is held (guard `_g`): we are its
        // user.
        unsafe { LOCKED_HEAP.alloc(class) }
    };
    if !p.is_null() {
        return p;
    }
    lifecycle::trim();
    let _g = LOCKED_LOCK.guard();
    // SAFETY: as above.
    unsafe { LOCKED_HEAP.alloc(class) }
}

/// Frees a block of the locked heap (debug mode's raw blocks).
pub fn locked_free(p: *mut u8) {
    // A medium block may start in a later slice of its pool's run.
    let pool = arena::owning_pool(p);
    let _g = LOCKED_LOCK.guard();
    // SAFETY: debug mode's raw blocks are handed-out blocks of the locked
    // heap, and we hold its lock.
    unsafe { locked_free_held(pool, p.cast()) };
}

/// Frees a block of a pool. `p` must be in an arena (the ownership map or the
/// caller's layout says so).
///
/// # Safety
/// `p` must be a block handed out by poolmalloc and not freed since, or a
/// pointer into an arena that the slow path will diagnose.
///
/// In debug mode no pool is the calling thread's, so every free takes the
/// slow path, which hands the block to `wrapped` (the debug wrapper's free
/// for the same request) when the thread's slot names the debug proxy.
#[inline(always)]
pub unsafe fn free(p: *mut u8, wrapped: impl FnOnce()) {
    let pool = arena::pool_of(p);
    // SAFETY: `p` is inside a live arena, so its header is readable.
    let pr = unsafe { &*pool };
    if pr.hand.owner.load(Relaxed) == thread_id() {
        // SAFETY: we own the pool and `p` is in its block area.
        if unsafe { pr.suspect(p.cast()) } {
            // A tail call, so the fast path saves no registers.
            // SAFETY: as above.
            return unsafe { free_suspect(p, pool) };
        }
        // SAFETY: one of our pool's handed-out blocks; the owner word names
        // this thread, so we own the pool.
        unsafe { pr.push_then(p.cast(), || pool_emptied(pool)) };
        return;
    }
    // SAFETY: forwarded from the caller.
    unsafe { free_slow(p, pool, wrapped) }
}

/// Local free of a block that looks misaligned or already free: checked in
/// full, then freed if it passes.
///
/// # Safety
/// The calling thread owns `pool`, and `p` is in its block area.
#[cold]
#[inline(never)]
unsafe fn free_suspect(p: *mut u8, pool: *mut Pool) {
    // SAFETY: by the caller.
    let pr = unsafe { &*pool };
    // SAFETY: by the caller; once checked, `p` is a handed-out block.
    unsafe {
        if pr.check_suspect(p.cast()) {
            pr.push_then(p.cast(), || pool_emptied(pool));
        }
    }
}

#[cold]
#[inline(never)]
unsafe fn pool_emptied(pool: *mut Pool) {
    let mut h = lifecycle::own_heap();
    // SAFETY: the slot points at a live heap.
    if unsafe { (*h).kind } == Kind::Uninit {
        // A thread that has not allocated yet owns a pool: it came with a
        // heap an earlier thread with the same id left behind, which
        // setting the thread up takes over (see `Registry::new_heap`).
        lifecycle::init_thread();
        h = lifecycle::own_heap();
        // A heap that could not be taken over (a fork came in between)
        // keeps the pool: it is left where it is.
        // SAFETY: the slot points at a live heap; the pool is ours.
        if unsafe { (*h).kind != Kind::Real || !(*h).is_available(pool) } {
            return;
        }
    }
    // SAFETY: the pool's owner is this thread, so the slot holds its heap.
    unsafe { (*h).pool_emptied(pool) }
}

#[cold]
#[inline(never)]
unsafe fn free_slow(p: *mut u8, pool: *mut Pool, wrapped: impl FnOnce()) {
    let mut h = current_heap();
    // SAFETY: the slot points at a live heap.
    if unsafe { (*h).kind }.set_up_or_wrapped() {
        // SAFETY: the slot points at a live heap.
        if unsafe { (*h).kind } == Kind::Uninit {
            // A thread that frees before it ever allocates (a consumer) gets
            // its heap now, so its remote frees are batched (and in debug
            // mode its slot names the wrapper).
            lifecycle::init_thread();
            h = current_heap();
        }
        // SAFETY: as above.
        match unsafe { (*h).kind } {
            Kind::DebugProxy => {
                // Every block is a debug block: the wrapper checks and frees
                // it.
                wrapped();
                return;
            }
            Kind::ProfProxy => h = lifecycle::own_heap(),
            _ => {}
        }
    }
    // A pointer into a later slice of a medium pool leads to the pool's
    // own record.
    let pool = arena::leader_of(pool);
    // SAFETY: `pool` is metadata in a live arena.
    let pr = unsafe { &*pool };
    let st = pr.hand.state.load(Relaxed);
    // SAFETY: `start` never changes once the arena is made.
    if (st != state::USED && st != state::ABANDONED) || (p as usize) < unsafe { pr.start.get() } as usize {
        crate::fault::invalid_free(p, "block is not allocated");
        return;
    }
    // SAFETY: by the caller, `p` is normally a handed-out block of this pool,
    // so the pool's `init` wrote its geometry before the block reached us,
    // and no init can run while the block is out. The caller may also pass
    // a pointer for this path to diagnose (a double free, a stale pointer),
    // whose pool its owner may be re-initialising meanwhile: the geometry
    // (relaxed atomics) may then be another init's, which decides only
    // whether the pointer is reported here or by the checks that follow.
    if p as usize & (ALIGNMENT - 1) != 0 || !unsafe { pr.is_block_start(p) } {
        crate::fault::invalid_free(p, "not the start of a block");
        return;
    }
    // A pool whose word carries OWNER_CHECKED, or that has no owner, may
    // hold blocks the heap profiler sampled: each branch looks `p` up
    // first.
    let word = pr.hand.owner.load(Relaxed);
    let owner = word & !OWNER_CHECKED;
    let me = thread_id();
    if owner & !OWNER_FULL == me {
        if word != owner {
            // SAFETY: `p` starts a block of our own pool (checked above).
            unsafe { checked_own_free(pr, p, word) };
        }
        // Our own pool: a full one, or a medium one (whose owner word never
        // matches on the fast path).
        // SAFETY: our own pool; the slot holds our heap; `p` starts a block.
        unsafe { (*h).free_owned(pool, p.cast()) };
    } else if owner & !OWNER_FULL == LOCKED_OWNER {
        if word != owner {
            pr.prof_free(p);
        }
        let _g = LOCKED_LOCK.guard();
        // SAFETY: the locked heap's pools stay with it while they hold live
        // blocks, and we hold its lock.
        unsafe { locked_free_held(pool, p.cast()) };
    } else {
        // Not gated on OWNER_CHECKED: an abandoned pool's word has no flags,
        // but the pool may still hold sampled blocks.
        pr.prof_free(p);
        // SAFETY: the slot points at a live heap.
        if unsafe { (*h).kind } == Kind::Real {
            // SAFETY: our own heap, whose user we are; `p` is a handed-out
            // block of `pool` (owned by someone else) that the caller gives
            // up, so we may read the pool's class (as above).
            unsafe {
                if options::secure() {
                    (*h).secure_free(pool, p.cast());
                } else if !pr.is_medium() {
                    (*h).free_remote(pool, p.cast());
                } else {
                    (*h).free_remote_now(pool, p.cast());
                }
            }
        } else {
            // SAFETY: `p` is a handed-out block of `pool` that the caller
            // gives up.
            unsafe { pr.push_remote(p.cast()) };
            ORPHAN_REMOTE_FREES.fetch_add(1, Relaxed);
        }
    }
}

/// The owner's free into its own pool whose owner word carries
/// `OWNER_CHECKED` (a medium pool, secure mode, or a pool holding blocks the
/// heap profiler sampled): the sample's record goes if `p` is one (before
/// the block goes back, so a record never names a block handed out again),
/// and a check that no longer applies is dropped (the pool's last sample
/// was freed by another thread, which may not write the owner word).
///
/// # Safety
/// `p` must start a block of `pr`, which the calling thread owns; `word` is
/// the owner word just read.
unsafe fn checked_own_free(pr: &Pool, p: *mut u8, word: usize) {
    pr.prof_free(p);
    // SAFETY: by the caller, we own the pool.
    unsafe { pr.drop_stale_check(word) };
}

/// For a block of a medium pool (whose frees are all checked), whether
/// `p` is still handed out, as far as the calling thread can tell without
/// racing the pool's owner: the owner (or the locked heap's lock holder)
/// walks the pool's local list; any other thread answers yes.
pub fn medium_block_live(pool: *mut Pool, p: *mut u8) -> bool {
    // SAFETY: `pool` is a record of a live arena.
    let pr = unsafe { &*pool };
    let owner = owner_id(pr.hand.owner.load(Relaxed));
    if owner == thread_id() {
        // SAFETY: the owner word names this thread: we own the pool.
        unsafe { pr.handed_out(p) }
    } else if owner == LOCKED_OWNER {
        let _g = LOCKED_LOCK.guard();
        // SAFETY: the locked heap's lock is held (guard `_g`) and, checked
        // again under it, the pool is the locked heap's: its user, we own it.
        owner_id(pr.hand.owner.load(Relaxed)) != LOCKED_OWNER || unsafe { pr.handed_out(p) }
    } else {
        true
    }
}

/// Local free into the locked heap. The caller holds [`LOCKED_LOCK`].
unsafe fn locked_free_held(pool: *mut Pool, b: *mut Block) {
    // SAFETY: the caller holds the lock, so the locked heap is ours, and
    // `b` is a handed-out block of its pool `pool`.
    unsafe { LOCKED_HEAP.free_owned(pool, b) };
}

