//! Object and buffer pools on top of the allocator: [`ObjectPool<T>`] and its
//! [`Pooled`] guard (constructed objects recycled with their allocations, in
//! [`object`]), [`TypedPool<T>`] and its [`PoolBox`] (per-type free lists of
//! slots with per-thread caches, in [`typed`]), and [`BufferPool`] and its
//! [`Buffer`] (reusable byte buffers in capacity classes, in [`buffer`]),
//! with statistics over all of them ([`stats()`] and [`PoolsStats`]).
//!
//! Application code calls it, never the allocator: these pools sit above
//! poolmalloc and use only its public API, the way a separate crate would.
//! Their slots, storage and bookkeeping are blocks of
//! [`PoolMalloc`](crate::PoolMalloc), and their locks are
//! `std::sync::Mutex`es: code holding one may call into the allocator,
//! which never takes them. The allocator's report, [`crate::stats()`],
//! counts that memory in its size classes and large spans and says nothing
//! of the pools; [`stats()`] here gives their totals.
//!
//! # Threads
//!
//! Every pool is `Sync` and may be shared between threads by reference (in a
//! `static`, or with scoped threads). Each submodule documents which data
//! its threads own and which sits behind a lock. A lock found poisoned (a
//! thread panicked while holding it) is taken anyway: every critical section
//! leaves its data consistent at each point where it could panic, so the
//! pools keep working.

pub mod buffer;
pub mod object;
mod stats;
pub mod typed;

pub use buffer::{
    Buffer, BufferClassStats, BufferPool, BufferPoolStats, CLASS_SIZES, DEFAULT_RETAINED_CAP, NUM_CLASSES,
};
pub use object::{ObjectPool, ObjectPoolStats, Pooled, Recycle};
pub use stats::{stats, PoolsStats};
pub use typed::{PoolBox, TypedPool, TypedPoolStats, DEFAULT_CAP, TABLE_SIZE};

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Takes `m`, whether or not it is poisoned (see the module docs).
#[inline]
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs a closure on the value behind a lock, with the lock held for the
/// closure's length only.
trait WithLock<T> {
    /// Runs `f` on the value with the lock held (released even if `f`
    /// panics). `f` must not take the same lock again.
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R;
}

impl<T> WithLock<T> for Mutex<T> {
    #[inline]
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut lock(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Lock rounds per thread (fewer under Miri, which interprets them).
    const ROUNDS: u64 = if cfg!(miri) { 250 } else { 10_000 };

    #[test]
    fn with_lock_excludes_and_survives_a_panic() {
        let l = Arc::new(Mutex::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || {
                    for _ in 0..ROUNDS {
                        l.with(|v| *v += 1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(l.with(|v| *v), 4 * ROUNDS);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| l.with(|_| panic!("inside"))));
        assert!(r.is_err());
        let released = matches!(l.try_lock(), Err(std::sync::TryLockError::Poisoned(_)));
        assert!(released, "the lock is released on unwind, and poisoned");
        let mut l = Arc::try_unwrap(l).ok().unwrap();
        *l.get_mut().unwrap_or_else(PoisonError::into_inner) += 1;
        assert_eq!(l.with(|v| *v), 4 * ROUNDS + 1, "a poisoned lock is taken anyway");
    }
}
