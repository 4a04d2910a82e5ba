//! The fronts' entry points, and the one place the process's mode is
//! chosen (layer 8).
//!
//! A process runs on one of two allocators with the same entry points: the
//! engine ([`crate::engine`]) or the debug wrapper ([`crate::debug`]), which
//! takes its raw blocks from the engine. The choice is made once, at the
//! first call that needs it, from `POOLMALLOC_DEBUG`, and reaches the code
//! in two ways, so that no path tests the option:
//!
//! * **The fast paths** (a pool class's `malloc`, `calloc` and `free`) go
//!   straight to the thread layer. In debug mode every thread's heap slot
//!   names the debug proxy heap, whose classes are empty, so each request
//!   falls through to the slow path, which calls the wrapper entry point it
//!   was handed (the `move` closures below): the decision was made when the
//!   thread's slot was set.
//! * **Every other request** (huge, zero-size and over-aligned blocks,
//!   `realloc`, `malloc_usable_size`, the locked front) goes through the
//!   table of entry points [`ops`] returns: the engine's or the wrapper's.
//!
//! `PoolMalloc`, `LockedPoolMalloc` and the C library forward here; so does
//! `Heap` for the blocks it does not own.

use crate::engine;
use crate::ownership::{self, TAG_ARENA};
use crate::size_class::{self, ALIGNMENT, MAX_CLASS_SIZE};
use crate::sync::atomic::{AtomicPtr, Ordering::Acquire, Ordering::Release};
use crate::{debug, lifecycle, options};
use core::alloc::Layout;
use core::ptr;

/// The entry points an allocator offers the fronts. Each takes every
/// request of its kind, not only the slow ones.
pub(crate) struct Ops {
    /// `size` bytes aligned to `align`, zeroed if the flag says so.
    alloc: fn(usize, usize, bool) -> *mut u8,
    /// As `alloc`, from the locked heap (`LockedPoolMalloc`).
    alloc_locked: fn(usize, usize, bool) -> *mut u8,
    /// Frees a block, given the size its caller states (if any) and the
    /// entry point's name for reports.
    free: unsafe fn(*mut u8, Option<usize>, &'static str),
    /// Frees a block its caller's layout says is huge.
    free_huge: unsafe fn(*mut u8),
    /// C `realloc` of a live block to a non-zero size.
    realloc: unsafe fn(*mut u8, usize) -> *mut u8,
    /// Rust `realloc`, with the block's layout; the flag asks for the
    /// locked heap.
    realloc_layout: unsafe fn(*mut u8, Layout, usize, bool) -> *mut u8,
    /// `malloc_usable_size` of a non-null block.
    usable_size: unsafe fn(*mut u8, &'static str) -> usize,
}

/// The engine.
static ENGINE: Ops = Ops {
    alloc: engine::alloc,
    alloc_locked: engine::alloc_locked,
    free: engine::free,
    free_huge: engine::free_huge,
    realloc: engine::realloc,
    realloc_layout: engine_realloc_layout,
    usable_size: engine::usable_size,
};

/// The debug wrapper.
static DEBUG: Ops = Ops {
    alloc: debug::malloc,
    alloc_locked: debug::malloc,
    free: debug::free,
    free_huge: debug_free_huge,
    realloc: debug_realloc,
    realloc_layout: debug_realloc_layout,
    usable_size: debug_usable_size,
};

/// Before the choice: each entry makes it, then forwards.
static UNCHOSEN: Ops = Ops {
    alloc: |size, align, zero| (choose().alloc)(size, align, zero),
    alloc_locked: |size, align, zero| (choose().alloc_locked)(size, align, zero),
    free: first_free,
    free_huge: first_free_huge,
    realloc: first_realloc,
    realloc_layout: first_realloc_layout,
    usable_size: first_usable_size,
};

/// The table in use: [`UNCHOSEN`] until the first call chooses.
static OPS: AtomicPtr<Ops> = AtomicPtr::new(ptr::addr_of!(UNCHOSEN).cast_mut());

/// The entry points of the allocator this process runs on.
#[inline(always)]
pub(crate) fn ops() -> &'static Ops {
    // SAFETY: OPS only ever holds the address of one of the three statics.
    unsafe { &*OPS.load(Acquire) }
}

/// Chooses the allocator, once: reads the options (through the process's
/// set-up) and publishes the table. Racing first calls choose the same.
#[cold]
#[inline(never)]
fn choose() -> &'static Ops {
    lifecycle::global_init();
    let chosen = if options::debug() {
        &DEBUG
    } else if crate::os::valgrind_wrapper() {
        valgrind_ops()
    } else {
        &ENGINE
    };
    OPS.store(ptr::from_ref(chosen).cast_mut(), Release);
    chosen
}

