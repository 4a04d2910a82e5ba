//! Model check of how a pool passes between threads: its owner exits and
//! abandons it, another thread frees into it meanwhile, and a third heap
//! adopts it or a sweeper collects it. loom explores the interleavings of
//! the hand-over words (`Handover`: owner word, remote list, hints, state),
//! the abandoned lists with their lock (`Abandoned`, `RawLock`) and the
//! holder-only fields (`Local`, which loom checks for unordered access).
//!
//! Run with:
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release -p poolmalloc --test loom_handover`

#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use poolmalloc::internals::{state, Abandoned, Block, Handover, Links, Local, RemoteHints, OWNER_FULL};
use std::ptr;

/// Owner ids of the exiting heap and the adopting heap (multiples of 64,
/// as thread ids are).
const OWNER: usize = 64;
const ADOPTER: usize = 128;
/// The pool's size class.
const CLASS: usize = 5;

/// A pool record as far as the hand-over goes: list links, the shared
/// words, and the holder's count of blocks out (as `Pool::used`).
struct Node {
    next: Local<*mut Node>,
    prev: Local<*mut Node>,
    hand: Handover,
    used: Local<u32>,
}

struct NodeLinks;

impl Links<Node> for NodeLinks {
    unsafe fn links<'a>(node: *mut Node) -> (&'a Local<*mut Node>, &'a Local<*mut Node>) {
        // SAFETY: by the caller, `node` is live for 'a.
        unsafe { (&(*node).next, &(*node).prev) }
    }
}

type Lists = Abandoned<Node, NodeLinks, 8>;

/// Everything the model's threads share.
struct World {
    node: Node,
    lists: Lists,
    owner_hints: RemoteHints,
    adopter_hints: RemoteHints,
}

// SAFETY: the raw pointers in `Node` are list links, touched only under the
// protocols the model checks.
unsafe impl Send for World {}
// SAFETY: as for Send.
unsafe impl Sync for World {}

impl World {
    fn node_ptr(&self) -> *mut Node {
        &self.node as *const Node as *mut Node
    }
}

/// Blocks as 16-byte-aligned boxes whose addresses stay valid for the test.
#[repr(C, align(16))]
struct Slot(Block);

fn blocks(n: usize) -> Vec<usize> {
    (0..n).map(|_| Box::into_raw(Box::new(Slot(Block { next: ptr::null_mut(), mark: 0 }))) as usize).collect()
}

fn free_all(all: Vec<usize>) {
    for b in all {
        // SAFETY: reclaiming the test's boxes.
        drop(unsafe { Box::from_raw(b as *mut Slot) });
    }
}

/// Takes the remote frees as the pool's holder, as `Pool::collect_remote`
/// does: the blocks and the count of blocks out change hands.
///
/// # Safety
/// The caller holds the pool.
unsafe fn collect(node: &Node, out: &mut Vec<usize>) {
    let (mut b, n) = node.hand.take_remote();
    let before = out.len();
    while !b.is_null() {
        out.push(b as usize);
        // SAFETY: blocks on a taken list are the test's boxes, ours now.
        b = unsafe { (*b).next };
    }
    assert_eq!(out.len() - before, n as usize, "the head word counts the blocks");
    // SAFETY: by the caller, the holder.
    unsafe { node.used.set(node.used.get() - n) };
}

/// A world whose pool belongs to `OWNER`, filed as full, with `out` blocks
/// handed out.
fn world(out: u32) -> Arc<World> {
    let w = Arc::new(World {
        node: Node {
            next: Local::new(ptr::null_mut()),
            prev: Local::new(ptr::null_mut()),
            hand: Handover::new(),
            used: Local::new(out),
        },
        lists: Lists::new(),
        owner_hints: RemoteHints::new(),
        adopter_hints: RemoteHints::new(),
    });
    // SAFETY: the hints live in the world, which outlives every thread.
    unsafe { w.node.hand.publish(OWNER, &w.owner_hints) };
    w.node.hand.state.store(state::USED, loom::sync::atomic::Ordering::Relaxed);
    assert!(w.node.hand.file_full(OWNER | OWNER_FULL));
    w
}

/// A thread that does not own the pool frees `b` into it, as the free slow
/// path does for a pool whose owner word is not its own.
fn freer(w: Arc<World>, b: usize) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let word = w.node.hand.owner.load(loom::sync::atomic::Ordering::Relaxed);
        assert!(word == 0 || word & !OWNER_FULL == OWNER || word & !OWNER_FULL == ADOPTER);
        // SAFETY: the block is ours, given up here, once.
        unsafe { w.node.hand.free_remote(b as *mut Block, b as *mut Block, 1, CLASS) };
    })
}

/// The owner's thread exits: as `Heap::abandon_pool`, it collects, then
/// abandons the pool to the lists if blocks are still out. Returns the
/// blocks it collected and whether it abandoned the pool.
fn exit_owner(w: &World) -> (Vec<usize>, bool) {
    let mut got = Vec::new();
    // SAFETY: we own the pool.
    unsafe { collect(&w.node, &mut got) };
    // SAFETY: as above.
    if unsafe { w.node.used.get() } == 0 {
        return (got, false);
    }
    w.node.hand.abandon();
    // SAFETY: we own the pool, which is on no list; it outlives the lists.
    unsafe { w.lists.put(w.node_ptr(), CLASS) };
    (got, true)
}

/// A heap looks for a pool of `CLASS` and adopts what it finds, as
/// `Heap::adopt`: it publishes itself, collects, and files the pool as full
/// if it has no free block, collecting again when frees are waiting.
fn adopter(w: Arc<World>) -> thread::JoinHandle<Vec<usize>> {
    thread::spawn(move || {
        let mut got = Vec::new();
        let mut taken = [ptr::null_mut(); 1];
        if w.lists.take(CLASS, &mut taken) == 0 {
            return got;
        }
        assert_eq!(taken[0], w.node_ptr());
        // SAFETY: taken off the lists, the pool is ours; the hints live in
        // the world, which outlives every thread.
        unsafe {
            assert_eq!(w.node.hand.state.load(loom::sync::atomic::Ordering::Relaxed), state::ABANDONED);
            w.node.hand.adopt(ADOPTER, &w.adopter_hints);
            collect(&w.node, &mut got);
            if got.is_empty() && !w.node.hand.file_full(ADOPTER | OWNER_FULL) {
                collect(&w.node, &mut got);
                assert!(!got.is_empty(), "filing as full fails only when frees wait");
            }
        }
        got
    })
}

/// No block freed remotely is stranded: a pool that its owner filed as full
/// has none waiting unless the owner has the hint for its class.
fn not_stranded(w: &World) {
    let word = w.node.hand.owner.load(loom::sync::atomic::Ordering::Relaxed);
    if word & OWNER_FULL != 0 && w.node.hand.has_remote() {
        let hints = if word & !OWNER_FULL == ADOPTER { &w.adopter_hints } else { &w.owner_hints };
        assert!(hints.take(CLASS), "a full pool with remote frees, and no hint for its owner");
    }
}

#[test]
fn a_free_races_the_owner_abandoning_and_another_heap_adopting() {
    loom::model(|| {
        // Two blocks out: the freer's, and one that stays out so that the
        // pool is abandoned, not given back.
        let w = world(2);
        let all = blocks(1);
        let f = freer(w.clone(), all[0]);
        let a = adopter(w.clone());
        let (mut got, abandoned) = exit_owner(&w);
        assert!(abandoned, "a block stays out");
        f.join().unwrap();
        got.extend(a.join().unwrap());
        not_stranded(&w);
        // Whatever nobody collected is still on the pool's remote list, or
        // the pool is still on the abandoned lists for a sweeper.
        w.lists.sweep(
            |p| {
                // SAFETY: the lists' lock makes us the holder.
                unsafe { collect(&*p, &mut got) };
                false
            },
            |_| unreachable!(),
        );
        let word = w.node.hand.owner.load(loom::sync::atomic::Ordering::Relaxed);
        if word & !OWNER_FULL == ADOPTER {
            // SAFETY: every thread has finished: the model is the holder.
            unsafe { collect(&w.node, &mut got) };
        }
        assert_eq!(got, all, "the freed block is collected exactly once");
        // SAFETY: as above.
        assert_eq!(unsafe { w.node.used.get() }, 1, "the count of blocks out follows the collections");
        free_all(all);
    });
}

#[test]
fn a_sweeper_gives_back_an_abandoned_pool_only_once_it_is_empty() {
    loom::model(|| {
        let w = world(1);
        let all = blocks(1);
        let (got, abandoned) = exit_owner(&w);
        assert!(got.is_empty() && abandoned);
        let f = freer(w.clone(), all[0]);
        let w2 = w.clone();
        let sweeper = thread::spawn(move || {
            let mut got = Vec::new();
            let mut released = 0;
            w2.lists.sweep(
                |p| {
                    // SAFETY: the lists' lock makes us the holder.
                    unsafe {
                        collect(&*p, &mut got);
                        (*p).used.get() == 0
                    }
                },
                |_| released += 1,
            );
            (got, released)
        });
        f.join().unwrap();
        let (mut got, released) = sweeper.join().unwrap();
        if released == 1 {
            assert_eq!(got, all, "released only after its last block came back");
        } else {
            let mut taken = [ptr::null_mut(); 1];
            assert_eq!(w.lists.take(CLASS, &mut taken), 1, "still on the lists");
            // SAFETY: taken off the lists: ours.
            unsafe { collect(&w.node, &mut got) };
            assert_eq!(got, all);
        }
        assert_eq!(w.lists.total(), 1);
        free_all(all);
    });
}

#[test]
fn a_free_into_a_pool_its_adopter_filed_as_full_reaches_the_adopter() {
    loom::model(|| {
        let w = world(2);
        let all = blocks(1);
        let (got, abandoned) = exit_owner(&w);
        assert!(got.is_empty() && abandoned);
        // The adopter finds no free block and files the pool as full while
        // the freer frees.
        let a = adopter(w.clone());
        let f = freer(w.clone(), all[0]);
        let mut got = a.join().unwrap();
        f.join().unwrap();
        not_stranded(&w);
        // SAFETY: every thread has finished: the model is the holder.
        unsafe { collect(&w.node, &mut got) };
        assert_eq!(got, all);
        free_all(all);
    });
}
