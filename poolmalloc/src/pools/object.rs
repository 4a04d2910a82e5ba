//! Object pools, [`ObjectPool<T>`] and its guard [`Pooled`]: pools of
//! constructed objects that keep their own allocations between uses, the
//! Rust form of CPython's free lists for lists and dicts (a recycled list
//! keeps its item array).
//!
//! [`TypedPool`](super::TypedPool) recycles a slot; an object pool recycles
//! the object in it. `get()` hands out a ready `T`, and dropping the guard
//! calls [`Recycle::recycle`] (a `Vec` is cleared, keeping its capacity) and
//! keeps the object for the next `get()`, so a buffer, a string or a map is
//! built once and then reused without allocating.
//!
//! ```
//! use poolmalloc::ObjectPool;
//!
//! let lines: ObjectPool<Vec<String>> = ObjectPool::new();
//! for message in ["a b c", "d e"] {
//!     let mut fields = lines.get();
//!     fields.extend(message.split(' ').map(str::to_string));
//!     assert!(!fields.is_empty());
//! } // cleared and kept: the second message reuses the first's vector
//! assert_eq!(lines.stats().reused, 1);
//! ```
//!
//! # Bounds
//!
//! A pool keeps at most [`ObjectPool::cap`] objects in its shared depot and
//! at most [`THREAD_CAP`] in each thread's cache; an object returned beyond
//! that is dropped. An object whose retained capacity
//! ([`Recycle::retained_bytes`]) is above the pool's limit is shrunk
//! ([`Recycle::shrink_retained`]) before it is kept, so one huge request does
//! not pin its buffer for ever.
//!
//! # Threads
//!
//! A pool is `Sync` and is shared by reference. Each thread keeps a cache of
//! recycled objects per pool, reached through a thread-local list without a
//! lock; a guard dropped on another thread than the one that made it returns
//! its object to the dropping thread's cache (cross-thread return). A
//! thread's cache that is full overflows into the pool's depot, behind a
//! lock, and a thread whose cache is empty takes from the depot before it
//! constructs. At thread exit a thread's caches go to their pools' depots (up
//! to the cap). Caches refer to their pool weakly: a cache of a dropped pool
//! is dropped when its thread next meets it or exits.
//!
//! # Panics
//!
//! A `recycle` (or `shrink_retained`) that panics poisons nothing: the panic
//! is caught, the object is dropped instead of kept, and the pool counts it
//! (`recycle_panics`).

use super::lock;
use std::any::Any;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::mem::{self, ManuallyDrop};
use std::ops::{Deref, DerefMut};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};

/// Objects a thread keeps per pool before returns overflow to the depot.
pub const THREAD_CAP: usize = 32;
/// Default cap on objects kept in a pool's depot.
pub const DEFAULT_OBJECT_CAP: usize = 256;
/// Default limit on the capacity, in bytes, one kept object may retain.
pub const DEFAULT_MAX_RETAINED: usize = 1 << 20;

/// An object that can be reset for reuse while keeping its allocations.
///
/// Implemented for the standard collections and `String`; implement it for
/// your own types (reset the fields, clear the collections in them).
pub trait Recycle {
    /// Resets `self` to the state `get()` should hand out, keeping what it
    /// allocated (`Vec::clear`, not `Vec::new`).
    fn recycle(&mut self);

    /// Bytes of capacity `self` retains (for the pool's limit). Default: 0.
    fn retained_bytes(&self) -> usize {
        0
    }

    /// Gives back retained capacity beyond about `max_bytes`. Default:
    /// nothing.
    fn shrink_retained(&mut self, max_bytes: usize) {
        let _ = max_bytes;
    }
}

/// `Recycle` for a collection that clears in place and keeps a capacity of
/// `capacity()` elements of type `$elem` (String: bytes).
macro_rules! recycle_with_capacity {
    ($([$($gen:tt)*] $ty:ty => $elem:ty;)*) => {$(
        impl<$($gen)*> Recycle for $ty {
            fn recycle(&mut self) {
                self.clear();
            }
            fn retained_bytes(&self) -> usize {
                self.capacity() * mem::size_of::<$elem>()
            }
            fn shrink_retained(&mut self, max_bytes: usize) {
                self.shrink_to(max_bytes / mem::size_of::<$elem>().max(1));
            }
        }
    )*};
}