/// The valgrind wrapper's table (the `valgrind` feature, under valgrind).
#[cfg(feature = "valgrind")]
fn valgrind_ops() -> &'static Ops {
    &vg::OPS
}

#[cfg(not(feature = "valgrind"))]
fn valgrind_ops() -> &'static Ops {
    &ENGINE
}

/// The valgrind wrapper: the engine's locked heap, with each block told to
/// memcheck as it is handed out (`MALLOCLIKE_BLOCK`) and given back
/// (`FREELIKE_BLOCK`), so that memcheck checks the program's use of each
/// block, reports leaks, and marks freed blocks inaccessible. The first 16
/// bytes of a freed block (its free-list link and double-free mark) are
/// made defined again before poolmalloc reads them, so the double-free
/// check raises no false report. Every allocation, `calloc`'s zeroing and
/// `realloc`'s copy happen after the block is told, so poolmalloc never
/// writes into a block memcheck considers freed.
#[cfg(feature = "valgrind")]
mod vg {
    use super::Ops;
    use crate::os::valgrind;
    use crate::ownership::{self, TAG_ARENA};
    use crate::size_class::ALIGNMENT;
    use crate::{engine, thread};
    use core::alloc::Layout;
    use core::ptr;

    pub(super) static OPS: Ops = Ops {
        alloc,
        alloc_locked: alloc,
        free,
        free_huge: |p| {
            // SAFETY: forwarded from the caller.
            unsafe { free(p, None, "free") }
        },
        realloc: |p, n| {
            // SAFETY: forwarded from the caller.
            unsafe { realloc(p, n, ALIGNMENT) }
        },
        realloc_layout: |p, layout: Layout, n, _locked| {
            // SAFETY: forwarded from the caller.
            unsafe { realloc(p, n, layout.align()) }
        },
        usable_size: engine::usable_size,
    };

    fn alloc(size: usize, align: usize, zero: bool) -> *mut u8 {
        let p = engine::alloc_locked(size, align, false);
        if !p.is_null() {
            // SAFETY: a block just handed out.
            let n = unsafe { engine::usable_size(p, "malloc") };
            valgrind::malloclike(p, n, false);
            if zero {
                // SAFETY: `n` usable bytes at `p`, ours to write.
                unsafe { ptr::write_bytes(p, 0, n) };
            }
        }
        p
    }

    /// # Safety
    /// As for [`engine::free`].
    unsafe fn free(p: *mut u8, size: Option<usize>, what: &'static str) {
        if p.is_null() {
            return;
        }
        valgrind::freelike(p);
        if ownership::tag_of(p as usize) != TAG_ARENA {
            // SAFETY: forwarded from the caller; the engine reports what is
            // not a live block (and never reaches the heap slot here).
            return unsafe { engine::free(p, size, what) };
        }
        // SAFETY: forwarded from the caller.
        if let engine::Owned::Pool(_) = unsafe { engine::classify(p) } {
            valgrind::make_defined(p, 16);
            // A block of the locked heap, as every block of this wrapper is;
            // its free still checks for a double free.
            thread::locked_free(p);
        } else {
            crate::fault::invalid_pointer(what, p, "not the start of a live block");
        }
    }

