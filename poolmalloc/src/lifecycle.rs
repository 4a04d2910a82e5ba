//! The process lifecycle (layer 6): everything that happens once per
//! process or once per thread, in one place.
//!
//! * **Process set-up** ([`global_init`]): options, the thread-exit key,
//!   the fork handlers and the at-exit statistics report. Safe to re-enter
//!   from the same thread (registering the fork handlers may call `malloc`).
//! * **The heap slot.** Each thread has a slot in static TLS that points at
//!   its heap. It starts out pointing at [`UNINIT_HEAP`], so a thread's first
//!   allocation falls into the slow path, which calls [`init_thread`] to set
//!   up a real heap from the registry (never from `malloc`). On x86-64 Linux
//!   the slot uses the initial-exec TLS model through inline assembly: one
//!   load, no call. A copy of the allocator built for `dlopen` (the `dlopen`
//!   feature) uses the general-dynamic model instead, which does not depend
//!   on spare room in the static TLS block.
//! * **Thread exit.** A pthread key destructor abandons the heap: empty pools
//!   go back to the arenas, the others to the abandoned lists, and the slot
//!   points at [`DEAD_HEAP`], which sends any later allocation of the exiting
//!   thread (from other destructors) to the locked heap. A thread whose
//!   first allocation comes after that destructor's last chance (in the
//!   last round of TLS destructors) leaves its heap registered; the next
//!   thread with the same id takes it over (`Registry::new_heap`).
//! * **First-class heaps** get their heap structures here too.
//! * **Trim** ([`trim`]) returns free memory at once.
//! * **Fork.** `pthread_atfork` handlers take every lock before `fork` and
//!   release them after; in the child, the heaps of the threads that did not
//!   survive are reclaimed by walking the arenas (their private lists may be
//!   torn mid-update, so they are not trusted).
//!
//! Threads: the set-up state is atomic; everything else runs on the thread
//! concerned, or under the locks it names.

use crate::abandoned::ABANDONED;
use crate::arena;
use crate::heap::{Heap, Kind};
use crate::lock::RawLock;
use crate::options;
use crate::pool::{owner_id, state, Pool, LOCKED_OWNER};
use crate::registry::{
    DEAD_HEAP, DEBUG_PROXY_HEAP, LOCKED_HEAP, LOCKED_LOCK, PROF_PROXY_HEAP, PROXY_HEAP, REGISTRY, UNINIT_HEAP, USER_HEAP_IDS,
    USER_OWNER_BIT,
};
use crate::sync::atomic::{AtomicU8, AtomicUsize, Ordering::*};
use crate::tid::thread_id;
use core::ptr;

// ---------------------------------------------------------------------------
// The heap slot.

#[cfg(all(target_arch = "x86_64", not(feature = "portable"), target_os = "linux", not(miri), not(feature = "dlopen")))]
mod tls {
    use super::{Heap, UNINIT_HEAP};
    use core::arch::{asm, global_asm};

    // One pointer in static TLS, initial-exec model, initialised to the
    // UNINIT sentinel. The symbol is global (inlined accessors may live in
    // other object files) but hidden, so it never leaves the binary or
    // shared object that links this crate. Rust has no stable way to ask for the initial-exec
    // model, and the default model in a shared library calls
    // `__tls_get_addr` on every access.
    global_asm!(
        ".pushsection .tdata,\"awT\",@progbits",
        ".p2align 3",
        ".globl __poolmalloc_heap_slot",
        ".hidden __poolmalloc_heap_slot",
        "__poolmalloc_heap_slot:",
        ".quad {uninit}",
        ".globl __poolmalloc_own_heap",
        ".hidden __poolmalloc_own_heap",
        "__poolmalloc_own_heap:",
        ".quad 0",
        ".popsection",
        uninit = sym UNINIT_HEAP,
    );

    #[inline(always)]
    pub fn get() -> *mut Heap {
        let h: *mut Heap;
        // SAFETY: reads this thread's slot through its TLS offset.
        unsafe {
            asm!(
                "mov {h}, qword ptr [rip + __poolmalloc_heap_slot@GOTTPOFF]",
                "mov {h}, qword ptr fs:[{h}]",
                h = out(reg) h,
                options(nostack, preserves_flags, readonly, pure)
            );
        }
        h
    }

