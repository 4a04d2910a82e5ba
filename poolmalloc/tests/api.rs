//! Integration tests of the public API, with `PoolMalloc` as this test
//! binary's global allocator. Every test takes `SERIAL`, so the tests that look at process-wide
//! figures (the statistics, RSS) see no other test allocating meanwhile.

use poolmalloc::internals::ARENA_SIZE;
use poolmalloc::{BufferPool, Heap, LockedPoolMalloc, PoolMalloc, TypedPool};
use std::alloc::{GlobalAlloc, Layout};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

#[global_allocator]
static GLOBAL: PoolMalloc = PoolMalloc;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn std_collections_work() {
    let _s = serial();
    let mut v = Vec::new();
    for i in 0..100_000u64 {
        v.push(i * 3);
    }
    assert_eq!(v.iter().sum::<u64>(), 3 * (100_000 * 99_999 / 2));
    let mut m = HashMap::new();
    for i in 0..50_000 {
        m.insert(format!("key-{i}"), vec![i; i % 17]);
    }
    assert_eq!(m["key-4242"].len(), 4242 % 17);
    let mut b = BTreeMap::new();
    for i in (0..20_000).rev() {
        b.insert(i, i.to_string());
    }
    assert_eq!(b.iter().next(), Some((&0, &"0".to_string())));
    let mut s = String::new();
    for i in 0..10_000 {
        s.push_str(&i.to_string());
    }
    assert!(s.starts_with("0123456789101112"));
    drop((v, m, b, s));
}

#[test]
fn collections_across_threads() {
    let _s = serial();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let v: Vec<String> = (0..20_000).map(|i| format!("{t}:{i}")).collect();
                v
            })
        })
        .collect();
    // Blocks made on other threads are freed here.
    let mut total = 0;
    for h in handles {
        let v = h.join().unwrap();
        total += v.len();
        assert_eq!(v[123], format!("{}:123", v[0].split(':').next().unwrap()));
    }
    assert_eq!(total, 80_000);
}

fn check_alloc<A: GlobalAlloc>(a: &A, size: usize, align: usize) {
    let l = Layout::from_size_align(size, align).unwrap();
    // SAFETY: valid layouts; every block is freed with its layout.
    unsafe {
        let p = a.alloc(l);
        assert!(!p.is_null(), "alloc {size} align {align}");
        assert_eq!(p as usize % align, 0, "alignment {align} for size {size}");
        std::ptr::write_bytes(p, 0xab, size);
        let z = a.alloc_zeroed(l);
        assert!(!z.is_null());
        assert_eq!(z as usize % align, 0);
        assert!(std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0));
        a.dealloc(z, l);
        let grown = a.realloc(p, l, size * 2 + 1);
        assert!(!grown.is_null());
        assert_eq!(grown as usize % align, 0, "realloc keeps alignment {align}");
        assert!(std::slice::from_raw_parts(grown, size).iter().all(|&b| b == 0xab));
        a.dealloc(grown, Layout::from_size_align(size * 2 + 1, align).unwrap());
    }
}

#[test]
fn every_alignment_and_size_class_boundary() {
    let _s = serial();
    for shift in 0..=20 {
        let align = 1usize << shift;
        for size in [1, 8, 16, 17, 100, 512, 513, 4096, 4097, 32768, 32769, 100_000, 5 << 20] {
            check_alloc(&PoolMalloc, size, align);
            check_alloc(&LockedPoolMalloc, size, align);
        }
    }
}