    /// A new block, the contents copied, the old one freed: every step
    /// told to memcheck, none in place.
    ///
    /// # Safety
    /// `p` must be a live block of this wrapper.
    unsafe fn realloc(p: *mut u8, new_size: usize, align: usize) -> *mut u8 {
        // SAFETY: forwarded from the caller.
        let old = unsafe { engine::usable_size(p, "realloc") };
        let q = alloc(new_size, align, false);
        if !q.is_null() {
            // SAFETY: both blocks are live and distinct; `old` and
            // `new_size` bound what each holds.
            unsafe {
                ptr::copy_nonoverlapping(p, q, old.min(new_size));
                free(p, None, "realloc");
            }
        }
        q
    }
}

unsafe fn engine_realloc_layout(p: *mut u8, layout: Layout, new_size: usize, locked: bool) -> *mut u8 {
    let alloc_new = if locked { engine::alloc_locked } else { engine::alloc };
    // SAFETY: forwarded from the caller.
    unsafe { engine::realloc_layout(p, layout, new_size, alloc_new) }
}

unsafe fn debug_free_huge(p: *mut u8) {
    // SAFETY: forwarded from the caller; debug mode checks `p`.
    unsafe { debug::free(p, None, "free") }
}

unsafe fn debug_realloc(p: *mut u8, new_size: usize) -> *mut u8 {
    // SAFETY: forwarded from the caller; debug mode checks `p`.
    unsafe { debug::realloc(p, new_size, ALIGNMENT) }
}

unsafe fn debug_realloc_layout(p: *mut u8, layout: Layout, new_size: usize, _locked: bool) -> *mut u8 {
    // SAFETY: forwarded from the caller; debug mode checks `p`.
    unsafe { debug::realloc(p, new_size, layout.align()) }
}

unsafe fn debug_usable_size(p: *mut u8, _what: &'static str) -> usize {
    // SAFETY: forwarded from the caller; debug mode checks `p`.
    unsafe { debug::usable_size(p) }
}

unsafe fn first_free(p: *mut u8, size: Option<usize>, what: &'static str) {
    // SAFETY: forwarded from the caller.
    unsafe { (choose().free)(p, size, what) }
}

unsafe fn first_free_huge(p: *mut u8) {
    // SAFETY: forwarded from the caller.
    unsafe { (choose().free_huge)(p) }
}

unsafe fn first_realloc(p: *mut u8, new_size: usize) -> *mut u8 {
    // SAFETY: forwarded from the caller.
    unsafe { (choose().realloc)(p, new_size) }
}

unsafe fn first_realloc_layout(p: *mut u8, layout: Layout, new_size: usize, locked: bool) -> *mut u8 {
    // SAFETY: forwarded from the caller.
    unsafe { (choose().realloc_layout)(p, layout, new_size, locked) }
}

unsafe fn first_usable_size(p: *mut u8, what: &'static str) -> usize {
    // SAFETY: forwarded from the caller.
    unsafe { (choose().usable_size)(p, what) }
}

// ---------------------------------------------------------------------------
// The C entry points.

/// Allocates `size` bytes aligned to 16. Null when out of memory or when
/// `size` is impossibly large; every allocation function here then also sets
/// `errno` to `ENOMEM`, as C requires (Rust callers can ignore it).
#[inline(always)]
pub fn malloc(size: usize) -> *mut u8 {
    // Size 0 wraps around and takes the cold path too; the class lookup
    // then costs no more than for `size` itself.
    let below = size.wrapping_sub(1);
    if below < MAX_CLASS_SIZE {
        let class = size_class::class_of_one_more(below);
        return engine::alloc_class(class, move || (ops().alloc)(size, ALIGNMENT, false));
    }
    alloc_cold(size, ALIGNMENT, false)
}

