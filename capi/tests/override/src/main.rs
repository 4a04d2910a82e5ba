//! A program whose C `malloc` is poolmalloc through the `override`
//! feature, with no preloading: built static (glibc with `crt-static`, or
//! musl) by `capi/tests/c_abi.rs`. It checks, by poolmalloc's own
//! ownership map and statistics, that three kinds of allocation land in
//! poolmalloc:
//! - the program's own calls to the C `malloc`, `calloc` and `realloc`;
//! - allocations the C library makes for itself (`strdup`);
//! - Rust's default global allocator, `std::alloc::System`, which calls
//!   the C `malloc`.

use poolmalloc::internals::owns;

fn main() {
    assert!(poolmalloc::OVERRIDE, "built without the override feature");
    let before = poolmalloc::stats();
    let counted = poolmalloc::counters();

    // SAFETY: plain C allocation calls; every block is freed once below.
    let (m, c, r, d) = unsafe {
        let m = libc::malloc(100).cast::<u8>();
        let c = libc::calloc(1000, 40).cast::<u8>();
        let r = libc::realloc(libc::malloc(10), 300_000).cast::<u8>();
        let d = libc::strdup(c"the C library allocates this".as_ptr()).cast::<u8>();
        (m, c, r, d)
    };
    for (what, p) in [("malloc", m), ("calloc", c), ("realloc", r), ("strdup", d)] {
        assert!(!p.is_null() && owns(p), "{what} returned {p:p}, not a poolmalloc block");
    }
    // SAFETY: `c` is 40,000 bytes that calloc zeroed.
    assert!(unsafe { std::slice::from_raw_parts(c, 40_000) }.iter().all(|&b| b == 0));

    // Rust's System allocator, the default global allocator.
    let v: Vec<u64> = (0..50_000).collect();
    assert!(owns(v.as_ptr().cast_mut().cast()), "a Vec's buffer is not a poolmalloc block");
    let boxes: Vec<Box<[u8; 48]>> = (0..10_000).map(|i| Box::new([i as u8; 48])).collect();

    let during = poolmalloc::stats();
    let live = during.blocks_in_use() - before.blocks_in_use();
    assert!(live >= 10_000 + 4, "poolmalloc's statistics show {live} more blocks in use");
    let grew = poolmalloc::counters().allocated - counted.allocated;
    assert!(grew >= 10_000 * 48 + 400_000, "allocated grew by only {grew} bytes");

    drop(boxes);
    drop(v);
    // SAFETY: each block from the calls above, freed once.
    unsafe {
        for p in [m, c, r, d] {
            libc::free(p.cast());
        }
    }
    let after = poolmalloc::stats();
    assert!(after.blocks_in_use() < during.blocks_in_use());
    println!(
        "override: C malloc, calloc, realloc, strdup and std's System allocator all served by poolmalloc ({live} blocks)"
    );
}