    #[inline]
    pub fn set(h: *const Heap) {
        // SAFETY: writes this thread's slot through its TLS offset.
        unsafe {
            asm!(
                "mov {t}, qword ptr [rip + __poolmalloc_heap_slot@GOTTPOFF]",
                "mov qword ptr fs:[{t}], {h}",
                t = out(reg) _,
                h = in(reg) h,
                options(nostack, preserves_flags)
            );
        }
    }

    /// The thread's own heap while its slot names the profiler's proxy.
    #[inline]
    pub fn get_own() -> *mut Heap {
        let h: *mut Heap;
        // SAFETY: reads this thread's second slot through its TLS offset.
        unsafe {
            asm!(
                "mov {h}, qword ptr [rip + __poolmalloc_own_heap@GOTTPOFF]",
                "mov {h}, qword ptr fs:[{h}]",
                h = out(reg) h,
                options(nostack, preserves_flags, readonly)
            );
        }
        h
    }

    #[inline]
    pub fn set_own(h: *const Heap) {
        // SAFETY: writes this thread's second slot through its TLS offset.
        unsafe {
            asm!(
                "mov {t}, qword ptr [rip + __poolmalloc_own_heap@GOTTPOFF]",
                "mov qword ptr fs:[{t}], {h}",
                t = out(reg) _,
                h = in(reg) h,
                options(nostack, preserves_flags)
            );
        }
    }
}

#[cfg(not(all(target_arch = "x86_64", not(feature = "portable"), target_os = "linux", not(miri), not(feature = "dlopen"))))]
mod tls {
    use super::{Heap, UNINIT_HEAP};
    use core::cell::Cell;

    std::thread_local! {
        static SLOT: Cell<*mut Heap> = const { Cell::new(core::ptr::null_mut()) };
        static OWN: Cell<*mut Heap> = const { Cell::new(core::ptr::null_mut()) };
    }

    #[inline]
    pub fn get_own() -> *mut Heap {
        OWN.with(|s| s.get())
    }

    #[inline]
    pub fn set_own(h: *const Heap) {
        OWN.with(|s| s.set(h.cast_mut()));
    }

    #[inline(always)]
    pub fn get() -> *mut Heap {
        let h = SLOT.with(|s| s.get());
        if h.is_null() {
            &UNINIT_HEAP as *const Heap as *mut Heap
        } else {
            h
        }
    }

    #[inline]
    pub fn set(h: *const Heap) {
        SLOT.with(|s| s.set(h.cast_mut()));
    }
}

/// The calling thread's heap slot: its heap, or a sentinel (until it has
/// one of its own, and while the heap profiler samples it).
#[inline(always)]
pub(crate) fn current_heap() -> *mut Heap {
    tls::get()
}

/// The calling thread's own heap: the slot's heap, or, while the heap
/// profiler samples the thread, the heap its second slot holds.
#[inline]
pub(crate) fn own_heap() -> *mut Heap {
    let h = tls::get();
    if ptr::eq(h, &PROF_PROXY_HEAP) {
        tls::get_own()
    } else {
        h
    }
}

/// The calling thread's own heap while the heap profiler samples it (its
/// slot names the proxy).
#[inline(always)]
pub(crate) fn profiled_heap() -> *mut Heap {
    tls::get_own()
}

/// Puts the profiler's proxy in the calling thread's slot, its own heap
/// `h` (a real heap, the thread's) in the second slot.
pub(crate) fn enter_profiling(h: *mut Heap) {
    tls::set_own(h);
    tls::set(&PROF_PROXY_HEAP);
}

/// Makes the calling thread's next allocation take the profiler's path
/// (a thread without a heap yet gets one with the proxy in its slot).
pub(crate) fn profile_this_thread() {
    let h = tls::get();
    // SAFETY: the slot always points at a live heap.
    if unsafe { (*h).kind } == Kind::Real {
        enter_profiling(h);
    }
}

/// Puts the calling thread's own heap back in its slot (the profiler
/// stopped).
pub(crate) fn leave_profiling() {
    let h = own_heap();
    tls::set(h);
}

// ---------------------------------------------------------------------------
// Set-up and thread exit.

const INIT_NONE: u8 = 0;
const INIT_RUNNING: u8 = 1;
const INIT_DONE: u8 = 2;
static INIT_STATE: AtomicU8 = AtomicU8::new(INIT_NONE);
static INIT_THREAD: AtomicUsize = AtomicUsize::new(0);
static KEY: AtomicUsize = AtomicUsize::new(usize::MAX);

/// One-time process set-up: options, the thread-exit key, fork handlers.
/// Safe to re-enter from the same thread (the fork-handler registration may
/// itself call `malloc`).
pub(crate) fn global_init() {
    if INIT_STATE.load(Acquire) == INIT_DONE {
        return;
    }
    global_init_slow();
}

