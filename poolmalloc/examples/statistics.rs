//! The statistics snapshot: its per-layer parts, and the report; and the
//! cheap counters beside it.
//!
//! `cargo run --release -p poolmalloc --example statistics`

#[global_allocator]
static GLOBAL: poolmalloc::PoolMalloc = poolmalloc::PoolMalloc;

fn main() {
    let before = poolmalloc::stats();
    let counted = poolmalloc::counters();
    let keep: Vec<Box<[u8; 100]>> = (0..50_000).map(|_| Box::new([7u8; 100])).collect();
    let big = vec![0u8; 8 << 20];
    let during = poolmalloc::stats();
    // 50,000 blocks of the 112-byte class (and the vectors' own blocks).
    assert!(during.blocks_in_use() >= before.blocks_in_use() + 50_000);
    assert!(during.pools.bytes_in_blocks >= before.pools.bytes_in_blocks + 50_000 * 100);
    assert_eq!(during.large.spans, before.large.spans + 1, "the 8 MiB vector is a huge span");
    assert!(during.adds_up());
    // The counters: O(1) and lock-free, cheap enough to read per request.
    // They count each pool as its thread last saw it (one pool of lag).
    let now = poolmalloc::counters();
    assert!(now.allocated >= counted.allocated + 50_000 * 112 + (8 << 20) - (64 << 10));
    assert!(now.mapped >= now.resident && now.resident >= now.active);
    println!("counters while holding 13.6 MB: {now:?}");
    drop((keep, big));
    poolmalloc::trim();
    let after = poolmalloc::stats();
    assert!(after.os.mapped < during.os.mapped, "trim gave memory back");
    println!("{after}");
}
