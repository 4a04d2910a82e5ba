//! Layer 4: size classes.
//!
//! Every small request is rounded up to one of [`NUM_CLASSES`] block sizes.
//! The table has two parts:
//!
//! * **small** classes in 16-byte steps from 16 to [`SMALL_MAX`] bytes, the
//!   32 classes of CPython's pymalloc (16 is the alignment C and Rust expect);
//! * **medium** classes in geometric steps, [`STEPS_PER_DOUBLING`] per power of
//!   two, up to [`MAX_CLASS_SIZE`] (1 MiB). Eight steps per doubling bound the
//!   rounding waste of a medium request by 12.5 %.
//!
//! A pool of a class up to [`SLICE_CLASS_MAX`] (32 KiB) is one 64 KiB slice
//! of an arena. A pool of a larger class is a run of [`slices`]`(c)`
//! contiguous slices, chosen so that the blocks fill the run to within
//! 1/16 (a 40 KiB class: 2 slices, 3 blocks; a 1 MiB class: 16 slices, one
//! block). Those pools start on a slice boundary, or on a larger power of two
//! where the block size is one ([`run_align`]), so every block of such a class
//! is aligned to the largest power of two dividing its size.
//!
//! Why 1 MiB: a block of a few hundred KiB is still allocated and freed at
//! the rate of small ones by real programs (network buffers, the item arrays
//! of large Python lists and dicts), and a mapping per block costs system
//! calls on every reuse and one of the kernel's 65,530 map entries per live
//! block. At 1 MiB a run is a quarter of an arena, so runs still pack into
//! arenas with little loss, and a block above that is big enough that the
//! page faults of touching it dominate what a mapping of its own costs.
//!
//! Anything larger goes to the huge path (layer 7).
//!
//! The size-to-class lookup is a single load from a byte table indexed by
//! `(size + 15) / 16`: no branch and no loop. All tables are built by `const`
//! evaluation and their invariants are checked at compile time.
//!
//! This module is pure data; it is safe to use from any thread.

/// Alignment of every block handed out by a pool, and the small-class step.
pub const ALIGNMENT: usize = 16;
/// Largest size served by the 16-byte-step small classes.
pub const SMALL_MAX: usize = 512;
/// Number of small classes.
pub const NUM_SMALL: usize = SMALL_MAX / ALIGNMENT;
/// Medium classes per power of two.
pub const STEPS_PER_DOUBLING: usize = 8;
/// log2 of the largest class size.
pub const MAX_CLASS_SHIFT: usize = 20;
/// Largest request served from pools; larger requests use the huge path.
pub const MAX_CLASS_SIZE: usize = 1 << MAX_CLASS_SHIFT;
/// log2 of an arena slice, the unit pools are made of.
pub const SLICE_SHIFT: usize = 16;
/// Bytes per arena slice.
pub const SLICE: usize = 1 << SLICE_SHIFT;
/// Largest class whose pool is a single slice (holding at least two blocks).
pub const SLICE_CLASS_MAX: usize = SLICE / 2;
/// Most slices in one pool.
pub const MAX_POOL_SLICES: usize = 16;
/// Number of medium classes.
pub const NUM_MEDIUM: usize = (MAX_CLASS_SHIFT - SMALL_MAX.trailing_zeros() as usize) * STEPS_PER_DOUBLING;
/// Total number of size classes.
pub const NUM_CLASSES: usize = NUM_SMALL + NUM_MEDIUM;

const _: () = assert!(ALIGNMENT.is_power_of_two() && ALIGNMENT >= 16);
const _: () = assert!(SMALL_MAX % ALIGNMENT == 0 && SMALL_MAX >= 512);
const _: () = assert!(SMALL_MAX.is_power_of_two());
const _: () = assert!(MAX_CLASS_SIZE >= 1 << 20, "medium blocks up to at least 1 MiB come from pools");
const _: () = assert!(NUM_CLASSES <= 128, "class indices are stored in a byte, and remote hints are 128 bits");
const _: () = assert!(MAX_CLASS_SIZE <= MAX_POOL_SLICES * SLICE);

