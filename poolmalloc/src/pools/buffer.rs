//! Reusable byte buffers, [`BufferPool`] and [`Buffer`], for packet and
//! message work.
//!
//! Network and protocol code calls it: it takes a buffer per packet or
//! message, fills it (by `read` from a socket, or through [`std::io::Write`]),
//! hands it on, and drops it. The storage of a dropped buffer goes back to
//! its pool for the next one, so a steady stream of messages costs no
//! allocation and no page faults after warm-up.
//!
//! Storage comes in three capacity classes ([`CLASS_SIZES`]: 2 KiB for
//! Ethernet-sized packets, 16 KiB, 64 KiB for the largest IP datagrams and
//! TLS records). It is allocated zeroed through [`PoolMalloc`] (the 64 KiB
//! class is a large allocation of poolmalloc's) and is fully initialised for
//! its whole life, so a buffer can expose any length up to its capacity
//! without unsafe code. Requests above the largest class get a plain
//! allocation of exactly the requested size, freed on drop and never
//! retained.
//!
//! # Threads
//!
//! The pool is `Sync` and a buffer is `Send`: the usual pattern is to
//! acquire on a receiving thread and drop on a worker. Each class keeps its
//! free storage on a stack, and one lock (a `std::sync::Mutex`) guards the
//! stacks and the count of retained bytes, so the cap is exact. The lock is taken once per acquire
//! and once per drop for a few loads and stores, which costs far less than
//! the zeroing or the page faults it saves for buffers of this size.
//!
//! A pool's state lives in a small block from the pool layer, allocated on
//! its first use (so [`BufferPool::new`] stays `const` and a pool may move
//! until then) and linked into a process-wide list of buffer pools, which
//! [`pools::stats()`](crate::pools::stats) walks under the list's lock to
//! report totals. The list is touched only when a pool is set up or dropped
//! and by statistics, never on acquire or drop of a buffer.

use crate::pools::WithLock;
use crate::PoolMalloc;
use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;
use core::fmt;
use core::ops::{Deref, DerefMut};
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering::*};
use std::alloc::handle_alloc_error;
use std::io;
use std::sync::Mutex;

/// Number of capacity classes.
pub const NUM_CLASSES: usize = 3;

/// Capacities of the classes, ascending.
pub const CLASS_SIZES: [usize; NUM_CLASSES] = [2 << 10, 16 << 10, 64 << 10];

/// Default cap on bytes kept for reuse across all classes.
pub const DEFAULT_RETAINED_CAP: usize = 4 << 20;

/// Alignment of buffer storage.
const ALIGN: usize = 16;

/// Marks a buffer whose storage is a plain allocation above the classes.
const LARGE: usize = usize::MAX;

const _: () = {
    let mut i = 0;
    while i < NUM_CLASSES {
        assert!(CLASS_SIZES[i] % ALIGN == 0 && CLASS_SIZES[i] >= core::mem::size_of::<*mut u8>());
        assert!(i == 0 || CLASS_SIZES[i] > CLASS_SIZES[i - 1]);
        i += 1;
    }
};

/// The class serving `len` bytes, if any.
#[inline]
fn class_for(len: usize) -> Option<usize> {
    CLASS_SIZES.iter().position(|&s| len <= s)
}

/// Free storage of one class and its counters.
#[derive(Clone, Copy)]
struct ClassState {
    /// Free storage blocks, linked through their first word (zeroed again
    /// before a block is handed out). `count` blocks.
    head: *mut u8,
    count: usize,
    acquired: u64,
    reused: u64,
    allocated: u64,
    released: u64,
}

/// Everything behind the pool's lock.
struct State {
    classes: [ClassState; NUM_CLASSES],
    /// Bytes of storage on the class stacks; at most the pool's cap.
    retained: usize,
}

// SAFETY: reached only under the pool's lock; the blocks are plain memory the
// pool owns.
unsafe impl Send for State {}

