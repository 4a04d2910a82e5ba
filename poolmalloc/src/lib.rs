//! poolmalloc: a small-object memory allocator built on the layered pool
//! design of CPython's pymalloc (arenas split into pools of equal-size
//! blocks with free lists), with per-thread heaps instead of a global
//! interpreter lock, memory returned to the OS, and fronts for Rust and C.
//!
//! ```
//! #[global_allocator]
//! static GLOBAL: poolmalloc::PoolMalloc = poolmalloc::PoolMalloc;
//!
//! let mut m = std::collections::HashMap::new();
//! m.insert("key", vec![1, 2, 3]);
//! assert_eq!(m["key"].len(), 3);
//! ```
//!
//! # Layers
//!
//! Each layer uses only the layers below it; no module imports upward.
//!
//! | # | module | owns |
//! |---|---|---|
//! | 0 | [`os`] | mmap, madvise, munmap, mremap; the page size |
//! | 1 | [`ownership`] | address → arena / large span / not ours, in O(1) |
//! | 2 | [`arena`] | 4 MiB aligned arenas carved into 64 pools; fullest-first; release |
//! | 3 | [`pool`], [`remote`] | one size class per pool; local, remote and bump free lists |
//! | 4 | [`size_class`] | the class table and the branch-free lookup |
//! | 5 | [`heap`] | per-class pool lists; taking and returning pools; abandon/adopt |
//! | 6 | [`thread`] | per-thread heaps, locked mode, thread exit, fork |
//! | 7 | [`large`] | spans above the largest class; span cache; mremap |
//! | 8 | [`alloc`], [`global`], [`owned`] | routing; `PoolMalloc`, `LockedPoolMalloc`; first-class `Heap` |
//! | 9 | [`pools`] | `TypedPool<T>` free lists with per-thread caches; `BufferPool` byte buffers; on the public API only |
//! | x | [`options`], [`mod@stats`], [`debug`], [`report`], [`lock`], [`sync`] | cross-cutting |
//!
//! Layer 4 is pure data used from layer 3 up. [`design`] holds the design
//! notes: the layer diagram, a glossary and the state machines.
//!
//! # Rules inside the allocator
//!
//! No code reachable from an allocation entry point allocates, panics across
//! the boundary, formats with `format!`, or reads `std::env`. Options are read
//! with libc's `getenv`; messages are built in fixed stack buffers
//! ([`report`]). Failure is reported as a null pointer.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod remote;
pub mod sync;

/// Marks every item it is given `#[cfg(not(loom))]`: under `--cfg loom` only
/// the lock-free remote-free list (and the atomics facade it uses) is built,
/// for the model checker (`tests/loom_remote.rs`).
macro_rules! not_under_loom {
    ($($item:item)*) => { $(#[cfg(not(loom))] $item)* };
}

not_under_loom! {
    pub mod alloc;
    pub mod arena;
    pub mod debug;
    pub mod design;
    pub mod global;
    pub mod heap;
    pub mod large;
    pub mod lock;
    pub mod options;
    pub mod os;
    pub mod owned;
    pub mod ownership;
    pub mod pool;
    pub mod pools;
    pub mod report;
    pub mod size_class;
    pub mod stats;
    pub mod thread;

    pub use debug::DebugPoolMalloc;
    pub use global::{LockedPoolMalloc, PoolMalloc};
    pub use owned::Heap;
    pub use pools::{Buffer, BufferPool, PoolBox, TypedPool};
    pub use stats::{stats, Stats};

    /// The buffer pools under their earlier path; see [`pools::buffer`].
    #[doc(no_inline)]
    pub use pools::buffer;
    /// The typed pools under their earlier path; see [`pools::typed`].
    #[doc(no_inline)]
    pub use pools::typed;
}

/// The library version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[cfg(not(loom))]
/// Returns as much free memory to the OS as possible, at once: empty pools
/// of the calling thread's heap and of the locked heap go back to their
/// arenas, abandoned pools are swept, free pools are decommitted, the spare
/// arena is unmapped and cached large spans are released.
pub fn trim() {
    thread::trim();
}