#[test]
fn impossible_requests_return_null() {
    let _s = serial();
    let a = PoolMalloc;
    for size in [isize::MAX as usize - 100, isize::MAX as usize / 2 + 1, (isize::MAX as usize) & !4095] {
        let l = Layout::from_size_align(size, 16).unwrap();
        // SAFETY: a valid layout; a null result is the expected outcome.
        let p = unsafe { a.alloc(l) };
        assert!(p.is_null(), "size {size} must fail");
    }
    // The allocator keeps working after the failures.
    let v: Vec<u8> = vec![1; 1000];
    assert_eq!(v.len(), 1000);
    // realloc to an impossible size fails and leaves the block intact.
    let l = Layout::from_size_align(64, 16).unwrap();
    // SAFETY: valid layout, block freed with the layout it has.
    unsafe {
        let p = a.alloc(l);
        p.write_bytes(7, 64);
        let q = a.realloc(p, l, isize::MAX as usize - 4096);
        assert!(q.is_null());
        assert!(std::slice::from_raw_parts(p, 64).iter().all(|&b| b == 7));
        a.dealloc(p, l);
    }
}

#[test]
fn realloc_stays_in_place_within_a_class() {
    let _s = serial();
    let a = PoolMalloc;
    let l = Layout::from_size_align(40, 8).unwrap();
    // SAFETY: valid layouts; the final block is freed with its last layout.
    unsafe {
        let p = a.alloc(l);
        let q = a.realloc(p, l, 48);
        assert_eq!(p, q, "40 and 48 bytes share the 48-byte class");
        let r = a.realloc(q, Layout::from_size_align(48, 8).unwrap(), 49);
        assert_ne!(q, r, "49 bytes needs the 64-byte class");
        a.dealloc(r, Layout::from_size_align(49, 8).unwrap());
    }
}

#[test]
fn large_realloc_grows_and_shrinks_keeping_data() {
    let _s = serial();
    let a = PoolMalloc;
    let mut size = 40_000;
    let mut l = Layout::from_size_align(size, 16).unwrap();
    // SAFETY: valid layouts, tracked through every realloc.
    unsafe {
        let mut p = a.alloc(l);
        for i in 0..size {
            *p.add(i) = (i % 251) as u8;
        }
        for new in [1 << 20, 3 << 20, 20 << 20, 6 << 20, 70_000, 1000, 50_000] {
            let q = a.realloc(p, l, new);
            assert!(!q.is_null());
            let keep = size.min(new);
            for i in (0..keep).step_by(997) {
                assert_eq!(*q.add(i), (i % 251) as u8, "byte {i} after realloc to {new}");
            }
            for i in keep..new {
                *q.add(i) = (i % 251) as u8;
            }
            p = q;
            size = new;
            l = Layout::from_size_align(size, 16).unwrap();
        }
        a.dealloc(p, l);
    }
}

