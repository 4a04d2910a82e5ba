//! Layer 2: arenas.
//!
//! An arena is a 4 MiB mapping aligned to 4 MiB, so the arena and pool of any
//! block are found by masking its address: no pool is lost to alignment, and
//! the ownership map needs one entry per arena. The arena is cut into 64
//! slices of 64 KiB. The arena header sits at the start and holds the
//! [`Pool`] metadata of all 64 slices; slice 0's blocks begin after the
//! header (rounded up to 16 KiB, so its blocks keep the alignment the size
//! classes promise), slices 1 to 63 are whole.
//!
//! A pool of a class up to 32 KiB is one slice. A pool of a larger class
//! (a medium block, up to 1 MiB) is a run of contiguous slices, never
//! including slice 0, starting on the alignment its class needs
//! ([`size_class::run_align`]); the records of its other slices are
//! FOLLOWERs that point back at the first. Freed runs become free slices
//! again, so medium memory is reused by small pools and the reverse.
//!
//! Arenas are shared by all heaps and guarded by one lock ([`ARENAS`]).
//! Heaps take pools from arenas and give them back; this happens once per
//! 64 KiB of blocks, never per block.
//!
//! # Policy
//!
//! * **Fullest first.** Arenas with free pools sit in buckets by their number
//!   of free pools; a pool is always taken from the arena with the fewest free
//!   pools, so the emptier arenas can drain and be released (pymalloc keeps
//!   its `usable_arenas` list sorted for the same reason).
//! * **Best fit for runs.** Bucketed arenas are also filed by their longest
//!   run of free slices. A medium pool's run comes from an arena whose
//!   longest run is the shortest that fits, so long runs stay whole for long
//!   requests; at most [`RUN_SEARCH`] arenas are examined (an aligned run may
//!   be missing from an arena whose longest run is long enough) before a new
//!   arena is mapped.
//! * **Release.** An arena whose pools have all been free for the purge
//!   delay is unmapped, except that one such arena is kept as a spare (its
//!   pages decommitted) to stop a program that hovers at an arena boundary
//!   from mapping and unmapping over and over. Until the delay passes, an
//!   all-free arena waits in the last bucket, used only after every fuller
//!   arena: a program that frees everything and allocates again at once (a
//!   CPython loop building and dropping containers) reuses its pages instead
//!   of faulting fresh ones in, which is where pymalloc spends its system
//!   time. With a delay of 0 the arena is released at once.
//! * **Decommit.** A free pool in a live arena keeps its pages for the purge
//!   delay (`POOLMALLOC_PURGE_DELAY`, default 100 ms) and is then decommitted
//!   with `madvise(MADV_DONTNEED)` on the next arena operation after that
//!   time. The pages waiting out the delay are capped: at most
//!   [`DIRTY_ALLOWANCE`] (8 MiB) plus a sixteenth of the slices in use.
//!   When a pool given back takes them over that cap, they are brought down
//!   to half of it at once (neighbouring pools in one call; arenas that
//!   became all free are released), so a program that frees most of its
//!   memory and then sleeps, or runs only on the fast path, holds at most
//!   that much more than it uses, with no later call needed. Below the cap
//!   the delay works as before. The default is long enough for a program that frees a large part
//!   of its heap and builds it up again (a CPython loop building and dropping
//!   containers) to reuse resident pages instead of faulting in fresh ones
//!   (measured on such a loop: 332,000 page faults at 10 ms, 37,000 at
//!   100 ms), and short enough that memory goes back well within a second. A delay of 0 decommits at once; a negative delay never does.
//!   [`purge_all`] (from `trim()`) decommits every free pool immediately.
//!
//! # Arena states
//!
//! ```text
//!  mapped ──▶ in a bucket (1..=63 free pools) ◀──▶ full (0 free, no bucket)
//!                  │ all pools free
//!                  ▼
//!          spare (if none) ──reuse──▶ in a bucket
//!          or unmapped
//! ```

use crate::list::{Links, List};
use crate::lock::RawLock;
use crate::options;
use crate::os;
use crate::ownership::{self, GRANULE, GRANULE_SHIFT, TAG_ARENA};
use crate::pool::{state, Pool, POOL_SHIFT, POOL_SIZE};
use crate::size_class::{self, SLICE_POOL_ALIGN_SHIFT};
use crate::sync::{Counter, Local};
use core::ptr;
use crate::sync::atomic::{AtomicU32, AtomicUsize, Ordering::Relaxed};

/// log2 of the arena size.
pub const ARENA_SHIFT: usize = GRANULE_SHIFT;
/// Bytes per arena.
pub const ARENA_SIZE: usize = 1 << ARENA_SHIFT;
/// Pools per arena.
pub const POOLS_PER_ARENA: usize = ARENA_SIZE / POOL_SIZE;

const _: () = assert!(ARENA_SIZE == GRANULE, "one ownership-map entry per arena");
const _: () = assert!(POOLS_PER_ARENA == 64, "free masks are u64");
const _: () = assert!(core::mem::size_of::<Arena>() < POOL_SIZE / 2, "header leaves room in pool 0");

/// An arena header, at the start of its arena.
#[repr(C)]
pub struct Arena {
    /// Metadata of each pool, indexed by `(addr >> POOL_SHIFT) % 64`.
    pub pools: [Pool; POOLS_PER_ARENA],
    /// Bit i set: pool i is FREE (owned by the arena). Arena lock.
    free_mask: Local<u64>,
    /// Bit i set: pool i is FREE and may still hold resident pages. Arena lock.
    dirty_mask: Local<u64>,
    /// Links in a bucket list. Arena lock.
    next: Local<*mut Arena>,
    prev: Local<*mut Arena>,
    /// Links in the list of all arenas. Arena lock.
    all_next: Local<*mut Arena>,
    all_prev: Local<*mut Arena>,
    /// Links in a run list (arenas by their longest run of free slices).
    /// Arena lock.
    run_next: Local<*mut Arena>,
    run_prev: Local<*mut Arena>,
    /// The longest run of free slices (slice 0 not counted) while the arena
    /// is in a bucket; the index of its run list. Arena lock.
    run_len: Local<u8>,
    /// For the lead record of each pool in use: the blocks in use that its
    /// holder last reported ([`report_in_use`]), which [`BLOCK_BYTES`]
    /// counts. Written by the pool's holder, or under the lock when the
    /// pool comes back (0).
    reported: [AtomicU32; POOLS_PER_ARENA],
}

impl Arena {
    /// The arena whose header holds the pool metadata `p`.
    #[inline(always)]
    pub fn of(p: *const Pool) -> *mut Arena {
        p.cast_mut().cast::<Arena>().map_addr(|a| a & !(ARENA_SIZE - 1))
    }

