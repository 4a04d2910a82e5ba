//! Layer 8: first-class heaps.
//!
//! A [`Heap`] is a heap of pools that belongs to a value rather than to a
//! thread: allocate from it, free single blocks back to it, and drop it to
//! free everything in it at once. Dropping gives its pools straight back to
//! the arenas without visiting the blocks (the way mimalloc's heap-destroy
//! does), and frees its large blocks through the list that links them.
//!
//! It implements the Allocator API through `allocator-api2`, so collections
//! can live in it:
//!
//! ```
//! use allocator_api2::vec::Vec;
//! let heap = poolmalloc::Heap::new();
//! let mut v = Vec::new_in(&heap);
//! v.extend(0..1000u32);
//! assert_eq!(v.iter().sum::<u32>(), 499_500);
//! let b = allocator_api2::boxed::Box::new_in([7u8; 100], &heap);
//! assert_eq!(b[99], 7);
//! drop((v, b));
//! drop(heap); // releases its pools at once
//! ```
//!
//! # Pointers that outlive the heap
//!
//! On the safe path they cannot: a collection allocated in `&heap` borrows
//! the heap, so the borrow checker rejects dropping the heap first. Through
//! the raw [`Heap::alloc`] it is the caller's duty; a block used after its
//! heap is dropped points into memory that other allocations reuse.
//!
//! # Threads
//!
//! A `Heap` is `Send` but not `Sync`: one thread at a time allocates from it
//! and frees to it, with no locks and no atomics on the common path. A
//! block freed to the global allocator (or by another thread's code) by
//! mistake is not corrupted: it takes the remote-free path and the heap
//! collects it later. Heaps never adopt pools abandoned by exiting threads,
//! since dropping a heap releases all of its pools.

use crate::engine::{in_pools, pool_class};
use crate::heap::Heap as RawHeap;
use crate::large::SpanList;
use crate::{front, lifecycle};
use core::alloc::Layout;
use core::marker::PhantomData;
use core::ptr::{self, NonNull};

/// A heap that frees everything in it when dropped. See the module docs.
pub struct Heap {
    raw: NonNull<RawHeap>,
    spans: SpanList,
    /// `!Sync`: one user at a time.
    _single: PhantomData<core::cell::Cell<()>>,
}

// SAFETY: the heap's state is reached only through `&self` on one thread
// at a time (it is not Sync), and nothing in it is tied to a thread.
unsafe impl Send for Heap {}

impl Heap {
    /// A new, empty heap. Aborts through `handle_alloc_error` if there is no
    /// memory for its bookkeeping; see [`Heap::try_new`].
    pub fn new() -> Heap {
        match Heap::try_new() {
            Some(h) => h,
            None => std::alloc::handle_alloc_error(Layout::new::<RawHeap>()),
        }
    }

    /// A new, empty heap, or `None` if there is no memory for it.
    pub fn try_new() -> Option<Heap> {
        let raw = NonNull::new(lifecycle::new_user_heap())?;
        Some(Heap { raw, spans: SpanList::new(), _single: PhantomData })
    }

    /// The raw heap, whose user the caller is: a `Heap` is not `Sync`, so
    /// whoever holds `&self` is the one thread using it now (and a `Heap`
    /// sent to another thread moves with its whole state). The raw heap's
    /// `unsafe` methods (and the span list's) are called on that ground.
    fn raw(&self) -> &RawHeap {
        // SAFETY: the raw heap lives until `drop` returns it.
        unsafe { self.raw.as_ref() }
    }

    /// Allocates a block for `layout` (null when out of memory). Zero-size
    /// layouts get a unique one-byte block.
    pub fn alloc(&self, layout: Layout) -> *mut u8 {
        if in_pools(layout.size(), layout.align()) {
            // SAFETY: we are the raw heap's user (see `raw`).
            return unsafe { self.raw().alloc(pool_class(layout.size(), layout.align())) };
        }
        // SAFETY: we are the span list's user, as the raw heap's (see `raw`).
        unsafe { self.spans.alloc(layout.size(), layout.align(), false) }
    }

    /// Allocates a zeroed block for `layout` (null when out of memory).
    pub fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !in_pools(layout.size(), layout.align()) {
            // SAFETY: we are the span list's user (see `raw`).
            return unsafe { self.spans.alloc(layout.size(), layout.align(), true) };
        }
        let p = self.alloc(layout);
        if !p.is_null() {
            // SAFETY: a fresh block of at least `size` bytes.
            unsafe { ptr::write_bytes(p, 0, layout.size()) };
        }
        p
    }

    /// Frees a block back to the heap.
    ///
    /// # Safety
    /// `p` must come from this heap's `alloc` with `layout`, and not be freed
    /// since.
    pub unsafe fn free(&self, p: *mut u8, layout: Layout) {
        if in_pools(layout.size(), layout.align()) {
            let b = crate::ownership::freed_block(p, layout.size());
            // SAFETY: by the caller, a handed-out block of this heap's pools;
            // we are the raw heap's user (see `raw`).
            if unsafe { !self.raw().free_if_owned(b) } {
                // Not ours after all (a caller bug): let the general path
                // route or report it.
                // SAFETY: forwarded from the caller.
                unsafe { front::free(b) };
            }
        // SAFETY: by the caller, a large block of this heap is on our list,
        // whose user we are (see `raw`).
        } else if !unsafe { self.spans.free(p) } {
            crate::fault::invalid_pointer("Heap::free", p, "not a live block of this heap");
        }
    }

    /// Blocks in use in this heap's pools (walks the arenas; for tests and
    /// reports).
    pub fn blocks_in_use(&self) -> usize {
        // SAFETY: we are the raw heap's user (see `raw`).
        unsafe {
            // Secure mode: blocks freed and held back count as freed here.
            self.raw().flush_ring();
            self.raw().blocks_in_use()
        }
    }
}

