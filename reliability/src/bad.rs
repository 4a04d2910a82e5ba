//! Bad-input cases: pointers that are not live blocks, passed to every
//! entry point that takes a pointer. Each case runs in a forked child; the
//! child must die of `SIGABRT` after printing the documented report, a line
//! `poolmalloc: invalid <call> of <address> (<reason>)` (normal mode) or
//! `poolmalloc: debug check failed: <check> in <call> of <address>` (debug
//! mode), naming the pointer it was given. Returning, another signal, a
//! report about a different address, or a hang all fail the case.
//!
//! What is covered, in both modes, through the C ABI and the Rust global
//! allocator: wild pointers (unmapped memory, non-canonical addresses,
//! low addresses), foreign pointers (the stack, a static, glibc's heap,
//! another mapping), pointers into poolmalloc's own memory that are not
//! blocks (an arena header, the middle of a large block), misaligned
//! pointers into small and large blocks, large blocks already freed, and
//! small blocks freed twice. The Rust front in normal mode (`PoolMalloc`)
//! skips the ownership lookup, as `GlobalAlloc`'s contract allows: pointers
//! that never came from poolmalloc are checked there by `DebugPoolMalloc`.
//! Normal mode checks double frees of small blocks
//! in `free`, `free_sized` and `dealloc` (by the thread that allocated
//! them); `realloc` or `malloc_usable_size` of a freed small block is a
//! debug-mode check.

use crate::fronts::CApi;
use arbitrary::Arbitrary;
use core::ffi::c_void;
use poolmalloc::{DebugPoolMalloc, PoolMalloc};
use std::alloc::{GlobalAlloc, Layout};
use std::io::Read;
use std::os::fd::FromRawFd;
use std::path::Path;
use std::time::Duration;

/// The bad pointer.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pointer {
    /// Inside a `PROT_NONE` reservation the child makes.
    Unmapped(u32),
    /// A non-canonical address.
    NonCanonical(u16),
    /// An address in the first 64 KiB.
    Low(u16),
    /// A local variable.
    Stack,
    /// A static.
    Static,
    /// A block from glibc's `malloc`.
    GlibcHeap(u16),
    /// The start of someone else's anonymous mapping.
    Mmap,
    /// A small block plus 1 to 15 bytes.
    MisalignedSmall(u16, u8),
    /// A large block plus 1 to 15 bytes.
    MisalignedLarge(u32, u8),
    /// A large block plus a non-zero multiple of 16.
    LargeInterior(u32, u16),
    /// The header of the arena a small block lives in.
    ArenaHeader(u16, u16),
    /// A large block after it was freed.
    FreedLarge(u32),
    /// A small block freed already, after `.1 % 8` of its neighbours were
    /// freed around it.
    DoubleFree(u16, u8),
    /// A small block (of 16 to 1024 bytes) freed already, whose page then
    /// went back to the OS: a burst of blocks is freed in order except a
    /// cluster in the middle of each pool, so the pools thin out and give
    /// their free pages back; the block is one of those pages' (its mark is
    /// gone with the page).
    ColdDoubleFree(u16),
}

/// The entry point the pointer goes to.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// C `free`, or Rust `dealloc`.
    Free,
    /// C `free_sized`, or Rust `dealloc` with a 64-byte alignment layout.
    FreeSized,
    /// C `realloc`, or Rust `realloc`.
    Realloc,
    /// C `malloc_usable_size` (the Rust front uses `Free` instead).
    UsableSize,
}

/// One case.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Case {
    /// The pointer.
    pub pointer: Pointer,
    /// Where it goes.
    pub entry: Entry,
    /// Through `libpoolmalloc.so` (true) or the Rust global allocator.
    pub c: bool,
    /// In debug mode (`POOLMALLOC_DEBUG=1`, or `DebugPoolMalloc`).
    pub debug: bool,
}

impl Case {
    /// The case as run: entry points outside what the mode documents are
    /// mapped to ones inside it (see the module docs).
    pub fn normalized(mut self) -> Case {
        let foreign = matches!(
            self.pointer,
            Pointer::Unmapped(_)
                | Pointer::NonCanonical(_)
                | Pointer::Low(_)
                | Pointer::Stack
                | Pointer::Static
                | Pointer::GlibcHeap(_)
                | Pointer::Mmap
        );
        if !self.c && foreign {
            // `PoolMalloc` trusts `dealloc`'s contract that the pointer is its
            // own and skips the ownership lookup; `DebugPoolMalloc` checks.
            self.debug = true;
        }
        if !self.c && self.entry == Entry::UsableSize {
            self.entry = Entry::Free;
        }
        if !self.debug
            && matches!(self.pointer, Pointer::DoubleFree(..) | Pointer::ColdDoubleFree(..))
            && self.entry != Entry::FreeSized
        {
            self.entry = Entry::Free;
        }
        self
    }
}

