//! The heaps of the process (layer 5): every heap structure, where it
//! lives and how it is reused.
//!
//! * The **sentinel heaps** a thread's heap slot points at when it has no
//!   heap of its own: [`UNINIT_HEAP`] (no heap yet), [`DEAD_HEAP`] (its thread
//!   is exiting), [`PROXY_HEAP`] (locked mode) and [`DEBUG_PROXY_HEAP`]
//!   (debug mode). Their classes all
//!   have the empty pool, so the allocation fast path falls through to the
//!   slow path, which looks at the heap's kind.
//! * The **locked heap** ([`LOCKED_HEAP`] behind [`LOCKED_LOCK`]), the
//!   pymalloc-under-the-GIL model, also used by exiting threads.
//! * The **registry** ([`REGISTRY`]) of every heap ever made, thread heaps
//!   and first-class heaps alike. Heap structures come from the registry's own
//!   slab mappings, never from `malloc`, and are never unmapped: a freed heap
//!   goes on the free-heap list for the next thread, so a stale pointer to a
//!   heap's hints stays safe to write through.
//!
//! Threads: the registry's lists are guarded by its lock; the statics are
//! immutable except through the heaps' own protocols.

use crate::heap::{Heap, Kind};
use crate::lock::RawLock;
use crate::os;
use crate::pool::LOCKED_OWNER;
use crate::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use crate::sync::Local;
use core::ptr;

/// Initial slot value: the thread has no heap yet.
pub(crate) static UNINIT_HEAP: Heap = Heap::new(Kind::Uninit, 0);
/// Slot value after thread exit.
pub(crate) static DEAD_HEAP: Heap = Heap::new(Kind::Dead, 0);
/// Slot value in locked mode.
pub(crate) static PROXY_HEAP: Heap = Heap::new(Kind::LockedProxy, 0);
/// Slot value in debug mode.
pub(crate) static DEBUG_PROXY_HEAP: Heap = Heap::new(Kind::DebugProxy, 0);
/// The slot of every thread the heap profiler samples (see
/// [`Kind::ProfProxy`]).
pub(crate) static PROF_PROXY_HEAP: Heap = Heap::new(Kind::ProfProxy, 0);
/// The locked-mode heap.
pub(crate) static LOCKED_HEAP: Heap = Heap::new(Kind::Real, LOCKED_OWNER);
/// Guards [`LOCKED_HEAP`].
pub(crate) static LOCKED_LOCK: RawLock = RawLock::new();

/// Remote frees made by threads without a heap of their own.
pub(crate) static ORPHAN_REMOTE_FREES: AtomicUsize = AtomicUsize::new(0);

pub(crate) static USER_HEAP_IDS: AtomicUsize = AtomicUsize::new(1);
pub(crate) use crate::pool::USER_OWNER_BIT;

/// All heaps ever made, for statistics and fork; and the free heaps.
pub struct Registry {
    /// Guards the lists and the slab.
    pub lock: RawLock,
    all: Local<*mut Heap>,
    pub(crate) free: Local<*mut Heap>,
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

/// The heap layer's part of the statistics snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapStats {
    /// Heaps in use (threads' and first-class heaps).
    pub live: usize,
    /// First-class heaps (`poolmalloc::Heap`) alive.
    pub first_class: usize,
    /// Bytes mapped for heap structures.
    pub metadata_bytes: usize,
    /// Frees of blocks into pools owned by another thread.
    pub remote_frees: u64,
    /// Pools ever handed to the abandoned lists.
    pub pools_abandoned_total: u64,
    /// Pools ever adopted from the abandoned lists.
    pub pools_adopted_total: u64,
    /// Pools owned by first-class heaps.
    pub first_class_pools: usize,
    /// Blocks in use in those pools.
    pub first_class_blocks_in_use: usize,
    /// Bytes of those blocks.
    pub first_class_bytes_in_blocks: usize,
}

/// Reads the registry's counters and every heap's (the first-class heaps'
/// pools are counted by the arena walk, and abandoned pools by their lists).
pub(crate) fn snapshot() -> HeapStats {
    let mut s = HeapStats::default();
    {
        let _r = REGISTRY.lock.guard();
        // SAFETY: the registry lock is held (guard `_r`).
        unsafe {
            s.metadata_bytes = REGISTRY.meta_bytes.get();
            s.live = REGISTRY.live.get();
            s.first_class = REGISTRY.user_heaps.get();
            REGISTRY.for_each(|h| {
                s.remote_frees += h.counters.remote_frees.load(Relaxed);
                s.pools_adopted_total += h.counters.adopted.load(Relaxed);
            });
        }
        s.remote_frees += ORPHAN_REMOTE_FREES.load(Relaxed) as u64;
    }
    s.remote_frees += LOCKED_HEAP.counters.remote_frees.load(Relaxed);
    s
}

