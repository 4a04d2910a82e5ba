//! Layer 7: huge allocations.
//!
//! Requests above the largest size class (1 MiB), or with an alignment above
//! what pools serve, get a mapping of their own; medium blocks (32 KiB to
//! 1 MiB) come from runs of arena slices (see [`crate::arena`]). Each mapping ("span") starts on a
//! 4 MiB granule so the ownership map can tag it; a 64-byte header at the
//! span's start records its geometry, and the block follows at an offset of
//! `max(64, align)`. A header is validated (magic number bound to its
//! address) before it is trusted.
//!
//! Freed spans go to a small cache ([`CACHE_SLOTS`] entries, at most
//! [`CACHE_MAX_BYTES`]) so a `malloc`/`free` loop of a few MiB does not make a
//! system call each time. A request takes the smallest cached span that is
//! long enough: as it is when it is at most a quarter longer (no system
//! call), otherwise giving the excess back (`mremap` shrinks it in place); or
//! it grows the longest shorter one in place. Either way it reuses resident
//! pages instead of faulting fresh ones in. Cached spans are unmapped once older than the purge
//! delay (checked on later large operations) and at `trim()`.
//!
//! `realloc` grows a span in place when the pages after it are free
//! (`mremap` without moving), and otherwise moves its pages into a new
//! aligned reservation with `mremap(MREMAP_FIXED)`, which copies nothing.
//!
//! Thread safety: a live span is touched only by the thread freeing or
//! resizing it; the cache is guarded by [`LOCK`].

use crate::list::{Links, List};
use crate::lock::RawLock;
use crate::options;
use crate::os;
use crate::ownership::{self, GRANULE, TAG_LARGE_HEAD, TAG_LARGE_TAIL};
use crate::sync::Local;
use core::ptr;
use crate::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Bytes before the block when the alignment allows.
pub const HEADER: usize = 64;
/// Cached spans kept at most.
pub const CACHE_SLOTS: usize = 8;
/// Total bytes of cached spans kept at most.
pub const CACHE_MAX_BYTES: usize = 64 << 20;
/// A span larger than this is never cached.
const CACHE_MAX_SPAN: usize = 32 << 20;

const MAGIC: usize = 0x706f_6f6c_6c61_7267; // "poollarg"

/// Header at the start of every span.
#[repr(C)]
struct Span {
    /// `MAGIC ^ base`.
    magic: usize,
    /// Mapped bytes, from the span's base.
    map_len: usize,
    /// Offset of the block from the base.
    offset: usize,
    /// Bytes the caller asked for.
    size: usize,
    /// Neighbours on a first-class heap's [`SpanList`], or null.
    prev: Local<*mut Span>,
    next: Local<*mut Span>,
}

/// Where a span header's links are.
struct SpanLinks;

impl Links<Span> for SpanLinks {
    unsafe fn links<'a>(s: *mut Span) -> (&'a Local<*mut Span>, &'a Local<*mut Span>) {
        // SAFETY: by the caller, `s` is a live span's header.
        unsafe { (&(*s).next, &(*s).prev) }
    }
}

const _: () = assert!(core::mem::size_of::<Span>() <= HEADER);

/// Guards the cache.
pub static LOCK: RawLock = RawLock::new();

struct Cache {
    /// Span bases; null: the slot is free.
    base: [Local<*mut u8>; CACHE_SLOTS],
    len: [Local<usize>; CACHE_SLOTS],
    at: [Local<u64>; CACHE_SLOTS],
    bytes: Local<usize>,
}

static CACHE: Cache = Cache {
    base: [const { Local::new(ptr::null_mut()) }; CACHE_SLOTS],
    len: [const { Local::new(0) }; CACHE_SLOTS],
    at: [const { Local::new(0) }; CACHE_SLOTS],
    bytes: Local::new(0),
};

