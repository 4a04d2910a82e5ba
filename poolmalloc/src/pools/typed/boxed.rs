//! [`PoolBox`], the box of a [`TypedPool`]: a value in one of the pool's
//! slots, given back to the pool (on whatever thread) when the box drops,
//! and the standard traits that `Box<T>` forwards to its value.
//!
//! Application code holds boxes; [`TypedPool::alloc`] makes them. A box holds
//! only a pointer to its value and a reference to its pool; all of the
//! caching lives in the pool (see the parent module). A box is `Send` when
//! `T` is and may be dropped on any thread: its slot goes to the dropping
//! thread's cache.

use super::TypedPool;
use core::fmt;
use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::ops::{Deref, DerefMut};
use core::pin::Pin;
use core::ptr::{self, NonNull};

/// A value of type `T` in a slot of a [`TypedPool`]: the pool's `Box`.
///
/// Dropping it drops the value and returns the slot to the pool (on whatever
/// thread it is dropped); [`PoolBox::into_inner`] moves the value out and
/// returns the slot as well. A box always goes back to the pool that made it:
/// it holds a reference to that pool, and no API accepts a box into another.
///
/// It implements what `Box<T>` does for sized `T`, except:
/// * `Default`, `From<T>` and `FromIterator`: a box needs a pool to come from;
/// * unsized values (`PoolBox<dyn Trait>`, `PoolBox<[T]>`), `CoerceUnsized`,
///   the `Fn*` traits and `Any` downcasting: these need unstable features or
///   unsized slots;
/// * `Clone` allocates the copy from the same pool.
pub struct PoolBox<'a, T> {
    /// The value; a live slot of `pool` (dangling for zero-sized `T`).
    pub(super) ptr: NonNull<T>,
    pub(super) pool: &'a TypedPool<T>,
    /// The box owns a `T` (for the drop checker).
    pub(super) _owns: PhantomData<T>,
}

// SAFETY: the box owns its `T` like `Box<T>` does, and the pool is `Sync`.
unsafe impl<T: Send> Send for PoolBox<'_, T> {}
// SAFETY: a shared box gives out only `&T`.
unsafe impl<T: Sync> Sync for PoolBox<'_, T> {}

impl<T> Unpin for PoolBox<'_, T> {}

impl<'a, T> PoolBox<'a, T> {
    /// Moves the value out and returns the slot to the pool.
    pub fn into_inner(b: Self) -> T {
        let b = ManuallyDrop::new(b);
        // SAFETY: the slot holds a value we own; it is not used again.
        let v = unsafe { b.ptr.as_ptr().read() };
        b.pool.give_slot(b.ptr.cast());
        v
    }

    /// Leaks the box: the value and its slot are never given back (the pool
    /// counts it as live).
    pub fn leak(b: Self) -> &'a mut T {
        let b = ManuallyDrop::new(b);
        // SAFETY: the slot stays allocated and unused by the pool forever.
        unsafe { &mut *b.ptr.as_ptr() }
    }

    /// Pins the box. The value never moves until it is dropped: the slot is
    /// reused only after the box drops it.
    pub fn into_pin(b: Self) -> Pin<Self> {
        // SAFETY: the value lives at a fixed address until the box drops it,
        // and `into_inner` cannot be reached through a `Pin`.
        unsafe { Pin::new_unchecked(b) }
    }

    /// The pool the box came from (and will return its slot to).
    pub fn pool(b: &Self) -> &'a TypedPool<T> {
        b.pool
    }

    /// A raw pointer to the value.
    pub fn as_ptr(b: &Self) -> *const T {
        b.ptr.as_ptr()
    }

    /// A raw mutable pointer to the value.
    pub fn as_mut_ptr(b: &mut Self) -> *mut T {
        b.ptr.as_ptr()
    }
}

impl<T> Drop for PoolBox<'_, T> {
    fn drop(&mut self) {
        // Returns the slot even if the value's destructor panics.
        struct GiveBack<'b, T>(&'b TypedPool<T>, NonNull<u8>);
        impl<T> Drop for GiveBack<'_, T> {
            fn drop(&mut self) {
                self.0.give_slot(self.1);
            }
        }
        let _give = GiveBack(self.pool, self.ptr.cast());
        // SAFETY: the slot holds a value we own, dropped exactly once here.
        unsafe { ptr::drop_in_place(self.ptr.as_ptr()) };
    }
}