/// Counts the forks this process came through (bumped in each fork child).
/// A heap records it when it gets its user; only a heap of the current
/// count can be taken over by a new thread, so a child never takes over a
/// heap that the fork caught in the middle of an update.
pub(crate) static FORK_EPOCH: AtomicU64 = AtomicU64::new(0);

impl Registry {
    /// A heap for a new user (a thread, or a first-class heap) with the
    /// owner id `owner`: a free heap, or a new one. The caller becomes its
    /// user. Null if out of memory.
    pub(crate) fn new_heap(&self, owner: usize) -> *mut Heap {
        let _g = self.lock.guard();
        if owner & USER_OWNER_BIT == 0 {
            // SAFETY: the registry lock is held (guard `_g`).
            let h = unsafe { self.left_behind(owner) };
            if !h.is_null() {
                return h;
            }
        }
        // SAFETY: the registry lock is held (guard `_g`).
        let h = unsafe { self.free.get() };
        if !h.is_null() {
            // SAFETY: free heaps are live and have no user: their `owner`,
            // like the registry's lists, is guarded by the lock we hold.
            unsafe {
                let hr = &*h;
                self.free.set(hr.free_next.get());
                hr.owner.set(owner);
                hr.epoch.set(FORK_EPOCH.load(Relaxed));
                hr.hints.clear();
                self.live.set(self.live.get() + 1);
            }
            return h;
        }
        let size = core::mem::size_of::<Heap>().next_multiple_of(64);
        // SAFETY: the registry lock is held (guard `_g`): the slab, the list
        // of all heaps and the counters are ours. `h` is fresh slab memory,
        // suitably aligned, seen by no one else until it is on the list.
        unsafe {
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
            h.write(Heap::new(Kind::Real, owner));
            (*h).epoch.set(FORK_EPOCH.load(Relaxed));
            (*h).reg_next.set(self.all.get());
            self.all.set(h);
            self.live.set(self.live.get() + 1);
            h
        }
    }

    /// A live heap whose owner is the thread id `owner`, when the caller is
    /// a new thread with that id: the heap of an earlier thread that had the
    /// same thread control block (ids are thread pointers, unique among
    /// live threads) and exited without giving its heap up. That happens to
    /// a thread whose first allocation comes in the last round of TLS
    /// destructors, too late for the thread-exit destructor to run. The new
    /// thread takes that heap over as it is, pools and all: their owner
    /// words already name it, and the old thread will never touch them
    /// again. C libraries reuse the control blocks of exited threads, so
    /// such heaps do not pile up. A heap from before a fork is not taken
    /// (see [`FORK_EPOCH`]; the fork child re-stamps the one it knows to be
    /// whole). Null if there is none. Lock held.
    ///
    /// # Safety
    /// The registry lock must be held.
    unsafe fn left_behind(&self, owner: usize) -> *mut Heap {
        let mut found: *mut Heap = ptr::null_mut();
        // SAFETY: by the caller, the registry lock is held: the list of all
        // heaps and each heap's `owner` are guarded by it (a thread's heap's
        // owner is written only by the registry).
        unsafe {
            let now = FORK_EPOCH.load(Relaxed);
            self.for_each(|h| {
                if h.owner.get() == owner && h.kind == Kind::Real && h.epoch.get() == now && found.is_null() {
                    found = h as *const Heap as *mut Heap;
                }
            });
        }
        found
    }

    /// Takes back a heap whose user gave it up (it holds no pools).
    pub(crate) fn free_heap(&self, h: *mut Heap) {
        let _g = self.lock.guard();
        // SAFETY: `h` is a registered heap that its user gave up, so its
        // `owner` and links are the registry's now; the registry lock is
        // held (guard `_g`).
        unsafe {
            let hr = &*h;
            hr.owner.set(0);
            hr.free_next.set(self.free.get());
            self.free.set(h);
            self.live.set(self.live.get() - 1);
        }
    }

    /// Calls `f` on every heap (registry lock held by the caller).
    ///
    /// # Safety
    /// The registry lock must be held, for the whole walk.
    pub unsafe fn for_each(&self, mut f: impl FnMut(&Heap)) {
        // SAFETY: the registry lock is held (by the caller), which guards
        // the list of all heaps and its links.
        let mut h = unsafe { self.all.get() };
        while !h.is_null() {
            // SAFETY: registered heaps are never unmapped.
            let hr = unsafe { &*h };
            f(hr);
            // SAFETY: as above: the links are the registry's.
            h = unsafe { hr.reg_next.get() };
        }
    }
}
