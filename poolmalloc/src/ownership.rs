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
use core::sync::atomic::{AtomicU8, Ordering::Relaxed};

/// log2 of the granule: one map entry per 4 MiB.
pub const GRANULE_SHIFT: usize = 22;
/// Bytes per granule.
pub const GRANULE: usize = 1 << GRANULE_SHIFT;

/// Bits of user address space covered by the map.
#[cfg(target_arch = "x86_64")]
pub const ADDRESS_BITS: usize = 47;
/// Bits of user address space covered by the map.
#[cfg(not(target_arch = "x86_64"))]
pub const ADDRESS_BITS: usize = 48;

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

struct Map(MaybeUninit<[AtomicU8; ENTRIES]>);
// SAFETY: the map is an array of atomics.
unsafe impl Sync for Map {}

// `zeroed` is a valid value of an array of atomic bytes (all TAG_NONE), and
// this form compiles to `.bss` without building the array at compile time.
static MAP: Map = Map(MaybeUninit::zeroed());

#[inline(always)]
fn entries() -> &'static [AtomicU8; ENTRIES] {
    // SAFETY: MAP was zero-initialised, which is a valid array of AtomicU8.
    unsafe { MAP.0.assume_init_ref() }
}

/// The tag of the granule holding `addr`. Addresses beyond the covered
/// address space (and null) are never ours.
#[inline(always)]
pub fn tag_of(addr: usize) -> u8 {
    let i = addr >> GRANULE_SHIFT;
    if i < ENTRIES {
        entries()[i].load(Relaxed)
    } else {
        TAG_NONE
    }
}

/// Marks the granules of `[base, base + len)` as ours: the first with `head`,
/// the rest with `tail`. `base` must be granule-aligned. Returns `false`
/// (marking nothing) if the range is outside the covered address space.
pub fn mark(base: usize, len: usize, head: u8, tail: u8) -> bool {
    debug_assert!(base % GRANULE == 0 && len > 0);
    let first = base >> GRANULE_SHIFT;
    let Some(end) = base.checked_add(len) else { return false };
    let last = (end - 1) >> GRANULE_SHIFT;
    if last >= ENTRIES {
        return false;
    }
    let map = entries();
    map[first].store(head, Relaxed);
    for e in &map[first + 1..=last] {
        e.store(tail, Relaxed);
    }
    true
}

/// Clears the granules of `[base, base + len)`.
pub fn unmark(base: usize, len: usize) {
    let first = base >> GRANULE_SHIFT;
    let last = (base + len - 1) >> GRANULE_SHIFT;
    let map = entries();
    for e in &map[first..=last.min(ENTRIES - 1)] {
        e.store(TAG_NONE, Relaxed);
    }
}

/// For an address in a large span, the granule-aligned start of that span,
/// found by walking back over tail granules. `None` if not in a large span.
pub fn large_span_base(addr: usize) -> Option<usize> {
    let mut i = addr >> GRANULE_SHIFT;
    if i >= ENTRIES {
        return None;
    }
    let map = entries();
    loop {
        match map[i].load(Relaxed) {
            TAG_LARGE_HEAD => return Some(i << GRANULE_SHIFT),
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
        let stack = 0u64;
        assert_eq!(tag_of(&stack as *const u64 as usize), TAG_NONE);
    }

    #[test]
    fn mark_and_unmark_a_span() {
        // A granule-aligned range far from anything this test process maps.
        let base = 0x5a5a_0000_0000usize & !(GRANULE - 1);
        assert!(mark(base, 3 * GRANULE + 5, TAG_LARGE_HEAD, TAG_LARGE_TAIL));
        assert_eq!(tag_of(base), TAG_LARGE_HEAD);
        assert_eq!(tag_of(base + GRANULE + 17), TAG_LARGE_TAIL);
        assert_eq!(tag_of(base + 3 * GRANULE + 4), TAG_LARGE_TAIL);
        assert_eq!(tag_of(base + 4 * GRANULE), TAG_NONE);
        assert_eq!(large_span_base(base + 2 * GRANULE + 9), Some(base));
        unmark(base, 3 * GRANULE + 5);
        assert_eq!(tag_of(base + GRANULE), TAG_NONE);
        assert_eq!(large_span_base(base + GRANULE), None);
        assert!(!mark(usize::MAX & !(GRANULE - 1), GRANULE, TAG_ARENA, TAG_ARENA));
    }
}