/// Large-span counters for statistics.
pub struct LargeCounters {
    /// Spans live now.
    pub live: AtomicUsize,
    /// Mapped bytes of live spans.
    pub live_bytes: AtomicUsize,
    /// Bytes requested by live spans.
    pub requested_bytes: AtomicUsize,
    /// Spans ever allocated.
    pub allocated: AtomicUsize,
    /// Allocations served from the cache.
    pub cache_hits: AtomicUsize,
}

/// Large-span counters.
pub static COUNTERS: LargeCounters = LargeCounters {
    live: AtomicUsize::new(0),
    live_bytes: AtomicUsize::new(0),
    requested_bytes: AtomicUsize::new(0),
    allocated: AtomicUsize::new(0),
    cache_hits: AtomicUsize::new(0),
};

/// Bytes of cached spans now.
pub fn cached_bytes() -> usize {
    let _g = LOCK.guard();
    // SAFETY: the cache lock is held (guard `_g`).
    unsafe { CACHE.bytes.get() }
}

/// The large layer's part of the statistics snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LargeStats {
    /// Live spans.
    pub spans: usize,
    /// Mapped bytes of live spans.
    pub bytes: usize,
    /// Bytes requested by live spans.
    pub requested: usize,
    /// Bytes of freed spans kept in the cache.
    pub cached: usize,
    /// Allocations served from the cache.
    pub cache_hits: usize,
}

/// Reads the large layer's counters and the cache.
pub(crate) fn snapshot() -> LargeStats {
    LargeStats {
        spans: COUNTERS.live.load(Relaxed),
        bytes: COUNTERS.live_bytes.load(Relaxed),
        requested: COUNTERS.requested_bytes.load(Relaxed),
        cached: cached_bytes(),
        cache_hits: COUNTERS.cache_hits.load(Relaxed),
    }
}

fn offset_for(align: usize) -> usize {
    align.max(HEADER)
}

fn map_len_for(size: usize, offset: usize) -> Option<usize> {
    os::align_up(size.checked_add(offset)?, os::page_size())
}

/// Allocates `size` bytes aligned to `align` in a span of their own. Null
/// when the size is impossible or memory is exhausted.
pub fn alloc(size: usize, align: usize) -> *mut u8 {
    alloc_span(size, align, false)
}

/// Like [`alloc`], but the block reads as zero (fresh mappings already do; a
/// reused cached span is cleared).
pub fn alloc_zeroed(size: usize, align: usize) -> *mut u8 {
    alloc_span(size, align, true)
}

/// Whether a span for `size` bytes aligned to `align` could exist at all:
/// a request beyond this fails without a system call, and giving memory
/// back cannot help it.
pub fn within_limits(size: usize, align: usize) -> bool {
    size <= isize::MAX as usize - 2 * GRANULE && align <= isize::MAX as usize / 4
}

fn alloc_span(size: usize, align: usize, zeroed: bool) -> *mut u8 {
    if !within_limits(size, align) {
        return ptr::null_mut();
    }
    let offset = offset_for(align);
    let Some(map_len) = map_len_for(size, offset) else { return ptr::null_mut() };
    let (base, map_len, cached) = match take_cached(map_len, align) {
        Some((b, len)) => (b, len, true),
        None => (map_span(map_len, align), map_len, false),
    };
    if base.is_null() {
        return base;
    }
    COUNTERS.allocated.fetch_add(1, Relaxed);
    // SAFETY: `base` is a span of `map_len` bytes we own.
    let p = unsafe { finish(base, map_len, offset, size) };
    if zeroed && cached {
        // The whole usable size reads as zero, as a fresh mapping does.
        // SAFETY: the block has `map_len - offset` writable bytes.
        unsafe { ptr::write_bytes(p, 0, map_len - offset) };
    }
    p
}