/// Block size of class `c`, computed without tables (used to build them).
const fn compute_class_size(c: usize) -> usize {
    if c < NUM_SMALL {
        (c + 1) * ALIGNMENT
    } else {
        let j = c - NUM_SMALL;
        let shift = SMALL_MAX.trailing_zeros() as usize + j / STEPS_PER_DOUBLING;
        let step = (1usize << shift) / STEPS_PER_DOUBLING;
        (1usize << shift) + (j % STEPS_PER_DOUBLING + 1) * step
    }
}

const fn build_sizes() -> [u32; NUM_CLASSES] {
    let mut t = [0u32; NUM_CLASSES];
    let mut c = 0;
    while c < NUM_CLASSES {
        t[c] = compute_class_size(c) as u32;
        c += 1;
    }
    t
}

/// Block size of each class.
pub static CLASS_SIZE: [u32; NUM_CLASSES] = build_sizes();

/// Shift of the magic numbers in the division table. Offsets in a pool are below 2^21 and block
/// sizes below 2^21, so `offset * magic` stays below 2^64 and the quotient
/// it gives is exact for every offset (the error term, offset × (magic ×
/// size − 2^42) ÷ size, stays below 1 ÷ size).
pub const MAGIC_SHIFT: u32 = 42;

/// Length of the division tables: a power of two at least [`NUM_CLASSES`],
/// so that a class index is brought in range by one mask, not a compare.
const DIV_LEN: usize = NUM_CLASSES.next_power_of_two();

/// Per class, ⌈2^42 ÷ size⌉ and the size: `offset * magic >> 42` is
/// `offset / size` without a division. Entries past the last class repeat
/// it; no pool has such a class.
static DIV_TABLE: [(u64, u64); DIV_LEN] = build_div();

const fn build_div() -> [(u64, u64); DIV_LEN] {
    let mut m = [(0u64, 0u64); DIV_LEN];
    let mut c = 0;
    while c < DIV_LEN {
        let s = compute_class_size(if c < NUM_CLASSES { c } else { NUM_CLASSES - 1 }) as u64;
        m[c] = ((1u64 << MAGIC_SHIFT).div_ceil(s), s);
        c += 1;
    }
    m
}

/// Whether `offset` (below 2^21) is a multiple of class `c`'s block size.
#[inline]
pub fn is_multiple(offset: usize, c: usize) -> bool {
    let (magic, size) = DIV_TABLE[c & (DIV_LEN - 1)];
    let q = (offset as u64 * magic) >> MAGIC_SHIFT;
    q * size == offset as u64
}
const SIZES: [u32; NUM_CLASSES] = build_sizes();

/// Number of entries in the lookup table: one per 16-byte granule, plus 0.
const LOOKUP_LEN: usize = MAX_CLASS_SIZE / ALIGNMENT + 1;

const fn build_lookup() -> [u8; LOOKUP_LEN] {
    let mut t = [0u8; LOOKUP_LEN];
    let mut i = 1;
    let mut c = 0;
    while i < LOOKUP_LEN {
        let size = i * ALIGNMENT;
        while (SIZES[c] as usize) < size {
            c += 1;
        }
        t[i] = c as u8;
        i += 1;
    }
    t
}

static CLASS_OF: [u8; LOOKUP_LEN] = build_lookup();

// Compile-time checks of the table invariants.
const _: () = {
    let mut c = 0;
    while c < NUM_CLASSES {
        let s = SIZES[c] as usize;
        assert!(s % ALIGNMENT == 0, "every class is a multiple of the alignment");
        if c > 0 {
            let prev = SIZES[c - 1] as usize;
            assert!(s > prev, "classes strictly increase");
            if prev >= SMALL_MAX {
                // Worst request for class c is prev + 1; its waste must be at
                // most 12.5 % of the request.
                assert!(8 * (s - (prev + 1)) <= prev + 1, "medium rounding waste above 12.5%");
            } else {
                assert!(s - prev == ALIGNMENT, "small classes step by 16 bytes");
            }
        }
        c += 1;
    }
    assert!(SIZES[NUM_SMALL - 1] as usize == SMALL_MAX);
    assert!(SIZES[NUM_CLASSES - 1] as usize == MAX_CLASS_SIZE);
    // The lookup table picks the smallest class that fits every size: all
    // sizes of a 16-byte granule share an entry, so checking the granule's
    // first and last size covers them all.
    let lookup = build_lookup();
    let mut g = 1;
    while g < LOOKUP_LEN {
        let c = lookup[g] as usize;
        assert!(SIZES[c] as usize >= g * ALIGNMENT);
        assert!(c == 0 || (SIZES[c - 1] as usize) < (g - 1) * ALIGNMENT + 1);
        g += 1;
    }
};