    fn base(&self) -> usize {
        self as *const Arena as usize
    }

    /// Free pools in the arena.
    ///
    /// # Safety
    /// The arena lock must be held.
    unsafe fn nfree(&self) -> usize {
        // SAFETY: by the caller, the arena lock is held.
        unsafe { self.free_mask.get() }.count_ones() as usize
    }

    /// End of pool `i`'s slice of the arena.
    pub fn pool_end(&self, i: usize) -> usize {
        self.base() + (i + 1) * POOL_SIZE
    }

    /// Index of a pool given its metadata.
    pub fn index_of(&self, p: *const Pool) -> usize {
        (p as usize - self.pools.as_ptr() as usize) / core::mem::size_of::<Pool>()
    }
}

/// Pool metadata for any pointer inside an arena's pool area. The result
/// has the arena mapping's provenance (see [`ownership::mapped`]; outside
/// Miri it is `p`'s address arithmetic and nothing more).
#[inline(always)]
pub fn pool_of(p: *mut u8) -> *mut Pool {
    ownership::mapped(p)
        .map_addr(|addr| {
            let arena = addr & !(ARENA_SIZE - 1);
            let index = (addr >> POOL_SHIFT) & (POOLS_PER_ARENA - 1);
            arena + index * core::mem::size_of::<Pool>()
        })
        .cast()
}

/// Bytes of the header area: the header rounded up to a page and to 16 KiB
/// (the alignment of every single-slice pool's start). Pool 0's blocks start
/// here.
pub fn header_bytes() -> usize {
    core::mem::size_of::<Arena>().next_multiple_of(os::page_size().max(1 << SLICE_POOL_ALIGN_SHIFT))
}

/// The arena layer's part of the statistics snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArenaStats {
    /// Arenas ever mapped.
    pub allocated: usize,
    /// Arenas ever unmapped.
    pub reclaimed: usize,
    /// Arenas mapped now.
    pub current: usize,
    /// Most arenas mapped at once.
    pub high_water: usize,
    /// Bytes of arena headers (pool metadata).
    pub bytes_headers: usize,
    /// Bytes between the header and the page where pool 0's blocks start.
    pub bytes_alignment: usize,
}

/// What the arena walk tells about one pool record.
pub(crate) struct Slice<'a> {
    /// The record.
    pub pool: &'a Pool,
    /// Bytes of its slice (pool 0's is shorter).
    pub area: usize,
    /// Free in its arena.
    pub free: bool,
    /// Free and possibly resident (not decommitted).
    pub dirty: bool,
}

/// Reads the arena counters and calls `visit` on every pool record of every
/// arena, all under the arena lock.
pub(crate) fn snapshot(mut visit: impl FnMut(Slice<'_>)) -> ArenaStats {
    let header = core::mem::size_of::<Arena>();
    let header_area = header_bytes().min(POOL_SIZE);
    let _g = ARENAS.lock.guard();
    // SAFETY: the arena lock is held (guard `_g`) for the counters, the walk
    // and each record's `slices` that `pool_area` reads.
    unsafe {
        let mut s = ArenaStats {
            allocated: ARENAS.allocated.get(),
            reclaimed: ARENAS.reclaimed.get(),
            current: ARENAS.count.get(),
            high_water: ARENAS.high_water.get(),
            ..ArenaStats::default()
        };
        ARENAS.for_each(|a: &Arena, free_mask, dirty_mask| {
            s.bytes_headers += header;
            s.bytes_alignment += header_area - header;
            for (i, pool) in a.pools.iter().enumerate() {
                let (free, dirty) = (free_mask & (1 << i) != 0, dirty_mask & (1 << i) != 0);
                visit(Slice { pool, area: pool_area(pool), free, dirty });
            }
        });
        s
    }
}

/// Arenas a run request examines (best fit first) before it maps a new one.
pub const RUN_SEARCH: usize = 64;

/// Bytes of free pools whose pages may stay resident beyond the sixteenth
/// of the memory in use (see [`Arenas::dirty_allowance`]): 8 MiB.
pub const DIRTY_ALLOWANCE: usize = 8 << 20;

/// Bits at the slice indices where a run aligned to `align` slices (a power
/// of two up to 16) may start.
const fn aligned_starts(align: usize) -> u64 {
    u64::MAX / ((1u64 << align) - 1)
}

/// Start indices of the runs of `k` free slices in `free`, restricted to
/// multiples of `align`.
fn run_starts(free: u64, k: usize, align: usize) -> u64 {
    let mut starts = free;
    for j in 1..k {
        starts &= free >> j;
    }
    starts & aligned_starts(align)
}

/// Length of the longest run of set bits in `m`.
fn longest_run(mut m: u64) -> usize {
    let mut n = 0;
    while m != 0 {
        m &= m << 1;
        n += 1;
    }
    n
}

/// The bits of `k` slices from `i`.
fn run_mask(i: usize, k: usize) -> u64 {
    (((1u128 << k) - 1) as u64) << i
}

/// Bitmask of the pools that can ever hold blocks (pool 0 cannot when the
/// page size makes the header fill it).
fn usable_mask() -> u64 {
    if header_bytes() >= POOL_SIZE {
        !1
    } else {
        !0
    }
}

/// The links of a bucket (by free-pool count): `next`, `prev`.
pub struct BucketLinks;
/// The links of a run list (by longest free run): `run_next`, `run_prev`.
pub struct RunLinks;
/// The links of the list of all arenas: `all_next`, `all_prev`.
pub struct AllLinks;

impl Links<Arena> for BucketLinks {
    unsafe fn links<'a>(a: *mut Arena) -> (&'a Local<*mut Arena>, &'a Local<*mut Arena>) {
        // SAFETY: by the caller, `a` is a live arena.
        unsafe { (&(*a).next, &(*a).prev) }
    }
}

impl Links<Arena> for RunLinks {
    unsafe fn links<'a>(a: *mut Arena) -> (&'a Local<*mut Arena>, &'a Local<*mut Arena>) {
        // SAFETY: by the caller, `a` is a live arena.
        unsafe { (&(*a).run_next, &(*a).run_prev) }
    }
}

impl Links<Arena> for AllLinks {
    unsafe fn links<'a>(a: *mut Arena) -> (&'a Local<*mut Arena>, &'a Local<*mut Arena>) {
        // SAFETY: by the caller, `a` is a live arena.
        unsafe { (&(*a).all_next, &(*a).all_prev) }
    }
}

