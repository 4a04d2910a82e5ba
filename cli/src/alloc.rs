//! The in-process comparators: allocators that a worker calls directly
//! through `GlobalAlloc`. None of them is this program's global allocator;
//! the harness itself allocates from `System`.

use clap::ValueEnum;
use std::alloc::System;

pub static POOLMALLOC: poolmalloc::PoolMalloc = poolmalloc::PoolMalloc;
pub static POOLMALLOC_LOCKED: poolmalloc::LockedPoolMalloc = poolmalloc::LockedPoolMalloc;
pub static POOLMALLOC_DEBUG: poolmalloc::DebugPoolMalloc = poolmalloc::DebugPoolMalloc;
pub static MIMALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
pub static JEMALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
pub static SYSTEM: System = System;

/// An allocator a worker can run a workload with.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Allocator {
    /// poolmalloc with per-thread heaps (`poolmalloc::PoolMalloc`).
    #[value(name = "poolmalloc")]
    PoolMalloc,
    /// poolmalloc in locked mode (`poolmalloc::LockedPoolMalloc`).
    #[value(name = "poolmalloc-locked")]
    PoolMallocLocked,
    /// poolmalloc's debug mode (`poolmalloc::DebugPoolMalloc`): only with `bench --with-debug`.
    #[value(name = "poolmalloc-debug")]
    PoolMallocDebug,
    /// poolmalloc in secure mode (`PoolMalloc` with `POOLMALLOC_SECURE=1` in
    /// the worker's environment): only with `bench --with-secure`.
    #[value(name = "poolmalloc-secure")]
    PoolMallocSecure,
    /// poolmalloc with its heap profiler on (`PoolMalloc` with
    /// `POOLMALLOC_PROF=1` in the worker's environment): only with `bench
    /// --with-profile`.
    #[value(name = "poolmalloc-prof")]
    PoolMallocProf,
    /// poolmalloc with transparent huge pages asked for (`PoolMalloc` with
    /// `POOLMALLOC_THP=always` in the worker's environment): only with
    /// `bench --with-thp`.
    #[value(name = "poolmalloc-thp")]
    PoolMallocThp,
    /// `mimalloc::MiMalloc` (the mimalloc crate's bundled build).
    #[value(name = "mimalloc")]
    MiMalloc,
    /// `tikv_jemallocator::Jemalloc` (jemalloc 5.3, prefixed symbols).
    Jemalloc,
    /// `std::alloc::System`: glibc malloc, named as in the CPython rows
    /// (`system` is accepted too).
    #[value(name = "glibc", alias = "system")]
    System,
}

impl Allocator {
    /// The in-process comparators the suite runs by default, poolmalloc first.
    pub const ALL: [Allocator; 5] = [
        Allocator::PoolMalloc,
        Allocator::PoolMallocLocked,
        Allocator::MiMalloc,
        Allocator::Jemalloc,
        Allocator::System,
    ];

    /// Every allocator a worker can run: the default ones, then debug and
    /// secure mode, the profiler and huge pages.
    pub const EVERY: [Allocator; 9] = [
        Allocator::PoolMalloc,
        Allocator::PoolMallocLocked,
        Allocator::MiMalloc,
        Allocator::Jemalloc,
        Allocator::System,
        Allocator::PoolMallocDebug,
        Allocator::PoolMallocSecure,
        Allocator::PoolMallocProf,
        Allocator::PoolMallocThp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Allocator::PoolMalloc => "poolmalloc",
            Allocator::PoolMallocLocked => "poolmalloc-locked",
            Allocator::PoolMallocDebug => "poolmalloc-debug",
            Allocator::PoolMallocSecure => "poolmalloc-secure",
            Allocator::PoolMallocProf => "poolmalloc-prof",
            Allocator::PoolMallocThp => "poolmalloc-thp",
            Allocator::MiMalloc => "mimalloc",
            Allocator::Jemalloc => "jemalloc",
            Allocator::System => "glibc",
        }
    }
}

/// Evaluates `$body` with `$a` bound to the `&'static` instance of the
/// allocator `$which` names, so generic code is instantiated once per
/// allocator and every call is static.
macro_rules! with_allocator {
    ($which:expr, |$a:ident| $body:expr) => {
        match $which {
            $crate::alloc::Allocator::PoolMalloc => {
                let $a = &$crate::alloc::POOLMALLOC;
                $body
            }
            $crate::alloc::Allocator::PoolMallocLocked => {
                let $a = &$crate::alloc::POOLMALLOC_LOCKED;
                $body
            }
            $crate::alloc::Allocator::PoolMallocDebug => {
                let $a = &$crate::alloc::POOLMALLOC_DEBUG;
                $body
            }
            // The same allocator: the worker runs with POOLMALLOC_SECURE=1.
            $crate::alloc::Allocator::PoolMallocSecure => {
                let $a = &$crate::alloc::POOLMALLOC;
                $body
            }
            // The same allocator: the worker runs with POOLMALLOC_PROF=1
            // or POOLMALLOC_THP=always.
            $crate::alloc::Allocator::PoolMallocProf | $crate::alloc::Allocator::PoolMallocThp => {
                let $a = &$crate::alloc::POOLMALLOC;
                $body
            }
            $crate::alloc::Allocator::MiMalloc => {
                let $a = &$crate::alloc::MIMALLOC;
                $body
            }
            $crate::alloc::Allocator::Jemalloc => {
                let $a = &$crate::alloc::JEMALLOC;
                $body
            }
            $crate::alloc::Allocator::System => {
                let $a = &$crate::alloc::SYSTEM;
                $body
            }
        }
    };
}
pub(crate) use with_allocator;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_command_line() {
        for a in Allocator::EVERY {
            assert_eq!(a.to_possible_value().unwrap().get_name(), a.name());
        }
        let mut every = Allocator::EVERY.to_vec();
        every.sort_by_key(|a| a.name());
        let mut variants = Allocator::value_variants().to_vec();
        variants.sort_by_key(|a| a.name());
        assert_eq!(variants, every);
        assert!(Allocator::ALL.iter().all(|a| Allocator::EVERY.contains(a)));
    }
}