/// Writes the header and accounts for a span about to be handed out.
///
/// # Safety
/// `base` must be an owned span of `map_len` bytes, tagged in the map.
unsafe fn finish(base: *mut u8, map_len: usize, offset: usize, size: usize) -> *mut u8 {
    let span = base.cast::<Span>();
    // SAFETY: the header lies in the span's first page, which we own.
    unsafe {
        span.write(Span {
            magic: MAGIC ^ base.addr(),
            map_len,
            offset,
            size,
            prev: Local::new(ptr::null_mut()),
            next: Local::new(ptr::null_mut()),
        })
    };
    COUNTERS.live.fetch_add(1, Relaxed);
    COUNTERS.live_bytes.fetch_add(map_len, Relaxed);
    COUNTERS.requested_bytes.fetch_add(size, Relaxed);
    base.wrapping_add(offset)
}

fn map_span(map_len: usize, align: usize) -> *mut u8 {
    let base = os::map_aligned(map_len, align.max(GRANULE));
    if base.is_null() {
        return base;
    }
    if !ownership::mark(base, map_len, TAG_LARGE_HEAD, TAG_LARGE_TAIL) {
        // SAFETY: our fresh mapping, seen by no one.
        unsafe { os::release_or_keep(base, map_len) };
        return ptr::null_mut();
    }
    base
}

/// Takes the granules that lie wholly past `keep` bytes of a span of
/// `len` bytes at `base` out of the ownership map, before a shrink gives
/// them back to the kernel: once the kernel has the range, another thread's
/// new mapping may land there and be marked, and clearing the map afterwards
/// would erase its entries. Returns what [`restore_tail`] needs if the
/// shrink fails.
fn unmark_tail(base: *mut u8, keep: usize, len: usize) -> (*mut u8, usize) {
    let cut = (base.addr() + keep).next_multiple_of(GRANULE);
    let end = base.addr() + len;
    if cut >= end {
        return (base, 0);
    }
    ownership::unmark(cut, end - cut);
    (base.with_addr(cut), end - cut)
}

/// Puts back the granules [`unmark_tail`] took out (the shrink failed).
fn restore_tail((at, len): (*mut u8, usize)) {
    if len > 0 {
        ownership::mark(at, len, TAG_LARGE_TAIL, TAG_LARGE_TAIL);
    }
}

/// Unmaps a span that is no longer live or cached. It leaves the ownership
/// map first; if the kernel refuses the unmap, it goes back into the map
/// (its header no longer validates, so pointers into it are still
/// reported) and its pages are decommitted and counted as unreleased.
fn unmap_span(base: *mut u8, map_len: usize) {
    ownership::unmark(base as usize, map_len);
    // SAFETY: callers pass spans they took off the cache or that were just
    // freed, which nothing uses any more.
    if !unsafe { os::unmap(base, map_len) } {
        ownership::mark(base, map_len, TAG_LARGE_HEAD, TAG_LARGE_TAIL);
        // SAFETY: as above; the range is still ours.
        unsafe { os::keep_unreleased(base, map_len) };
    }
}

/// A cached span for a request of `map_len` bytes whose base suits `align`,
/// and its length. The smallest long enough span is taken as it is when it
/// is at most a quarter longer than asked (no system call: the excess
/// becomes usable size); a longer one gives its excess back with one
/// `mremap`. Failing that, the longest shorter one is grown in place.
fn take_cached(map_len: usize, align: usize) -> Option<(*mut u8, usize)> {
    let _g = LOCK.guard();
    let mut best: Option<usize> = None;
    let mut shorter: Option<usize> = None;
    // SAFETY: the cache lock is held (guard `_g`) until the `drop` below.
    let (base, l) = unsafe {
        for i in 0..CACHE_SLOTS {
            let (b, l) = (CACHE.base[i].get(), CACHE.len[i].get());
            if b.is_null() || b.addr() % align.max(GRANULE) != 0 {
                continue;
            }
            if l >= map_len {
                if best.is_none_or(|j| CACHE.len[j].get() > l) {
                    best = Some(i);
                }
            } else if shorter.is_none_or(|j| CACHE.len[j].get() < l) {
                shorter = Some(i);
            }
        }
        let i = best.or(shorter)?;
        let (base, l) = (CACHE.base[i].get(), CACHE.len[i].get());
        CACHE.base[i].set(ptr::null_mut());
        CACHE.bytes.set(CACHE.bytes.get() - l);
        (base, l)
    };
    drop(_g);
    if l >= map_len && l - map_len <= map_len / 4 {
        COUNTERS.cache_hits.fetch_add(1, Relaxed);
        return Some((base, l));
    }
    // Reusing resident pages saves faulting fresh ones in. A much longer
    // span gives its excess back; a shorter one grows only where the address
    // space after it is free.
    let tail = if l > map_len { unmark_tail(base, map_len, l) } else { (base, 0) };
    // SAFETY: the cached span is ours and unused.
    if !unsafe { os::remap_in_place(base, l, map_len) } {
        restore_tail(tail);
        if l > map_len {
            unmap_span(base, l);
        } else {
            // Could not grow: put it back for a later, smaller request.
            cache_put(base, l, os::now_ms());
        }
        return None;
    }
    if l < map_len {
        // Grown in place: the new range was free, so no one else marks it.
        ownership::mark(base, map_len, TAG_LARGE_HEAD, TAG_LARGE_TAIL);
    }
    COUNTERS.cache_hits.fetch_add(1, Relaxed);
    Some((base, map_len))
}

