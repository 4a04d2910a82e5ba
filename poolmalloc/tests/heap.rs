//! First-class heaps: allocation through the Allocator API, single frees,
//! and dropping a heap releasing all of its memory at once.

use allocator_api2::boxed::Box as ABox;
use allocator_api2::vec::Vec as AVec;
use poolmalloc::Heap;
use std::alloc::Layout;
use std::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn collections_live_in_a_heap() {
    let _s = serial();
    let heap = Heap::new();
    let mut v: AVec<u64, &Heap> = AVec::new_in(&heap);
    for i in 0..100_000 {
        v.push(i);
    }
    let boxes: AVec<ABox<[u8; 48], &Heap>, &Heap> =
        (0..10_000).map(|i| ABox::new_in([i as u8; 48], &heap)).collect_in(&heap);
    assert_eq!(v.iter().sum::<u64>(), 100_000 * 99_999 / 2);
    assert!(boxes.iter().enumerate().all(|(i, b)| b[47] == i as u8));
    assert!(heap.blocks_in_use() >= 10_000);
    drop(boxes);
    drop(v);
    assert_eq!(heap.blocks_in_use(), 0, "single frees go back to the heap");
}

trait CollectIn<T> {
    fn collect_in(self, heap: &Heap) -> AVec<T, &Heap>;
}

impl<T, I: Iterator<Item = T>> CollectIn<T> for I {
    fn collect_in(self, heap: &Heap) -> AVec<T, &Heap> {
        let mut v = AVec::new_in(heap);
        v.extend(self);
        v
    }
}

#[test]
fn dropping_a_heap_releases_everything_at_once() {
    let _s = serial();
    poolmalloc::trim();
    let before = poolmalloc::stats();
    let heap = Heap::new();
    let small = Layout::from_size_align(40, 8).unwrap();
    let big = Layout::from_size_align(3 << 20, 64).unwrap();
    for i in 0..200_000 {
        let p = heap.alloc(small);
        assert!(!p.is_null());
        // SAFETY: the block holds 40 bytes.
        unsafe { p.write(i as u8) };
    }
    for _ in 0..4 {
        let p = heap.alloc(big);
        assert!(!p.is_null());
        assert_eq!(p as usize % 64, 0);
    }
    let full = poolmalloc::stats();
    // (Pools of first-class heaps only: other threads of the test harness
    // may give their own pools back at any time.)
    assert!(
        full.heaps.first_class_pools >= before.heaps.first_class_pools + 100,
        "the blocks live in the heap's pools"
    );
    assert_eq!(full.large.spans, before.large.spans + 4);
    assert_eq!(heap.blocks_in_use(), 200_000);
    // Nothing freed one by one: the drop gives every pool and span back.
    drop(heap);
    let after = poolmalloc::stats();
    assert_eq!(
        after.heaps.first_class_pools, before.heaps.first_class_pools,
        "every pool of the heap went back to the arenas"
    );
    assert_eq!(after.large.spans, before.large.spans);
    assert!(after.adds_up(), "{after}");
    poolmalloc::trim();
    let trimmed = poolmalloc::stats();
    assert!(trimmed.os.mapped <= before.os.mapped + poolmalloc::internals::ARENA_SIZE, "{trimmed}");
}

#[test]
fn a_heap_moves_to_another_thread() {
    let _s = serial();
    let heap = Heap::new();
    let l = Layout::from_size_align(100, 16).unwrap();
    let p = heap.alloc(l) as usize;
    let heap = std::thread::spawn(move || {
        // SAFETY: `p` came from this heap with `l`.
        unsafe { heap.free(p as *mut u8, l) };
        let q = heap.alloc(l);
        assert!(!q.is_null());
        heap
    })
    .join()
    .unwrap();
    assert_eq!(heap.blocks_in_use(), 1);
}

#[test]
fn zero_sized_and_over_aligned_requests() {
    let _s = serial();
    use allocator_api2::alloc::Allocator;
    let heap = Heap::new();
    let z = Layout::from_size_align(0, 8).unwrap();
    let p = (&heap).allocate(z).unwrap();
    assert_eq!(p.len(), 0);
    // SAFETY: allocated above with `z`.
    unsafe { (&heap).deallocate(p.cast(), z) };
    for align in [32usize, 4096, 1 << 16, 1 << 22] {
        let l = Layout::from_size_align(200, align).unwrap();
        let b = (&heap).allocate_zeroed(l).unwrap();
        assert_eq!(b.cast::<u8>().as_ptr() as usize % align, 0);
        // SAFETY: 200 zeroed bytes.
        assert!(unsafe { b.as_ref() }.iter().all(|&x| x == 0));
        // SAFETY: allocated above with `l`.
        unsafe { (&heap).deallocate(b.cast(), l) };
    }
    assert_eq!(heap.blocks_in_use(), 0);
}

#[test]
fn pool_malloc_is_an_allocator_too() {
    let _s = serial();
    let mut v = AVec::new_in(poolmalloc::PoolMalloc);
    v.extend(0..1000u32);
    assert_eq!(v.len(), 1000);
}
