//! Synchronisation primitives shared by the layers.
//!
//! [`Local`] is a cell for data that one party at a time owns by protocol:
//! the thread that owns a pool or heap, or whoever holds the lock that guards
//! an arena or list. Each field of this type documents its owner. It is the
//! only place the crate opts out of Rust's aliasing checks for shared data.

use core::cell::UnsafeCell;

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
/// two threads access the same `Local` without a happens-before edge.
#[repr(transparent)]
pub struct Local<T: Copy>(UnsafeCell<T>);

// SAFETY: access is serialised by the protocol documented on each field.
unsafe impl<T: Copy> Sync for Local<T> {}
// SAFETY: as for Sync; the value moves with its owner.
unsafe impl<T: Copy> Send for Local<T> {}

impl<T: Copy> Local<T> {
    /// A cell holding `v`.
    pub const fn new(v: T) -> Self {
        Local(UnsafeCell::new(v))
    }

    /// Reads the value.
    #[inline(always)]
    pub fn get(&self) -> T {
        // SAFETY: by the field's protocol the caller is the current owner, so
        // no write can race with this read.
        unsafe { *self.0.get() }
    }

    /// Writes the value.
    #[inline(always)]
    pub fn set(&self, v: T) {
        // SAFETY: by the field's protocol the caller is the current owner, so
        // no other access can race with this write.
        unsafe { *self.0.get() = v }
    }
}