#[cold]
fn global_init_slow() {
    let me = thread_id();
    match INIT_STATE.compare_exchange(INIT_NONE, INIT_RUNNING, Acquire, Acquire) {
        Ok(_) => {}
        Err(INIT_DONE) => return,
        Err(_) => {
            if INIT_THREAD.load(Relaxed) == me {
                return; // re-entered from our own set-up
            }
            while INIT_STATE.load(Acquire) != INIT_DONE {
                // SAFETY: sched_yield has no preconditions.
                unsafe { libc::sched_yield() };
            }
            return;
        }
    }
    INIT_THREAD.store(me, Relaxed);
    options::init();
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: `key` is a valid out-pointer; the destructor is an
    // `extern "C"` function that never unwinds.
    if unsafe { libc::pthread_key_create(&mut key, Some(thread_exit)) } == 0 {
        KEY.store(key as usize, Release);
    }
    // SAFETY: the handlers are `extern "C"` functions that never unwind.
    unsafe { libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child)) };
    crate::prof::configure(options::prof_sample(), options::prof_prefix());
    if options::prof() && !options::debug() && !options::locked_mode() && crate::prof::start() {
        // SAFETY: `write_at_exit` is an `extern "C"` function that never
        // unwinds.
        unsafe { libc::atexit(crate::prof::write_at_exit) };
    }
    INIT_STATE.store(INIT_DONE, Release);
    // Registered whatever the option says now: it can be switched on at
    // run time (`options::set`). Miri cannot call `atexit`.
    #[cfg(not(miri))]
    // SAFETY: `print_stats_at_exit` is an `extern "C"` function that never
    // unwinds.
    unsafe {
        libc::atexit(print_stats_at_exit)
    };
}

#[cold]
pub(crate) fn init_thread() {
    global_init();
    if !ptr::eq(tls::get(), &UNINIT_HEAP) {
        return; // set up by a re-entrant call during global_init
    }
    // The one place a thread's mode is chosen: the slot names the debug
    // wrapper's proxy, the locked heap's, or a heap of the thread's own.
    if options::debug() || crate::os::valgrind_wrapper() {
        tls::set(&DEBUG_PROXY_HEAP);
        return;
    }
    if options::locked_mode() {
        tls::set(&PROXY_HEAP);
        return;
    }
    let h = REGISTRY.new_heap(thread_id());
    if h.is_null() {
        // No memory for a heap: serve this thread from the locked heap.
        tls::set(&DEAD_HEAP);
        return;
    }
    if crate::prof::sampling() {
        enter_profiling(h);
    } else {
        tls::set(h);
    }
    let key = KEY.load(Acquire);
    if key != usize::MAX {
        // SAFETY: `key` was created by pthread_key_create. This may call
        // malloc (for keys past the first 32); the slot is already set, so
        // that call uses the new heap.
        unsafe { libc::pthread_setspecific(key as libc::pthread_key_t, h.cast()) };
    }
}

#[cfg_attr(miri, allow(dead_code))]
extern "C" fn print_stats_at_exit() {
    if options::show_stats() {
        crate::stats::print_to_stderr();
    }
}

extern "C" fn thread_exit(arg: *mut libc::c_void) {
    let h = arg.cast::<Heap>();
    if h.is_null() {
        return;
    }
    tls::set(&DEAD_HEAP);
    // SAFETY: the key holds this thread's heap, which no one else uses.
    unsafe { (*h).abandon() };
    REGISTRY.free_heap(h);
}

/// A heap for a first-class `Heap`: owned by no thread, with an owner id
/// that can never equal a thread id (bit 1 set) or `LOCKED_OWNER`, and that
/// does not adopt abandoned pools. Null if out of memory.
pub(crate) fn new_user_heap() -> *mut Heap {
    global_init();
    let id = (USER_HEAP_IDS.fetch_add(1, Relaxed) << 6) | USER_OWNER_BIT;
    let h = REGISTRY.new_heap(id);
    if !h.is_null() {
        // SAFETY: a fresh heap from the registry, ours alone: we are its
        // user until we hand it to the first-class heap.
        unsafe { (*h).adopts.set(false) };
        let _g = REGISTRY.lock.guard();
        // SAFETY: the registry lock is held (guard `_g`).
        unsafe { REGISTRY.user_heaps.set(REGISTRY.user_heaps.get() + 1) };
    }
    h
}

