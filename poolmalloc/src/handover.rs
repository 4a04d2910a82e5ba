//! Part of layer 3: how a pool passes between threads.
//!
//! A [`Handover`] holds the words of a pool that threads other than its
//! owner read or write: the owner word, the remote-free list, where to post
//! remote-free hints, and the pool's state. Every step that hands a pool, or
//! one of its blocks, from one thread to another goes through a method here:
//!
//! * [`publish`](Handover::publish): an owner takes the pool (a fresh pool,
//!   or adoption of an abandoned one) and says where its hints are;
//! * [`file_full`](Handover::file_full) and
//!   [`withdraw_full`](Handover::withdraw_full): the owner asks to hear of
//!   the next remote free, or stops asking;
//! * [`free_remote`](Handover::free_remote): a thread that does not own the
//!   pool gives blocks back, and tells the owner if it asked;
//! * [`take_remote`](Handover::take_remote): the owner takes those blocks;
//! * [`abandon`](Handover::abandon): the owner's thread exits with blocks
//!   still out, and the pool goes to the abandoned lists
//!   ([`crate::abandoned`]) for another heap to adopt.
//!
//! Like [`crate::remote`], this module uses nothing but the atomics facade,
//! so that loom can check it (`tests/loom_handover.rs` models an owner that
//! abandons a pool, a thread that frees into it and a heap that adopts it).

use crate::remote::{Block, RemoteList};
use crate::sync::atomic::{AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering::*};
use core::ptr;

/// Pool states (see the module docs of [`crate::pool`]).
pub mod state {
    /// Owned by its arena; not in use.
    pub const FREE: u8 = 0;
    /// Held by a heap, in one of its class lists.
    pub const USED: u8 = 1;
    /// Held by a heap's stash of empty pools.
    pub const EMPTY: u8 = 2;
    /// Its heap's thread exited with blocks live; on the abandoned list.
    pub const ABANDONED: u8 = 3;
    /// A slice of a multi-slice pool other than its first: its `lead`
    /// field says how many slices back the pool's own record is.
    pub const FOLLOWER: u8 = 4;
}

/// Low bit of the owner word: the pool is filed as full.
pub const OWNER_FULL: usize = 1;

/// Per-class bits a pool owner wants set when one of its full pools gets a
/// remote free. Embedded in each heap; pools point at their owner's.
pub struct RemoteHints {
    bits: [AtomicU64; HINT_CLASSES / 64],
}

/// Classes a [`RemoteHints`] can name.
pub const HINT_CLASSES: usize = 128;
const _: () = assert!(HINT_CLASSES == 128, "`new` builds two words");

impl RemoteHints {
    /// No hints set.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        RemoteHints { bits: [AtomicU64::new(0), AtomicU64::new(0)] }
    }

    /// No hints set.
    #[cfg(loom)]
    #[allow(clippy::new_without_default)] // loom's atomics are built at run time, inside a model
    pub fn new() -> Self {
        RemoteHints { bits: [AtomicU64::new(0), AtomicU64::new(0)] }
    }

    /// Records that a full pool of `class` received a remote free.
    pub fn set(&self, class: usize) {
        self.bits[class >> 6].fetch_or(1 << (class & 63), Release);
    }

    /// Returns and clears the hint for `class`.
    #[inline]
    pub fn take(&self, class: usize) -> bool {
        let bit = 1u64 << (class & 63);
        let word = &self.bits[class >> 6];
        if word.load(Relaxed) & bit == 0 {
            return false;
        }
        word.fetch_and(!bit, Acquire) & bit != 0
    }

    /// Clears every hint.
    pub fn clear(&self) {
        for w in &self.bits {
            w.store(0, Relaxed);
        }
    }
}

impl Default for RemoteHints {
    fn default() -> Self {
        Self::new()
    }
}

/// The words of a pool that other threads use (see the module docs).
#[repr(C)]
pub struct Handover {
    /// Owning heap's id (a thread id, `LOCKED_OWNER`, a first-class heap's
    /// id, or 0 for none) with the flags of [`crate::pool`] in its low bits.
    /// Written by the owner or by whoever holds the pool in a global list;
    /// read by every `free`.
    pub owner: AtomicUsize,
    /// Blocks freed by other threads (see [`crate::remote`]).
    remote: RemoteList,
    /// Where to post remote-free hints: the owner heap's hints.
    hints: AtomicPtr<RemoteHints>,
    /// One of [`state`]. Written under the arena lock or by the owner.
    pub state: AtomicU8,
}