#[test]
fn freeing_256_mib_of_small_blocks_returns_the_memory() {
    let _s = serial();
    poolmalloc::trim();
    let before = poolmalloc::stats();
    let rss_before = poolmalloc::internals::resident_bytes().unwrap();
    let sizes = [16usize, 32, 48, 64, 96, 128, 256, 512];
    let mut blocks: Vec<(*mut u8, Layout)> = Vec::with_capacity(4_000_000);
    let mut total = 0;
    let mut i = 0;
    while total < 256 << 20 {
        let l = Layout::from_size_align(sizes[i % sizes.len()], 8).unwrap();
        // SAFETY: a valid layout.
        let p = unsafe { PoolMalloc.alloc(l) };
        assert!(!p.is_null());
        // SAFETY: the block has at least one byte; touch it so it is resident.
        unsafe { p.write(i as u8) };
        blocks.push((p, l));
        total += l.size();
        i += 1;
    }
    let peak = poolmalloc::stats();
    assert!(peak.os.mapped >= before.os.mapped + (256 << 20));
    let rss_peak = poolmalloc::internals::resident_bytes().unwrap();
    assert!(rss_peak > rss_before + (200 << 20), "blocks were touched");
    for (p, l) in blocks.drain(..) {
        // SAFETY: each block was allocated with its layout.
        unsafe { PoolMalloc.dealloc(p, l) };
    }
    drop(blocks);
    // The program goes on: after the purge delay, its next trips to the
    // arenas release the all-free arenas and decommit free pools.
    let delay = poolmalloc::options::purge_delay_ms().max(0) as u64;
    std::thread::sleep(std::time::Duration::from_millis(delay + 50));
    let l = Layout::from_size_align(24 * 1024, 8).unwrap();
    // SAFETY: a valid layout.
    let burst: Vec<*mut u8> = (0..100).map(|_| unsafe { PoolMalloc.alloc(l) }).collect();
    for p in burst {
        // SAFETY: allocated just above with `l`.
        unsafe { PoolMalloc.dealloc(p, l) };
    }
    let after = poolmalloc::stats();
    // Each class keeps its current pool and the heap keeps a stash of
    // empty pools; each of those can pin one arena, and one spare arena is
    // kept.
    let pinned = sizes.len() + 1 + poolmalloc::internals::STASH_MAX + 1;
    assert!(
        after.os.mapped <= before.os.mapped + pinned * ARENA_SIZE,
        "mapped {} -> {} -> {}",
        before.os.mapped,
        peak.os.mapped,
        after.os.mapped
    );
    assert!(after.adds_up(), "{after}");
    let rss_after = poolmalloc::internals::resident_bytes().unwrap();
    assert!(
        rss_after <= rss_before + rss_before / 10 + (4 << 20),
        "RSS {} -> {} -> {} (without trim)",
        rss_before,
        rss_peak,
        rss_after
    );
    poolmalloc::trim();
    let trimmed = poolmalloc::stats();
    assert!(trimmed.os.mapped <= before.os.mapped + ARENA_SIZE, "{trimmed}");
    let rss_trimmed = poolmalloc::internals::resident_bytes().unwrap();
    assert!(rss_trimmed <= rss_before + rss_before / 10 + (1 << 20), "RSS {rss_before} -> {rss_trimmed} after trim");
}

#[test]
fn stats_report_counts_a_known_pattern() {
    let _s = serial();
    poolmalloc::trim();
    let before = poolmalloc::stats();
    // Sizes the test harness itself (which also allocates through
    // PoolMalloc, on other threads) is unlikely to use.
    let c400 = poolmalloc::internals::class_of(400);
    let c5000 = poolmalloc::internals::class_of(5000);
    let l400 = Layout::from_size_align(400, 8).unwrap();
    let l5000 = Layout::from_size_align(5000, 8).unwrap();
    let big = Layout::from_size_align(3 << 20, 16).unwrap();
    // SAFETY: valid layouts; freed with the same layouts below.
    let (small, medium, large) = unsafe {
        (
            (0..1000).map(|_| PoolMalloc.alloc(l400)).collect::<Vec<_>>(),
            (0..70).map(|_| PoolMalloc.alloc(l5000)).collect::<Vec<_>>(),
            PoolMalloc.alloc(big),
        )
    };
    let s = poolmalloc::stats();
    assert_eq!(s.classes[c400].blocks_in_use - before.classes[c400].blocks_in_use, 1000);
    assert_eq!(s.classes[c5000].blocks_in_use - before.classes[c5000].blocks_in_use, 70);
    assert_eq!(s.large.spans - before.large.spans, 1);
    assert!(s.large.requested - before.large.requested == 3 << 20);
    assert!(s.adds_up(), "parts must add up to the mapped bytes:\n{s}");
    let text = s.to_string();
    assert!(text.contains("matches arena bytes"), "{text}");
    assert!(text.contains("matches the parts"), "{text}");
    // SAFETY: freeing what was allocated above.
    unsafe {
        for p in small {
            PoolMalloc.dealloc(p, l400);
        }
        for p in medium {
            PoolMalloc.dealloc(p, l5000);
        }
        PoolMalloc.dealloc(large, big);
    }
    let after = poolmalloc::stats();
    assert_eq!(after.classes[c400].blocks_in_use, before.classes[c400].blocks_in_use);
    assert!(after.adds_up());
}