/// Global arena state.
pub struct Arenas {
    /// Guards everything below and the arena-level fields of every arena.
    pub lock: RawLock,
    /// `buckets[n]`: arenas with exactly n free pools, n in 1..=63.
    buckets: [List<Arena, BucketLinks>; POOLS_PER_ARENA + 1],
    /// Bit n set iff `buckets[n]` is non-empty.
    nonempty: Local<u128>,
    /// `runs[r]`: the bucketed arenas whose longest run of free slices (not
    /// counting slice 0) is r, for r in 1..=63. Medium requests look here.
    runs: [List<Arena, RunLinks>; POOLS_PER_ARENA],
    /// Bit r set iff `runs[r]` is non-empty.
    runs_nonempty: Local<u64>,
    /// All arenas, including full ones and the spare.
    all: List<Arena, AllLinks>,
    /// The one arena kept with all its pools free, or null.
    spare: Local<*mut Arena>,
    /// Arenas currently mapped (read without the lock by `counters`).
    pub count: Counter,
    /// Arenas ever mapped.
    pub allocated: Local<usize>,
    /// Arenas ever unmapped.
    pub reclaimed: Local<usize>,
    /// Most arenas mapped at once.
    pub high_water: Local<usize>,
    /// When the next delayed decommit is due (ms), or 0 if none pending.
    purge_due: Local<u64>,
    /// Free pools whose pages may still be resident, over all arenas.
    dirty_pools: Counter,
    /// Slices held by heaps (in pools), over all arenas.
    in_use_slices: Counter,
}

/// The arenas of the process.
pub static ARENAS: Arenas = Arenas {
    lock: RawLock::new(),
    buckets: [const { List::new() }; POOLS_PER_ARENA + 1],
    nonempty: Local::new(0),
    runs: [const { List::new() }; POOLS_PER_ARENA],
    runs_nonempty: Local::new(0),
    all: List::new(),
    spare: Local::new(ptr::null_mut()),
    count: Counter::new(0),
    allocated: Local::new(0),
    reclaimed: Local::new(0),
    high_water: Local::new(0),
    purge_due: Local::new(0),
    dirty_pools: Counter::new(0),
    in_use_slices: Counter::new(0),
};

/// Every method of `Arenas` reads or writes what the arena lock guards: the
/// lists, the counters and the arena-level fields of every arena. They are
/// `unsafe` with one contract, stated once here: **the caller holds the
/// arena lock** (`ARENAS.lock`). Inside them, "lock held" refers to it.
impl Arenas {
    /// # Safety
    /// The arena lock must be held; `a` must be a live arena on no bucket.
    unsafe fn bucket_insert(&self, a: *mut Arena) {
        // SAFETY: `a` is a live arena on no bucket (by the caller), and the
        // arena lock is held: its mask, the bucket and the mask of non-empty
        // buckets are ours.
        unsafe {
            let n = (*a).nfree();
            debug_assert!(n > 0 && n < POOLS_PER_ARENA + 1);
            self.buckets[n].push(a);
            self.nonempty.set(self.nonempty.get() | 1 << n);
            self.runs_insert(a);
        }
    }

    /// # Safety
    /// The arena lock must be held; `a` must be on bucket `n`.
    unsafe fn bucket_remove(&self, a: *mut Arena, n: usize) {
        // SAFETY: `a` is on bucket `n` (by the caller); the arena lock is
        // held.
        unsafe {
            self.runs_remove(a);
            self.buckets[n].remove(a);
            if self.buckets[n].head().is_null() {
                self.nonempty.set(self.nonempty.get() & !(1 << n));
            }
        }
    }

    /// Files a bucketed arena under its longest free run. Lock held.
    ///
    /// # Safety
    /// The arena lock must be held; `a` must be a live arena on no run list.
    unsafe fn runs_insert(&self, a: *mut Arena) {
        // SAFETY: `a` is a live arena on no run list (by the caller); the
        // arena lock is held.
        unsafe {
            let a_ref = &*a;
            let r = longest_run(a_ref.free_mask.get() & !1);
            a_ref.run_len.set(r as u8);
            if r > 0 {
                self.runs[r].push(a);
                self.runs_nonempty.set(self.runs_nonempty.get() | 1 << r);
            }
        }
    }

    /// Takes a bucketed arena off its run list. Lock held.
    ///
    /// # Safety
    /// The arena lock must be held; `a` must be a live bucketed arena.
    unsafe fn runs_remove(&self, a: *mut Arena) {
        // SAFETY: `a` is a live arena, on run list `run_len` if that is not
        // 0 (by the caller); the arena lock is held.
        unsafe {
            let a_ref = &*a;
            let r = a_ref.run_len.get() as usize;
            if r == 0 {
                return;
            }
            self.runs[r].remove(a);
            if self.runs[r].head().is_null() {
                self.runs_nonempty.set(self.runs_nonempty.get() & !(1 << r));
            }
            a_ref.run_len.set(0);
        }
    }

    /// # Safety
    /// The arena lock must be held; `a` must be live and not on the
    /// all-list.
    unsafe fn all_insert(&self, a: *mut Arena) {
        // SAFETY: `a` is live and not on the all-list; the arena lock is held.
        unsafe { self.all.push(a) };
    }

    /// # Safety
    /// The arena lock must be held; `a` must be on the all-list.
    unsafe fn all_remove(&self, a: *mut Arena) {
        // SAFETY: `a` is on the all-list; the arena lock is held.
        unsafe { self.all.remove(a) };
    }

    /// Maps and initialises a new arena. Lock held. Null on failure.
    ///
    /// # Safety
    /// The arena lock must be held.
    unsafe fn map_arena(&self) -> *mut Arena {
        let base = os::map_aligned(ARENA_SIZE, ARENA_SIZE);
        if base.is_null() {
            return ptr::null_mut();
        }
        if !ownership::mark(base, ARENA_SIZE, TAG_ARENA, TAG_ARENA) {
            // SAFETY: our fresh mapping, seen by no one.
            unsafe { os::release_or_keep(base, ARENA_SIZE) };
            return ptr::null_mut();
        }
        let a = base.cast::<Arena>();
        let hdr = header_bytes();
        for i in 0..POOLS_PER_ARENA {
            let start = if i == 0 { hdr.min(POOL_SIZE) } else { i * POOL_SIZE };
            // SAFETY: the header lies inside the fresh mapping we own; nothing
            // else can see this arena yet.
            unsafe {
                ptr::addr_of_mut!((*a).pools[i]).write(Pool::new(base.wrapping_add(start)));
                ptr::addr_of_mut!((*a).reported[i]).write(AtomicU32::new(0));
            }
        }
        // SAFETY: as above: the new arena's fields are ours alone until it
        // is on the all-list, and the arena lock is held for that list and
        // the counters.
        unsafe {
            let a_ref = &*a;
            a_ref.free_mask.set(usable_mask());
            a_ref.dirty_mask.set(0);
            a_ref.next.set(ptr::null_mut());
            a_ref.prev.set(ptr::null_mut());
            a_ref.run_len.set(0);
            self.all_insert(a);
            self.count.set(self.count.get() + 1);
            self.allocated.set(self.allocated.get() + 1);
            self.high_water.set(self.high_water.get().max(self.count.get()));
        }
        a
    }

