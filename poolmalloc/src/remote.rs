//! Part of layer 3: a pool's remote-free list.
//!
//! An atomic LIFO stack of blocks freed by threads that do not own the pool,
//! with a `FULL` flag in the low bit of the head word (blocks are 16-byte
//! aligned, so the bit is free) and the block count in its top 16 bits. The
//! head word is an `AtomicPtr` and the flag and count are put into its
//! address with `map_addr`, so the head block keeps its provenance:
//!
//! * [`RemoteList::push`] (any thread): links the block to the current head
//!   and publishes it with one compare-and-swap, which also clears `FULL`.
//!   It returns true to exactly one pusher after each [`try_set_full`]: the
//!   one whose push cleared the flag, which then tells the owner.
//! * [`RemoteList::take`] (owner): swaps the whole stack out. Only called
//!   when the flag is clear, so the swap never loses it.
//! * [`RemoteList::try_set_full`] (owner): sets `FULL` on an empty stack; fails
//!   if blocks are waiting (the owner should take them instead).
//!
//! Pushers only push and the owner only takes the whole stack, so there is no
//! ABA problem. This module is checked exhaustively with `loom`
//! (`tests/loom_remote.rs`); it depends on nothing but the atomics facade so
//! it can be built alone under `--cfg loom`.
//!
//! [`try_set_full`]: RemoteList::try_set_full

use crate::sync::atomic::{AtomicPtr, Ordering::*};
use core::ptr;

/// A free block. The first word of a free block links it into a list.
#[repr(C)]
pub struct Block {
    /// Next free block, or null.
    pub next: *mut Block,
    /// The pool's mark: on a free block of the local list (carved, or freed
    /// by the owner), the pool's address, which makes a second free of the
    /// block suspect (see `Pool::may_free`) and which `Pool::pop` checks
    /// before handing the block out; on a block freed by another thread, the
    /// pool's remote mark. Cleared when the block is handed out. Every block
    /// has 16 bytes or more, so this word is always part of the block.
    pub mark: usize,
}

/// Low bit of the head word: the owner wants to hear about the next push.
const FULL: usize = 1;
/// The top 16 bits of the head word count the blocks on the list, so the
/// owner can take the list over without walking it. User addresses fit in
/// 48 bits, and a pool holds at most 4096 blocks.
const COUNT_SHIFT: u32 = 48;
const PTR_MASK: usize = ((1 << COUNT_SHIFT) - 1) & !FULL;

#[inline]
fn count_of(w: *mut Block) -> u32 {
    (w.addr() >> COUNT_SHIFT) as u32
}

/// The head block of a head word (null if none).
#[inline]
fn head_of(w: *mut Block) -> *mut Block {
    w.map_addr(|a| a & PTR_MASK)
}

/// The head word holding only the flag.
#[inline]
fn full_word() -> *mut Block {
    ptr::without_provenance_mut(FULL)
}

/// The remote-free stack of one pool.
pub struct RemoteList {
    word: AtomicPtr<Block>,
}