/// `counters()` follows a known pattern: what it says is allocated moves by
/// the bytes allocated and freed, to within the lag it documents (one pool
/// per size class), and its four figures nest as they should.
#[test]
fn counters_follow_a_known_pattern() {
    let _s = serial();
    poolmalloc::trim();
    let c0 = poolmalloc::counters();
    // 512-byte blocks: 128 per 64 KiB pool (fewer, but an even number, in
    // the pool shortened by its arena's header), so 40,000 of them fill
    // about 313 pools, and freeing every other block halves each pool.
    let l = Layout::from_size_align(500, 8).unwrap();
    let bs = poolmalloc::internals::class_size(poolmalloc::internals::class_of(500));
    assert_eq!(bs, 512);
    let big = Layout::from_size_align(5 << 20, 16).unwrap();
    let mut blocks = Vec::with_capacity(40_000);
    // SAFETY: valid layouts; each block is freed once with its layout below.
    let huge = unsafe {
        for _ in 0..40_000 {
            blocks.push(PoolMalloc.alloc(l));
        }
        PoolMalloc.alloc(big)
    };
    assert!(!huge.is_null() && blocks.iter().all(|p| !p.is_null()));
    let c1 = poolmalloc::counters();
    let grew = c1.allocated as isize - c0.allocated as isize;
    let want = (40_000 * bs + (5 << 20)) as isize;
    // The lag: the current pool of the class (64 KiB), and the harness's
    // threads and the vector's own block (320 KB) on the side.
    let slack = (64 << 10) + (1 << 20);
    assert!((grew - want).abs() <= slack, "allocated grew by {grew}, expected {want}");
    assert!(c1.active >= c1.allocated - slack as usize, "{c1:?}");
    assert!(c1.resident >= c1.active && c1.mapped >= c1.resident, "{c1:?}");
    let s1 = poolmalloc::stats();
    assert_eq!(c1.mapped, s1.os.mapped, "mapped is exact when nothing else allocates");

    // Free every other block: each pool falls to half, which its heap hears
    // of at once (a pool is counted again when frees halve it).
    // SAFETY: each block freed once, with its layout.
    unsafe {
        for p in blocks.iter().step_by(2) {
            PoolMalloc.dealloc(*p, l);
        }
        PoolMalloc.dealloc(huge, big);
    }
    let c2 = poolmalloc::counters();
    let fell = c1.allocated as isize - c2.allocated as isize;
    let want = (20_000 * bs + (5 << 20)) as isize;
    assert!((fell - want).abs() <= slack, "allocated fell by {fell}, expected {want}");

    // Free the rest: every pool empties and counts nothing.
    // SAFETY: the other half, each freed once.
    unsafe {
        for p in blocks.iter().skip(1).step_by(2) {
            PoolMalloc.dealloc(*p, l);
        }
    }
    drop(blocks);
    poolmalloc::trim();
    let c3 = poolmalloc::counters();
    let left = c3.allocated as isize - c0.allocated as isize;
    assert!(left.abs() <= slack, "allocated is {left} bytes off the start after freeing everything");
    assert!(c3.active < c1.active && c3.resident < c1.resident, "{c1:?} then {c3:?}");
    assert!(c3.resident >= c3.active && c3.mapped >= c3.resident, "{c3:?}");
}

#[test]
fn locked_mode_serves_many_threads() {
    let _s = serial();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let a = LockedPoolMalloc;
                let l = Layout::from_size_align(24 + t * 8, 8).unwrap();
                let mut v = Vec::new();
                for i in 0..20_000 {
                    // SAFETY: valid layout.
                    let p = unsafe { a.alloc(l) };
                    assert!(!p.is_null());
                    // SAFETY: the block holds at least 8 bytes.
                    unsafe { p.cast::<u64>().write(i) };
                    v.push(p as usize);
                }
                v
            })
        })
        .collect();
    for (t, h) in handles.into_iter().enumerate() {
        let v = h.join().unwrap();
        let l = Layout::from_size_align(24 + t * 8, 8).unwrap();
        for (i, p) in v.into_iter().enumerate() {
            // SAFETY: blocks from the threads above, freed once, here.
            unsafe {
                assert_eq!((p as *mut u64).read(), i as u64);
                LockedPoolMalloc.dealloc(p as *mut u8, l);
            }
        }
    }
}

