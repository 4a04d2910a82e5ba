//! `TypedPool<T>` and `PoolBox` through the public API: every value dropped
//! exactly once (drop, `into_inner`, `trim`, pool drop), zero-sized and
//! over-aligned types, cross-thread drops from many threads, trim with live
//! boxes, the cap, the box's traits, and a property test of random
//! alloc/drop/into_inner/clone/trim sequences against a model.

use poolmalloc::pools::TypedPoolStats;
use poolmalloc::{PoolBox, TypedPool};
use proptest::prelude::*;
use std::cell::RefCell;
use std::collections::{BTreeSet, HashSet};
use std::rc::Rc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::sync::{mpsc, Arc, Mutex};

/// A value that records its drop in a per-test table and checks its payload.
struct Tracked<'t> {
    id: usize,
    cookie: [u64; 3],
    drops: &'t [AtomicU8],
}

impl<'t> Tracked<'t> {
    fn new(id: usize, drops: &'t [AtomicU8]) -> Self {
        Tracked { id, cookie: Self::cookie(id), drops }
    }

    fn cookie(id: usize) -> [u64; 3] {
        let x = (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        [x, !x, x.rotate_left(17)]
    }

    fn check(&self) {
        assert_eq!(self.cookie, Self::cookie(self.id), "value {} was overwritten", self.id);
    }
}

impl Drop for Tracked<'_> {
    fn drop(&mut self) {
        self.check();
        let before = self.drops[self.id].fetch_add(1, Relaxed);
        assert_eq!(before, 0, "value {} dropped twice", self.id);
    }
}

fn drop_table(n: usize) -> Vec<AtomicU8> {
    (0..n).map(|_| AtomicU8::new(0)).collect()
}

fn all_dropped_once(drops: &[AtomicU8]) {
    for (i, d) in drops.iter().enumerate() {
        assert_eq!(d.load(Relaxed), 1, "value {i} dropped {} times", d.load(Relaxed));
    }
}

#[test]
fn every_value_dropped_exactly_once() {
    let drops = drop_table(4000);
    let pool = TypedPool::with_cap(256);
    let mut boxes: Vec<_> = (0..4000).map(|i| pool.alloc(Tracked::new(i, &drops))).collect();
    assert_eq!(pool.stats().live, 4000);
    // Drop every third box, unwrap every third, leave the rest.
    let mut kept = Vec::new();
    let mut unwrapped = Vec::new();
    for (i, b) in boxes.drain(..).enumerate() {
        match i % 3 {
            0 => drop(b),
            1 => unwrapped.push(PoolBox::into_inner(b)),
            _ => kept.push(b),
        }
    }
    let st = pool.stats();
    assert_eq!(st.live, kept.len());
    for v in &unwrapped {
        v.check();
        assert_eq!(drops[v.id].load(Relaxed), 0, "into_inner does not drop the value");
    }
    pool.trim();
    assert_eq!(pool.stats().cached, 0);
    for b in &kept {
        b.check();
        assert_eq!(drops[b.id].load(Relaxed), 0, "trim leaves live boxes alone");
    }
    // Reuse slots after trim; those values are dropped too.
    let extra = drop_table(100);
    let more: Vec<_> = (0..100).map(|i| pool.alloc(Tracked::new(i, &extra))).collect();
    drop(boxes);
    drop(unwrapped);
    drop(kept);
    drop(more);
    drop(pool);
    all_dropped_once(&drops);
    all_dropped_once(&extra);
}

#[test]
fn zero_sized_values() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    #[derive(Debug, PartialEq)]
    struct Unit;
    impl Drop for Unit {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Relaxed);
        }
    }
    #[derive(Debug)]
    #[repr(align(256))]
    struct AlignedUnit;

    let pool = TypedPool::with_cap(16);
    let boxes: Vec<_> = (0..10_000).map(|_| pool.alloc(Unit)).collect();
    let st = pool.stats();
    assert_eq!((st.live, st.cached, st.bytes, st.slot_size, st.misses), (10_000, 0, 0, 0, 0));
    assert!(boxes.iter().all(|b| matches!(**b, Unit)));
    let mut it = boxes.into_iter();
    let first = PoolBox::into_inner(it.next().unwrap());
    assert_eq!(DROPS.load(Relaxed), 0);
    drop(first);
    drop(it);
    assert_eq!(DROPS.load(Relaxed), 10_000);
    assert_eq!(pool.stats().live, 0);
    assert_eq!(pool.stats().hits, 10_000);

    let aligned = TypedPool::new();
    let b = aligned.alloc(AlignedUnit);
    assert_eq!(PoolBox::as_ptr(&b) as usize % 256, 0);
    std::thread::scope(|s| {
        s.spawn(move || drop(b));
    });
    assert_eq!(aligned.stats().live, 0);
}

