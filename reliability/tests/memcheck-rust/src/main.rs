//! A Rust program whose global allocator is `PoolMalloc` built with the
//! `valgrind` feature, run under memcheck by `reliability/tests/memcheck.rs`.
//!
//! `clean`: collections of many sizes, blocks whose second word the program
//! never writes (the word poolmalloc's double-free check reads on `free`),
//! `realloc` growth and shrinking, zeroed allocation, huge blocks, and two
//! threads that free each other's blocks. memcheck must report nothing.
//!
//! `leak`: the same, then one 100-byte block whose only pointer is
//! overwritten; memcheck's leak check, which knows poolmalloc's blocks only
//! through the client requests, must find it definitely lost.
//!
//! `uaf`: reads a byte of a freed 64-byte block, past the 16 bytes
//! poolmalloc keeps defined, through a volatile read; memcheck must report
//! an invalid read.

use poolmalloc::PoolMalloc;
use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::sync::mpsc;
use std::thread;

#[global_allocator]
static GLOBAL: PoolMalloc = PoolMalloc;

fn work() -> u64 {
    let mut sum = 0u64;
    // Blocks of 16 bytes and more whose second word stays unwritten.
    let small: Vec<Box<u64>> = (0..10_000u64).map(Box::new).collect();
    sum += small.iter().map(|b| **b).sum::<u64>();
    drop(small);
    let mut v: Vec<u32> = Vec::new();
    for i in 0..200_000u32 {
        v.push(i); // realloc growth through every class and into huge blocks
    }
    v.truncate(10);
    v.shrink_to_fit();
    sum += u64::from(v.iter().sum::<u32>());
    let zeroed = vec![0u8; 3 << 20];
    sum += zeroed.iter().map(|&b| u64::from(b)).sum::<u64>();
    let mut m = HashMap::new();
    let mut t = BTreeMap::new();
    for i in 0..20_000u64 {
        m.insert(format!("key {i}"), vec![i; (i % 37) as usize]);
        t.insert(i, i.to_string());
    }
    sum += m.values().map(|v| v.len() as u64).sum::<u64>() + t.len() as u64;
    // Two threads free each other's blocks.
    let (tx, rx) = mpsc::channel::<Vec<Box<[u8; 48]>>>();
    let other = thread::spawn(move || {
        let mine: Vec<Box<[u8; 48]>> = (0..5_000).map(|i| Box::new([i as u8; 48])).collect();
        let theirs = rx.recv().unwrap();
        theirs.iter().map(|b| u64::from(b[0])).sum::<u64>() + mine.len() as u64
    });
    tx.send((0..5_000).map(|i| Box::new([i as u8; 48])).collect()).unwrap();
    sum += other.join().unwrap();
    sum
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let sum = work();
    match mode.as_str() {
        "clean" => {}
        "leak" => {
            let p = Box::into_raw(Box::new([7u8; 100]));
            // Keep only a disguised copy: the block is unreachable.
            black_box(p as usize ^ 0x5a5a_5a5a_5a5a_5a5a);
        }
        "uaf" => {
            let b = Box::new([1u8; 64]);
            let p = Box::into_raw(b).cast::<u8>();
            // SAFETY: `p` came from Box::into_raw of this type.
            drop(unsafe { Box::from_raw(p.cast::<[u8; 64]>()) });
            // The use after free memcheck must report (a read of memory
            // poolmalloc still maps, so it does not fault).
            // SAFETY: not safe, on purpose: this is the fault under test.
            black_box(unsafe { p.add(40).read_volatile() });
        }
        other => panic!("unknown mode {other:?}"),
    }
    println!("memcheck-rust {mode}: {sum}");
}
