//! Shared pieces of the micro-benchmarks: the allocators under comparison,
//! called directly through `GlobalAlloc` in one process.

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;

/// The allocators every benchmark compares, by name.
pub fn allocators() -> Vec<(&'static str, &'static (dyn GlobalAlloc + Sync))> {
    vec![
        ("poolmalloc", &poolmalloc::PoolMalloc),
        ("poolmalloc-locked", &poolmalloc::LockedPoolMalloc),
        ("mimalloc", &mimalloc::MiMalloc),
        ("jemalloc", &tikv_jemallocator::Jemalloc),
        ("system", &std::alloc::System),
    ]
}

/// One batch: allocates `BATCH` blocks of `layout`, writes one byte of each,
/// then frees them in LIFO order. Returns a value derived from the blocks so
/// the work cannot be optimised away.
#[inline(always)]
pub fn batch<A: GlobalAlloc + ?Sized, const BATCH: usize>(a: &A, layout: Layout) -> usize {
    let mut ptrs = [std::ptr::null_mut::<u8>(); BATCH];
    let mut sum = 0usize;
    for p in ptrs.iter_mut() {
        // SAFETY: a valid, non-zero-size layout.
        let q = unsafe { a.alloc(layout) };
        assert!(!q.is_null());
        // SAFETY: the block holds at least one byte.
        unsafe { q.write(1) };
        sum = sum.wrapping_add(q as usize);
        *p = q;
    }
    for &p in ptrs.iter().rev() {
        // SAFETY: allocated above with `layout`.
        unsafe { a.dealloc(black_box(p), layout) };
    }
    sum
}