/// Every pointer kind with a few parameters, for the exhaustive test.
pub fn all_pointers() -> Vec<Pointer> {
    let mut v = vec![Pointer::Stack, Pointer::Static, Pointer::Mmap];
    for i in 0..3u16 {
        let x = u32::from(i) * 7_777_777 + 12_345;
        v.extend([
            Pointer::Unmapped(x),
            Pointer::NonCanonical(i * 9_001 + 1),
            Pointer::Low(i * 20_000 + 8),
            Pointer::GlibcHeap(i * 3000 + 1),
            Pointer::MisalignedSmall(i * 5000 + 1, i as u8 * 5 + 1),
            Pointer::MisalignedLarge(x, i as u8 * 5 + 1),
            Pointer::LargeInterior(x, i * 1000 + 1),
            Pointer::ArenaHeader(i * 100 + 1, i * 4000),
            Pointer::FreedLarge(x),
            Pointer::DoubleFree(i * 300 + 1, i as u8 * 3),
            Pointer::ColdDoubleFree(i * 400 + 40),
        ]);
    }
    // Found by fuzzing: a misaligned pointer into a block of about 700 KB,
    // which a fresh arena places at its end, so that a moving realloc's copy
    // would run past the arena's mapping.
    v.push(Pointer::MisalignedLarge(2_324_299_776, 138));
    v
}

/// Every case: each pointer through each entry point of each front, in
/// both modes (normalized, duplicates removed).
pub fn all_cases() -> Vec<Case> {
    let mut v: Vec<Case> = Vec::new();
    for pointer in all_pointers() {
        for entry in [Entry::Free, Entry::FreeSized, Entry::Realloc, Entry::UsableSize] {
            for c in [false, true] {
                for debug in [false, true] {
                    let case = Case { pointer, entry, c, debug }.normalized();
                    if !v.contains(&case) {
                        v.push(case);
                    }
                }
            }
        }
    }
    v
}

static SOME_STATIC: [u64; 8] = [0; 8];

const SMALL_MAX: usize = 1024;
const LARGE_MIN: usize = 64 * 1024;

/// The allocation calls a child uses to set a case up.
enum Api<'a> {
    C(&'a CApi),
    Rust(&'a dyn GlobalAlloc),
}

impl Api<'_> {
    fn alloc(&self, size: usize) -> *mut u8 {
        // SAFETY: non-zero sizes.
        let p = unsafe {
            match self {
                Api::C(a) => (a.malloc)(size).cast(),
                Api::Rust(a) => a.alloc(Layout::from_size_align(size, 16).unwrap()),
            }
        };
        assert!(!p.is_null(), "setting up the case: allocation of {size} failed");
        p
    }

    /// Frees a live block (of `size` bytes).
    fn free(&self, p: *mut u8, size: usize) {
        // SAFETY: `p` is live with this size.
        unsafe {
            match self {
                Api::C(a) => (a.free)(p.cast()),
                Api::Rust(a) => a.dealloc(p, Layout::from_size_align(size, 16).unwrap()),
            }
        }
    }
}

