//! Part of layer 3: a pool's remote-free list.
//!
//! An atomic LIFO stack of blocks freed by threads that do not own the pool,
//! with a `FULL` flag in the low bit of the head word (blocks are 16-byte
//! aligned, so the bit is free):
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

use crate::sync::atomic::{AtomicUsize, Ordering::*};

/// A free block. The first word of a free block links it into a list.
#[repr(C)]
pub struct Block {
    /// Next free block, or null.
    pub next: *mut Block,
    /// On a block its pool's owner freed: the pool's address, the mark that
    /// makes a second free of the block suspect (see `Pool::may_free`).
    /// Cleared when the block is handed out. Every block has 16 bytes or
    /// more, so this word is always part of the block.
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
fn count_of(w: usize) -> u32 {
    (w >> COUNT_SHIFT) as u32
}

/// The remote-free stack of one pool.
pub struct RemoteList {
    word: AtomicUsize,
}

impl RemoteList {
    /// An empty list without the flag.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        RemoteList { word: AtomicUsize::new(0) }
    }

    /// An empty list without the flag.
    #[cfg(loom)]
    pub fn new() -> Self {
        RemoteList { word: AtomicUsize::new(0) }
    }

    /// Empties the list and clears the flag. Only while no other thread can
    /// reach the pool.
    pub fn reset(&self) {
        self.word.store(0, Relaxed);
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
        debug_assert!(head as usize & !PTR_MASK == 0, "block address beyond 48 bits");
        let mut old = self.word.load(Relaxed);
        loop {
            // SAFETY: the caller gives the blocks up; the tail's first word is
            // ours until the CAS publishes the chain.
            unsafe { (*tail).next = (old & PTR_MASK) as *mut Block };
            let new = head as usize | ((count_of(old) + n) as usize) << COUNT_SHIFT;
            match self.word.compare_exchange_weak(old, new, AcqRel, Relaxed) {
                Ok(_) => return old & FULL != 0,
                Err(cur) => old = cur,
            }
        }
    }

    /// Whether blocks are waiting.
    #[inline]
    pub fn has_blocks(&self) -> bool {
        self.word.load(Relaxed) & PTR_MASK != 0
    }

    /// Takes every waiting block, as a null-terminated list (null if none)
    /// and its length. Owner only, and only while the flag is clear.
    pub fn take(&self) -> (*mut Block, u32) {
        if !self.has_blocks() {
            return (core::ptr::null_mut(), 0);
        }
        let w = self.word.swap(0, Acquire);
        debug_assert_eq!(w & FULL, 0, "take with the FULL flag set");
        ((w & PTR_MASK) as *mut Block, count_of(w))
    }

    /// Sets the flag on an empty list. False if blocks are waiting.
    pub fn try_set_full(&self) -> bool {
        self.word.compare_exchange(0, FULL, Release, Relaxed).is_ok()
    }

    /// Clears the flag if set. Owner only.
    pub fn clear_full(&self) {
        if self.word.load(Relaxed) & FULL != 0 {
            self.word.fetch_and(!FULL, Relaxed);
        }
    }

    /// Whether the flag is set.
    pub fn is_full_flagged(&self) -> bool {
        self.word.load(Relaxed) & FULL != 0
    }
}

#[cfg(not(loom))]
impl Default for RemoteList {
    fn default() -> Self {
        Self::new()
    }
}
