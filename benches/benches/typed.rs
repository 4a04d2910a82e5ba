//! Typed pools and buffer pools against plain allocation, in one run.
//!
//! * `typed_pair_48B`: one 48-byte value allocated and dropped per
//!   iteration. `TypedPool<T>` against `Box::new`/drop done by hand through
//!   each allocator's `GlobalAlloc` (`alloc` + `ptr::write`, then
//!   `drop_in_place` + `dealloc`, which is what `Box` does with that
//!   allocator as the global one), and against the `object-pool` and
//!   `sharded-slab` crates' pools.
//! * `typed_batch_{24,48,64}B_x100`: 100 values allocated, then dropped in
//!   LIFO order; criterion's time is per batch.
//! * `buffer_<size>`: a buffer acquired, filled and released, against
//!   `vec![0u8; n]` filled and dropped (the bench binary's global allocator
//!   is the system one) and the same zeroed allocation through mimalloc and
//!   poolmalloc directly.
//!
//! `cargo bench -p poolmalloc-benches --bench typed`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use poolmalloc::{BufferPool, PoolBox, TypedPool};
use poolmalloc_benches::allocators;
use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::ptr;

const BATCH: usize = 100;

/// A value of a fixed size made from a counter, with one field read back.
trait Value: Copy + Default + 'static {
    const NAME: &'static str;
    fn make(i: u64) -> Self;
    fn key(&self) -> u64;
}

/// Values of 24, 48 and 64 bytes, like small records or tree nodes. Only
/// `key` is read back; the other fields give the value its size.
#[allow(dead_code)]
#[derive(Clone, Copy, Default)]
struct Obj24 {
    key: u64,
    left: u64,
    right: u64,
}

#[allow(dead_code)]
#[derive(Clone, Copy, Default)]
struct Obj48 {
    key: u64,
    left: u64,
    right: u64,
    payload: [u32; 6],
}

#[allow(dead_code)]
#[derive(Clone, Copy, Default)]
struct Obj64 {
    key: u64,
    rest: [u64; 7],
}

const _: () = assert!(std::mem::size_of::<Obj24>() == 24);
const _: () = assert!(std::mem::size_of::<Obj48>() == 48);
const _: () = assert!(std::mem::size_of::<Obj64>() == 64);

impl Value for Obj24 {
    const NAME: &'static str = "24B";
    #[inline(always)]
    fn make(i: u64) -> Self {
        Obj24 { key: i, left: i ^ 1, right: i ^ 2 }
    }
    #[inline(always)]
    fn key(&self) -> u64 {
        self.key
    }
}

impl Value for Obj48 {
    const NAME: &'static str = "48B";
    #[inline(always)]
    fn make(i: u64) -> Self {
        Obj48 { key: i, left: i ^ 1, right: i ^ 2, payload: [i as u32; 6] }
    }
    #[inline(always)]
    fn key(&self) -> u64 {
        self.key
    }
}

impl Value for Obj64 {
    const NAME: &'static str = "64B";
    #[inline(always)]
    fn make(i: u64) -> Self {
        Obj64 { key: i, rest: [i; 7] }
    }
    #[inline(always)]
    fn key(&self) -> u64 {
        self.key
    }
}

/// `Box::new(v)` with `a` as the allocator.
#[inline(always)]
fn box_new<A: GlobalAlloc + ?Sized, V: Value>(a: &A, v: V) -> *mut V {
    // SAFETY: a non-zero-size layout.
    let p = unsafe { a.alloc(Layout::new::<V>()) }.cast::<V>();
    assert!(!p.is_null());
    // SAFETY: a fresh block for a `V`.
    unsafe { ptr::write(p, v) };
    p
}

/// Dropping a `Box<V>` made by `box_new`.
#[inline(always)]
fn box_drop<A: GlobalAlloc + ?Sized, V: Value>(a: &A, p: *mut V) {
    // SAFETY: `p` holds a live `V` allocated from `a`.
    unsafe {
        ptr::drop_in_place(p);
        a.dealloc(p.cast(), Layout::new::<V>());
    }
}

