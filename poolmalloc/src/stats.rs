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
//! Nothing here allocates: the snapshot is a fixed-size struct and the report
//! is written through `core::fmt`.

use crate::arena::{self, Arena, ARENAS, ARENA_SIZE, POOLS_PER_ARENA};
use crate::abandoned::ABANDONED;
use crate::large;
use crate::os;
use crate::pool::{owner_id, state, LOCKED_OWNER, POOL_SIZE};
use crate::size_class::{class_size, MAX_CLASS_SIZE, NUM_CLASSES};
use crate::registry::{self, REGISTRY, USER_OWNER_BIT};
use core::fmt;
use crate::sync::atomic::Ordering::Relaxed;

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

/// Heaps the snapshot lists one by one; the rest are summed in one line.
pub const MAX_HEAPS_SHOWN: usize = 16;

/// A snapshot of the allocator. See the module docs for its guarantees.
#[derive(Clone, Debug)]
pub struct Stats {
    /// Per size class.
    pub classes: [ClassStats; NUM_CLASSES],
    /// Occupancy per heap: the first `heaps_shown` entries, in the order
    /// their pools are found; a last entry of [`Holder::Others`] sums the
    /// heaps beyond [`MAX_HEAPS_SHOWN`].
    pub heaps: [HeapOccupancy; MAX_HEAPS_SHOWN + 1],
    /// Entries of `heaps` in use.
    pub heaps_shown: usize,
    /// Arenas ever mapped.
    pub arenas_allocated: usize,
    /// Arenas ever unmapped.
    pub arenas_reclaimed: usize,
    /// Arenas mapped now.
    pub arenas_current: usize,
    /// Most arenas mapped at once.
    pub arenas_high_water: usize,
    /// Pools holding blocks of some class.
    pub pools_used: usize,
    /// Of those, pools whose thread exited (on the abandoned lists).
    pub pools_abandoned: usize,
    /// Empty pools held in heaps' stashes.
    pub pools_stashed: usize,
    /// Pools free in their arenas.
    pub pools_free: usize,
    /// Free pools whose pages have been decommitted.
    pub pools_decommitted: usize,
    /// Bytes of blocks in use.
    pub bytes_in_blocks: usize,
    /// Bytes of free blocks in used pools.
    pub bytes_available: usize,
    /// Bytes of pools not holding any class (free or stashed).
    pub bytes_unused_pools: usize,
    /// Bytes of arena headers (pool metadata).
    pub bytes_headers: usize,
    /// Bytes at the end of pools too small for one more block ("rounding").
    pub bytes_quantization: usize,
    /// Bytes between the header and the page where pool 0's blocks start.
    pub bytes_alignment: usize,
    /// Live large spans.
    pub large_spans: usize,
    /// Mapped bytes of live large spans.
    pub large_bytes: usize,
    /// Bytes requested by live large spans.
    pub large_requested: usize,
    /// Bytes of freed large spans kept in the cache.
    pub large_cached: usize,
    /// Large allocations served from the cache.
    pub large_cache_hits: usize,
    /// Bytes mapped for heap structures.
    pub bytes_metadata: usize,
    /// Bytes currently mapped, as counted by the OS layer at every call.
    pub bytes_mapped: usize,
    /// Most bytes mapped at once.
    pub bytes_mapped_peak: usize,
    /// Frees of blocks into pools owned by another thread.
    pub remote_frees: u64,
    /// Pools ever handed to the abandoned lists.
    pub pools_abandoned_total: u64,
    /// Pools ever adopted from the abandoned lists.
    pub pools_adopted_total: u64,
    /// Heaps in use (threads' and first-class heaps).
    pub heaps_live: usize,
    /// First-class heaps (`poolmalloc::Heap`) alive.
    pub heaps_first_class: usize,
    /// `mmap` calls.
    pub mmap_calls: usize,
    /// `munmap` calls.
    pub munmap_calls: usize,
    /// `madvise` calls.
    pub madvise_calls: usize,
    /// `mremap` calls.
    pub mremap_calls: usize,
    /// `munmap` calls the kernel refused.
    pub munmap_failures: usize,
    /// Bytes still mapped because `munmap` failed and nothing could reuse
    /// them (decommitted: address space only).
    pub bytes_unreleased: usize,
    /// Pools owned by first-class heaps.
    pub heap_pools: usize,
    /// Blocks in use in those pools.
    pub heap_blocks_in_use: usize,
    /// Bytes of those blocks.
    pub heap_bytes_in_blocks: usize,
}

