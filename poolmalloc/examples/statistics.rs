//! The statistics snapshot: its per-layer parts, and the report.
//!
//! `cargo run --release -p poolmalloc --example statistics`

#[global_allocator]
static GLOBAL: poolmalloc::PoolMalloc = poolmalloc::PoolMalloc;

fn main() {
    let before = poolmalloc::stats();
    let keep: Vec<Box<[u8; 100]>> = (0..50_000).map(|_| Box::new([7u8; 100])).collect();
    let big = vec![0u8; 8 << 20];
    let during = poolmalloc::stats();
    // 50,000 blocks of the 112-byte class (and the vectors' own blocks).
    assert!(during.blocks_in_use() >= before.blocks_in_use() + 50_000);
    assert!(during.pools.bytes_in_blocks >= before.pools.bytes_in_blocks + 50_000 * 100);
    assert_eq!(during.large.spans, before.large.spans + 1, "the 8 MiB vector is a huge span");
    assert!(during.adds_up());
    drop((keep, big));
    poolmalloc::trim();
    let after = poolmalloc::stats();
    assert!(after.os.mapped < during.os.mapped, "trim gave memory back");
    println!("{after}");
}