/// Puts a span into the cache if there is room; otherwise unmaps it.
fn cache_put(base: *mut u8, map_len: usize, now: u64) {
    let _g = LOCK.guard();
    // SAFETY: the cache lock is held (guard `_g`) until the `drop` below.
    unsafe {
        expire(now);
        if CACHE.bytes.get() + map_len <= CACHE_MAX_BYTES {
            for i in 0..CACHE_SLOTS {
                if CACHE.base[i].get().is_null() {
                    CACHE.base[i].set(base);
                    CACHE.len[i].set(map_len);
                    CACHE.at[i].set(now);
                    CACHE.bytes.set(CACHE.bytes.get() + map_len);
                    return;
                }
            }
        }
    }
    drop(_g);
    unmap_span(base, map_len);
}

/// The span header for a block pointer, validated. `None` if `p` is not the
/// block of a live span.
fn span_of(p: *mut u8) -> Option<*mut Span> {
    let base = ownership::large_span_base(p)?;
    let span = base.cast::<Span>();
    // SAFETY: the map says a span of ours starts at `base`, so its first page
    // is mapped and holds a header.
    let s = unsafe { &*span };
    if s.magic != MAGIC ^ base.addr() || base.addr() + s.offset != p.addr() {
        return None;
    }
    Some(span)
}

/// Usable bytes of the block at `p`, or `None` if `p` is not a live span's
/// block.
pub fn usable_size(p: *mut u8) -> Option<usize> {
    let span = span_of(p)?;
    // SAFETY: validated header.
    let s = unsafe { &*span };
    Some(s.map_len - s.offset)
}

/// Frees the block at `p`. Returns false (doing nothing) if `p` is not the
/// block of a live span.
pub fn free(p: *mut u8) -> bool {
    let Some(span) = span_of(p) else { return false };
    // SAFETY: validated header of a span the caller gives up.
    let s = unsafe { &mut *span };
    let (base, map_len) = (span.cast::<u8>(), s.map_len);
    COUNTERS.live.fetch_sub(1, Relaxed);
    COUNTERS.live_bytes.fetch_sub(map_len, Relaxed);
    COUNTERS.requested_bytes.fetch_sub(s.size, Relaxed);
    s.magic = 0; // a second free of `p` no longer validates
    if options::purge_delay_ms() != 0 && map_len <= CACHE_MAX_SPAN {
        cache_put(base, map_len, os::now_ms());
    } else {
        unmap_span(base, map_len);
    }
    true
}

/// Unmaps cached spans older than the purge delay. Lock held.
///
/// # Safety
/// The cache lock ([`LOCK`]) must be held.
unsafe fn expire(now: u64) {
    let delay = options::purge_delay_ms();
    if delay < 0 {
        return;
    }
    for i in 0..CACHE_SLOTS {
        // SAFETY: the cache lock is held (by the caller).
        unsafe {
            let b = CACHE.base[i].get();
            if !b.is_null() && CACHE.at[i].get() + delay as u64 <= now {
                CACHE.base[i].set(ptr::null_mut());
                CACHE.bytes.set(CACHE.bytes.get() - CACHE.len[i].get());
                unmap_span(b, CACHE.len[i].get());
            }
        }
    }
}

