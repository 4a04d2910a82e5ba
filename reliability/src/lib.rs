//! poolmalloc's reliability suite.
//!
//! * [`model`]: a shadow model that drives any allocation front through a
//!   sequence of operations and checks every result (patterns, overlap,
//!   alignment, usable sizes, zeroing);
//! * [`fronts`]: the fronts it drives: the Rust global allocator (per-thread
//!   and locked), the C ABI of `libpoolmalloc.so`, first-class `Heap`s and
//!   `TypedPool`s;
//! * [`bad`]: bad-input cases (wild, foreign, misaligned and double-freed
//!   pointers), each run in a child process that must end in the documented
//!   report and `SIGABRT`;
//! * [`cdylib`]: finds or builds `libpoolmalloc.so`;
//! * [`child`]: waits for a forked child with a time limit.
//!
//! The same harness runs under `proptest` in `cargo test` and under
//! libFuzzer through the targets in `fuzz/`.

pub mod bad;
pub mod cdylib;
pub mod child;
pub mod fronts;
pub mod model;
