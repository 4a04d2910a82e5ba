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
    core_alloc::huge(layout.size(), layout.align())
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
        unsafe { thread::free(crate::ownership::freed_block(p, layout.size()), move || core_alloc::debug_free(p)) };
    } else {
        // SAFETY: by the caller, `p` is a live large block.
        unsafe { core_alloc::free_large(p) };
    }
}

/// Allocates a pool block for a layout that fits the pools (debug mode:
/// a debug block for the same layout).
#[inline(always)]
fn alloc_small(layout: Layout) -> *mut u8 {
    thread::alloc(pool_class(&layout), move || crate::debug::malloc(layout.size(), layout.align(), false))
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
            let class = pool_class(&layout);
            if class == pool_class(&new_layout) {
                // A medium block is checked in full (as its free would be);
                // a small one for alignment only.
                let why = if class >= size_class::NUM_SINGLE {
                    let live = matches!(core_alloc::classify(p), core_alloc::Owned::Pool(_));
                    (!live).then_some("not the start of a live block")
                } else {
                    (p as usize & (ALIGNMENT - 1) != 0).then_some("not the start of a block")
                };
                if let Some(why) = why {
                    crate::fault::invalid_pointer("realloc", p, why);
                    return ptr::null_mut();
                }
                return p;
            }
        } else if layout.align() <= large::HEADER {
            // Large to large: resize the mapping.
            if large::usable_size(p).is_none() {
                crate::fault::invalid_pointer("realloc", p, "not the start of a live block");
                return ptr::null_mut();
            }
            return core_alloc::huge_realloc(p, new_size);
        }
    }
    // The block moves. Check the pointer before reading from it: a pointer
    // into the middle of a block at the end of its arena or mapping would
    // otherwise make the copy read past the end of the mapping.
    if core_alloc::classify(p) == core_alloc::Owned::No {
        crate::fault::invalid_pointer("realloc", p, "not the start of a live block");
        return ptr::null_mut();
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
            return alloc_small(layout);
        }
        alloc_large(layout)
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if in_pools(&layout) {
            let p = alloc_small(layout);
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
        core_alloc::huge_zeroed(layout.size(), layout.align())
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
        crate::lifecycle::global_init();
        if crate::options::debug() {
            return crate::debug::malloc(layout.size(), layout.align(), false);
        }
        if in_pools(&layout) {
            return thread::locked_alloc(pool_class(&layout));
        }
        core_alloc::huge(layout.size(), layout.align())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ownership::{self, TAG_ARENA, TAG_LARGE_HEAD};
    use std::vec::Vec;

    /// Allocates through the front, fills the block, checks it is ours.
    fn alloc_filled(layout: Layout, byte: u8) -> *mut u8 {
        // SAFETY: a non-zero layout.
        let p = unsafe { PoolMalloc.alloc(layout) };
        assert!(!p.is_null());
        assert_eq!(p.addr() % layout.align(), 0);
        // SAFETY: a fresh block of `layout.size()` bytes.
        unsafe { p.write_bytes(byte, layout.size()) };
        p
    }

    /// Checks the first and last bytes of a block, then frees it.
    fn check_free(p: *mut u8, layout: Layout, byte: u8) {
        // SAFETY: a live block of `layout`, filled with `byte`, given back.
        unsafe {
            assert_eq!((p.read(), p.add(layout.size() - 1).read()), (byte, byte));
            PoolMalloc.dealloc(p, layout);
        }
    }

    #[test]
    fn small_aligned_and_large_blocks_through_the_front() {
        let n = if cfg!(miri) { 25 } else { 250 };
        let layouts = [(1, 1), (24, 8), (100, 16), (200, 64), (700, 4096), (5000, 8), (30_000, 16), (100_000, 16)];
        let mut live = Vec::new();
        for round in 0..n {
            for (k, &(size, align)) in layouts.iter().enumerate() {
                if size > 10_000 && round % 8 != 0 {
                    continue;
                }
                let l = Layout::from_size_align(size, align).unwrap();
                let byte = (round * 8 + k) as u8;
                live.push((alloc_filled(l, byte), l, byte));
            }
        }
        for &(p, l, _) in &live {
            let tag = ownership::tag_of(p.addr());
            if in_pools(&l) {
                assert_eq!(tag, TAG_ARENA);
            } else {
                assert_eq!(tag, TAG_LARGE_HEAD);
            }
        }
        for (p, l, byte) in live {
            check_free(p, l, byte);
        }
        crate::lifecycle::check_current_heap();
    }

    #[test]
    fn realloc_keeps_contents_across_classes_and_paths() {
        let l = Layout::from_size_align(40, 8).unwrap();
        let p = alloc_filled(l, 0x5a);
        // SAFETY: each step passes the block and layout the previous gave.
        unsafe {
            // Same class: in place.
            let q = PoolMalloc.realloc(p, l, 48);
            assert_eq!(q, p);
            let l = Layout::from_size_align(48, 8).unwrap();
            // Another class: moved, contents kept.
            let q = PoolMalloc.realloc(q, l, 3000);
            assert_eq!(q.add(39).read(), 0x5a);
            q.add(40).write_bytes(0x6b, 2960);
            let l = Layout::from_size_align(3000, 8).unwrap();
            // Into a medium pool (a run of arena slices).
            let r = PoolMalloc.realloc(q, l, 200_000);
            assert_eq!(ownership::tag_of(r.addr()), TAG_ARENA);
            assert_eq!((r.read(), r.add(2999).read()), (0x5a, 0x6b));
            r.add(199_999).write(0x7c);
            let l = Layout::from_size_align(200_000, 8).unwrap();
            // Into a huge span.
            let r = PoolMalloc.realloc(r, l, 3 << 20);
            assert_eq!(ownership::tag_of(r.addr()), TAG_LARGE_HEAD);
            assert_eq!((r.read(), r.add(2999).read(), r.add(199_999).read()), (0x5a, 0x6b, 0x7c));
            let l = Layout::from_size_align(3 << 20, 8).unwrap();
            // Huge to larger: the span moves (or grows in place).
            let s = PoolMalloc.realloc(r, l, 5 << 20);
            assert_eq!((s.read(), s.add(2999).read(), s.add(199_999).read()), (0x5a, 0x6b, 0x7c));
            s.add((5 << 20) - 1).write(1);
            let l = Layout::from_size_align(5 << 20, 8).unwrap();
            // Back into a pool.
            let t = PoolMalloc.realloc(s, l, 100);
            assert_eq!(ownership::tag_of(t.addr()), TAG_ARENA);
            assert_eq!((t.read(), t.add(39).read(), t.add(99).read()), (0x5a, 0x5a, 0x6b));
            PoolMalloc.dealloc(t, Layout::from_size_align(100, 8).unwrap());
        }
    }

    #[test]
    fn boxes_and_vectors_through_the_allocator_api() {
        use allocator_api2::boxed::Box;
        use allocator_api2::vec::Vec as AVec;
        // Small boxes reach the allocator with pointers that, to Miri, cover
        // only the value: freeing them must not read or write beyond it
        // through those pointers.
        let n = if cfg!(miri) { 60 } else { 600 };
        let bytes: Vec<Box<u8, PoolMalloc>> = (0..n).map(|i| Box::new_in(i as u8, PoolMalloc)).collect();
        let pairs: Vec<Box<(u8, u64), PoolMalloc>> = (0..n).map(|i| Box::new_in((i as u8, i as u64), PoolMalloc)).collect();
        for (i, (b, p)) in bytes.iter().zip(&pairs).enumerate() {
            assert_eq!((**b, p.0, p.1), (i as u8, i as u8, i as u64));
        }
        drop(bytes);
        drop(pairs);
        // A box freed by a function it was moved into: the allocator writes
        // into the block while the callee's borrow of it is still live.
        fn consume<T>(b: Box<T, PoolMalloc>) -> usize {
            let n = core::mem::size_of_val(&*b);
            drop(b);
            n
        }
        for i in 0..n as u64 {
            assert_eq!(consume(Box::new_in([i; 4], PoolMalloc)), 32);
        }
        let mut v: AVec<u32, PoolMalloc> = AVec::new_in(PoolMalloc);
        for i in 0..(if cfg!(miri) { 3000 } else { 30_000 }) {
            v.push(i);
        }
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as u32));
        v.truncate(10);
        v.shrink_to_fit();
        assert_eq!(v.iter().sum::<u32>(), 45);
    }

    #[test]
    fn blocks_freed_by_another_thread_and_after_its_exit() {
        let n = if cfg!(miri) { 40 } else { 400 };
        let l = Layout::from_size_align(64, 16).unwrap();
        // Blocks of this thread's heap, freed by another thread (remote
        // frees), and blocks of the other thread's heap, freed here after it
        // exited (its pools were abandoned at exit).
        struct Blocks(Vec<*mut u8>);
        // SAFETY: the blocks are handed whole from one thread to the other.
        unsafe impl Send for Blocks {}
        let mine = Blocks((0..n).map(|_| alloc_filled(l, 1)).collect());
        let theirs = std::thread::spawn(move || {
            let mine = mine;
            for p in mine.0 {
                check_free(p, l, 1);
            }
            Blocks((0..n).map(|_| alloc_filled(l, 9)).collect())
        })
        .join()
        .unwrap();
        for p in theirs.0 {
            check_free(p, l, 9);
        }
        // The remote frees came back to this thread's pools.
        let again: Vec<*mut u8> = (0..n).map(|_| alloc_filled(l, 3)).collect();
        for p in again {
            check_free(p, l, 3);
        }
        crate::lifecycle::check_current_heap();
    }
}