impl Handover {
    /// A FREE pool's words: no owner, no remote blocks, no hints.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Handover {
            owner: AtomicUsize::new(0),
            remote: RemoteList::new(),
            hints: AtomicPtr::new(ptr::null_mut()),
            state: AtomicU8::new(state::FREE),
        }
    }

    /// A FREE pool's words: no owner, no remote blocks, no hints.
    #[cfg(loom)]
    #[allow(clippy::new_without_default)] // loom's atomics are built at run time, inside a model
    pub fn new() -> Self {
        Handover {
            owner: AtomicUsize::new(0),
            remote: RemoteList::new(),
            hints: AtomicPtr::new(ptr::null_mut()),
            state: AtomicU8::new(state::FREE),
        }
    }

    /// Empties the remote list. Only while no other thread can reach the
    /// pool (it is being initialised, and none of its blocks is out).
    pub fn reset(&self) {
        self.remote.reset();
    }

    /// The caller now owns the pool: `word` is its owner word and `hints`
    /// where to tell it of remote frees. The hints pointer is stored before
    /// the owner word (Release), so a pusher that sees the word, or a flag
    /// set after it, sees the hints too.
    ///
    /// # Safety
    /// `hints` must be null or stay valid for as long as any thread may
    /// free into the pool (heaps, which hold the hints, are never unmapped).
    pub unsafe fn publish(&self, word: usize, hints: *const RemoteHints) {
        self.hints.store(hints.cast_mut(), Relaxed);
        self.owner.store(word, Release);
    }

    /// Files the pool as full: the owner word becomes `word` (which carries
    /// [`OWNER_FULL`]) and the next remote free posts a hint for the pool's
    /// class. Returns false, changing nothing, if remote frees are already
    /// waiting: the owner should take them instead. Owner only.
    pub fn file_full(&self, word: usize) -> bool {
        debug_assert!(word & OWNER_FULL != 0);
        if !self.remote.try_set_full() {
            return false;
        }
        self.owner.store(word, Relaxed);
        true
    }

    /// Withdraws the request to hear of the next remote free; the owner
    /// word becomes `word`. Owner only.
    pub fn withdraw_full(&self, word: usize) {
        self.remote.clear_full();
        self.owner.store(word, Relaxed);
    }

    /// Whether remote frees are waiting. Any thread.
    #[inline]
    pub fn has_remote(&self) -> bool {
        self.remote.has_blocks()
    }

    /// Takes every remotely freed block: a null-terminated chain and its
    /// length. Owner only (or the holder of an abandoned pool).
    pub fn take_remote(&self) -> (*mut Block, u32) {
        self.remote.take()
    }

    /// Gives back `n` blocks linked from `head` to `tail`, freed by a thread
    /// that does not own the pool. If the owner filed the pool as full, the
    /// one push that clears the flag posts a hint for `class` to the owner's
    /// hints.
    ///
    /// `class` is the pool's class as the caller read it before this call,
    /// while it still held the blocks: once the push lands, the owner may
    /// take them, empty the pool and give it to another class.
    ///
    /// # Safety
    /// As [`RemoteList::push_chain`]: every block of the chain is one the
    /// caller owns and gives up.
    pub unsafe fn free_remote(&self, head: *mut Block, tail: *mut Block, n: u32, class: usize) {
        // SAFETY: forwarded from the caller.
        if unsafe { self.remote.push_chain(head, tail, n) } {
            // This push cleared the flag, so we alone tell the owner. The
            // CAS that cleared it read the flag-setting CAS (Release), which
            // came after the owner published its hints: we see them. Heaps
            // are never unmapped, so a target that is stale by now (the
            // owner gave the pool up meanwhile) is harmless: an extra look.
            let h = self.hints.load(Acquire);
            if !h.is_null() {
                // SAFETY: a published hints pointer stays valid (see
                // `publish`).
                unsafe { (*h).set(class) };
            }
        }
    }

    /// The owner's thread exits with blocks of the pool still out: the
    /// request to hear of remote frees is withdrawn, the pool has no owner
    /// and no hints, and it is ABANDONED. The caller then puts it on the
    /// abandoned lists. Owner only.
    pub fn abandon(&self) {
        self.remote.clear_full();
        // SAFETY: no hints.
        unsafe { self.publish(0, ptr::null()) };
        self.state.store(state::ABANDONED, Relaxed);
    }

    /// A heap adopts an abandoned pool it took off the abandoned lists: it
    /// publishes itself as owner (`word`, `hints`) and the pool is USED. The
    /// caller then takes the remote frees.
    ///
    /// # Safety
    /// As for [`publish`](Self::publish).
    pub unsafe fn adopt(&self, word: usize, hints: *const RemoteHints) {
        // SAFETY: forwarded from the caller.
        unsafe { self.publish(word, hints) };
        self.state.store(state::USED, Relaxed);
    }
}

#[cfg(not(loom))]
impl Default for Handover {
    fn default() -> Self {
        Self::new()
    }
}
