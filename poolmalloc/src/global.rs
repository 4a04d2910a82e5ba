//! Layer 8: the Rust fronts, `PoolMalloc` and `LockedPoolMalloc`.
//!
//! Both implement [`GlobalAlloc`]. They are thin: a `Layout` whose size and
//! alignment fit a pool goes straight to the thread layer with the class
//! looked up from the size (a constant when the layout is), and `dealloc`
//! uses the layout to skip the ownership-map lookup, since Rust's contract
//! guarantees the pointer came from this allocator with this layout. Every
//! other request goes through [`crate::alloc`].

use crate::alloc as core_alloc;
use crate::large;
use crate::size_class::{self, ALIGNMENT, MAX_CLASS_SIZE, MAX_POOL_ALIGN_SHIFT};
use crate::thread;
use core::alloc::{GlobalAlloc, Layout};
use core::ptr;

/// The poolmalloc allocator with per-thread heaps.
///
/// ```
/// #[global_allocator]
/// static GLOBAL: poolmalloc::PoolMalloc = poolmalloc::PoolMalloc;
///
/// let v: Vec<u32> = (0..1000).collect();
/// assert_eq!(v.iter().sum::<u32>(), 499_500);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct PoolMalloc;

impl PoolMalloc {
    /// The allocator (also available as the unit value `PoolMalloc`).
    pub const fn new() -> Self {
        PoolMalloc
    }
}

/// Whether a layout is served from pools (the same test on alloc and free).
#[inline(always)]
pub(crate) fn in_pools(layout: &Layout) -> bool {
    layout.size() <= MAX_CLASS_SIZE && layout.align() <= 1 << MAX_POOL_ALIGN_SHIFT
}

#[inline(always)]
pub(crate) fn pool_class(layout: &Layout) -> usize {
    if layout.align() <= ALIGNMENT {
        size_class::class_of(layout.size())
    } else {
        // In pools, an aligned class always exists (the largest class is a
        // multiple of every alignment pools serve).
        size_class::class_of_aligned(layout.size(), layout.align()).unwrap_or(size_class::NUM_CLASSES - 1)
    }
}

#[cold]
#[inline(never)]
fn alloc_large(layout: Layout) -> *mut u8 {
    if crate::options::debug() {
        return crate::debug::malloc(layout.size(), layout.align(), false);
    }
    large::alloc(layout.size(), layout.align())
}

/// Frees a block whose layout is known.
///
/// # Safety
/// `p` must have been allocated by poolmalloc with `layout`.
#[inline(always)]
unsafe fn dealloc_with(p: *mut u8, layout: &Layout) {
    if in_pools(layout) {
        // SAFETY: by the caller, `p` is a live pool block (in debug mode the
        // slow path takes it, since debug blocks' pools never match a
        // thread).
        unsafe { thread::free(p) };
    } else {
        // SAFETY: by the caller, `p` is a live large block.
        unsafe { core_alloc::free_large(p) };
    }
}

/// Shared realloc for both fronts.
///
/// # Safety
/// As for `GlobalAlloc::realloc`.
unsafe fn realloc_with(p: *mut u8, layout: Layout, new_size: usize, alloc: impl Fn(Layout) -> *mut u8) -> *mut u8 {
    if crate::options::debug() {
        // SAFETY: forwarded from the caller.
        return unsafe { crate::debug::realloc(p, new_size, layout.align()) };
    }
    let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else { return ptr::null_mut() };
    let old_in_pools = in_pools(&layout);
    if old_in_pools == in_pools(&new_layout) {
        if old_in_pools {
            // Same class: nothing to do.
            if pool_class(&layout) == pool_class(&new_layout) {
                if p as usize & (ALIGNMENT - 1) != 0 {
                    core_alloc::invalid_pointer("realloc", p, "not the start of a block");
                    return ptr::null_mut();
                }
                return p;
            }
        } else if layout.align() <= large::HEADER {
            // Large to large: resize the mapping.
            if large::usable_size(p).is_none() {
                core_alloc::invalid_pointer("realloc", p, "not the start of a live block");
                return ptr::null_mut();
            }
            return large::realloc(p, new_size);
        }
    }
    let q = alloc(new_layout);
    if !q.is_null() {
        // SAFETY: both blocks are live and distinct; the copy fits both.
        unsafe {
            ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
            dealloc_with(p, &layout);
        }
    }
    q
}

// SAFETY: blocks are unique until freed, aligned as the layout asks, and at
// least as large as it asks; no method unwinds.
unsafe impl GlobalAlloc for PoolMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if in_pools(&layout) {
            return thread::alloc(pool_class(&layout), layout.size(), layout.align());
        }
        alloc_large(layout)
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if in_pools(&layout) {
            let p = thread::alloc(pool_class(&layout), layout.size(), layout.align());
            if !p.is_null() {
                // SAFETY: a fresh block of at least `size` bytes.
                unsafe { ptr::write_bytes(p, 0, layout.size()) };
            }
            return p;
        }
        if crate::options::debug() {
            return crate::debug::malloc(layout.size(), layout.align(), true);
        }
        // Fresh mappings are zero; cached spans are zeroed by the large path.
        large::alloc_zeroed(layout.size(), layout.align())
    }

    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: forwarded from the caller.
        unsafe { dealloc_with(p, &layout) }
    }

    #[inline]
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded from the caller.
        unsafe { realloc_with(p, layout, new_size, |l| self.alloc(l)) }
    }
}

/// The poolmalloc allocator in locked mode: one heap behind one lock, the
/// model of pymalloc under the GIL. It exists so that benchmarks can show
/// what per-thread heaps buy; use [`PoolMalloc`] otherwise.
///
/// ```
/// use std::alloc::{GlobalAlloc, Layout};
/// let a = poolmalloc::LockedPoolMalloc;
/// let l = Layout::from_size_align(40, 8).unwrap();
/// unsafe {
///     let p = a.alloc(l);
///     assert!(!p.is_null());
///     a.dealloc(p, l);
/// }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct LockedPoolMalloc;

impl LockedPoolMalloc {
    /// The allocator.
    pub const fn new() -> Self {
        LockedPoolMalloc
    }
}

// SAFETY: as for PoolMalloc; the locked heap is only touched under its lock.
unsafe impl GlobalAlloc for LockedPoolMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        thread::global_init();
        if crate::options::debug() {
            return crate::debug::malloc(layout.size(), layout.align(), false);
        }
        if in_pools(&layout) {
            return thread::locked_alloc(pool_class(&layout));
        }
        large::alloc(layout.size(), layout.align())
    }

    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // The generic free sends blocks of the locked heap's pools to it.
        // SAFETY: forwarded from the caller.
        unsafe { dealloc_with(p, &layout) }
    }

    #[inline]
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded from the caller.
        unsafe { realloc_with(p, layout, new_size, |l| self.alloc(l)) }
    }
}
