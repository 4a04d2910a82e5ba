//! The allocation entry points shared by every front (layer 8's engine).
//!
//! These route a request to the right layer: pools through the thread layer
//! for sizes up to [`MAX_CLASS_SIZE`], large spans above. The fronts
//! (`PoolMalloc`, `LockedPoolMalloc`, the C library) are thin wrappers over
//! these functions. Nothing here allocates, panics or reads `std::env`.

use crate::large;
use crate::fault::invalid_pointer;
use crate::options;
use crate::os;
use crate::ownership::{self, TAG_ARENA, TAG_LARGE_HEAD, TAG_LARGE_TAIL, TAG_ZERO};
use crate::pool::state;
use crate::size_class::{self, ALIGNMENT, MAX_CLASS_SIZE};
use crate::{arena, debug, thread};
use core::ptr;
use crate::sync::atomic::Ordering::Relaxed;

/// Largest size any allocation may have (`PTRDIFF_MAX`, like glibc).
pub const MAX_ALLOC: usize = isize::MAX as usize;

/// Allocates `size` bytes aligned to 16. Null when out of memory or when
/// `size` is impossibly large; every allocation function here then also sets
/// `errno` to `ENOMEM`, as C requires (Rust callers can ignore it).
#[inline(always)]
pub fn malloc(size: usize) -> *mut u8 {
    // Size 0 wraps around and takes the cold path too (see `malloc_zero`);
    // the class lookup then costs no more than for `size` itself.
    let below = size.wrapping_sub(1);
    if below < MAX_CLASS_SIZE {
        return thread::alloc(size_class::class_of_one_more(below), move || debug::malloc(size, ALIGNMENT, false));
    }
    malloc_large(size)
}

#[cold]
#[inline(never)]
fn malloc_large(size: usize) -> *mut u8 {
    if options::debug() {
        return debug::malloc(size, ALIGNMENT, false);
    }
    if size == 0 {
        return malloc_zero();
    }
    huge(size, ALIGNMENT)
}

/// `malloc(0)`: in secure mode an address that faults when read or written
/// (see [`large::zero_alloc`]); otherwise, or when that region is full, the
/// smallest block.
fn malloc_zero() -> *mut u8 {
    if options::secure() {
        let p = large::zero_alloc();
        if !p.is_null() {
            return p;
        }
    }
    thread::alloc(size_class::class_of(0), move || debug::malloc(0, ALIGNMENT, false))
}

