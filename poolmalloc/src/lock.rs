//! The one lock type used inside the allocator.
//!
//! A three-state futex mutex (0 free, 1 held, 2 held with sleepers): it spins
//! briefly, then sleeps in the kernel. It never allocates, so it is safe to
//! take inside `malloc`. It is not reentrant.
//!
//! Locks in poolmalloc, in the order they are taken (and the order the fork
//! handler takes all of them): the locked-mode heap, the heap registry, the
//! abandoned-pool lists, the arena lock, the large-span lock. Code holding a
//! later lock never takes an earlier one.
//!
//! The only system calls made under a lock are `mmap`, `munmap`, `madvise` and
//! `mremap` by arena and large-span code. They do not block on I/O; the
//! documented exception is that a page-fault-heavy `munmap` of a large arena
//! can take tens of microseconds.

use crate::sync::atomic::{AtomicU32, AtomicUsize, Ordering::*};

/// A futex-based mutual-exclusion lock that never allocates.
pub struct RawLock {
    state: AtomicU32,
    /// Thread id of the holder, 0 when free. Only the fork handlers read it:
    /// a `fork` from a signal handler that interrupted this thread inside
    /// the allocator must not wait for a lock the thread itself holds.
    holder: AtomicUsize,
}

const FREE: u32 = 0;
const HELD: u32 = 1;
const CONTENDED: u32 = 2;
/// Tries before sleeping (one under loom, whose model explores each).
const SPINS: u32 = if cfg!(loom) { 1 } else { 100 };

impl RawLock {
    /// A free lock.
    #[cfg(not(loom))]
    pub const fn new() -> RawLock {
        RawLock { state: AtomicU32::new(FREE), holder: AtomicUsize::new(0) }
    }

    /// A free lock.
    #[cfg(loom)]
    pub fn new() -> RawLock {
        RawLock { state: AtomicU32::new(FREE), holder: AtomicUsize::new(0) }
    }

    /// Takes the lock, sleeping if needed.
    #[inline]
    pub fn lock(&self) {
        if self.state.compare_exchange(FREE, HELD, Acquire, Relaxed).is_err() {
            self.lock_contended();
        }
        self.holder.store(crate::tid::thread_id(), Relaxed);
    }

    /// Takes the lock if it is free.
    #[inline]
    pub fn try_lock(&self) -> bool {
        let got = self.state.compare_exchange(FREE, HELD, Acquire, Relaxed).is_ok();
        if got {
            self.holder.store(crate::tid::thread_id(), Relaxed);
        }
        got
    }

    /// Whether the calling thread holds the lock.
    #[inline]
    pub fn held_by_me(&self) -> bool {
        self.holder.load(Relaxed) == crate::tid::thread_id()
    }

    #[cold]
    fn lock_contended(&self) {
        for _ in 0..SPINS {
            if self.state.load(Relaxed) == FREE && self.state.compare_exchange(FREE, HELD, Acquire, Relaxed).is_ok() {
                return;
            }
            core::hint::spin_loop();
        }
        while self.state.swap(CONTENDED, Acquire) != FREE {
            futex_wait(&self.state, CONTENDED);
        }
    }

    /// Releases the lock. The caller must hold it.
    #[inline]
    pub fn unlock(&self) {
        self.holder.store(0, Relaxed);
        if self.state.swap(FREE, Release) == CONTENDED {
            futex_wake(&self.state);
        }
    }

    /// Resets the lock to free without waking anyone. Only for the child side
    /// of `fork`, where the holder no longer exists or is the caller.
    pub fn reset(&self) {
        self.holder.store(0, Relaxed);
        self.state.store(FREE, Relaxed);
    }

    #[cfg(test)]
    /// Whether the lock is held by someone (for assertions).
    pub fn is_locked(&self) -> bool {
        self.state.load(Relaxed) != FREE
    }

    /// Takes the lock and returns a guard that releases it.
    #[inline]
    pub fn guard(&self) -> LockGuard<'_> {
        self.lock();
        LockGuard { lock: self }
    }
}

impl Default for RawLock {
    fn default() -> Self {
        RawLock::new()
    }
}

/// Releases its lock when dropped.
pub struct LockGuard<'a> {
    lock: &'a RawLock,
}

impl Drop for LockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.lock.unlock();
    }
}

/// Under loom, a sleeper yields to the model's other threads instead.
#[cfg(loom)]
fn futex_wait(_state: &AtomicU32, _expected: u32) {
    loom::thread::yield_now();
}

/// Under loom, sleepers are yielding threads: nothing to wake.
#[cfg(loom)]
fn futex_wake(_state: &AtomicU32) {}

#[cfg(not(loom))]
fn futex_wait(state: &AtomicU32, expected: u32) {
    let e = crate::os::Errno::save();
    // SAFETY: the futex word is a valid, aligned u32 that lives as long as the
    // lock; FUTEX_WAIT only reads it.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            state.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            core::ptr::null::<libc::timespec>(),
        );
    }
    e.restore();
}

#[cfg(not(loom))]
fn futex_wake(state: &AtomicU32) {
    let e = crate::os::Errno::save();
    // SAFETY: as in `futex_wait`; FUTEX_WAKE does not touch memory.
    unsafe {
        libc::syscall(libc::SYS_futex, state.as_ptr(), libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, 1);
    }
    e.restore();
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Lock rounds per thread (fewer under Miri, which interprets them).
    const ROUNDS: u64 = if cfg!(miri) { 500 } else { 20_000 };

    #[test]
    fn excludes_under_contention() {
        struct Shared {
            lock: RawLock,
            value: core::cell::UnsafeCell<u64>,
        }
        // SAFETY: `value` is only touched with `lock` held.
        unsafe impl Sync for Shared {}
        let s = Arc::new(Shared { lock: RawLock::new(), value: 0.into() });
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for _ in 0..ROUNDS {
                        let _g = s.lock.guard();
                        // SAFETY: the lock is held.
                        unsafe { *s.value.get() += 1 };
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // SAFETY: all threads have finished.
        assert_eq!(unsafe { *s.value.get() }, 4 * ROUNDS);
        assert!(!s.lock.is_locked());
    }

    #[test]
    fn try_lock_fails_when_held() {
        let l = RawLock::new();
        assert!(l.try_lock());
        assert!(!l.try_lock());
        l.unlock();
        assert!(l.try_lock());
        l.reset();
        assert!(!l.is_locked());
    }
}