    /// Unmaps an all-free arena that is on no bucket and not the spare.
    /// If the kernel refuses (the arena shares a kernel mapping with its
    /// neighbours, and splitting it would pass the map-count limit), the
    /// arena stays: back in the map, its pages decommitted, as the spare or
    /// in the last bucket, to be used again or released later. Lock held.
    ///
    /// # Safety
    /// The arena lock must be held; `a` must be a live arena, all free, on
    /// the all-list, on no bucket and not the spare.
    unsafe fn unmap_arena(&self, a: *mut Arena) {
        // SAFETY: `a` is live (by the caller); the arena lock is held.
        let dirty = unsafe { (*a).dirty_mask.get() }.count_ones() as usize;
        // Off the all-list (which reads the header) and out of the ownership
        // map before the kernel has the range back.
        // SAFETY: `a` is on the all-list; the arena lock is held.
        unsafe { self.all_remove(a) };
        ownership::unmark(a as usize, ARENA_SIZE);
        // SAFETY: every pool of the arena is free, so no block is in use,
        // and the header is not read again unless the unmap fails.
        if unsafe { os::unmap(a.cast(), ARENA_SIZE) } {
            // SAFETY: the arena lock is held.
            unsafe {
                self.dirty_pools.set(self.dirty_pools.get() - dirty);
                self.count.set(self.count.get() - 1);
                self.reclaimed.set(self.reclaimed.get() + 1);
            }
            return;
        }
        ownership::mark(a.cast(), ARENA_SIZE, TAG_ARENA, TAG_ARENA);
        // SAFETY: the unmap failed, so the arena is still mapped and ours, on
        // no list; the arena lock is held.
        unsafe {
            self.all_insert(a);
            let a_ref = &*a;
            self.decommit_mask(a_ref, a_ref.dirty_mask.get());
            if self.spare.get().is_null() {
                self.spare.set(a);
            } else {
                self.bucket_insert(a);
            }
        }
    }

    /// Decommits the pools of `a` in `mask`, coalescing neighbours into one
    /// call. Lock held.
    ///
    /// # Safety
    /// The arena lock must be held; the pools of `a` in `mask` must be free.
    unsafe fn decommit_mask(&self, a: &Arena, mask: u64) {
        // SAFETY: the arena lock is held (by the caller).
        let mask = mask & unsafe { a.dirty_mask.get() };
        // SAFETY: as above.
        unsafe {
            self.dirty_pools.set(self.dirty_pools.get() - mask.count_ones() as usize);
            a.dirty_mask.set(a.dirty_mask.get() & !mask);
        }
        let mut mask = mask;
        while mask != 0 {
            let first = mask.trailing_zeros() as usize;
            let run = (mask >> first).trailing_ones() as usize;
            // SAFETY: `start` never changes once the arena is made.
            let start = unsafe { a.pools[first].start.get() };
            let end = a.pool_end(first + run - 1);
            // SAFETY: the pools in `mask` are free, so their block areas hold
            // nothing; the header lies before pool 0's start.
            unsafe { os::decommit(start, end - start as usize) };
            mask &= !((((1u128 << run) - 1) as u64) << first);
        }
    }

    /// Takes a pool for `class` out of the fullest arena that can hold it.
    /// Lock held. Returns the pool (state still FREE, its `slices` set, its
    /// followers marked) or null if memory is exhausted.
    ///
    /// # Safety
    /// The arena lock must be held.
    unsafe fn take_pool(&self, class: usize) -> *mut Pool {
        // SAFETY: the arena lock is held (by the caller).
        unsafe {
            if class < size_class::NUM_SINGLE {
                self.take_slice()
            } else {
                self.take_run(size_class::slices(class), size_class::run_align(class))
            }
        }
    }