/// Number of classes whose pool is a single slice.
pub const NUM_SINGLE: usize = {
    let mut c = 0;
    while c < NUM_CLASSES && compute_class_size(c) <= SLICE_CLASS_MAX {
        c += 1;
    }
    c
};

/// Slices of a pool of class `c`: one up to [`SLICE_CLASS_MAX`]; above it,
/// the fewest slices (at least enough for one block) whose tail after the
/// last whole block is at most 1/16 of the run, or failing that the fewest
/// that hold one block.
const fn compute_slices(c: usize) -> usize {
    let bs = compute_class_size(c);
    if bs <= SLICE_CLASS_MAX {
        return 1;
    }
    let least = bs.div_ceil(SLICE);
    let mut k = least;
    while k <= MAX_POOL_SLICES {
        let area = k * SLICE;
        if (area % bs) * 16 <= area {
            return k;
        }
        k += 1;
    }
    least
}

/// Alignment, in slices, of the first slice of a multi-slice pool of class
/// `c`: the largest power of two dividing the block size, in slices (at
/// least 1, at most [`MAX_POOL_SLICES`]).
const fn compute_run_align(c: usize) -> usize {
    let bs = compute_class_size(c);
    if bs <= SLICE_CLASS_MAX {
        return 1;
    }
    let low = 1usize << bs.trailing_zeros();
    let a = low / SLICE;
    if a == 0 {
        1
    } else if a > MAX_POOL_SLICES {
        MAX_POOL_SLICES
    } else {
        a
    }
}

const fn build_slices(run_align: bool) -> [u8; NUM_CLASSES] {
    let mut t = [0u8; NUM_CLASSES];
    let mut c = 0;
    while c < NUM_CLASSES {
        t[c] = if run_align { compute_run_align(c) } else { compute_slices(c) } as u8;
        c += 1;
    }
    t
}

static SLICES: [u8; NUM_CLASSES] = build_slices(false);
static RUN_ALIGN: [u8; NUM_CLASSES] = build_slices(true);

const _: () = {
    assert!(NUM_SINGLE == 80, "classes 16 B to 32 KiB keep their single-slice pools");
    let mut c = 0;
    while c < NUM_CLASSES {
        let k = compute_slices(c);
        let bs = compute_class_size(c);
        assert!(k >= 1 && k <= MAX_POOL_SLICES && k * SLICE >= bs);
        assert!((c < NUM_SINGLE) == (k == 1 && bs <= SLICE_CLASS_MAX));
        assert!(compute_run_align(c).is_power_of_two() && compute_run_align(c) <= MAX_POOL_SLICES);
        // A run aligned this way fits an arena's 63 usable slices.
        assert!(compute_run_align(c) + k <= 64);
        c += 1;
    }
};

/// Slices in a pool of class `c` (1 for every class up to 32 KiB).
#[inline]
pub fn slices(c: usize) -> usize {
    SLICES[c] as usize
}

/// Alignment in slices of the first slice of a pool of class `c`.
#[inline]
pub fn run_align(c: usize) -> usize {
    RUN_ALIGN[c] as usize
}

/// Class for a request of `size` bytes. `size` must be at most
/// [`MAX_CLASS_SIZE`]; size 0 maps to the smallest class.
#[inline(always)]
pub fn class_of(size: usize) -> usize {
    debug_assert!(size <= MAX_CLASS_SIZE);
    CLASS_OF[size.div_ceil(ALIGNMENT)] as usize
}

/// The class of a request of `below + 1` bytes (`below` < the largest class
/// size): [`class_of`] written so that the `+ 1` folds into the table
/// address, for a caller that tested `size - 1` already.
#[inline(always)]
pub fn class_of_one_more(below: usize) -> usize {
    debug_assert!(below < MAX_CLASS_SIZE);
    CLASS_OF[(below >> ALIGNMENT.trailing_zeros()) + 1] as usize
}

