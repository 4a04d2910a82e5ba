//! A plugin with `PoolMalloc` as its global allocator, loaded with `dlopen`
//! by `capi/tests/c/dlopen_host.c`.

use std::collections::HashMap;

#[global_allocator]
static GLOBAL: poolmalloc::PoolMalloc = poolmalloc::PoolMalloc;

/// Builds and drops `n` rounds of strings, vectors and a map through the
/// global allocator; returns the sum of the lengths of the vectors built,
/// which [`plugin_expected`] computes without allocating.
#[no_mangle]
pub extern "C" fn plugin_work(n: usize) -> usize {
    let mut total = 0;
    for r in 0..n {
        let words: Vec<String> = (0..100).map(|i| format!("{r}-{i}")).collect();
        let mut map: HashMap<&str, Vec<u8>> = HashMap::new();
        for w in &words {
            map.insert(w, vec![7u8; w.len() * 10]);
        }
        total += map.values().map(Vec::len).sum::<usize>();
        let big = vec![1u8; 100_000 + r % 1000];
        total += big.iter().map(|&b| b as usize).sum::<usize>();
    }
    total
}

/// What `plugin_work(n)` returns, computed without allocating.
#[no_mangle]
pub extern "C" fn plugin_expected(n: usize) -> usize {
    let digits = |mut x: usize| {
        let mut d = 1;
        while x >= 10 {
            x /= 10;
            d += 1;
        }
        d
    };
    (0..n).map(|r| (0..100).map(|i| (digits(r) + 1 + digits(i)) * 10).sum::<usize>() + 100_000 + r % 1000).sum()
}

/// Whether the plugin's blocks are poolmalloc's (its statistics count them).
#[no_mangle]
pub extern "C" fn plugin_blocks_in_use() -> usize {
    let keep: Vec<Box<[u8; 40]>> = (0..1000).map(|_| Box::new([0u8; 40])).collect();
    let n = poolmalloc::stats().blocks_in_use();
    drop(keep);
    n
}
