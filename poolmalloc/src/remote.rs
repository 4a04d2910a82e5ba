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
}

/// Low bit of the head word: the owner wants to hear about the next push.
const FULL: usize = 1;

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
        let mut old = self.word.load(Relaxed);
        loop {
            // SAFETY: the caller gives the block up; its first word is ours
            // until the CAS publishes it.
            unsafe { (*b).next = (old & !FULL) as *mut Block };
            match self.word.compare_exchange_weak(old, b as usize, AcqRel, Relaxed) {
                Ok(_) => return old & FULL != 0,
                Err(cur) => old = cur,
            }
        }
    }

    /// Whether blocks are waiting.
    #[inline]
    pub fn has_blocks(&self) -> bool {
        self.word.load(Relaxed) & !FULL != 0
    }

    /// Takes every waiting block, as a null-terminated list (null if none).
    /// Owner only, and only while the flag is clear.
    pub fn take(&self) -> *mut Block {
        if !self.has_blocks() {
            return core::ptr::null_mut();
        }
        let w = self.word.swap(0, Acquire);
        debug_assert_eq!(w & FULL, 0, "take with the FULL flag set");
        (w & !FULL) as *mut Block
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