/// Block size of class `c`.
#[inline(always)]
pub fn class_size(c: usize) -> usize {
    CLASS_SIZE[c] as usize
}

/// Smallest alignment shift kept in [`ALIGNED_CLASS`] (32 bytes).
const ALIGN_SHIFT_MIN: usize = 5;
/// Alignment (log2) that every single-slice pool's blocks area starts on:
/// 16 KiB (a slice boundary, or the end of the arena header, which is rounded
/// up to it).
pub const SLICE_POOL_ALIGN_SHIFT: usize = 14;
/// Largest alignment served from pools (1 MiB, the largest class): a
/// multi-slice pool starts on a multiple of the largest power of two dividing
/// its block size ([`run_align`]), so a class whose block size is a multiple
/// of the alignment yields only aligned blocks.
pub const MAX_POOL_ALIGN_SHIFT: usize = MAX_CLASS_SHIFT;
const ALIGN_ROWS: usize = MAX_POOL_ALIGN_SHIFT - ALIGN_SHIFT_MIN + 1;
/// Marks "no class qualifies" in [`ALIGNED_CLASS`].
const NO_CLASS: u8 = u8::MAX;

const fn build_aligned() -> [[u8; NUM_CLASSES]; ALIGN_ROWS] {
    let mut t = [[NO_CLASS; NUM_CLASSES]; ALIGN_ROWS];
    let mut r = 0;
    while r < ALIGN_ROWS {
        let align = 1usize << (r + ALIGN_SHIFT_MIN);
        let mut c = NUM_CLASSES;
        let mut next = NO_CLASS;
        while c > 0 {
            c -= 1;
            // Single-slice pools start on 16 KiB; multi-slice pools on their
            // block size's largest power-of-two divisor.
            let start_ok = c >= NUM_SINGLE || r + ALIGN_SHIFT_MIN <= SLICE_POOL_ALIGN_SHIFT;
            if SIZES[c] as usize % align == 0 && start_ok {
                next = c as u8;
            }
            t[r][c] = next;
        }
        r += 1;
    }
    t
}

/// `ALIGNED_CLASS[shift - 5][c]`: the smallest class at or above `c` whose
/// blocks are all aligned to `1 << shift`.
static ALIGNED_CLASS: [[u8; NUM_CLASSES]; ALIGN_ROWS] = build_aligned();

