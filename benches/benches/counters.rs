//! The cost of reading the allocator's byte counters while 8 other threads
//! allocate and free, against jemalloc's equivalent in the same run:
//!
//! * `poolmalloc::counters()` (allocated, active, mapped, resident), with 8
//!   threads churning blocks of 16 B to 4 KiB through `PoolMalloc`;
//! * `poolmalloc::stats()`, the full snapshot, for scale;
//! * jemalloc's `epoch::advance()` then `stats::allocated` and
//!   `stats::resident` (what `tikv-jemalloc-ctl` users call; without the
//!   epoch the figures never change), with the 8 threads churning through
//!   jemalloc.
//!
//! Each figure is the reading thread's own CPU time per read
//! (`CLOCK_THREAD_CPUTIME_ID`), so the time it spends descheduled while the
//! churning threads hold the cores is not counted: on a machine with fewer
//! than 9 cores the reader shares them.
//!
//! `cargo bench -p poolmalloc-benches --bench counters`

use criterion::{criterion_group, criterion_main, Criterion};
use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;
use tikv_jemalloc_ctl::{epoch, stats};
use tikv_jemallocator::Jemalloc;

#[global_allocator]
static GLOBAL: poolmalloc::PoolMalloc = poolmalloc::PoolMalloc;

static JEMALLOC: Jemalloc = Jemalloc;

const THREADS: usize = 8;

/// Threads that keep 512 blocks each live, replacing a pseudo-random one
/// with a block of a pseudo-random size at every step, until stopped.
struct Churn {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Churn {
    fn start(a: &'static (dyn GlobalAlloc + Sync)) -> Churn {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..THREADS)
            .map(|t| {
                let stop = stop.clone();
                thread::spawn(move || {
                    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ t as u64;
                    let mut live: Vec<(*mut u8, Layout)> = Vec::with_capacity(512);
                    while !stop.load(Ordering::Relaxed) {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let l = Layout::from_size_align(16 + (x as usize >> 8) % 4080, 8).unwrap();
                        // SAFETY: a valid non-zero layout; every block is freed
                        // once below with its own layout.
                        let p = unsafe { a.alloc(l) };
                        assert!(!p.is_null());
                        if live.len() < 512 {
                            live.push((p, l));
                        } else {
                            let (old, ol) = std::mem::replace(&mut live[x as usize % 512], (p, l));
                            // SAFETY: allocated above with `ol`.
                            unsafe { a.dealloc(old, ol) };
                        }
                    }
                    for (p, l) in live {
                        // SAFETY: allocated above with `l`.
                        unsafe { a.dealloc(p, l) };
                    }
                })
            })
            .collect();
        thread::sleep(Duration::from_millis(50));
        Churn { stop, threads }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
    }
}

/// This thread's CPU time.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid clock id and out-pointer.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(r, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs `read` `iters` times and returns the CPU time this thread spent.
fn cpu_time_of<T>(iters: u64, mut read: impl FnMut() -> T) -> Duration {
    let start = thread_cpu();
    for _ in 0..iters {
        black_box(read());
    }
    thread_cpu() - start
}

fn counters(c: &mut Criterion) {
    let mut g = c.benchmark_group("counters_with_8_threads_allocating");
    g.measurement_time(Duration::from_secs(3));

    let churn = Churn::start(&GLOBAL);
    g.bench_function("poolmalloc::counters", |b| b.iter_custom(|n| cpu_time_of(n, poolmalloc::counters)));
    g.bench_function("poolmalloc::stats", |b| b.iter_custom(|n| cpu_time_of(n, poolmalloc::stats)));
    churn.stop();

    let churn = Churn::start(&JEMALLOC);
    g.bench_function("jemalloc epoch+allocated+resident", |b| {
        b.iter_custom(|n| {
            cpu_time_of(n, || {
                epoch::advance().unwrap();
                (stats::allocated::read().unwrap(), stats::resident::read().unwrap())
            })
        })
    });
    churn.stop();
    g.finish();
}

criterion_group!(benches, counters);
criterion_main!(benches);