/// The part of a pool allocated on first use. It does not move afterwards,
/// so the list of buffer pools can point at it.
struct Shared {
    state: Mutex<State>,
    /// Buffers above the largest class (plain allocations).
    large_acquired: AtomicU64,
    /// Neighbours on the list of buffer pools ([`POOLS`]). Guarded by its
    /// lock.
    prev: Cell<*mut Shared>,
    next: Cell<*mut Shared>,
}

/// Every set-up buffer pool's shared state, linked through `prev` and
/// `next`. A `Shared` is on the list from just after its pool publishes it
/// until the start of the pool's drop, so whoever holds the list's lock may
/// read any `Shared` on it. The lock is taken before a pool's state lock.
static POOLS: Mutex<PoolList> = Mutex::new(PoolList { head: ptr::null_mut(), len: 0 });

/// The head of the list of buffer pools and its length.
struct PoolList {
    head: *mut Shared,
    len: usize,
}

// SAFETY: reached only under the list's lock; the states it links are shared
// by the protocol on `POOLS`.
unsafe impl Send for PoolList {}

/// Totals over every live buffer pool, for the pools' statistics
/// ([`pools::stats()`](crate::pools::stats); see [`totals`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Totals {
    /// Pools set up (used at least once) and not dropped.
    pub(super) pools: usize,
    /// Bytes of free storage they retain.
    pub(super) retained_bytes: usize,
    /// Buffers handed out, in the classes and above them.
    pub(super) acquired: u64,
    /// Of those, served from retained storage.
    pub(super) reused: u64,
}

/// Sums the figures of every live buffer pool by walking the list of
/// pools, taking each pool's lock in turn. A pool joins the list on its
/// first use (a `const` pool never used is not counted) and leaves it when
/// dropped. While other threads use the pools the sums are approximate,
/// each pool being read at a slightly different moment; they are exact when
/// the pools are idle. Nothing is counted on the acquire and drop paths
/// beyond each pool's own figures, and nothing here allocates.
pub(super) fn totals() -> Totals {
    POOLS.with(|l| {
        let mut t = Totals { pools: l.len, ..Totals::default() };
        let mut p = l.head;
        while !p.is_null() {
            // SAFETY: pools on the list are live while we hold its lock.
            let sh = unsafe { &*p };
            t.acquired += sh.large_acquired.load(Relaxed);
            sh.state.with(|st| {
                t.retained_bytes += st.retained;
                for c in &st.classes {
                    t.acquired += c.acquired;
                    t.reused += c.reused;
                }
            });
            p = sh.next.get();
        }
        t
    })
}

/// A pool of reusable byte buffers in [`NUM_CLASSES`] capacity classes.
///
/// ```
/// use poolmalloc::BufferPool;
/// use std::io::{Read, Write};
///
/// static BUFFERS: BufferPool = BufferPool::new();
///
/// let mut b = BUFFERS.acquire(0);
/// b.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
/// assert_eq!(b.capacity(), 2048);
///
/// // Hand it to another thread, which reads it and drops it there.
/// let line = std::thread::spawn(move || {
///     let mut s = String::new();
///     b.read_to_string(&mut s).unwrap();
///     s
/// })
/// .join()
/// .unwrap();
/// assert!(line.starts_with("GET /"));
///
/// // The storage was kept and is reused.
/// let again = BUFFERS.acquire(1500);
/// assert_eq!(again.len(), 1500);
/// assert_eq!(BUFFERS.stats().classes[0].reused, 1);
/// ```
pub struct BufferPool {
    /// Shared state, null before first use; set once, freed on drop.
    shared: AtomicPtr<Shared>,
    retained_cap: usize,
}

impl Default for BufferPool {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferPool").field("stats", &self.stats()).finish()
    }
}

impl BufferPool {
    /// An empty pool retaining at most [`DEFAULT_RETAINED_CAP`] bytes.
    pub const fn new() -> Self {
        Self::with_retained_cap(DEFAULT_RETAINED_CAP)
    }