impl<'a, T> From<PoolBox<'a, T>> for Pin<PoolBox<'a, T>> {
    fn from(b: PoolBox<'a, T>) -> Self {
        PoolBox::into_pin(b)
    }
}

impl<T> Deref for PoolBox<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the slot holds a live value owned by the box.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T> DerefMut for PoolBox<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for `deref`, and the box is borrowed mutably.
        unsafe { self.ptr.as_mut() }
    }
}

impl<T: Clone> Clone for PoolBox<'_, T> {
    /// Clones the value into a new slot of the same pool.
    fn clone(&self) -> Self {
        self.pool.alloc((**self).clone())
    }
}

impl<T> AsRef<T> for PoolBox<'_, T> {
    fn as_ref(&self) -> &T {
        self
    }
}

impl<T> AsMut<T> for PoolBox<'_, T> {
    fn as_mut(&mut self) -> &mut T {
        self
    }
}

impl<T> core::borrow::Borrow<T> for PoolBox<'_, T> {
    fn borrow(&self) -> &T {
        self
    }
}

impl<T> core::borrow::BorrowMut<T> for PoolBox<'_, T> {
    fn borrow_mut(&mut self) -> &mut T {
        self
    }
}

impl<T: fmt::Debug> fmt::Debug for PoolBox<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: fmt::Display> fmt::Display for PoolBox<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

impl<T> fmt::Pointer for PoolBox<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Pointer::fmt(&self.ptr, f)
    }
}

impl<T: PartialEq> PartialEq for PoolBox<'_, T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: Eq> Eq for PoolBox<'_, T> {}

impl<T: PartialOrd> PartialOrd for PoolBox<'_, T> {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        (**self).partial_cmp(&**other)
    }
}

impl<T: Ord> Ord for PoolBox<'_, T> {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        (**self).cmp(&**other)
    }
}

impl<T: core::hash::Hash> core::hash::Hash for PoolBox<'_, T> {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        (**self).hash(state)
    }
}

impl<T: core::hash::Hasher> core::hash::Hasher for PoolBox<'_, T> {
    fn finish(&self) -> u64 {
        (**self).finish()
    }
    fn write(&mut self, bytes: &[u8]) {
        (**self).write(bytes)
    }
}

impl<T: Iterator> Iterator for PoolBox<'_, T> {
    type Item = T::Item;
    fn next(&mut self) -> Option<T::Item> {
        (**self).next()
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (**self).size_hint()
    }
}

impl<T: DoubleEndedIterator> DoubleEndedIterator for PoolBox<'_, T> {
    fn next_back(&mut self) -> Option<T::Item> {
        (**self).next_back()
    }
}

impl<T: ExactSizeIterator> ExactSizeIterator for PoolBox<'_, T> {}

impl<T: core::iter::FusedIterator> core::iter::FusedIterator for PoolBox<'_, T> {}

impl<T: core::future::Future + Unpin> core::future::Future for PoolBox<'_, T> {
    type Output = T::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut core::task::Context<'_>) -> core::task::Poll<T::Output> {
        Pin::new(&mut **self).poll(cx)
    }
}

impl<T: std::error::Error> std::error::Error for PoolBox<'_, T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        (**self).source()
    }
}

impl<T: std::io::Read> std::io::Read for PoolBox<'_, T> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        (**self).read(buf)
    }
}

impl<T: std::io::Write> std::io::Write for PoolBox<'_, T> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        (**self).write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        (**self).flush()
    }
}

impl<T: std::io::BufRead> std::io::BufRead for PoolBox<'_, T> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        (**self).fill_buf()
    }
    fn consume(&mut self, amt: usize) {
        (**self).consume(amt)
    }
}

impl<T: std::io::Seek> std::io::Seek for PoolBox<'_, T> {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        (**self).seek(pos)
    }
}