#[test]
fn arena_and_heap_invariants_hold_after_churn() {
    let _s = serial();
    let mut v: Vec<Vec<u8>> = Vec::new();
    for i in 0..200_000usize {
        v.push(vec![i as u8; 1 + (i * 7919) % 3000]);
        if i % 3 == 0 {
            let j = (i * 31) % v.len();
            v.swap_remove(j);
        }
    }
    poolmalloc::internals::check_arena_invariants();
    poolmalloc::internals::check_current_heap();
    drop(v);
    poolmalloc::internals::check_arena_invariants();
    poolmalloc::trim();
    poolmalloc::internals::check_arena_invariants();
    poolmalloc::internals::check_current_heap();
}

#[test]
fn stats_report_typed_pools_buffer_pools_and_heaps() {
    let _s = serial();
    let before = poolmalloc::stats();
    let pools_before = poolmalloc::pools::stats();

    // A typed pool with 64-byte slots: 100 boxes made, 40 dropped, 10 made
    // again from the cache.
    let typed = TypedPool::<[u64; 8]>::with_cap(64);
    assert_eq!(TypedPool::<[u64; 8]>::slot_layout().size(), 64);
    let mut boxes: Vec<_> = (0..100).map(|i| typed.alloc([i; 8])).collect();
    boxes.truncate(60);
    boxes.extend((0..10).map(|i| typed.alloc([i; 8])));

    // A buffer pool: three 2 KiB buffers, two given back, one reused.
    let buffers = BufferPool::new();
    let mut held: Vec<_> = (0..3).map(|_| buffers.acquire(1000)).collect();
    held.truncate(1);
    held.push(buffers.acquire(1500));

    // A first-class heap with 1000 blocks of 48 bytes.
    let heap = Heap::new();
    let l48 = Layout::from_size_align(48, 8).unwrap();
    let block_size = poolmalloc::internals::class_size(poolmalloc::internals::class_of(48));
    let blocks: Vec<*mut u8> = (0..1000).map(|_| heap.alloc(l48)).collect();
    assert!(blocks.iter().all(|p| !p.is_null()));

    let s = poolmalloc::stats();
    let p = poolmalloc::pools::stats();
    let ts = typed.stats();
    assert_eq!((ts.live, ts.hits, ts.misses), (70, 10, 100));
    assert_eq!(p.typed_pools - pools_before.typed_pools, 1);
    assert_eq!(p.typed_live - pools_before.typed_live, 70);
    assert_eq!(p.typed_cached - pools_before.typed_cached, ts.cached);
    assert!(ts.cached > 0);
    assert_eq!(p.typed_bytes - pools_before.typed_bytes, (70 + ts.cached) * 64);
    assert_eq!(p.typed_hits - pools_before.typed_hits, 10);
    assert_eq!(p.typed_misses - pools_before.typed_misses, 100);

    assert_eq!(p.buffer_pools - pools_before.buffer_pools, 1);
    assert_eq!(p.buffer_retained_bytes - pools_before.buffer_retained_bytes, 2048);
    assert_eq!(p.buffer_acquired - pools_before.buffer_acquired, 4);
    assert_eq!(p.buffer_reused - pools_before.buffer_reused, 1);

    assert_eq!(s.heaps.first_class - before.heaps.first_class, 1);
    assert!(s.heaps.first_class_pools > before.heaps.first_class_pools);
    assert_eq!(s.heaps.first_class_blocks_in_use - before.heaps.first_class_blocks_in_use, 1000);
    assert_eq!(s.heaps.first_class_blocks_in_use - before.heaps.first_class_blocks_in_use, heap.blocks_in_use());
    assert_eq!(s.heaps.first_class_bytes_in_blocks - before.heaps.first_class_bytes_in_blocks, 1000 * block_size);
    assert!(s.adds_up(), "the new sections add nothing to the mapped total:\n{s}");

    let text = s.to_string();
    for label in [
        "# first-class heaps",
        "# pools in first-class heaps",
        "# blocks in use in first-class heaps",
        "# bytes in use in first-class heaps",
    ] {
        assert!(text.contains(label), "{label:?} missing from\n{text}");
    }
    let pools_text = p.to_string();
    for label in [
        "# typed pools",
        "# live boxes in typed pools",
        "# cached slots in typed pools",
        "# bytes in typed pools",
        "# typed pool cache hits",
        "# typed pool cache misses",
        "# buffer pools",
        "# bytes retained in buffer pools",
        "# buffers acquired",
        "# buffers reused",
    ] {
        assert!(pools_text.contains(label), "{label:?} missing from\n{pools_text}");
        assert!(!text.contains(label), "{label:?} is in the pools' report, not the allocator's:\n{text}");
    }
    // The first-class heap section comes last in the allocator's report,
    // after the existing ones; the pools' report has the typed pools first.
    let at = |l: &str| text.find(l).unwrap();
    assert!(at("# mremap calls") < at("# first-class heaps"));
    let pools_at = |l: &str| pools_text.find(l).unwrap();
    assert!(pools_at("# typed pools") < pools_at("# buffer pools"));
    let typed_line = pools_text.lines().find(|l| l.starts_with("# live boxes in typed pools")).unwrap();
    assert!(typed_line.ends_with(&format!("{:>21}", p.typed_live)), "{typed_line}");

    // Everything given back: the totals return to where they were.
    drop(boxes);
    drop(typed);
    drop(held);
    drop(buffers);
    for p in blocks {
        // SAFETY: allocated from `heap` with `l48` above.
        unsafe { heap.free(p, l48) };
    }
    let mid = poolmalloc::stats();
    assert_eq!(mid.heaps.first_class_blocks_in_use, before.heaps.first_class_blocks_in_use);
    drop(heap);
    let after = poolmalloc::stats();
    let pools_after = poolmalloc::pools::stats();
    assert_eq!(
        (pools_after.typed_pools, pools_after.typed_live, pools_after.typed_cached, pools_after.typed_bytes),
        (pools_before.typed_pools, pools_before.typed_live, pools_before.typed_cached, pools_before.typed_bytes)
    );
    assert_eq!(
        (pools_after.buffer_pools, pools_after.buffer_retained_bytes),
        (pools_before.buffer_pools, pools_before.buffer_retained_bytes)
    );
    assert_eq!(
        (after.heaps.first_class, after.heaps.first_class_pools),
        (before.heaps.first_class, before.heaps.first_class_pools)
    );
    assert!(after.adds_up());
}

