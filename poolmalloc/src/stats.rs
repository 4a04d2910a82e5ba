//! Statistics: a snapshot of every arena, pool, heap and large span, and a
//! report laid out like CPython's `sys._debugmallocstats()`.
//!
//! [`stats()`] walks the arenas under the arena lock and reads each pool's
//! atomic `used` count, so it never stops other threads. The snapshot is
//! exact when no other thread allocates while it is taken; otherwise each
//! pool's figures are individually consistent (a pool's blocks in use plus
//! available always equal its capacity) but pools are read at slightly
//! different moments. Blocks on a pool's remote-free list count as in use
//! until the owner collects them.
//!
//! The last section breaks down memory that the sections above already
//! count (first-class heaps own pools in the arenas); it is not added to the
//! mapped total. **First-class heaps**: the number of live
//! [`Heap`](crate::Heap)s, and the pools, blocks and bytes in use of the
//! pools they own, read during the same arena walk as the classes (their
//! large blocks are counted with the large spans).
//!
//! The snapshot is made of one small struct per layer, each read by that
//! layer's own `snapshot` function: [`ArenaStats`] (arena counters, headers),
//! [`PoolStats`] (pool records by state and the bytes of their blocks),
//! [`HeapStats`] (heaps, cross-thread frees, abandoned pools), [`LargeStats`]
//! and [`OsStats`]. This module adds the per-class and per-heap tallies, the
//! report and the JSON form (whose keys stay flat, as the report names them).
//!
//! Nothing here allocates: the snapshot is a fixed-size struct and the report
//! is written through `core::fmt`.

use crate::abandoned;
use crate::arena::{self, ARENA_SIZE};
use crate::large;
use crate::os;
use crate::pool::{owner_id, Holding, LOCKED_OWNER, POOL_SIZE};
use crate::registry::{self, USER_OWNER_BIT};
use crate::size_class::{class_size, MAX_CLASS_SIZE, NUM_CLASSES};
use core::fmt;
use core::sync::atomic::Ordering::Relaxed;

pub use crate::arena::ArenaStats;
pub use crate::large::LargeStats;
pub use crate::os::OsStats;
pub use crate::pool::PoolStats;
pub use crate::registry::HeapStats;

/// Figures for one size class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassStats {
    /// Block size in bytes.
    pub block_size: usize,
    /// Pools serving the class.
    pub pools: usize,
    /// Blocks handed out and not freed.
    pub blocks_in_use: usize,
    /// Free blocks in those pools (including never-used ones).
    pub blocks_available: usize,
}

/// Who holds a set of pools, for the occupancy lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Holder {
    /// A thread's heap.
    #[default]
    Thread,
    /// A first-class `poolmalloc::Heap`.
    FirstClass,
    /// The locked-mode heap (also debug mode's blocks).
    Locked,
    /// Pools of exited threads, waiting to be adopted.
    Abandoned,
    /// The heaps past the first [`MAX_HEAPS_SHOWN`], together.
    Others,
}

impl Holder {
    /// The holder's name in the report and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Holder::Thread => "thread",
            Holder::FirstClass => "first-class",
            Holder::Locked => "locked",
            Holder::Abandoned => "abandoned",
            Holder::Others => "others",
        }
    }
}

/// Occupancy of one heap: how full its pools are. Fragmentation shows as
/// live bytes well below the bytes in pools.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapOccupancy {
    /// Whose pools these are.
    pub holder: Holder,
    /// Pools held (empty stashed pools included).
    pub pools: usize,
    /// Bytes of those pools' block areas.
    pub pool_bytes: usize,
    /// Bytes of the blocks in use in them.
    pub live_bytes: usize,
}