recycle_with_capacity! {
    [T] Vec<T> => T;
    [] String => u8;
    [T] VecDeque<T> => T;
    [K: Eq + Hash, V, S: BuildHasher] HashMap<K, V, S> => (K, V);
    [T: Eq + Hash, S: BuildHasher] HashSet<T, S> => T;
}

/// A B-tree keeps no capacity: recycling it only empties it.
impl<K: Ord, V> Recycle for BTreeMap<K, V> {
    fn recycle(&mut self) {
        self.clear();
    }
}

/// A B-tree keeps no capacity: recycling it only empties it.
impl<T: Ord> Recycle for BTreeSet<T> {
    fn recycle(&mut self) {
        self.clear();
    }
}

/// A [`Buffer`](super::Buffer) of a `BufferPool`: emptied and rewound,
/// keeping its storage.
impl Recycle for super::Buffer<'_> {
    fn recycle(&mut self) {
        self.clear();
        self.set_position(0);
    }
    fn retained_bytes(&self) -> usize {
        self.capacity()
    }
}

/// A pool's counters, shared with the process-wide list that
/// [`pools::stats()`](super::stats) reads. Written with relaxed atomic adds
/// from the threads' caches in batches (see [`Stash::flush`]), and directly
/// on the depot paths.
#[derive(Default)]
struct Counters {
    gets: AtomicU64,
    constructed: AtomicU64,
    dropped: AtomicU64,
    recycle_panics: AtomicU64,
    shrunk: AtomicU64,
    /// Objects in the depot (kept under the depot's lock, read without).
    in_depot: AtomicUsize,
}

/// Every live object pool's counters, for [`totals`].
static REGISTRY: Mutex<Vec<Weak<Counters>>> = Mutex::new(Vec::new());

/// What one pool shares with the threads' caches.
struct Shared<T> {
    /// Identifies the pool in the threads' cache lists; never reused.
    id: u64,
    depot: Mutex<Vec<T>>,
    cap: usize,
    max_retained: usize,
    counters: Arc<Counters>,
}

impl<T> Shared<T> {
    /// Keeps `value` in the depot if there is room, else drops it.
    fn deposit(&self, value: T) {
        let mut depot = lock(&self.depot);
        if depot.len() < self.cap {
            depot.push(value);
            self.counters.in_depot.store(depot.len(), Relaxed);
            return;
        }
        drop(depot);
        self.counters.dropped.fetch_add(1, Relaxed);
        drop(value);
    }

    fn withdraw(&self) -> Option<T> {
        let mut depot = lock(&self.depot);
        let v = depot.pop();
        self.counters.in_depot.store(depot.len(), Relaxed);
        v
    }
}

/// A pool of recycled objects of type `T`. See the module docs.
pub struct ObjectPool<T: Recycle + Send + 'static> {
    shared: Arc<Shared<T>>,
    make: Box<dyn Fn() -> T + Send + Sync>,
}

impl<T: Recycle + Send + Default + 'static> ObjectPool<T> {
    /// A pool whose new objects are `T::default()`.
    pub fn new() -> Self {
        Self::with(T::default)
    }
}

impl<T: Recycle + Send + Default + 'static> Default for ObjectPool<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Recycle + Send + 'static> ObjectPool<T> {
    /// A pool whose new objects come from `constructor`.
    pub fn with(constructor: impl Fn() -> T + Send + Sync + 'static) -> Self {
        Self::with_limits(constructor, DEFAULT_OBJECT_CAP, DEFAULT_MAX_RETAINED)
    }

    /// A pool with a cap on the objects its depot keeps and a limit on the
    /// bytes of capacity each kept object may retain.
    pub fn with_limits(constructor: impl Fn() -> T + Send + Sync + 'static, cap: usize, max_retained: usize) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let counters = Arc::new(Counters::default());
        {
            let mut registry = lock(&REGISTRY);
            registry.retain(|w| w.strong_count() > 0);
            registry.push(Arc::downgrade(&counters));
        }
        let shared = Arc::new(Shared {
            id: NEXT_ID.fetch_add(1, Relaxed),
            depot: Mutex::new(Vec::new()),
            cap,
            max_retained,
            counters,
        });
        ObjectPool { shared, make: Box::new(constructor) }
    }