impl RemoteList {
    /// An empty list without the flag.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        RemoteList { word: AtomicPtr::new(ptr::null_mut()) }
    }

    /// An empty list without the flag.
    #[cfg(loom)]
    #[allow(clippy::new_without_default)] // loom's atomics are built at run time, inside a model
    pub fn new() -> Self {
        RemoteList { word: AtomicPtr::new(ptr::null_mut()) }
    }

    /// Empties the list and clears the flag. Only while no other thread can
    /// reach the pool.
    pub fn reset(&self) {
        self.word.store(ptr::null_mut(), Relaxed);
    }

    /// Pushes `b`. Returns true if this push cleared the `FULL` flag, in
    /// which case the caller alone must notify the owner.
    ///
    /// # Safety
    /// `b` must point to a block the caller owns and gives up, at least
    /// pointer-sized and aligned to 2.
    pub unsafe fn push(&self, b: *mut Block) -> bool {
        // SAFETY: forwarded; a single block is a chain from itself to itself.
        unsafe { self.push_chain(b, b, 1) }
    }

    /// Pushes a chain of `n` blocks linked through their first words, from
    /// `head` to `tail`, with one compare-and-swap. Returns as [`push`].
    ///
    /// # Safety
    /// Every block of the chain must be one the caller owns and gives up;
    /// `tail` must be reachable from `head` in `n - 1` links; the list must
    /// not come to hold more than 65535 blocks.
    ///
    /// [`push`]: RemoteList::push
    pub unsafe fn push_chain(&self, head: *mut Block, tail: *mut Block, n: u32) -> bool {
        debug_assert!(head.addr() & !PTR_MASK == 0, "block address beyond 48 bits");
        let mut old = self.word.load(Relaxed);
        loop {
            // SAFETY: the caller gives the blocks up; the tail's first word is
            // ours until the CAS publishes the chain.
            unsafe { (*tail).next = head_of(old) };
            let count = ((count_of(old) + n) as usize) << COUNT_SHIFT;
            let new = head.map_addr(|a| a | count);
            match self.word.compare_exchange_weak(old, new, AcqRel, Relaxed) {
                Ok(_) => return old.addr() & FULL != 0,
                Err(cur) => old = cur,
            }
        }
    }

    /// Whether blocks are waiting.
    #[inline]
    pub fn has_blocks(&self) -> bool {
        self.word.load(Relaxed).addr() & PTR_MASK != 0
    }

    /// Takes every waiting block, as a null-terminated list (null if none)
    /// and its length. Owner only, and only while the flag is clear.
    pub fn take(&self) -> (*mut Block, u32) {
        if !self.has_blocks() {
            return (core::ptr::null_mut(), 0);
        }
        let w = self.word.swap(ptr::null_mut(), Acquire);
        debug_assert_eq!(w.addr() & FULL, 0, "take with the FULL flag set");
        (head_of(w), count_of(w))
    }

    /// Sets the flag on an empty list. False if blocks are waiting.
    pub fn try_set_full(&self) -> bool {
        self.word.compare_exchange(ptr::null_mut(), full_word(), Release, Relaxed).is_ok()
    }

    /// Clears the flag if set. Owner only.
    ///
    /// The flag is only ever set on an empty list, and every push clears it,
    /// so a word with the flag is the flag alone: one compare-and-swap back
    /// to the empty word clears it, and when it fails a push has already
    /// cleared it.
    pub fn clear_full(&self) {
        if self.word.load(Relaxed).addr() & FULL != 0 {
            let _ = self.word.compare_exchange(full_word(), ptr::null_mut(), Relaxed, Relaxed);
        }
    }

    /// Whether the flag is set.
    pub fn is_full_flagged(&self) -> bool {
        self.word.load(Relaxed).addr() & FULL != 0
    }
}

#[cfg(not(loom))]
impl Default for RemoteList {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::boxed::Box;
    use std::vec::Vec;

    /// A 16-byte-aligned block, as pool blocks are.
    #[repr(C, align(16))]
    struct Slot(Block);

    fn blocks(n: usize) -> Vec<*mut Block> {
        (0..n)
            .map(|_| Box::into_raw(Box::new(Slot(Block { next: ptr::null_mut(), mark: 0 }))).cast::<Block>())
            .collect()
    }

    fn free_all(all: Vec<*mut Block>) {
        for b in all {
            // SAFETY: each pointer is one of `blocks`' boxes, freed once.
            drop(unsafe { Box::from_raw(b.cast::<Slot>()) });
        }
    }

    /// The blocks of a taken list, in list order.
    fn walk(mut b: *mut Block) -> Vec<*mut Block> {
        let mut out = Vec::new();
        while !b.is_null() {
            out.push(b);
            // SAFETY: blocks on a taken list are the test's live boxes.
            b = unsafe { (*b).next };
        }
        out
    }

