//! The heap profiler's end-to-end Rust program, the counterpart of
//! `tests/c/profile.c`: built with `-C force-frame-pointers=yes`, with
//! `PoolMalloc` as its global allocator, it starts the profiler with
//! `poolmalloc::profile::start()`, then one function allocates 50 MB in
//! 1 KiB blocks, another 5 MB, a third leaks 10 MB in 4 KiB blocks and a
//! fourth keeps four 3 MiB (huge) blocks; `profile::dump(path)` writes the
//! raw profile. It prints each function's address, so the test can tell
//! the stacks apart without a symboliser.

use poolmalloc::PoolMalloc;
use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;

#[global_allocator]
static GLOBAL: PoolMalloc = PoolMalloc;

#[inline(never)]
fn allocates_50mb() {
    let l = Layout::from_size_align(1024, 8).unwrap();
    for _ in 0..50_000 {
        // SAFETY: a valid layout; freed at once with it.
        unsafe { GLOBAL.dealloc(black_box(GLOBAL.alloc(l)), l) };
    }
}

#[inline(never)]
fn allocates_5mb() {
    let l = Layout::from_size_align(1024, 8).unwrap();
    for _ in 0..5_000 {
        // SAFETY: as above.
        unsafe { GLOBAL.dealloc(black_box(GLOBAL.alloc(l)), l) };
    }
}

#[inline(never)]
fn leaks_10mb() {
    let l = Layout::from_size_align(4096, 8).unwrap();
    for _ in 0..2_500 {
        // SAFETY: a valid layout; the block is leaked on purpose.
        black_box(unsafe { GLOBAL.alloc(l) });
    }
}

#[inline(never)]
fn keeps_huge() -> [usize; 4] {
    let l = Layout::from_size_align(3 << 20, 16).unwrap();
    // SAFETY: a valid layout; the blocks stay live to the end.
    [0; 4].map(|_| black_box(unsafe { GLOBAL.alloc(l) }) as usize)
}

fn main() {
    let path = std::env::args().nth(1).expect("usage: PROFILE-PATH");
    for (name, f) in [
        ("allocates_50mb", allocates_50mb as fn()),
        ("allocates_5mb", allocates_5mb as fn()),
        ("leaks_10mb", leaks_10mb as fn()),
    ] {
        println!("{name} {:#x}", f as usize);
    }
    println!("keeps_huge {:#x}", keeps_huge as fn() -> [usize; 4] as usize);
    poolmalloc::profile::start().expect("start the profiler");
    allocates_50mb();
    allocates_5mb();
    leaks_10mb();
    let kept = keeps_huge();
    assert!(kept.iter().all(|&p| p != 0));
    poolmalloc::profile::dump(&path).expect("write the profile");
}