impl Default for Heap {
    fn default() -> Self {
        Heap::new()
    }
}

impl core::fmt::Debug for Heap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // SAFETY: we are the raw heap's user (see `raw`).
        let id = unsafe { self.raw().owner.get() };
        f.debug_struct("Heap").field("id", &id).finish_non_exhaustive()
    }
}

impl Drop for Heap {
    fn drop(&mut self) {
        // SAFETY: we are the raw heap's user, and the span list's (see
        // `raw`).
        unsafe {
            self.raw().release_everything();
            self.spans.free_all();
        }
        // SAFETY: the raw heap came from `new_user_heap` and now holds no
        // pools; we are its user, giving it up.
        unsafe { lifecycle::free_user_heap(self.raw.as_ptr()) };
    }
}

fn nonnull_slice(p: *mut u8, len: usize) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
    NonNull::new(ptr::slice_from_raw_parts_mut(p, len)).ok_or(allocator_api2::alloc::AllocError)
}

/// Zero-size requests get a dangling, well-aligned pointer (nothing to free).
fn dangling(layout: Layout) -> NonNull<[u8]> {
    // SAFETY: an alignment is never zero.
    let p = unsafe { NonNull::new_unchecked(ptr::without_provenance_mut(layout.align())) };
    NonNull::slice_from_raw_parts(p, 0)
}

// SAFETY: blocks are valid for the layout until freed or until the heap is
// dropped, which the `&Heap` borrow outlives; `deallocate` takes only
// blocks `allocate` gave.
unsafe impl allocator_api2::alloc::Allocator for &Heap {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        if layout.size() == 0 {
            return Ok(dangling(layout));
        }
        nonnull_slice(Heap::alloc(self, layout), layout.size())
    }

    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        if layout.size() == 0 {
            return Ok(dangling(layout));
        }
        nonnull_slice(Heap::alloc_zeroed(self, layout), layout.size())
    }

    unsafe fn deallocate(&self, p: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            // SAFETY: by the Allocator contract `p` came from `allocate`
            // with `layout`.
            unsafe { Heap::free(self, p.as_ptr(), layout) };
        }
    }
}

// SAFETY: as for `GlobalAlloc`: blocks are unique, aligned and large enough
// until deallocated; zero-size requests get dangling pointers that are never
// freed.
unsafe impl allocator_api2::alloc::Allocator for crate::PoolMalloc {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        if layout.size() == 0 {
            return Ok(dangling(layout));
        }
        // SAFETY: a valid non-zero layout.
        nonnull_slice(unsafe { core::alloc::GlobalAlloc::alloc(self, layout) }, layout.size())
    }

    unsafe fn deallocate(&self, p: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            // SAFETY: by the Allocator contract.
            unsafe { core::alloc::GlobalAlloc::dealloc(self, p.as_ptr(), layout) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use allocator_api2::boxed::Box as ABox;
    use allocator_api2::vec::Vec as AVec;

    #[test]
    fn a_heap_serves_collections_and_large_blocks_and_frees_them_on_drop() {
        let n = if cfg!(miri) { 300 } else { 3000 };
        let heap = Heap::new();
        let mut v = AVec::new_in(&heap);
        v.extend(0..n as u32);
        let b = ABox::new_in([7u8; 100], &heap);
        let mut small: AVec<ABox<u64, &Heap>, &Heap> = AVec::new_in(&heap);
        small.extend((0..n as u64 / 10).map(|i| ABox::new_in(i, &heap)));
        assert_eq!(v.iter().map(|&x| x as u64).sum::<u64>(), (n as u64 - 1) * n as u64 / 2);
        assert_eq!(b[99], 7);
        assert!(small.iter().enumerate().all(|(i, x)| **x == i as u64));
        let big = Layout::from_size_align(200_000, 64).unwrap();
        let p = heap.alloc_zeroed(big);
        assert!(!p.is_null());
        // SAFETY: a zeroed block of 200,000 bytes.
        unsafe {
            assert_eq!((p.read(), p.add(199_999).read()), (0, 0));
            p.add(199_999).write(3);
        }
        let q = heap.alloc(big);
        assert!(heap.blocks_in_use() >= small.len() + 2);
        drop(small);
        // SAFETY: `q` came from this heap with `big`.
        unsafe { heap.free(q, big) };
        // `v`, `b` and the large block at `p` are still in the heap; the
        // pools and the span go with it.
        core::mem::forget(v);
        core::mem::forget(b);
        drop(heap);
    }

    #[test]
    fn dangling_zero_size_blocks() {
        let heap = Heap::new();
        let l = Layout::from_size_align(0, 256).unwrap();
        let z = allocator_api2::alloc::Allocator::allocate(&&heap, l).unwrap();
        assert_eq!(z.cast::<u8>().as_ptr().addr(), 256);
        // SAFETY: a zero-size block from `allocate` with `l`.
        unsafe { allocator_api2::alloc::Allocator::deallocate(&&heap, z.cast(), l) };
    }
}
