//! Layer 4: size classes.
//!
//! Every small request is rounded up to one of [`NUM_CLASSES`] block sizes.
//! The table has two parts:
//!
//! * **small** classes in 16-byte steps from 16 to [`SMALL_MAX`] bytes, the
//!   32 classes of CPython's pymalloc (16 is the alignment C and Rust expect);
//! * **medium** classes in geometric steps, [`STEPS_PER_DOUBLING`] per power of
//!   two, up to [`MAX_CLASS_SIZE`]. Eight steps per doubling bound the
//!   rounding waste of a medium request by 12.5 %.
//!
//! Anything larger goes to the large path (layer 7).
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
pub const MAX_CLASS_SHIFT: usize = 15;
/// Largest request served from pools; larger requests use the large path.
pub const MAX_CLASS_SIZE: usize = 1 << MAX_CLASS_SHIFT;
/// Number of medium classes.
pub const NUM_MEDIUM: usize = (MAX_CLASS_SHIFT - SMALL_MAX.trailing_zeros() as usize) * STEPS_PER_DOUBLING;
/// Total number of size classes.
pub const NUM_CLASSES: usize = NUM_SMALL + NUM_MEDIUM;

const _: () = assert!(ALIGNMENT.is_power_of_two() && ALIGNMENT >= 16);
const _: () = assert!(SMALL_MAX % ALIGNMENT == 0 && SMALL_MAX >= 512);
const _: () = assert!(SMALL_MAX.is_power_of_two());
const _: () = assert!(MAX_CLASS_SIZE >= 16 * 1024);
const _: () = assert!(NUM_CLASSES <= 255, "class indices are stored in a byte");

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
const LOOKUP: [u8; LOOKUP_LEN] = build_lookup();

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
    // The lookup table picks the smallest class that fits every size.
    let mut size = 0;
    while size <= MAX_CLASS_SIZE {
        let c = LOOKUP[size.div_ceil(ALIGNMENT)] as usize;
        assert!(SIZES[c] as usize >= size);
        assert!(c == 0 || (SIZES[c - 1] as usize) < size);
        size += 1;
    }
};

/// Class for a request of `size` bytes. `size` must be at most
/// [`MAX_CLASS_SIZE`]; size 0 maps to the smallest class.
#[inline(always)]
pub fn class_of(size: usize) -> usize {
    debug_assert!(size <= MAX_CLASS_SIZE);
    CLASS_OF[size.div_ceil(ALIGNMENT)] as usize
}

/// Block size of class `c`.
#[inline(always)]
pub fn class_size(c: usize) -> usize {
    CLASS_SIZE[c] as usize
}

/// Smallest alignment shift kept in [`ALIGNED_CLASS`] (32 bytes).
const ALIGN_SHIFT_MIN: usize = 5;
/// Largest alignment served from pools (4 KiB). Pools start at addresses
/// aligned to at least this, so a class whose block size is a multiple of the
/// alignment yields only aligned blocks.
pub const MAX_POOL_ALIGN_SHIFT: usize = 12;
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
            if SIZES[c] as usize % align == 0 {
                next = c as u8;
            }
            t[r][c] = next;
        }
        r += 1;
    }
    t
}

/// `ALIGNED_CLASS[shift - 5][c]`: the smallest class at or above `c` whose
/// block size is a multiple of `1 << shift`.
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

    #[test]
    fn lookup_is_tight_for_every_size() {
        for size in 0..=MAX_CLASS_SIZE {
            let c = class_of(size);
            assert!(class_size(c) >= size);
            if c > 0 {
                assert!(class_size(c - 1) < size, "size {size} class {c}");
            }
        }
    }

    #[test]
    fn aligned_classes_are_multiples_of_the_alignment() {
        for shift in 0..=13 {
            let align = 1usize << shift;
            for size in (0..=MAX_CLASS_SIZE).step_by(7) {
                match class_of_aligned(size, align) {
                    Some(c) => {
                        assert!(class_size(c) >= size);
                        assert_eq!(class_size(c) % align.max(ALIGNMENT), 0);
                    }
                    None => assert!(shift > MAX_POOL_ALIGN_SHIFT || size > MAX_CLASS_SIZE / 2),
                }
            }
        }
    }
}