#[test]
fn unused_static_pools_are_not_counted() {
    static TYPED: TypedPool<u64> = TypedPool::new();
    static BUFFERS: BufferPool = BufferPool::new();
    let _s = serial();
    let s = poolmalloc::pools::stats();
    assert_eq!(TYPED.stats().bytes, 0);
    assert_eq!(BUFFERS.stats().classes[0].size, 2048);
    let b = TYPED.alloc(7);
    let buf = BUFFERS.acquire(10);
    let t = poolmalloc::pools::stats();
    assert_eq!(t.typed_pools, s.typed_pools + 1, "a pool joins on first use");
    assert_eq!(t.buffer_pools, s.buffer_pools + 1);
    assert_eq!(t.typed_live, s.typed_live + 1);
    assert_eq!(t.buffer_acquired, s.buffer_acquired + 1);
    drop((b, buf));
}

#[cfg(feature = "serde")]
#[test]
fn stats_serialize_to_json() {
    let _s = serial();
    let keep: Vec<Box<[u8; 40]>> = (0..500).map(|_| Box::new([0u8; 40])).collect();
    let s = poolmalloc::stats();
    let v: serde_json::Value = serde_json::to_value(&s).unwrap();
    assert_eq!(v["bytes_mapped"].as_u64(), Some(s.os.mapped as u64));
    assert_eq!(v["mapped_parts_match"], serde_json::Value::Bool(s.adds_up()));
    let c48 = poolmalloc::internals::class_of(40);
    let class =
        v["classes"].as_array().unwrap().iter().find(|c| c["class"] == c48).expect("the 48-byte class has pools");
    assert!(class["blocks_in_use"].as_u64().unwrap() >= 500);
    assert_eq!(class["block_size"].as_u64(), Some(48));
    assert_eq!(v["first_class_heaps"]["heaps"].as_u64(), Some(s.heaps.first_class as u64));
    assert_eq!(v["first_class_heaps"]["blocks_in_use"].as_u64(), Some(s.heaps.first_class_blocks_in_use as u64));
    assert!(v.get("typed_pools").is_none() && v.get("buffer_pools").is_none(), "the pools report on their own");
    let p = poolmalloc::pools::stats();
    let pv: serde_json::Value = serde_json::to_value(p).unwrap();
    assert_eq!(pv["typed_pools"]["pools"].as_u64(), Some(p.typed_pools as u64));
    assert_eq!(pv["typed_pools"]["bytes"].as_u64(), Some(p.typed_bytes as u64));
    assert_eq!(pv["buffer_pools"]["retained_bytes"].as_u64(), Some(p.buffer_retained_bytes as u64));
    assert_eq!(pv["buffer_pools"]["acquired"].as_u64(), Some(p.buffer_acquired));
    drop(keep);
}

