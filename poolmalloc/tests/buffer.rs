//! `BufferPool` and `Buffer` through the public API: Read/Write round trips
//! (property-tested), length semantics, the retained-bytes cap, statistics,
//! plain allocations above the largest class, and buffers acquired on one
//! thread and dropped on another.

use poolmalloc::pools::{BufferPoolStats, CLASS_SIZES, DEFAULT_RETAINED_CAP, NUM_CLASSES};
use poolmalloc::{Buffer, BufferPool};
use proptest::prelude::*;
use std::io::{BufRead, Read, Write};
use std::sync::mpsc;

fn check_counts(st: &BufferPoolStats) {
    for c in &st.classes {
        assert_eq!(c.acquired, c.reused + c.allocated, "{st}");
    }
    let retained: usize = st.classes.iter().map(|c| c.retained * c.size).sum();
    assert_eq!(retained, st.retained_bytes, "{st}");
    assert!(st.retained_bytes <= st.retained_cap, "{st}");
}

#[test]
fn length_and_capacity() {
    let pool = BufferPool::new();
    assert_eq!(pool.retained_cap(), DEFAULT_RETAINED_CAP);
    let mut b = pool.acquire(1500);
    assert_eq!((b.len(), b.capacity(), b.position()), (1500, CLASS_SIZES[0], 0));
    b.clear();
    assert!(b.is_empty());
    b.set_len(b.capacity());
    assert_eq!(b.len(), CLASS_SIZES[0]);
    b.truncate(10);
    assert_eq!(b.len(), 10);
    let z = pool.acquire_zeroed(9000);
    assert_eq!(z.capacity(), CLASS_SIZES[1]);
    assert!(z.iter().all(|&x| x == 0));
    assert!(format!("{z:?}").contains("capacity: 16384"));
}

#[test]
fn write_then_read_round_trip() {
    let pool = BufferPool::new();
    let mut b = pool.acquire(0);
    write!(b, "line one\nline two\n").unwrap();
    b.write_all(&[0xFF; 3000]).unwrap();
    assert_eq!(b.capacity(), CLASS_SIZES[1], "grew into the next class");
    assert_eq!(b.len(), 18 + 3000);
    let mut line = String::new();
    b.read_line(&mut line).unwrap();
    assert_eq!(line, "line one\n");
    line.clear();
    b.read_line(&mut line).unwrap();
    assert_eq!(line, "line two\n");
    let mut rest = Vec::new();
    b.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, vec![0xFF; 3000]);
    assert_eq!(b.read(&mut [0; 8]).unwrap(), 0, "end of data");
    assert_eq!(b.remaining(), b"");
    b.set_position(5);
    assert_eq!(&b.remaining()[..4], b"one\n");
    drop(b);
    let st = pool.stats();
    assert_eq!((st.classes[0].retained, st.classes[1].retained), (1, 1));
    check_counts(&st);
}

#[test]
fn retained_bytes_cap_is_honoured() {
    let cap = 40 << 10;
    let pool = BufferPool::with_retained_cap(cap);
    let bufs: Vec<Buffer> = (0..10).map(|_| pool.acquire(10_000)).collect();
    drop(bufs);
    let st = pool.stats();
    assert_eq!(st.classes[1].retained, 2, "{st}");
    assert_eq!(st.classes[1].released, 8, "{st}");
    assert_eq!(st.retained_bytes, 2 * CLASS_SIZES[1]);
    check_counts(&st);
    // Small buffers fill the remaining room, and no more.
    drop((0..20).map(|_| pool.acquire(100)).collect::<Vec<_>>());
    let st = pool.stats();
    assert_eq!(st.classes[0].retained, (cap - 2 * CLASS_SIZES[1]) / CLASS_SIZES[0], "{st}");
    check_counts(&st);
    // A 64 KiB buffer never fits under this cap.
    drop(pool.acquire(60_000));
    assert_eq!(pool.stats().classes[2].retained, 0);
    pool.trim();
    let st = pool.stats();
    assert_eq!(st.retained_bytes, 0);
    check_counts(&st);
}

#[test]
fn storage_is_reused() {
    let pool = BufferPool::new();
    for _ in 0..100 {
        let mut b = pool.acquire(1500);
        b.fill(7);
    }
    let st = pool.stats();
    assert_eq!((st.classes[0].acquired, st.classes[0].allocated, st.classes[0].reused), (100, 1, 99));
    let text = st.to_string();
    assert!(text.contains("2048") && text.contains("retained"), "{text}");
}

#[test]
fn above_the_largest_class() {
    let pool = BufferPool::new();
    let n = CLASS_SIZES[NUM_CLASSES - 1] + 1;
    let mut b = pool.acquire(n);
    assert_eq!((b.len(), b.capacity()), (n, n));
    b.fill(1);
    b.write_all(&[2; 10]).unwrap();
    assert!(b.capacity() >= 2 * n, "large buffers grow geometrically");
    assert_eq!(b[n], 2);
    drop(b);
    let st = pool.stats();
    assert_eq!(st.large_acquired, 2);
    assert_eq!(st.retained_bytes, 0, "plain allocations are never retained");
}

#[test]
fn acquire_on_one_thread_release_on_another() {
    static POOL: BufferPool = BufferPool::new();
    let (tx, rx) = mpsc::sync_channel::<Buffer<'static>>(64);
    let reader = std::thread::spawn(move || {
        let mut total = 0u64;
        for mut b in rx {
            let mut v = Vec::new();
            b.read_to_end(&mut v).unwrap();
            let seq = u32::from_le_bytes(v[..4].try_into().unwrap());
            assert!(v[4..].iter().all(|&x| x == seq as u8), "payload of message {seq}");
            total += v.len() as u64;
        }
        total
    });
    let senders: Vec<_> = (0..4u32)
        .map(|t| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut sent = 0u64;
                for i in 0..2000u32 {
                    let seq = t * 10_000 + i;
                    let len = [64usize, 1500, 9000, 40_000][(i % 4) as usize];
                    let mut b = POOL.acquire(0);
                    b.write_all(&seq.to_le_bytes()).unwrap();
                    b.write_all(&vec![seq as u8; len]).unwrap();
                    sent += b.len() as u64;
                    tx.send(b).unwrap();
                }
                sent
            })
        })
        .collect();
    drop(tx);
    let sent: u64 = senders.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(reader.join().unwrap(), sent);
    let st = POOL.stats();
    check_counts(&st);
    let reused: u64 = st.classes.iter().map(|c| c.reused).sum();
    assert!(reused > 0, "{st}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trip(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20_000), 0..12),
                  read_sizes in proptest::collection::vec(1usize..5000, 1..8),
                  start in 0usize..70_000) {
        let pool = BufferPool::with_retained_cap(1 << 20);
        let mut b = pool.acquire(start);
        b.fill(0x5A);
        let mut expect = vec![0x5A; start];
        for c in &chunks {
            b.write_all(c).unwrap();
            expect.extend_from_slice(c);
        }
        prop_assert_eq!(&b[..], &expect[..]);
        prop_assert!(b.capacity() >= b.len());
        let mut got = Vec::new();
        let mut k = 0;
        loop {
            let mut chunk = vec![0; read_sizes[k % read_sizes.len()]];
            k += 1;
            let n = b.read(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
        }
        prop_assert_eq!(got, expect);
        drop(b);
        check_counts(&pool.stats());
    }
}