#[cold]
#[inline(never)]
fn alloc_cold(size: usize, align: usize, zero: bool) -> *mut u8 {
    (ops().alloc)(size, align, zero)
}

/// Allocates `size` bytes aligned to `align` (a power of two).
pub fn malloc_aligned(size: usize, align: usize) -> *mut u8 {
    debug_assert!(align.is_power_of_two());
    if align <= ALIGNMENT {
        return malloc(size);
    }
    if engine::in_pools(size, align) {
        let class = engine::pool_class(size, align);
        return engine::alloc_class(class, move || (ops().alloc)(size, align, false));
    }
    alloc_cold(size, align, false)
}

/// Allocates `size` zeroed bytes aligned to 16, skipping the zeroing for
/// fresh huge mappings. The whole usable size reads as zero, not only the
/// `size` bytes asked for: programs that treat `malloc_usable_size` as
/// capacity rely on it.
pub fn calloc(size: usize) -> *mut u8 {
    // Size 0 wraps around: a zero-size block, as `malloc(0)` gives.
    if size.wrapping_sub(1) >= MAX_CLASS_SIZE {
        return alloc_cold(size, ALIGNMENT, true);
    }
    engine::calloc_class(size_class::class_of(size), move || (ops().alloc)(size, ALIGNMENT, true))
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
        unsafe { engine::free_in_arena(p, move || wrapped_free(p, None, "free")) };
    } else {
        free_cold(p);
    }
}

#[cold]
#[inline(never)]
fn free_cold(p: *mut u8) {
    if !p.is_null() {
        // SAFETY: the caller of `free` vouches for `p`, which is checked.
        unsafe { (ops().free)(p, None, "free") };
    }
}

/// The table's `free`, out of line (the fast path's wrapper entry).
#[cold]
#[inline(never)]
fn wrapped_free(p: *mut u8, size: Option<usize>, what: &'static str) {
    // SAFETY: the caller of the front's free vouches for `p`.
    unsafe { (ops().free)(p, size, what) }
}

/// Frees `p` if it points into poolmalloc's memory (see [`engine::owns`])
/// and says whether it did, with one ownership lookup for both: for callers
/// that free another allocator's blocks through the same call (the Python
/// extension's in-process mode).
///
/// # Safety
/// `p` must be null, or a block of poolmalloc's or of another allocator,
/// not freed since.
#[inline(always)]
pub unsafe fn free_if_ours(p: *mut u8) -> bool {
    if ownership::tag_of(p as usize) == TAG_ARENA {
        // SAFETY: forwarded from the caller; `p` is inside an arena.
        unsafe { engine::free_in_arena(p, move || wrapped_free(p, None, "free")) };
        return true;
    }
    free_if_ours_cold(p)
}

#[cold]
#[inline(never)]
fn free_if_ours_cold(p: *mut u8) -> bool {
    if !engine::owns(p) {
        return false;
    }
    // SAFETY: the caller of `free_if_ours` vouches for `p`, which is ours.
    unsafe { (ops().free)(p, None, "free") };
    true
}

/// Frees `p` given the size the caller states (C23 `free_sized`,
/// `free_aligned_sized`; `what` names the entry point in reports). The debug
/// wrapper checks the size against the block's.
///
/// # Safety
/// As for [`free`].
pub unsafe fn free_sized(p: *mut u8, size: usize, what: &'static str) {
    if ownership::tag_of(p as usize) == TAG_ARENA {
        // SAFETY: forwarded from the caller; `p` is inside an arena.
        unsafe { engine::free_in_arena(p, move || wrapped_free(p, Some(size), what)) };
    } else if !p.is_null() {
        // SAFETY: forwarded from the caller.
        unsafe { (ops().free)(p, Some(size), what) };
    }
}

/// Usable size of the block at `p` (0 for null). Reports invalid pointers
/// as `what` and returns 0 for them.
///
/// # Safety
/// `p` must be null or a live block from poolmalloc (foreign pointers are
/// detected and reported).
pub unsafe fn usable_size(p: *mut u8, what: &'static str) -> usize {
    if p.is_null() {
        return 0;
    }
    // SAFETY: forwarded from the caller.
    unsafe { (ops().usable_size)(p, what) }
}