#[test]
fn medium_blocks_pack_into_arenas() {
    let _g = serial();
    // 8,000 live blocks of 40,000 B (class 40 KiB: three per two-slice run,
    // 31 runs per arena) need about 86 arenas. A search that looked only at
    // the fullest arenas, whose one free slice cannot hold a run, would give
    // up after 64 of them and map an arena per run (about 750).
    let before = poolmalloc::stats().arenas.current;
    let l = Layout::from_size_align(40_000, 8).unwrap();
    let blocks: Vec<*mut u8> = (0..8000)
        .map(|i| {
            // SAFETY: a valid layout.
            let p = unsafe { PoolMalloc.alloc(l) };
            assert!(!p.is_null());
            // SAFETY: a fresh block of 40,000 bytes.
            unsafe { p.add(39_999).write(i as u8) };
            p
        })
        .collect();
    let grown = poolmalloc::stats().arenas.current - before;
    assert!(grown <= 100, "8,000 medium blocks took {grown} new arenas");
    for (i, p) in blocks.into_iter().enumerate() {
        // SAFETY: allocated above with `l`.
        unsafe {
            assert_eq!(p.add(39_999).read(), i as u8);
            PoolMalloc.dealloc(p, l);
        }
    }
}

#[test]
fn freed_memory_goes_back_with_no_further_call() {
    let _s = serial();
    poolmalloc::trim();
    // The table of blocks is made and touched before the baseline, and
    // lives to the end, so its own pages count on both sides.
    let n = 1_200_000;
    let mut table = vec![1usize; n];
    let rss_before = poolmalloc::internals::resident_bytes().unwrap();
    let sizes = [16usize, 48, 64, 100, 128, 200, 256, 400];
    let layout = |i: usize| Layout::from_size_align(sizes[i % sizes.len()], 8).unwrap();
    let mut total = 0;
    for (i, slot) in table.iter_mut().enumerate() {
        // SAFETY: a valid layout.
        let p = unsafe { PoolMalloc.alloc(layout(i)) };
        assert!(!p.is_null());
        // SAFETY: a fresh block of at least 16 bytes.
        unsafe { p.write_bytes(0x6d, 16) };
        *slot = p as usize;
        total += layout(i).size();
    }
    let rss_peak = poolmalloc::internals::resident_bytes().unwrap();
    assert!(rss_peak > rss_before + total / 2, "blocks were touched");
    for (i, &p) in table.iter().enumerate() {
        // SAFETY: allocated above with this layout.
        unsafe { PoolMalloc.dealloc(p as *mut u8, layout(i)) };
    }
    // No further allocator call: the program sleeps past the purge delay.
    let delay = poolmalloc::options::purge_delay_ms().max(0) as u64;
    std::thread::sleep(std::time::Duration::from_millis(delay + 100));
    let rss_after = poolmalloc::internals::resident_bytes().unwrap();
    // At most 8 MiB of free pages wait out the delay (nothing is live any
    // more), plus the pools each class and the stash keep.
    assert!(
        rss_after <= rss_before + (10 << 20),
        "RSS {} MiB -> {} MiB -> {} MiB one delay after freeing {} MiB, with no further call",
        rss_before >> 20,
        rss_peak >> 20,
        rss_after >> 20,
        total >> 20
    );
    drop(table);
}

