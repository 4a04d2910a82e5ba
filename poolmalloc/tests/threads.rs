//! The thread layer through the public API: cross-thread frees into full
//! pools, thread exit with live blocks (churn), and fork from a
//! multithreaded parent. `PoolMalloc` is this binary's global allocator.

use poolmalloc::internals::ARENA_SIZE;
use poolmalloc::PoolMalloc;
use std::alloc::{GlobalAlloc, Layout};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: PoolMalloc = PoolMalloc;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

struct Send(*mut u8);
// SAFETY: the pointer is a heap block handed from one thread to another.
unsafe impl std::marker::Send for Send {}

#[test]
fn remote_frees_make_full_pools_usable_again() {
    let _s = serial();
    let l = Layout::from_size_align(64, 8).unwrap();
    let (to_freer, freer_rx) = mpsc::channel::<Vec<Send>>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let freer = std::thread::spawn(move || {
        for batch in freer_rx {
            for b in batch {
                // SAFETY: blocks allocated with `l` on the producer thread.
                unsafe { PoolMalloc.dealloc(b.0, l) };
            }
            done_tx.send(()).unwrap();
        }
    });
    // The producer fills whole pools, hands every block to the freer, and
    // repeats. If full pools that received remote frees were stranded, each
    // round would take fresh pools and the mapped size would keep growing.
    let mut mapped_after_first = 0;
    for round in 0..30 {
        // SAFETY: valid layout.
        let batch: Vec<Send> = (0..20_000).map(|_| Send(unsafe { PoolMalloc.alloc(l) })).collect();
        assert!(batch.iter().all(|b| !b.0.is_null()));
        to_freer.send(batch).unwrap();
        done_rx.recv().unwrap();
        if round == 0 {
            mapped_after_first = poolmalloc::stats().os.mapped;
        }
    }
    let mapped = poolmalloc::stats().os.mapped;
    drop(to_freer);
    freer.join().unwrap();
    assert!(
        mapped <= mapped_after_first + 2 * ARENA_SIZE,
        "memory freed remotely is reused: mapped {mapped_after_first} after one round, {mapped} after 30"
    );
    assert!(poolmalloc::stats().heaps.remote_frees >= 30 * 20_000);
}

#[test]
fn thread_churn_loses_nothing() {
    let _s = serial();
    poolmalloc::trim();
    let before = poolmalloc::stats();
    let l = Layout::from_size_align(48, 8).unwrap();
    let (tx, rx) = mpsc::channel::<Vec<Send>>();
    let collector = std::thread::spawn(move || {
        let mut held: Vec<Send> = Vec::new();
        for batch in rx {
            held.extend(batch);
            // Free the older half now, the rest later: blocks of exited
            // threads are freed at different times.
            if held.len() > 20_000 {
                for b in held.drain(..10_000) {
                    // SAFETY: blocks allocated with `l` by exited threads.
                    unsafe { PoolMalloc.dealloc(b.0, l) };
                }
            }
        }
        held
    });
    for t in 0..1000 {
        let tx = tx.clone();
        std::thread::spawn(move || {
            // Each thread exits while holding 200 live blocks (and frees
            // some of its own first).
            // SAFETY: valid layout.
            let mut v: Vec<Send> = (0..300).map(|_| Send(unsafe { PoolMalloc.alloc(l) })).collect();
            for b in v.drain(..100) {
                // SAFETY: allocated just above with `l`.
                unsafe { PoolMalloc.dealloc(b.0, l) };
            }
            v.iter().for_each(|b| {
                // SAFETY: each block holds 48 bytes.
                unsafe { b.0.write(t as u8) }
            });
            tx.send(v).unwrap();
        })
        .join()
        .unwrap();
    }
    drop(tx);
    let held = collector.join().unwrap();
    let live_bytes = held.len() * 48;
    let mid = poolmalloc::stats();
    // Everything still held plus bounded overhead; nothing per thread.
    assert!(
        mid.os.mapped <= before.os.mapped + live_bytes * 2 + 8 * ARENA_SIZE,
        "mapped {} with {} live bytes after 1000 threads (started at {})",
        mid.os.mapped,
        live_bytes,
        before.os.mapped
    );
    for b in held {
        // SAFETY: allocated with `l`, freed once.
        unsafe { PoolMalloc.dealloc(b.0, l) };
    }
    poolmalloc::trim();
    let after = poolmalloc::stats();
    assert!(after.heaps.pools_abandoned_total > 0, "exiting threads abandoned pools");
    assert!(
        after.os.mapped <= before.os.mapped + 2 * ARENA_SIZE,
        "after freeing everything and trim: mapped {} (started at {})\n{after}",
        after.os.mapped,
        before.os.mapped
    );
    assert!(after.adds_up(), "{after}");
}

