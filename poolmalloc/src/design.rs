//! Design notes (documentation only): the one layer diagram, where each
//! layer lives, a glossary and the state machines.
//!
//! # The layers
//!
//! Each row imports only rows below it; `tests/layers.rs` reads the imports
//! of every module and checks them against this diagram, so it cannot drift
//! from the code. The numbers are the design's layer numbers; where the
//! import order differs from the numbering, the exception and its reason are
//! listed below the diagram.
//!
//! ```text
//!  row  layer  modules                           owns
//!  14   8+     pools                             TypedPool, PoolBox, BufferPool: above the public API
//!  13   8      global owned profile cabi         PoolMalloc, LockedPoolMalloc (GlobalAlloc); first-class Heap; the heap profiler's API; the C functions
//!  12   8      front                             the C and Rust entry points; the one choice of engine or debug wrapper
//!  11   x      debug                             the debug wrapper and DebugPoolMalloc: guard bytes, fill, serials, quarantine
//!  10   8      engine                            the routing engine: size and alignment (or a layout) → pools or large
//!   9   6      thread                            per-block dispatch: heap slot → heap; remote frees; locked mode
//!   8   6      lifecycle                         set-up, heap slot, thread exit, first-class heaps, trim, fork, at-exit report
//!   7   x      stats                             the statistics snapshot and report
//!   6   7      large                             huge blocks (above 1 MiB): own mappings, span cache, mremap
//!   5   5      heap abandoned registry           per-class pool lists; abandoned pools; heap structures and sentinels
//!   4   2      arena                             4 MiB aligned arenas of 64 slices; pools and medium runs; fullest first; decommit, release
//!   3   3      pool handover remote              one class per pool: local, remote and bump free lists; passing pools between threads
//!   2   4      size_class                        the class table and the branch-free lookup (constant data)
//!   1   1      ownership                         address → arena / large span / not ours, in O(1)
//!   0   0,x    prof lock fault options report os tid list sync   heap-profile samples; locks; fault reports; options; messages; syscalls; thread id; intrusive lists; atomics facade
//! ```
//!
//! Within row 0 the order is `sync`, `list`, `tid`, `os`, `report`,
//! `options`, `fault`, `lock`, `prof` (each uses only those before it). Within a row, modules
//! may use each other only as the test allows: `heap` uses `abandoned`,
//! `registry` uses `heap`; `pool` uses `handover` and `remote`, `handover`
//! uses `remote`; `owned` uses `global`.
//!
//! **Exceptions to the design's numbering**, each kept on purpose:
//!
//! * **Arenas above pools** (layer 2 imports layer 3). An arena header holds
//!   the metadata records of its 64 pools, so that a block's pool is found by
//!   masking its address and metadata never lies inside the blocks. `arena`
//!   names the `Pool` type to lay out and initialise those records; `pool`
//!   never names `arena` (it is given its bounds).
//! * **Size classes below pools** (layer 4 used by layer 3). `size_class` is
//!   constant data with no imports; a pool needs its block size.
//! * **The lifecycle above large blocks** (layer 6 uses layer 7): `trim()`
//!   empties the span cache and the fork handlers take the large lock.
//!   Large blocks use nothing of layers 2 to 6.
//! * **Statistics below the lifecycle.** The at-exit report is part of the
//!   process lifecycle; statistics only read the layers below them.
//! * **Debug mode is a wrapper, not a layer.** It sits above the engine
//!   and takes its raw blocks from it (the engine's locked heap), the way
//!   CPython's debug hooks sit on top of pymalloc. [`crate::front`] chooses,
//!   once per process, which of the two serves every request: the table of
//!   entry points it publishes, and the debug proxy heap that
//!   `lifecycle::init_thread` puts in each thread's slot, which sends the
//!   fast paths' requests to the wrapper entry that `front` hands the thread
//!   layer. The engine and the layers below never name `debug` and never
//!   test the option.
//!
//! # Where things are
//!
//! | to find | look in |
//! |---|---|
//! | `malloc`, `free`, `realloc`: the entry points, and debug mode's choice | `front.rs` |
//! | the C allocation API with C semantics (errno, glibc's edge cases), exported by `libpoolmalloc.so` and by the `override` feature | `cabi.rs` |
//! | routing a size, alignment or layout to pools or huge spans | `engine.rs` |
//! | the `#[global_allocator]` types | `global.rs` |
//! | first-class heaps (`Heap`, allocator-api2) | `owned.rs` |
//! | the C library | `capi/src/lib.rs` (forwards to [`crate::internals`]) |
//! | the allocation and free fast paths | `thread.rs` (`alloc`, `free`) and `pool.rs` (`pop`, `push`) |
//! | the slow path, pool lists, the remote batch | `heap.rs` |
//! | thread set-up and exit, `trim()`, fork handlers | `lifecycle.rs` |
//! | the heap registry, sentinel heaps, locked heap | `registry.rs` |
//! | abandoned pools | `abandoned.rs` |
//! | remote (cross-thread) free lists | `remote.rs` |
//! | how a pool passes between threads: owner word, full flag, hints, abandon and adopt | `handover.rs` |
//! | arenas: taking, giving back, decommit, release | `arena.rs` |
//! | the ownership map | `ownership.rs` |
//! | size classes | `size_class.rs` |
//! | large blocks | `large.rs` |
//! | system calls | `os.rs` |
//! | thread ids | `tid.rs` |
//! | invalid-pointer reports | `fault.rs` |
//! | options (`POOLMALLOC_*`) | `options.rs` |
//! | statistics | `stats.rs` |
//! | the heap profiler: sampling, stacks, records, the raw profile | `prof.rs` (engine), `profile.rs` (API), `thread.rs` (`prof_alloc`) |
//! | debug mode | `debug.rs` |
//! | typed and buffer pools | `pools/` |
//! | locks and the atomics facade | `lock.rs`, `sync.rs` |
//! | the intrusive list type | `list.rs` |
//!
//! # Glossary
//!
//! * **page**: the OS's unit of mapping, 4 KiB on x86-64 Linux. poolmalloc
//!   decommits memory in whole pages.
//! * **arena**: 4 MiB of address space aligned to 4 MiB, mapped at once. Its
//!   first pages hold the arena header (all pool metadata).
//! * **slice**: 64 KiB of an arena, one record in its header.
//! * **pool**: the blocks of one size class: one slice of an arena for a
//!   class up to 32 KiB (pool 0 is shorter: the header takes its first
//!   pages), a run of contiguous slices for a medium class (above 32 KiB).
//! * **medium block**: a block of a class above 32 KiB and up to 1 MiB,
//!   carved from a run of arena slices; never a mapping of its own.
//! * **block**: what `malloc` returns. A block's size is its class's size.
//! * **size class**: one of 120 block sizes, 16 B to 1 MiB.
//! * **heap**: the set of pools one thread (or the locked mode) allocates
//!   from, organised by class.
//! * **span**: a huge allocation's own mapping (above 1 MiB, or aligned
//!   above 1 MiB).
//! * **granule**: 4 MiB of address space, one ownership-map entry.
//! * **cold page**: a page of a pool in use that holds only free blocks and
//!   was given back to the OS; its blocks are on no list until the pool runs
//!   out of others.
//!
//! # Block lifecycle
//!
//! A block is carved from its pool's bump region into the local free list,
//! popped by `malloc`, and pushed back by `free`: onto the local list if the
//! freeing thread owns the pool, onto the pool's remote list otherwise. The
//! owner takes the remote list over when its local list runs dry.
//!
//! A small pool that was full is armed: the free that brings it down to
//! half its blocks takes the same branch as the free that empties it, and
//! tells its heap, which keeps it waiting (one per class) until the next
//! pool of the class thins out. If it is then at most three eighths in use,
//! its wholly free pages go back to the OS and their blocks become cold
//! (`Heap::pool_thinned`, `Pool::cool`); the pool puts them back on its
//! list when it has no other free block (`Pool::warm`). Frees into a pool
//! with cold pages take the checked path, where a free of a cold block is
//! reported as a double free.
//!
//! # Pool state machine
//!
//! See [`crate::pool`]: FREE (in an arena) → USED (in a heap: current, avail
//! or full) ⇄ FULL → EMPTY (stash) → FREE; USED → ABANDONED (thread exit) →
//! USED (adopted). The later slices of a medium pool's run are FOLLOWERs for
//! as long as the pool is taken, and FREE again when it goes back.
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
//! `avail` list. A medium pool's owner word always carries `OWNER_CHECKED`,
//! so even its owner's frees take the slow path, which checks that the
//! pointer starts a block of the pool.
