//! Design notes (documentation only).
//!
//! # The layers
//!
//! ```text
//!   Rust programs            C programs (LD_PRELOAD)         Rust code
//!  #[global_allocator]     malloc/free/realloc/...       TypedPool, BufferPool
//!   PoolMalloc / Locked          libpoolmalloc.so        9  pools/, on the
//!                                                           public API only
//!        │                            │
//!        └────────────┬───────────────┘
//!  8  fronts          alloc.rs: route by size and alignment
//!                     │                          │
//!  6  thread layer    thread.rs: TLS slot → heap │ (locked mode: one heap + lock)
//!  5  heap            heap.rs: per-class current / avail / full pools, stash
//!  4  size classes    size_class.rs: 80 classes, table lookup
//!  3  pools           pool.rs: local LIFO list, remote CAS list, bump pointer
//!  2  arenas          arena.rs: 4 MiB aligned, 64 pools, fullest first
//!  1  ownership map   ownership.rs: 4 MiB granule → arena / large / none
//!  0  OS              os.rs: mmap, madvise, munmap, mremap
//!                                                 7  large.rs: own mappings,
//!                                                    cache, mremap
//! ```
//!
//! # Glossary
//!
//! * **page**: the OS's unit of mapping, 4 KiB on x86-64 Linux. poolmalloc
//!   decommits memory in whole pages.
//! * **arena**: 4 MiB of address space aligned to 4 MiB, mapped at once. Its
//!   first pages hold the arena header (all pool metadata).
//! * **pool**: a 64 KiB slice of an arena holding blocks of one size class
//!   (pool 0 is shorter: the header takes its first pages).
//! * **block**: what `malloc` returns. A block's size is its class's size.
//! * **size class**: one of 80 block sizes, 16 B to 32 KiB.
//! * **heap**: the set of pools one thread (or the locked mode) allocates
//!   from, organised by class.
//! * **span**: a large allocation's own mapping.
//! * **granule**: 4 MiB of address space, one ownership-map entry.
//!
//! # Block lifecycle
//!
//! A block is carved from its pool's bump region into the local free list,
//! popped by `malloc`, and pushed back by `free`: onto the local list if the
//! freeing thread owns the pool, onto the pool's remote list otherwise. The
//! owner takes the remote list over when its local list runs dry.
//!
//! # Pool state machine
//!
//! See [`crate::pool`]: FREE (in an arena) → USED (in a heap: current, avail
//! or full) ⇄ FULL → EMPTY (stash) → FREE; USED → ABANDONED (thread exit) →
//! USED (adopted).
//!
//! # Arena state machine
//!
//! See [`crate::arena`]: mapped → bucketed by free-pool count ⇄ full →
//! all free → spare (one at most, decommitted) or unmapped.
//!
//! # Why the owner word works
//!
//! The free fast path compares a pool's owner word with the caller's thread
//! id. Only the owning thread can see equality, and the owner clears its id
//! from every pool before its thread-control block can be reused (thread
//! exit abandons all pools; a fork child reclaims dead threads' pools before
//! any new thread exists). A full pool has the low bit set, so a local free
//! into it takes the slow path, which moves the pool back to its heap's
//! `avail` list.
