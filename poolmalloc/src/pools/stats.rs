//! Statistics over every typed pool, buffer pool and object pool: [`stats()`] returns a
//! [`PoolsStats`] snapshot of their totals, whose `Display` prints the
//! typed-pool and buffer-pool sections of a report (one `label = value`
//! line per figure, aligned like the allocator's report) and whose JSON form
//! (feature `serde`) has one object per section.
//!
//! Applications and tools call it, next to [`crate::stats()`]: the
//! allocator's report counts the memory of the pools' slots and storage in
//! its size classes and large spans, and this one says which pools hold it.
//! A pool's own figures are in [`TypedPool::stats`](super::TypedPool::stats)
//! and [`BufferPool::stats`](super::BufferPool::stats).
//!
//! # Threads
//!
//! [`stats()`] may be called from any thread and never stops other threads.
//! It walks the process-wide list of typed pools under that list's lock,
//! taking each pool's registry and depot locks in turn, then the list of
//! buffer pools under its lock, taking each pool's lock in turn. Nothing is
//! counted on the paths that make or drop a box or a buffer. While other
//! threads use the pools the totals are approximate (each pool, and each
//! thread cache of a typed pool, is read at a slightly different moment);
//! they are exact when the pools are idle. A pool in a `static` that was
//! never used is not counted.
//!
//! The list locks are `std::sync::Mutex`es, which `fork` does not reset: a
//! child of a parent whose other threads may have been setting up, dropping
//! or reading typed or buffer pools at the time should not take a snapshot.
//!
//! Nothing here allocates: the snapshot is a fixed-size struct and the report
//! is written through `core::fmt`.

use super::{buffer, object, typed};
use core::fmt;

/// Totals over every live typed pool and buffer pool (see [`stats()`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolsStats {
    /// Typed pools that have been used and not dropped.
    pub typed_pools: usize,
    /// Boxes alive in those pools.
    pub typed_live: usize,
    /// Free slots kept in their thread caches and depots.
    pub typed_cached: usize,
    /// Bytes of slot memory they hold: live boxes and cached slots.
    pub typed_bytes: usize,
    /// Typed allocations served from a cache.
    pub typed_hits: u64,
    /// Typed allocations that took a fresh slot from the pool layer.
    pub typed_misses: u64,
    /// Buffer pools that have been used and not dropped.
    pub buffer_pools: usize,
    /// Bytes of free storage they retain for reuse.
    pub buffer_retained_bytes: usize,
    /// Buffers they handed out.
    pub buffer_acquired: u64,
    /// Of those, served from retained storage.
    pub buffer_reused: u64,
    /// Object pools alive.
    pub object_pools: usize,
    /// Objects they handed out (threads' counts added in batches).
    pub object_gets: u64,
    /// Of those, made new by a constructor.
    pub object_constructed: u64,
    /// Objects kept in their depots (threads' caches not included).
    pub object_in_depot: usize,
}

/// Takes a snapshot of the totals over every typed pool and buffer pool that
/// has been used and not dropped. See the module docs for its guarantees.
///
/// ```
/// use poolmalloc::{BufferPool, TypedPool};
///
/// let objects = TypedPool::<[u64; 4]>::new();
/// let buffers = BufferPool::new();
/// let before = poolmalloc::pools::stats();
/// let b = objects.alloc([1, 2, 3, 4]);
/// let buf = buffers.acquire(1500);
/// let now = poolmalloc::pools::stats();
/// assert_eq!(now.typed_live, before.typed_live + 1);
/// assert_eq!(now.buffer_acquired, before.buffer_acquired + 1);
/// assert!(now.to_string().contains("# live boxes in typed pools"));
/// drop((b, buf));
/// ```
pub fn stats() -> PoolsStats {
    let t = typed::totals();
    let b = buffer::totals();
    let o = object::totals();
    PoolsStats {
        typed_pools: t.pools,
        typed_live: t.live,
        typed_cached: t.cached,
        typed_bytes: t.bytes,
        typed_hits: t.hits,
        typed_misses: t.misses,
        buffer_pools: b.pools,
        buffer_retained_bytes: b.retained_bytes,
        buffer_acquired: b.acquired,
        buffer_reused: b.reused,
        object_pools: o.pools,
        object_gets: o.gets,
        object_constructed: o.constructed,
        object_in_depot: o.in_depot,
    }
}

/// A count with a comma between groups of three digits, padded as a string.
struct Grouped(u64);

impl fmt::Display for Grouped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // 20 digits and 6 commas at most for a u64, written from the right.
        let mut text = [0u8; 26];
        let mut start = text.len();
        let mut rest = self.0;
        let mut written = 0;
        loop {
            if written > 0 && written % 3 == 0 {
                start -= 1;
                text[start] = b',';
            }
            start -= 1;
            text[start] = b'0' + (rest % 10) as u8;
            written += 1;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        f.pad(core::str::from_utf8(&text[start..]).map_err(|_| fmt::Error)?)
    }
}

