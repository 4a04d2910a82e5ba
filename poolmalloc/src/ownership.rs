//! Layer 1: the ownership map.
//!
//! Answers "is this address ours, and is it in an arena or a large span?" in
//! O(1), without reading the memory at the address. It is a flat byte map
//! with one entry per 4 MiB granule of the user address space (the arena size,
//! so every arena is exactly one granule). The map lives in `.bss`: it costs
//! address space, and only the pages holding entries for granules poolmalloc
//! has used are ever touched (one 4 KiB page of the map covers 16 GiB).
//!
//! CPython 3.10+ uses a three-level radix tree for the same question; a flat
//! map is possible here because arenas are aligned to their size and large
//! spans to the granule, so each granule has a single owner.
//!
//! Writers: arena creation and release (layer 2) and large spans (layer 7),
//! which set entries before handing out a block and clear them before
//! unmapping. Readers: every `free`, on any thread. Entries are atomic bytes
//! read with relaxed ordering; a reader that races with a writer is looking
//! at a pointer whose block was not live, which is a caller bug that this map
//! then reports as "not ours".

use core::mem::MaybeUninit;
use crate::sync::atomic::{AtomicU8, Ordering::Relaxed};

/// log2 of the granule: one map entry per 4 MiB.
pub const GRANULE_SHIFT: usize = 22;
/// Bytes per granule.
pub const GRANULE: usize = 1 << GRANULE_SHIFT;

/// Bits of user address space covered by the map.
#[cfg(all(target_arch = "x86_64", not(feature = "portable"), not(miri)))]
pub const ADDRESS_BITS: usize = 47;
/// Bits of user address space covered by the map.
#[cfg(all(any(not(target_arch = "x86_64"), feature = "portable"), not(miri)))]
pub const ADDRESS_BITS: usize = 48;
/// Bits of address space covered by the map under Miri, whose allocations
/// sit in the low part of the address space: 1 TiB, a 256 KiB map.
#[cfg(miri)]
pub const ADDRESS_BITS: usize = 40;

/// Map entries: one per granule of the covered address space, except the
/// topmost granule. Leaving it out makes the bound a constant that is not a
/// power of two, so the range test compiles to one compare on the index
/// already computed (instead of a second shift of the address): one
/// instruction less on every `free`. Nothing of ours can be mapped in that
/// last granule (user stacks live there), and `mark` refuses it.
const ENTRIES: usize = (1 << (ADDRESS_BITS - GRANULE_SHIFT)) - 1;

/// The granule is not poolmalloc's.
pub const TAG_NONE: u8 = 0;
/// The granule is an arena of pools.
pub const TAG_ARENA: u8 = 1;
/// The granule starts a large span.
pub const TAG_LARGE_HEAD: u8 = 2;
/// The granule continues a large span that starts in an earlier granule.
pub const TAG_LARGE_TAIL: u8 = 3;
/// The granule is the region of secure mode's zero-size blocks.
pub const TAG_ZERO: u8 = 4;

struct Map(MaybeUninit<[AtomicU8; ENTRIES]>);
// SAFETY: the map is an array of atomics.
unsafe impl Sync for Map {}

// `zeroed` is a valid value of an array of atomic bytes (all TAG_NONE), and
// this form compiles to `.bss` without building the array at compile time.
static MAP: Map = Map(MaybeUninit::zeroed());

/// Entry `i` of the map. Only the one entry is borrowed, never the whole
/// map (which costs nothing at run time, and spares Miri from tracking a
/// borrow of the whole map on every lookup). Callers have checked `i`, so
/// the assertion compiles away.
#[inline(always)]
fn entry(i: usize) -> &'static AtomicU8 {
    assert!(i < ENTRIES);
    // SAFETY: `i` is in bounds, and MAP was zero-initialised, which is a
    // valid array of AtomicU8 (`MaybeUninit` is transparent).
    unsafe { &*(&raw const MAP.0).cast::<AtomicU8>().add(i) }
}

