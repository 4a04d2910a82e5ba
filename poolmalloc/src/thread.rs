//! Layer 6: how threads reach heaps.
//!
//! * **Per-thread heaps (default).** Each thread has a slot in static TLS
//!   that points at its heap. The slot starts out pointing at a sentinel heap
//!   whose classes all have an empty pool, so a thread's first allocation
//!   falls into the slow path, which sets up a real heap from the heap
//!   registry's own memory (never from `malloc`). The fast path is a TLS load,
//!   two loads and a store: no lock, no atomic read-modify-write, no call
//!   through a pointer.
//! * **Thread ids.** A pool's owner is the owning thread's id: the address of
//!   its thread control block, which the CPU's thread pointer register holds
//!   (`fs:0` on x86-64). Comparing it costs one load.
//! * **Cross-thread frees** push onto the pool's remote list; see
//!   [`crate::pool`] and [`crate::remote`]. The freeing thread's heap holds
//!   back consecutive frees into one pool (at most
//!   [`REMOTE_BATCH`](crate::heap::REMOTE_BATCH)) and pushes them as one chain
//!   with one CAS; it pushes them when a block of another pool comes, when it
//!   next takes its allocation slow path, at `trim()`, and at thread exit.
//!   Until then they count as in use. A thread that frees before it ever
//!   allocates gets its heap at its first cross-thread free.
//! * **Thread exit.** A pthread key destructor abandons the heap: empty pools
//!   go back to the arenas, the others to the abandoned lists, and the slot
//!   points at a "dead" sentinel that sends any later allocation of the
//!   exiting thread (from other destructors) to the locked heap.
//! * **Locked mode** (`LockedPoolMalloc`, `POOLMALLOC_THREADS=locked`): one
//!   global heap behind one lock, the pymalloc-under-the-GIL model. In this
//!   mode every thread's slot points at a proxy sentinel, so the per-thread
//!   fast path costs nothing extra for the mode test.
//! * **Fork.** `pthread_atfork` handlers take every lock before `fork` and
//!   release them after; in the child, the heaps of the threads that did not
//!   survive are reclaimed by walking the arenas (their private lists may be
//!   torn mid-update, so they are not trusted).

use crate::arena;
use crate::heap::{Heap, Kind, ABANDONED};
use crate::lock::RawLock;
use crate::options;
use crate::os;
use crate::pool::{owner_id, state, Block, Pool, LOCKED_OWNER, OWNER_FULL};
use crate::size_class::ALIGNMENT;
use crate::sync::Local;
use core::ptr;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering::*};

/// Initial slot value: the thread has no heap yet.
pub static UNINIT_HEAP: Heap = Heap::new(Kind::Uninit, 0);
/// Slot value after thread exit.
pub static DEAD_HEAP: Heap = Heap::new(Kind::Dead, 0);
/// Slot value in locked mode.
pub static PROXY_HEAP: Heap = Heap::new(Kind::LockedProxy, 0);
/// The locked-mode heap.
pub static LOCKED_HEAP: Heap = Heap::new(Kind::Real, LOCKED_OWNER);
/// Guards [`LOCKED_HEAP`].
pub static LOCKED_LOCK: RawLock = RawLock::new();

// ---------------------------------------------------------------------------
// The thread slot and thread id.