    /// An empty pool retaining at most `cap` bytes of free storage across
    /// all classes; storage beyond that is freed when its buffer drops.
    pub const fn with_retained_cap(cap: usize) -> Self {
        BufferPool { shared: AtomicPtr::new(ptr::null_mut()), retained_cap: cap }
    }

    /// The shared state, if the pool has been used.
    #[inline]
    fn shared(&self) -> Option<&Shared> {
        // SAFETY: once set, `shared` points at the pool's state until the
        // pool is dropped, which cannot happen while `self` is borrowed.
        unsafe { self.shared.load(Acquire).as_ref() }
    }

    /// The shared state, set up on first use; `None` when out of memory.
    #[inline]
    fn shared_or_init(&self) -> Option<&Shared> {
        match self.shared() {
            Some(sh) => Some(sh),
            None => self.init(),
        }
    }

    #[cold]
    fn init(&self) -> Option<&Shared> {
        const EMPTY: ClassState =
            ClassState { head: ptr::null_mut(), count: 0, acquired: 0, reused: 0, allocated: 0, released: 0 };
        // SAFETY: a non-zero-size layout.
        let p = unsafe { PoolMalloc.alloc(Layout::new::<Shared>()) }.cast::<Shared>();
        if p.is_null() {
            return None;
        }
        let value = Shared {
            state: Mutex::new(State { classes: [EMPTY; NUM_CLASSES], retained: 0 }),
            large_acquired: AtomicU64::new(0),
            prev: Cell::new(ptr::null_mut()),
            next: Cell::new(ptr::null_mut()),
        };
        // SAFETY: `p` is a fresh block for a `Shared`.
        unsafe { p.write(value) };
        match self.shared.compare_exchange(ptr::null_mut(), p, AcqRel, Acquire) {
            Ok(_) => {
                POOLS.with(|l| {
                    // SAFETY: `p` was just published and is not on the list;
                    // its list fields and the old head's are guarded by the
                    // lock we hold.
                    unsafe {
                        (*p).next.set(l.head);
                        if !l.head.is_null() {
                            (*l.head).prev.set(p);
                        }
                    }
                    l.head = p;
                    l.len += 1;
                });
                // SAFETY: alive until the pool drops.
                Some(unsafe { &*p })
            }
            Err(other) => {
                // Another thread set the pool up first.
                // SAFETY: `p` was never published; it holds no storage.
                unsafe { PoolMalloc.dealloc(p.cast(), Layout::new::<Shared>()) };
                // SAFETY: as in `shared()`.
                Some(unsafe { &*other })
            }
        }
    }

    /// The cap on retained bytes.
    pub fn retained_cap(&self) -> usize {
        self.retained_cap
    }