/// Returns a first-class heap's structure to the registry after its pools
/// were released.
///
/// # Safety
/// `h` must come from [`new_user_heap`] and hold no pools, and the caller
/// must be its user, giving it up.
pub(crate) unsafe fn free_user_heap(h: *mut Heap) {
    // SAFETY: by the caller, we are the heap's user until `free_heap`.
    unsafe { (*h).adopts.set(true) };
    REGISTRY.free_heap(h);
    let _g = REGISTRY.lock.guard();
    // SAFETY: the registry lock is held (guard `_g`).
    unsafe { REGISTRY.user_heaps.set(REGISTRY.user_heaps.get() - 1) };
}

/// Runs the full invariant check of the calling thread's heap (if it has
/// one). Panics on violation.
pub fn check_current_heap() {
    let h = own_heap();
    // SAFETY: the slot points at a live heap; a real one is ours.
    if unsafe { (*h).kind } == Kind::Real {
        // SAFETY: as above.
        unsafe { (*h).check_invariants() };
    }
}

// ---------------------------------------------------------------------------
// Trim.

/// Secure mode: sends the blocks the calling thread's heap holds back to
/// their pools (for statistics that count the thread's own frees).
pub(crate) fn release_held() {
    if !options::secure() {
        return;
    }
    let h = own_heap();
    // SAFETY: the slot points at a live heap; a real one is ours.
    if unsafe { (*h).kind } == Kind::Real {
        // SAFETY: as above.
        unsafe { (*h).flush_ring() };
    }
}

/// Returns as much memory as possible to the OS: the calling thread's heap
/// and the locked heap give back empty pools, abandoned pools are swept,
/// free pools are decommitted and cached large spans unmapped.
pub(crate) fn trim() {
    // Other live threads' heaps trim themselves on their next slow path.
    crate::heap::TRIM_REQUESTS.fetch_add(1, Relaxed);
    let h = own_heap();
    // SAFETY: the slot points at a live heap; a real one is ours.
    if unsafe { (*h).kind } == Kind::Real {
        // SAFETY: as above. The request was just counted, so this trims.
        unsafe { (*h).trim_if_asked() };
    }
    {
        let _g = LOCKED_LOCK.guard();
        // SAFETY: the locked heap's lock is held (guard `_g`): we are its
        // user.
        unsafe { LOCKED_HEAP.trim() };
    }
    crate::abandoned::sweep();
    arena::purge_all();
    crate::large::purge_cache();
}

// ---------------------------------------------------------------------------
// Fork.

/// The allocator's locks in their order (see `lock.rs`).
fn fork_locks() -> [&'static RawLock; 5] {
    [&LOCKED_LOCK, &REGISTRY.lock, &ABANDONED.lock, &arena::ARENAS.lock, &crate::large::LOCK]
}

/// Locks the prepare handler took (bit i: `fork_locks()[i]`).
static FORK_TAKEN: AtomicU8 = AtomicU8::new(0);
/// Locks the forking thread already held: `fork` was called from a signal
/// handler that interrupted this thread inside the allocator.
static FORK_MINE: AtomicU8 = AtomicU8::new(0);

/// Takes every lock, so the child starts with consistent structures. A lock
/// the calling thread already holds (fork from a signal handler that
/// interrupted poolmalloc) is left as it is: the interrupted call releases
/// it, in parent and child alike, when the handler returns. Locks before the
/// last such lock are only tried, since their holders may be waiting for it.
extern "C" fn fork_prepare() {
    crate::prof::fork_prepare();
    let locks = fork_locks();
    let mut mine = 0u8;
    for (i, l) in locks.iter().enumerate() {
        if l.held_by_me() {
            mine |= 1 << i;
        }
    }
    let last_mine = if mine == 0 { None } else { Some(7 - mine.leading_zeros() as usize) };
    let mut taken = 0u8;
    for (i, l) in locks.iter().enumerate() {
        if mine & (1 << i) != 0 {
            continue;
        }
        let got = match last_mine {
            Some(last) if i < last => l.try_lock(),
            _ => {
                l.lock();
                true
            }
        };
        if got {
            taken |= 1 << i;
        }
    }
    FORK_MINE.store(mine, Relaxed);
    FORK_TAKEN.store(taken, Relaxed);
}

extern "C" fn fork_parent() {
    let taken = FORK_TAKEN.load(Relaxed);
    for (i, l) in fork_locks().iter().enumerate().rev() {
        if taken & (1 << i) != 0 {
            l.unlock();
        }
    }
    crate::prof::fork_parent();
}