/// Makes the bad pointer (allocating and freeing through `api` as the case
/// needs). Returns it and the size to pass to sized entry points: the size
/// of the block it points into, so that only the pointer is wrong (for the
/// Rust front, a wrong layout is a different contract breach).
fn make(pointer: Pointer, api: &Api, debug: bool) -> (*mut u8, usize) {
    let small = |n: u16| 1 + n as usize % SMALL_MAX;
    let large = |n: u32| LARGE_MIN + n as usize % (8 << 20);
    match pointer {
        Pointer::Unmapped(off) => {
            let len = 64 << 20;
            // SAFETY: a fresh reservation nobody else uses.
            let base = unsafe {
                libc::mmap(core::ptr::null_mut(), len, libc::PROT_NONE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
            };
            assert_ne!(base, libc::MAP_FAILED);
            (base.cast::<u8>().wrapping_add((off as usize % len) & !15), 16)
        }
        Pointer::NonCanonical(n) => ((0x8000_0000_0000_0000usize | (n as usize) << 12) as *mut u8, 16),
        Pointer::Low(n) => (((16 + (n as usize) % 65_000) & !15) as *mut u8, 16),
        Pointer::Stack => {
            let local = [0u64; 4];
            (std::hint::black_box(local.as_ptr()) as *mut u8, 32)
        }
        Pointer::Static => (SOME_STATIC.as_ptr() as *mut u8, 64),
        Pointer::GlibcHeap(n) => {
            // SAFETY: glibc's malloc, a different allocator.
            let p = unsafe { libc::malloc(small(n)) };
            assert!(!p.is_null());
            (p.cast(), small(n))
        }
        Pointer::Mmap => {
            // SAFETY: a fresh mapping.
            let p = unsafe {
                libc::mmap(
                    core::ptr::null_mut(),
                    1 << 20,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(p, libc::MAP_FAILED);
            (p.cast(), 1 << 20)
        }
        Pointer::MisalignedSmall(n, off) => (api.alloc(small(n)).wrapping_add(1 + off as usize % 15), small(n)),
        Pointer::MisalignedLarge(n, off) => (api.alloc(large(n)).wrapping_add(1 + off as usize % 15), large(n)),
        Pointer::LargeInterior(n, k) => {
            let size = large(n);
            let off = 16 * (1 + k as usize % (size / 16 - 1));
            (api.alloc(size).wrapping_add(off), size)
        }
        Pointer::ArenaHeader(n, off) => {
            let p = api.alloc(small(n));
            let arena = p.wrapping_sub(p as usize & ((4 << 20) - 1));
            (arena.wrapping_add((off as usize % 8192) & !15), 16)
        }
        Pointer::FreedLarge(n) => {
            let p = api.alloc(large(n));
            api.free(p, large(n));
            (p, large(n))
        }
        Pointer::DoubleFree(n, others) => {
            let size = small(n);
            let blocks: Vec<*mut u8> = (0..8).map(|_| api.alloc(size)).collect();
            let victim = blocks[3];
            api.free(victim, size);
            for &b in blocks.iter().filter(|&&b| b != victim).take(others as usize % 8) {
                api.free(b, size);
            }
            (victim, size)
        }
        Pointer::ColdDoubleFree(n) => {
            const POOL: usize = 64 << 10;
            let size = 16 + n as usize % (SMALL_MAX - 15);
            let per_pool = POOL / size.next_multiple_of(16);
            let blocks: Vec<*mut u8> = (0..per_pool * 6).map(|_| api.alloc(size)).collect();
            let pool_of = |p: *mut u8| p as usize & !(POOL - 1);
            // Pools in the order the burst reached them; the first may be
            // shared with earlier blocks of the class, so it is left alone.
            let mut pools: Vec<usize> = Vec::new();
            for &b in &blocks {
                if pools.last() != Some(&pool_of(b)) {
                    pools.push(pool_of(b));
                }
            }
            // The third pool or a later one whose blocks start its slice (an
            // arena's first pool starts after the arena's header), with two
            // more after it: it thins out, and the next one's thinning gives
            // its free pages back.
            // (In debug mode blocks sit behind the wrapper's header.)
            let victim_pool = if debug {
                pools[2]
            } else {
                *pools[2..pools.len() - 2]
                    .iter()
                    .find(|&&pool| blocks.iter().any(|&b| b as usize == pool))
                    .expect("setting up the case: a pool whose blocks start its slice")
            };
            let mut victim: *mut u8 = core::ptr::null_mut();
            let mut index = 0;
            for (i, &b) in blocks.iter().enumerate() {
                if i > 0 && pool_of(b) != pool_of(blocks[i - 1]) {
                    index = 0;
                }
                let keep = (per_pool / 2..per_pool / 2 + 4).contains(&index);
                index += 1;
                if keep {
                    continue;
                }
                if victim.is_null() && pool_of(b) == victim_pool {
                    // The pool's first block: its page holds only freed ones.
                    victim = b;
                }
                api.free(b, size);
            }
            // Its page went back to the OS: it reads as zero, mark and all
            // (on the local list it would carry the pool's mark). In debug
            // mode the blocks are the wrapper's, inside raw blocks of their
            // own, and the wrapper catches the double free itself.
            if !debug {
                // SAFETY: pool memory stays mapped; reading a freed block
                // here is the point of the case.
                let words =
                    unsafe { [victim.cast::<u64>().read_volatile(), victim.cast::<u64>().add(1).read_volatile()] };
                assert_eq!(words, [0, 0], "setting up the case: the block's page did not go back to the OS");
            }
            (victim, size)
        }
    }
}

/// The child's side: sets up the case, prints the pointer, makes the bad
/// call. Returns only if poolmalloc let the call through.
fn child(case: Case, lib: Option<&Path>) {
    let capi;
    let debug_alloc = DebugPoolMalloc;
    let api = match (case.c, lib) {
        (true, Some(lib)) => {
            if case.debug {
                // SAFETY: the forked child is single-threaded.
                unsafe { libc::setenv(c"POOLMALLOC_DEBUG".as_ptr(), c"1".as_ptr(), 1) };
            }
            capi = CApi::load(lib).expect("load libpoolmalloc.so");
            Api::C(&capi)
        }
        (true, None) => panic!("a C case needs the library"),
        (false, _) if case.debug => Api::Rust(&debug_alloc),
        (false, _) => Api::Rust(&PoolMalloc),
    };
    let (p, size) = make(case.pointer, &api, case.debug);
    eprintln!("bad pointer {p:p}");
    // SAFETY: none: this is the bad call under test.
    unsafe {
        match (&api, case.entry) {
            (Api::C(a), Entry::Free) => (a.free)(p.cast()),
            (Api::C(a), Entry::FreeSized) => (a.free_sized)(p.cast(), size),
            (Api::C(a), Entry::Realloc) => {
                (a.realloc)(p.cast::<c_void>(), size + 100);
            }
            (Api::C(a), Entry::UsableSize) => {
                (a.malloc_usable_size)(p.cast());
            }
            (Api::Rust(a), Entry::Free | Entry::UsableSize) => {
                a.dealloc(p, Layout::from_size_align(size.max(1), 16).unwrap())
            }
            (Api::Rust(a), Entry::FreeSized) => a.dealloc(p, Layout::from_size_align(size.max(1), 64).unwrap()),
            (Api::Rust(a), Entry::Realloc) => {
                a.realloc(p, Layout::from_size_align(size.max(1), 16).unwrap(), size + 100);
            }
        }
    }
}

/// Runs `case` in a forked child and checks how it ended. `lib` is the
/// library for C cases. No other thread of the caller may be inside
/// poolmalloc or the dynamic loader (the child loads the library).
pub fn run(case: Case, lib: Option<&Path>) -> Result<(), String> {
    let case = case.normalized();
    let mut fds = [0; 2];
    // SAFETY: a pipe for the child's stderr.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: by the caller, no other thread holds a lock the child needs.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: redirecting our own stderr to the pipe, and giving SIGABRT
        // its default action back (a fuzzer's crash handler would catch it).
        unsafe {
            libc::dup2(fds[1], 2);
            libc::close(fds[0]);
            libc::signal(libc::SIGABRT, libc::SIG_DFL);
        }
        child(case, lib);
        eprintln!("bad call returned");
        // SAFETY: ends the child without running the parent's exit handlers.
        unsafe { libc::_exit(0) };
    }
    // SAFETY: our copy of the write end.
    unsafe { libc::close(fds[1]) };
    // SAFETY: the read end is ours alone from here.
    let mut reader = unsafe { std::fs::File::from_raw_fd(fds[0]) };
    let Some(status) = crate::child::wait(pid, Duration::from_secs(20)) else {
        return Err(format!("{case:?}: hung"));
    };
    let mut err = String::new();
    reader.read_to_string(&mut err).expect("read the child's stderr");
    let addr = err
        .lines()
        .find_map(|l| l.strip_prefix("bad pointer "))
        .ok_or_else(|| format!("{case:?}: the child did not get to the bad call:\n{err}"))?
        .to_string();
    let reported = err.lines().any(|l| {
        (l.starts_with("poolmalloc: invalid ") || l.starts_with("poolmalloc: debug check failed: "))
            && l.contains(&format!(" of {addr}"))
    });
    let aborted = libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGABRT;
    if reported && aborted {
        Ok(())
    } else {
        Err(format!("{case:?}: pointer {addr}: status {status:#x} (reported: {reported}, SIGABRT: {aborted}):\n{err}"))
    }
}