/// One `label = value` line of the report.
fn figure(f: &mut fmt::Formatter<'_>, label: &str, value: u64) -> fmt::Result {
    writeln!(f, "{label:<36}= {:>21}", Grouped(value))
}

impl fmt::Display for PoolsStats {
    /// The typed-pool section, an empty line, and the buffer-pool section.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        figure(f, "# typed pools", self.typed_pools as u64)?;
        figure(f, "# live boxes in typed pools", self.typed_live as u64)?;
        figure(f, "# cached slots in typed pools", self.typed_cached as u64)?;
        figure(f, "# bytes in typed pools", self.typed_bytes as u64)?;
        figure(f, "# typed pool cache hits", self.typed_hits)?;
        figure(f, "# typed pool cache misses", self.typed_misses)?;
        writeln!(f)?;
        figure(f, "# buffer pools", self.buffer_pools as u64)?;
        figure(f, "# bytes retained in buffer pools", self.buffer_retained_bytes as u64)?;
        figure(f, "# buffers acquired", self.buffer_acquired)?;
        figure(f, "# buffers reused", self.buffer_reused)?;
        writeln!(f)?;
        figure(f, "# object pools", self.object_pools as u64)?;
        figure(f, "# objects handed out", self.object_gets)?;
        figure(f, "# objects constructed", self.object_constructed)?;
        figure(f, "# objects kept in depots", self.object_in_depot as u64)
    }
}

#[cfg(feature = "serde")]
mod json {
    use super::PoolsStats;
    use serde::ser::{Serialize, SerializeStruct, Serializer};

    /// The typed-pool section.
    struct TypedPools<'a>(&'a PoolsStats);

    impl Serialize for TypedPools<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let t = self.0;
            let mut m = s.serialize_struct("TypedPools", 6)?;
            m.serialize_field("pools", &t.typed_pools)?;
            m.serialize_field("live", &t.typed_live)?;
            m.serialize_field("cached", &t.typed_cached)?;
            m.serialize_field("bytes", &t.typed_bytes)?;
            m.serialize_field("hits", &t.typed_hits)?;
            m.serialize_field("misses", &t.typed_misses)?;
            m.end()
        }
    }

    /// The buffer-pool section.
    struct BufferPools<'a>(&'a PoolsStats);

    impl Serialize for BufferPools<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let t = self.0;
            let mut m = s.serialize_struct("BufferPools", 4)?;
            m.serialize_field("pools", &t.buffer_pools)?;
            m.serialize_field("retained_bytes", &t.buffer_retained_bytes)?;
            m.serialize_field("acquired", &t.buffer_acquired)?;
            m.serialize_field("reused", &t.buffer_reused)?;
            m.end()
        }
    }

    /// The object-pool section.
    struct ObjectPools<'a>(&'a PoolsStats);

    impl Serialize for ObjectPools<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let t = self.0;
            let mut m = s.serialize_struct("ObjectPools", 4)?;
            m.serialize_field("pools", &t.object_pools)?;
            m.serialize_field("gets", &t.object_gets)?;
            m.serialize_field("constructed", &t.object_constructed)?;
            m.serialize_field("in_depot", &t.object_in_depot)?;
            m.end()
        }
    }

    /// The JSON form: one object for each of the typed-pool, buffer-pool
    /// and object-pool sections, under `typed_pools`, `buffer_pools` and
    /// `object_pools`.
    impl Serialize for PoolsStats {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut st = s.serialize_struct("PoolsStats", 3)?;
            st.serialize_field("typed_pools", &TypedPools(self))?;
            st.serialize_field("buffer_pools", &BufferPools(self))?;
            st.serialize_field("object_pools", &ObjectPools(self))?;
            st.end()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines_are_aligned_and_grouped() {
        let s = PoolsStats {
            typed_bytes: 1_234_567,
            buffer_reused: 1000,
            typed_hits: u64::MAX,
            object_gets: 12_345,
            ..PoolsStats::default()
        };
        let text = s.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 16);
        assert_eq!((lines[6], lines[11]), ("", ""));
        assert_eq!(lines[13], format!("{:<36}= {:>21}", "# objects handed out", "12,345"));
        assert_eq!(lines[3], format!("{:<36}= {:>21}", "# bytes in typed pools", "1,234,567"));
        assert_eq!(lines[4], format!("{:<36}= {:>21}", "# typed pool cache hits", "18,446,744,073,709,551,615"));
        assert_eq!(lines[10], format!("{:<36}= {:>21}", "# buffers reused", "1,000"));
        assert_eq!(lines[0], format!("{:<36}= {:>21}", "# typed pools", "0"));
    }
}