    /// The cap on objects kept in the depot.
    pub fn cap(&self) -> usize {
        self.shared.cap
    }

    /// A ready object: a recycled one if this thread's cache or the depot
    /// has one, else a new one from the constructor.
    pub fn get(&self) -> Pooled<'_, T> {
        let value = match with_stash(&self.shared, |s| s.take()) {
            Some(Some(v)) => v,
            Some(None) => self.miss(true),
            None => self.miss(false),
        };
        Pooled { pool: self, value: ManuallyDrop::new(value) }
    }

    /// The depot, then the constructor. `counted`: the thread's cache has
    /// counted the get already.
    #[cold]
    fn miss(&self, counted: bool) -> T {
        let c = &self.shared.counters;
        if !counted {
            c.gets.fetch_add(1, Relaxed);
        }
        if let Some(v) = self.shared.withdraw() {
            return v;
        }
        c.constructed.fetch_add(1, Relaxed);
        (self.make)()
    }

    /// Recycles `value` and keeps it: in this thread's cache, or the depot,
    /// or (both full, or `recycle` panicked) drops it.
    fn put(&self, mut value: T) {
        let max = self.shared.max_retained;
        let c = &self.shared.counters;
        let reset = catch_unwind(AssertUnwindSafe(|| {
            value.recycle();
            if value.retained_bytes() > max {
                value.shrink_retained(max);
                return true;
            }
            false
        }));
        match reset {
            Ok(shrunk) => {
                if shrunk {
                    c.shrunk.fetch_add(1, Relaxed);
                }
            }
            Err(_) => {
                c.recycle_panics.fetch_add(1, Relaxed);
                // Its drop may panic too: that is caught as well.
                let _ = catch_unwind(AssertUnwindSafe(move || drop(value)));
                return;
            }
        }
        // This thread's cache if it has room (and can be used), else the
        // depot.
        let mut value = Some(value);
        let _ = with_stash(&self.shared, |s| s.keep(&mut value));
        if let Some(v) = value {
            self.shared.deposit(v);
        }
    }

    /// Drops the objects this thread's cache and the depot keep.
    pub fn trim(&self) {
        let _ = with_stash(&self.shared, |s| s.items.clear());
        let kept = mem::take(&mut *lock(&self.shared.depot));
        self.shared.counters.in_depot.store(0, Relaxed);
        drop(kept);
    }

    /// This pool's figures. Counts made by other threads' caches are
    /// added in batches, so they may lag by a few dozen events per thread.
    pub fn stats(&self) -> ObjectPoolStats {
        let _ = with_stash(&self.shared, |s| s.flush());
        let c = &self.shared.counters;
        let gets = c.gets.load(Relaxed);
        let constructed = c.constructed.load(Relaxed);
        ObjectPoolStats {
            gets,
            constructed,
            reused: gets.saturating_sub(constructed),
            dropped: c.dropped.load(Relaxed),
            recycle_panics: c.recycle_panics.load(Relaxed),
            shrunk: c.shrunk.load(Relaxed),
            in_depot: c.in_depot.load(Relaxed),
        }
    }
}

impl<T: Recycle + Send + 'static> Drop for ObjectPool<T> {
    fn drop(&mut self) {
        // This thread's cache goes now; other threads' when they next meet
        // it, or exit.
        let id = self.shared.id;
        let _ = STASHES.try_with(|cell| {
            if let Ok(mut list) = cell.try_borrow_mut() {
                list.retain(|e| e.id != id);
            }
        });
    }
}

impl<T: Recycle + Send + 'static> fmt::Debug for ObjectPool<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectPool").field("cap", &self.shared.cap).field("stats", &self.stats()).finish()
    }
}