/// The process-wide byte counts of [`crate::counters`]: four loads and a
/// little arithmetic, with no lock and no walk, so a program can read them
/// as often as it likes (the role of jemalloc's `stats.allocated`,
/// `stats.active`, `stats.mapped` and `stats.resident`).
///
/// How fresh each figure is:
/// - `mapped` is exact: every mapping and unmapping updates it.
/// - `active` and `resident` are exact at page granularity for the pools
///   and huge blocks, as of the last time a pool was taken from or given
///   back to an arena, or its pages were given back; the pages of pools
///   and arenas count as resident once they are in use or were, whether or
///   not the program touched them since, so `resident` is an upper bound of
///   the resident set poolmalloc causes.
/// - `allocated` counts huge blocks exactly, and the blocks of each pool as
///   its heap last counted them on a slow path. A pool that becomes a
///   thread's current pool counts all its blocks, since blocks are handed
///   out only from current pools; other pools are counted again when filed
///   full, when a free reaches a full pool, when frees bring a pool of 16
///   blocks or more down to half, when remote frees are collected, and
///   when a pool is released. So `allocated` is never below the bytes of
///   live blocks: it is above them by the free blocks of each thread's
///   current pools (at most one pool per size class and thread) and by
///   the blocks freed into other pools since they were last counted (fewer
///   than half of a pool of 16 blocks or more).
///   [`crate::stats`] counts every block, at the cost of a walk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Bytes of live blocks at their block size (huge blocks at their
    /// mapped length).
    pub allocated: usize,
    /// Bytes of the pages that hold live blocks: the pools in use (less
    /// the pages of theirs given back to the OS) and the huge blocks.
    pub active: usize,
    /// Bytes mapped from the OS: arenas, huge blocks and their cache, and
    /// poolmalloc's own metadata.
    pub mapped: usize,
    /// Mapped bytes less those given back to the OS while still mapped:
    /// decommitted free pools, pages of pools in use given back, and
    /// ranges kept after a failed `munmap`.
    pub resident: usize,
}

/// Reads the [`Counters`]. O(1), lock-free, and it allocates nothing.
pub fn counters() -> Counters {
    let (pool_bytes, decommitted) = arena::counters();
    let cold = crate::pool::COLD_BYTES.load(Relaxed);
    let huge = large::COUNTERS.live_bytes.load(Relaxed);
    let mapped = os::COUNTERS.mapped.load(Relaxed);
    let given_back = decommitted + cold + os::COUNTERS.unreleased.load(Relaxed);
    Counters {
        allocated: arena::BLOCK_BYTES.load(Relaxed) + huge,
        active: pool_bytes.saturating_sub(cold) + huge,
        mapped,
        resident: mapped.saturating_sub(given_back),
    }
}

/// Heaps the snapshot lists one by one; the rest are summed in one line.
pub const MAX_HEAPS_SHOWN: usize = 16;

/// A snapshot of the allocator, one part per layer. See the module docs
/// for its guarantees.
#[derive(Clone, Debug)]
pub struct Stats {
    /// Per size class.
    pub classes: [ClassStats; NUM_CLASSES],
    /// Occupancy per heap: the first `occupancy_shown` entries, in the order
    /// their pools are found; a last entry of [`Holder::Others`] sums the
    /// heaps beyond [`MAX_HEAPS_SHOWN`].
    pub occupancy: [HeapOccupancy; MAX_HEAPS_SHOWN + 1],
    /// Entries of `occupancy` in use.
    pub occupancy_shown: usize,
    /// Arenas: how many, and the bytes their headers take.
    pub arenas: ArenaStats,
    /// Pools: by state, and the bytes of their blocks.
    pub pools: PoolStats,
    /// Heaps: threads' and first-class heaps, cross-thread frees, abandoned
    /// pools.
    pub heaps: HeapStats,
    /// Huge spans and their cache.
    pub large: LargeStats,
    /// Mapped bytes and system calls.
    pub os: OsStats,
}

impl Stats {
    /// Sum of the parts that make up the arenas.
    pub fn arena_parts(&self) -> usize {
        let p = &self.pools;
        p.bytes_in_blocks
            + p.bytes_available
            + p.bytes_unused
            + p.bytes_quantization
            + self.arenas.bytes_headers
            + self.arenas.bytes_alignment
    }

    /// Sum of everything that should make up the mapped bytes.
    pub fn mapped_parts(&self) -> usize {
        self.arena_parts() + self.large.bytes + self.large.cached + self.heaps.metadata_bytes + self.os.unreleased
    }