    /// A buffer of length `min_len` and capacity the smallest class that
    /// holds it (or exactly `min_len` above the largest class).
    ///
    /// Its bytes are initialised but their values are unspecified: reused
    /// storage keeps what its last user wrote. Use [`acquire_zeroed`] when
    /// that matters. On out-of-memory this calls [`handle_alloc_error`].
    ///
    /// [`acquire_zeroed`]: BufferPool::acquire_zeroed
    pub fn acquire(&self, min_len: usize) -> Buffer<'_> {
        match self.try_acquire(min_len) {
            Some(b) => b,
            None => handle_alloc_error(Self::layout_for(min_len)),
        }
    }

    /// As [`acquire`](BufferPool::acquire), with the first `min_len` bytes
    /// zeroed.
    pub fn acquire_zeroed(&self, min_len: usize) -> Buffer<'_> {
        let mut b = self.acquire(min_len);
        b.fill(0);
        b
    }

    /// As [`acquire`](BufferPool::acquire), or `None` when out of memory.
    pub fn try_acquire(&self, min_len: usize) -> Option<Buffer<'_>> {
        let (ptr, cap, class) = self.take_storage(min_len)?;
        Some(Buffer { ptr, len: min_len, pos: 0, cap, class, pool: self })
    }

    fn layout_for(len: usize) -> Layout {
        let size = class_for(len).map_or(len, |c| CLASS_SIZES[c]);
        Layout::from_size_align(size.max(1), ALIGN).unwrap_or(Layout::new::<u8>())
    }

    /// Storage for at least `len` bytes: (pointer, capacity, class).
    fn take_storage(&self, len: usize) -> Option<(NonNull<u8>, usize, usize)> {
        let sh = self.shared_or_init()?;
        let Some(class) = class_for(len) else {
            let layout = Layout::from_size_align(len, ALIGN).ok()?;
            // SAFETY: `len` is above the classes, so the layout is not empty.
            let p = NonNull::new(unsafe { PoolMalloc.alloc_zeroed(layout) })?;
            sh.large_acquired.fetch_add(1, Relaxed);
            return Some((p, len, LARGE));
        };
        let size = CLASS_SIZES[class];
        let reused = sh.state.with(|st| {
            let s = &mut st.classes[class];
            s.acquired += 1;
            if s.head.is_null() {
                s.allocated += 1;
                return None;
            }
            let p = s.head;
            // SAFETY: a free block holds the next one's address in its first
            // word.
            s.head = unsafe { p.cast::<*mut u8>().read() };
            s.count -= 1;
            s.reused += 1;
            st.retained -= size;
            Some(p)
        });
        if let Some(p) = reused {
            // Clear the link so every byte the buffer shows was written as a
            // byte.
            // SAFETY: the block is ours and at least a word long.
            unsafe { ptr::write_bytes(p, 0, core::mem::size_of::<*mut u8>()) };
            // SAFETY: blocks on the stack are non-null.
            return Some((unsafe { NonNull::new_unchecked(p) }, size, class));
        }
        // SAFETY: class sizes are non-zero multiples of the power of two
        // `ALIGN` (checked at compile time), so the layout is valid.
        let p = NonNull::new(unsafe { PoolMalloc.alloc_zeroed(Layout::from_size_align_unchecked(size, ALIGN)) });
        if p.is_none() {
            // Nothing was handed out after all.
            sh.state.with(|st| {
                st.classes[class].acquired -= 1;
                st.classes[class].allocated -= 1;
            });
        }
        Some((p?, size, class))
    }

    /// Takes back the storage of a dropped buffer.
    ///
    /// # Safety
    /// `p` must be storage from `take_storage` with this `cap` and `class`,
    /// no longer used.
    unsafe fn give_storage(&self, p: NonNull<u8>, cap: usize, class: usize) {
        if class == LARGE {
            // SAFETY: by the caller, allocated with this layout.
            unsafe { PoolMalloc.dealloc(p.as_ptr(), Layout::from_size_align_unchecked(cap, ALIGN)) };
            return;
        }
        // A buffer of a class exists, so the pool is set up.
        let Some(sh) = self.shared() else { unreachable!("a pool with buffers is set up") };
        let kept = sh.state.with(|st| {
            let s = &mut st.classes[class];
            if st.retained + cap > self.retained_cap {
                s.released += 1;
                return false;
            }
            // SAFETY: the block is ours, aligned and at least a word long.
            unsafe { p.as_ptr().cast::<*mut u8>().write(s.head) };
            s.head = p.as_ptr();
            s.count += 1;
            st.retained += cap;
            true
        });
        if !kept {
            // SAFETY: by the caller, allocated with this layout.
            unsafe { PoolMalloc.dealloc(p.as_ptr(), Layout::from_size_align_unchecked(cap, ALIGN)) };
        }
    }

    /// Frees every retained buffer.
    pub fn trim(&self) {
        let Some(sh) = self.shared() else { return };
        for (class, &size) in CLASS_SIZES.iter().enumerate() {
            let (mut p, n) = sh.state.with(|st| {
                let s = &mut st.classes[class];
                let r = (s.head, s.count);
                s.head = ptr::null_mut();
                s.count = 0;
                s.released += r.1 as u64;
                st.retained -= r.1 * size;
                r
            });
            for _ in 0..n {
                // SAFETY: a detached chain of `n` free blocks of this class.
                let next = unsafe { p.cast::<*mut u8>().read() };
                // SAFETY: allocated with this layout.
                unsafe { PoolMalloc.dealloc(p, Layout::from_size_align_unchecked(size, ALIGN)) };
                p = next;
            }
        }
    }

    /// A snapshot of the pool's figures.
    pub fn stats(&self) -> BufferPoolStats {
        let mut out = BufferPoolStats {
            classes: [BufferClassStats::default(); NUM_CLASSES],
            large_acquired: 0,
            retained_bytes: 0,
            retained_cap: self.retained_cap,
        };
        for (cs, &size) in out.classes.iter_mut().zip(&CLASS_SIZES) {
            cs.size = size;
        }
        let Some(sh) = self.shared() else { return out };
        let (classes, retained) = sh.state.with(|st| (st.classes, st.retained));
        out.large_acquired = sh.large_acquired.load(Relaxed);
        out.retained_bytes = retained;
        for ((cs, s), &size) in out.classes.iter_mut().zip(&classes).zip(&CLASS_SIZES) {
            *cs = BufferClassStats {
                size,
                acquired: s.acquired,
                reused: s.reused,
                allocated: s.allocated,
                released: s.released,
                retained: s.count,
            };
        }
        out
    }
}

