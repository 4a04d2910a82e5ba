//! A first-class heap: collections live in it, and dropping it frees them
//! all at once.
//!
//! `cargo run --release -p poolmalloc --example first_class_heap`

use allocator_api2::vec::Vec as HeapVec;
use poolmalloc::Heap;

/// Parses one request's lines into a table that lives in `heap`.
fn parse<'h>(heap: &'h Heap, request: &str) -> HeapVec<(&'h str, usize), &'h Heap> {
    let mut fields = HeapVec::new_in(heap);
    for line in request.lines() {
        let (key, value) = line.split_once(':').expect("key: value");
        // Copy the key into the heap, so that it lives as long as the table.
        let mut key_copy = HeapVec::new_in(heap);
        key_copy.extend_from_slice(key.trim().as_bytes());
        let key_copy: &'h [u8] = key_copy.leak();
        let key_copy = std::str::from_utf8(key_copy).expect("a str's bytes");
        fields.push((key_copy, value.trim().parse().expect("a number")));
    }
    fields
}

fn main() {
    for round in 0..1_000 {
        // One heap per request: everything parsed goes with it.
        let heap = Heap::new();
        let request = format!("width: {round}\nheight: 20\ndepth: 3");
        let fields = parse(&heap, &request);
        assert_eq!(fields.len(), 3);
        assert_eq!(fields[0], ("width", round));
        assert!(heap.blocks_in_use() >= 4);
        drop(fields);
        // The leaked keys are freed here, with the heap's pools.
        drop(heap);
    }
    println!("1000 requests parsed, each in its own heap");
}
