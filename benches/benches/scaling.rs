//! Thread scaling: throughput at 1, 2 and 4 threads (more with
//! `--threads 1,2,4,8,16`) for every allocator, in the same run, on two
//! workloads:
//!
//! * **local**: each thread allocates a batch of 100 blocks of mixed small
//!   sizes (16–256 B) and frees them in LIFO order, over and over;
//! * **producer-consumer**: threads in pairs (2, 4, ...); one allocates
//!   64-byte blocks and sends them in batches of 256 through a channel, the
//!   other frees them (every free is a cross-thread free). The scaling ratio
//!   for it is relative to the first (2-thread) row.
//!
//! Each configuration runs `--runs` times (default 5), allocators
//! alternating within each round; the median throughput is reported, in
//! millions of allocation+free pairs per second.
//!
//! `cargo bench -p poolmalloc-benches --bench scaling [-- --quick] [-- --threads 1,2,4]`

use poolmalloc_benches::allocators;
use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::mpsc;
use std::sync::Barrier;
use std::time::{Duration, Instant};

type Alloc = &'static (dyn GlobalAlloc + Sync);

const SIZES: [usize; 8] = [16, 24, 32, 48, 64, 96, 128, 256];

/// Pairs per second, local workload, `threads` threads for `dur`.
fn local(a: Alloc, threads: usize, dur: Duration) -> f64 {
    let barrier = Barrier::new(threads);
    let total: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || {
                    let mut ptrs = [std::ptr::null_mut::<u8>(); 100];
                    let mut n = 0u64;
                    barrier.wait();
                    let start = Instant::now();
                    let mut k = t;
                    while start.elapsed() < dur {
                        for _ in 0..50 {
                            for (i, p) in ptrs.iter_mut().enumerate() {
                                let l = Layout::from_size_align(SIZES[(i + k) & 7], 8).unwrap();
                                // SAFETY: a valid layout.
                                let q = unsafe { a.alloc(l) };
                                assert!(!q.is_null());
                                // SAFETY: at least one byte.
                                unsafe { q.write(i as u8) };
                                *p = q;
                            }
                            for (i, &p) in ptrs.iter().enumerate().rev() {
                                let l = Layout::from_size_align(SIZES[(i + k) & 7], 8).unwrap();
                                // SAFETY: allocated above with `l`.
                                unsafe { a.dealloc(black_box(p), l) };
                            }
                            n += 100;
                            k += 1;
                        }
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    total as f64 / dur.as_secs_f64()
}

struct Ptr(*mut u8);
// SAFETY: a heap block handed from one thread to another.
unsafe impl Send for Ptr {}

/// Pairs per second, producer-consumer workload, `threads` threads (in
/// pairs).
fn producer_consumer(a: Alloc, threads: usize, dur: Duration) -> f64 {
    let pairs = threads / 2;
    let l = Layout::from_size_align(64, 8).unwrap();
    let total: u64 = std::thread::scope(|s| {
        let mut hs = Vec::new();
        for _ in 0..pairs {
            let (tx, rx) = mpsc::sync_channel::<Vec<Ptr>>(64);
            hs.push(s.spawn(move || {
                let start = Instant::now();
                let mut n = 0u64;
                while start.elapsed() < dur {
                    let mut batch = Vec::with_capacity(256);
                    for i in 0..256 {
                        // SAFETY: a valid layout.
                        let q = unsafe { a.alloc(l) };
                        assert!(!q.is_null());
                        // SAFETY: 64 bytes.
                        unsafe { q.write(i as u8) };
                        batch.push(Ptr(q));
                    }
                    n += 256;
                    tx.send(batch).unwrap();
                }
                n
            }));
            hs.push(s.spawn(move || {
                for batch in rx {
                    for p in batch {
                        // SAFETY: allocated by the producer with `l`.
                        unsafe { a.dealloc(black_box(p.0), l) };
                    }
                }
                0
            }));
        }
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    total as f64 / dur.as_secs_f64()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let mut threads = vec![1usize, 2, 4];
    let mut runs = if quick { 3 } else { 5 };
    for w in args.windows(2) {
        if w[0] == "--threads" {
            threads = w[1].split(',').filter_map(|t| t.parse().ok()).collect();
        }
        if w[0] == "--runs" {
            runs = w[1].parse().unwrap_or(runs);
        }
    }
    let dur = Duration::from_millis(if quick { 100 } else { 400 });
    let allocs = allocators();
    println!("cores available: {}", std::thread::available_parallelism().map_or(0, |n| n.get()));
    for (wname, work) in
        [("local", local as fn(Alloc, usize, Duration) -> f64), ("producer-consumer", producer_consumer)]
    {
        println!("\n{wname}: million alloc+free pairs per second (median of {runs})");
        print!("{:>8}", "threads");
        for (name, _) in &allocs {
            print!("{name:>20}");
        }
        println!();
        // Producer-consumer needs threads in pairs.
        let threads: Vec<usize> = if wname == "local" {
            threads.clone()
        } else {
            threads.iter().map(|&t| t & !1).filter(|&t| t >= 2).collect()
        };
        let mut results = vec![vec![0.0; allocs.len()]; threads.len()];
        for (ti, &t) in threads.iter().enumerate() {
            let mut samples = vec![Vec::new(); allocs.len()];
            for _ in 0..runs {
                for (ai, (_, a)) in allocs.iter().enumerate() {
                    samples[ai].push(work(*a, t, dur) / 1e6);
                }
            }
            print!("{t:>8}");
            for (ai, s) in samples.iter_mut().enumerate() {
                results[ti][ai] = median(s);
                print!("{:>20.1}", results[ti][ai]);
            }
            println!();
        }
        let idx = |n: &str| allocs.iter().position(|(a, _)| *a == n).unwrap();
        let (pm, locked, mi) = (idx("poolmalloc"), idx("poolmalloc-locked"), idx("mimalloc"));
        for (ti, &t) in threads.iter().enumerate() {
            println!(
                "  {t} threads: poolmalloc / locked = {:.2}x, poolmalloc / mimalloc = {:.2}x, scaling vs the first row = {:.2}",
                results[ti][pm] / results[ti][locked],
                results[ti][pm] / results[ti][mi],
                results[ti][pm] / (t as f64 * results[0][pm] / threads[0] as f64)
            );
        }
    }
}