impl Drop for BufferPool {
    /// Frees every retained buffer and the pool's state.
    fn drop(&mut self) {
        let p = *self.shared.get_mut();
        if p.is_null() {
            return;
        }
        self.trim();
        POOLS.with(|l| {
            // SAFETY: `p` and its neighbours are on the list, so they are
            // live, and their list fields are guarded by the lock we hold.
            unsafe {
                let (prev, next) = ((*p).prev.get(), (*p).next.get());
                if prev.is_null() {
                    l.head = next;
                } else {
                    (*prev).next.set(next);
                }
                if !next.is_null() {
                    (*next).prev.set(prev);
                }
            }
            l.len -= 1;
        });
        // SAFETY: off the list, and no buffer borrows the pool any more, so
        // nothing references the state; it came from `PoolMalloc` with this
        // layout.
        unsafe {
            ptr::drop_in_place(p);
            PoolMalloc.dealloc(p.cast(), Layout::new::<Shared>());
        }
    }
}

/// Figures for one capacity class of a [`BufferPool`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BufferClassStats {
    /// Capacity of the class in bytes.
    pub size: usize,
    /// Buffers handed out.
    pub acquired: u64,
    /// Of those, served from retained storage.
    pub reused: u64,
    /// Of those, served by a fresh allocation.
    pub allocated: u64,
    /// Storage freed (over the cap, or by `trim`).
    pub released: u64,
    /// Storage blocks retained now.
    pub retained: usize,
}

/// A snapshot of a [`BufferPool`]'s figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BufferPoolStats {
    /// Per class, smallest first.
    pub classes: [BufferClassStats; NUM_CLASSES],
    /// Buffers above the largest class (plain allocations).
    pub large_acquired: u64,
    /// Bytes of storage retained now.
    pub retained_bytes: usize,
    /// The cap on retained bytes.
    pub retained_cap: usize,
}

impl fmt::Display for BufferPoolStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "buffer pool: {} of {} bytes retained", self.retained_bytes, self.retained_cap)?;
        writeln!(
            f,
            "  {:>8} {:>12} {:>12} {:>12} {:>12} {:>9}",
            "class", "acquired", "reused", "allocated", "released", "retained"
        )?;
        for c in &self.classes {
            writeln!(
                f,
                "  {:>8} {:>12} {:>12} {:>12} {:>12} {:>9}",
                c.size, c.acquired, c.reused, c.allocated, c.released, c.retained
            )?;
        }
        write!(f, "  {:>8} {:>12}", "larger", self.large_acquired)
    }
}