#[repr(align(64))]
#[derive(Clone, Copy, Debug, PartialEq)]
struct Line([u64; 3]);

#[repr(align(4096))]
#[derive(Clone, Copy, Debug, PartialEq)]
struct Page(u64);

#[repr(align(65536))]
#[derive(Clone, Copy, Debug, PartialEq)]
struct Huge(u64);

fn check_aligned<T: Copy + PartialEq + std::fmt::Debug>(make: impl Fn(u64) -> T) {
    let pool = TypedPool::with_cap(8);
    let align = std::mem::align_of::<T>();
    for round in 0..3 {
        let boxes: Vec<_> = (0..20).map(|i| pool.alloc(make(i + round * 100))).collect();
        for (i, b) in boxes.iter().enumerate() {
            assert_eq!(PoolBox::as_ptr(b) as usize % align, 0, "alignment {align}");
            assert_eq!(**b, make(i as u64 + round * 100));
        }
    }
    let st = pool.stats();
    assert_eq!(st.live, 0);
    assert!(st.slot_size >= std::mem::size_of::<T>() && st.slot_size % align == 0);
}

#[test]
fn over_aligned_values() {
    check_aligned(|i| Line([i, i + 1, i + 2]));
    check_aligned(Page);
    check_aligned(Huge);
}

#[test]
fn cross_thread_drops_from_many_threads() {
    const PRODUCERS: usize = 4;
    const CONSUMERS: usize = 6;
    const PER_PRODUCER: usize = 20_000;
    let drops = drop_table(PRODUCERS * PER_PRODUCER);
    let pool = TypedPool::with_cap(128);
    let side = TypedPool::with_cap(32);
    // Bounded, so producers cannot finish before consumers have freed slots
    // into the depot (where producers find them: the hits asserted below).
    let (tx, rx) = mpsc::sync_channel::<PoolBox<Tracked>>(256);
    let rx = Mutex::new(rx);
    std::thread::scope(|s| {
        for c in 0..CONSUMERS {
            let rx = &rx;
            let side = &side;
            s.spawn(move || {
                let mut held = Vec::new();
                loop {
                    let next = rx.lock().unwrap().recv();
                    let Ok(b) = next else { break };
                    b.check();
                    // Some consumers reuse slots of their own for a while.
                    if c % 2 == 0 {
                        held.push(side.alloc([b.id as u64; 4]));
                        if held.len() > 50 {
                            held.clear();
                        }
                    }
                    if b.id % 5 == 0 {
                        PoolBox::into_inner(b).check();
                    }
                }
            });
        }
        for p in 0..PRODUCERS {
            let tx = tx.clone();
            let (pool, drops) = (&pool, &drops);
            s.spawn(move || {
                for i in 0..PER_PRODUCER {
                    tx.send(pool.alloc(Tracked::new(p * PER_PRODUCER + i, drops))).unwrap();
                }
            });
        }
        drop(tx);
    });
    all_dropped_once(&drops);
    let st = pool.stats();
    assert_eq!(st.live, 0, "{st}");
    assert_eq!(st.hits + st.misses, (PRODUCERS * PER_PRODUCER) as u64, "{st}");
    assert!(st.hits > 0, "slots freed on consumers come back to producers: {st}");
}

