//! The sampling heap profiler, for Rust programs: [`start`], [`stop`] and
//! [`dump`].
//!
//! While it runs, about one allocation per [`interval`] bytes (512 KiB by
//! default, `POOLMALLOC_PROF_SAMPLE`) is sampled with its call stack, and
//! sampled blocks are found again when they are freed, so the profile
//! knows both what was allocated and what is still live, per stack. The
//! estimates are unbiased: each sample stands for the bytes it was drawn
//! from.
//!
//! [`dump`] writes a raw profile; `poolmalloc prof FILE` symbolises it into
//! a pprof file, flame graphs of the live and the allocated bytes, and a
//! table of the top allocation sites. Any program (C included) can be
//! profiled from the start with `POOLMALLOC_PROF=1` or `poolmalloc run
//! --profile PREFIX -- CMD`.
//!
//! Stacks are walked through frame pointers: build with
//! `-C force-frame-pointers=yes` (Rust) or `-fno-omit-frame-pointer` (C)
//! for full stacks. Without them stacks are cut short, never a crash.
//!
//! What is sampled: blocks of the thread heaps (what `PoolMalloc`, `malloc`
//! and friends serve) and huge blocks. Blocks of first-class [`Heap`]s and
//! of `LockedPoolMalloc` are not; the profiler does not run in debug mode
//! or in locked mode.
//!
//! ```no_run
//! poolmalloc::profile::start().unwrap();
//! let v: Vec<u8> = vec![0; 10 << 20];
//! poolmalloc::profile::dump("app.heap").unwrap();
//! # drop(v);
//! ```
//!
//! [`Heap`]: crate::Heap

use crate::{lifecycle, options, prof};
use std::io;
use std::path::Path;

/// Starts sampling. The calling thread is sampled from its next
/// allocation, every other thread from its next allocation slow path (a
/// thread that only ever reuses its own freed blocks may go unsampled for
/// a while). Calling it again while it runs changes nothing.
///
/// # Errors
/// `Unsupported` in debug mode and in locked mode; `OutOfMemory` if the
/// profiler's tables (mapped once, about 60 MiB of address space, touched
/// only as samples come) cannot be mapped.
pub fn start() -> io::Result<()> {
    lifecycle::global_init();
    if options::debug() || options::locked_mode() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "poolmalloc: the heap profiler does not run in debug or locked mode",
        ));
    }
    if !prof::start() {
        return Err(io::Error::new(io::ErrorKind::OutOfMemory, "poolmalloc: cannot map the heap profiler's tables"));
    }
    lifecycle::profile_this_thread();
    Ok(())
}

/// Stops sampling new allocations. Blocks sampled before keep their
/// records, so their frees still count, and [`dump`] still shows them.
pub fn stop() {
    prof::stop();
}

/// Whether allocations are being sampled.
pub fn is_running() -> bool {
    prof::sampling()
}

/// The mean sampling interval in bytes (`POOLMALLOC_PROF_SAMPLE`).
pub fn interval() -> usize {
    lifecycle::global_init();
    prof::interval()
}

/// Samples that were dropped because the profiler's tables were full (a
/// million live sampled blocks, or 65,536 distinct stacks).
pub fn dropped() -> usize {
    prof::dropped()
}

/// Writes the profile so far to `path`: per stack, the estimated objects
/// and bytes allocated since [`start`] and still live, and the process's
/// memory map, for `poolmalloc prof` to symbolise.
///
/// # Errors
/// Those of creating or writing the file.
pub fn dump(path: impl AsRef<Path>) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::create(path)?;
    if prof::write_profile(file.as_raw_fd()) {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