    /// Whether the parts add up to the mapped bytes.
    pub fn adds_up(&self) -> bool {
        self.arena_parts() == self.arenas.current * ARENA_SIZE && self.mapped_parts() == self.os.mapped
    }

    /// Blocks in use over all classes.
    pub fn blocks_in_use(&self) -> usize {
        self.classes.iter().map(|c| c.blocks_in_use).sum()
    }
}

/// Collects per-heap occupancy during the arena walk, without allocating:
/// heaps are told apart by the owner id in their pools' owner words.
struct Occupancy<'a> {
    ids: [usize; MAX_HEAPS_SHOWN + 1],
    heaps: &'a mut [HeapOccupancy; MAX_HEAPS_SHOWN + 1],
    shown: usize,
}

impl Occupancy<'_> {
    fn add(&mut self, h: &Holding) {
        let id = owner_id(h.owner);
        let (key, holder) = if h.abandoned || id == 0 {
            (usize::MAX, Holder::Abandoned)
        } else if id == LOCKED_OWNER {
            (id, Holder::Locked)
        } else if id & USER_OWNER_BIT != 0 {
            (id, Holder::FirstClass)
        } else {
            (id, Holder::Thread)
        };
        let i = match self.ids[..self.shown].iter().position(|&k| k == key) {
            Some(i) => i,
            None if self.shown < MAX_HEAPS_SHOWN => {
                self.ids[self.shown] = key;
                self.heaps[self.shown] = HeapOccupancy { holder, ..HeapOccupancy::default() };
                self.shown += 1;
                self.shown - 1
            }
            None => {
                if self.shown == MAX_HEAPS_SHOWN {
                    self.heaps[MAX_HEAPS_SHOWN] = HeapOccupancy { holder: Holder::Others, ..HeapOccupancy::default() };
                    self.shown += 1;
                }
                MAX_HEAPS_SHOWN
            }
        };
        let o = &mut self.heaps[i];
        o.pools += 1;
        o.pool_bytes += h.area;
        o.live_bytes += h.class.map_or(0, |(_, bs)| h.in_use * bs);
    }
}

/// Takes a snapshot of the whole allocator: each layer's own part, and the
/// per-class, per-heap and first-class tallies of the pools the arena walk
/// visits.
pub fn stats() -> Stats {
    let mut classes = [ClassStats::default(); NUM_CLASSES];
    for (c, cs) in classes.iter_mut().enumerate() {
        cs.block_size = class_size(c);
    }
    let mut occupancy = [HeapOccupancy::default(); MAX_HEAPS_SHOWN + 1];
    let mut heaps = registry::snapshot();
    heaps.pools_abandoned_total = abandoned::abandoned_total();
    let mut pools = PoolStats::default();
    let mut tally = Occupancy { ids: [0; MAX_HEAPS_SHOWN + 1], heaps: &mut occupancy, shown: 0 };
    let arenas = arena::snapshot(|slice| {
        // SAFETY: `arena::snapshot` calls this with the arena lock held, for a
        // record of one of its arenas.
        let Some(h) = (unsafe { pools.add(slice.pool, slice.area, slice.free, slice.dirty) }) else { return };
        tally.add(&h);
        let Some((class, bs)) = h.class else { return };
        let cs = &mut classes[class];
        cs.pools += 1;
        cs.blocks_in_use += h.in_use;
        cs.blocks_available += h.capacity - h.in_use;
        if h.owner & USER_OWNER_BIT != 0 {
            heaps.first_class_pools += 1;
            heaps.first_class_blocks_in_use += h.in_use;
            heaps.first_class_bytes_in_blocks += h.in_use * bs;
        }
    });
    let occupancy_shown = tally.shown;
    Stats { classes, occupancy, occupancy_shown, arenas, pools, heaps, large: large::snapshot(), os: os::snapshot() }
}

/// A number with thousands separators.
struct Sep(usize);

impl fmt::Display for Sep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut digits = [0u8; 32];
        let mut n = 0;
        let mut x = self.0;
        let mut group = 0;
        loop {
            if group == 3 {
                digits[n] = b',';
                n += 1;
                group = 0;
            }
            digits[n] = b'0' + (x % 10) as u8;
            n += 1;
            group += 1;
            x /= 10;
            if x == 0 {
                break;
            }
        }
        digits[..n].reverse();
        // SAFETY-free: ASCII digits and commas are valid UTF-8.
        let s = core::str::from_utf8(&digits[..n]).map_err(|_| fmt::Error)?;
        f.pad(s)
    }
}

