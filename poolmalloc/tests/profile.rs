//! The heap profiler through its Rust API, with `PoolMalloc` as this
//! binary's global allocator: totals of allocated and live bytes, frees by
//! other threads, huge blocks, `stop`, and `dump`'s file. Stacks are not
//! checked here (this binary may lack frame pointers); the C test
//! `heap_profile_names_the_allocating_functions_and_the_leak` checks them.
//! One test function: the profiler is process-wide.

use poolmalloc::PoolMalloc;
use std::hint::black_box;

#[global_allocator]
static GLOBAL: PoolMalloc = PoolMalloc;

/// Sums of the four columns of a raw profile: allocated objects and
/// bytes, live objects and bytes.
fn totals(path: &std::path::Path) -> [f64; 4] {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.starts_with("poolmalloc heap profile 1\ninterval "), "{}", &text[..100.min(text.len())]);
    let mut t = [0.0; 4];
    for l in text.lines().take_while(|l| *l != "maps").filter_map(|l| l.strip_prefix("stack ")) {
        for (i, v) in l.split(' ').take(4).enumerate() {
            t[i] += v.parse::<f64>().unwrap();
        }
    }
    t
}

fn near(got: f64, want: f64, tol: f64, what: &str) {
    assert!((got - want).abs() <= tol * want, "{what}: {got:.0} against {want:.0}");
}

#[test]
fn profile_counts_allocated_and_live_bytes_across_threads() {
    poolmalloc::profile::start().expect("the profiler starts");
    assert!(poolmalloc::profile::is_running());
    let interval = poolmalloc::profile::interval() as f64;
    let dir = std::env::temp_dir().join(format!("poolmalloc-profile-test.{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let before = totals(&{
        let p = dir.join("before.heap");
        poolmalloc::profile::dump(&p).unwrap();
        p
    });

    // Four threads allocate 20 MB each in 2 KiB blocks and keep half; the
    // kept halves are freed by the main thread (cross-thread frees of
    // sampled blocks). Then the main thread keeps eight 4 MiB huge blocks.
    const BLOCK: usize = 2048;
    const N: usize = 10_000;
    let kept: Vec<Vec<Vec<u8>>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let mut keep = Vec::with_capacity(N / 2);
                    for i in 0..N {
                        let v = black_box(vec![1u8; BLOCK]);
                        if i % 2 == 0 {
                            keep.push(v);
                        }
                    }
                    keep
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let huge: Vec<Vec<u8>> = (0..8).map(|_| black_box(vec![2u8; 4 << 20])).collect();

    let p = dir.join("held.heap");
    poolmalloc::profile::dump(&p).unwrap();
    let held = totals(&p);
    let alloc_bytes = held[1] - before[1];
    let live_bytes = held[3] - before[3];
    let want_alloc = (4 * N * BLOCK + 8 * (4 << 20)) as f64;
    let want_live = (4 * N / 2 * BLOCK + 8 * (4 << 20)) as f64;
    println!("allocated {alloc_bytes:.0} (true {want_alloc:.0}), live {live_bytes:.0} (true {want_live:.0})");
    // Over 100 MB at a 512 KiB mean the estimate's standard error is about
    // 7 %; the bounds are four of them.
    assert!(interval <= 1048576.0, "the test assumes the default interval or less");
    near(alloc_bytes, want_alloc, 0.3, "allocated bytes");
    near(live_bytes, want_live, 0.3, "live bytes");

    // Frees from another thread than the allocating one take the samples
    // off the live totals.
    drop(kept);
    drop(huge);
    let p = dir.join("freed.heap");
    poolmalloc::profile::dump(&p).unwrap();
    let freed = totals(&p);
    assert!(freed[3] - before[3] < 0.05 * want_live, "live bytes after the frees: {}", freed[3] - before[3]);
    assert!(freed[1] >= held[1], "allocated bytes never go down");

    // Stopped, nothing new is sampled. The baseline is read after the stop:
    // the test harness's own thread may allocate (and be sampled) until then.
    poolmalloc::profile::stop();
    assert!(!poolmalloc::profile::is_running());
    let p = dir.join("at-stop.heap");
    poolmalloc::profile::dump(&p).unwrap();
    let at_stop = totals(&p);
    let v: Vec<Vec<u8>> = (0..10_000).map(|_| black_box(vec![3u8; 4096])).collect();
    let p = dir.join("stopped.heap");
    poolmalloc::profile::dump(&p).unwrap();
    let stopped = totals(&p);
    assert_eq!(stopped[1], at_stop[1], "no sample after stop");
    drop(v);
    assert_eq!(poolmalloc::profile::dropped(), 0);

    // The table of sampled blocks grows with the live samples and finds
    // every one again: 200,000 records (fake addresses, never touched) with
    // a sample's weight each, then all forgotten.
    use poolmalloc::internals::{prof_forget, prof_live, prof_record};
    let base = 0x7000_0000_0000usize;
    let n = 200_000;
    let live0 = prof_live();
    for i in 0..n {
        assert!(prof_record((base + i * 48) as *mut u8, 4096), "record {i} dropped");
    }
    assert_eq!(prof_live(), live0 + n);
    let p = dir.join("many.heap");
    poolmalloc::profile::dump(&p).unwrap();
    let many = totals(&p);
    // Each 4 KiB sample stands for interval / 4 KiB blocks on average.
    let weight = 1.0 / -(-4096.0 / interval).exp_m1();
    near(many[3] - stopped[3], n as f64 * 4096.0 * weight, 0.001, "live bytes of the filed samples");
    assert!(!prof_forget((base + 8) as *mut u8), "an address that was never sampled");
    for i in (0..n).rev() {
        assert!(prof_forget((base + i * 48) as *mut u8), "record {i} lost");
    }
    assert_eq!(prof_live(), live0);
    assert!(!prof_forget(base as *mut u8), "forgotten twice");
    std::fs::remove_dir_all(&dir).unwrap();
}