/// Under Miri, beside each tag, a pointer to the start of its granule
/// derived from the mapping that holds it (null when the tag is
/// `TAG_NONE`). A program may hand back a block through a pointer whose
/// provenance covers only the block (a `Box`'s, say); the allocator's own
/// accesses to headers, and to the block once it is free, go through the
/// mapping's provenance instead (see [`mapped`]).
#[cfg(miri)]
struct Bases(MaybeUninit<[crate::sync::atomic::AtomicPtr<u8>; ENTRIES]>);
// SAFETY: the table is an array of atomics.
#[cfg(miri)]
unsafe impl Sync for Bases {}
#[cfg(miri)]
static BASES: Bases = Bases(MaybeUninit::zeroed());

/// Entry `i` of the table (see [`entry`]).
#[cfg(miri)]
fn granule_ptr(i: usize) -> &'static crate::sync::atomic::AtomicPtr<u8> {
    assert!(i < ENTRIES);
    // SAFETY: `i` is in bounds, and BASES was zero-initialised, which is an
    // array of null pointers.
    unsafe { &*(&raw const BASES.0).cast::<crate::sync::atomic::AtomicPtr<u8>>().add(i) }
}

/// The pointer `p` with the provenance of the poolmalloc mapping that holds
/// it. Outside Miri this is `p` itself (provenance is not tracked at run
/// time, and the block pointer is as good a source as any). Under Miri it
/// is rebuilt from the pointer recorded for `p`'s granule when the granule
/// was marked, so that code reaching a block's header, or writing into a
/// block the program has given up, does not depend on how much of the
/// mapping the program's pointer may access. Addresses that are not ours
/// are returned as they are.
#[inline(always)]
pub fn mapped(p: *mut u8) -> *mut u8 {
    #[cfg(miri)]
    {
        let i = p.addr() >> GRANULE_SHIFT;
        if i < ENTRIES {
            let b = granule_ptr(i).load(crate::sync::atomic::Ordering::Acquire);
            if !b.is_null() {
                return b.with_addr(p.addr());
            }
        }
    }
    p
}

/// The pointer through which the allocator writes into a block of `size`
/// bytes that the program gives back at `p` (the free lists use its first
/// two words). Outside Miri, `p`. Under Miri, `p` too when it reaches those
/// two words: a block freed while the program still holds a borrow of it
/// (a `Box` passed by value and dropped by the callee) may be written only
/// through the program's pointer, which Miri tracks as derived from that
/// borrow. A smaller block's pointer (a `Box<u8>`'s) reaches only its own
/// bytes, so the mapping's pointer is used for it instead (see [`mapped`]).
#[inline(always)]
pub fn freed_block(p: *mut u8, size: usize) -> *mut u8 {
    #[cfg(miri)]
    if size < 2 * core::mem::size_of::<usize>() {
        return mapped(p);
    }
    let _ = size;
    p
}

/// The tag of the granule holding `addr`. Addresses beyond the covered
/// address space (and null) are never ours.
#[inline(always)]
pub fn tag_of(addr: usize) -> u8 {
    let i = addr >> GRANULE_SHIFT;
    if i < ENTRIES {
        entry(i).load(Relaxed)
    } else {
        TAG_NONE
    }
}

/// Marks the granules of `[base, base + len)` as ours: the first with `head`,
/// the rest with `tail`. `base` must be granule-aligned and point at the
/// start of the mapping (its provenance is what [`mapped`] hands out under
/// Miri). Returns `false` (marking nothing) if the range is outside the
/// covered address space.
pub fn mark(base: *mut u8, len: usize, head: u8, tail: u8) -> bool {
    debug_assert!(base.addr() % GRANULE == 0 && len > 0);
    let first = base.addr() >> GRANULE_SHIFT;
    let Some(end) = base.addr().checked_add(len) else { return false };
    let last = (end - 1) >> GRANULE_SHIFT;
    if last >= ENTRIES {
        return false;
    }
    #[cfg(miri)]
    for i in first..=last {
        granule_ptr(i).store(base.wrapping_add((i - first) * GRANULE), crate::sync::atomic::Ordering::Release);
    }
    entry(first).store(head, Relaxed);
    for i in first + 1..=last {
        entry(i).store(tail, Relaxed);
    }
    true
}

/// Clears the granules of `[base, base + len)`.
pub fn unmark(base: usize, len: usize) {
    let first = base >> GRANULE_SHIFT;
    let last = (base + len - 1) >> GRANULE_SHIFT;
    for i in first..=last.min(ENTRIES - 1) {
        entry(i).store(TAG_NONE, Relaxed);
        #[cfg(miri)]
        granule_ptr(i).store(core::ptr::null_mut(), crate::sync::atomic::Ordering::Release);
    }
}