    /// Takes `k` contiguous free slices starting on a multiple of `align`
    /// (never slice 0). Lock held. Null if memory is exhausted.
    ///
    /// # Safety
    /// The arena lock must be held.
    unsafe fn take_run(&self, k: usize, align: usize) -> *mut Pool {
        // Best fit: the arenas whose longest free run is shortest but long
        // enough, so long runs stay whole for long requests. An aligned run
        // may not exist in an arena whose longest run is long enough, so at
        // most RUN_SEARCH arenas are looked at.
        let mut found: Option<(*mut Arena, u64)> = None;
        let mut looked = 0;
        // SAFETY: the arena lock is held (by the caller); run-list members
        // are live arenas, each on the bucket of its free count.
        unsafe {
            let mut m = self.runs_nonempty.get() & !((1u64 << k) - 1);
            'search: while m != 0 {
                let r = m.trailing_zeros() as usize;
                m &= m - 1;
                let mut a = self.runs[r].head();
                while !a.is_null() {
                    let a_ref = &*a;
                    let starts = run_starts(a_ref.free_mask.get() & !1, k, align);
                    if starts != 0 {
                        self.bucket_remove(a, a_ref.nfree());
                        found = Some((a, starts));
                        break 'search;
                    }
                    looked += 1;
                    if looked >= RUN_SEARCH {
                        break 'search;
                    }
                    a = a_ref.run_next.get();
                }
            }
        }
        let (a, starts) = match found {
            Some(f) => f,
            None => {
                // SAFETY: the arena lock is held; `a` is then a live arena
                // with every pool free.
                unsafe {
                    let a = self.spare_or_new();
                    if a.is_null() {
                        return a.cast();
                    }
                    let starts = run_starts((*a).free_mask.get() & !1, k, align);
                    debug_assert!(starts != 0);
                    (a, starts)
                }
            }
        };
        // SAFETY: `a` is a live arena off every bucket; the lock is held, so
        // its masks and the counters are ours, and `slices` of a free pool is
        // the arena's.
        unsafe {
            let a_ref = &*a;
            // Prefer a run whose pages are all still resident, then the highest.
            let dirty_starts = run_starts(a_ref.dirty_mask.get() & a_ref.free_mask.get() & !1, k, align);
            let pick = if dirty_starts != 0 { dirty_starts } else { starts };
            let i = 63 - pick.leading_zeros() as usize;
            let run = run_mask(i, k);
            let was_dirty = a_ref.dirty_mask.get() & run;
            self.dirty_pools.set(self.dirty_pools.get() - was_dirty.count_ones() as usize);
            a_ref.dirty_mask.set(a_ref.dirty_mask.get() & !run);
            a_ref.free_mask.set(a_ref.free_mask.get() & !run);
            self.in_use_slices.set(self.in_use_slices.get() + k);
            a_ref.pools[i].slices.set(k as u8);
            for j in 1..k {
                let f = &a_ref.pools[i + j];
                f.lead.store(j as u8, Relaxed);
                f.hand.state.store(state::FOLLOWER, Relaxed);
            }
            if a_ref.nfree() > 0 {
                self.bucket_insert(a);
            }
            // As in `take_slice`: derived from the arena pointer.
            ptr::addr_of_mut!((*a).pools[i])
        }
    }

    /// The spare arena, taken, or else a new one; null if none can be
    /// mapped. Lock held.
    ///
    /// # Safety
    /// The arena lock must be held.
    unsafe fn spare_or_new(&self) -> *mut Arena {
        // SAFETY: the arena lock is held (by the caller).
        unsafe {
            let a = self.spare.get();
            if a.is_null() {
                return self.map_arena();
            }
            self.spare.set(ptr::null_mut());
            a
        }
    }

    /// Takes one free slice out of the fullest arena that has one. Lock held.
    /// Returns the pool (state still FREE) or null if memory is exhausted.
    ///
    /// # Safety
    /// The arena lock must be held.
    unsafe fn take_slice(&self) -> *mut Pool {
        // SAFETY: the arena lock is held (by the caller).
        let ne = unsafe { self.nonempty.get() };
        let a = if ne != 0 {
            // SAFETY: lock held; a bucketed arena is live, on the bucket of
            // its free count.
            unsafe {
                let a = self.pick_arena(ne);
                self.bucket_remove(a, (*a).nfree());
                a
            }
        } else {
            // SAFETY: lock held.
            let a = unsafe { self.spare_or_new() };
            if a.is_null() {
                return a.cast();
            }
            a
        };
        // SAFETY: `a` is a live arena off every bucket; the lock is held, so
        // its masks and the counters are ours.
        unsafe {
            let a_ref = &*a;
            let free = a_ref.free_mask.get();
            debug_assert!(free != 0);
            // Prefer a pool whose pages are still resident, and high indices
            // first. Pool metadata sits densely in the header's first two pages,
            // so pool i's metadata has page offset (i % 32) * 128; for pools 48 to
            // 63 that offset is in the upper half of the page, away from the low
            // page offsets where a fresh pool's first (hottest) blocks lie. This
            // avoids 4 KiB aliasing between the stores to a block and the loads
            // of its pool's free-list head (measured: 16-byte pairs 4.1 -> 3.3 ns
            // when the first pool taken moved from index 0 to 63). Pool 0, which
            // is shortened by the header, is taken last.
            let dirty = a_ref.dirty_mask.get() & free;
            let i = if dirty != 0 { 63 - dirty.leading_zeros() } else { 63 - free.leading_zeros() } as usize;
            a_ref.free_mask.set(free & !(1 << i));
            self.in_use_slices.set(self.in_use_slices.get() + 1);
            if dirty != 0 {
                self.dirty_pools.set(self.dirty_pools.get() - 1);
            }
            a_ref.dirty_mask.set(a_ref.dirty_mask.get() & !(1 << i));
            if a_ref.nfree() > 0 {
                self.bucket_insert(a);
            }
            // `a` is a live arena. The pointer is derived from the arena
            // pointer, not from a reference to one pool, so that it may reach
            // the whole header (`Arena::of`).
            ptr::addr_of_mut!((*a).pools[i])
        }
    }

    /// The fullest arena that has a free pool whose pages are still resident
    /// (reusing them costs no page faults and no extra RSS), or else the
    /// fullest arena with a free pool. `ne` is the non-empty bucket mask.
    /// Lock held.
    ///
    /// # Safety
    /// The arena lock must be held.
    unsafe fn pick_arena(&self, ne: u128) -> *mut Arena {
        // SAFETY: the arena lock is held (by the caller); bucket members are
        // live arenas.
        unsafe {
            let fullest = self.buckets[ne.trailing_zeros() as usize].head();
            if self.dirty_pools.get() == 0 {
                return fullest;
            }
            let mut m = ne;
            while m != 0 {
                let n = m.trailing_zeros() as usize;
                m &= m - 1;
                let mut a = self.buckets[n].head();
                while !a.is_null() {
                    let a_ref = &*a;
                    if a_ref.dirty_mask.get() != 0 {
                        return a;
                    }
                    a = a_ref.next.get();
                }
            }
            fullest
        }
    }

    /// Gives a pool (all of its slices) back. Lock held. With `may_shed`,
    /// going over the free-page allowance sheds free pages in every arena
    /// (which may unmap arenas other than `p`'s); without it, only `p`'s
    /// arena can be released.
    ///
    /// # Safety
    /// The arena lock must be held; `p` must be a pool record that
    /// `take_pool` handed out, given back by its holder.
    unsafe fn give_pool(&self, p: *mut Pool, now: u64, may_shed: bool) {
        let a = Arena::of(p);
        // SAFETY: `p` is pool metadata inside a live arena (with the arena's
        // provenance, as `take_pool` made it); the lock is held, so the
        // arena's masks, its records' arena fields and the counters are ours.
        unsafe {
            let a_ref = &*a;
            let i = a_ref.index_of(p);
            let before = a_ref.nfree();
            if before > 0 {
                self.bucket_remove(a, before);
            }
            let k = a_ref.pools[i].slices.get() as usize;
            a_ref.pools[i].forget_cold();
            report(p, 0);
            for pool in &a_ref.pools[i..i + k] {
                pool.hand.state.store(state::FREE, Relaxed);
                pool.hand.owner.store(0, Relaxed);
                pool.lead.store(0, Relaxed);
                pool.slices.set(1);
                pool.freed_at.set(now);
            }
            let run = run_mask(i, k);
            a_ref.free_mask.set(a_ref.free_mask.get() | run);
            a_ref.dirty_mask.set(a_ref.dirty_mask.get() | run);
            self.dirty_pools.set(self.dirty_pools.get() + k);
            self.in_use_slices.set(self.in_use_slices.get() - k);
            let delay = options::purge_delay_ms();
            if delay == 0 {
                if a_ref.free_mask.get() == usable_mask() {
                    self.release_arena(a);
                } else {
                    self.bucket_insert(a);
                    self.decommit_mask(a_ref, run);
                }
                return;
            }
            // An arena that has become all free stays (in the last bucket, so
            // it is used after every fuller arena) until the delay passes: a
            // program that frees everything and allocates again at once reuses
            // its pages instead of faulting fresh ones in.
            self.bucket_insert(a);
            if delay > 0 && self.purge_due.get() == 0 {
                self.purge_due.set(now + delay as u64);
            }
            // Over the allowance, the resident free pages come down to half of
            // it in one pass (neighbouring pools in one call each), so the next
            // pass, and its system calls, come only after as many pages again
            // are freed. The allowance shrinks as memory in use is freed, so
            // pages freed under it may be over it later: they go too.
            if may_shed && delay > 0 && self.dirty_pools.get() > self.dirty_allowance() {
                self.shed_dirty(self.dirty_allowance() / 2);
            }
        }
    }

    /// Brings the free slices that may be resident down to `keep`: first by
    /// releasing arenas that are all free (one `munmap` for a whole arena),
    /// then by decommitting free pools, neighbours together. Lock held.
    ///
    /// # Safety
    /// The arena lock must be held.
    unsafe fn shed_dirty(&self, keep: usize) {
        // SAFETY: the arena lock is held (by the caller); all-list members
        // are live arenas, and a bucketed one is on the bucket of its free
        // count.
        unsafe {
            for whole_arenas_only in [true, false] {
                let mut a = self.all.head();
                while !a.is_null() && self.dirty_pools.get() > keep {
                    let a_ref = &*a;
                    let next = a_ref.all_next.get();
                    let all_free = a_ref.free_mask.get() == usable_mask() && a != self.spare.get();
                    if a_ref.dirty_mask.get() != 0 {
                        if all_free {
                            // `next` was read first: releasing may unmap `a`.
                            self.bucket_remove(a, a_ref.nfree());
                            self.release_arena(a);
                        } else if !whole_arenas_only {
                            self.decommit_mask(a_ref, a_ref.dirty_mask.get());
                        }
                    }
                    a = next;
                }
            }
        }
    }

    /// Free slices whose pages may stay resident while they wait out the
    /// purge delay: [`DIRTY_ALLOWANCE`] plus a sixteenth of the slices in
    /// use, less the pages of those that went back to the OS (cold pages of
    /// thinned pools).
    fn dirty_allowance(&self) -> usize {
        let in_use = self.in_use_slices.get();
        let resident = in_use.saturating_sub(crate::pool::COLD_BYTES.load(Relaxed) / POOL_SIZE);
        DIRTY_ALLOWANCE / POOL_SIZE + resident / 16
    }

    /// An arena whose pools are all free: keep as spare or unmap. Lock held.
    ///
    /// # Safety
    /// The arena lock must be held; `a` must be a live arena, all free, on
    /// no bucket and not the spare.
    unsafe fn release_arena(&self, a: *mut Arena) {
        // SAFETY: `a` is live (by the caller); the arena lock is held.
        unsafe {
            if self.spare.get().is_null() {
                let a_ref = &*a;
                self.decommit_mask(a_ref, a_ref.dirty_mask.get());
                self.spare.set(a);
            } else {
                self.unmap_arena(a);
            }
        }
    }

    /// Decommits free pools whose delay has passed (all of them if `force`).
    /// Lock held.
    ///
    /// # Safety
    /// The arena lock must be held.
    unsafe fn purge(&self, now: u64, force: bool) {
        let delay = options::purge_delay_ms();
        // SAFETY: the arena lock is held (by the caller); all-list members
        // are live arenas, and a bucketed one is on the bucket of its free
        // count.
        unsafe {
            if !force && (delay < 0 || self.purge_due.get() == 0 || now < self.purge_due.get()) {
                return;
            }
            let delay = delay.max(0) as u64;
            let mut next_due = 0u64;
            let mut a = self.all.head();
            while !a.is_null() {
                let a_ref = &*a;
                let next = a_ref.all_next.get();
                if a_ref.free_mask.get() == usable_mask() && a != self.spare.get() {
                    let last = (0..POOLS_PER_ARENA).map(|i| a_ref.pools[i].freed_at.get()).max().unwrap_or(0);
                    if force || last + delay <= now {
                        // All free for the whole delay: release it (spare or
                        // unmap); `next` was read first.
                        self.bucket_remove(a, a_ref.nfree());
                        self.release_arena(a);
                    } else if next_due == 0 || last + delay < next_due {
                        next_due = last + delay;
                    }
                    a = next;
                    continue;
                }
                let mut dirty = a_ref.dirty_mask.get();
                let mut expired = 0u64;
                while dirty != 0 {
                    let i = dirty.trailing_zeros() as usize;
                    dirty &= dirty - 1;
                    let at = a_ref.pools[i].freed_at.get();
                    if force || at + delay <= now {
                        expired |= 1 << i;
                    } else if next_due == 0 || at + delay < next_due {
                        next_due = at + delay;
                    }
                }
                if expired != 0 {
                    self.decommit_mask(a_ref, expired);
                }
                a = next;
            }
            self.purge_due.set(next_due);
        }
    }

    /// Calls `f` on every arena. Lock held.
    ///
    /// # Safety
    /// The arena lock must be held, for the whole walk.
    pub unsafe fn for_each(&self, mut f: impl FnMut(&Arena, u64, u64)) {
        // SAFETY: the arena lock is held (by the caller); all-list members
        // are live arenas.
        unsafe {
            let mut a = self.all.head();
            while !a.is_null() {
                let a_ref = &*a;
                f(a_ref, a_ref.free_mask.get(), a_ref.dirty_mask.get());
                a = a_ref.all_next.get();
            }
        }
    }

    /// Full scan of the arena invariants. Lock held. Panics on violation.
    ///
    /// * every arena is on the all-list, is aligned and tagged in the
    ///   ownership map;
    /// * an arena is in bucket n iff it has n free pools, 0 < n < 64; full
    ///   arenas and the spare are in no bucket; the non-empty mask matches;
    /// * a pool is FREE iff its bit is in the free mask; dirty pools are free;
    /// * the spare has every pool free and none dirty.
    ///
    /// # Safety
    /// The arena lock must be held.
    pub unsafe fn check_invariants(&self) {
        // SAFETY: the arena lock is held (by the caller): the lists, masks,
        // counters and every record's `slices` are ours to read; bucket,
        // run-list and all-list members are live arenas.
        unsafe {
            let mut in_buckets = 0usize;
            let mut with_runs = 0usize;
            for n in 0..=POOLS_PER_ARENA {
                let mut a = self.buckets[n].head();
                assert_eq!(a.is_null(), self.nonempty.get() & (1 << n) == 0, "bucket mask bit {n}");
                let mut prev = ptr::null_mut();
                while !a.is_null() {
                    let a_ref = &*a;
                    assert_eq!(a_ref.nfree(), n, "arena in the bucket of its free-pool count");
                    assert!(n > 0, "no full arena in a bucket");
                    assert_eq!(a_ref.prev.get(), prev, "bucket back links");
                    let r = longest_run(a_ref.free_mask.get() & !1);
                    assert_eq!(a_ref.run_len.get() as usize, r, "arena filed under its longest free run");
                    if r > 0 {
                        with_runs += 1;
                    }
                    in_buckets += 1;
                    prev = a;
                    a = a_ref.next.get();
                }
            }
            let mut on_run_lists = 0usize;
            for r in 0..POOLS_PER_ARENA {
                let mut a = self.runs[r].head();
                assert_eq!(a.is_null(), self.runs_nonempty.get() & (1 << r) == 0, "run mask bit {r}");
                let mut prev = ptr::null_mut();
                while !a.is_null() {
                    let a_ref = &*a;
                    assert_eq!(a_ref.run_len.get() as usize, r, "arena on the run list of its longest run");
                    assert_eq!(a_ref.run_prev.get(), prev, "run list back links");
                    on_run_lists += 1;
                    prev = a;
                    a = a_ref.run_next.get();
                }
            }
            assert_eq!(on_run_lists, with_runs, "every bucketed arena with a free run is on a run list");
            let mut count = 0usize;
            let mut in_use = 0usize;
            let mut partial = 0usize;
            let mut dirty = 0usize;
            let mut a = self.all.head();
            while !a.is_null() {
                let a_ref = &*a;
                assert_eq!(a as usize % ARENA_SIZE, 0, "arena alignment");
                assert_eq!(ownership::tag_of(a as usize), TAG_ARENA, "arena tagged in the ownership map");
                let free = a_ref.free_mask.get();
                in_use += (usable_mask() & !free).count_ones() as usize;
                assert_eq!(a_ref.dirty_mask.get() & !free, 0, "only free pools are dirty");
                dirty += a_ref.dirty_mask.get().count_ones() as usize;
                let mut i = 0;
                while i < POOLS_PER_ARENA {
                    if usable_mask() & (1 << i) == 0 {
                        i += 1;
                        continue;
                    }
                    let p = &a_ref.pools[i];
                    let st = p.hand.state.load(Relaxed);
                    assert_eq!(st == state::FREE, free & (1 << i) != 0, "pool {i} state {st} vs free mask");
                    assert_ne!(st, state::FOLLOWER, "slice {i}: a follower outside any run");
                    let k = p.slices.get() as usize;
                    assert!(k >= 1 && i + k <= POOLS_PER_ARENA, "slice {i}: run of {k}");
                    assert!(k == 1 || i > 0, "no run includes slice 0");
                    for j in 1..k {
                        let f = &a_ref.pools[i + j];
                        assert_eq!(f.hand.state.load(Relaxed), state::FOLLOWER, "slice {}: follower of {i}", i + j);
                        assert_eq!(f.lead.load(Relaxed) as usize, j, "slice {}: lead", i + j);
                        assert_eq!(free & (1 << (i + j)), 0, "followers are not free");
                    }
                    i += k;
                }
                if a == self.spare.get() {
                    assert_eq!(free, usable_mask(), "spare arena is all free");
                    assert_eq!(a_ref.dirty_mask.get(), 0, "spare arena is decommitted");
                } else if free != 0 {
                    partial += 1;
                }
                count += 1;
                a = a_ref.all_next.get();
            }
            assert_eq!(count, self.count.get(), "arena count");
            assert_eq!(in_use, self.in_use_slices.get(), "slices in use");
            assert_eq!(dirty, self.dirty_pools.get(), "dirty pool count");
            assert_eq!(partial, in_buckets, "every arena with free pools (but the spare) is in a bucket");
        }
    }
}

