//! The routing engine (layer 8): one set of entry points, size- and
//! layout-aware, that every front forwards to.
//!
//! A request goes to a pool through the thread layer when its size and
//! alignment fit a class ([`pool_class`]), to a huge span otherwise. The
//! engine knows nothing of debug mode: [`crate::front`] chooses once which
//! of the engine and the debug wrapper serves a process, and hands the
//! thread layer the wrapper's entry point for the requests that reach a
//! thread whose heap slot names the wrapper. Nothing here allocates, panics
//! or reads `std::env`.

use crate::fault::invalid_pointer;
use crate::large;
use crate::options;
use crate::os;
use crate::ownership::{self, TAG_ARENA, TAG_LARGE_HEAD, TAG_LARGE_TAIL, TAG_ZERO};
use crate::pool::state;
use crate::prof;
use crate::size_class::{self, ALIGNMENT, MAX_CLASS_SIZE, MAX_POOL_ALIGN_SHIFT};
use crate::sync::atomic::Ordering::Relaxed;
use crate::{arena, thread};
use core::alloc::Layout;
use core::ptr;

/// Largest size any allocation may have (`PTRDIFF_MAX`, like glibc).
pub const MAX_ALLOC: usize = isize::MAX as usize;

/// Whether a request of `size` bytes aligned to `align` is served from
/// pools: the one rule, for allocation and free alike.
#[inline(always)]
pub(crate) fn in_pools(size: usize, align: usize) -> bool {
    size <= MAX_CLASS_SIZE && align <= 1 << MAX_POOL_ALIGN_SHIFT
}

/// The class of a request that [`in_pools`] accepts (a constant when the
/// layout is).
#[inline(always)]
pub(crate) fn pool_class(size: usize, align: usize) -> usize {
    if align <= ALIGNMENT {
        size_class::class_of(size)
    } else {
        // In pools, an aligned class always exists (the largest class is a
        // multiple of every alignment pools serve).
        size_class::class_of_aligned(size, align).unwrap_or(size_class::NUM_CLASSES - 1)
    }
}

/// A block of `class` from the calling thread's heap; `wrapped` serves the
/// request when the thread's heap slot names the wrapper (see
/// [`thread::alloc`]).
#[inline(always)]
pub(crate) fn alloc_class(class: usize, wrapped: impl FnOnce() -> *mut u8) -> *mut u8 {
    thread::alloc(class, wrapped)
}

/// As [`alloc_class`], with the block's whole usable size zeroed (a block
/// from `wrapped` is the wrapper's to zero).
pub(crate) fn calloc_class(class: usize, wrapped: impl FnOnce() -> *mut u8) -> *mut u8 {
    let mut from_wrapper = false;
    let p = thread::alloc(class, || {
        from_wrapper = true;
        wrapped()
    });
    if !p.is_null() && !from_wrapper {
        // SAFETY: a fresh block of its class's size.
        unsafe { ptr::write_bytes(p, 0, size_class::class_size(class)) };
    }
    p
}

/// Frees the pool block `p` (in an arena by the ownership map or the
/// caller's layout); `wrapped` frees it when the thread's heap slot names
/// the wrapper.
///
/// # Safety
/// As for [`thread::free`].
#[inline(always)]
pub(crate) unsafe fn free_in_arena(p: *mut u8, wrapped: impl FnOnce()) {
    // SAFETY: forwarded from the caller.
    unsafe { thread::free(p, wrapped) }
}

/// Allocates `size` bytes aligned to `align` (a power of two), zeroed in
/// their whole usable size if `zero`. Null, with `errno` set to `ENOMEM`,
/// when out of memory or when `size` is impossibly large.
pub fn alloc(size: usize, align: usize, zero: bool) -> *mut u8 {
    debug_assert!(align.is_power_of_two());
    if size == 0 && align <= ALIGNMENT {
        return alloc_zero_size(zero);
    }
    if in_pools(size, align) {
        let class = pool_class(size, align);
        let not_wrapped = || thread::locked_alloc(class);
        return if zero { calloc_class(class, not_wrapped) } else { thread::alloc(class, not_wrapped) };
    }
    if zero {
        huge_zeroed(size, align)
    } else {
        huge(size, align)
    }
}

/// As [`alloc`], from the locked heap whatever the threading mode
/// (`LockedPoolMalloc`).
pub fn alloc_locked(size: usize, align: usize, zero: bool) -> *mut u8 {
    if (size == 0 && align <= ALIGNMENT) || !in_pools(size, align) {
        return alloc(size, align, zero);
    }
    let class = pool_class(size, align);
    let p = alloc_locked_class(class);
    if zero && !p.is_null() {
        // SAFETY: a fresh block of its class's size.
        unsafe { ptr::write_bytes(p, 0, size_class::class_size(class)) };
    }
    p
}