/// A byte buffer from a [`BufferPool`]; its storage goes back to the pool
/// when it drops (on whatever thread).
///
/// * `len` bytes are visible through `Deref<Target = [u8]>`; [`capacity`]
///   is the size of the storage. [`set_len`] moves the length anywhere up to
///   the capacity; bytes it exposes are initialised but unspecified.
/// * [`std::io::Write`] appends at the end, growing the buffer into a larger
///   class (or a plain allocation) as needed.
/// * [`std::io::Read`] and [`std::io::BufRead`] consume from a read position
///   that starts at 0 and never passes `len`; [`clear`] resets both.
///
/// [`capacity`]: Buffer::capacity
/// [`set_len`]: Buffer::set_len
/// [`clear`]: Buffer::clear
pub struct Buffer<'a> {
    /// Storage of `cap` initialised bytes.
    ptr: NonNull<u8>,
    /// Visible bytes; `len <= cap`.
    len: usize,
    /// Read position; `pos <= len`.
    pos: usize,
    cap: usize,
    /// Class index, or `LARGE`.
    class: usize,
    pool: &'a BufferPool,
}

// SAFETY: the buffer owns its storage exclusively, and the pool is `Sync`.
unsafe impl Send for Buffer<'_> {}
// SAFETY: a shared buffer gives out only `&[u8]`.
unsafe impl Sync for Buffer<'_> {}

impl Buffer<'_> {
    /// Bytes visible.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no bytes are visible.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Size of the storage.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Sets the length. Bytes beyond the old length keep whatever the
    /// storage held. The read position is clamped to the new length.
    ///
    /// # Panics
    /// If `len` exceeds the capacity.
    #[inline]
    pub fn set_len(&mut self, len: usize) {
        assert!(len <= self.cap, "Buffer::set_len: {len} exceeds the capacity {}", self.cap);
        self.len = len;
        self.pos = self.pos.min(len);
    }

    /// Shortens the buffer to `len` (no effect if it is shorter already).
    #[inline]
    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            self.set_len(len);
        }
    }

    /// Empties the buffer and rewinds the read position.
    #[inline]
    pub fn clear(&mut self) {
        self.len = 0;
        self.pos = 0;
    }

    /// The read position.
    #[inline]
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Moves the read position (clamped to the length).
    #[inline]
    pub fn set_position(&mut self, pos: usize) {
        self.pos = pos.min(self.len);
    }

    /// The bytes not yet read.
    #[inline]
    pub fn remaining(&self) -> &[u8] {
        &self[self.pos..]
    }

    /// Makes room for `additional` more bytes, moving the contents into a
    /// larger class or a plain allocation (at least double the capacity) if
    /// needed.
    ///
    /// # Panics
    /// If the new size overflows `usize`; calls [`handle_alloc_error`] when
    /// out of memory.
    pub fn reserve(&mut self, additional: usize) {
        if let Err(e) = self.try_reserve(additional) {
            match e.kind() {
                io::ErrorKind::OutOfMemory => {
                    handle_alloc_error(BufferPool::layout_for(self.len.saturating_add(additional)))
                }
                _ => panic!("Buffer::reserve: capacity overflow"),
            }
        }
    }

    /// As [`reserve`](Buffer::reserve), with failure as an I/O error
    /// (`OutOfMemory`, or `InvalidInput` on overflow).
    pub fn try_reserve(&mut self, additional: usize) -> io::Result<()> {
        let need = self.len.checked_add(additional).ok_or(io::ErrorKind::InvalidInput)?;
        if need <= self.cap {
            return Ok(());
        }
        let want = if class_for(need).is_some() { need } else { need.max(self.cap.saturating_mul(2)) };
        if want > isize::MAX as usize {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        let (p, cap, class) = self.pool.take_storage(want).ok_or(io::ErrorKind::OutOfMemory)?;
        // SAFETY: both storages are live and distinct; `len <= cap` of both.
        unsafe { ptr::copy_nonoverlapping(self.ptr.as_ptr(), p.as_ptr(), self.len) };
        let (old, old_cap, old_class) = (self.ptr, self.cap, self.class);
        (self.ptr, self.cap, self.class) = (p, cap, class);
        // SAFETY: the old storage is no longer used.
        unsafe { self.pool.give_storage(old, old_cap, old_class) };
        Ok(())
    }

    /// Appends `data`, growing the buffer if needed.
    pub fn extend_from_slice(&mut self, data: &[u8]) {
        self.reserve(data.len());
        // SAFETY: room for `data` was reserved; the regions are distinct
        // (`data` is borrowed immutably while `self` is borrowed mutably).
        unsafe { ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(self.len), data.len()) };
        self.len += data.len();
    }
}