/// Checks the arena invariants (see [`Arenas::check_invariants`]).
pub fn check_invariants() {
    let _g = ARENAS.lock.guard();
    // SAFETY: the arena lock is held (guard `_g`).
    unsafe { ARENAS.check_invariants() };
}

/// Takes a pool for `class` from the arenas (mapping a new arena if
/// needed): one slice, or a run of slices for a class above 32 KiB. The pool
/// is returned in state FREE for the caller to initialise; null when out of
/// memory.
pub fn acquire_pool(class: usize) -> *mut Pool {
    let _g = ARENAS.lock.guard();
    // SAFETY: the arena lock is held (guard `_g`).
    unsafe {
        let p = ARENAS.take_pool(class);
        ARENAS.purge(os::now_ms(), false);
        p
    }
}

/// Bytes of the blocks in use in pools, each pool counted as its holder
/// last reported it ([`report_in_use`]): the pool part of
/// [`crate::counters`]' `allocated`.
pub static BLOCK_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Brings the count of `p`'s blocks in [`BLOCK_BYTES`] to its blocks in
/// use now. Its holder calls this on its slow paths for a pool that is not
/// current: when the pool is filed full, when frees thin it or reach it
/// while full, when it is released, and after remote frees are collected.
/// Blocks are allocated only from current pools, which count all their
/// blocks ([`report_current`]), so between two such events the count can
/// only be above the blocks in use, by those freed meanwhile.
///
/// # Safety
/// `p` must be the lead record of a pool in use, with its arena's
/// provenance (as [`acquire_pool`] hands it out), and the caller must hold
/// it (its owner, or the heap user of its heap).
#[inline]
pub unsafe fn report_in_use(p: *const Pool) {
    // SAFETY: by the caller, `p` is a live pool record we hold.
    report(p, unsafe { (*p).used() });
}