/// Unmaps every cached span.
pub fn purge_cache() {
    let _g = LOCK.guard();
    for i in 0..CACHE_SLOTS {
        // SAFETY: the cache lock is held (guard `_g`).
        unsafe {
            let b = CACHE.base[i].get();
            if !b.is_null() {
                CACHE.base[i].set(ptr::null_mut());
                CACHE.bytes.set(CACHE.bytes.get() - CACHE.len[i].get());
                unmap_span(b, CACHE.len[i].get());
            }
        }
    }
}

/// Resizes the block at `p` to `new_size` bytes, in place or by moving its
/// pages. Returns the (possibly moved) block, or null if it could not be
/// resized, in which case the block is untouched. `p` must be a live span's
/// block (checked: returns null otherwise).
pub fn realloc(p: *mut u8, new_size: usize) -> *mut u8 {
    let Some(span) = span_of(p) else { return ptr::null_mut() };
    // SAFETY: validated header of a span the caller owns.
    let s = unsafe { &mut *span };
    let base = span.cast::<u8>();
    let Some(new_len) = map_len_for(new_size, s.offset) else { return ptr::null_mut() };
    if !within_limits(new_size, 1) {
        return ptr::null_mut();
    }
    let old_len = s.map_len;
    COUNTERS.requested_bytes.fetch_sub(s.size, Relaxed);
    if new_len <= old_len {
        // Shrink: give back whole pages only when at least half goes.
        // SAFETY: the span is the caller's; bytes past `new_len` are beyond
        // the new size.
        if new_len <= old_len / 2 {
            let tail = unmark_tail(base, new_len, old_len);
            // SAFETY: as above.
            if unsafe { os::remap_in_place(base, old_len, new_len) } {
                s.map_len = new_len;
                COUNTERS.live_bytes.fetch_sub(old_len - new_len, Relaxed);
            } else {
                restore_tail(tail);
            }
        }
        s.size = new_size;
        COUNTERS.requested_bytes.fetch_add(new_size, Relaxed);
        return p;
    }
    // SAFETY: the span is the caller's.
    if unsafe { os::remap_in_place(base, old_len, new_len) } {
        ownership::mark(base, new_len, TAG_LARGE_HEAD, TAG_LARGE_TAIL);
        s.map_len = new_len;
        s.size = new_size;
        COUNTERS.live_bytes.fetch_add(new_len - old_len, Relaxed);
        COUNTERS.requested_bytes.fetch_add(new_size, Relaxed);
        return p;
    }
    let align = if s.offset > HEADER { s.offset } else { 1 };
    let dest = os::map_aligned(new_len, align.max(GRANULE));
    if dest.is_null() || !ownership::mark(dest, new_len, TAG_LARGE_HEAD, TAG_LARGE_TAIL) {
        if !dest.is_null() {
            // SAFETY: our fresh reservation, seen by no one.
            unsafe { os::release_or_keep(dest, new_len) };
        }
        COUNTERS.requested_bytes.fetch_add(s.size, Relaxed);
        return ptr::null_mut();
    }
    let offset = s.offset;
    s.magic = 0;
    // The old range leaves the ownership map before the kernel takes it
    // back (see `unmark_tail`), and comes back if the move fails. The
    // destination starts on a granule of its own and the old range ends
    // before it, so the two share no granule.
    ownership::unmark(base.addr(), old_len);
    // SAFETY: the span is the caller's and `dest` is our fresh reservation.
    if !unsafe { os::remap_to(base, old_len, dest, new_len) } {
        ownership::mark(base, old_len, TAG_LARGE_HEAD, TAG_LARGE_TAIL);
        s.magic = MAGIC ^ base as usize;
        ownership::unmark(dest as usize, new_len);
        // SAFETY: our fresh reservation, seen by no one.
        unsafe { os::release_or_keep(dest, new_len) };
        COUNTERS.requested_bytes.fetch_add(s.size, Relaxed);
        return ptr::null_mut();
    }
    let ns = dest.cast::<Span>();
    // SAFETY: the header moved with the pages to `dest`, which we own.
    unsafe {
        (*ns).magic = MAGIC ^ dest as usize;
        (*ns).map_len = new_len;
        (*ns).size = new_size;
    }
    COUNTERS.live_bytes.fetch_add(new_len - old_len, Relaxed);
    COUNTERS.requested_bytes.fetch_add(new_size, Relaxed);
    dest.wrapping_add(offset)
}


