//! Layer 0: the sampling heap profiler's engine: when to sample, the
//! stacks of sampled blocks, their records, and the raw profile file.
//!
//! * **Sampling by bytes.** Each thread counts down the bytes it allocates;
//!   the block that takes the count to zero is sampled, and the next count
//!   is drawn from an exponential distribution whose mean is the sampling
//!   interval (`POOLMALLOC_PROF_SAMPLE`, 512 KiB by default), as jemalloc
//!   and tcmalloc do. A block of `s` bytes is then sampled with probability
//!   `1 - exp(-s / interval)`, and each sample is counted with the inverse
//!   of that weight, so the estimates of bytes and objects per stack are
//!   unbiased. The count-down runs on the thread layer's profiling path,
//!   never on the fast path (see [`crate::thread`]).
//! * **Stacks** are captured inside `malloc` without allocating and
//!   without any lock: frame-pointer walking, started by a scan of the
//!   allocator's own frames. Every word read outside the calling thread's
//!   current frames is read only once its page is known to be readable
//!   (`process_vm_readv` on the process itself, which fails with `EFAULT`
//!   instead of faulting), so a stack that cannot be walked is cut short,
//!   never a crash. See [`capture`].
//! * **Records.** Sampled blocks are kept in a table sharded by address,
//!   each shard behind its own lock, and found again when they are freed;
//!   per-stack totals (allocated and live, objects and bytes) in a stack
//!   table behind one lock. Both tables are mapped once, when profiling
//!   first starts, and never grow: a sample that does not fit is counted as
//!   dropped. The locks are the profiler's own: `malloc` holds none of them
//!   when it enters the profiler, and the profiler calls nothing that
//!   allocates while it holds one.
//! * **Output** is a small text file (see [`write_profile`]) that the
//!   `poolmalloc prof` command symbolises into pprof, flame graphs and
//!   tables: symbolisation never runs inside `malloc`.

use crate::lock::RawLock;
use crate::os;
use crate::report::Line;
use crate::sync::atomic::{AtomicBool, AtomicIsize, AtomicPtr, AtomicU16, AtomicUsize, Ordering::*};
use crate::sync::Local;
use core::ptr;

/// Frames kept per stack.
pub const MAX_DEPTH: usize = 64;
/// Default mean sampling interval, bytes.
pub const DEFAULT_INTERVAL: usize = 512 * 1024;

/// Block-table shards (a power of two), each with its own lock.
const SHARDS: usize = 64;
/// Slots a shard starts with (a power of two). A shard doubles when it is
/// half full, so the table's memory follows the live samples, not every
/// sample ever taken.
const SHARD_START: usize = 64;
/// The most slots a shard grows to: 4M sampled blocks in all (half of them
/// live at most), which at the default interval stand for about 1 TiB of
/// live memory.
const SHARD_MAX: usize = 1 << 16;
/// Distinct stacks kept.
const STACKS: usize = 1 << 16;
/// Slots of the stack index (twice `STACKS`, a power of two).
const STACK_INDEX: usize = 2 * STACKS;
/// How far above the stack pointer the scan for the first frame looks.
const SCAN_BYTES: usize = 2 * 1024;
/// The largest frame a walk accepts.
const MAX_FRAME: usize = 1 << 20;

/// One sampled, live block.
#[derive(Clone, Copy)]
#[repr(C)]
struct BlockRec {
    /// The block's address; 0 for an empty slot.
    addr: usize,
    /// Its size in bytes (usable size).
    size: usize,
    /// Its stack's index in the stack table.
    stack: usize,
}

/// One distinct stack and its totals (estimates, already scaled by the
/// inverse sampling probability).
#[repr(C)]
struct StackRec {
    hash: u64,
    depth: usize,
    frames: [usize; MAX_DEPTH],
    alloc_objects: f64,
    alloc_bytes: f64,
    live_objects: f64,
    live_bytes: f64,
}

/// Whether new allocations are sampled.
static SAMPLING: AtomicBool = AtomicBool::new(false);
/// Whether the tables exist (they stay once made).
static READY: AtomicBool = AtomicBool::new(false);
/// Mean sampling interval, bytes.
static INTERVAL: AtomicUsize = AtomicUsize::new(DEFAULT_INTERVAL);
/// Live sampled blocks (any thread may read it to skip a lookup).
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// Samples that did not fit in a table.
static DROPPED: AtomicUsize = AtomicUsize::new(0);
/// Count-down shared by huge blocks, which have no thread count-down.
static HUGE_LEFT: AtomicIsize = AtomicIsize::new(DEFAULT_INTERVAL as isize);
/// Set when `process_vm_readv` cannot read this process's memory (a
/// sandbox forbids it): stacks are then empty.
static NO_SAFE_READ: AtomicBool = AtomicBool::new(false);

/// Serialises set-up, and guards the stack table.
static STACK_LOCK: RawLock = RawLock::new();
/// One lock per block-table shard.
static SHARD_LOCKS: [RawLock; SHARDS] = [const { RawLock::new() }; SHARDS];
/// The tables, mapped at set-up.
/// One shard of the block table: its slots, how many, how many used. Its
/// lock in [`SHARD_LOCKS`].
#[derive(Clone, Copy)]
struct Shard {
    slots: *mut BlockRec,
    cap: usize,
    len: usize,
}
static BLOCKS: [Local<Shard>; SHARDS] = [const { Local::new(Shard { slots: ptr::null_mut(), cap: 0, len: 0 }) }; SHARDS];
/// A counting filter over the sampled blocks' addresses: how many live
/// sampled blocks hash to each counter. A free whose counter is zero is not
/// a sampled block, and is answered without a lock. Set with the tables
/// (READY orders it); its counters are atomic.
static FILTER: AtomicPtr<AtomicU16> = AtomicPtr::new(ptr::null_mut());
/// Counters in the filter (a power of two).
const FILTER_SLOTS: usize = 1 << 14;
static STACK_TABLE: Local<*mut StackRec> = Local::new(ptr::null_mut());
static STACK_INDEX_TABLE: Local<*mut u32> = Local::new(ptr::null_mut());
/// Stacks in use. Stack lock.
static STACK_COUNT: Local<usize> = Local::new(0);
/// The file-name prefix for the at-exit profile, NUL-padded.
static PREFIX: Local<[u8; 256]> = Local::new([0; 256]);