/// For a pointer into a large span, the granule-aligned start of that span
/// (with the span's provenance, see [`mapped`]), found by walking back over
/// tail granules. `None` if not in a large span.
pub fn large_span_base(p: *mut u8) -> Option<*mut u8> {
    let mut i = p.addr() >> GRANULE_SHIFT;
    if i >= ENTRIES {
        return None;
    }
    loop {
        match entry(i).load(Relaxed) {
            TAG_LARGE_HEAD => return Some(mapped(p.with_addr(i << GRANULE_SHIFT))),
            TAG_LARGE_TAIL if i > 0 => i -= 1,
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_and_out_of_range_addresses_are_not_ours() {
        assert_eq!(tag_of(0), TAG_NONE);
        assert_eq!(tag_of(usize::MAX), TAG_NONE);
        assert_eq!(tag_of(1 << 60), TAG_NONE);
        // The program image lies far from every mapping of ours. Not under
        // Miri, which places a static, allocated at its first use, among
        // the other allocations, the emulated mappings included.
        static IMAGE: u64 = 0;
        #[cfg(not(miri))]
        assert_eq!(tag_of(&IMAGE as *const u64 as usize), TAG_NONE);
        let _ = &IMAGE;
        // A thread stack is a mapping of its own. It can never lie in an
        // arena (arenas fill their granules), but it can share a granule
        // with the unused end of a large span that other tests made, so
        // only the arena tag is ruled out.
        let stack = 0u64;
        assert_ne!(tag_of(&stack as *const u64 as usize), TAG_ARENA);
    }

    #[test]
    fn mark_and_unmark_a_span() {
        // A granule-aligned range far from anything this test process maps
        // (reduced into the smaller map under Miri). Only map entries are
        // touched, never the memory.
        let base = (0x5a5a_0000_0000usize % (ENTRIES << GRANULE_SHIFT)) & !(GRANULE - 1);
        let at = core::ptr::without_provenance_mut::<u8>;
        assert!(mark(at(base), 3 * GRANULE + 5, TAG_LARGE_HEAD, TAG_LARGE_TAIL));
        assert_eq!(tag_of(base), TAG_LARGE_HEAD);
        assert_eq!(tag_of(base + GRANULE + 17), TAG_LARGE_TAIL);
        assert_eq!(tag_of(base + 3 * GRANULE + 4), TAG_LARGE_TAIL);
        assert_eq!(tag_of(base + 4 * GRANULE), TAG_NONE);
        assert_eq!(large_span_base(at(base + 2 * GRANULE + 9)).map(|p| p.addr()), Some(base));
        unmark(base, 3 * GRANULE + 5);
        assert_eq!(tag_of(base + GRANULE), TAG_NONE);
        assert_eq!(large_span_base(at(base + GRANULE)), None);
        assert!(!mark(at(usize::MAX & !(GRANULE - 1)), GRANULE, TAG_ARENA, TAG_ARENA));
    }

    #[test]
    fn a_real_mapping_is_found_and_keeps_its_provenance() {
        let len = 2 * GRANULE;
        let base = crate::os::map_aligned(len, GRANULE);
        assert!(!base.is_null());
        assert!(mark(base, len, TAG_LARGE_HEAD, TAG_LARGE_TAIL));
        let inside = base.wrapping_add(GRANULE + 4096 + 3);
        assert_eq!(tag_of(inside.addr()), TAG_LARGE_TAIL);
        let found = large_span_base(inside).expect("in a span");
        assert_eq!(found.addr(), base.addr());
        let m = mapped(inside);
        assert_eq!(m.addr(), inside.addr());
        // SAFETY: both point into the live mapping; under Miri this checks
        // that the pointers carry the mapping's provenance.
        unsafe {
            m.write(7);
            assert_eq!(found.wrapping_add(GRANULE + 4096 + 3).read(), 7);
        }
        unmark(base.addr(), len);
        assert_eq!(tag_of(inside.addr()), TAG_NONE);
        assert_eq!(mapped(inside), inside);
        // SAFETY: our test mapping, no longer used.
        assert!(unsafe { crate::os::unmap(base, len) });
    }
}
