//! A first-class `Heap` against the shadow model; each input gets a new heap,
//! dropped at the end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poolmalloc_reliability::fronts::HeapFront;
use poolmalloc_reliability::model::{self, Op};

fuzz_target!(|ops: Vec<Op>| {
    if let Err(e) = model::run(&mut HeapFront::new(), &ops) {
        panic!("divergence: {e}");
    }
});