/// A recycled (or new) object from an [`ObjectPool`]: derefs to `T`, and
/// goes back to the pool when dropped.
pub struct Pooled<'a, T: Recycle + Send + 'static> {
    pool: &'a ObjectPool<T>,
    value: ManuallyDrop<T>,
}

impl<T: Recycle + Send + 'static> Pooled<'_, T> {
    /// Takes the object out of the pool's care: it is not recycled.
    pub fn into_inner(self) -> T {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped, so the value is taken once.
        unsafe { ManuallyDrop::take(&mut this.value) }
    }
}

impl<T: Recycle + Send + 'static> Deref for Pooled<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: Recycle + Send + 'static> DerefMut for Pooled<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T: Recycle + Send + 'static> Drop for Pooled<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the value is taken once, here, and `self` is not used
        // after.
        let value = unsafe { ManuallyDrop::take(&mut self.value) };
        self.pool.put(value);
    }
}

impl<T: Recycle + Send + fmt::Debug + 'static> fmt::Debug for Pooled<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// One pool's figures (see [`ObjectPool::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ObjectPoolStats {
    /// Objects handed out by `get()`.
    pub gets: u64,
    /// Of those, made new by the constructor.
    pub constructed: u64,
    /// Of those, recycled objects.
    pub reused: u64,
    /// Objects returned while the caches and the depot were full, dropped.
    pub dropped: u64,
    /// `recycle` calls that panicked (their objects were dropped).
    pub recycle_panics: u64,
    /// Objects shrunk to the retained-capacity limit before being kept.
    pub shrunk: u64,
    /// Objects in the depot now (threads' caches not included).
    pub in_depot: usize,
}

impl fmt::Display for ObjectPoolStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  gets         {:>10}", self.gets)?;
        writeln!(f, "  reused       {:>10}", self.reused)?;
        writeln!(f, "  constructed  {:>10}", self.constructed)?;
        writeln!(f, "  dropped      {:>10}", self.dropped)?;
        writeln!(f, "  panics       {:>10}", self.recycle_panics)?;
        writeln!(f, "  shrunk       {:>10}", self.shrunk)?;
        writeln!(f, "  in depot     {:>10}", self.in_depot)
    }
}

/// Totals over every live object pool, for [`super::stats`].
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Totals {
    pub pools: usize,
    pub gets: u64,
    pub constructed: u64,
    pub in_depot: usize,
}

pub(super) fn totals() -> Totals {
    let registry = lock(&REGISTRY);
    let mut t = Totals::default();
    for c in registry.iter().filter_map(Weak::upgrade) {
        t.pools += 1;
        t.gets += c.gets.load(Relaxed);
        t.constructed += c.constructed.load(Relaxed);
        t.in_depot += c.in_depot.load(Relaxed);
    }
    t
}

// ---------------------------------------------------------------------------
// The threads' caches.

/// Events a cache counts before it adds them to its pool's counters.
const FLUSH_EVERY: u64 = 64;

/// One thread's cache for one pool.
struct Stash<T> {
    pool: Weak<Shared<T>>,
    items: Vec<T>,
    /// Gets served or missed here, not yet added to the pool's counters.
    gets: u64,
}

impl<T> Stash<T> {
    /// A kept object, counting the get.
    fn take(&mut self) -> Option<T> {
        self.gets += 1;
        if self.gets >= FLUSH_EVERY {
            self.flush();
        }
        self.items.pop()
    }

    /// Keeps `value` if there is room (taking it out of the option).
    fn keep(&mut self, value: &mut Option<T>) {
        if self.items.len() < THREAD_CAP {
            if let Some(v) = value.take() {
                self.items.push(v);
            }
        }
    }

    fn flush(&mut self) {
        if let Some(shared) = self.pool.upgrade() {
            shared.counters.gets.fetch_add(self.gets, Relaxed);
        }
        self.gets = 0;
    }
}

impl<T> Drop for Stash<T> {
    /// At thread exit (or when its pool is found gone): the counts go to the
    /// pool, and the objects to its depot while it has room.
    fn drop(&mut self) {
        self.flush();
        if let Some(shared) = self.pool.upgrade() {
            for v in self.items.drain(..) {
                shared.deposit(v);
            }
        }
    }
}

/// One entry of a thread's list of caches: the pool's id and its cache.
struct Entry {
    id: u64,
    /// `Stash<T>` for the pool's `T`.
    stash: Box<dyn Any>,
    /// Whether the pool is still alive (for pruning).
    alive: fn(&dyn Any) -> bool,
}

thread_local! {
    static STASHES: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
}

fn stash_alive<T: 'static>(stash: &dyn Any) -> bool {
    stash.downcast_ref::<Stash<T>>().is_some_and(|s| s.pool.strong_count() > 0)
}

/// Runs `f` on this thread's cache for `shared`'s pool (made on first use).
/// `None` when the thread's list cannot be used: the thread is exiting, or
/// this is a nested use from inside another pool's `recycle`.
fn with_stash<T: 'static, R>(shared: &Arc<Shared<T>>, f: impl FnOnce(&mut Stash<T>) -> R) -> Option<R> {
    STASHES
        .try_with(|cell| {
            let mut list = cell.try_borrow_mut().ok()?;
            let i = match list.iter().position(|e| e.id == shared.id) {
                Some(i) => i,
                None => {
                    // Caches of dropped pools go before a new one is added.
                    list.retain(|e| (e.alive)(&*e.stash));
                    list.push(Entry {
                        id: shared.id,
                        stash: Box::new(Stash { pool: Arc::downgrade(shared), items: Vec::new(), gets: 0 }),
                        alive: stash_alive::<T>,
                    });
                    list.len() - 1
                }
            };
            // Most recently used first: the common case finds it at once.
            if i != 0 {
                list.swap(0, i);
            }
            let stash = list[0].stash.downcast_mut::<Stash<T>>()?;
            Some(f(stash))
        })
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts the live objects of a test type, to check nothing leaks.
    struct Tracked {
        data: Vec<u8>,
        live: &'static AtomicUsize,
        panic_on_recycle: bool,
    }

    impl Tracked {
        fn new(live: &'static AtomicUsize) -> Self {
            live.fetch_add(1, Relaxed);
            Tracked { data: Vec::new(), live, panic_on_recycle: false }
        }
    }

    impl Drop for Tracked {
        fn drop(&mut self) {
            self.live.fetch_sub(1, Relaxed);
        }
    }

    impl Recycle for Tracked {
        fn recycle(&mut self) {
            assert!(!self.panic_on_recycle, "recycle asked to panic");
            self.data.clear();
        }
        fn retained_bytes(&self) -> usize {
            self.data.capacity()
        }
        fn shrink_retained(&mut self, max_bytes: usize) {
            self.data.shrink_to(max_bytes);
        }
    }

    #[test]
    fn a_returned_object_comes_back_cleared_with_its_capacity() {
        let pool: ObjectPool<Vec<u64>> = ObjectPool::new();
        let ptr = {
            let mut v = pool.get();
            v.extend(0..1000);
            v.as_ptr()
        };
        let v = pool.get();
        assert!(v.is_empty() && v.capacity() >= 1000);
        assert_eq!(v.as_ptr(), ptr, "the same allocation");
        drop(v);
        let s = pool.stats();
        assert_eq!((s.gets, s.constructed, s.reused), (2, 1, 1));
        let kept = pool.get().into_inner();
        assert_eq!(kept.as_ptr(), ptr);
        assert_eq!(pool.stats().constructed, 1);
        let fresh = pool.get();
        assert_eq!(fresh.capacity(), 0, "into_inner took the object out of the pool");
    }

    #[test]
    fn objects_return_across_threads_and_at_thread_exit() {
        static LIVE: AtomicUsize = AtomicUsize::new(0);
        // A pool for the whole test run, so that guards can go to a thread
        // that is joined (a scope may end before the thread's TLS
        // destructors have run).
        static POOL: std::sync::OnceLock<ObjectPool<Tracked>> = std::sync::OnceLock::new();
        let pool = POOL.get_or_init(|| ObjectPool::with(|| Tracked::new(&LIVE)));
        // Made here, dropped on another thread: kept in that thread's
        // cache, then in the depot when it exits.
        let guards: Vec<_> = (0..10).map(|_| pool.get()).collect();
        std::thread::spawn(move || drop(guards)).join().unwrap();
        assert_eq!(pool.stats().in_depot, 10, "the exiting thread's cache went to the depot");
        let again: Vec<_> = (0..10).map(|_| pool.get()).collect();
        assert_eq!(pool.stats().constructed, 10, "all ten came back from the depot");
        drop(again);
        pool.trim();
        assert_eq!(LIVE.load(Relaxed), 0, "trim dropped every kept object");
    }

    #[test]
    fn caps_bound_what_is_kept() {
        static LIVE: AtomicUsize = AtomicUsize::new(0);
        let pool = ObjectPool::with_limits(|| Tracked::new(&LIVE), 10, 1000);
        let guards: Vec<_> = (0..100).map(|_| pool.get()).collect();
        drop(guards);
        let s = pool.stats();
        assert_eq!(s.dropped as usize, 100 - THREAD_CAP - 10);
        assert_eq!(LIVE.load(Relaxed), THREAD_CAP + 10);
        // A huge buffer is shrunk to the limit before it is kept.
        {
            let mut g = pool.get();
            g.data.reserve(1 << 20);
        }
        assert_eq!(pool.stats().shrunk, 1);
        assert!(pool.get().data.capacity() <= 1000);
        pool.trim();
        assert_eq!(LIVE.load(Relaxed), 0, "trim dropped the kept objects");
    }

    #[test]
    fn a_panicking_recycle_drops_the_object_and_poisons_nothing() {
        static LIVE: AtomicUsize = AtomicUsize::new(0);
        let pool = ObjectPool::with(|| Tracked::new(&LIVE));
        {
            let mut g = pool.get();
            g.panic_on_recycle = true;
        }
        assert_eq!(pool.stats().recycle_panics, 1);
        assert_eq!(LIVE.load(Relaxed), 0, "the object was dropped");
        let g = pool.get();
        drop(g);
        assert_eq!(pool.stats().recycle_panics, 1);
        assert_eq!(LIVE.load(Relaxed), 1, "the pool keeps working");
    }

    #[test]
    fn a_cache_of_a_dropped_pool_is_pruned() {
        static LIVE: AtomicUsize = AtomicUsize::new(0);
        let first = Arc::new(ObjectPool::with(|| Tracked::new(&LIVE)));
        let f = first.clone();
        // `join`, not a scope: a scope may end before the thread's TLS
        // destructors have run.
        std::thread::spawn(move || {
            drop(f.get());
            assert_eq!(LIVE.load(Relaxed), 1, "kept in this thread's cache");
        })
        .join()
        .unwrap();
        // The thread's exit moved its object to the depot; dropping the
        // pool drops it.
        drop(first);
        assert_eq!(LIVE.load(Relaxed), 0);
        // On one thread: a cache of a dropped pool goes when a new pool's
        // cache is made.
        let a = ObjectPool::with(|| Tracked::new(&LIVE));
        drop(a.get());
        let id = a.shared.id;
        drop(a);
        let b = ObjectPool::with(|| Tracked::new(&LIVE));
        drop(b.get());
        let ids: Vec<u64> = STASHES.with(|l| l.borrow().iter().map(|e| e.id).collect());
        assert!(!ids.contains(&id), "{ids:?}");
        drop(b);
        assert_eq!(LIVE.load(Relaxed), 0);
    }

    #[test]
    fn standard_types_recycle() {
        let maps: ObjectPool<HashMap<u32, u32>> = ObjectPool::new();
        {
            let mut m = maps.get();
            m.extend((0..64).map(|i| (i, i)));
        }
        let m = maps.get();
        assert!(m.is_empty() && m.capacity() >= 64);
        let strings: ObjectPool<String> = ObjectPool::new();
        strings.get().push_str("hello");
        assert!(strings.get().is_empty());
        let mut q = VecDeque::with_capacity(8);
        q.push_back(1);
        q.recycle();
        assert!(q.is_empty() && q.capacity() >= 8);
    }
}
