//! Object recycling (`ObjectPool`) against building afresh, in one run.
//!
//! Three uses, each built afresh through each allocator (collections with an
//! allocator parameter, from `allocator-api2` and `hashbrown`, so the same
//! code runs on every allocator in one process) and recycled through
//! `ObjectPool`, `sharded-slab`'s `Pool` and `object-pool`'s `Pool`:
//!
//! * `parse`: a message of 24 words split into a vector of owned strings;
//! * `handle`: a request of 64 headers put into a map of string keys to
//!   byte-vector values, one looked up;
//! * `buffer_4k`: a 4 KiB buffer filled from a slice and summed.
//!
//! The bench binary's global allocator is poolmalloc, so the recycled
//! objects' own allocations (made once) come from it.
//!
//! `cargo bench -p poolmalloc-benches --bench recycle`

use allocator_api2::alloc::{AllocError, Allocator, GlobalAlloc, Layout};
use allocator_api2::vec::Vec as AVec;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use poolmalloc::ObjectPool;
use std::collections::HashMap;
use std::hint::black_box;
use std::ptr::NonNull;

#[global_allocator]
static GLOBAL: poolmalloc::PoolMalloc = poolmalloc::PoolMalloc;

/// A `GlobalAlloc` as an `Allocator`, for collections built afresh through
/// a chosen allocator.
#[derive(Clone, Copy)]
struct Via(&'static (dyn GlobalAlloc + Sync));

// SAFETY: blocks come from the wrapped GlobalAlloc with the layout asked
// for, and go back to it with the same layout.
unsafe impl Allocator for Via {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            // SAFETY: an alignment is never zero.
            let p = unsafe { NonNull::new_unchecked(std::ptr::without_provenance_mut(layout.align())) };
            return Ok(NonNull::slice_from_raw_parts(p, 0));
        }
        // SAFETY: a non-zero layout.
        let p = unsafe { self.0.alloc(layout) };
        NonNull::new(p).map(|p| NonNull::slice_from_raw_parts(p, layout.size())).ok_or(AllocError)
    }

    unsafe fn deallocate(&self, p: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            // SAFETY: by the Allocator contract, `p` came from `allocate`.
            unsafe { self.0.dealloc(p.as_ptr(), layout) };
        }
    }
}

const ALLOCATORS: &[(&str, &'static (dyn GlobalAlloc + Sync))] =
    &[("poolmalloc", &poolmalloc::PoolMalloc), ("mimalloc", &mimalloc::MiMalloc), ("system", &std::alloc::System)];

/// The message: 24 words.
fn message() -> String {
    (0..24).map(|i| format!("word{i:03}")).collect::<Vec<_>>().join(" ")
}

/// The request: 64 headers.
fn headers() -> Vec<(String, Vec<u8>)> {
    (0..64).map(|i| (format!("x-header-{i:02}"), vec![i as u8; 24])).collect()
}

fn parse(c: &mut Criterion) {
    let msg = message();
    let mut g = c.benchmark_group("parse");
    for &(name, a) in ALLOCATORS {
        g.bench_function(BenchmarkId::new("afresh", name), |b| {
            b.iter(|| {
                let a = Via(a);
                let mut words: AVec<AVec<u8, Via>, Via> = AVec::new_in(a);
                for w in black_box(&msg).split(' ') {
                    let mut s = AVec::new_in(a);
                    s.extend_from_slice(w.as_bytes());
                    words.push(s);
                }
                words.len()
            })
        });
    }
    let pool: ObjectPool<Vec<String>> = ObjectPool::new();
    let strings: ObjectPool<String> = ObjectPool::new();
    g.bench_function("ObjectPool", |b| {
        b.iter(|| {
            // The vector is recycled; its strings are recycled too, from a
            // pool of strings (a vector of pooled strings would borrow the
            // pool).
            let mut words = pool.get();
            for w in black_box(&msg).split(' ') {
                let mut s = strings.get().into_inner();
                s.push_str(w);
                words.push(s);
            }
            let n = words.len();
            for s in words.drain(..) {
                let mut g = strings.get();
                *g = s;
            }
            n
        })
    });
    g.bench_function("ObjectPool/vector only", |b| {
        b.iter(|| {
            let mut words = pool.get();
            words.extend(black_box(&msg).split(' ').map(str::to_string));
            words.len()
        })
    });
    let slab: sharded_slab::Pool<Vec<String>> = sharded_slab::Pool::new();
    g.bench_function("sharded-slab", |b| {
        b.iter(|| {
            let mut words = slab.create().expect("a slot");
            words.extend(black_box(&msg).split(' ').map(str::to_string));
            let n = words.len();
            let key = words.key();
            drop(words);
            slab.clear(key);
            n
        })
    });
    let op: object_pool::Pool<Vec<String>> = object_pool::Pool::new(64, Vec::new);
    g.bench_function("object-pool", |b| {
        b.iter(|| {
            let mut words = op.pull(Vec::new);
            words.clear();
            words.extend(black_box(&msg).split(' ').map(str::to_string));
            words.len()
        })
    });
    g.finish();
}

fn handle(c: &mut Criterion) {
    let req = headers();
    let mut g = c.benchmark_group("handle");
    for &(name, a) in ALLOCATORS {
        let mut probe = AVec::new_in(Via(a));
        probe.extend_from_slice(b"x-header-07");
        g.bench_function(BenchmarkId::new("afresh", name), |b| {
            b.iter(|| {
                let a = Via(a);
                let mut map: hashbrown::HashMap<AVec<u8, Via>, AVec<u8, Via>, hashbrown::DefaultHashBuilder, Via> =
                    hashbrown::HashMap::with_hasher_in(hashbrown::DefaultHashBuilder::default(), a);
                for (k, v) in black_box(&req) {
                    let mut key = AVec::new_in(a);
                    key.extend_from_slice(k.as_bytes());
                    let mut val = AVec::new_in(a);
                    val.extend_from_slice(v);
                    map.insert(key, val);
                }
                map.get(&probe).map_or(0, |v| v.len())
            })
        });
    }
    let pool: ObjectPool<HashMap<String, Vec<u8>>> = ObjectPool::new();
    g.bench_function("ObjectPool", |b| {
        b.iter(|| {
            let mut map = pool.get();
            for (k, v) in black_box(&req) {
                map.insert(k.clone(), v.clone());
            }
            map.get("x-header-07").map_or(0, Vec::len)
        })
    });
    g.finish();
}

fn buffer_4k(c: &mut Criterion) {
    let data = vec![7u8; 4096];
    let mut g = c.benchmark_group("buffer_4k");
    for &(name, a) in ALLOCATORS {
        g.bench_function(BenchmarkId::new("afresh", name), |b| {
            b.iter(|| {
                let mut buf: AVec<u8, Via> = AVec::new_in(Via(a));
                buf.extend_from_slice(black_box(&data));
                buf.iter().map(|&x| x as usize).sum::<usize>()
            })
        });
    }
    let pool: ObjectPool<Vec<u8>> = ObjectPool::new();
    g.bench_function("ObjectPool", |b| {
        b.iter(|| {
            let mut buf = pool.get();
            buf.extend_from_slice(black_box(&data));
            buf.iter().map(|&x| x as usize).sum::<usize>()
        })
    });
    g.finish();
}

criterion_group!(benches, parse, handle, buffer_4k);
criterion_main!(benches);