impl Drop for Buffer<'_> {
    fn drop(&mut self) {
        // SAFETY: the storage came from this pool with this capacity and
        // class, and the buffer is going away.
        unsafe { self.pool.give_storage(self.ptr, self.cap, self.class) };
    }
}

impl Deref for Buffer<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: the storage holds `cap >= len` initialised bytes.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for Buffer<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `deref`, and the buffer is borrowed mutably.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl AsRef<[u8]> for Buffer<'_> {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl AsMut<[u8]> for Buffer<'_> {
    fn as_mut(&mut self) -> &mut [u8] {
        self
    }
}

impl fmt::Debug for Buffer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Buffer")
            .field("len", &self.len)
            .field("capacity", &self.cap)
            .field("position", &self.pos)
            .finish()
    }
}

impl io::Write for Buffer<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.try_reserve(data.len())?;
        // SAFETY: room was reserved; the regions are distinct.
        unsafe { ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(self.len), data.len()) };
        self.len += data.len();
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl io::Read for Buffer<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = out.len().min(self.len - self.pos);
        out[..n].copy_from_slice(&self[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl io::BufRead for Buffer<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        Ok(self.remaining())
    }

    fn consume(&mut self, amt: usize) {
        self.pos = (self.pos + amt).min(self.len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn classes_and_lengths() {
        let pool = BufferPool::new();
        for (len, cap) in [(0, 2048), (1500, 2048), (2048, 2048), (2049, 16384), (9000, 16384), (65536, 65536)] {
            let b = pool.acquire(len);
            assert_eq!((b.len(), b.capacity()), (len, cap));
            assert_eq!(b.as_ptr() as usize % ALIGN, 0);
        }
        let big = pool.acquire(100_000);
        assert_eq!((big.len(), big.capacity()), (100_000, 100_000));
        drop(big);
        let st = pool.stats();
        assert_eq!(st.large_acquired, 1);
        assert_eq!(st.classes[0].acquired, 3);
        assert_eq!(st.classes[0].reused, 2);
        assert_eq!(st.retained_bytes, 2048 + 16384 + 65536);
    }

    #[test]
    fn reused_storage_shows_no_link() {
        let pool = BufferPool::new();
        let mut b = pool.acquire_zeroed(2048);
        assert!(b.iter().all(|&x| x == 0));
        b.fill(0xAA);
        drop(b);
        let b = pool.acquire(2048);
        assert!(b[..8].iter().all(|&x| x == 0), "the free-list link is cleared");
        assert!(b[8..].iter().all(|&x| x == 0xAA), "the rest is what was written");
    }

    #[test]
    fn growth_keeps_contents_and_frees_old_class() {
        let pool = BufferPool::new();
        let mut b = pool.acquire(0);
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
        for chunk in data.chunks(1000) {
            b.write_all(chunk).unwrap();
        }
        assert_eq!(&b[..], &data[..]);
        assert!(b.capacity() >= data.len());
        let mut back = Vec::new();
        b.read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        drop(b);
        // Every class the buffer passed through got its storage back.
        let st = pool.stats();
        for c in &st.classes {
            assert_eq!(c.retained, 1);
        }
    }

    #[test]
    fn set_len_bounds() {
        let pool = BufferPool::new();
        let mut b = pool.acquire(10);
        b.set_len(2048);
        assert_eq!(b.len(), 2048);
        b.set_position(100);
        b.truncate(50);
        assert_eq!(b.position(), 50);
        assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| b.set_len(2049))).is_err());
    }
}