/// The block of the live span containing `p` (anywhere in it), and the
/// block's usable size. `None` if `p` is in no live span's block.
pub fn containing(p: *mut u8) -> Option<(*mut u8, usize)> {
    let base = ownership::large_span_base(p)?;
    // SAFETY: the map says a span of ours starts at `base`; its header is
    // mapped.
    let s = unsafe { &*base.cast::<Span>() };
    if s.magic != MAGIC ^ base.addr() {
        return None;
    }
    let start = base.addr() + s.offset;
    let end = base.addr() + s.map_len;
    if p.addr() < start || p.addr() >= end {
        return None;
    }
    Some((base.wrapping_add(s.offset), end - start))
}

/// The huge blocks of a first-class heap, linked through their span
/// headers so that dropping the heap frees them all. Single-threaded: used
/// only by the heap's user, which is the list's user (see [`List`]); the
/// methods that touch the list are `unsafe` with that contract.
pub struct SpanList {
    list: List<Span, SpanLinks>,
}

impl SpanList {
    /// An empty list.
    pub const fn new() -> Self {
        SpanList { list: List::new() }
    }

    /// Allocates a huge block and links it in. Null on failure.
    ///
    /// # Safety
    /// The caller must be the list's user (its heap's user).
    pub unsafe fn alloc(&self, size: usize, align: usize, zeroed: bool) -> *mut u8 {
        let p = if zeroed { alloc_zeroed(size, align) } else { alloc(size, align) };
        if let Some(span) = span_of(p) {
            // SAFETY: a fresh span's header is ours and on no list; by the
            // caller, we are the list's user.
            unsafe { self.list.push(span) };
        }
        p
    }

    /// Unlinks and frees the block at `p`. False (doing nothing) if `p` is
    /// not a live huge block.
    ///
    /// # Safety
    /// The caller must be the list's user, and a live `p` must be on this
    /// list.
    pub unsafe fn free(&self, p: *mut u8) -> bool {
        let Some(span) = span_of(p) else { return false };
        // SAFETY: by the caller `span` is on this list, whose user we are.
        unsafe { self.list.remove(span) };
        free(p)
    }

    /// Frees every block on the list.
    ///
    /// # Safety
    /// The caller must be the list's user.
    pub unsafe fn free_all(&self) {
        // SAFETY: by the caller, we are the list's user.
        let mut span = unsafe { self.list.head() };
        // SAFETY: as above.
        unsafe { self.list.clear() };
        while !span.is_null() {
            // SAFETY: spans on the list are live and ours, and we are the
            // list's user (their links are left as they were by `clear`);
            // the next link is read before the span is freed.
            let (next, p) = unsafe { (List::<Span, SpanLinks>::next(span), span.cast::<u8>().wrapping_add((*span).offset)) };
            free(p);
            span = next;
        }
    }
}

