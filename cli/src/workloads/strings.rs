//! `strings`: short strings and small vectors that grow by realloc, freed in
//! a mixed order (the pattern of espresso). Single thread.
//!
//! A table of slots holds byte strings and `u32` vectors. Each operation
//! builds a string word by word, appends to one, joins two, splits one into
//! pieces, grows a vector element by element, or frees a run of slots in a
//! shuffled order. Buffers grow by 1.5× through `realloc`, so blocks move
//! within and across size classes. Every buffer is hashed when it is freed.

use super::{alloc, layout, mix, realloc, timed, Outcome, Params, WorkResult, SEED};
use crate::rng::prelude::*;
use std::alloc::GlobalAlloc;

const SLOTS: usize = 4096;
/// Strings longer than this are freed instead of appended to.
const MAX_STRING: usize = 2048;
const WORDS: &[&[u8]] = &[
    b"a",
    b"of",
    b"the",
    b"cube",
    b"cover",
    b"minterm",
    b"espresso",
    b"literal",
    b"don't-care",
    b"x",
    b"prime",
    b"implicant",
    b"on-set",
    b"off-set",
    b"tautology",
    b"reduce",
];

/// A growable buffer of `elem`-byte elements, allocated from the allocator
/// under test.
struct Buf {
    ptr: *mut u8,
    /// Bytes in use.
    len: usize,
    /// Bytes allocated.
    cap: usize,
    /// Element size and alignment: 1 for strings, 4 for vectors.
    elem: usize,
}

impl Buf {
    fn with_capacity<A: GlobalAlloc>(a: &A, cap: usize, elem: usize) -> Buf {
        let cap = cap.max(elem);
        Buf { ptr: alloc(a, layout(cap, elem)), len: 0, cap, elem }
    }

    fn push<A: GlobalAlloc>(&mut self, a: &A, bytes: &[u8]) {
        let need = self.len + bytes.len();
        if need > self.cap {
            let new_cap = (self.cap + self.cap / 2 + 8).max(need).next_multiple_of(self.elem);
            // SAFETY: `ptr` is a live block of `cap` bytes with this alignment.
            self.ptr = unsafe { realloc(a, self.ptr, layout(self.cap, self.elem), new_cap) };
            self.cap = new_cap;
        }
        // SAFETY: `need <= cap`; the source is outside the block.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.add(self.len), bytes.len()) };
        self.len = need;
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the first `len` bytes were written by `push`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// Hashes the contents and frees the block.
    fn free<A: GlobalAlloc>(self, a: &A) -> u64 {
        let h = self.bytes().iter().fold(self.len as u64, |h, &b| mix(h, u64::from(b)));
        // SAFETY: the live block of `cap` bytes allocated with this alignment.
        unsafe { a.dealloc(self.ptr, layout(self.cap, self.elem)) };
        h
    }
}

fn put<A: GlobalAlloc>(a: &A, slots: &mut [Option<Buf>], i: usize, b: Buf, checksum: &mut u64) {
    if let Some(old) = slots[i].replace(b) {
        *checksum = mix(*checksum, old.free(a));
    }
}

fn build_string<A: GlobalAlloc>(a: &A, rng: &mut Rng, words: usize) -> Buf {
    let mut s = Buf::with_capacity(a, rng.random_range(4..=24), 1);
    for w in 0..words {
        if w > 0 {
            s.push(a, b" ");
        }
        s.push(a, WORDS[rng.random_range(0..WORDS.len())]);
    }
    s
}

pub fn run<A: GlobalAlloc + Sync>(a: &'static A, p: &Params) -> WorkResult {
    let ops = p.pick(250_000, 6_000_000);
    let mut rng = Rng::new(SEED ^ 2);
    let mut slots: Vec<Option<Buf>> = (0..SLOTS).map(|_| None).collect();
    let mut order: Vec<usize> = Vec::with_capacity(64);
    let mut checksum = 0u64;

    let (seconds, ()) = timed(|| {
        for _ in 0..ops {
            let i = rng.random_range(0..SLOTS);
            match rng.random_range(0..10) {
                0..=2 => {
                    let words = rng.random_range(1..=6);
                    let s = build_string(a, &mut rng, words);
                    put(a, &mut slots, i, s, &mut checksum);
                }
                3..=4 => match slots[i].as_mut() {
                    Some(s) if s.elem == 1 && s.len < MAX_STRING => {
                        for _ in 0..rng.random_range(1..=8) {
                            s.push(a, b" ");
                            s.push(a, WORDS[rng.random_range(0..WORDS.len())]);
                        }
                    }
                    _ => {
                        let s = build_string(a, &mut rng, 2);
                        put(a, &mut slots, i, s, &mut checksum);
                    }
                },
                5 => {
                    // Join two strings into one exactly sized block.
                    let j = rng.random_range(0..SLOTS);
                    let (x, y) = (
                        slots[i].as_ref().map_or(&[][..], |s| s.bytes()),
                        slots[j].as_ref().map_or(&[][..], |s| s.bytes()),
                    );
                    let mut joined = Buf::with_capacity(a, x.len() + y.len() + 1, 1);
                    joined.push(a, x);
                    joined.push(a, b",");
                    joined.push(a, y);
                    put(a, &mut slots, rng.random_range(0..SLOTS), joined, &mut checksum);
                }
                6 => {
                    // Split a string at its spaces into the following slots.
                    let Some(s) = slots[i].take() else { continue };
                    let mut target = i;
                    for piece in s.bytes().split(|&b| b == b' ' || b == b',').take(4) {
                        let mut part = Buf::with_capacity(a, piece.len() + 1, 1);
                        part.push(a, piece);
                        target = (target + 1) % SLOTS;
                        put(a, &mut slots, target, part, &mut checksum);
                    }
                    checksum = mix(checksum, s.free(a));
                }
                7..=8 => {
                    // A small vector of u32 growing element by element.
                    let mut v = Buf::with_capacity(a, 4, 4);
                    for k in 0..rng.random_range(1..=96) as u32 {
                        v.push(a, &(k ^ i as u32).to_le_bytes());
                    }
                    put(a, &mut slots, i, v, &mut checksum);
                }
                _ => {
                    // Free a run of slots in shuffled order.
                    let run = rng.random_range(4..=48);
                    order.clear();
                    order.extend((0..run).map(|k| (i + k) % SLOTS));
                    for k in (1..order.len()).rev() {
                        order.swap(k, rng.random_range(0..k + 1));
                    }
                    for &k in &order {
                        if let Some(s) = slots[k].take() {
                            checksum = mix(checksum, s.free(a));
                        }
                    }
                }
            }
        }
    });

    for s in slots.into_iter().flatten() {
        checksum = mix(checksum, s.free(a));
    }
    Ok(Outcome { seconds, ops: ops as u64, checksum, memory: None })
}
