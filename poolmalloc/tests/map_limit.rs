//! At the kernel's map-count limit (`vm.max_map_count`), `munmap` of part of
//! a mapping fails: it would split the mapping in two. poolmalloc's arenas
//! sit next to each other and the kernel merges them into one mapping, so
//! giving back an arena in the middle is such a split. This test uses up the
//! map count in a child process, then frees medium blocks spread over many
//! arenas and calls `trim()`: the refused unmaps must be counted, the arenas
//! kept (and reused), the statistics must still add up, and allocation must
//! go on working.
//!
//! Without arguments this program runs itself as a child with
//! `POOLMALLOC_TEST_MAP_LIMIT=1` and checks the child's exit.

use poolmalloc::PoolMalloc;
use std::alloc::{GlobalAlloc, Layout};
use std::process::Command;

#[global_allocator]
static GLOBAL: PoolMalloc = PoolMalloc;

/// Maps single pages, alternating their protection so that the kernel
/// cannot merge neighbours, until `mmap` fails. Returns how many it made.
fn use_up_the_map_count(pages: &mut Vec<usize>) -> usize {
    let mut n = 0;
    while pages.len() < pages.capacity() {
        let prot = if n % 2 == 0 { libc::PROT_READ } else { libc::PROT_READ | libc::PROT_WRITE };
        // SAFETY: an anonymous mapping with no address hint.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), 4096, prot, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0) };
        if p == libc::MAP_FAILED {
            break;
        }
        pages.push(p as usize);
        n += 1;
    }
    n
}

fn child() {
    let limit: usize = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(65_530);
    if limit > 1_000_000 {
        println!("map_limit: vm.max_map_count is {limit}; skipped (too many mappings to use up)");
        return;
    }
    let mut pages: Vec<usize> = Vec::with_capacity(limit + 16);
    let mut held: Vec<*mut u8> = Vec::with_capacity(4096);
    // 3,000 blocks of 40,000 B fill about 33 arenas, which the kernel merges
    // into a few mappings.
    let l = Layout::from_size_align(40_000, 8).unwrap();
    for _ in 0..3000 {
        // SAFETY: a valid layout.
        let p = unsafe { PoolMalloc.alloc(l) };
        assert!(!p.is_null());
        // SAFETY: a fresh block.
        unsafe { p.write_bytes(0x11, 64) };
        held.push(p);
    }
    let made = use_up_the_map_count(&mut pages);
    // Every block freed: the arenas are all free, and trim() gives them
    // back. Those in the middle of a merged mapping cannot be unmapped.
    for &p in &held {
        // SAFETY: allocated above with `l`.
        unsafe { PoolMalloc.dealloc(p, l) };
    }
    held.clear();
    poolmalloc::trim();
    let s = poolmalloc::stats();
    assert!(s.adds_up(), "statistics do not add up after refused unmaps:\n{s}");
    assert!(s.os.munmap_failures > 0, "no munmap was refused at the limit ({made} pages mapped)");
    // The kept arenas are used again: with the map count still used up
    // (new arenas may be impossible to map), at least as many blocks as the
    // kept arenas hold can be allocated.
    let kept = s.arenas.current;
    while held.len() < 3000 {
        // SAFETY: a valid layout.
        let p = unsafe { PoolMalloc.alloc(l) };
        if p.is_null() {
            break;
        }
        held.push(p);
    }
    let want = 3000.min(kept.saturating_sub(1) * 90);
    assert!(held.len() >= want, "only {} blocks in {kept} kept arenas after refused unmaps", held.len());
    for &p in &held {
        // SAFETY: allocated above with `l`.
        unsafe { PoolMalloc.dealloc(p, l) };
    }
    for &p in &pages {
        // SAFETY: our own single-page mappings.
        unsafe { libc::munmap(p as *mut libc::c_void, 4096) };
    }
    poolmalloc::trim();
    let s = poolmalloc::stats();
    assert!(s.adds_up(), "statistics do not add up after the final trim:\n{s}");
    println!(
        "map_limit: {} munmap calls refused after {made} single pages used up the map count; {} arenas kept and reused; {} bytes kept unreleased",
        s.os.munmap_failures, s.arenas.current, s.os.unreleased
    );
}

fn main() {
    if std::env::var_os("POOLMALLOC_TEST_MAP_LIMIT").is_some() {
        child();
        return;
    }
    let me = std::env::current_exe().unwrap();
    let out = Command::new(me).env("POOLMALLOC_TEST_MAP_LIMIT", "1").output().expect("spawn");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "map-limit child failed: {}", out.status);
}