fn line(f: &mut fmt::Formatter<'_>, label: &str, v: usize) -> fmt::Result {
    writeln!(f, "{:<36}= {:>21}", label, Sep(v))
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "poolmalloc {} statistics", crate::VERSION)?;
        writeln!(f, "Small block threshold = {}, in {} size classes.", MAX_CLASS_SIZE, NUM_CLASSES)?;
        writeln!(f)?;
        writeln!(f, "class   size   num pools   blocks in use  avail blocks")?;
        writeln!(f, "-----   ----   ---------   -------------  ------------")?;
        for (c, cs) in self.classes.iter().enumerate() {
            if cs.pools == 0 {
                continue;
            }
            writeln!(
                f,
                "{:5} {:6} {:11} {:15} {:13}",
                c, cs.block_size, cs.pools, cs.blocks_in_use, cs.blocks_available
            )?;
        }
        writeln!(f)?;
        line(f, "# arenas allocated total", self.arenas.allocated)?;
        line(f, "# arenas reclaimed", self.arenas.reclaimed)?;
        line(f, "# arenas highwater mark", self.arenas.high_water)?;
        line(f, "# arenas allocated current", self.arenas.current)?;
        let mut label = crate::report::Line::new();
        label.push_u64(self.arenas.current as u64).push(" arenas * ").push_u64(ARENA_SIZE as u64).push(" bytes/arena");
        let arena_bytes = self.arenas.current * ARENA_SIZE;
        line(f, core::str::from_utf8(label.as_bytes()).unwrap_or("arenas"), arena_bytes)?;
        writeln!(f)?;
        line(f, "# bytes in allocated blocks", self.pools.bytes_in_blocks)?;
        line(f, "# bytes in available blocks", self.pools.bytes_available)?;
        let mut label = crate::report::Line::new();
        label
            .push_u64((self.pools.free + self.pools.stashed) as u64)
            .push(" unused pools * ")
            .push_u64(POOL_SIZE as u64)
            .push(" bytes");
        line(f, core::str::from_utf8(label.as_bytes()).unwrap_or("unused pools"), self.pools.bytes_unused)?;
        line(f, "# bytes lost to pool headers", self.arenas.bytes_headers)?;
        line(f, "# bytes lost to quantization", self.pools.bytes_quantization)?;
        line(f, "# bytes lost to arena alignment", self.arenas.bytes_alignment)?;
        let parts = self.arena_parts();
        writeln!(
            f,
            "{:<36}= {:>21}  ({})",
            "Total",
            Sep(parts),
            if parts == arena_bytes { "matches arena bytes" } else { "DOES NOT MATCH arena bytes" }
        )?;
        writeln!(f)?;
        line(f, "# pools in use", self.pools.used)?;
        line(f, "# pools abandoned (thread exited)", self.pools.abandoned)?;
        line(f, "# bytes of their pages given back", self.pools.bytes_cold)?;
        line(f, "# pools free in arenas", self.pools.free)?;
        line(f, "#   of which not resident", self.pools.decommitted)?;
        line(f, "# pools stashed in heaps", self.pools.stashed)?;
        writeln!(f)?;
        line(f, "# large spans", self.large.spans)?;
        line(f, "# bytes in large spans", self.large.bytes)?;
        line(f, "# bytes requested in large spans", self.large.requested)?;
        line(f, "# bytes in cached large spans", self.large.cached)?;
        line(f, "# large cache hits", self.large.cache_hits)?;
        line(f, "# bytes of heap metadata", self.heaps.metadata_bytes)?;
        let mapped = self.mapped_parts();
        writeln!(
            f,
            "{:<36}= {:>21}  ({})",
            "Total mapped",
            Sep(self.os.mapped),
            if mapped == self.os.mapped { "matches the parts" } else { "DOES NOT MATCH the parts" }
        )?;
        line(f, "# peak bytes mapped", self.os.mapped_peak)?;
        writeln!(f)?;
        line(f, "# live heaps", self.heaps.live)?;
        line(f, "#   of which first-class heaps", self.heaps.first_class)?;
        line(f, "# cross-thread frees", self.heaps.remote_frees as usize)?;
        line(f, "# pools abandoned total", self.heaps.pools_abandoned_total as usize)?;
        line(f, "# pools adopted total", self.heaps.pools_adopted_total as usize)?;
        line(f, "# mmap calls", self.os.mmap_calls)?;
        line(f, "# munmap calls", self.os.munmap_calls)?;
        line(f, "# madvise calls", self.os.madvise_calls)?;
        line(f, "# mremap calls", self.os.mremap_calls)?;
        line(f, "# munmap calls refused", self.os.munmap_failures)?;
        line(f, "# bytes kept after a refused munmap", self.os.unreleased)?;
        writeln!(f)?;
        writeln!(f, "heap occupancy (bytes in use / bytes in the heap's pools)")?;
        writeln!(f, "heap              pools    bytes in pools      bytes in use  occupancy")?;
        for (i, h) in self.occupancy[..self.occupancy_shown].iter().enumerate() {
            let name = h.holder.name();
            let pct = (h.live_bytes * 1000).checked_div(h.pool_bytes).unwrap_or(0);
            writeln!(
                f,
                "{:2} {:<12} {:7} {:>17} {:>17} {:>7}.{} %",
                i,
                name,
                h.pools,
                Sep(h.pool_bytes),
                Sep(h.live_bytes),
                pct / 10,
                pct % 10
            )?;
        }
        writeln!(f)?;
        line(f, "# first-class heaps", self.heaps.first_class)?;
        line(f, "# pools in first-class heaps", self.heaps.first_class_pools)?;
        line(f, "# blocks in use in first-class heaps", self.heaps.first_class_blocks_in_use)?;
        line(f, "# bytes in use in first-class heaps", self.heaps.first_class_bytes_in_blocks)
    }
}