impl Default for SpanList {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------------------
// Secure mode's zero-size blocks.

/// Slots of the zero-size region: one per 16 bytes of one granule.
const ZERO_SLOTS: usize = GRANULE / 16;

/// Secure mode: `malloc(0)` returns a distinct address in a region that is
/// mapped `PROT_NONE`, so any read or write through it faults. One granule,
/// reserved on first use and marked [`TAG_ZERO`](ownership::TAG_ZERO) in the
/// ownership map; a bitmap says which of its 262,144 addresses are live.
/// Guarded by [`LOCK`] (which the fork handlers take).
struct ZeroRegion {
    /// The region (null until reserved; stays null if reserving failed).
    base: Local<*mut u8>,
    /// Whether a reservation was tried.
    tried: Local<bool>,
    /// Where the search for a free slot starts.
    cursor: Local<usize>,
    live: [Local<u64>; ZERO_SLOTS / 64],
}

// SAFETY: every field is read and written under `LOCK` only.
unsafe impl Sync for ZeroRegion {}

static ZERO: ZeroRegion = ZeroRegion {
    base: Local::new(ptr::null_mut()),
    tried: Local::new(false),
    cursor: Local::new(0),
    live: [const { Local::new(0) }; ZERO_SLOTS / 64],
};

/// Reserves the region. Lock held.
///
/// # Safety
/// The cache lock ([`LOCK`]) must be held.
unsafe fn zero_reserve() {
    // SAFETY: the lock is held (by the caller).
    unsafe { ZERO.tried.set(true) };
    let base = os::map_aligned(GRANULE, GRANULE);
    if base.is_null() {
        return;
    }
    // SAFETY: our fresh mapping, seen by nobody.
    let ok = unsafe { os::protect_none(base, GRANULE) } && ownership::mark(base, GRANULE, ownership::TAG_ZERO, ownership::TAG_ZERO);
    if ok {
        // SAFETY: the lock is held (by the caller).
        unsafe { ZERO.base.set(base) };
    } else {
        // SAFETY: as above; not marked, or the mark failed.
        unsafe { os::release_or_keep(base, GRANULE) };
    }
}

/// A fresh zero-size block: an address in the region that faults when
/// used. Null if the region cannot be had or is full (the caller then
/// serves the request as a 1-byte one).
pub fn zero_alloc() -> *mut u8 {
    let _g = LOCK.guard();
    // SAFETY: the lock is held (guard `_g`), which guards the region.
    unsafe {
        if !ZERO.tried.get() {
            zero_reserve();
        }
        let base = ZERO.base.get();
        if base.is_null() {
            return base;
        }
        let words = ZERO.live.len();
        let start = ZERO.cursor.get() / 64;
        for k in 0..=words {
            let w = (start + k) % words;
            let bits = ZERO.live[w].get();
            if bits != u64::MAX {
                let bit = (!bits).trailing_zeros() as usize;
                ZERO.live[w].set(bits | 1 << bit);
                let slot = w * 64 + bit;
                ZERO.cursor.set(slot + 1);
                return base.wrapping_add(slot * 16);
            }
        }
    }
    ptr::null_mut()
}

/// The slot of `p` if it is a live zero-size block. Lock held.
///
/// # Safety
/// The cache lock ([`LOCK`]) must be held.
unsafe fn zero_slot(p: *mut u8) -> Option<usize> {
    // SAFETY: the lock is held (by the caller).
    let base = unsafe { ZERO.base.get() };
    let off = (p as usize).wrapping_sub(base as usize);
    if base.is_null() || off >= GRANULE || off % 16 != 0 {
        return None;
    }
    let slot = off / 16;
    // SAFETY: as above.
    (unsafe { ZERO.live[slot / 64].get() } & 1 << (slot % 64) != 0).then_some(slot)
}

/// Frees a zero-size block. False if `p` is not a live one.
pub fn zero_free(p: *mut u8) -> bool {
    let _g = LOCK.guard();
    // SAFETY: the lock is held (guard `_g`).
    unsafe {
        let Some(slot) = zero_slot(p) else { return false };
        let w = &ZERO.live[slot / 64];
        w.set(w.get() & !(1 << (slot % 64)));
    }
    true
}

/// Whether `p` is a live zero-size block.
pub fn zero_live(p: *mut u8) -> bool {
    let _g = LOCK.guard();
    // SAFETY: the lock is held (guard `_g`).
    unsafe { zero_slot(p).is_some() }
}
