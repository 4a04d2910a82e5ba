//! Multithreaded stress test, seeded and repeatable in its choices.
//!
//! T threads run R rounds each. Each step allocates an object of 1–16 words
//! (1 % of them up to 100 times larger), frees random earlier objects, and
//! swaps objects into a shared array of slots with an atomic exchange, so
//! objects migrate between threads and are freed far from where they were
//! made. Threads are recreated every round, and half of the slots survive
//! into the next round. Every word of an object holds a cookie derived from
//! the object's address and size, checked when the object is freed.
//!
//! CI runs `cargo test --release --test stress` (8 threads, a few rounds).
//! A full-size run: `cargo test --release --test stress -- --full`
//! (or `-- --threads N --rounds R --seed S`).

use poolmalloc::PoolMalloc;
use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::Arc;

#[global_allocator]
static GLOBAL: PoolMalloc = PoolMalloc;

const WORD: usize = std::mem::size_of::<u64>();

/// An object: word 0 holds its length in words; every word i > 0 holds
/// `cookie(addr, len) ^ i`.
struct Obj;

impl Obj {
    fn layout(words: usize) -> Layout {
        Layout::from_size_align(words * WORD, WORD).unwrap()
    }

    fn cookie(p: *mut u64, words: usize) -> u64 {
        (p as u64).rotate_left(17) ^ (words as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    fn make(words: usize) -> *mut u64 {
        // SAFETY: a valid non-zero layout.
        let p = unsafe { PoolMalloc.alloc(Self::layout(words)) }.cast::<u64>();
        assert!(!p.is_null(), "allocation of {words} words failed");
        let c = Self::cookie(p, words);
        // SAFETY: the block has `words` words.
        unsafe {
            p.write(words as u64);
            for i in 1..words {
                p.add(i).write(c ^ i as u64);
            }
        }
        p
    }

    fn free(p: *mut u64) {
        if p.is_null() {
            return;
        }
        // SAFETY: `p` is a live object made by `make`; its first word is its
        // length.
        unsafe {
            let words = p.read() as usize;
            assert!((1..=1600).contains(&words), "object at {p:p}: corrupt length word {words:#x}");
            let c = Self::cookie(p, words);
            for i in 1..words {
                let found = p.add(i).read();
                let expected = c ^ i as u64;
                assert_eq!(
                    found,
                    expected,
                    "object at {p:p} ({words} words): word {i} at {:p} expected {expected:#x} found {found:#x}",
                    p.add(i)
                );
            }
            PoolMalloc.dealloc(p.cast(), Self::layout(words));
        }
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

struct Config {
    threads: usize,
    rounds: usize,
    steps: usize,
    slots: usize,
    seed: u64,
}

fn worker(slots: &[AtomicPtr<u64>], steps: usize, seed: u64, ops: &AtomicU64) {
    let mut rng = Rng(seed | 1);
    let mut mine: Vec<*mut u64> = Vec::with_capacity(steps / 2);
    for _ in 0..steps {
        let r = rng.below(100);
        if r < 50 || mine.is_empty() {
            let mut words = 1 + rng.below(16);
            if rng.below(100) == 0 {
                words *= 1 + rng.below(100);
            }
            mine.push(Obj::make(words));
        } else if r < 80 {
            let i = rng.below(mine.len());
            Obj::free(mine.swap_remove(i));
        } else {
            let i = rng.below(mine.len());
            let s = rng.below(slots.len());
            let theirs = slots[s].swap(mine[i], Ordering::AcqRel);
            if theirs.is_null() {
                mine.swap_remove(i);
            } else {
                mine[i] = theirs;
            }
        }
    }
    ops.fetch_add(steps as u64, Ordering::Relaxed);
    for p in mine {
        Obj::free(p);
    }
}

fn run(cfg: &Config) {
    let slots: Arc<Vec<AtomicPtr<u64>>> =
        Arc::new((0..cfg.slots).map(|_| AtomicPtr::new(std::ptr::null_mut())).collect());
    let ops = Arc::new(AtomicU64::new(0));
    let mut rng = Rng(cfg.seed);
    for round in 0..cfg.rounds {
        let handles: Vec<_> = (0..cfg.threads)
            .map(|t| {
                let slots = slots.clone();
                let ops = ops.clone();
                let seed = rng.next() ^ (round * 1000 + t) as u64;
                let steps = cfg.steps;
                std::thread::spawn(move || worker(&slots, steps, seed, &ops))
            })
            .collect();
        for h in handles {
            h.join().expect("stress worker failed");
        }
        // Half of the slots survive into the next round.
        for s in slots.iter() {
            if rng.below(2) == 0 {
                Obj::free(s.swap(std::ptr::null_mut(), Ordering::AcqRel));
            }
        }
    }
    for s in slots.iter() {
        Obj::free(s.swap(std::ptr::null_mut(), Ordering::AcqRel));
    }
    let st = poolmalloc::stats();
    println!(
        "stress: {} threads x {} rounds, {} operations, {} cross-thread frees, {} pools abandoned, {} adopted",
        cfg.threads,
        cfg.rounds,
        ops.load(Ordering::Relaxed),
        st.heaps.remote_frees,
        st.heaps.pools_abandoned_total,
        st.heaps.pools_adopted_total
    );
    assert!(st.heaps.remote_frees > 0, "objects migrated between threads");
    poolmalloc::trim();
    let st = poolmalloc::stats();
    assert!(st.adds_up(), "{st}");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut cfg = Config { threads: 8, rounds: 6, steps: 60_000, slots: 4096, seed: 0x5eed };
    let mut i = 1;
    while i < args.len() {
        let val = || args.get(i + 1).and_then(|v| v.parse::<u64>().ok()).expect("option needs a number");
        match args[i].as_str() {
            "--full" => {
                cfg.threads = 32;
                cfg.rounds = 50;
                cfg.steps = 400_000;
            }
            "--threads" => {
                cfg.threads = val() as usize;
                i += 1;
            }
            "--rounds" => {
                cfg.rounds = val() as usize;
                i += 1;
            }
            "--seed" => {
                cfg.seed = val();
                i += 1;
            }
            _ => {} // cargo test passes its own flags through
        }
        i += 1;
    }
    run(&cfg);
    println!("stress: ok");
}
