//! Property test against a shadow model: random sequences of alloc,
//! zeroed alloc, realloc and free over many sizes and alignments, through
//! both Rust fronts. Every live block is filled with a pattern derived from
//! its id and checked before it is freed or resized; no two live blocks may
//! overlap; every alignment must hold.

use poolmalloc::{LockedPoolMalloc, PoolMalloc};
use proptest::prelude::*;
use std::alloc::{GlobalAlloc, Layout};
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
enum Op {
    Alloc { size: usize, align_shift: u32, zeroed: bool },
    Realloc { pick: usize, size: usize },
    Free { pick: usize },
}

fn size_strategy() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 1usize..=64,
        6 => 65usize..=1024,
        3 => 1025usize..=40_000,
        1 => 40_001usize..=3_000_000,
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (size_strategy(), prop_oneof![6 => 0u32..=4, 2 => 5u32..=12, 1 => 13u32..=21], any::<bool>())
            .prop_map(|(size, align_shift, zeroed)| Op::Alloc { size, align_shift, zeroed }),
        2 => (any::<usize>(), size_strategy()).prop_map(|(pick, size)| Op::Realloc { pick, size }),
        3 => any::<usize>().prop_map(|pick| Op::Free { pick }),
    ]
}

struct Live {
    ptr: *mut u8,
    layout: Layout,
    id: u64,
}

fn pattern(id: u64, i: usize) -> u8 {
    (id.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(i as u64 * 31) >> 24) as u8
}

/// Fills (a sample of) the block's bytes: the first and last 64 bytes and
/// every 61st byte, so huge blocks stay cheap.
fn sampled(len: usize) -> impl Iterator<Item = usize> {
    let head = 0..len.min(64);
    let tail = len.saturating_sub(64).max(len.min(64))..len;
    head.chain(tail).chain((64..len.saturating_sub(64)).step_by(61))
}

fn fill(l: &Live) {
    for i in sampled(l.layout.size()) {
        // SAFETY: `i` is inside the live block.
        unsafe { *l.ptr.add(i) = pattern(l.id, i) };
    }
}

/// Checks the bytes `fill` wrote for `l`'s layout, below `len`.
fn check(l: &Live, len: usize) -> Result<(), TestCaseError> {
    for i in sampled(l.layout.size()).filter(|&i| i < len) {
        // SAFETY: `i` is inside the live block.
        let got = unsafe { *l.ptr.add(i) };
        prop_assert_eq!(got, pattern(l.id, i), "block {} byte {} of {} at {:p}", l.id, i, len, l.ptr);
    }
    Ok(())
}

fn run<A: GlobalAlloc>(a: &A, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut live: Vec<Live> = Vec::new();
    // start address -> end address of every live block
    let mut ranges: BTreeMap<usize, usize> = BTreeMap::new();
    let mut next_id = 0u64;
    let insert_range = |ranges: &mut BTreeMap<usize, usize>, p: usize, len: usize| -> Result<(), TestCaseError> {
        if let Some((&s, &e)) = ranges.range(..=p).next_back() {
            prop_assert!(e <= p, "block {:#x}+{} overlaps live block {:#x}..{:#x}", p, len, s, e);
        }
        if let Some((&s, _)) = ranges.range(p..).next() {
            prop_assert!(p + len <= s, "block {:#x}+{} overlaps live block at {:#x}", p, len, s);
        }
        ranges.insert(p, p + len);
        Ok(())
    };
    for op in ops {
        match *op {
            Op::Alloc { size, align_shift, zeroed } => {
                let layout = Layout::from_size_align(size, 1 << align_shift).unwrap();
                // SAFETY: a valid, non-zero-size layout.
                let p = unsafe {
                    if zeroed {
                        a.alloc_zeroed(layout)
                    } else {
                        a.alloc(layout)
                    }
                };
                prop_assert!(!p.is_null(), "alloc {:?} failed", layout);
                prop_assert_eq!(p as usize % layout.align(), 0, "misaligned {:?}", layout);
                if zeroed {
                    for i in sampled(size) {
                        // SAFETY: inside the new block.
                        prop_assert_eq!(unsafe { *p.add(i) }, 0, "zeroed block byte {}", i);
                    }
                }
                insert_range(&mut ranges, p as usize, size)?;
                let l = Live { ptr: p, layout, id: next_id };
                next_id += 1;
                fill(&l);
                live.push(l);
            }
            Op::Realloc { pick, size } => {
                if live.is_empty() {
                    continue;
                }
                let i = pick % live.len();
                check(&live[i], live[i].layout.size())?;
                let old = live.swap_remove(i);
                ranges.remove(&(old.ptr as usize));
                // SAFETY: `old` is live with this layout; size is non-zero.
                let q = unsafe { a.realloc(old.ptr, old.layout, size) };
                prop_assert!(!q.is_null());
                prop_assert_eq!(q as usize % old.layout.align(), 0, "realloc lost alignment {}", old.layout.align());
                check(&Live { ptr: q, ..old }, old.layout.size().min(size))?;
                let moved =
                    Live { ptr: q, layout: Layout::from_size_align(size, old.layout.align()).unwrap(), id: old.id };
                insert_range(&mut ranges, q as usize, size)?;
                fill(&moved);
                live.push(moved);
            }
            Op::Free { pick } => {
                if live.is_empty() {
                    continue;
                }
                let i = pick % live.len();
                let l = live.swap_remove(i);
                check(&l, l.layout.size())?;
                ranges.remove(&(l.ptr as usize));
                // SAFETY: `l` is live with this layout.
                unsafe { a.dealloc(l.ptr, l.layout) };
            }
        }
    }
    for l in live {
        check(&l, l.layout.size())?;
        // SAFETY: `l` is live with this layout.
        unsafe { a.dealloc(l.ptr, l.layout) };
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn per_thread_front_matches_the_model(ops in prop::collection::vec(op_strategy(), 1..400)) {
        run(&PoolMalloc, &ops)?;
    }

    #[test]
    fn locked_front_matches_the_model(ops in prop::collection::vec(op_strategy(), 1..400)) {
        run(&LockedPoolMalloc, &ops)?;
    }
}