/// Counts every block of `p` in [`BLOCK_BYTES`], for a pool that becomes
/// its heap's current pool: the blocks it hands out from then on are
/// counted in advance, so the count never falls below the blocks in use.
///
/// # Safety
/// As for [`report_in_use`].
#[inline]
pub unsafe fn report_current(p: *const Pool) {
    // SAFETY: by the caller, `p` is a live pool record we hold.
    report(p, unsafe { (*p).capacity() } as u32);
}

/// Sets the blocks `p` counts in [`BLOCK_BYTES`] to `now`.
fn report(p: *const Pool, now: u32) {
    let a = Arena::of(p);
    // `block_size` is set while the pool is in use and only read here.
    // SAFETY: `p` is a pool record in a live arena, with the arena's
    // provenance (by the callers); `reported` is made of atomics.
    let (slot, bs) = unsafe { (&(*a).reported[(*a).index_of(p)], (*p).block_size()) };
    let was = slot.swap(now, Relaxed);
    if now > was {
        BLOCK_BYTES.fetch_add((now - was) as usize * bs, Relaxed);
    } else if now < was {
        BLOCK_BYTES.fetch_sub((was - now) as usize * bs, Relaxed);
    }
}

/// The arenas' part of [`crate::counters`], read without the lock:
/// `(pool_bytes, decommitted)`, the bytes of the slices that pools in use
/// hold and the bytes of free slices whose pages went back to the OS. Each
/// count is exact when read; read one after the other while arenas change,
/// they may come from moments a lock hand-over apart.
pub fn counters() -> (usize, usize) {
    let usable = usable_mask().count_ones() as usize;
    let in_use = ARENAS.in_use_slices.get();
    let free = (ARENAS.count.get() * usable).saturating_sub(in_use);
    (in_use * POOL_SIZE, free.saturating_sub(ARENAS.dirty_pools.get()) * POOL_SIZE)
}

