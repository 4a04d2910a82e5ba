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
//! The layer diagram, the table of where each layer lives, and the
//! exceptions to the layer order are in [`design`]; a test checks the
//! crate's imports against that diagram.
//!
//! # Public API
//!
//! [`PoolMalloc`], [`LockedPoolMalloc`] and [`DebugPoolMalloc`] (global
//! allocators), [`Heap`] (first-class heaps), [`stats()`](stats::stats) and
//! [`trim`], [`options`], the heap profiler ([`profile`]), and the object
//! and buffer pools. Everything else is
//! private to the crate, except the `#[doc(hidden)]` `internals` module that
//! the C library and the tests use.
//!
//! # Rules inside the allocator
//!
//! No code reachable from an allocation entry point allocates, panics across
//! the boundary, formats with `format!`, or reads `std::env`. Options are read
//! with libc's `getenv`; messages are built in fixed stack buffers
//! ([`report`]). Failure is reported as a null pointer.

#![deny(unsafe_op_in_unsafe_fn)]

pub(crate) mod abandoned;
pub(crate) mod handover;
pub(crate) mod list;
pub(crate) mod lock;
pub(crate) mod remote;
pub(crate) mod sync;
pub(crate) mod tid;

/// Marks every item it is given `#[cfg(not(loom))]`: under `--cfg loom` only
/// the pieces that threads use to hand blocks and pools to each other are
/// built (the remote-free list, the hand-over words, the abandoned lists,
/// their lock and list type, and the facade they use), for the model
/// checker (`tests/loom_remote.rs`, `tests/loom_handover.rs`).
macro_rules! not_under_loom {
    ($($item:item)*) => { $(#[cfg(not(loom))] $item)* };
}

not_under_loom! {
    pub(crate) mod arena;
    pub mod cabi;
    pub(crate) mod debug;
    pub mod design;
    pub(crate) mod engine;
    pub(crate) mod fault;
    pub(crate) mod front;
    pub(crate) mod global;
    pub(crate) mod heap;
    pub(crate) mod large;
    pub(crate) mod lifecycle;
    pub mod options;
    pub(crate) mod os;
    pub(crate) mod owned;
    pub(crate) mod ownership;
    pub(crate) mod pool;
    pub mod pools;
    pub(crate) mod prof;
    pub mod profile;
    pub(crate) mod registry;
    pub(crate) mod report;
    pub(crate) mod size_class;
    pub mod stats;
    pub(crate) mod thread;

    pub use debug::DebugPoolMalloc;
    pub use global::{LockedPoolMalloc, PoolMalloc};
    pub use owned::Heap;
    pub use pools::{Buffer, BufferPool, ObjectPool, PoolBox, Pooled, Recycle, TypedPool};
    pub use stats::{Counters, Stats};

    /// The buffer pools under their earlier path; see [`pools::buffer`].
    #[doc(no_inline)]
    pub use pools::buffer;
    /// The typed pools under their earlier path; see [`pools::typed`].
    #[doc(no_inline)]
    pub use pools::typed;
}

/// The library version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Whether this build has the `override` feature: [`cabi`]'s functions
/// are then exported as the process's `malloc`, `free` and the rest.
pub const OVERRIDE: bool = cfg!(feature = "override");

#[cfg(not(loom))]
/// Takes a snapshot of the whole allocator (see [`Stats`]).
///
/// In secure mode (`POOLMALLOC_SECURE=1`), freed blocks are held back for a
/// while before they go back to their pools; this first sends the calling
/// thread's held-back blocks back, so its own frees are all counted. Other
/// threads' held-back blocks (at most 32 each) still count as in use.
pub fn stats() -> Stats {
    lifecycle::release_held();
    stats::stats()
}

#[cfg(not(loom))]
/// Reads the process's byte counters (allocated, active, mapped and
/// resident): O(1), with no lock and no walk, cheap enough to read on
/// every request of a server. See [`Counters`] for how fresh each figure
/// is; [`stats`] gives the exact, detailed picture at a higher cost.
pub fn counters() -> Counters {
    stats::counters()
}

#[cfg(not(loom))]
/// Returns as much free memory to the OS as possible, at once: empty pools
/// of the calling thread's heap and of the locked heap go back to their
/// arenas, abandoned pools are swept, free pools are decommitted, the spare
/// arena is unmapped and cached huge spans are released. The heaps of other
/// live threads do the same at their next slow path; an idle thread's heap
/// is reached only when it takes one again.
pub fn trim() {
    lifecycle::trim();
}

/// Entry points for the C library (`libpoolmalloc.so`) and for this
/// crate's own tests. Not part of the public API: names and signatures may
/// change in any release. Nothing here can cause undefined behaviour from
/// safe code; the `unsafe fn`s state their contracts.
#[doc(hidden)]
pub mod internals {
    pub use crate::remote::{Block, RemoteList};

    /// The pieces the hand-over model (`tests/loom_handover.rs`) drives.
    #[cfg(loom)]
    pub use crate::{
        abandoned::Abandoned,
        handover::{state, Handover, RemoteHints, OWNER_FULL},
        list::{Links, List},
        lock::RawLock,
        sync::Local,
    };

    #[cfg(not(loom))]
    pub use self::not_loom::*;

    #[cfg(not(loom))]
    mod not_loom {
        pub use crate::arena::{check_invariants as check_arena_invariants, ARENA_SIZE};
        pub use crate::engine::owns;
        pub use crate::front::{calloc, free, free_if_ours, free_sized, malloc, malloc_aligned, realloc, usable_size};
        pub use crate::heap::STASH_MAX;
        pub use crate::lifecycle::check_current_heap;
        pub use crate::os::{align_up, client_request, page_size, resident_bytes, set_errno, Errno};
        pub use crate::size_class::{class_of, class_size};
        pub use crate::stats::print_to_stderr as print_stats;

        /// Files a sample of `size` bytes at `p` with an empty stack, as if
        /// the heap profiler had sampled it (`p` is never dereferenced); for
        /// tests of the profiler's tables. False if it was dropped.
        pub fn prof_record(p: *mut u8, size: usize) -> bool {
            crate::prof::record(p, size, (0, 0))
        }

        /// Forgets a sample filed by [`prof_record`]; says whether it was one.
        pub fn prof_forget(p: *mut u8) -> bool {
            crate::prof::forget(p)
        }

        /// Sampled blocks now live.
        pub fn prof_live() -> usize {
            crate::prof::live()
        }
    }
}