#[cfg(all(target_arch = "x86_64", target_os = "linux", not(miri)))]
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

    #[inline(always)]
    pub fn thread_id() -> usize {
        let t: usize;
        // SAFETY: fs:0 holds the thread control block's own address (x86-64
        // TLS ABI), unique among live threads.
        unsafe {
            asm!("mov {t}, qword ptr fs:[0]", t = out(reg) t, options(nostack, preserves_flags, readonly, pure));
        }
        t
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux", not(miri))))]
mod tls {
    use super::{Heap, UNINIT_HEAP};
    use core::cell::Cell;

    std::thread_local! {
        static SLOT: Cell<*mut Heap> = const { Cell::new(core::ptr::null_mut()) };
        static ID: Id = const { Id(0) };
    }

    /// A thread-local whose address is the thread id: aligned so the low
    /// bits stay free for the owner-word flags, as a TCB address's are.
    #[repr(align(64))]
    struct Id(#[allow(dead_code)] u8);

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

    #[inline(always)]
    pub fn thread_id() -> usize {
        ID.with(|b| b as *const Id as usize)
    }
}

/// The calling thread's id (never 0, never [`LOCKED_OWNER`], a multiple of
/// 64, so the owner-word flags below that never collide with it).
#[inline(always)]
pub fn thread_id() -> usize {
    tls::thread_id()
}

// ---------------------------------------------------------------------------
// Small-block allocation and free.

/// Allocates a block of `class` from the calling thread's heap. `size` and
/// `align` are the request behind it; only the slow path looks at them (in
/// debug mode, to make a debug block).
#[inline(always)]
pub fn alloc(class: usize, size: usize, align: usize) -> *mut u8 {
    let h = tls::get();
    // SAFETY: the slot always points at a live heap (sentinels included).
    let b = unsafe { (*h).alloc_fast(class) };
    if !b.is_null() {
        return b.cast();
    }
    alloc_slow(size, class, h, align)
}

/// Slow path of [`alloc`]; sets `errno` to `ENOMEM` when it returns null.
#[cold]
#[inline(never)]
fn alloc_slow(size: usize, class: usize, h: *mut Heap, align: usize) -> *mut u8 {
    let p = alloc_slow_inner(h, class, size, align);
    if p.is_null() {
        os::set_errno(libc::ENOMEM);
    }
    p
}

fn alloc_slow_inner(h: *mut Heap, class: usize, size: usize, align: usize) -> *mut u8 {
    // SAFETY: the slot always points at a live heap.
    match unsafe { (*h).kind } {
        // SAFETY: the calling thread owns its real heap.
        Kind::Real => unsafe { (*h).alloc_slow(class) },
        Kind::Uninit => {
            init_thread();
            alloc(class, size, align)
        }
        Kind::Dead | Kind::LockedProxy if options::debug() => crate::debug::malloc(size, align, false),
        Kind::Dead | Kind::LockedProxy => locked_alloc(class),
    }
}

/// Allocates from the locked heap.
pub fn locked_alloc(class: usize) -> *mut u8 {
    let _g = LOCKED_LOCK.guard();
    LOCKED_HEAP.alloc(class)
}

/// Frees a block of the locked heap (debug mode's raw blocks).
pub fn locked_free(p: *mut u8) {
    let pool = arena::pool_of(p);
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
#[inline(always)]
pub unsafe fn free(p: *mut u8) {
    let pool = arena::pool_of(p);
    // SAFETY: `p` is inside a live arena, so its header is readable.
    let pr = unsafe { &*pool };
    if pr.owner.load(Relaxed) == thread_id() {
        // SAFETY: we own the pool and `p` is in its block area.
        if unsafe { pr.suspect(p.cast()) } {
            // A tail call, so the fast path saves no registers.
            // SAFETY: as above.
            return unsafe { free_suspect(p, pool) };
        }
        // SAFETY: one of our pool's handed-out blocks.
        unsafe { pr.push_then(p.cast(), || pool_emptied(pool)) };
        return;
    }
    // SAFETY: forwarded from the caller.
    unsafe { free_slow(p, pool) }
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
    let h = tls::get();
    // SAFETY: the pool's owner is this thread, so the slot holds its heap.
    unsafe { (*h).pool_emptied(pool) }
}

#[cold]
#[inline(never)]
unsafe fn free_slow(p: *mut u8, pool: *mut Pool) {
    if options::debug() {
        // Every block is a debug block: check it and free it there.
        // SAFETY: forwarded from the caller.
        unsafe { crate::debug::free(p, None, "free") };
        return;
    }
    // SAFETY: `pool` is metadata in a live arena.
    let pr = unsafe { &*pool };
    let st = pr.state.load(Relaxed);
    if (st != state::USED && st != state::ABANDONED) || (p as usize) < pr.start.get() as usize {
        crate::alloc::invalid_free(p, "block is not allocated");
        return;
    }
    if p as usize & (ALIGNMENT - 1) != 0 {
        crate::alloc::invalid_free(p, "not the start of a block");
        return;
    }
    let owner = pr.owner.load(Relaxed);
    let me = thread_id();
    if owner == me | OWNER_FULL {
        // SAFETY: our own full pool; the slot holds our heap.
        unsafe { (*tls::get()).free_to_full(pool, p.cast()) };
    } else if owner & !OWNER_FULL == LOCKED_OWNER {
        let _g = LOCKED_LOCK.guard();
        // SAFETY: the locked heap's pools stay with it while they hold live
        // blocks, and we hold its lock.
        unsafe { locked_free_held(pool, p.cast()) };
    } else {
        let mut h = tls::get();
        // SAFETY: the slot points at a live heap.
        if unsafe { (*h).kind } == Kind::Uninit {
            // A thread that frees before it ever allocates (a consumer) gets
            // its heap now, so its remote frees are batched.
            init_thread();
            h = tls::get();
        }
        // SAFETY: the slot points at a live heap.
        if unsafe { (*h).kind } == Kind::Real {
            // SAFETY: our own heap; `p` is a handed-out block of `pool` (owned
            // by someone else) that the caller gives up.
            unsafe { (*h).free_remote(pool, p.cast()) };
        } else {
            // SAFETY: `p` is a handed-out block of `pool` that the caller
            // gives up.
            unsafe { pr.push_remote(p.cast()) };
            ORPHAN_REMOTE_FREES.fetch_add(1, Relaxed);
        }
    }
}

/// Remote frees made by threads without a heap of their own.
pub static ORPHAN_REMOTE_FREES: AtomicUsize = AtomicUsize::new(0);

/// Local free into the locked heap. The caller holds [`LOCKED_LOCK`].
unsafe fn locked_free_held(pool: *mut Pool, b: *mut Block) {
    // SAFETY: the caller holds the lock, so the locked heap is ours, and
    // `b` is a handed-out block of its pool `pool`.
    unsafe { LOCKED_HEAP.free_owned(pool, b) };
}

// ---------------------------------------------------------------------------
// Set-up, the heap registry, thread exit.

const INIT_NONE: u8 = 0;
const INIT_RUNNING: u8 = 1;
const INIT_DONE: u8 = 2;
static INIT_STATE: AtomicU8 = AtomicU8::new(INIT_NONE);
static INIT_THREAD: AtomicUsize = AtomicUsize::new(0);
static KEY: AtomicUsize = AtomicUsize::new(usize::MAX);

/// One-time process set-up: options, the thread-exit key, fork handlers.
/// Safe to re-enter from the same thread (the fork-handler registration may
/// itself call `malloc`).
pub fn global_init() {
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
    INIT_STATE.store(INIT_DONE, Release);
    crate::alloc::after_init();
}

#[cold]
fn init_thread() {
    global_init();
    if !ptr::eq(tls::get(), &UNINIT_HEAP) {
        return; // set up by a re-entrant call during global_init
    }
    if options::locked_mode() || options::debug() {
        tls::set(&PROXY_HEAP);
        return;
    }
    let h = REGISTRY.new_heap(thread_id());
    if h.is_null() {
        // No memory for a heap: serve this thread from the locked heap.
        tls::set(&DEAD_HEAP);
        return;
    }
    tls::set(h);
    let key = KEY.load(Acquire);
    if key != usize::MAX {
        // SAFETY: `key` was created by pthread_key_create. This may call
        // malloc (for keys past the first 32); the slot is already set, so
        // that call uses the new heap.
        unsafe { libc::pthread_setspecific(key as libc::pthread_key_t, h.cast()) };
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

static USER_HEAP_IDS: AtomicUsize = AtomicUsize::new(1);
/// Bit set in the owner id of every first-class heap (never in a thread id,
/// which is an aligned address, nor in `LOCKED_OWNER`).
pub const USER_OWNER_BIT: usize = 2;

/// A heap for a first-class `Heap`: owned by no thread, with an owner id
/// that can never equal a thread id (bit 1 set) or `LOCKED_OWNER`, and that
/// does not adopt abandoned pools. Null if out of memory.
pub fn new_user_heap() -> *mut Heap {
    global_init();
    let id = (USER_HEAP_IDS.fetch_add(1, Relaxed) << 4) | USER_OWNER_BIT;
    let h = REGISTRY.new_heap(id);
    if !h.is_null() {
        // SAFETY: a fresh heap from the registry, ours alone.
        unsafe { (*h).adopts.set(false) };
        let _g = REGISTRY.lock.guard();
        REGISTRY.user_heaps.set(REGISTRY.user_heaps.get() + 1);
    }
    h
}

/// Returns a first-class heap's structure to the registry after its pools
/// were released.
///
/// # Safety
/// `h` must come from [`new_user_heap`] and hold no pools.
pub unsafe fn free_user_heap(h: *mut Heap) {
    // SAFETY: by the caller.
    unsafe { (*h).adopts.set(true) };
    REGISTRY.free_heap(h);
    let _g = REGISTRY.lock.guard();
    REGISTRY.user_heaps.set(REGISTRY.user_heaps.get() - 1);
}

/// All heaps ever made, for statistics and fork; and the free heaps.
pub struct Registry {
    /// Guards the lists and the slab.
    pub lock: RawLock,
    all: Local<*mut Heap>,
    free: Local<*mut Heap>,
    slab: Local<*mut u8>,
    slab_end: Local<usize>,
    /// Bytes mapped for heap structures.
    pub meta_bytes: Local<usize>,
    /// Heaps in use (by threads and first-class heaps).
    pub live: Local<usize>,
    /// First-class heaps alive.
    pub user_heaps: Local<usize>,
}

/// The registry of the process.
pub static REGISTRY: Registry = Registry {
    lock: RawLock::new(),
    all: Local::new(ptr::null_mut()),
    free: Local::new(ptr::null_mut()),
    slab: Local::new(ptr::null_mut()),
    slab_end: Local::new(0),
    meta_bytes: Local::new(0),
    live: Local::new(0),
    user_heaps: Local::new(0),
};

const SLAB_BYTES: usize = 64 * 1024;

impl Registry {
    fn new_heap(&self, owner: usize) -> *mut Heap {
        let _g = self.lock.guard();
        let h = self.free.get();
        if !h.is_null() {
            // SAFETY: free heaps are live and unused.
            let hr = unsafe { &*h };
            self.free.set(hr.free_next.get());
            hr.owner.set(owner);
            hr.hints.clear();
            self.live.set(self.live.get() + 1);
            return h;
        }
        let size = core::mem::size_of::<Heap>().next_multiple_of(64);
        if self.slab.get().addr() + size > self.slab_end.get() {
            let m = os::map(SLAB_BYTES);
            if m.is_null() {
                return ptr::null_mut();
            }
            self.meta_bytes.set(self.meta_bytes.get() + SLAB_BYTES);
            self.slab.set(m);
            self.slab_end.set(m.addr() + SLAB_BYTES);
        }
        let h = self.slab.get().cast::<Heap>();
        self.slab.set(self.slab.get().wrapping_add(size));
        // SAFETY: fresh slab memory, suitably aligned, seen by no one else.
        unsafe { h.write(Heap::new(Kind::Real, owner)) };
        // SAFETY: just initialised.
        unsafe { (*h).reg_next.set(self.all.get()) };
        self.all.set(h);
        self.live.set(self.live.get() + 1);
        h
    }

    fn free_heap(&self, h: *mut Heap) {
        let _g = self.lock.guard();
        // SAFETY: `h` is a registered heap that its thread gave up.
        let hr = unsafe { &*h };
        hr.owner.set(0);
        hr.free_next.set(self.free.get());
        self.free.set(h);
        self.live.set(self.live.get() - 1);
    }

    /// Calls `f` on every heap (registry lock held by the caller).
    pub fn for_each(&self, mut f: impl FnMut(&Heap)) {
        let mut h = self.all.get();
        while !h.is_null() {
            // SAFETY: registered heaps are never unmapped.
            let hr = unsafe { &*h };
            f(hr);
            h = hr.reg_next.get();
        }
    }
}

/// Runs the full invariant check of the calling thread's heap (if it has
/// one). Panics on violation.
pub fn check_current_heap() {
    let h = tls::get();
    // SAFETY: the slot points at a live heap; a real one is ours.
    if unsafe { (*h).kind } == Kind::Real {
        // SAFETY: as above.
        unsafe { (*h).check_invariants() };
    }
}

// ---------------------------------------------------------------------------
// Trim.

/// Returns as much memory as possible to the OS: the calling thread's heap
/// and the locked heap give back empty pools, abandoned pools are swept,
/// free pools are decommitted and cached large spans unmapped.
pub fn trim() {
    let h = tls::get();
    // SAFETY: the slot points at a live heap; a real one is ours.
    if unsafe { (*h).kind } == Kind::Real {
        // SAFETY: as above.
        unsafe { (*h).trim() };
    }
    {
        let _g = LOCKED_LOCK.guard();
        LOCKED_HEAP.trim();
    }
    ABANDONED.sweep();
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
}

/// Frees every lock but the ones the interrupted call holds (their other
/// holders do not exist here), then reclaims the dead threads' pools, unless
/// the calling thread was inside the allocator, whose structures may then be
/// mid-update: the dead threads' pools stay unused in that child.
extern "C" fn fork_child() {
    let mine = FORK_MINE.load(Relaxed);
    for (i, l) in fork_locks().iter().enumerate().rev() {
        if mine & (1 << i) == 0 {
            l.reset();
        }
    }
    if mine == 0 {
        reclaim_after_fork();
    }
}

/// In a fork child: every heap but the calling thread's belongs to a thread
/// that does not exist here. Their pools are found by walking the arenas.
/// The calling thread's own heap and pools are not touched: the fork may
/// have interrupted its fast path.
fn reclaim_after_fork() {
    let me = thread_id();
    let mine = tls::get();
    // Owner ids of heaps that do not survive: threads other than this one.
    let dead = |owner: usize| owner != me && owner != LOCKED_OWNER && owner & USER_OWNER_BIT == 0;
    // SAFETY: the slot points at a live heap. A pool this thread still owes
    // held-back remote frees must not go back to its arena: it is abandoned
    // instead, and the frees reach it when the batch is pushed.
    let owed = unsafe { (*mine).batch_pool() } as *const Pool;
    {
        let _g = REGISTRY.lock.guard();
        let mut free_list = REGISTRY.free.get();
        let mut live = 0;
        REGISTRY.for_each(|h| {
            let hp = h as *const Heap as *mut Heap;
            if hp == mine {
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
    arena::reclaim_in_child(|p: &Pool| {
        let owner = owner_id(p.owner.load(Relaxed));
        match p.state.load(Relaxed) {
            state::EMPTY => dead(owner),
            state::USED if dead(owner) => {
                p.recount();
                p.collect_remote();
                if p.is_empty() && !ptr::eq(p, owed) {
                    return true;
                }
                p.clear_remote_full();
                p.set_owner(0, ptr::null());
                p.state.store(state::ABANDONED, Relaxed);
                // SAFETY: a pool with live blocks on no trusted list.
                unsafe { ABANDONED.put(p as *const Pool as *mut Pool) };
                false
            }
            _ => false,
        }
    });
}