/// Gives pools back to their arenas.
///
/// # Safety
/// Each pool must be held by the caller (on no list, no block handed out).
pub unsafe fn release_pools(pools: &[*mut Pool]) {
    let now = os::now_ms();
    let _g = ARENAS.lock.guard();
    // SAFETY: the arena lock is held (guard `_g`); each pool is a record
    // `take_pool` handed out, given back by its holder (by the caller).
    unsafe {
        for &p in pools {
            ARENAS.give_pool(p, now, true);
        }
        ARENAS.purge(now, false);
    }
}

/// Decommits every free pool and unmaps the spare arena.
pub fn purge_all() {
    let _g = ARENAS.lock.guard();
    // SAFETY: the arena lock is held (guard `_g`); the spare is a live arena,
    // all free, on no bucket, and no longer the spare once unmapped here.
    unsafe {
        ARENAS.purge(os::now_ms(), true);
        let s = ARENAS.spare.get();
        if !s.is_null() {
            ARENAS.spare.set(ptr::null_mut());
            ARENAS.unmap_arena(s);
        }
    }
}

/// Bytes of one pool's block area (pool 0 is smaller).
///
/// # Safety
/// As for [`pool_end`].
pub unsafe fn pool_area(p: &Pool) -> usize {
    // SAFETY: forwarded from the caller; `start` never changes once the
    // arena is made.
    unsafe { pool_end(p) - p.start.get().addr() }
}

/// The end address of `p`'s slices of its arena. Address arithmetic only:
/// `p` may be a reference that reaches no further than its pool's metadata.
///
/// # Safety
/// The arena lock must be held, or the caller must hold the pool (its owner,
/// see [`Pool`]): the arena sets `slices` under its lock before it hands the
/// pool out, and changes it again only once the pool is given back.
pub unsafe fn pool_end(p: &Pool) -> usize {
    let addr = (p as *const Pool).addr();
    let base = addr & !(ARENA_SIZE - 1);
    // SAFETY: by the caller, no write to `slices` races with this read.
    base + (record_index(addr) + unsafe { p.slices.get() } as usize) * POOL_SIZE
}

/// The slice index of the pool record at `addr` in its arena's header.
/// Address arithmetic only.
#[inline]
fn record_index(addr: usize) -> usize {
    (addr & (ARENA_SIZE - 1)) / core::mem::size_of::<Pool>()
}

/// The pool record for any pointer into an arena: [`pool_of`], or for a
/// pointer into a multi-slice pool's later slice, the record of the pool's
/// first slice. Reads only the arena header, which is mapped.
#[inline]
pub fn owning_pool(p: *mut u8) -> *mut Pool {
    leader_of(pool_of(p))
}

/// `pool` itself, or for a FOLLOWER slice's record, the record of the first
/// slice of its pool. `pool` must be a record in a live arena's header.
#[inline]
pub fn leader_of(pool: *mut Pool) -> *mut Pool {
    // SAFETY: by the caller, `pool` is a record in a mapped arena header.
    let pr = unsafe { &*pool };
    if pr.hand.state.load(Relaxed) == state::FOLLOWER {
        let lead = pr.lead.load(Relaxed) as usize;
        // A follower's lead reaches back to a record of the same header;
        // clamping keeps even a racing invalid free's read inside it.
        return pool.wrapping_sub(lead.min(record_index(pool.addr())));
    }
    pool
}

/// Fork child only (single-threaded, locks reset): calls `release` on every
/// pool that is not FREE and gives back to its arena each pool for which it
/// returns true.
///
/// # Safety
/// Only in a fork child, from its `atfork` handler, when no lock was held
/// by the forking thread: the calling thread is the process's only thread,
/// so it is the user of every arena structure, as the arena lock's holder
/// would be.
pub unsafe fn reclaim_in_child(mut release: impl FnMut(&Pool) -> bool) {
    let now = os::now_ms();
    // SAFETY: by the caller, the only thread: the arena lock's protocol
    // holds as if we held it.
    let mut a = unsafe { ARENAS.all.head() };
    while !a.is_null() {
        // SAFETY: all-list members are live; the child is single-threaded.
        let a_ref = unsafe { &*a };
        // SAFETY: as above.
        let next = unsafe { a_ref.all_next.get() };
        let mut give = 0u64;
        // SAFETY: as above.
        let in_use = usable_mask() & !unsafe { a_ref.free_mask.get() };
        let mut m = in_use;
        while m != 0 {
            let i = m.trailing_zeros() as usize;
            m &= m - 1;
            if release(&a_ref.pools[i]) {
                give |= 1 << i;
            }
        }
        // Giving back the last pools may unmap this arena; `next` was read.
        while give != 0 {
            let i = give.trailing_zeros() as usize;
            give &= give - 1;
            // No shedding here: it could unmap `next`.
            // SAFETY: the only thread (see above); a pool that is not FREE was
            // handed out by `take_pool`, and `release` gave it up.
            unsafe { ARENAS.give_pool(&a_ref.pools[i] as *const Pool as *mut Pool, now, false) };
        }
        a = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_of_masks_to_the_header() {
        let base = 0x7000_0000_0000usize & ((1 << ownership::ADDRESS_BITS) - 1);
        let at = ptr::without_provenance_mut::<u8>;
        assert_eq!(pool_of(at(base + 5)).addr(), base);
        assert_eq!(pool_of(at(base + POOL_SIZE + 17)).addr(), base + 128);
        assert_eq!(pool_of(at(base + ARENA_SIZE - 1)).addr(), base + 63 * 128);
        assert!(header_bytes() >= core::mem::size_of::<Arena>());
    }
}