#[test]
fn shared_slot_array_stress() {
    // Threads swap boxes in and out of a shared array, so boxes are made
    // and dropped on different threads in no fixed pattern.
    const THREADS: usize = 8;
    const SLOTS: usize = 256;
    const STEPS: usize = 20_000;
    static POOL: TypedPool<(u64, [u64; 5])> = TypedPool::with_cap(64);
    type Slot = Mutex<Option<PoolBox<'static, (u64, [u64; 5])>>>;
    let slots: Vec<Slot> = (0..SLOTS).map(|_| Mutex::new(None)).collect();
    let made = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (slots, made) = (&slots, &made);
            s.spawn(move || {
                let mut x = 0x2545_F491_4F6C_DD1Du64 ^ t as u64;
                for _ in 0..STEPS {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let fresh = POOL.alloc((x, [x.rotate_left(7); 5]));
                    made.fetch_add(1, Relaxed);
                    let old = slots[x as usize % SLOTS].lock().unwrap().replace(fresh);
                    if let Some(b) = old {
                        assert_eq!(b.1, [b.0.rotate_left(7); 5], "a slot was handed out twice");
                    }
                }
            });
        }
    });
    let left = slots.iter().filter(|s| s.lock().unwrap().is_some()).count();
    assert_eq!(POOL.stats().live, left);
    drop(slots);
    let st = POOL.stats();
    assert_eq!(st.live, 0);
    assert_eq!(st.hits + st.misses, made.load(Relaxed) as u64);
}

#[test]
fn trim_with_live_boxes() {
    let pool = TypedPool::with_cap(1000);
    let live: Vec<_> = (0..500u64).map(|i| pool.alloc([i; 8])).collect();
    drop((0..500u64).map(|i| pool.alloc([i; 8])).collect::<Vec<_>>());
    let before = pool.stats();
    assert_eq!((before.live, before.cached), (500, 500));
    assert_eq!(before.bytes, 1000 * before.slot_size);
    pool.trim();
    let after = pool.stats();
    assert_eq!((after.live, after.cached, after.released), (500, 0, 500));
    assert_eq!(after.bytes, 500 * after.slot_size);
    for (i, b) in live.iter().enumerate() {
        assert_eq!(**b, [i as u64; 8]);
    }
    // The pool keeps working: new slots are fresh.
    let b = pool.alloc([9; 8]);
    assert_eq!(pool.stats().misses, 1001);
    drop(b);
    drop(live);
    assert_eq!(pool.stats().live, 0);
}

#[test]
fn cap_is_honoured() {
    for cap in [0usize, 1, 4, 10, 100, 1000] {
        let pool = TypedPool::<[u32; 10]>::with_cap(cap);
        for round in 0..3 {
            drop((0..3000).map(|i| pool.alloc([i; 10])).collect::<Vec<_>>());
            let st = pool.stats();
            assert!(st.cached <= cap, "cap {cap}, round {round}: {st}");
            assert_eq!(st.live, 0);
            assert_eq!(st.released as usize + st.cached, st.misses as usize, "cap {cap}: {st}");
        }
    }
    // A cap of 0 caches nothing.
    let none = TypedPool::<u64>::with_cap(0);
    drop(none.alloc(1));
    drop(none.alloc(2));
    let st = none.stats();
    assert_eq!((st.cached, st.misses, st.hits, st.released), (0, 2, 0, 2));
}

#[test]
fn threads_keep_at_most_half_the_cap_each() {
    let pool = TypedPool::<[u64; 4]>::with_cap(100);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                drop((0..1000u64).map(|i| pool.alloc([i; 4])).collect::<Vec<_>>());
                let st = pool.stats();
                assert!(st.cached <= 50 * 4 + 50, "{st}");
            });
        }
    });
}

#[test]
fn stats_display() {
    let pool = TypedPool::<u64>::new();
    let b = pool.alloc(5);
    drop(pool.alloc(6));
    let st: TypedPoolStats = pool.stats();
    assert_eq!((st.live, st.cached, st.hits, st.misses, st.cap), (1, 1, 0, 2, poolmalloc::pools::DEFAULT_CAP));
    let text = st.to_string();
    assert!(text.contains("live") && text.contains("16-byte slots"), "{text}");
    drop(b);
    assert!(format!("{pool:?}").contains("TypedPool"));
}