fn pair<V: Value>(c: &mut Criterion) {
    let mut g = c.benchmark_group(format!("typed_pair_{}", V::NAME));
    g.throughput(Throughput::Elements(1));
    let pool = TypedPool::<V>::new();
    let mut i = 0u64;
    g.bench_function("typed-pool", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let x = pool.alloc(V::make(i));
            black_box(&*x).key()
        })
    });
    for (name, a) in allocators() {
        g.bench_function(BenchmarkId::new("box", name), |b| {
            b.iter(|| {
                i = i.wrapping_add(1);
                let p = box_new(a, V::make(i));
                box_drop(a, black_box(p));
            })
        });
    }
    let op = object_pool::Pool::<V>::new(BATCH, V::default);
    g.bench_function("object-pool", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let mut x = op.pull(V::default);
            *x = V::make(i);
            black_box(&*x).key()
        })
    });
    let slab = sharded_slab::Slab::<V>::new();
    g.bench_function("sharded-slab", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let k = slab.insert(V::make(i)).unwrap();
            black_box(slab.take(black_box(k)).unwrap()).key()
        })
    });
    g.finish();
}

fn batch<V: Value>(c: &mut Criterion) {
    let mut g = c.benchmark_group(format!("typed_batch_{}_x{BATCH}", V::NAME));
    g.throughput(Throughput::Elements(BATCH as u64));
    let pool = TypedPool::<V>::new();
    g.bench_function("typed-pool", |b| {
        let mut held: Vec<PoolBox<V>> = Vec::with_capacity(BATCH);
        b.iter(|| {
            for i in 0..BATCH as u64 {
                held.push(pool.alloc(V::make(i)));
            }
            black_box(&held);
            while let Some(x) = held.pop() {
                drop(x);
            }
        })
    });
    for (name, a) in allocators() {
        g.bench_function(BenchmarkId::new("box", name), |b| {
            let mut held: Vec<*mut V> = Vec::with_capacity(BATCH);
            b.iter(|| {
                for i in 0..BATCH as u64 {
                    held.push(box_new(a, V::make(i)));
                }
                black_box(&held);
                while let Some(p) = held.pop() {
                    box_drop(a, p);
                }
            })
        });
    }
    let op = object_pool::Pool::<V>::new(BATCH, V::default);
    g.bench_function("object-pool", |b| {
        let mut held = Vec::with_capacity(BATCH);
        b.iter(|| {
            for i in 0..BATCH as u64 {
                let mut x = op.pull(V::default);
                *x = V::make(i);
                held.push(x);
            }
            black_box(&held);
            while let Some(x) = held.pop() {
                drop(x);
            }
        })
    });
    let slab = sharded_slab::Slab::<V>::new();
    g.bench_function("sharded-slab", |b| {
        let mut held = Vec::with_capacity(BATCH);
        b.iter(|| {
            for i in 0..BATCH as u64 {
                held.push(slab.insert(V::make(i)).unwrap());
            }
            black_box(&held);
            while let Some(k) = held.pop() {
                black_box(slab.take(k).unwrap());
            }
        })
    });
    g.finish();
}

fn typed_pair(c: &mut Criterion) {
    pair::<Obj48>(c);
}

fn typed_batch(c: &mut Criterion) {
    batch::<Obj24>(c);
    batch::<Obj48>(c);
    batch::<Obj64>(c);
}

fn buffers(c: &mut Criterion) {
    let pool = BufferPool::new();
    for (label, n) in [("1.5KiB", 1536usize), ("9KiB", 9 * 1024), ("64KiB", 64 * 1024)] {
        let mut g = c.benchmark_group(format!("buffer_{label}"));
        g.throughput(Throughput::Bytes(n as u64));
        g.bench_function("buffer-pool", |b| {
            b.iter(|| {
                let mut buf = pool.acquire(black_box(n));
                buf.fill(0xA5);
                black_box(&buf[..]);
            })
        });
        g.bench_function("vec-system", |b| {
            b.iter(|| {
                let mut v = vec![0u8; black_box(n)];
                v.fill(0xA5);
                black_box(&v[..]);
            })
        });
        let layout = Layout::from_size_align(n, 16).unwrap();
        let direct: [(&str, &(dyn GlobalAlloc + Sync)); 2] =
            [("vec-mimalloc", &mimalloc::MiMalloc), ("vec-poolmalloc", &poolmalloc::PoolMalloc)];
        for (name, a) in direct {
            g.bench_function(name, |b| {
                b.iter(|| {
                    // SAFETY: a non-zero-size layout; the block is freed below.
                    unsafe {
                        // `black_box` keeps the zeroing from being merged into
                        // the fill, as it cannot be for `vec![0u8; n]`.
                        let p = black_box(a.alloc_zeroed(black_box(layout)));
                        assert!(!p.is_null());
                        ptr::write_bytes(p, 0xA5, n);
                        black_box(p);
                        a.dealloc(p, layout);
                    }
                })
            });
        }
        g.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = typed_pair, typed_batch, buffers
}
criterion_main!(benches);