/// Class for `size` bytes aligned to `align` (a power of two), or `None` when
/// no pool class can serve it and the large path must.
#[inline]
pub fn class_of_aligned(size: usize, align: usize) -> Option<usize> {
    debug_assert!(align.is_power_of_two());
    if size > MAX_CLASS_SIZE {
        return None;
    }
    let c = class_of(size);
    if align <= ALIGNMENT {
        return Some(c);
    }
    let shift = align.trailing_zeros() as usize;
    if shift > MAX_POOL_ALIGN_SHIFT {
        return None;
    }
    let a = ALIGNED_CLASS[shift - ALIGN_SHIFT_MIN][c];
    if a == NO_CLASS {
        None
    } else {
        Some(a as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_of_one_more_is_class_of_the_next_size() {
        let step = if cfg!(miri) { 997 } else { 1 };
        for below in (0..MAX_CLASS_SIZE).step_by(step) {
            assert_eq!(class_of_one_more(below), class_of(below + 1), "{below}");
        }
    }

    #[test]
    fn magic_division_is_exact_in_every_pool() {
        for c in 0..NUM_CLASSES {
            let size = class_size(c);
            let area = slices(c) * (1 << SLICE_SHIFT);
            assert!(area <= 1 << 21, "class {c}: a pool of {area} bytes");
            // Under Miri, about 200 offsets per class (every offset takes
            // far too long there).
            let step = if cfg!(miri) {
                (area / 200) | 1
            } else if size >= 4096 {
                16
            } else {
                1
            };
            let mut off = 0;
            while off < area {
                assert_eq!(is_multiple(off, c), off % size == 0, "class {c}, offset {off}");
                off += step;
            }
        }
    }

    #[test]
    fn small_classes_are_pymalloc_classes() {
        for c in 0..NUM_SMALL {
            assert_eq!(class_size(c), 16 * (c + 1));
        }
        assert_eq!(class_of(0), 0);
        assert_eq!(class_of(1), 0);
        assert_eq!(class_of(16), 0);
        assert_eq!(class_of(17), 1);
        assert_eq!(class_of(512), NUM_SMALL - 1);
    }

    #[test]
    fn medium_classes_are_geometric() {
        assert_eq!(class_size(NUM_SMALL), 576);
        assert_eq!(class_size(NUM_SMALL + 7), 1024);
        assert_eq!(class_size(NUM_SMALL + 8), 1152);
        assert_eq!(class_size(NUM_CLASSES - 1), MAX_CLASS_SIZE);
        assert_eq!(class_of(513), NUM_SMALL);
        assert_eq!(class_of(MAX_CLASS_SIZE), NUM_CLASSES - 1);
    }

    /// Sizes to check: every size up to 64 KiB, then the first and last
    /// size of each 16-byte granule (all sizes of a granule share an
    /// entry). Miri checks a sparser set.
    fn sizes() -> impl Iterator<Item = usize> {
        let dense = if cfg!(miri) { 4096 } else { 65536 };
        let step = if cfg!(miri) { 4093 } else { ALIGNMENT };
        (0..=dense).chain((dense..MAX_CLASS_SIZE).step_by(step).flat_map(|g| [g + 1, g + ALIGNMENT]))
    }

    #[test]
    fn lookup_is_tight_for_every_size() {
        for size in sizes() {
            let c = class_of(size);
            assert!(class_size(c) >= size);
            if c > 0 {
                assert!(class_size(c - 1) < size, "size {size} class {c}");
            }
        }
    }

    #[test]
    fn medium_pools_are_runs_of_slices_filled_to_within_a_sixteenth() {
        assert_eq!(NUM_SINGLE, 80);
        assert_eq!(class_size(NUM_SINGLE - 1), SLICE_CLASS_MAX);
        for c in 0..NUM_CLASSES {
            let (bs, k) = (class_size(c), slices(c));
            if c < NUM_SINGLE {
                assert_eq!(k, 1);
                continue;
            }
            let area = k * SLICE;
            assert!(area >= bs, "class {c}");
            assert!(area % bs <= area / 16 || k == bs.div_ceil(SLICE), "class {c}: {k} slices for {bs} B");
            assert_eq!(run_align(c) * SLICE % (1 << bs.trailing_zeros()).min(MAX_POOL_SLICES * SLICE), 0);
        }
        // 40 KiB: two slices, three blocks; 1 MiB: sixteen slices, one block.
        let c40 = class_of(40 * 1024);
        assert_eq!((class_size(c40), slices(c40)), (40 * 1024, 2));
        assert_eq!(slices(NUM_CLASSES - 1), 16);
        assert_eq!(run_align(NUM_CLASSES - 1), 16);
    }

    #[test]
    fn aligned_classes_are_multiples_of_the_alignment() {
        let step = if cfg!(miri) { 40_961 } else { 7 };
        for shift in 0..=MAX_POOL_ALIGN_SHIFT + 1 {
            let align = 1usize << shift;
            for size in (0..=MAX_CLASS_SIZE).step_by(step) {
                match class_of_aligned(size, align) {
                    Some(c) => {
                        assert!(class_size(c) >= size);
                        assert_eq!(class_size(c) % align.max(ALIGNMENT), 0);
                        if shift > SLICE_POOL_ALIGN_SHIFT {
                            assert!(c >= NUM_SINGLE, "alignment {align} needs a multi-slice pool");
                            assert!(run_align(c) * SLICE >= align.min(MAX_POOL_SLICES * SLICE));
                        }
                    }
                    None => assert!(shift > MAX_POOL_ALIGN_SHIFT, "size {size} align {align}"),
                }
            }
        }
        // memalign(8192, 64) and friends stay in single-slice pools.
        assert_eq!(class_of_aligned(64, 8192).map(class_size), Some(8192));
        assert_eq!(class_of_aligned(64, 1 << 16).map(class_size), Some(1 << 16));
    }
}