/// A block of `class` from the locked heap (`ENOMEM` when there is none).
#[inline]
pub(crate) fn alloc_locked_class(class: usize) -> *mut u8 {
    enomem(thread::locked_alloc(class))
}

/// A zero-size request: in secure mode an address that faults when read or
/// written (see [`large::zero_alloc`]); otherwise, or when that region is
/// full, a block of the smallest class (zeroed in full if `zero`, like
/// every `calloc` block).
#[cold]
#[inline(never)]
fn alloc_zero_size(zero: bool) -> *mut u8 {
    if options::secure() {
        let p = large::zero_alloc();
        if !p.is_null() {
            return p;
        }
    }
    let class = size_class::class_of(0);
    let not_wrapped = || thread::locked_alloc(class);
    if zero {
        calloc_class(class, not_wrapped)
    } else {
        thread::alloc(class, not_wrapped)
    }
}

/// A huge block, with one retry after giving back what is held but not
/// live.
#[cold]
#[inline(never)]
pub(crate) fn huge(size: usize, align: usize) -> *mut u8 {
    prof_huge(with_retry(large::within_limits(size, align), || large::alloc(size, align)), size)
}

/// Counts a new huge block for the heap profiler (its thread count-downs
/// see only pool blocks).
#[inline]
fn prof_huge(p: *mut u8, size: usize) -> *mut u8 {
    if !p.is_null() && prof::sampling() {
        prof_huge_sample(p, size);
    }
    p
}

/// The profiler's entry for huge blocks: reads where the stack walk starts
/// first thing, with no frame of its own.
#[cold]
#[inline(never)]
fn prof_huge_sample(p: *mut u8, size: usize) {
    prof::huge_allocated(p, size, prof::here());
}

/// Frees a huge block: its profiler record first, if it has one.
fn large_free(p: *mut u8) -> bool {
    if prof::has_live() {
        prof::forget(p);
    }
    large::free(p)
}

/// `f()`, and when it fails, `f()` once more after giving back what is held
/// but not live; `ENOMEM` if that fails too. `may_help` says whether giving
/// memory back could make a difference (an impossible size, or a pointer
/// that is not a huge block, fails the same way again: no retry, so a
/// program probing sizes does not make every thread trim).
fn with_retry(may_help: bool, f: impl Fn() -> *mut u8) -> *mut u8 {
    let p = f();
    if !p.is_null() || !may_help {
        return enomem(p);
    }
    // Give back what is held but not live, across the process (the huge-span
    // cache, free pools' pages, all-free arenas and the spare, this thread's
    // empty pools, and other threads' at their next slow path).
    crate::lifecycle::trim();
    enomem(f())
}

#[inline(always)]
fn enomem(p: *mut u8) -> *mut u8 {
    if p.is_null() {
        os::set_errno(libc::ENOMEM);
    }
    p
}

/// Frees `p` (null is ignored), whatever kind of block it is. A pointer
/// poolmalloc does not own is reported as `what` (see
/// `POOLMALLOC_INVALID_FREE`). The size a caller states (`free_sized`) is
/// not checked here; the debug wrapper checks it.
///
/// # Safety
/// `p` must be null, or a block from poolmalloc not freed since. Foreign
/// pointers are detected and never dereferenced; pointers into poolmalloc's
/// own memory that are not live blocks are detected only in part.
pub unsafe fn free(p: *mut u8, _stated_size: Option<usize>, what: &'static str) {
    match ownership::tag_of(p as usize) {
        // SAFETY: forwarded from the caller; `p` is inside an arena. The
        // wrapper's entry is never reached: this engine serves the process
        // only when no heap slot names the wrapper.
        TAG_ARENA => unsafe { thread::free(p, move || invalid_pointer(what, p, "a debug block outside debug mode")) },
        _ if p.is_null() => {}
        TAG_LARGE_HEAD | TAG_LARGE_TAIL => {
            if !large_free(p) {
                invalid_pointer(what, p, "not the start of a live block");
            }
        }
        TAG_ZERO => {
            if !large::zero_free(p) {
                invalid_pointer(what, p, "not a live zero-size block");
            }
        }
        _ => invalid_pointer(what, p, "not allocated by poolmalloc"),
    }
}

/// Frees a block its caller's layout says is huge; reports `p` if it is not
/// one.
///
/// # Safety
/// `p` must be a block from poolmalloc that the caller gives up (foreign
/// pointers are detected and reported).
pub unsafe fn free_huge(p: *mut u8) {
    if !large_free(p) {
        invalid_pointer("free", p, "not the start of a live block");
    }
}

