//! Model check of the remote-free list and its handover to the owner, with
//! loom: every interleaving of two pushing threads and the owner (which
//! files the pool as full, takes blocks, and withdraws the flag) is explored.
//!
//! Run with:
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release -p poolmalloc --test loom_remote`

#![cfg(loom)]

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use poolmalloc::internals::{Block, RemoteList};

/// Blocks as 16-byte-aligned boxes whose addresses stay valid for the test.
#[repr(C, align(16))]
struct Slot(Block);

fn blocks(n: usize) -> Vec<usize> {
    (0..n).map(|_| Box::into_raw(Box::new(Slot(Block { next: std::ptr::null_mut(), mark: 0 }))) as usize).collect()
}

/// Appends the blocks of a taken list to `out`, checking the count the
/// list's head word carried.
fn drain((list, count): (*mut Block, u32), out: &mut Vec<usize>) {
    let before = out.len();
    let mut b = list;
    while !b.is_null() {
        out.push(b as usize);
        // SAFETY: blocks on a taken list are the test's boxes.
        b = unsafe { (*b).next };
    }
    assert_eq!(out.len() - before, count as usize, "the head word counts the blocks");
}

/// Pushes `mine` onto `list`, counting the pushes that report they cleared
/// the FULL flag.
fn pusher(list: Arc<RemoteList>, notified: Arc<AtomicUsize>, mine: Vec<usize>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for b in mine {
            // SAFETY: each block is pushed by one thread, once.
            if unsafe { list.push(b as *mut Block) } {
                notified.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
}

fn free_all(all: Vec<usize>) {
    for b in all {
        // SAFETY: reclaiming the test's boxes.
        drop(unsafe { Box::from_raw(b as *mut Slot) });
    }
}

#[test]
fn owner_takes_while_a_thread_pushes() {
    loom::model(|| {
        let list = Arc::new(RemoteList::new());
        let notified = Arc::new(AtomicUsize::new(0));
        let all = blocks(2);
        // The owner has filed the pool as full before the pusher runs.
        assert!(list.try_set_full());
        let t = pusher(list.clone(), notified.clone(), all.clone());
        // The owner, concurrently, waits until it sees a block (as it does
        // when told), and takes what is there while the pusher may still be
        // pushing. A notified pool goes back to the available list, so the
        // flag stays clear.
        while !list.has_blocks() {
            thread::yield_now();
        }
        let mut got = Vec::new();
        drain(list.take(), &mut got);
        t.join().unwrap();
        drain(list.take(), &mut got);
        got.sort_unstable();
        let mut want = all.clone();
        want.sort_unstable();
        assert_eq!(got, want, "every pushed block is taken exactly once");
        assert_eq!(notified.load(Ordering::Relaxed), 1, "exactly one push reports clearing the flag");
        assert!(!list.is_full_flagged());
        free_all(all);
    });
}

#[test]
fn concurrent_pushers_lose_nothing() {
    loom::model(|| {
        let list = Arc::new(RemoteList::new());
        let notified = Arc::new(AtomicUsize::new(0));
        let all = blocks(2);
        assert!(list.try_set_full());
        let a = pusher(list.clone(), notified.clone(), vec![all[0]]);
        let b = pusher(list.clone(), notified.clone(), vec![all[1]]);
        a.join().unwrap();
        b.join().unwrap();
        let mut got = Vec::new();
        drain(list.take(), &mut got);
        got.sort_unstable();
        let mut want = all.clone();
        want.sort_unstable();
        assert_eq!(got, want, "both pushes survive contention");
        assert_eq!(notified.load(Ordering::Relaxed), 1, "exactly one pusher notifies the owner");
        free_all(all);
    });
}

#[test]
fn set_full_fails_while_blocks_wait_and_flag_can_be_withdrawn() {
    loom::model(|| {
        let list = Arc::new(RemoteList::new());
        let all = blocks(1);
        let l2 = list.clone();
        let b = all[0];
        // SAFETY: pushed once.
        let t = thread::spawn(move || unsafe { l2.push(b as *mut Block) });
        // Owner: try to file as full; if that fails, blocks are waiting.
        let filed = list.try_set_full();
        let notified = t.join().unwrap();
        if filed {
            // The push came after the flag: it must have notified.
            assert!(notified);
        } else {
            assert!(list.has_blocks() && !notified);
        }
        list.clear_full();
        let mut got = Vec::new();
        drain(list.take(), &mut got);
        assert_eq!(got, all.clone());
        free_all(all);
    });
}