    #[test]
    fn push_take_count_and_order() {
        let all = blocks(5);
        let list = RemoteList::new();
        assert!(!list.has_blocks());
        assert_eq!(list.take(), (ptr::null_mut(), 0));
        for &b in &all[..3] {
            // SAFETY: each block is pushed once and not touched meanwhile.
            assert!(!unsafe { list.push(b) }, "no flag, no notification");
        }
        let (b3, b4) = (all[3], all[4]);
        // SAFETY: blocks 3 and 4 are ours; link them into a chain 4 -> 3.
        unsafe { (*b4).next = b3 };
        // SAFETY: the chain from all[4] to all[3] is two blocks we give up.
        assert!(!unsafe { list.push_chain(all[4], all[3], 2) });
        assert!(list.has_blocks());
        let (head, n) = list.take();
        assert_eq!(n, 5);
        assert_eq!(walk(head), [all[4], all[3], all[2], all[1], all[0]]);
        assert!(!list.has_blocks());
        // The blocks came back with their provenance: write through them.
        for b in walk(head) {
            // SAFETY: a live box of the test.
            unsafe { (*b).mark = 7 };
        }
        free_all(all);
    }

    #[test]
    fn the_flag_is_cleared_by_exactly_one_push() {
        let all = blocks(3);
        let list = RemoteList::new();
        assert!(list.try_set_full());
        assert!(list.is_full_flagged());
        assert!(!list.has_blocks());
        // SAFETY: each block is pushed once.
        unsafe {
            assert!(list.push(all[0]), "the push that clears the flag notifies");
            assert!(!list.push(all[1]));
        }
        assert!(!list.is_full_flagged());
        assert!(!list.try_set_full(), "blocks are waiting");
        let (head, n) = list.take();
        assert_eq!((walk(head), n), (vec![all[1], all[0]], 2));
        assert!(list.try_set_full());
        list.clear_full();
        assert!(!list.is_full_flagged());
        list.clear_full();
        // SAFETY: pushed once.
        assert!(!unsafe { list.push(all[2]) }, "flag withdrawn: no notification");
        list.reset();
        assert!(!list.has_blocks());
        free_all(all);
    }

    #[test]
    fn concurrent_pushers_and_an_owner() {
        use std::sync::atomic::AtomicUsize;
        use std::sync::Arc;
        let per_thread = if cfg!(miri) { 8 } else { 1000 };
        let list = Arc::new(RemoteList::new());
        let notified = Arc::new(AtomicUsize::new(0));
        let mine: Vec<Vec<*mut Block>> = (0..2).map(|_| blocks(per_thread)).collect();
        let mut all: Vec<*mut Block> = mine.iter().flatten().copied().collect();
        // Raw pointers are not Send: hand each thread its blocks as a
        // Send wrapper.
        struct Blocks(Vec<*mut Block>);
        // SAFETY: the blocks are plain heap memory given to one thread.
        unsafe impl Send for Blocks {}
        assert!(list.try_set_full());
        let threads: Vec<_> = mine
            .into_iter()
            .map(|v| {
                let (list, notified, v) = (list.clone(), notified.clone(), Blocks(v));
                std::thread::spawn(move || {
                    let v = v;
                    for &b in &v.0 {
                        // SAFETY: each block is pushed once, by this thread.
                        if unsafe { list.push(b) } {
                            notified.fetch_add(1, Relaxed);
                        }
                    }
                })
            })
            .collect();
        let mut got = Vec::new();
        let mut counted = 0;
        for _ in 0..4 {
            let (head, n) = list.take();
            let taken = walk(head);
            assert_eq!(taken.len(), n as usize, "the head word counts the blocks");
            counted += n as usize;
            got.extend(taken);
            std::thread::yield_now();
        }
        for t in threads {
            t.join().unwrap();
        }
        let (head, n) = list.take();
        counted += n as usize;
        got.extend(walk(head));
        assert_eq!(notified.load(Relaxed), 1, "one pusher clears the flag");
        assert_eq!(counted, 2 * per_thread);
        let key = |b: &*mut Block| b.addr();
        got.sort_by_key(key);
        all.sort_by_key(key);
        assert_eq!(got, all, "every block comes back once");
        free_all(all);
    }
}