// The pool a box refers to has atomics inside, which do not take part in
// the box's hash or order.
#[allow(clippy::mutable_key_type)]
#[test]
fn box_traits() {
    let pool = TypedPool::new();
    let a = pool.alloc(String::from("apple"));
    let b = pool.alloc(String::from("banana"));
    let a2 = a.clone();
    assert_eq!(a, a2);
    assert!(a < b);
    assert_eq!(a.cmp(&b), std::cmp::Ordering::Less);
    assert_eq!(format!("{a}/{a:?}"), "apple/\"apple\"");
    assert_eq!(format!("{a:p}"), format!("{:p}", PoolBox::as_ptr(&a)));
    assert_ne!(PoolBox::as_ptr(&a), PoolBox::as_ptr(&a2));
    let r: &String = a.as_ref();
    assert_eq!(r.len(), 5);
    let set: HashSet<_> = [a.clone(), a2.clone(), b.clone()].into_iter().collect();
    assert_eq!(set.len(), 2);
    let ord: BTreeSet<_> = [b.clone(), a.clone()].into_iter().collect();
    assert_eq!(ord.iter().map(|s| s.as_str()).collect::<Vec<_>>(), ["apple", "banana"]);
    assert!(set.contains(&a));
    let mut m = b;
    std::borrow::BorrowMut::<String>::borrow_mut(&mut m).push('!');
    m.as_mut().push('?');
    assert_eq!(*m, "banana!?");
    assert_eq!(std::borrow::Borrow::<String>::borrow(&m), "banana!?");
    let leaked: &mut String = PoolBox::leak(pool.alloc(String::from("kept")));
    leaked.push('!');
    assert_eq!(leaked, "kept!");

    // Iterator, I/O and pinning delegate to the value.
    let ints = TypedPool::new();
    let mut it = ints.alloc(1..5);
    assert_eq!(it.len(), 4);
    assert_eq!(it.next_back(), Some(4));
    assert_eq!(it.by_ref().sum::<i32>(), 6);
    let cursors = TypedPool::new();
    let mut w = cursors.alloc(std::io::Cursor::new(Vec::new()));
    std::io::Write::write_all(&mut w, b"hello").unwrap();
    assert_eq!(PoolBox::into_inner(w).into_inner(), b"hello");
    let pinned = PoolBox::into_pin(pool.alloc(String::from("pinned")));
    assert_eq!(pinned.as_str(), "pinned");
    assert!(std::ptr::eq(PoolBox::pool(&a), &pool));
    drop((a, a2, m, pinned, set, ord));
    assert_eq!(pool.stats().live, 1, "only the leaked box");
}

#[test]
fn thread_safety_markers() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<TypedPool<u64>>();
    // The pool never holds a value, so even pools of !Send types are shared.
    send_sync::<TypedPool<Rc<u8>>>();
    send_sync::<PoolBox<'static, u64>>();
    send::<PoolBox<'static, std::cell::Cell<u64>>>();
}

#[test]
fn boxes_dropped_during_thread_exit() {
    // A box held in another thread-local is dropped after the pool's own
    // thread-local table may already be gone; the slot must still come back.
    static POOL: TypedPool<[u64; 2]> = TypedPool::new();
    thread_local! {
        static HELD: RefCell<Vec<PoolBox<'static, [u64; 2]>>> = const { RefCell::new(Vec::new()) };
    }
    let before = POOL.stats();
    std::thread::spawn(|| {
        HELD.with(|h| h.borrow_mut().extend((0..10).map(|i| POOL.alloc([i, i]))));
        drop(POOL.alloc([0, 0]));
    })
    .join()
    .unwrap();
    let after = POOL.stats();
    assert_eq!(after.live, before.live);
    assert_eq!(after.hits + after.misses - before.hits - before.misses, 11);
}

#[test]
fn try_alloc_succeeds_and_returns_the_box() {
    let pool = TypedPool::new();
    let b = pool.try_alloc(vec![1, 2, 3]).expect("memory is available");
    assert_eq!(PoolBox::into_inner(b), vec![1, 2, 3]);
}

// ---------------------------------------------------------------------------
// Property test against a model.

