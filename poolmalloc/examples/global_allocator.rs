//! poolmalloc as the program's global allocator.
//!
//! `cargo run --release -p poolmalloc --example global_allocator`

use std::collections::{BTreeMap, HashMap};

#[global_allocator]
static GLOBAL: poolmalloc::PoolMalloc = poolmalloc::PoolMalloc;

fn main() {
    // Strings, vectors and maps of many sizes, built and dropped.
    let mut words: HashMap<String, Vec<usize>> = HashMap::new();
    for i in 0..100_000usize {
        words.entry(format!("w{}", i % 5_000)).or_default().push(i);
    }
    let ordered: BTreeMap<&str, usize> = words.iter().map(|(k, v)| (k.as_str(), v.len())).collect();
    assert_eq!(ordered.len(), 5_000);
    assert!(ordered.values().all(|&n| n == 20));

    // Threads allocate, and free each other's blocks.
    let handles: Vec<_> = (0..4)
        .map(|t| std::thread::spawn(move || (0..10_000).map(|i| vec![t as u8; i % 300]).collect::<Vec<_>>()))
        .collect();
    let made: Vec<Vec<Vec<u8>>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(made.iter().flatten().map(Vec::len).sum::<usize>(), 4 * (0..10_000).map(|i| i % 300).sum::<usize>());
    drop(made);

    let s = poolmalloc::stats();
    assert!(s.adds_up(), "the statistics' parts add up to the mapped bytes");
    println!("{} blocks in use in {} pools; {} bytes mapped", s.blocks_in_use(), s.pools.used, s.os.mapped);
    drop(words);
}