/// What poolmalloc knows about a pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owned {
    /// A live pool block: its usable size.
    Pool(usize),
    /// A live large block: its usable size.
    Large(usize),
    /// A live zero-size block of secure mode (no usable byte).
    Zero,
    /// Not a live block of poolmalloc's.
    No,
}

/// Classifies `p` without dereferencing anything that is not ours.
///
/// # Safety
/// A `p` in an arena must be a live block of poolmalloc's: `p`'s pool's
/// geometry is read, which is ordered after the pool's `init` only for a
/// thread that got one of its blocks (see [`crate::pool::Pool`]). A stale
/// pointer is classified only as far as such a read, which may race with the
/// pool's re-initialisation, allows.
pub unsafe fn classify(p: *mut u8) -> Owned {
    match ownership::tag_of(p as usize) {
        TAG_ARENA => {
            // SAFETY: `p` is in an arena, whose header is mapped.
            let pool_ptr = arena::owning_pool(p);
            // SAFETY: as above.
            let pool = unsafe { &*pool_ptr };
            let st = pool.hand.state.load(Relaxed);
            let aligned = p as usize & (ALIGNMENT - 1) == 0;
            // SAFETY: by the caller, `p` is a live block of this pool, so we
            // may read its geometry (`end`, `class`, `block_size`).
            unsafe {
                let block = (st == state::USED || st == state::ABANDONED) && aligned && pool.is_block_start(p);
                // A medium block is also checked for having been freed.
                if block && (!pool.is_medium() || thread::medium_block_live(pool_ptr, p)) {
                    Owned::Pool(pool.block_size())
                } else {
                    Owned::No
                }
            }
        }
        TAG_LARGE_HEAD | TAG_LARGE_TAIL => match large::usable_size(p) {
            Some(n) => Owned::Large(n),
            None => Owned::No,
        },
        TAG_ZERO if large::zero_live(p) => Owned::Zero,
        _ => Owned::No,
    }
}

/// Whether `p` points into memory this allocator handed out: an arena, a
/// live huge span or the zero-size region. A pointer any other allocator
/// handed out is never taken for one of ours (the granule at a span's end
/// may hold foreign memory, so a span is checked exactly), and a bad
/// pointer into our memory is ours, for our free to report. For callers that
/// free another allocator's blocks and ours through one call, as the Python
/// extension's in-process mode does; debug blocks are in the same memory.
pub fn owns(p: *mut u8) -> bool {
    match ownership::tag_of(p as usize) {
        TAG_ARENA | TAG_ZERO => true,
        TAG_LARGE_HEAD | TAG_LARGE_TAIL => large::containing(p).is_some(),
        _ => false,
    }
}

/// Usable size of the block at `p` (0 for null). Reports invalid pointers
/// as `what` and returns 0 for them.
///
/// # Safety
/// `p` must be null or a live block from poolmalloc (foreign pointers are
/// detected and reported).
pub unsafe fn usable_size(p: *mut u8, what: &str) -> usize {
    if p.is_null() {
        return 0;
    }
    // SAFETY: by the caller, `p` is a live block (or a foreign pointer,
    // outside every arena).
    match unsafe { classify(p) } {
        Owned::Pool(n) | Owned::Large(n) => n,
        Owned::Zero => 0,
        Owned::No => {
            invalid_pointer(what, p, "not allocated by poolmalloc");
            0
        }
    }
}

/// Resizes the block at `p` (not null) to `new_size` bytes (not zero),
/// keeping its contents. The result is aligned to 16 only. Returns null and
/// leaves `p` intact when memory is exhausted.
///
/// # Safety
/// `p` must be a live block from poolmalloc.
pub unsafe fn realloc(p: *mut u8, new_size: usize) -> *mut u8 {
    if new_size > MAX_ALLOC {
        return enomem(ptr::null_mut());
    }
    // SAFETY: by the caller, `p` is a live block.
    match unsafe { classify(p) } {
        Owned::Pool(bs) => {
            // Stay in place while the class does not change.
            if new_size <= bs
                && (new_size > MAX_CLASS_SIZE || size_class::class_of(new_size) == size_class::class_of(bs))
            {
                return p;
            }
            // SAFETY: `p` holds `bs` readable bytes.
            unsafe { move_block(p, bs, new_size) }
        }
        Owned::Large(_) => {
            if new_size <= MAX_CLASS_SIZE {
                let usable = large::usable_size(p).unwrap_or(0);
                // SAFETY: `p` holds `usable` readable bytes.
                return unsafe { move_block(p, usable, new_size) };
            }
            huge_realloc(p, new_size)
        }
        // SAFETY: a zero-size block has no byte to copy.
        Owned::Zero => unsafe { move_block(p, 0, new_size) },
        Owned::No => {
            invalid_pointer("realloc", p, "not allocated by poolmalloc");
            ptr::null_mut()
        }
    }
}

