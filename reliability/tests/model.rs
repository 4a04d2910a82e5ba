//! Every front against the shadow model (`poolmalloc_reliability::model`),
//! driven by proptest: random operation sequences, shrunk to a minimal
//! failing one on a divergence.
//!
//! Each front runs until it has applied `POOLMALLOC_MODEL_OPS` operations
//! (default 1,000,000); the count is printed. A longer run:
//! `POOLMALLOC_MODEL_OPS=10000000 cargo test --release -p poolmalloc-reliability --test model -- --nocapture`.

use poolmalloc::{DebugPoolMalloc, LockedPoolMalloc, PoolMalloc};
use poolmalloc_reliability::cdylib;
use poolmalloc_reliability::fronts::{CApi, Global, HeapFront, TypedFront, C};
use poolmalloc_reliability::model::{self, Front, Op};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestError, TestRunner};
use std::cell::Cell;
use std::path::Path;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<u32>(), any::<u8>(), any::<bool>()).prop_map(|(size, align, zeroed)| Op::Alloc { size, align, zeroed }),
        1 => Just(Op::ZeroSize),
        2 => (any::<u16>(), any::<u32>()).prop_map(|(pick, size)| Op::Realloc { pick, size }),
        5 => any::<u16>().prop_map(|pick| Op::Free { pick }),
        1 => any::<u16>().prop_map(|pick| Op::UsableSize { pick }),
    ]
}

const MAX_LEN: usize = 1000;

fn target_ops() -> u64 {
    match std::env::var("POOLMALLOC_MODEL_OPS") {
        Ok(v) => v.parse().expect("POOLMALLOC_MODEL_OPS is a number"),
        Err(_) => 1_000_000,
    }
}

/// Runs sequences against `front` until the target count of operations.
fn drive<F: Front>(name: &str, front: &mut F, ops_per_case_scale: u64) {
    let target = target_ops() / ops_per_case_scale;
    let done = Cell::new(0u64);
    let cases = Cell::new(0u64);
    let mut runner = TestRunner::new(Config { cases: u32::MAX, failure_persistence: None, ..Config::default() });
    let front = std::cell::RefCell::new(front);
    while done.get() < target {
        let mut one = TestRunner::new_with_rng(
            Config { cases: 64, failure_persistence: None, ..Config::default() },
            runner.new_rng(),
        );
        let r = one.run(&prop::collection::vec(op(), 1..MAX_LEN), |ops| {
            let counts = model::run(&mut **front.borrow_mut(), &ops).map_err(TestCaseError::fail)?;
            done.set(done.get() + counts.ops);
            cases.set(cases.get() + 1);
            Ok(())
        });
        match r {
            Ok(()) => {}
            Err(TestError::Fail(why, ops)) => panic!("{name}: divergence: {why}\nminimal sequence: {ops:?}"),
            Err(e) => panic!("{name}: {e}"),
        }
    }
    eprintln!("{name}: {} operations in {} sequences, 0 divergences", done.get(), cases.get());
}

#[test]
fn rust_global_allocator() {
    drive("PoolMalloc", &mut Global { alloc: PoolMalloc, usable: true }, 1);
}

#[test]
fn rust_locked_allocator() {
    drive("LockedPoolMalloc", &mut Global { alloc: LockedPoolMalloc, usable: true }, 4);
}

#[test]
fn rust_debug_allocator() {
    drive("DebugPoolMalloc", &mut Global { alloc: DebugPoolMalloc, usable: false }, 10);
}

#[test]
fn c_abi() {
    let lib = cdylib::library(Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target dir"));
    let api = CApi::load(lib).expect("load libpoolmalloc.so");
    drive("C ABI", &mut C::new(&api), 1);
}

#[test]
fn first_class_heap() {
    drive("Heap", &mut HeapFront::new(), 1);
}

#[test]
fn typed_pools() {
    drive("TypedPool", &mut TypedFront::default(), 1);
}
