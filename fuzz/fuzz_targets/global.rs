//! The Rust global allocator against the shadow model. `PoolMalloc` is also
//! this program's global allocator, so the harness's own allocations go
//! through it too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poolmalloc::PoolMalloc;
use poolmalloc_reliability::fronts::Global;
use poolmalloc_reliability::model::{self, Op};

#[global_allocator]
static GLOBAL: PoolMalloc = PoolMalloc;

fuzz_target!(|ops: Vec<Op>| {
    if let Err(e) = model::run(&mut Global { alloc: PoolMalloc, usable: true }, &ops) {
        panic!("divergence: {e}");
    }
});