impl Stats {
    /// Sum of the parts that make up the arenas.
    pub fn arena_parts(&self) -> usize {
        self.bytes_in_blocks
            + self.bytes_available
            + self.bytes_unused_pools
            + self.bytes_headers
            + self.bytes_quantization
            + self.bytes_alignment
    }

    /// Sum of everything that should make up `bytes_mapped`.
    pub fn mapped_parts(&self) -> usize {
        self.arena_parts() + self.large_bytes + self.large_cached + self.bytes_metadata + self.bytes_unreleased
    }

    /// Whether the parts add up to the mapped bytes.
    pub fn adds_up(&self) -> bool {
        self.arena_parts() == self.arenas_current * ARENA_SIZE && self.mapped_parts() == self.bytes_mapped
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
    fn add(&mut self, word: usize, st: u8, area: usize, live: usize) {
        let id = owner_id(word);
        let (key, holder) = if st == state::ABANDONED || id == 0 {
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
        let h = &mut self.heaps[i];
        h.pools += 1;
        h.pool_bytes += area;
        h.live_bytes += live;
    }
}

/// Takes a snapshot of the whole allocator.
pub fn stats() -> Stats {
    let mut s = Stats {
        classes: [ClassStats::default(); NUM_CLASSES],
        heaps: [HeapOccupancy::default(); MAX_HEAPS_SHOWN + 1],
        heaps_shown: 0,
        arenas_allocated: 0,
        arenas_reclaimed: 0,
        arenas_current: 0,
        arenas_high_water: 0,
        pools_used: 0,
        pools_abandoned: 0,
        pools_stashed: 0,
        pools_free: 0,
        pools_decommitted: 0,
        bytes_in_blocks: 0,
        bytes_available: 0,
        bytes_unused_pools: 0,
        bytes_headers: 0,
        bytes_quantization: 0,
        bytes_alignment: 0,
        large_spans: 0,
        large_bytes: 0,
        large_requested: 0,
        large_cached: 0,
        large_cache_hits: 0,
        bytes_metadata: 0,
        bytes_mapped: 0,
        bytes_mapped_peak: 0,
        remote_frees: 0,
        pools_abandoned_total: 0,
        pools_adopted_total: 0,
        heaps_live: 0,
        heaps_first_class: 0,
        mmap_calls: 0,
        munmap_calls: 0,
        madvise_calls: 0,
        mremap_calls: 0,
        munmap_failures: 0,
        bytes_unreleased: 0,
        heap_pools: 0,
        heap_blocks_in_use: 0,
        heap_bytes_in_blocks: 0,
    };
    for (c, cs) in s.classes.iter_mut().enumerate() {
        cs.block_size = class_size(c);
    }
    {
        let _r = REGISTRY.lock.guard();
        s.bytes_metadata = REGISTRY.meta_bytes.get();
        s.heaps_live = REGISTRY.live.get();
        s.heaps_first_class = REGISTRY.user_heaps.get();
        REGISTRY.for_each(|h| {
            s.remote_frees += h.counters.remote_frees.load(Relaxed);
            s.pools_adopted_total += h.counters.adopted.load(Relaxed);
        });
        s.remote_frees += registry::ORPHAN_REMOTE_FREES.load(Relaxed) as u64;
    }
    s.remote_frees += registry::LOCKED_HEAP.counters.remote_frees.load(Relaxed);
    {
        let _a = ABANDONED.lock.guard();
        s.pools_abandoned_total = ABANDONED.abandoned_total.get();
    }
    let header = core::mem::size_of::<Arena>();
    let header_area = arena::header_bytes().min(POOL_SIZE);
    let mut occupancy = Occupancy { ids: [0; MAX_HEAPS_SHOWN + 1], heaps: &mut s.heaps, shown: 0 };
    {
        let _g = ARENAS.lock.guard();
        s.arenas_allocated = ARENAS.allocated.get();
        s.arenas_reclaimed = ARENAS.reclaimed.get();
        s.arenas_current = ARENAS.count.get();
        s.arenas_high_water = ARENAS.high_water.get();
        ARENAS.for_each(|a: &Arena, free_mask, dirty_mask| {
            s.bytes_headers += header;
            s.bytes_alignment += header_area - header;
            for i in 0..POOLS_PER_ARENA {
                let p = &a.pools[i];
                let area = arena::pool_area(p);
                if free_mask & (1 << i) != 0 {
                    s.pools_free += 1;
                    if dirty_mask & (1 << i) == 0 {
                        s.pools_decommitted += 1;
                    }
                    s.bytes_unused_pools += area;
                    continue;
                }
                let st = p.state.load(Relaxed);
                if st == state::USED || st == state::ABANDONED || st == state::EMPTY {
                    let live = if st == state::EMPTY {
                        0
                    } else {
                        let class = (p.class.get() as usize).min(NUM_CLASSES - 1);
                        (p.used() as usize).min(area / class_size(class)) * class_size(class)
                    };
                    occupancy.add(p.owner.load(Relaxed), st, area, live);
                }
                match st {
                    // Counted with the first slice of its pool.
                    state::FOLLOWER => {}
                    state::USED | state::ABANDONED => {
                        if p.state.load(Relaxed) == state::ABANDONED {
                            s.pools_abandoned += 1;
                        }
                        s.pools_used += 1;
                        let class = (p.class.get() as usize).min(NUM_CLASSES - 1);
                        let bs = class_size(class);
                        let cap = area / bs;
                        let used = (p.used() as usize).min(cap);
                        let cs = &mut s.classes[class];
                        cs.pools += 1;
                        cs.blocks_in_use += used;
                        cs.blocks_available += cap - used;
                        s.bytes_in_blocks += used * bs;
                        s.bytes_available += (cap - used) * bs;
                        s.bytes_quantization += area - cap * bs;
                        if p.owner.load(Relaxed) & USER_OWNER_BIT != 0 {
                            s.heap_pools += 1;
                            s.heap_blocks_in_use += used;
                            s.heap_bytes_in_blocks += used * bs;
                        }
                    }
                    _ => {
                        s.pools_stashed += 1;
                        s.bytes_unused_pools += area;
                    }
                }
            }
        });
    }
    s.heaps_shown = occupancy.shown;
    s.large_spans = large::COUNTERS.live.load(Relaxed);
    s.large_bytes = large::COUNTERS.live_bytes.load(Relaxed);
    s.large_requested = large::COUNTERS.requested_bytes.load(Relaxed);
    s.large_cache_hits = large::COUNTERS.cache_hits.load(Relaxed);
    s.large_cached = large::cached_bytes();
    let c = &os::COUNTERS;
    s.bytes_mapped = c.mapped.load(Relaxed);
    s.bytes_mapped_peak = c.mapped_peak.load(Relaxed);
    s.mmap_calls = c.mmap_calls.load(Relaxed);
    s.munmap_calls = c.munmap_calls.load(Relaxed);
    s.madvise_calls = c.madvise_calls.load(Relaxed);
    s.mremap_calls = c.mremap_calls.load(Relaxed);
    s.munmap_failures = c.munmap_failures.load(Relaxed);
    s.bytes_unreleased = c.unreleased.load(Relaxed);
    s
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
        line(f, "# arenas allocated total", self.arenas_allocated)?;
        line(f, "# arenas reclaimed", self.arenas_reclaimed)?;
        line(f, "# arenas highwater mark", self.arenas_high_water)?;
        line(f, "# arenas allocated current", self.arenas_current)?;
        let mut label = crate::report::Line::new();
        label.push_u64(self.arenas_current as u64).push(" arenas * ").push_u64(ARENA_SIZE as u64).push(" bytes/arena");
        let arena_bytes = self.arenas_current * ARENA_SIZE;
        line(f, core::str::from_utf8(label.as_bytes()).unwrap_or("arenas"), arena_bytes)?;
        writeln!(f)?;
        line(f, "# bytes in allocated blocks", self.bytes_in_blocks)?;
        line(f, "# bytes in available blocks", self.bytes_available)?;
        let mut label = crate::report::Line::new();
        label
            .push_u64((self.pools_free + self.pools_stashed) as u64)
            .push(" unused pools * ")
            .push_u64(POOL_SIZE as u64)
            .push(" bytes");
        line(f, core::str::from_utf8(label.as_bytes()).unwrap_or("unused pools"), self.bytes_unused_pools)?;
        line(f, "# bytes lost to pool headers", self.bytes_headers)?;
        line(f, "# bytes lost to quantization", self.bytes_quantization)?;
        line(f, "# bytes lost to arena alignment", self.bytes_alignment)?;
        let parts = self.arena_parts();
        writeln!(
            f,
            "{:<36}= {:>21}  ({})",
            "Total",
            Sep(parts),
            if parts == arena_bytes { "matches arena bytes" } else { "DOES NOT MATCH arena bytes" }
        )?;
        writeln!(f)?;
        line(f, "# pools in use", self.pools_used)?;
        line(f, "# pools abandoned (thread exited)", self.pools_abandoned)?;
        line(f, "# pools free in arenas", self.pools_free)?;
        line(f, "#   of which not resident", self.pools_decommitted)?;
        line(f, "# pools stashed in heaps", self.pools_stashed)?;
        writeln!(f)?;
        line(f, "# large spans", self.large_spans)?;
        line(f, "# bytes in large spans", self.large_bytes)?;
        line(f, "# bytes requested in large spans", self.large_requested)?;
        line(f, "# bytes in cached large spans", self.large_cached)?;
        line(f, "# large cache hits", self.large_cache_hits)?;
        line(f, "# bytes of heap metadata", self.bytes_metadata)?;
        let mapped = self.mapped_parts();
        writeln!(
            f,
            "{:<36}= {:>21}  ({})",
            "Total mapped",
            Sep(self.bytes_mapped),
            if mapped == self.bytes_mapped { "matches the parts" } else { "DOES NOT MATCH the parts" }
        )?;
        line(f, "# peak bytes mapped", self.bytes_mapped_peak)?;
        writeln!(f)?;
        line(f, "# live heaps", self.heaps_live)?;
        line(f, "#   of which first-class heaps", self.heaps_first_class)?;
        line(f, "# cross-thread frees", self.remote_frees as usize)?;
        line(f, "# pools abandoned total", self.pools_abandoned_total as usize)?;
        line(f, "# pools adopted total", self.pools_adopted_total as usize)?;
        line(f, "# mmap calls", self.mmap_calls)?;
        line(f, "# munmap calls", self.munmap_calls)?;
        line(f, "# madvise calls", self.madvise_calls)?;
        line(f, "# mremap calls", self.mremap_calls)?;
        line(f, "# munmap calls refused", self.munmap_failures)?;
        line(f, "# bytes kept after a refused munmap", self.bytes_unreleased)?;
        writeln!(f)?;
        writeln!(f, "heap occupancy (bytes in use / bytes in the heap's pools)")?;
        writeln!(f, "heap              pools    bytes in pools      bytes in use  occupancy")?;
        for (i, h) in self.heaps[..self.heaps_shown].iter().enumerate() {
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
        line(f, "# first-class heaps", self.heaps_first_class)?;
        line(f, "# pools in first-class heaps", self.heap_pools)?;
        line(f, "# blocks in use in first-class heaps", self.heap_blocks_in_use)?;
        line(f, "# bytes in use in first-class heaps", self.heap_bytes_in_blocks)
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
            m.serialize_field("heaps", &t.heaps_first_class)?;
            m.serialize_field("pools", &t.heap_pools)?;
            m.serialize_field("blocks_in_use", &t.heap_blocks_in_use)?;
            m.serialize_field("bytes_in_blocks", &t.heap_bytes_in_blocks)?;
            m.end()
        }
    }

    /// The JSON form: every named figure, the classes that have pools, one
    /// object for the first-class heap section, and whether the parts add
    /// up.
    impl Serialize for Stats {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut st = s.serialize_struct("Stats", 39)?;
            st.serialize_field("classes", &Classes(self))?;
            st.serialize_field("arenas_allocated", &self.arenas_allocated)?;
            st.serialize_field("arenas_reclaimed", &self.arenas_reclaimed)?;
            st.serialize_field("arenas_current", &self.arenas_current)?;
            st.serialize_field("arenas_high_water", &self.arenas_high_water)?;
            st.serialize_field("pools_used", &self.pools_used)?;
            st.serialize_field("pools_abandoned", &self.pools_abandoned)?;
            st.serialize_field("pools_stashed", &self.pools_stashed)?;
            st.serialize_field("pools_free", &self.pools_free)?;
            st.serialize_field("pools_not_resident", &self.pools_decommitted)?;
            st.serialize_field("bytes_in_blocks", &self.bytes_in_blocks)?;
            st.serialize_field("bytes_available", &self.bytes_available)?;
            st.serialize_field("bytes_unused_pools", &self.bytes_unused_pools)?;
            st.serialize_field("bytes_headers", &self.bytes_headers)?;
            st.serialize_field("bytes_quantization", &self.bytes_quantization)?;
            st.serialize_field("bytes_alignment", &self.bytes_alignment)?;
            st.serialize_field("large_spans", &self.large_spans)?;
            st.serialize_field("large_bytes", &self.large_bytes)?;
            st.serialize_field("large_requested", &self.large_requested)?;
            st.serialize_field("large_cached", &self.large_cached)?;
            st.serialize_field("large_cache_hits", &self.large_cache_hits)?;
            st.serialize_field("bytes_metadata", &self.bytes_metadata)?;
            st.serialize_field("bytes_mapped", &self.bytes_mapped)?;
            st.serialize_field("bytes_mapped_peak", &self.bytes_mapped_peak)?;
            st.serialize_field("remote_frees", &self.remote_frees)?;
            st.serialize_field("pools_abandoned_total", &self.pools_abandoned_total)?;
            st.serialize_field("pools_adopted_total", &self.pools_adopted_total)?;
            st.serialize_field("heaps_live", &self.heaps_live)?;
            st.serialize_field("heaps_first_class", &self.heaps_first_class)?;
            st.serialize_field("mmap_calls", &self.mmap_calls)?;
            st.serialize_field("munmap_calls", &self.munmap_calls)?;
            st.serialize_field("madvise_calls", &self.madvise_calls)?;
            st.serialize_field("mremap_calls", &self.mremap_calls)?;
            st.serialize_field("munmap_failures", &self.munmap_failures)?;
            st.serialize_field("bytes_unreleased", &self.bytes_unreleased)?;
            st.serialize_field("first_class_heaps", &FirstClassHeaps(self))?;
            st.serialize_field("heap_occupancy", &self.heaps[..self.heaps_shown])?;
            st.serialize_field("arena_parts_match", &(self.arena_parts() == self.arenas_current * super::ARENA_SIZE))?;
            st.serialize_field("mapped_parts_match", &(self.mapped_parts() == self.bytes_mapped))?;
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