/// Allocates `new_size` bytes, copies, frees `p`.
///
/// # Safety
/// `p` must be a live block with `old_usable` readable bytes.
unsafe fn move_block(p: *mut u8, old_usable: usize, new_size: usize) -> *mut u8 {
    let q = alloc(new_size, ALIGNMENT, false);
    if q.is_null() {
        return q;
    }
    // SAFETY: both blocks are live and distinct; the copy fits both.
    unsafe {
        ptr::copy_nonoverlapping(p, q, old_usable.min(new_size));
        free(p, None, "realloc");
    }
    q
}

/// A zeroed huge block, with one retry after giving back what is held but
/// not live.
#[cold]
#[inline(never)]
pub(crate) fn huge_zeroed(size: usize, align: usize) -> *mut u8 {
    prof_huge(with_retry(large::within_limits(size, align), || large::alloc_zeroed(size, align)), size)
}

/// Resizes a huge block (see [`large::realloc`]), with one retry after
/// giving back what is held but not live.
pub(crate) fn huge_realloc(p: *mut u8, new_size: usize) -> *mut u8 {
    let may_help = large::within_limits(new_size, 1) && large::usable_size(p).is_some();
    if may_help && prof::has_live() {
        // The old block's record goes before the kernel can hand its range
        // to another thread; the resized block is counted as a new one (if
        // the resize fails, the block lives on without its record).
        prof::forget(p);
    }
    prof_huge(with_retry(may_help, || large::realloc(p, new_size)), new_size)
}

/// Resizes a block whose layout the caller knows (Rust's `realloc`): stays
/// in place while the class does not change, resizes a huge span's mapping,
/// and otherwise moves the block to one that `alloc_new` gives for the new
/// layout (the thread's heap, or the locked heap for `LockedPoolMalloc`).
///
/// # Safety
/// As for `GlobalAlloc::realloc`.
pub unsafe fn realloc_layout(
    p: *mut u8,
    layout: Layout,
    new_size: usize,
    alloc_new: fn(usize, usize, bool) -> *mut u8,
) -> *mut u8 {
    let align = layout.align();
    let Ok(new_layout) = Layout::from_size_align(new_size, align) else { return ptr::null_mut() };
    let old_in_pools = in_pools(layout.size(), align);
    if old_in_pools == in_pools(new_size, align) {
        if old_in_pools {
            // Same class: nothing to do.
            let class = pool_class(layout.size(), align);
            if class == pool_class(new_size, align) {
                // A medium block is checked in full (as its free would be);
                // a small one for alignment only.
                let why = if class >= size_class::NUM_SINGLE {
                    // SAFETY: by the caller (`GlobalAlloc::realloc`), `p` is a
                    // live block.
                    let live = matches!(unsafe { classify(p) }, Owned::Pool(_));
                    (!live).then_some("not the start of a live block")
                } else {
                    (p as usize & (ALIGNMENT - 1) != 0).then_some("not the start of a block")
                };
                if let Some(why) = why {
                    invalid_pointer("realloc", p, why);
                    return ptr::null_mut();
                }
                return p;
            }
        } else if align <= large::HEADER {
            // Large to large: resize the mapping.
            if large::usable_size(p).is_none() {
                invalid_pointer("realloc", p, "not the start of a live block");
                return ptr::null_mut();
            }
            return huge_realloc(p, new_size);
        }
    }
    // The block moves. Check the pointer before reading from it: a pointer
    // into the middle of a block at the end of its arena or mapping would
    // otherwise make the copy read past the end of the mapping.
    // SAFETY: by the caller (`GlobalAlloc::realloc`), `p` is a live block.
    if unsafe { classify(p) } == Owned::No {
        invalid_pointer("realloc", p, "not the start of a live block");
        return ptr::null_mut();
    }
    let q = alloc_new(new_layout.size(), align, false);
    if !q.is_null() {
        // SAFETY: both blocks are live and distinct; the copy fits both.
        unsafe {
            ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
            free_layout(p, layout);
        }
    }
    q
}

/// Frees a block whose layout the caller knows: a pool block skips the
/// ownership-map lookup.
///
/// # Safety
/// `p` must have been allocated by poolmalloc with `layout`.
#[inline(always)]
unsafe fn free_layout(p: *mut u8, layout: Layout) {
    if in_pools(layout.size(), layout.align()) {
        let b = ownership::freed_block(p, layout.size());
        // SAFETY: by the caller, a live pool block; as in `free`, the
        // wrapper's entry is never reached from the engine.
        unsafe { thread::free(b, move || invalid_pointer("dealloc", p, "a debug block outside debug mode")) };
    } else {
        // SAFETY: by the caller, a live huge block.
        unsafe { free_huge(p) };
    }
}