#[cfg(feature = "serde")]
mod json {
    use super::{ClassStats, HeapOccupancy, Stats};
    use serde::ser::{Serialize, SerializeMap, SerializeSeq, SerializeStruct, Serializer};

    impl Serialize for ClassStats {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut st = s.serialize_struct("ClassStats", 4)?;
            st.serialize_field("block_size", &self.block_size)?;
            st.serialize_field("pools", &self.pools)?;
            st.serialize_field("blocks_in_use", &self.blocks_in_use)?;
            st.serialize_field("blocks_available", &self.blocks_available)?;
            st.end()
        }
    }

    impl Serialize for HeapOccupancy {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let holder = self.holder.name();
            let mut st = s.serialize_struct("HeapOccupancy", 4)?;
            st.serialize_field("holder", holder)?;
            st.serialize_field("pools", &self.pools)?;
            st.serialize_field("pool_bytes", &self.pool_bytes)?;
            st.serialize_field("live_bytes", &self.live_bytes)?;
            st.end()
        }
    }

    /// The classes that have pools, each with its class number.
    struct Classes<'a>(&'a Stats);

    impl Serialize for Classes<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let used = self.0.classes.iter().filter(|c| c.pools > 0).count();
            let mut seq = s.serialize_seq(Some(used))?;
            for (i, c) in self.0.classes.iter().enumerate().filter(|(_, c)| c.pools > 0) {
                seq.serialize_element(&Class(i, c))?;
            }
            seq.end()
        }
    }

    struct Class<'a>(usize, &'a ClassStats);

    impl Serialize for Class<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(Some(5))?;
            m.serialize_entry("class", &self.0)?;
            m.serialize_entry("block_size", &self.1.block_size)?;
            m.serialize_entry("pools", &self.1.pools)?;
            m.serialize_entry("blocks_in_use", &self.1.blocks_in_use)?;
            m.serialize_entry("blocks_available", &self.1.blocks_available)?;
            m.end()
        }
    }

    /// The first-class heap section.
    struct FirstClassHeaps<'a>(&'a Stats);

    impl Serialize for FirstClassHeaps<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let t = self.0;
            let mut m = s.serialize_struct("FirstClassHeaps", 4)?;
            m.serialize_field("heaps", &t.heaps.first_class)?;
            m.serialize_field("pools", &t.heaps.first_class_pools)?;
            m.serialize_field("blocks_in_use", &t.heaps.first_class_blocks_in_use)?;
            m.serialize_field("bytes_in_blocks", &t.heaps.first_class_bytes_in_blocks)?;
            m.end()
        }
    }

    /// The JSON form: every named figure, the classes that have pools, one
    /// object for the first-class heap section, and whether the parts add
    /// up.
    impl Serialize for Stats {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut st = s.serialize_struct("Stats", 40)?;
            st.serialize_field("classes", &Classes(self))?;
            st.serialize_field("arenas_allocated", &self.arenas.allocated)?;
            st.serialize_field("arenas_reclaimed", &self.arenas.reclaimed)?;
            st.serialize_field("arenas_current", &self.arenas.current)?;
            st.serialize_field("arenas_high_water", &self.arenas.high_water)?;
            st.serialize_field("pools_used", &self.pools.used)?;
            st.serialize_field("pools_abandoned", &self.pools.abandoned)?;
            st.serialize_field("pools_stashed", &self.pools.stashed)?;
            st.serialize_field("pools_free", &self.pools.free)?;
            st.serialize_field("pools_not_resident", &self.pools.decommitted)?;
            st.serialize_field("bytes_cold_in_used_pools", &self.pools.bytes_cold)?;
            st.serialize_field("bytes_in_blocks", &self.pools.bytes_in_blocks)?;
            st.serialize_field("bytes_available", &self.pools.bytes_available)?;
            st.serialize_field("bytes_unused_pools", &self.pools.bytes_unused)?;
            st.serialize_field("bytes_headers", &self.arenas.bytes_headers)?;
            st.serialize_field("bytes_quantization", &self.pools.bytes_quantization)?;
            st.serialize_field("bytes_alignment", &self.arenas.bytes_alignment)?;
            st.serialize_field("large_spans", &self.large.spans)?;
            st.serialize_field("large_bytes", &self.large.bytes)?;
            st.serialize_field("large_requested", &self.large.requested)?;
            st.serialize_field("large_cached", &self.large.cached)?;
            st.serialize_field("large_cache_hits", &self.large.cache_hits)?;
            st.serialize_field("bytes_metadata", &self.heaps.metadata_bytes)?;
            st.serialize_field("bytes_mapped", &self.os.mapped)?;
            st.serialize_field("bytes_mapped_peak", &self.os.mapped_peak)?;
            st.serialize_field("remote_frees", &self.heaps.remote_frees)?;
            st.serialize_field("pools_abandoned_total", &self.heaps.pools_abandoned_total)?;
            st.serialize_field("pools_adopted_total", &self.heaps.pools_adopted_total)?;
            st.serialize_field("heaps_live", &self.heaps.live)?;
            st.serialize_field("heaps_first_class", &self.heaps.first_class)?;
            st.serialize_field("mmap_calls", &self.os.mmap_calls)?;
            st.serialize_field("munmap_calls", &self.os.munmap_calls)?;
            st.serialize_field("madvise_calls", &self.os.madvise_calls)?;
            st.serialize_field("mremap_calls", &self.os.mremap_calls)?;
            st.serialize_field("munmap_failures", &self.os.munmap_failures)?;
            st.serialize_field("bytes_unreleased", &self.os.unreleased)?;
            st.serialize_field("first_class_heaps", &FirstClassHeaps(self))?;
            st.serialize_field("heap_occupancy", &self.occupancy[..self.occupancy_shown])?;
            st.serialize_field("arena_parts_match", &(self.arena_parts() == self.arenas.current * super::ARENA_SIZE))?;
            st.serialize_field("mapped_parts_match", &(self.mapped_parts() == self.os.mapped))?;
            st.end()
        }
    }
}

/// Prints the report to stderr without allocating.
pub fn print_to_stderr() {
    let s = stats();
    let mut out = crate::report::Stderr::new();
    let _ = fmt::write(&mut out, format_args!("{}", s));
}