/// Resizes the block at `p` (not null) to `new_size` bytes (not zero),
/// keeping its contents. The result is aligned to 16 only. Returns null and
/// leaves `p` intact when memory is exhausted.
///
/// # Safety
/// `p` must be a live block from poolmalloc.
pub unsafe fn realloc(p: *mut u8, new_size: usize) -> *mut u8 {
    // SAFETY: forwarded from the caller.
    unsafe { (ops().realloc)(p, new_size) }
}

// ---------------------------------------------------------------------------
// The Rust entry points: a layout whose size and alignment fit a pool goes
// straight to the thread layer with the class looked up from the size (a
// constant when the layout is), and a free uses the layout to skip the
// ownership-map lookup, since Rust's contract guarantees the pointer came
// from this allocator with this layout.

/// `GlobalAlloc::alloc`.
#[inline(always)]
pub fn alloc_layout(layout: Layout) -> *mut u8 {
    let (size, align) = (layout.size(), layout.align());
    if engine::in_pools(size, align) {
        return engine::alloc_class(engine::pool_class(size, align), move || (ops().alloc)(size, align, false));
    }
    alloc_cold(size, align, false)
}

/// `GlobalAlloc::alloc_zeroed`: the layout's bytes are zeroed (fresh huge
/// mappings are zero already).
#[inline(always)]
pub fn alloc_zeroed_layout(layout: Layout) -> *mut u8 {
    if engine::in_pools(layout.size(), layout.align()) {
        let p = alloc_layout(layout);
        if !p.is_null() {
            // SAFETY: a fresh block of at least `size` bytes.
            unsafe { ptr::write_bytes(p, 0, layout.size()) };
        }
        return p;
    }
    alloc_cold(layout.size(), layout.align(), true)
}

/// `GlobalAlloc::dealloc`.
///
/// # Safety
/// `p` must have been allocated by poolmalloc with `layout`.
#[inline(always)]
pub unsafe fn dealloc_layout(p: *mut u8, layout: Layout) {
    if engine::in_pools(layout.size(), layout.align()) {
        let b = ownership::freed_block(p, layout.size());
        // SAFETY: by the caller, `p` is a live pool block (a debug block
        // goes to the wrapper: its pool never matches a thread).
        unsafe { engine::free_in_arena(b, move || wrapped_free(p, None, "free")) };
    } else {
        // SAFETY: by the caller, `p` is a live huge block.
        unsafe { free_huge_cold(p) };
    }
}

#[cold]
#[inline(never)]
unsafe fn free_huge_cold(p: *mut u8) {
    // SAFETY: forwarded from the caller.
    unsafe { (ops().free_huge)(p) }
}

/// `GlobalAlloc::realloc`; `locked` says whether a moved block comes from
/// the locked heap.
///
/// # Safety
/// As for `GlobalAlloc::realloc`.
#[inline]
pub unsafe fn realloc_layout(p: *mut u8, layout: Layout, new_size: usize, locked: bool) -> *mut u8 {
    // SAFETY: forwarded from the caller.
    unsafe { (ops().realloc_layout)(p, layout, new_size, locked) }
}

/// `GlobalAlloc::alloc` of `LockedPoolMalloc`: the locked heap. The locked
/// heap has no slot to name the wrapper, so a pool class goes straight to
/// the engine only once the engine is the chosen table.
#[inline]
pub fn alloc_locked_layout(layout: Layout) -> *mut u8 {
    let (size, align) = (layout.size(), layout.align());
    if engine::in_pools(size, align) && ptr::eq(ops(), &ENGINE) {
        return engine::alloc_locked_class(engine::pool_class(size, align));
    }
    (ops().alloc_locked)(size, align, false)
}