/// Whether allocations are being sampled now (one relaxed load).
#[inline]
pub fn sampling() -> bool {
    SAMPLING.load(Relaxed)
}

/// Whether any sampled block is live, so that a free may need a lookup.
#[inline]
pub fn has_live() -> bool {
    LIVE.load(Relaxed) != 0
}

/// Sampled blocks now live.
pub fn live() -> usize {
    LIVE.load(Relaxed)
}

/// The mean sampling interval in bytes.
pub fn interval() -> usize {
    INTERVAL.load(Relaxed)
}

/// Samples that were dropped because a table was full.
pub fn dropped() -> usize {
    DROPPED.load(Relaxed)
}

/// Sets the interval and the at-exit file prefix from the options. Called
/// once, by the process's set-up, before any thread samples.
pub(crate) fn configure(interval: usize, prefix: &[u8]) {
    INTERVAL.store(interval.max(1), Relaxed);
    HUGE_LEFT.store(interval.max(1) as isize, Relaxed);
    let mut buf = [0u8; 256];
    let n = prefix.len().min(buf.len() - 1);
    buf[..n].copy_from_slice(&prefix[..n]);
    // SAFETY: the process's set-up runs once, before any thread can read
    // the prefix (only the at-exit writer does, after set-up).
    unsafe { PREFIX.set(buf) };
}

/// Starts sampling: maps the tables the first time. False if they could
/// not be mapped (sampling then stays off).
pub fn start() -> bool {
    if !READY.load(Acquire) {
        let _g = STACK_LOCK.guard();
        if !READY.load(Relaxed) {
            let sizes = [
                SHARDS * SHARD_START * core::mem::size_of::<BlockRec>(),
                FILTER_SLOTS * core::mem::size_of::<AtomicU16>(),
                STACKS * core::mem::size_of::<StackRec>(),
                STACK_INDEX * core::mem::size_of::<u32>(),
            ];
            let maps = sizes.map(os::map);
            if maps.iter().any(|m| m.is_null()) {
                // The mappings that were made go back; the next start tries
                // again. A refused unmap leaves one mapped and unused.
                for (&m, &size) in maps.iter().zip(&sizes) {
                    if !m.is_null() {
                        // SAFETY: a mapping just made here, of this size,
                        // that nothing else has seen.
                        let _unmapped = unsafe { os::unmap(m, size) };
                    }
                }
                return false;
            }
            let [blocks, filter, stacks, index] = maps;
            // The filter and the block table are read before they are
            // written, at random places: written once now, their pages are
            // never the shared zero page, whose replacement on a later write
            // flushes every CPU's TLB (measured: 7 to 14 % of a profiled
            // two-thread run went to those flushes). The stack index is
            // written before it is read (see `touch_u32`).
            // SAFETY: fresh writable mappings of these lengths.
            unsafe {
                ptr::write_bytes(filter, 0, FILTER_SLOTS * core::mem::size_of::<AtomicU16>());
                ptr::write_bytes(blocks, 0, SHARDS * SHARD_START * core::mem::size_of::<BlockRec>());
            }
            // SAFETY: the stack lock is held (guard `_g`) and READY is not
            // yet set, so no other thread reads the table pointers.
            unsafe {
                for (i, b) in BLOCKS.iter().enumerate() {
                    let slots = blocks.cast::<BlockRec>().add(i * SHARD_START);
                    b.set(Shard { slots, cap: SHARD_START, len: 0 });
                }
                FILTER.store(filter.cast(), Relaxed);
                STACK_TABLE.set(stacks.cast());
                STACK_INDEX_TABLE.set(index.cast());
            }
            probe_safe_read();
            READY.store(true, Release);
        }
    }
    SAMPLING.store(true, Relaxed);
    true
}

/// Stops sampling. Blocks already sampled keep their records, so their
/// frees are still counted.
pub fn stop() {
    SAMPLING.store(false, Relaxed);
}