#[derive(Debug, Clone)]
enum Op {
    Alloc,
    Drop(usize),
    IntoInner(usize),
    Clone(usize),
    Mutate(usize),
    Trim,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => Just(Op::Alloc),
        4 => any::<usize>().prop_map(Op::Drop),
        2 => any::<usize>().prop_map(Op::IntoInner),
        1 => any::<usize>().prop_map(Op::Clone),
        1 => any::<usize>().prop_map(Op::Mutate),
        1 => Just(Op::Trim),
    ]
}

/// A value whose every drop is logged; a clone gets a fresh id.
struct Logged {
    id: u64,
    body: [u64; 4],
    log: Rc<RefCell<Vec<u64>>>,
    next_id: Rc<std::cell::Cell<u64>>,
}

impl Clone for Logged {
    fn clone(&self) -> Self {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        Logged { id, body: self.body, log: self.log.clone(), next_id: self.next_id.clone() }
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        self.log.borrow_mut().push(self.id);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn model(ops in proptest::collection::vec(op(), 1..300), cap in 0usize..40) {
        let log = Rc::new(RefCell::new(Vec::new()));
        let pool = TypedPool::with_cap(cap);
        // Model: the live boxes with the values they must hold.
        let mut live: Vec<(PoolBox<Logged>, u64, [u64; 4])> = Vec::new();
        let next_id = Rc::new(std::cell::Cell::new(0u64));
        let mut expected_drops = Vec::new();
        let mut allocs = 0u64;
        for op in ops {
            match op {
                Op::Alloc => {
                    let id = next_id.get();
                    next_id.set(id + 1);
                    let body = [id, id * 3, !id, 7];
                    live.push((pool.alloc(Logged { id, body, log: log.clone(), next_id: next_id.clone() }), id, body));
                    allocs += 1;
                }
                Op::Drop(i) if !live.is_empty() => {
                    let (b, id, body) = live.swap_remove(i % live.len());
                    prop_assert_eq!(b.body, body);
                    drop(b);
                    expected_drops.push(id);
                }
                Op::IntoInner(i) if !live.is_empty() => {
                    let (b, id, body) = live.swap_remove(i % live.len());
                    let v = PoolBox::into_inner(b);
                    prop_assert_eq!((v.id, v.body), (id, body));
                    prop_assert!(!log.borrow().contains(&id));
                    drop(v);
                    expected_drops.push(id);
                }
                Op::Clone(i) if !live.is_empty() => {
                    let k = i % live.len();
                    let c = live[k].0.clone();
                    let (id, body) = (c.id, live[k].2);
                    prop_assert_ne!(id, live[k].1);
                    live.push((c, id, body));
                    allocs += 1;
                }
                Op::Mutate(i) if !live.is_empty() => {
                    let k = i % live.len();
                    live[k].0.body[3] += 1;
                    live[k].2[3] += 1;
                }
                Op::Trim => {
                    pool.trim();
                    prop_assert_eq!(pool.stats().cached, 0);
                }
                _ => {}
            }
            let st = pool.stats();
            prop_assert_eq!(st.live, live.len());
            prop_assert!(st.cached <= cap);
            prop_assert_eq!(st.hits + st.misses, allocs);
            prop_assert_eq!(st.misses, st.released + (st.live + st.cached) as u64);
            prop_assert_eq!(st.bytes, (st.live + st.cached) * st.slot_size);
        }
        for (b, _, body) in &live {
            prop_assert_eq!(b.body, *body);
        }
        let mut dropped = log.borrow().clone();
        dropped.sort_unstable();
        expected_drops.sort_unstable();
        prop_assert_eq!(&dropped, &expected_drops);
        let ids: Vec<u64> = live.iter().map(|l| l.1).collect();
        drop(live);
        drop(pool);
        let mut all = log.borrow().clone();
        all.sort_unstable();
        expected_drops.extend(ids);
        expected_drops.sort_unstable();
        prop_assert_eq!(all, expected_drops);
    }
}

#[test]
fn shared_pool_in_arc() {
    let pool = Arc::new(TypedPool::<u64>::new());
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let pool = pool.clone();
            std::thread::spawn(move || (0..1000u64).map(|i| *pool.alloc(i * t)).sum::<u64>())
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total, 499_500 * 6);
    assert_eq!(pool.stats().live, 0);
}