#[test]
fn fork_from_a_multithreaded_parent() {
    let _s = serial();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut v: Vec<Vec<u8>> = Vec::new();
                let mut i = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    v.push(vec![t as u8; 16 + (i * 37) % 3000]);
                    if v.len() > 500 {
                        v.drain(..250);
                    }
                    i += 1;
                }
            })
        })
        .collect();
    for n in 0..100 {
        // SAFETY: the child only allocates, frees and calls _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let mut v: Vec<Box<[u8]>> = Vec::new();
            for i in 0..2000 {
                v.push(vec![i as u8; 1 + i % 5000].into_boxed_slice());
            }
            let ok = v.iter().enumerate().all(|(i, b)| b.iter().all(|&x| x == i as u8));
            drop(v);
            let big = vec![7u8; 3 << 20];
            let ok = ok && big[12345] == 7;
            drop(big);
            // SAFETY: _exit is async-signal-safe and ends the child.
            unsafe { libc::_exit(if ok { 0 } else { 3 }) };
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut status = 0;
        loop {
            // SAFETY: waiting for our own child.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if r == pid {
                break;
            }
            if Instant::now() > deadline {
                // SAFETY: killing our own child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                // SAFETY: reaping it.
                unsafe { libc::waitpid(pid, &mut status, 0) };
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                panic!("child {n} hung after fork");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child {n} status {status:#x}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
}

/// Large blocks shrunk, grown and moved by `realloc` in two threads while
/// two others allocate and free 64 KiB – 3 MiB blocks: the ownership map
/// must stay exact (a range leaves it before the kernel takes it back), so
/// no free is reported as invalid and every block keeps its contents.
#[test]
fn large_reallocs_race_with_allocations() {
    let _s = serial();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let until = Instant::now() + Duration::from_secs(2);
    let mut threads = Vec::new();
    for t in 0..2u64 {
        threads.push(std::thread::spawn(move || {
            let mut rounds = 0u64;
            while Instant::now() < until {
                let fill = (t * 31 + rounds) as u8;
                let mut v = vec![fill; 12 << 20];
                v.truncate(1 << 20);
                v.shrink_to_fit(); // realloc: shrink in place
                v.resize(20 << 20, fill); // realloc: grow in place or move
                v.truncate(3 << 20);
                v.shrink_to_fit();
                assert!(v.iter().all(|&b| b == fill), "contents survive realloc");
                rounds += 1;
            }
            rounds
        }));
    }
    let mut others = Vec::new();
    for t in 0..2usize {
        let stop = stop.clone();
        others.push(std::thread::spawn(move || {
            let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ t as u64;
            let mut held: Vec<Vec<u8>> = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let size = (64 << 10) + (x as usize % (3 << 20));
                held.push(vec![t as u8; size]);
                if held.len() > 8 {
                    let v = held.swap_remove(x as usize % held.len());
                    assert!(v.iter().all(|&b| b == t as u8));
                }
            }
        }));
    }
    let rounds: u64 = threads.into_iter().map(|h| h.join().unwrap()).sum();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for h in others {
        h.join().unwrap();
    }
    assert!(rounds > 0);
}

#[test]
fn medium_blocks_freed_by_an_idle_thread_reach_their_owner() {
    let _g = serial();
    // The owner allocates medium blocks and hands them to a consumer, which
    // frees them all and then waits (alive, idle). No block may stay held
    // back in the consumer's heap: after the owner collects its remote
    // frees (trim), none of them counts as in use.
    let class = poolmalloc::internals::class_of(40_000);
    let in_use = || poolmalloc::stats().classes[class].blocks_in_use;
    let before = in_use();
    let l = Layout::from_size_align(40_000, 8).unwrap();
    // Addresses in an array on the stack: handing them over frees nothing.
    let mut v = [0usize; 64];
    for (i, slot) in v.iter_mut().enumerate() {
        // SAFETY: a valid layout.
        let p = unsafe { PoolMalloc.alloc(l) };
        assert!(!p.is_null());
        // SAFETY: a fresh block of 40,000 bytes.
        unsafe { p.write_bytes(i as u8, 40_000) };
        *slot = p as usize;
    }
    assert_eq!(in_use(), before + 64);
    // The consumer allocates and frees nothing else after its frees (a
    // barrier wait does not allocate), so it never reaches its own slow
    // path and frees into no other pool.
    let sync = std::sync::Arc::new(std::sync::Barrier::new(2));
    let s2 = sync.clone();
    let consumer = std::thread::spawn(move || {
        // SAFETY: a warm-up allocation, so the frees below find this
        // thread's heap set up.
        unsafe { PoolMalloc.dealloc(PoolMalloc.alloc(Layout::new::<u64>()), Layout::new::<u64>()) };
        s2.wait(); // the blocks are ready
        for b in v {
            // SAFETY: allocated by the owner with `l`, handed over once.
            unsafe { PoolMalloc.dealloc(b as *mut u8, l) };
        }
        s2.wait(); // all freed
        s2.wait(); // idle until the owner has looked
    });
    sync.wait();
    sync.wait();
    poolmalloc::trim();
    let left = in_use() - before;
    sync.wait();
    consumer.join().unwrap();
    assert_eq!(left, 0, "{left} medium blocks freed by an idle thread never reached their owner");
}

#[test]
fn trim_reaches_another_live_thread_at_its_next_slow_path() {
    let _g = serial();
    // A worker fills and empties pools of one class, so its heap keeps empty
    // pools in its stash; it stays alive. The main thread trims; at the
    // worker's next slow path its stash goes back to the arenas.
    let sync = std::sync::Arc::new(std::sync::Barrier::new(2));
    let s2 = sync.clone();
    let worker = std::thread::spawn(move || {
        let l = Layout::from_size_align(3000, 8).unwrap();
        let mut v = [0usize; 4096];
        for slot in v.iter_mut() {
            // SAFETY: a valid layout.
            *slot = unsafe { PoolMalloc.alloc(l) } as usize;
        }
        for &p in v.iter() {
            // SAFETY: allocated above with `l`.
            unsafe { PoolMalloc.dealloc(p as *mut u8, l) };
        }
        s2.wait(); // pools stashed
        s2.wait(); // trimmed by the main thread
                   // A class this thread has never used: the slow path.
        let l2 = Layout::from_size_align(7000, 8).unwrap();
        // SAFETY: a valid layout; freed at once.
        unsafe { PoolMalloc.dealloc(PoolMalloc.alloc(l2), l2) };
        s2.wait(); // slow path taken
        s2.wait(); // checked
    });
    sync.wait();
    let stashed_before = poolmalloc::stats().pools.stashed;
    poolmalloc::trim();
    sync.wait();
    sync.wait();
    let stashed_after = poolmalloc::stats().pools.stashed;
    sync.wait();
    worker.join().unwrap();
    assert!(stashed_before > 0, "the worker stashed no pool; the test proves nothing");
    assert_eq!(
        stashed_after, 0,
        "{stashed_before} stashed pools before trim, {stashed_after} after the worker's slow path"
    );
}

#[test]
fn trim_in_a_loop_while_threads_churn_loses_nothing() {
    let _g = serial();
    // Four threads replace random blocks (16 B to 200 KB, small and medium)
    // in tables of their own, writing a tag over each block and checking it
    // before the free, while the main thread trims without pause. Any block
    // lost, handed out twice or released under its owner shows as a bad tag
    // or a crash.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (t + 1);
                let mut next = move || {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng
                };
                let mut table: Vec<(usize, usize, u8)> = vec![(0, 0, 0); 512];
                let mut steps = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) || steps < 10_000 {
                    let r = next();
                    let slot = (r % 512) as usize;
                    let (p, size, tag) = table[slot];
                    if p != 0 {
                        let l = Layout::from_size_align(size, 8).unwrap();
                        // SAFETY: a live block of `size` bytes written below.
                        let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, size) };
                        assert!(bytes.iter().all(|&b| b == tag), "thread {t}: block {p:#x} of {size} B changed");
                        // SAFETY: allocated below with `l`.
                        unsafe { PoolMalloc.dealloc(p as *mut u8, l) };
                    }
                    let size = if r >> 60 == 0 {
                        33_000 + (r >> 20) as usize % 170_000
                    } else {
                        16 + (r >> 20) as usize % 2000
                    };
                    let l = Layout::from_size_align(size, 8).unwrap();
                    // SAFETY: a valid layout.
                    let q = unsafe { PoolMalloc.alloc(l) };
                    assert!(!q.is_null());
                    let tag = (r >> 8) as u8;
                    // SAFETY: a fresh block of `size` bytes.
                    unsafe { q.write_bytes(tag, size) };
                    table[slot] = (q as usize, size, tag);
                    steps += 1;
                }
                for (p, size, tag) in table {
                    if p != 0 {
                        // SAFETY: a live block of `size` bytes.
                        let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, size) };
                        assert!(bytes.iter().all(|&b| b == tag));
                        // SAFETY: allocated with this layout.
                        unsafe { PoolMalloc.dealloc(p as *mut u8, Layout::from_size_align(size, 8).unwrap()) };
                    }
                }
                steps
            })
        })
        .collect();
    let start = Instant::now();
    let mut trims = 0u64;
    while start.elapsed() < Duration::from_millis(800) {
        poolmalloc::trim();
        trims += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let steps: u64 = threads.into_iter().map(|h| h.join().expect("a churning thread failed")).sum();
    assert!(trims > 10 && steps > 40_000, "{trims} trims, {steps} steps");
    poolmalloc::trim();
    assert!(poolmalloc::stats().adds_up());
}