/// Draws the next count-down: exponential with the interval as mean.
pub fn next_interval(rng: &mut u64) -> isize {
    if *rng == 0 {
        *rng = os::random_u64() | 1;
    }
    // xorshift64*
    let mut x = *rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *rng = x;
    let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
    // A uniform number in (0, 1].
    let u = ((r >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let mean = interval() as f64;
    let v = -u.ln() * mean;
    v.clamp(1.0, mean * 64.0) as isize
}

/// The weight of a sample of `size` bytes: the inverse of the probability
/// that a block of that size is sampled.
fn weight(size: usize) -> f64 {
    let p = -(-(size as f64) / interval() as f64).exp_m1();
    if p > 0.0 {
        1.0 / p
    } else {
        1.0
    }
}

/// Counts a huge block of `size` bytes against the shared count-down and
/// samples it if the count runs out.
pub fn huge_allocated(p: *mut u8, size: usize, at: (usize, usize)) {
    let left = HUGE_LEFT.fetch_sub(size as isize, Relaxed) - size as isize;
    if left > 0 {
        return;
    }
    let mut rng = os::random_u64() | 1;
    HUGE_LEFT.store(next_interval(&mut rng), Relaxed);
    record(p, size, at);
}

// ---------------------------------------------------------------------------
// Records.

/// The filter counter of `addr`. Only once the tables exist (READY).
#[inline]
fn filter_slot(addr: usize) -> &'static AtomicU16 {
    let i = (hash_addr(addr) >> 40) as usize & (FILTER_SLOTS - 1);
    // SAFETY: the filter is mapped before READY is set, never unmapped,
    // and `i` is below its length; its counters are atomics.
    unsafe { &*FILTER.load(Relaxed).add(i) }
}

#[inline]
fn hash_addr(addr: usize) -> u64 {
    ((addr >> 4) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Records a sampled block: captures the stack above `at` (see [`here`]),
/// adds the sample to the stack's totals and files the block. False if it
/// was dropped (tables full, or profiling never started).
pub fn record(p: *mut u8, size: usize, at: (usize, usize)) -> bool {
    if !READY.load(Acquire) {
        return false;
    }
    let errno = os::Errno::save();
    let mut frames = [0usize; MAX_DEPTH];
    let depth = capture(&mut frames, at);
    errno.restore();
    let w = weight(size);
    let stack = {
        let _g = STACK_LOCK.guard();
        // SAFETY: the stack lock is held (guard `_g`); the tables exist
        // (READY).
        let s = unsafe { find_or_add_stack(&frames[..depth]) };
        if let Some(s) = s {
            // SAFETY: as above; `s` is a filled slot.
            unsafe {
                let r = &mut *STACK_TABLE.get().add(s);
                r.alloc_objects += w;
                r.alloc_bytes += w * size as f64;
                r.live_objects += w;
                r.live_bytes += w * size as f64;
            }
        }
        s
    };
    let Some(stack) = stack else {
        DROPPED.fetch_add(1, Relaxed);
        return false;
    };
    let h = hash_addr(p as usize);
    let shard = (h >> 58) as usize & (SHARDS - 1);
    // The shard lock is never held while the stack lock is taken (the fork
    // handlers take the stack lock first): what must come off a stack's
    // totals is taken off after the shard is released.
    let filed = {
        let _g = SHARD_LOCKS[shard].guard();
        // SAFETY: the shard's lock is held (guard `_g`); the table exists.
        unsafe { insert_block(&BLOCKS[shard], BlockRec { addr: p as usize, size, stack }, h) }
    };
    match filed {
        Some(old) if old.addr == 0 => {
            LIVE.fetch_add(1, Relaxed);
            filter_slot(p as usize).fetch_add(1, Relaxed);
            true
        }
        Some(old) => {
            // SAFETY: the old record's stack slot is filled.
            unsafe { unlive(old.stack, old.size) };
            true
        }
        None => {
            // The shard is crowded: the sample is dropped, and its live
            // part undone.
            // SAFETY: `stack` is a filled slot.
            unsafe { unlive(stack, size) };
            DROPPED.fetch_add(1, Relaxed);
            false
        }
    }
}

/// `p`, written to before it is read: its page is then never the shared
/// zero page, whose replacement on a later write flushes every CPU's TLB.
///
/// # Safety
/// `p` must be a word of the stack index; the caller holds the stack lock.
#[inline]
unsafe fn touch_u32<'a>(p: *mut u32) -> &'a mut u32 {
    // A locked `or` of zero writes without changing the word. In asm: the
    // compiler turns an atomic `fetch_or(0)` into a plain load.
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: by the caller, the word is ours and writable.
    unsafe {
        core::arch::asm!("lock or dword ptr [{p}], 0", p = in(reg) p, options(nostack));
    }
    // SAFETY: by the caller, the word is ours.
    unsafe { &mut *p }
}

/// Takes a sampled block's live totals off its stack.
///
/// # Safety
/// `stack` must be a filled slot of the stack table.
unsafe fn unlive(stack: usize, size: usize) {
    let w = weight(size);
    let _g = STACK_LOCK.guard();
    // SAFETY: the stack lock is held (guard `_g`); by the caller the slot
    // is filled.
    unsafe {
        let r = &mut *STACK_TABLE.get().add(stack);
        r.live_objects = (r.live_objects - w).max(0.0);
        r.live_bytes = (r.live_bytes - w * size as f64).max(0.0);
    }
}

/// Forgets `p` if it is a sampled block (its free): takes its bytes off
/// its stack's live totals. Says whether it was one.
pub fn forget(p: *mut u8) -> bool {
    if !READY.load(Acquire) {
        return false;
    }
    // The block's own sampling (if it was sampled) happened before the
    // program could free it, so its count is seen here.
    if filter_slot(p as usize).load(Relaxed) == 0 {
        return false;
    }
    let h = hash_addr(p as usize);
    let shard = (h >> 58) as usize & (SHARDS - 1);
    let found = {
        let _g = SHARD_LOCKS[shard].guard();
        // SAFETY: the shard's lock is held (guard `_g`); the table exists.
        unsafe { remove_block(&BLOCKS[shard], h, p as usize) }
    };
    match found {
        Some(rec) => {
            LIVE.fetch_sub(1, Relaxed);
            filter_slot(p as usize).fetch_sub(1, Relaxed);
            // SAFETY: a record's stack slot is filled.
            unsafe { unlive(rec.stack, rec.size) };
            true
        }
        None => false,
    }
}

/// Files `rec` in a shard (linear probing; `h` is its address's hash),
/// growing the shard when it is half full. Returns what the slot held: an
/// empty record, or a record of the same address (a block the program freed
/// without poolmalloc seeing it, which cannot happen through poolmalloc's
/// entry points), which is replaced. None when the shard is full and cannot
/// grow: the sample is dropped.
///
/// # Safety
/// The caller holds the shard's lock, and the tables exist.
unsafe fn insert_block(shard: &Local<Shard>, rec: BlockRec, h: u64) -> Option<BlockRec> {
    // SAFETY: by the caller, the shard is ours.
    let mut sh = unsafe { shard.get() };
    if (sh.len + 1) * 2 > sh.cap {
        // SAFETY: as above.
        if let Some(grown) = unsafe { grow(sh) } {
            sh = grown;
            // SAFETY: as above.
            unsafe { shard.set(sh) };
        } else if sh.len + 1 >= sh.cap {
            return None;
        }
    }
    let mask = sh.cap - 1;
    let mut i = (h >> 20) as usize & mask;
    // SAFETY: indices are masked into the shard, whose slots the caller's
    // lock makes ours; the probe ends at an empty slot, since the shard is
    // never full.
    unsafe {
        loop {
            let slot = &mut *sh.slots.add(i);
            if slot.addr == 0 || slot.addr == rec.addr {
                let old = *slot;
                *slot = rec;
                if old.addr == 0 {
                    sh.len += 1;
                    shard.set(sh);
                }
                return Some(old);
            }
            i = (i + 1) & mask;
        }
    }
}

/// A shard twice the size of `sh`, its records rehashed into it, the old
/// slots unmapped. None at the size limit or when memory is exhausted.
///
/// # Safety
/// The caller holds the shard's lock.
unsafe fn grow(sh: Shard) -> Option<Shard> {
    let cap = sh.cap * 2;
    if cap > SHARD_MAX {
        return None;
    }
    let bytes = cap * core::mem::size_of::<BlockRec>();
    let slots = os::map(bytes).cast::<BlockRec>();
    if slots.is_null() {
        return None;
    }
    // SAFETY: a fresh zeroed mapping of `cap` slots; the old slots are ours
    // by the caller's lock. Written whole first, so no page of the new slots
    // is ever the shared zero page (see `start`).
    unsafe {
        ptr::write_bytes(slots, 0, cap);
        for k in 0..sh.cap {
            let r = *sh.slots.add(k);
            if r.addr != 0 {
                let mut i = (hash_addr(r.addr) >> 20) as usize & (cap - 1);
                while (*slots.add(i)).addr != 0 {
                    i = (i + 1) & (cap - 1);
                }
                *slots.add(i) = r;
            }
        }
        if sh.cap > SHARD_START {
            // The first slots of every shard share one mapping, made at
            // start, and stay; a grown shard's own mapping goes. A refused
            // unmap leaves the memory mapped and unused.
            let _unmapped = os::unmap(sh.slots.cast(), sh.cap * core::mem::size_of::<BlockRec>());
        }
    }
    Some(Shard { slots, cap, len: sh.len })
}

/// Removes `addr` (whose hash is `h`) from a shard (linear probing with
/// backward-shift deletion, so no tombstones build up).
///
/// # Safety
/// The caller holds the shard's lock, and the tables exist.
unsafe fn remove_block(shard: &Local<Shard>, h: u64, addr: usize) -> Option<BlockRec> {
    // SAFETY: by the caller, the shard is ours.
    let mut sh = unsafe { shard.get() };
    let base = sh.slots;
    let mask = sh.cap - 1;
    let mut i = (h >> 20) as usize & mask;
    // SAFETY: every index is masked into the shard, whose lock the caller
    // holds.
    unsafe {
        loop {
            let slot = *base.add(i);
            if slot.addr == 0 {
                return None;
            }
            if slot.addr == addr {
                break;
            }
            i = (i + 1) & mask;
        }
        let found = *base.add(i);
        // Shift later entries of the run back into the hole.
        let mut hole = i;
        let mut j = (i + 1) & mask;
        loop {
            let e = *base.add(j);
            if e.addr == 0 {
                break;
            }
            let home = (hash_addr(e.addr) >> 20) as usize & mask;
            // Move `e` if its home is not in (hole, j] cyclically.
            let between = if hole <= j { home > hole && home <= j } else { home > hole || home <= j };
            if !between {
                *base.add(hole) = e;
                hole = j;
            }
            j = (j + 1) & mask;
        }
        (*base.add(hole)).addr = 0;
        sh.len -= 1;
        shard.set(sh);
        Some(found)
    }
}

/// The index of `frames`' stack, added if new. None when the table is full.
///
/// # Safety
/// The caller holds the stack lock, and the tables exist.
unsafe fn find_or_add_stack(frames: &[usize]) -> Option<usize> {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for &f in frames {
        h = (h ^ f as u64).wrapping_mul(0x0000_0100_0000_01B3);
    }
    h ^= frames.len() as u64;
    let mut i = (h as usize) & (STACK_INDEX - 1);
    // SAFETY: by the caller, the lock is held and the tables
    // exist; indices are masked or below STACKS.
    unsafe {
        let index = STACK_INDEX_TABLE.get();
        let table = STACK_TABLE.get();
        loop {
            let e = *touch_u32(index.add(i));
            if e == 0 {
                break;
            }
            let s = (e - 1) as usize;
            let r = &*table.add(s);
            if r.hash == h && r.depth == frames.len() && r.frames[..r.depth] == *frames {
                return Some(s);
            }
            i = (i + 1) & (STACK_INDEX - 1);
        }
        let s = STACK_COUNT.get();
        if s >= STACKS {
            return None;
        }
        STACK_COUNT.set(s + 1);
        let r = &mut *table.add(s);
        r.hash = h;
        r.depth = frames.len();
        r.frames[..frames.len()].copy_from_slice(frames);
        *index.add(i) = s as u32 + 1;
        Some(s)
    }
}

// ---------------------------------------------------------------------------
// Stack capture.

/// Pages known readable during one capture.
struct Pages {
    pid: libc::pid_t,
    known: [usize; 16],
    next: usize,
}

impl Pages {
    fn new() -> Pages {
        // SAFETY: getpid has no preconditions.
        Pages { pid: unsafe { libc::getpid() }, known: [usize::MAX; 16], next: 0 }
    }

    /// Whether the page holding `addr` can be read, asked of the kernel
    /// once per page.
    fn readable(&mut self, addr: usize) -> bool {
        let page = addr & !4095;
        if page == 0 || NO_SAFE_READ.load(Relaxed) {
            return false;
        }
        if self.known.contains(&page) {
            return true;
        }
        if !readable_by_kernel(self.pid, page) {
            return false;
        }
        self.known[self.next % self.known.len()] = page;
        self.next += 1;
        true
    }

    /// The word at `addr` (8-aligned), if its page is readable.
    fn word(&mut self, addr: usize) -> Option<usize> {
        if addr & 7 != 0 || !self.readable(addr) {
            return None;
        }
        // SAFETY: the page is mapped readable (asked above); a word at an
        // aligned address does not cross a page.
        Some(unsafe { ptr::read_volatile(addr as *const usize) })
    }

    /// Whether `r` looks like a return address: the bytes before it end in
    /// a call instruction (direct `call rel32`, or `call` through a
    /// register or memory operand).
    fn is_return_address(&mut self, r: usize) -> bool {
        if !(0x10000..0x8000_0000_0000).contains(&r) {
            return false;
        }
        // Most words on a stack are data: only an address in a mapping
        // that was executable when the table was last read is looked at
        // (and still asked of the kernel before its bytes are read).
        let lo = r - 7;
        // SAFETY: the capture holds the code-range lock.
        if !unsafe { in_code(lo, r) } || !self.readable(lo) || !self.readable(r - 1) {
            return false;
        }
        let mut b = [0u8; 7];
        for (k, byte) in b.iter_mut().enumerate() {
            // SAFETY: both pages of the 7 bytes are readable (asked above).
            *byte = unsafe { ptr::read_volatile((lo + k) as *const u8) };
        }
        // b[6] is the byte just before `r`.
        let direct = b[2] == 0xE8; // call rel32
        let reg = b[5] == 0xFF && b[6] & 0xF8 == 0xD0; // call reg
        let mem_disp8 = b[4] == 0xFF && (b[5] & 0xF8 == 0x50 || b[5] == 0x14); // call [reg+d8] / [sib]
        let mem_sib_disp8 = b[3] == 0xFF && b[4] == 0x54; // call [sib+d8]
        let mem_rip = b[1] == 0xFF && (b[2] == 0x15 || b[2] & 0xF8 == 0x90); // call [rip+d32] / [reg+d32]
        let mem_sib_disp32 = b[0] == 0xFF && b[1] == 0x94; // call [sib+d32]
        let mem_reg = b[5] == 0xFF && b[6] & 0xF8 == 0x10 && b[6] != 0x14 && b[6] != 0x15; // call [reg]
        direct || reg || mem_disp8 || mem_sib_disp8 || mem_rip || mem_sib_disp32 || mem_reg
    }

    /// Whether a frame record (saved frame pointer, return address) sits at
    /// `f`, above the stack pointer `sp`.
    fn record_at(&mut self, f: usize, sp: usize) -> Option<(usize, usize)> {
        if f < sp || f - sp > 64 * MAX_FRAME {
            return None;
        }
        let next = self.word(f)?;
        let ret = self.word(f + 8)?;
        self.is_return_address(ret).then_some((next, ret))
    }
}

/// Executable mappings, as `/proc/self/maps` listed them when last read:
/// sorted `(start, end)` pairs. Code-range lock.
const CODE_RANGES: usize = 1024;
static CODE: Local<[(usize, usize); CODE_RANGES]> = Local::new([(0, 0); CODE_RANGES]);
static CODE_COUNT: Local<usize> = Local::new(0);
/// When the table was last read (ms, monotonic). Code-range lock.
static CODE_READ_AT: Local<u64> = Local::new(0);
/// Guards the code-range table; held for a whole capture.
static CODE_LOCK: RawLock = RawLock::new();
/// How often the code-range table is read again, so that libraries loaded
/// later are seen (ms).
const CODE_REFRESH_MS: u64 = 1000;

/// Whether `[lo, hi)` lies in one executable mapping of the table.
///
/// # Safety
/// The caller holds [`CODE_LOCK`].
unsafe fn in_code(lo: usize, hi: usize) -> bool {
    // SAFETY: by the caller, the table is ours to read.
    let (table, n) = unsafe { (&*CODE.as_ptr(), CODE_COUNT.get()) };
    let ranges = &table[..n];
    // The last range starting at or below `lo`.
    let i = ranges.partition_point(|r| r.0 <= lo);
    i > 0 && hi <= ranges[i - 1].1
}

/// Reads the executable mappings from `/proc/self/maps` into the table,
/// without allocating.
///
/// # Safety
/// The caller holds [`CODE_LOCK`].
unsafe fn read_code_ranges() {
    // SAFETY: by the caller, the table is ours to write.
    let table = unsafe { &mut *CODE.as_ptr() };
    let mut n = 0;
    // SAFETY: a NUL-terminated path; open does not allocate.
    let fd = unsafe { libc::open(c"/proc/self/maps".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd >= 0 {
        let mut buf = [0u8; 4096];
        // The start of the current line (a map line's first 64 bytes hold
        // its range and permissions).
        let mut line = [0u8; 64];
        let mut len = 0;
        loop {
            // SAFETY: `buf` is writable for its length.
            let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if r <= 0 {
                break;
            }
            for &b in &buf[..r as usize] {
                if b == b'\n' {
                    if let Some(range) = parse_code_line(&line[..len]) {
                        if n < CODE_RANGES {
                            table[n] = range;
                            n += 1;
                        }
                    }
                    len = 0;
                } else if len < line.len() {
                    line[len] = b;
                    len += 1;
                }
            }
        }
        // SAFETY: a descriptor we opened.
        unsafe { libc::close(fd) };
    }
    table[..n].sort_unstable_by_key(|r| r.0);
    // SAFETY: by the caller.
    unsafe {
        CODE_COUNT.set(n);
        CODE_READ_AT.set(os::now_ms());
    }
}

/// The range of a `/proc/self/maps` line if its mapping is executable.
fn parse_code_line(l: &[u8]) -> Option<(usize, usize)> {
    let hex = |s: &[u8]| -> Option<usize> {
        if s.is_empty() || s.len() > 16 {
            return None;
        }
        s.iter().try_fold(0usize, |a, &c| Some(a << 4 | (c as char).to_digit(16)? as usize))
    };
    let dash = l.iter().position(|&c| c == b'-')?;
    let space = l.iter().position(|&c| c == b' ')?;
    let perms = l.get(space + 1..space + 5)?;
    (perms[2] == b'x').then_some(())?;
    Some((hex(&l[..dash])?, hex(&l[dash + 1..space])?))
}

/// Asks the kernel whether `page` can be read, without touching it.
#[cfg(not(miri))]
fn readable_by_kernel(pid: libc::pid_t, page: usize) -> bool {
    let mut byte = 0u8;
    let local = libc::iovec { iov_base: ptr::addr_of_mut!(byte).cast(), iov_len: 1 };
    let remote = libc::iovec { iov_base: page as *mut libc::c_void, iov_len: 1 };
    // SAFETY: the local buffer is one writable byte; the kernel checks the
    // remote range and fails with EFAULT rather than faulting.
    unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) == 1 }
}

#[cfg(miri)]
fn readable_by_kernel(_pid: libc::pid_t, _page: usize) -> bool {
    false
}

/// Checks once that `process_vm_readv` works on this process; if a
/// sandbox forbids it, stacks stay empty and a line says so.
fn probe_safe_read() {
    let here = 0usize;
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let e = os::Errno::save();
    let ok = readable_by_kernel(pid, ptr::addr_of!(here) as usize & !4095);
    e.restore();
    if !ok {
        NO_SAFE_READ.store(true, Relaxed);
        os::write_stderr(b"poolmalloc: profiling: process_vm_readv is not allowed here; stacks will be empty\n");
    }
}

/// The stack and frame pointers where the profiler is entered: the
/// allocator's entry to the profiler reads them first thing (in a function
/// with no frame of its own) and passes them down, so the walk never looks
/// at the profiler's own frames, whose uninitialised slots may hold stale
/// return addresses of earlier calls.
#[inline(always)]
pub fn here() -> (usize, usize) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        let (sp, fp): (usize, usize);
        // SAFETY: reads two registers.
        unsafe {
            core::arch::asm!("mov {sp}, rsp", "mov {fp}, rbp", sp = out(reg) sp, fp = out(reg) fp,
                options(nomem, nostack, preserves_flags));
        }
        (sp, fp)
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    {
        (0, 0)
    }
}

/// Captures the calling thread's stack above `at` (the stack and frame
/// pointers [`here`] read) into `out`, innermost first, as return
/// addresses; returns how many.
///
/// The walk follows frame pointers, so the program's frames need them
/// (`-fno-omit-frame-pointer`, `-C force-frame-pointers=yes`). The
/// allocator's own frames may not keep the frame pointer in `rbp`, and a
/// frame-pointer walk never sees the return address of the function it
/// starts in, so the walk starts with a scan: from the stack pointer up to
/// the first frame record, every word that looks like a return address (it
/// follows a call instruction) is taken as a frame; these are the
/// allocator's frames and the return into the function that called
/// `malloc`. The first frame record is the frame pointer itself when it
/// points at one, else the first record found by the scan, whose saved
/// frame pointer (a copy an allocator function pushed) starts the chain.
/// Without frame pointers in the program, the walk stops at the first
/// frame that has none, or follows a word that only looks like one: stacks
/// are then cut short or partly wrong, but every read is checked first.
#[inline(never)]
pub fn capture(out: &mut [usize; MAX_DEPTH], at: (usize, usize)) -> usize {
    let (sp, fp) = at;
    if sp == 0 {
        return 0;
    }
    let _code = CODE_LOCK.guard();
    // SAFETY: the code-range lock is held (guard `_code`).
    unsafe {
        if CODE_COUNT.get() == 0 || os::now_ms().wrapping_sub(CODE_READ_AT.get()) > CODE_REFRESH_MS {
            read_code_ranges();
        }
    }
    let mut pages = Pages::new();
    let chain = if pages.record_at(fp, sp).is_some() {
        Some(fp)
    } else {
        let mut found = None;
        let mut a = sp;
        while a < sp + SCAN_BYTES {
            // A record whose saved frame pointer leads to another record
            // starts the chain there (the first may be a copy an allocator
            // function pushed when it took `rbp` for other uses).
            if let Some((next, _)) = pages.record_at(a, sp) {
                if next > a && next - a <= MAX_FRAME && pages.record_at(next, sp).is_some() {
                    found = Some(next);
                    break;
                }
            }
            a += 8;
        }
        found
    };
    let scan_end = chain.map_or(sp + SCAN_BYTES, |c| c.min(sp + SCAN_BYTES));
    // `out` itself lies in a caller's frame: the addresses it receives must
    // not be read back as frames.
    let own = out.as_ptr() as usize..out.as_ptr() as usize + core::mem::size_of_val(out);
    let mut n = 0;
    let mut a = sp;
    while a < scan_end && n < MAX_DEPTH {
        if own.contains(&a) {
            a = own.end;
            continue;
        }
        match pages.word(a) {
            Some(w) if pages.is_return_address(w) => {
                out[n] = w;
                n += 1;
            }
            Some(_) => {}
            None => break,
        }
        a += 8;
    }
    let Some(mut f) = chain else { return n };
    while n < MAX_DEPTH {
        let Some((next, ret)) = pages.record_at(f, sp) else { break };
        out[n] = ret;
        n += 1;
        if next <= f || next - f > MAX_FRAME {
            break;
        }
        f = next;
    }
    n
}

// ---------------------------------------------------------------------------
// Output.

/// A file written through a fixed buffer: no allocation.
struct Out {
    fd: i32,
    buf: [u8; 4096],
    len: usize,
    ok: bool,
}

impl Out {
    fn put(&mut self, s: &[u8]) {
        if self.len + s.len() > self.buf.len() {
            self.flush();
        }
        if s.len() > self.buf.len() {
            self.write_all(s);
            return;
        }
        self.buf[self.len..self.len + s.len()].copy_from_slice(s);
        self.len += s.len();
    }

    fn flush(&mut self) {
        let (buf, len) = (self.buf, self.len);
        self.write_all(&buf[..len]);
        self.len = 0;
    }

    fn write_all(&mut self, mut s: &[u8]) {
        while !s.is_empty() && self.ok {
            // SAFETY: `s` is readable for its length.
            let r = unsafe { libc::write(self.fd, s.as_ptr().cast(), s.len()) };
            if r < 0 {
                // SAFETY: __errno_location returns this thread's errno slot.
                if unsafe { *libc::__errno_location() } == libc::EINTR {
                    continue;
                }
                self.ok = false;
            } else {
                s = &s[r as usize..];
            }
        }
    }
}

/// Writes the raw profile to `fd`:
///
/// ```text
/// poolmalloc heap profile 1
/// interval 524288
/// pid 12345
/// stack ALLOC_OBJECTS ALLOC_BYTES LIVE_OBJECTS LIVE_BYTES PC PC ...
/// maps
/// (the process's /proc/self/maps)
/// ```
///
/// Counts are estimates; program counters are return addresses in hex,
/// innermost first. The tables are read under their locks; nothing is
/// allocated. False if a write failed.
pub fn write_profile(fd: i32) -> bool {
    let mut out = Out { fd, buf: [0; 4096], len: 0, ok: true };
    let mut l = Line::new();
    l.push("poolmalloc heap profile 1\ninterval ").push_u64(interval() as u64);
    // SAFETY: getpid has no preconditions.
    l.push("\npid ").push_u64(unsafe { libc::getpid() } as u64).push("\n");
    out.put(l.as_bytes());
    if READY.load(Acquire) {
        let _g = STACK_LOCK.guard();
        // SAFETY: the stack lock is held (guard `_g`); the tables exist.
        let count = unsafe { STACK_COUNT.get() };
        for s in 0..count {
            // SAFETY: as above; `s` is a filled slot.
            let r = unsafe { &*STACK_TABLE.get().add(s) };
            let mut l = Line::new();
            l.push("stack ");
            l.push_u64(r.alloc_objects.round() as u64).push(" ");
            l.push_u64(r.alloc_bytes.round() as u64).push(" ");
            l.push_u64(r.live_objects.round() as u64).push(" ");
            l.push_u64(r.live_bytes.round() as u64);
            out.put(l.as_bytes());
            for &f in &r.frames[..r.depth] {
                let mut l = Line::new();
                l.push(" ").push_hex_bare(f);
                out.put(l.as_bytes());
            }
            out.put(b"\n");
        }
    }
    out.put(b"maps\n");
    // SAFETY: a NUL-terminated path; open does not allocate.
    let maps = unsafe { libc::open(c"/proc/self/maps".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if maps >= 0 {
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: `buf` is writable for its length.
            let r = unsafe { libc::read(maps, buf.as_mut_ptr().cast(), buf.len()) };
            if r <= 0 {
                break;
            }
            out.put(&buf[..r as usize]);
        }
        // SAFETY: a descriptor we opened.
        unsafe { libc::close(maps) };
    }
    out.flush();
    out.ok
}

/// Writes the profile to `PREFIX.<pid>.heap` at exit, if profiling ran. A
/// process may hold two copies of poolmalloc (a Rust program whose global
/// allocator it is, run with `libpoolmalloc.so` preloaded): each writes a
/// file of its own, the first `PREFIX.<pid>.heap`, the next
/// `PREFIX.<pid>.2.heap` and so on up to 9, and `poolmalloc prof` merges
/// them.
pub(crate) extern "C" fn write_at_exit() {
    if !READY.load(Acquire) {
        return;
    }
    stop();
    // SAFETY: set once at set-up, read-only since.
    let prefix = unsafe { PREFIX.get() };
    let plen = prefix.iter().position(|&b| b == 0).unwrap_or(prefix.len());
    let e = os::Errno::save();
    let mut written = false;
    let mut last = [0u8; 320];
    let mut last_len = 0;
    for copy in 1..=9u64 {
        let mut l = Line::new();
        l.push_bytes(&prefix[..plen]).push(".");
        // SAFETY: getpid has no preconditions.
        l.push_u64(unsafe { libc::getpid() } as u64);
        if copy > 1 {
            l.push(".").push_u64(copy);
        }
        l.push(".heap");
        let name = l.as_bytes();
        last_len = name.len().min(last.len() - 1);
        last = [0u8; 320];
        last[..last_len].copy_from_slice(&name[..last_len]);
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC;
        // SAFETY: `last` is NUL-terminated; open does not allocate.
        let fd = unsafe { libc::open(last.as_ptr().cast(), flags, 0o644) };
        if fd < 0 {
            // SAFETY: __errno_location returns this thread's errno slot.
            if unsafe { *libc::__errno_location() } == libc::EEXIST {
                continue;
            }
            break;
        }
        if !write_profile(fd) {
            let mut m = Line::new();
            m.push("poolmalloc: writing the heap profile ").push_bytes(&last[..last_len]).push(" failed\n");
            os::write_stderr(m.as_bytes());
        }
        // SAFETY: a descriptor we opened.
        unsafe { libc::close(fd) };
        written = true;
        break;
    }
    if !written {
        let mut m = Line::new();
        m.push("poolmalloc: cannot write the heap profile ").push_bytes(&last[..last_len]).push("\n");
        os::write_stderr(m.as_bytes());
    }
    e.restore();
}

// ---------------------------------------------------------------------------
// Fork.

/// Shard locks [`fork_prepare`] took: bit `i` for shard `i`.
static FORK_SHARDS: AtomicUsize = AtomicUsize::new(0);
/// Whether [`fork_prepare`] took the stack lock.
static FORK_STACK: AtomicBool = AtomicBool::new(false);
/// Whether [`fork_prepare`] took the code-range lock.
static FORK_CODE: AtomicBool = AtomicBool::new(false);

/// Fork preparation: takes the profiler's locks, except one the forking
/// thread holds itself (a fork from a signal handler that interrupted it
/// inside the profiler). They are leaf locks: no other lock is taken while
/// one is held, so waiting for them cannot deadlock.
pub(crate) fn fork_prepare() {
    let code = !CODE_LOCK.held_by_me();
    if code {
        CODE_LOCK.lock();
    }
    FORK_CODE.store(code, Relaxed);
    let stack = !STACK_LOCK.held_by_me();
    if stack {
        STACK_LOCK.lock();
    }
    let mut shards = 0usize;
    for (i, l) in SHARD_LOCKS.iter().enumerate() {
        if !l.held_by_me() {
            l.lock();
            shards |= 1 << i;
        }
    }
    FORK_SHARDS.store(shards, Relaxed);
    FORK_STACK.store(stack, Relaxed);
}

/// After a fork, in the parent: releases what [`fork_prepare`] took.
pub(crate) fn fork_parent() {
    let shards = FORK_SHARDS.load(Relaxed);
    for (i, l) in SHARD_LOCKS.iter().enumerate() {
        if shards & (1 << i) != 0 {
            l.unlock();
        }
    }
    if FORK_STACK.load(Relaxed) {
        STACK_LOCK.unlock();
    }
    if FORK_CODE.load(Relaxed) {
        CODE_LOCK.unlock();
    }
}

/// After a fork, in the child: the locks are released, and the profile
/// continues into a file of the child's own (`PREFIX.<pid>.heap`). If the
/// fork interrupted the profiler itself (its tables may be mid-update), the
/// child stops sampling.
pub(crate) fn fork_child() {
    let interrupted = !FORK_CODE.load(Relaxed)
        || !FORK_STACK.load(Relaxed) || FORK_SHARDS.load(Relaxed) != usize::MAX >> (usize::BITS as usize - SHARDS);
    for l in &SHARD_LOCKS {
        l.reset();
    }
    STACK_LOCK.reset();
    CODE_LOCK.reset();
    if interrupted {
        stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_exponential_with_the_set_mean() {
        let mut rng = 12345u64;
        let n = if cfg!(miri) { 20_000 } else { 200_000 };
        let sum: f64 = (0..n).map(|_| next_interval(&mut rng) as f64).sum();
        let mean = sum / n as f64;
        let want = interval() as f64;
        let tol = if cfg!(miri) { 0.05 } else { 0.02 };
        assert!((mean - want).abs() < want * tol, "mean {mean} against {want}");
        // Exponential: about 1/e of the draws exceed the mean.
        let mut rng = 777u64;
        let above = (0..n).filter(|_| next_interval(&mut rng) as f64 > want).count() as f64 / n as f64;
        assert!((above - (-1.0f64).exp()).abs() < tol / 2.0, "{above}");
    }

    #[test]
    fn weights_undo_the_sampling_probability() {
        let i = interval();
        // A block as large as the interval is sampled with p = 1 - 1/e.
        assert!((weight(i) - 1.0 / (1.0 - (-1.0f64).exp())).abs() < 1e-9);
        // Huge blocks are always sampled; tiny ones weigh about i / size.
        assert!((weight(64 * i) - 1.0).abs() < 1e-9);
        assert!((weight(16) - i as f64 / 16.0).abs() / (i as f64 / 16.0) < 1e-3);
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn a_frame_pointer_walk_finds_the_callers() {
        #[inline(never)]
        fn leaf(out: &mut [usize; MAX_DEPTH]) -> usize {
            core::hint::black_box(capture(out, here()))
        }
        let mut out = [0; MAX_DEPTH];
        let n = leaf(&mut out);
        // At least the return into `leaf` (found by the scan) comes back,
        // and every address looks like code.
        assert!(n >= 1, "no frame captured");
        let here = a_frame_pointer_walk_finds_the_callers as *const () as usize;
        assert!(out[..n].iter().all(|&a| a > 0x10000));
        assert!(out[..n].iter().any(|&a| a.abs_diff(here) < 1 << 16), "{:x?} against {here:x}", &out[..n]);
    }
}
