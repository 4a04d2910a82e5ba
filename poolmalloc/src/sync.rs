//! Synchronisation primitives shared by the layers.
//!
//! [`Local`] is a cell for data that one party at a time owns by protocol:
//! the thread that owns a pool or heap, or whoever holds the lock that guards
//! an arena or list. Each field of this type documents its owner, and every
//! read or write is `unsafe`: the caller vouches that it is that owner. It is
//! the only place the crate opts out of Rust's aliasing checks for shared
//! data.

#[cfg(not(loom))]
use core::cell::UnsafeCell;
#[cfg(loom)]
use loom::cell::UnsafeCell;

/// Atomics: `core`'s, or `loom`'s when the crate is built with `--cfg loom`
/// to model-check the lock-free pieces.
pub mod atomic {
    #[cfg(not(loom))]
    pub use core::sync::atomic::*;
    #[cfg(loom)]
    pub use loom::sync::atomic::*;
}

/// A `Copy` value owned by protocol rather than by the borrow checker.
///
/// Reads and writes are plain loads and stores. The type is `Sync` because
/// the containing structures are shared between threads; the protocol (the
/// owning thread, or the guarding lock, named on each field) ensures that no
/// two threads access the same `Local` without a happens-before edge. Nothing
/// here can check the protocol, so [`get`](Self::get) and
/// [`set`](Self::set) are `unsafe` and their callers state, at each use, why
/// they are the owner.
///
/// Under `--cfg loom` the cell is loom's, so the model checker also reports
/// two unordered accesses to the same `Local` (a protocol broken).
#[repr(transparent)]
pub struct Local<T: Copy>(UnsafeCell<T>);

// SAFETY: sharing a `Local` gives no safe access to its value: `get` and
// `set` are `unsafe`, and their callers serialise access by the protocol
// documented on each field.
unsafe impl<T: Copy> Sync for Local<T> {}
// SAFETY: as for Sync; the value moves with its owner.
unsafe impl<T: Copy> Send for Local<T> {}

impl<T: Copy> Local<T> {
    /// A cell holding `v`.
    #[cfg(not(loom))]
    pub const fn new(v: T) -> Self {
        Local(UnsafeCell::new(v))
    }

    /// A cell holding `v`.
    #[cfg(loom)]
    pub fn new(v: T) -> Self {
        Local(UnsafeCell::new(v))
    }

    /// Reads the value.
    ///
    /// # Safety
    /// The caller must be the cell's current owner under the protocol that
    /// the field documents: the thread that owns the structure, or a holder
    /// of the lock that guards it. No other thread may write the cell
    /// concurrently: every write by another thread must happen before this
    /// read (a lock handed over, a release/acquire pair, a thread start).
    #[inline(always)]
    pub unsafe fn get(&self) -> T {
        #[cfg(not(loom))]
        // SAFETY: by the caller, no write races with this read.
        return unsafe { *self.0.get() };
        #[cfg(loom)]
        // SAFETY: by the caller, no write races with this read (which loom
        // checks).
        return self.0.with(|p| unsafe { *p });
    }

    /// A pointer to the value, for values too large to copy: reading or
    /// writing through it follows the same protocol as [`get`](Self::get)
    /// and [`set`](Self::set).
    #[cfg(not(loom))]
    #[inline(always)]
    pub fn as_ptr(&self) -> *mut T {
        self.0.get()
    }

    /// Writes the value.
    ///
    /// # Safety
    /// As for [`get`](Self::get), and no other thread may read the cell
    /// concurrently either: every access by another thread must happen
    /// before this write or after it.
    #[inline(always)]
    pub unsafe fn set(&self, v: T) {
        #[cfg(not(loom))]
        // SAFETY: by the caller, no other access races with this write.
        unsafe {
            *self.0.get() = v
        };
        #[cfg(loom)]
        // SAFETY: by the caller, no other access races with this write
        // (which loom checks).
        self.0.with_mut(|p| unsafe { *p = v });
    }
}

/// A count that one party at a time writes (the holder of the lock that
/// guards it) and anyone may read without that lock: a relaxed atomic, so a
/// lock-free reader sees some value the count has had, never a torn one.
/// What [`crate::counters`] reads.
#[cfg(not(loom))]
pub struct Counter(atomic::AtomicUsize);

#[cfg(not(loom))]
impl Counter {
    /// A count of `v`.
    pub const fn new(v: usize) -> Self {
        Counter(atomic::AtomicUsize::new(v))
    }

    /// The count.
    #[inline(always)]
    pub fn get(&self) -> usize {
        self.0.load(atomic::Ordering::Relaxed)
    }

    /// Sets the count. Only its writer (the holder of its lock) calls this:
    /// a load and a store, not an atomic update.
    #[inline(always)]
    pub fn set(&self, v: usize) {
        self.0.store(v, atomic::Ordering::Relaxed)
    }
}
