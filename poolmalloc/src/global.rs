//! Layer 8: the Rust fronts, `PoolMalloc` and `LockedPoolMalloc`.
//!
//! Both implement [`GlobalAlloc`] by forwarding each method to the
//! layout-aware entry points of [`crate::front`].

use crate::front;
use core::alloc::{GlobalAlloc, Layout};

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

// SAFETY: blocks are unique until freed, aligned as the layout asks, and at
// least as large as it asks; no method unwinds.
unsafe impl GlobalAlloc for PoolMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        front::alloc_layout(layout)
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        front::alloc_zeroed_layout(layout)
    }

    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: forwarded from the caller.
        unsafe { front::dealloc_layout(p, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded from the caller.
        unsafe { front::realloc_layout(p, layout, new_size, false) }
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
        front::alloc_locked_layout(layout)
    }

    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // The generic free sends blocks of the locked heap's pools to it.
        // SAFETY: forwarded from the caller.
        unsafe { front::dealloc_layout(p, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded from the caller.
        unsafe { front::realloc_layout(p, layout, new_size, true) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::in_pools;
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
            if in_pools(l.size(), l.align()) {
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