#[test]
fn stats_show_each_heaps_occupancy() {
    use poolmalloc::stats::Holder;
    let _s = serial();
    // A first-class heap holding 20,000 blocks of 256 B, then every second
    // one freed: its pools are about half full, and the report says so.
    let heap = Heap::new();
    let l = Layout::from_size_align(256, 8).unwrap();
    let blocks: Vec<*mut u8> = (0..20_000).map(|_| heap.alloc(l)).collect();
    assert!(blocks.iter().all(|p| !p.is_null()));
    for p in blocks.iter().step_by(2) {
        // SAFETY: allocated from `heap` with `l`, freed once.
        unsafe { heap.free(*p, l) };
    }
    let s = poolmalloc::stats();
    let mine: Vec<_> = s.occupancy[..s.occupancy_shown].iter().filter(|h| h.holder == Holder::FirstClass).collect();
    assert_eq!(mine.len(), 1, "one first-class heap: {:?}", &s.occupancy[..s.occupancy_shown]);
    let h = mine[0];
    assert_eq!(h.live_bytes, 10_000 * 256);
    // 20,000 blocks of 256 B need 79 pools of 64 KiB (pool 0 of an arena
    // is shorter, so perhaps one more).
    assert!((79..=81).contains(&h.pools), "{} pools", h.pools);
    let occupancy = h.live_bytes as f64 / h.pool_bytes as f64;
    assert!((0.45..=0.52).contains(&occupancy), "occupancy {occupancy}");
    let text = s.to_string();
    assert!(text.contains("heap occupancy"), "{text}");
    assert!(text.lines().any(|l| l.contains("first-class") && l.contains(" %")), "{text}");
    for p in blocks.iter().skip(1).step_by(2) {
        // SAFETY: the blocks not freed above.
        unsafe { heap.free(*p, l) };
    }
}

#[test]
fn an_impossible_request_does_not_trim() {
    let _s = serial();
    // Empty pools of this thread's heap wait in its stash. A request no
    // mapping could ever satisfy fails at once: it must not make the
    // allocator give back (and later fault in again) what it keeps warm.
    let l = Layout::from_size_align(3000, 8).unwrap();
    // SAFETY: valid layouts; each block freed once with its layout.
    let blocks: Vec<*mut u8> = (0..2048).map(|_| unsafe { PoolMalloc.alloc(l) }).collect();
    for p in blocks {
        // SAFETY: allocated above with `l`.
        unsafe { PoolMalloc.dealloc(p, l) };
    }
    let stashed = poolmalloc::stats().pools.stashed;
    assert!(stashed > 0, "no pool was stashed; the test proves nothing");
    let huge = Layout::from_size_align(isize::MAX as usize - 4096, 8).unwrap();
    // SAFETY: a valid layout; the allocation fails.
    assert!(unsafe { PoolMalloc.alloc(huge) }.is_null());
    assert_eq!(poolmalloc::stats().pools.stashed, stashed, "an impossible request emptied the stash");
}
