//! Out of memory under `RLIMIT_AS`, in a child process: threads allocate
//! until they get null, then free everything and allocate again. No crash,
//! no deadlock, alignment and zeroing hold at the limit, and allocation works
//! again after every episode.
//!
//! Without arguments this program runs itself as a child with
//! `POOLMALLOC_TEST_OOM=1` and checks the child's exit; the child does the
//! work under a limit of its current address space plus 512 MiB.

use poolmalloc::PoolMalloc;
use std::alloc::{GlobalAlloc, Layout};
use std::process::Command;
use std::time::{Duration, Instant};

const HEADROOM: u64 = 512 << 20;

/// Current address-space size of this process, from /proc/self/statm.
fn vm_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: u64 = s.split_whitespace().next().unwrap().parse().unwrap();
    pages * 4096
}

struct Ptr(*mut u8, Layout);
// SAFETY: heap blocks handed between threads.
unsafe impl Send for Ptr {}

/// Allocates blocks of mixed sizes into `held` (whose capacity was reserved
/// before the limit) until the allocator says no.
fn fill(seed: usize, held: &mut Vec<Ptr>) {
    let sizes = [24usize, 200, 3000, 40_000, 1 << 20, 5 << 20];
    let mut i = seed;
    let mut failures = 0;
    while failures < 64 && held.len() < held.capacity() {
        let size = sizes[i % sizes.len()];
        let align = [8usize, 64, 4096][i % 3];
        let l = Layout::from_size_align(size, align).unwrap();
        let zeroed = i % 5 == 0;
        // SAFETY: a valid layout.
        let p = unsafe {
            if zeroed {
                PoolMalloc.alloc_zeroed(l)
            } else {
                PoolMalloc.alloc(l)
            }
        };
        if p.is_null() {
            failures += 1;
        } else {
            assert_eq!(p as usize % align, 0, "alignment {align} at the limit");
            // SAFETY: the block has `size` bytes.
            unsafe {
                if zeroed {
                    assert_eq!(*p, 0, "zeroed block at the limit");
                    assert_eq!(*p.add(size - 1), 0, "zeroed block at the limit");
                }
                p.write(1);
                p.add(size - 1).write(2);
            }
            held.push(Ptr(p, l));
        }
        i += 7;
    }
    assert!(failures > 0 || held.len() == held.capacity());
}

fn release(held: &mut Vec<Ptr>) {
    for Ptr(p, l) in held.drain(..) {
        // SAFETY: allocated above with `l`.
        unsafe { PoolMalloc.dealloc(p, l) };
    }
}

const THREADS: usize = 4;
const EPISODES: usize = 3;

fn child() {
    use std::sync::{Arc, Barrier};
    // Everything the harness needs is made before the limit: the threads,
    // their vectors and the barrier, so that only poolmalloc meets it.
    let start = Arc::new(Barrier::new(THREADS + 1));
    let counts: Arc<Vec<std::sync::atomic::AtomicUsize>> =
        Arc::new((0..THREADS).map(|_| std::sync::atomic::AtomicUsize::new(0)).collect());
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (start, counts) = (start.clone(), counts.clone());
            std::thread::spawn(move || {
                let mut held: Vec<Ptr> = Vec::with_capacity(1 << 16);
                for episode in 0..EPISODES {
                    start.wait(); // limit set / previous episode checked
                    fill(t * 13 + episode, &mut held);
                    counts[t].store(held.len(), std::sync::atomic::Ordering::Relaxed);
                    start.wait(); // everyone is at the limit
                    release(&mut held);
                    poolmalloc::trim();
                    start.wait(); // everything freed
                }
            })
        })
        .collect();
    let mut again: Vec<Ptr> = Vec::with_capacity(1 << 16);
    let limit = vm_bytes() + HEADROOM;
    let rl = libc::rlimit { rlim_cur: limit, rlim_max: limit };
    // SAFETY: setting our own limit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &rl) }, 0);
    for episode in 0..EPISODES {
        start.wait();
        start.wait();
        let total: usize = counts.iter().map(|c| c.load(std::sync::atomic::Ordering::Relaxed)).sum();
        assert!(total > 100, "episode {episode}: only {total} blocks before the limit");
        start.wait();
        poolmalloc::trim();
        // Allocation works again after the episode.
        fill(99, &mut again);
        assert!(again.len() > 100, "episode {episode}: allocation did not recover");
        release(&mut again);
        poolmalloc::trim();
        println!("oom episode {episode}: {total} blocks before the limit, recovered");
    }
    for h in handles {
        h.join().expect("a thread panicked at the limit");
    }
    // With default options and no trim(): use up the address space with
    // medium blocks (from arenas) until even 40 KB fails, free everything,
    // then ask for a huge block larger than any span or room left. What
    // poolmalloc still holds (cached spans, free pools and all-free arenas
    // waiting out the purge delay) must be given back when the mapping
    // fails, or the request fails.
    let mut at_limit = 0;
    for size in [1usize << 20, 40_000] {
        let l = Layout::from_size_align(size, 8).unwrap();
        while again.len() < again.capacity() {
            // SAFETY: a valid layout.
            let p = unsafe { PoolMalloc.alloc(l) };
            if p.is_null() {
                break;
            }
            // SAFETY: a fresh block of `size` bytes.
            unsafe { p.write_bytes(0x3c, 64) };
            again.push(Ptr(p, l));
        }
        at_limit = again.len();
    }
    release(&mut again);
    for size in [32usize << 20, 1 << 20, 40_000] {
        let l = Layout::from_size_align(size, 8).unwrap();
        // SAFETY: a valid layout.
        let p = unsafe { PoolMalloc.alloc(l) };
        assert!(!p.is_null(), "{size} B after freeing {at_limit} blocks at the limit: no recovery");
        // SAFETY: a fresh block of `size` bytes.
        unsafe {
            p.write_bytes(0x5a, size);
            PoolMalloc.dealloc(p, l);
        }
    }
    println!("oom: recovered without trim after {at_limit} blocks");
}

fn main() {
    if std::env::var_os("POOLMALLOC_TEST_OOM").is_some() {
        child();
        return;
    }
    let me = std::env::current_exe().unwrap();
    let mut c = Command::new(me).env("POOLMALLOC_TEST_OOM", "1").spawn().expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = c.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            c.kill().ok();
            panic!("out-of-memory child hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "out-of-memory child failed: {status}");
    println!("oom: ok");
}