/// A huge block, with one retry after giving back what is held but not
/// live.
#[cold]
#[inline(never)]
pub(crate) fn huge(size: usize, align: usize) -> *mut u8 {
    with_retry(large::within_limits(size, align), || large::alloc(size, align))
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

/// Allocates `size` bytes aligned to `align` (a power of two).
pub fn malloc_aligned(size: usize, align: usize) -> *mut u8 {
    debug_assert!(align.is_power_of_two());
    if align <= ALIGNMENT {
        return malloc(size);
    }
    if options::debug() {
        return debug::malloc(size, align, false);
    }
    match size_class::class_of_aligned(size, align) {
        Some(c) => thread::alloc(c, move || debug::malloc(size, align, false)),
        None => huge(size, align),
    }
}

/// Frees `p` (null is ignored). A pointer poolmalloc does not own is
/// reported (see `POOLMALLOC_INVALID_FREE`).
///
/// # Safety
/// `p` must be null, or a block from poolmalloc not freed since. Foreign
/// pointers are detected and never dereferenced; pointers into poolmalloc's
/// own memory that are not live blocks are detected only in part.
#[inline(always)]
pub unsafe fn free(p: *mut u8) {
    if ownership::tag_of(p as usize) == TAG_ARENA {
        // SAFETY: forwarded from the caller; `p` is inside an arena.
        unsafe { thread::free(p, move || debug_free(p)) };
    } else {
        free_not_in_arena(p);
    }
}

/// Frees `p` given the size the caller states (C23 `free_sized`,
/// `free_aligned_sized`; `what` names the entry point in reports). Debug
/// mode checks the size against the block's; otherwise it is `free`.
///
/// # Safety
/// As for [`free`].
pub unsafe fn free_sized(p: *mut u8, size: usize, what: &str) {
    if options::debug() {
        // SAFETY: the caller vouches for `p`; debug mode checks it.
        return unsafe { debug::free(p, Some(size), what) };
    }
    // SAFETY: forwarded from the caller.
    unsafe { free(p) }
}

/// Debug mode's `free`.
#[cold]
#[inline(never)]
pub(crate) fn debug_free(p: *mut u8) {
    // SAFETY: the caller of `free` vouches for `p`; debug mode checks it.
    unsafe { debug::free(p, None, "free") };
}

#[cold]
#[inline(never)]
fn free_not_in_arena(p: *mut u8) {
    if p.is_null() {
        return;
    }
    if options::debug() {
        return debug_free(p);
    }
    match ownership::tag_of(p as usize) {
        TAG_LARGE_HEAD | TAG_LARGE_TAIL => {
            if !large::free(p) {
                invalid_pointer("free", p, "not the start of a live block");
            }
        }
        TAG_ZERO => {
            if !large::zero_free(p) {
                invalid_pointer("free", p, "not a live zero-size block");
            }
        }
        _ => invalid_pointer("free", p, "not allocated by poolmalloc"),
    }
}

/// Frees a large block; reports `p` if it is not one.
///
/// # Safety
/// `p` must be a block from poolmalloc that the caller gives up (foreign
/// pointers are detected and reported).
pub unsafe fn free_large(p: *mut u8) {
    if options::debug() {
        return debug_free(p);
    }
    if !large::free(p) {
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
pub fn classify(p: *mut u8) -> Owned {
    match ownership::tag_of(p as usize) {
        TAG_ARENA => {
            // SAFETY: `p` is in an arena, whose header is mapped.
            let pool_ptr = arena::owning_pool(p);
            // SAFETY: as above.
            let pool = unsafe { &*pool_ptr };
            let st = pool.state.load(Relaxed);
            let aligned = p as usize & (ALIGNMENT - 1) == 0;
            let block = (st == state::USED || st == state::ABANDONED) && aligned && pool.is_block_start(p);
            // A medium block is also checked for having been freed.
            if block && (!pool.is_medium() || thread::medium_block_live(pool_ptr, p)) {
                Owned::Pool(pool.block_size.get() as usize)
            } else {
                Owned::No
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
    if options::debug() {
        // SAFETY: the caller vouches for `p`; debug mode checks it.
        return unsafe { debug::usable_size(p) };
    }
    match classify(p) {
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
    if options::debug() {
        // SAFETY: forwarded from the caller.
        return unsafe { debug::realloc(p, new_size, ALIGNMENT) };
    }
    match classify(p) {
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
    let q = malloc(new_size);
    if q.is_null() {
        return q;
    }
    // SAFETY: both blocks are live and distinct; the copy fits both.
    unsafe {
        ptr::copy_nonoverlapping(p, q, old_usable.min(new_size));
        free(p);
    }
    q
}

/// Allocates `size` zeroed bytes aligned to 16, skipping the zeroing for
/// fresh huge mappings. The whole usable size reads as zero, not only the
/// `size` bytes asked for: programs that treat `malloc_usable_size` as
/// capacity rely on it.
pub fn calloc(size: usize) -> *mut u8 {
    if options::debug() {
        return debug::malloc(size, ALIGNMENT, true);
    }
    // Size 0 wraps around: a zero-size block, as `malloc(0)` gives.
    if size.wrapping_sub(1) >= MAX_CLASS_SIZE {
        return if size == 0 { calloc_zero() } else { huge_zeroed(size, ALIGNMENT) };
    }
    let class = size_class::class_of(size);
    let p = thread::alloc(class, move || debug::malloc(size, ALIGNMENT, true));
    // The first call of the process reads the options on its way: if it
    // turned debug mode on, `p` is a zeroed debug block, whose pads must stay.
    if !p.is_null() && !options::debug() {
        // SAFETY: a fresh block of its class's size.
        unsafe { ptr::write_bytes(p, 0, size_class::class_size(class)) };
    }
    p
}

/// `calloc` of 0 bytes: [`malloc_zero`], and a block of the smallest class
/// zeroed in full like every `calloc` block.
#[cold]
#[inline(never)]
fn calloc_zero() -> *mut u8 {
    let p = malloc_zero();
    if !p.is_null() && ownership::tag_of(p as usize) == TAG_ARENA && !options::debug() {
        // SAFETY: a fresh block of the smallest class.
        unsafe { ptr::write_bytes(p, 0, size_class::class_size(size_class::class_of(0))) };
    }
    p
}

/// A zeroed huge block, with one retry after giving back what is held but
/// not live.
#[cold]
#[inline(never)]
pub(crate) fn huge_zeroed(size: usize, align: usize) -> *mut u8 {
    with_retry(large::within_limits(size, align), || large::alloc_zeroed(size, align))
}

/// Resizes a huge block (see [`large::realloc`]), with one retry after
/// giving back what is held but not live.
pub(crate) fn huge_realloc(p: *mut u8, new_size: usize) -> *mut u8 {
    let may_help = large::within_limits(new_size, 1) && large::usable_size(p).is_some();
    with_retry(may_help, || large::realloc(p, new_size))
}