/// Frees every lock but the ones the interrupted call holds (their other
/// holders do not exist here), then reclaims the dead threads' pools, unless
/// the calling thread was inside the allocator, whose structures may then be
/// mid-update: the dead threads' pools stay unused in that child.
extern "C" fn fork_child() {
    // Heaps the fork may have caught mid-update are never taken over by a
    // thread of the child (see `Registry::new_heap`).
    crate::registry::FORK_EPOCH.fetch_add(1, Relaxed);
    crate::prof::fork_child();
    let h = own_heap();
    // SAFETY: the slot (or the profiler's second slot) points at a live
    // heap; a real one is this thread's, the child's only one. Only the
    // profiler's cold path reads `prof_rng`.
    unsafe {
        if (*h).kind == Kind::Real {
            // The child draws its own sampling intervals, not a copy of the
            // parent's (both would sample the same blocks).
            (*h).prof_rng.set(0);
        }
    }
    let mine = FORK_MINE.load(Relaxed);
    for (i, l) in fork_locks().iter().enumerate().rev() {
        if mine & (1 << i) == 0 {
            l.reset();
        }
    }
    if mine == 0 {
        // SAFETY: the child's only thread, in its `atfork` handler, and the
        // forking thread held no lock.
        unsafe { reclaim_after_fork() };
    }
}

/// In a fork child: every heap but the calling thread's belongs to a thread
/// that does not exist here. Their pools are found by walking the arenas.
/// The calling thread's own heap and pools are not touched: the fork may
/// have interrupted its fast path.
///
/// # Safety
/// Only from [`fork_child`], when the forking thread held none of the
/// allocator's locks: the calling thread is then the process's only thread,
/// and every structure is in a consistent state.
unsafe fn reclaim_after_fork() {
    let me = thread_id();
    let mine = own_heap();
    // Owner ids of heaps that do not survive: threads other than this one.
    let dead = |owner: usize| owner != me && owner != LOCKED_OWNER && owner & USER_OWNER_BIT == 0;
    // SAFETY: the slot points at a live heap, and we are the only thread of
    // the child, so we are its user. A pool this thread still owes held-back
    // remote frees must not go back to its arena: it is abandoned instead,
    // and the frees reach it when the batch is pushed.
    let owed = unsafe { (*mine).batch_pool() } as *const Pool;
    {
        let _g = REGISTRY.lock.guard();
        // SAFETY: the registry lock is held (guard `_g`). The heaps the walk
        // empties belonged to threads that do not exist in the child, whose
        // only thread is ours: we are their user now.
        unsafe {
            let mut free_list = REGISTRY.free.get();
            let mut live = 0;
            REGISTRY.for_each(|h| {
                let hp = h as *const Heap as *mut Heap;
                if hp == mine {
                    live += 1;
                    return;
                }
                if h.owner.get() == me {
                    // A heap an earlier thread with our id left behind, whose
                    // pools name us: kept for this thread to take over.
                    h.epoch.set(crate::registry::FORK_EPOCH.load(Relaxed));
                    live += 1;
                    return;
                }
                // First-class heaps (owner bit 1) belong to objects, not threads;
                // one owned by the surviving thread is still in use.
                if h.owner.get() != 0 && h.owner.get() & USER_OWNER_BIT == 0 {
                    h.forget_all();
                    h.owner.set(0);
                    h.free_next.set(free_list);
                    free_list = hp;
                }
            });
            REGISTRY.free.set(free_list);
            REGISTRY.live.set(live);
        }
    }
    let release = |p: &Pool| {
        let owner = owner_id(p.hand.owner.load(Relaxed));
        match p.hand.state.load(Relaxed) {
            state::EMPTY => dead(owner),
            state::USED if dead(owner) => {
                // SAFETY: the pool's owner was a thread that does not exist in
                // the child, whose only thread is ours: we own the pool now.
                // It has live blocks and is on no list we trust, as `put`
                // needs.
                unsafe {
                    p.recount();
                    p.collect_remote();
                    if p.is_empty() && !ptr::eq(p, owed) {
                        return true;
                    }
                    p.abandon();
                    ABANDONED.put(p as *const Pool as *mut Pool, p.class());
                }
                false
            }
            _ => false,
        }
    };
    // SAFETY: we are in the fork child's handler, no lock having been held
    // by the forking thread (`fork_child` checks): ours is the only thread.
    unsafe { arena::reclaim_in_child(release) };
}

