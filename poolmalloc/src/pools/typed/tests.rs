//! Unit tests of the typed pools: stamps, caps, teardown by thread exit and
//! by pool drop, trim, table overflow. `cargo test` runs them; those that
//! count outstanding slots (a process-wide figure) take a lock so that they
//! run one at a time, and some start threads of their own.

use super::*;
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex, MutexGuard};

/// The tests that count outstanding slots run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn outstanding() -> isize {
    OUTSTANDING.load(Relaxed)
}

#[test]
fn stamps_are_unique_and_never_empty() {
    let _s = serial();
    let pools: Vec<TypedPool<u64>> = (0..3).map(|_| TypedPool::new()).collect();
    let stamps: Vec<u64> = pools
        .iter()
        .map(|p| {
            drop(p.alloc(1));
            p.core.stamp.load(Relaxed)
        })
        .collect();
    for (i, &s) in stamps.iter().enumerate() {
        assert_ne!(s, UNASSIGNED);
        assert_ne!(s, EMPTY_ENTRY);
        for &t in &stamps[i + 1..] {
            assert_ne!(s & BASE_MASK, t & BASE_MASK);
            assert_ne!(table_index(s), table_index(t), "few live pools get distinct indices");
        }
    }
}

#[test]
fn single_thread_keeps_at_most_cap() {
    let _s = serial();
    let base = outstanding();
    let pool = TypedPool::<[u64; 4]>::with_cap(100);
    let boxes: Vec<_> = (0..1000).map(|i| pool.alloc([i; 4])).collect();
    assert_eq!(outstanding() - base, 1000);
    drop(boxes);
    let st = pool.stats();
    assert_eq!(st.cached, 100);
    assert_eq!(st.released, 900);
    assert_eq!(outstanding() - base, 100);
    pool.trim();
    assert_eq!(outstanding(), base);
    assert_eq!(pool.stats().cached, 0);
}

#[test]
fn pool_drop_releases_caches_of_live_threads() {
    let _s = serial();
    let base = outstanding();
    let pool = Arc::new(TypedPool::<[u64; 6]>::with_cap(400));
    let threads = 4;
    let filled = Arc::new(Barrier::new(threads + 1));
    let resume = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (pool, filled, resume) = (pool.clone(), filled.clone(), resume.clone());
            std::thread::spawn(move || {
                let boxes: Vec<_> = (0..300).map(|i| pool.alloc([t as u64, i, 0, 0, 0, 0])).collect();
                drop(boxes);
                drop(pool);
                filled.wait();
                // The pool is dropped while this thread still has a cache
                // for it in its table.
                resume.wait();
                // A new pool may reuse the old one's table index; the stale
                // cache must be recognised and freed, not used.
                let fresh = TypedPool::<[u64; 6]>::with_cap(8);
                let b = fresh.alloc([1; 6]);
                assert_eq!(*b, [1; 6]);
            })
        })
        .collect();
    filled.wait();
    let st = pool.stats();
    assert_eq!(st.threads, threads);
    assert_eq!(st.live, 0);
    assert_eq!(st.cached as isize, outstanding() - base);
    assert!(st.cached >= threads * 100, "each thread caches its slots: {st}");
    drop(Arc::try_unwrap(pool).expect("the threads dropped their handles"));
    assert_eq!(outstanding(), base, "pool drop released every thread's cache");
    resume.wait();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(outstanding(), base);
}

#[test]
fn thread_exit_hands_slots_to_the_depot() {
    let _s = serial();
    let base = outstanding();
    let pool = Arc::new(TypedPool::<u128>::with_cap(64));
    let p2 = pool.clone();
    std::thread::spawn(move || {
        let boxes: Vec<_> = (0..208u128).map(|i| p2.alloc(i)).collect();
        drop(boxes);
        assert_eq!(p2.stats().cached, 64);
    })
    .join()
    .unwrap();
    let st = pool.stats();
    assert_eq!(st.threads, 0, "the exited thread's cache is retired");
    assert_eq!(st.cached, 32, "the depot keeps what fits in its share of the cap");
    assert_eq!(st.cached as isize, outstanding() - base);
    // This thread reuses the depot's slots.
    let b = pool.alloc(7);
    assert_eq!(pool.stats().misses, 208);
    assert_eq!(pool.stats().hits, 1);
    drop(b);
    pool.trim();
    assert_eq!(outstanding(), base);
    drop(pool);
    assert_eq!(outstanding(), base);
}

#[test]
fn trim_makes_other_threads_flush_on_next_use() {
    let _s = serial();
    let base = outstanding();
    let pool = TypedPool::<[u8; 48]>::with_cap(100);
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        let pool = &pool;
        s.spawn(move || {
            drop((0..100).map(|_| pool.alloc([3; 48])).collect::<Vec<_>>());
            done_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            drop(pool.alloc([4; 48]));
            done_tx.send(()).unwrap();
            go_rx.recv().unwrap();
        });
        done_rx.recv().unwrap();
        assert_eq!(pool.stats().cached, 100);
        pool.trim();
        // The other thread's cache (50) is out of reach until it next uses
        // the pool; the depot (50) is released at once.
        assert_eq!(pool.stats().cached, 50);
        go_tx.send(()).unwrap();
        done_rx.recv().unwrap();
        assert_eq!(pool.stats().cached, 1, "flushed, then one slot freed into it");
        assert_eq!(outstanding() - base, 1);
        go_tx.send(()).unwrap();
    });
    drop(pool);
    assert_eq!(outstanding(), base);
}

#[test]
fn more_live_pools_than_table_entries() {
    let _s = serial();
    let base = outstanding();
    let pools: Vec<TypedPool<(u64, u64, u64)>> = (0..TABLE_SIZE * 2 + 3).map(|_| TypedPool::with_cap(8)).collect();
    for round in 0..3u64 {
        let boxes: Vec<_> = pools.iter().enumerate().map(|(i, p)| p.alloc((i as u64, round, 0))).collect();
        for (i, b) in boxes.iter().enumerate() {
            assert_eq!(**b, (i as u64, round, 0));
            assert!(ptr::eq(PoolBox::pool(b), &pools[i]));
        }
    }
    for p in &pools {
        let st = p.stats();
        assert_eq!((st.live, st.cached, st.hits + st.misses), (0, 1, 3));
    }
    drop(pools);
    assert_eq!(outstanding(), base);
    TABLE.with(|t| {
        let mut c = t.overflow.get();
        while !c.is_null() {
            // SAFETY: this thread's cache.
            assert_eq!(unsafe { (*c).state.load(Relaxed) }, POOL_GONE);
            // SAFETY: as above.
            c = unsafe { (*c).next_in_thread.get() };
        }
    });
    // Pools made now find the stale entries and overflow caches and free them.
    let later: Vec<TypedPool<u8>> = (0..TABLE_SIZE).map(|_| TypedPool::new()).collect();
    for p in &later {
        drop(p.alloc(1));
    }
    drop(later);
    assert_eq!(outstanding(), base);
}

#[test]
fn cap_below_four_uses_only_the_depot() {
    let _s = serial();
    let base = outstanding();
    let pool = TypedPool::<u64>::with_cap(3);
    let boxes: Vec<_> = (0..10).map(|i| pool.alloc(i)).collect();
    drop(boxes);
    let st = pool.stats();
    assert_eq!((st.cached, st.released, st.threads), (3, 7, 1));
    let again: Vec<_> = (0..5).map(|i| pool.alloc(i)).collect();
    assert_eq!(pool.stats().hits, 3);
    drop(again);
    drop(pool);
    assert_eq!(outstanding(), base);
}
