//! `TypedPool`s against the shadow model.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poolmalloc_reliability::fronts::TypedFront;
use poolmalloc_reliability::model::{self, Op};

fuzz_target!(|ops: Vec<Op>| {
    if let Err(e) = model::run(&mut TypedFront::default(), &ops) {
        panic!("divergence: {e}");
    }
});
