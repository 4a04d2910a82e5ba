//! alloc/free pairs at 16, 64, 256 and 512 bytes, in batches of 100 freed in
//! LIFO order, for every allocator in the same run. Criterion reports time
//! per batch; divide by 100 for the time per pair.
//!
//! `cargo bench -p poolmalloc-benches`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use poolmalloc_benches::{allocators, batch};
use std::alloc::Layout;
use std::hint::black_box;

const BATCH: usize = 100;

fn pairs(c: &mut Criterion) {
    for size in [16usize, 64, 256, 512] {
        let mut g = c.benchmark_group(format!("pairs_{size}B_x{BATCH}"));
        g.throughput(Throughput::Elements(BATCH as u64));
        let layout = Layout::from_size_align(size, 8).unwrap();
        for (name, a) in allocators() {
            g.bench_with_input(BenchmarkId::from_parameter(name), &layout, |b, &l| {
                b.iter(|| black_box(batch::<_, BATCH>(a, black_box(l))))
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = pairs
}
criterion_main!(benches);
