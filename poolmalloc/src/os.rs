//! Layer 0: the operating system.
//!
//! This is the only module that makes memory system calls. It reserves,
//! decommits, remaps and releases address space, and knows the page size.
//!
//! It is written against the `libc` crate rather than `rustix`: the C front
//! needs `errno` itself (to set `ENOMEM` and to keep `free` from changing it),
//! the thread layer needs `pthread_atfork` and the futex call, and options are
//! read with `getenv` before the Rust runtime is up. `libc` offers all of them
//! under one set of types, and none of its calls used here allocate.
//!
//! Callers: the ownership map (nothing), arenas (layer 2), large spans
//! (layer 7), the heap-metadata slab (layer 6), and locks (the futex).
//! Every function is thread-safe; none of them allocates or panics. A failed
//! call is reported as a null pointer or `false`, never a panic.
//!
//! Linux commits anonymous memory on first touch, so "commit" is implicit:
//! a reserved range is mapped read-write, and decommitting gives its pages
//! back with `madvise(MADV_DONTNEED)`, after which they read as zero.
//!
//! # Under Miri
//!
//! Miri has no `mmap`, `munmap`, `madvise` or `mremap`, so under `cfg(miri)`
//! the memory calls are emulated on the system allocator (see `emulated`):
//! a mapping is an allocation of the requested size and alignment,
//! decommitting writes zeros, resizing in place always fails and moving a
//! mapping copies it. The page size is 4096 and there is no resident-set
//! figure. The other calls (`errno`, the clock, `write`, `abort`, and the
//! futex, pthread-key and `getenv` calls of other layers) are ones Miri
//! runs itself. The core structures' unit tests run there with strict
//! provenance:
//!
//! ```text
//! MIRIFLAGS="-Zmiri-strict-provenance" cargo +nightly miri test -p poolmalloc --lib
//! ```

#[cfg(not(miri))]
use core::ptr;
use crate::sync::atomic::{AtomicU8, AtomicUsize, Ordering::Relaxed};

/// Counters of system calls and mapped bytes, for the statistics report.
pub(crate) struct OsCounters {
    pub mmap_calls: AtomicUsize,
    pub munmap_calls: AtomicUsize,
    pub madvise_calls: AtomicUsize,
    pub mremap_calls: AtomicUsize,
    /// `munmap` calls the kernel refused (it must split a mapping and the
    /// process is at its map-count limit).
    pub munmap_failures: AtomicUsize,
    /// Bytes that stay mapped because `munmap` failed and nothing could
    /// reuse them: decommitted (no memory behind them) but still address
    /// space. Counted, never silently leaked.
    pub unreleased: AtomicUsize,
    /// Bytes currently mapped by poolmalloc (arenas, large spans, metadata).
    pub mapped: AtomicUsize,
    /// Highest value `mapped` has had.
    pub mapped_peak: AtomicUsize,
}

/// The OS layer's part of the statistics snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OsStats {
    /// Bytes currently mapped, as counted at every call.
    pub mapped: usize,
    /// Most bytes mapped at once.
    pub mapped_peak: usize,
    /// `mmap` calls.
    pub mmap_calls: usize,
    /// `munmap` calls.
    pub munmap_calls: usize,
    /// `madvise` calls.
    pub madvise_calls: usize,
    /// `mremap` calls.
    pub mremap_calls: usize,
    /// `munmap` calls the kernel refused.
    pub munmap_failures: usize,
    /// Bytes still mapped because `munmap` failed and nothing could reuse
    /// them (decommitted: address space only).
    pub unreleased: usize,
}

/// Reads the OS layer's counters.
pub(crate) fn snapshot() -> OsStats {
    let c = &COUNTERS;
    OsStats {
        mapped: c.mapped.load(Relaxed),
        mapped_peak: c.mapped_peak.load(Relaxed),
        mmap_calls: c.mmap_calls.load(Relaxed),
        munmap_calls: c.munmap_calls.load(Relaxed),
        madvise_calls: c.madvise_calls.load(Relaxed),
        mremap_calls: c.mremap_calls.load(Relaxed),
        munmap_failures: c.munmap_failures.load(Relaxed),
        unreleased: c.unreleased.load(Relaxed),
    }
}

pub(crate) static COUNTERS: OsCounters = OsCounters {
    mmap_calls: AtomicUsize::new(0),
    munmap_calls: AtomicUsize::new(0),
    madvise_calls: AtomicUsize::new(0),
    mremap_calls: AtomicUsize::new(0),
    munmap_failures: AtomicUsize::new(0),
    unreleased: AtomicUsize::new(0),
    mapped: AtomicUsize::new(0),
    mapped_peak: AtomicUsize::new(0),
};

fn add_mapped(n: usize) {
    let now = COUNTERS.mapped.fetch_add(n, Relaxed) + n;
    COUNTERS.mapped_peak.fetch_max(now, Relaxed);
}

fn sub_mapped(n: usize) {
    COUNTERS.mapped.fetch_sub(n, Relaxed);
}

#[cfg(not(miri))]
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);

/// The system page size, read once at run time.
#[cfg(not(miri))]
#[inline]
pub fn page_size() -> usize {
    let p = PAGE_SIZE.load(Relaxed);
    if p != 0 {
        return p;
    }
    // SAFETY: sysconf has no preconditions and does not allocate.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let p = if v > 0 { v as usize } else { 4096 };
    PAGE_SIZE.store(p, Relaxed);
    p
}

/// Rounds `n` up to a multiple of the power of two `align`, or `None` on
/// overflow.
#[inline]
pub fn align_up(n: usize, align: usize) -> Option<usize> {
    debug_assert!(align.is_power_of_two());
    Some(n.checked_add(align - 1)? & !(align - 1))
}

/// Maps `size` bytes of fresh zeroed read-write memory whose start is aligned
/// to `align` (a power of two, at least the page size). Returns null on
/// failure. `size` must be a multiple of the page size.
#[cfg(not(miri))]
pub fn map_aligned(size: usize, align: usize) -> *mut u8 {
    debug_assert!(size % page_size() == 0 && align.is_power_of_two());
    let align = align.max(page_size());
    // Fast attempt: a plain mapping is often aligned by luck when the kernel
    // places mappings next to each other.
    let p = map(size);
    if p.is_null() {
        return p;
    }
    if p.addr() % align == 0 {
        return p;
    }
    // SAFETY: we just mapped `p` and nobody has seen it.
    if !unsafe { unmap(p, size) } {
        // SAFETY: as above.
        unsafe { keep_unreleased(p, size) };
        return ptr::null_mut();
    }
    // Over-reserve and trim both ends.
    let Some(total) = size.checked_add(align - page_size()) else {
        return ptr::null_mut();
    };
    let raw = map(total);
    if raw.is_null() {
        return raw;
    }
    let lead = raw.addr().next_multiple_of(align) - raw.addr();
    let start = raw.wrapping_add(lead);
    let trail = total - lead - size;
    // SAFETY: the lead and trail are parts of our fresh reservation that
    // nobody has seen. A trim the kernel refuses gives the whole rest of the
    // reservation back instead (no split needed at its ends), and the
    // mapping fails.
    unsafe {
        if lead > 0 && !unmap(raw, lead) {
            release_or_keep(raw, total);
            return ptr::null_mut();
        }
        if trail > 0 && !unmap(start.wrapping_add(size), trail) {
            release_or_keep(start, size + trail);
            return ptr::null_mut();
        }
    }
    start
}

/// Unmaps a range nobody uses; if the kernel refuses, decommits it and
/// counts it as unreleased.
///
/// # Safety
/// As for [`unmap`].
#[cfg(not(miri))]
pub unsafe fn release_or_keep(p: *mut u8, size: usize) {
    // SAFETY: forwarded from the caller.
    if !unsafe { unmap(p, size) } {
        // SAFETY: as above.
        unsafe { keep_unreleased(p, size) };
    }
}

/// Records a range that `munmap` refused and nothing will reuse: its pages
/// are decommitted, its address space counted in
/// [`OsCounters::unreleased`].
///
/// # Safety
/// The range must be mapped by this module and hold nothing anyone needs.
#[cfg(not(miri))]
pub unsafe fn keep_unreleased(p: *mut u8, size: usize) {
    // SAFETY: forwarded from the caller.
    unsafe { decommit(p, size) };
    COUNTERS.unreleased.fetch_add(size, Relaxed);
}

/// Sends a valgrind client request (`args[0]` the request, then its
/// arguments) and returns valgrind's answer, or `default` outside valgrind:
/// the no-op instruction sequence of `<valgrind/valgrind.h>` for x86-64.
#[cfg(all(target_arch = "x86_64", not(miri)))]
#[inline(always)]
pub fn client_request(default: usize, args: &[usize; 6]) -> usize {
    let mut result = default;
    // Under valgrind the sequence reads the six words of `args` and writes
    // the answer to rdx.
    // SAFETY: the rotations of rdi add up to 128 bits and `xchg rbx, rbx`
    // is a no-op, so outside valgrind only the flags change.
    unsafe {
        core::arch::asm!(
            "rol rdi, 3",
            "rol rdi, 13",
            "rol rdi, 61",
            "rol rdi, 51",
            "xchg rbx, rbx",
            inout("rdx") result,
            in("rax") args.as_ptr(),
            options(nostack),
        );
    }
    result
}

/// Client requests exist on x86-64 only here: elsewhere, `default`.
#[cfg(not(all(target_arch = "x86_64", not(miri))))]
pub fn client_request(default: usize, _args: &[usize; 6]) -> usize {
    default
}

/// Valgrind client requests (the `valgrind` feature): the no-op instruction
/// sequence of `<valgrind/valgrind.h>` that valgrind recognises, so that
/// memcheck learns where poolmalloc's blocks are. Outside valgrind every
/// request returns its default and changes nothing.
#[cfg(feature = "valgrind")]
pub mod valgrind {
    /// `VG_USERREQ__RUNNING_ON_VALGRIND`.
    const RUNNING_ON_VALGRIND: usize = 0x1001;
    /// `VG_USERREQ__MALLOCLIKE_BLOCK`.
    const MALLOCLIKE_BLOCK: usize = 0x1301;
    /// `VG_USERREQ__FREELIKE_BLOCK`.
    const FREELIKE_BLOCK: usize = 0x1302;
    /// memcheck's `VG_USERREQ__MAKE_MEM_DEFINED` (`TOOL_BASE('M','C') + 2`).
    const MAKE_MEM_DEFINED: usize = (b'M' as usize) << 24 | (b'C' as usize) << 16 | 2;

    /// Whether the process runs under valgrind.
    pub fn running() -> bool {
        super::client_request(0, &[RUNNING_ON_VALGRIND, 0, 0, 0, 0, 0]) != 0
    }

    /// `n` bytes at `p` are a block the program now holds.
    pub fn malloclike(p: *mut u8, n: usize, zeroed: bool) {
        super::client_request(0, &[MALLOCLIKE_BLOCK, p as usize, n, 0, usize::from(zeroed), 0]);
    }

    /// The block at `p` is given back.
    pub fn freelike(p: *mut u8) {
        super::client_request(0, &[FREELIKE_BLOCK, p as usize, 0, 0, 0, 0]);
    }

    /// `n` bytes at `p` are addressable and defined (the words poolmalloc
    /// keeps in a free block: its free-list link and double-free mark).
    pub fn make_defined(p: *mut u8, n: usize) {
        super::client_request(0, &[MAKE_MEM_DEFINED, p as usize, n, 0, 0, 0]);
    }
}

/// Whether the valgrind wrapper serves this process: the `valgrind` feature
/// is on and the process runs under valgrind. Asked once, then cached.
pub fn valgrind_wrapper() -> bool {
    #[cfg(feature = "valgrind")]
    {
        // 0: not asked yet; 1: yes; 2: no.
        static ACTIVE: AtomicU8 = AtomicU8::new(0);
        match ACTIVE.load(Relaxed) {
            0 => {
                let on = valgrind::running();
                ACTIVE.store(if on { 1 } else { 2 }, Relaxed);
                on
            }
            v => v == 1,
        }
    }
    #[cfg(not(feature = "valgrind"))]
    false
}

/// Transparent huge pages for poolmalloc's mappings (`POOLMALLOC_THP`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Thp {
    /// `never`: each mapping is marked `MADV_NOHUGEPAGE`, so the kernel
    /// backs it with 4 KiB pages even where THP is `always`.
    Never = 0,
    /// `default`: mappings are left as the system's THP setting has them.
    Default = 1,
    /// `always`: each mapping is marked `MADV_HUGEPAGE`, so the kernel may
    /// back it with huge pages even where THP is `madvise`.
    Always = 2,
}

static THP: AtomicU8 = AtomicU8::new(Thp::Never as u8);

/// The THP mode of new mappings.
pub fn thp() -> Thp {
    match THP.load(Relaxed) {
        0 => Thp::Never,
        1 => Thp::Default,
        _ => Thp::Always,
    }
}

/// Sets the THP mode of new mappings.
pub(crate) fn set_thp(t: Thp) {
    THP.store(t as u8, Relaxed);
}

/// Gives the kernel the THP advice of the current mode for a fresh
/// mapping. A kernel built without THP refuses the advice (`EINVAL`); the
/// mapping then has 4 KiB pages whatever the mode, and nothing is lost.
///
/// `never` costs no call where the system's THP setting is not `always`
/// (read once from sysfs): the kernel then gives huge pages only to ranges
/// marked `MADV_HUGEPAGE`, so the mapping is already what `never` asks for.
#[cfg(not(miri))]
fn advise_thp(p: *mut u8, size: usize) {
    let advice = match thp() {
        Thp::Default => return,
        Thp::Never if !system_thp_always() => return,
        Thp::Never => libc::MADV_NOHUGEPAGE,
        Thp::Always => libc::MADV_HUGEPAGE,
    };
    COUNTERS.madvise_calls.fetch_add(1, Relaxed);
    let e = Errno::save();
    // SAFETY: `[p, p + size)` is a mapping we just made; THP advice changes
    // how it is backed, never its contents.
    unsafe { libc::madvise(p.cast(), size, advice) };
    e.restore();
}

/// Whether the system's THP setting is `always`: read once from
/// `/sys/kernel/mm/transparent_hugepage/enabled` (with `open` and `read`,
/// which allocate nothing). If the file cannot be read, the answer is yes,
/// so that `never` still gives its advice.
#[cfg(not(miri))]
pub fn system_thp_always() -> bool {
    // 0: not read yet; 1: always; 2: not always.
    static SYSTEM: AtomicU8 = AtomicU8::new(0);
    match SYSTEM.load(Relaxed) {
        1 => return true,
        2 => return false,
        _ => {}
    }
    let e = Errno::save();
    let mut buf = [0u8; 64];
    // SAFETY: a NUL-terminated path and flags; the result is checked.
    let fd = unsafe { libc::open(c"/sys/kernel/mm/transparent_hugepage/enabled".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    let always = if fd < 0 {
        true
    } else {
        // SAFETY: `buf` has `buf.len()` writable bytes; `fd` is ours and
        // closed once.
        let n = unsafe {
            let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            libc::close(fd);
            n
        };
        // The setting in effect is the bracketed word: "[always] madvise never".
        n <= 0 || buf[..n as usize].starts_with(b"[always]")
    };
    e.restore();
    SYSTEM.store(if always { 1 } else { 2 }, Relaxed);
    always
}

/// Maps `size` bytes of zeroed read-write memory anywhere. Null on failure.
#[cfg(not(miri))]
pub fn map(size: usize) -> *mut u8 {
    COUNTERS.mmap_calls.fetch_add(1, Relaxed);
    let e = Errno::save();
    // SAFETY: an anonymous private mapping with no address hint has no
    // preconditions; the kernel picks a range not in use.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    e.restore();
    if p == libc::MAP_FAILED {
        return ptr::null_mut();
    }
    add_mapped(size);
    advise_thp(p.cast(), size);
    p.cast()
}

/// Unmaps `[p, p + size)`. Returns false if the kernel refused (unmapping
/// part of a mapping splits it, which fails at the process's map-count
/// limit); the range is then still mapped and the caller decides what to do
/// with it.
///
/// # Safety
/// The range must have been mapped by this module, and nothing may use it
/// afterwards.
#[cfg(not(miri))]
#[must_use]
pub unsafe fn unmap(p: *mut u8, size: usize) -> bool {
    COUNTERS.munmap_calls.fetch_add(1, Relaxed);
    let e = Errno::save();
    // SAFETY: the caller gives a range this module mapped and nothing else
    // refers to any more.
    let r = unsafe { libc::munmap(p.cast(), size) };
    e.restore();
    if r == 0 {
        sub_mapped(size);
        true
    } else {
        COUNTERS.munmap_failures.fetch_add(1, Relaxed);
        false
    }
}

/// Gives the pages of `[p, p + size)` back to the OS; they read as zero
/// afterwards. The range stays mapped. Page-aligned arguments only.
///
/// # Safety
/// The range must be mapped by this module and hold no data anyone needs.
#[cfg(not(miri))]
pub unsafe fn decommit(p: *mut u8, size: usize) -> bool {
    if size == 0 {
        return true;
    }
    COUNTERS.madvise_calls.fetch_add(1, Relaxed);
    let e = Errno::save();
    // SAFETY: the caller owns the page-aligned range and holds no live data
    // in it; MADV_DONTNEED on private anonymous memory only drops its pages.
    let r = unsafe { libc::madvise(p.cast(), size, libc::MADV_DONTNEED) };
    e.restore();
    r == 0
}

/// Tries to resize the mapping at `p` from `old` to `new` bytes without
/// moving it. Returns whether it succeeded.
///
/// # Safety
/// `[p, p + old)` must be a mapping made by this module and owned by the
/// caller; when shrinking, nothing may use the bytes past `new`.
#[cfg(not(miri))]
pub unsafe fn remap_in_place(p: *mut u8, old: usize, new: usize) -> bool {
    COUNTERS.mremap_calls.fetch_add(1, Relaxed);
    let e = Errno::save();
    // SAFETY: `p` is a mapping of `old` bytes owned by the caller; without
    // MREMAP_MAYMOVE the kernel either resizes in place or fails.
    let r = unsafe { libc::mremap(p.cast(), old, new, 0) };
    e.restore();
    if r == libc::MAP_FAILED {
        return false;
    }
    if new > old {
        add_mapped(new - old);
    } else {
        sub_mapped(old - new);
    }
    true
}

/// Moves the pages of the mapping `[old_p, old_p + old)` to `new_p`, which
/// must be a reservation of `new` bytes owned by the caller, growing it to
/// `new` bytes. On success the old range is gone. No data is copied.
///
/// # Safety
/// Both ranges must be mappings made by this module and owned by the caller;
/// on success nothing may use the old range.
#[cfg(not(miri))]
pub unsafe fn remap_to(old_p: *mut u8, old: usize, new_p: *mut u8, new: usize) -> bool {
    COUNTERS.mremap_calls.fetch_add(1, Relaxed);
    let e = Errno::save();
    // SAFETY: both ranges belong to the caller; MREMAP_FIXED replaces the
    // reservation at `new_p` atomically.
    let r = unsafe { libc::mremap(old_p.cast(), old, new, libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED, new_p) };
    e.restore();
    if r == libc::MAP_FAILED {
        return false;
    }
    // The reservation at new_p (counted as `new`) now holds the pages; the
    // old range is unmapped.
    sub_mapped(old);
    true
}

#[cfg(miri)]
pub use emulated::{
    decommit, keep_unreleased, map, map_aligned, page_size, release_or_keep, remap_in_place, remap_to,
    resident_bytes, unmap,
};

/// The memory calls when the crate runs under Miri, which has no `mmap`
/// family. A mapping is an allocation of the system allocator with the
/// requested size and alignment, so Miri checks every access to it; a table
/// keeps the layout of each one for `unmap`. The counters move as they do
/// with the real calls.
#[cfg(miri)]
mod emulated {
    use super::{add_mapped, sub_mapped, COUNTERS};
    use core::alloc::{GlobalAlloc, Layout};
    use core::ptr;
    use crate::sync::atomic::{AtomicUsize, Ordering::*};
    use std::alloc::System;

    const PAGE: usize = 4096;

    /// One live mapping: its address (0 when the slot is free), size and
    /// alignment. A slot is claimed by a compare-and-swap on the address;
    /// only the owner of the mapping reads the other two fields, after it
    /// got the mapping from `map`.
    struct Slot {
        addr: AtomicUsize,
        size: AtomicUsize,
        align: AtomicUsize,
    }

    const SLOTS: usize = 4096;
    static TABLE: [Slot; SLOTS] =
        [const { Slot { addr: AtomicUsize::new(0), size: AtomicUsize::new(0), align: AtomicUsize::new(0) } }; SLOTS];

    /// The page size the real back end would report on x86-64 Linux.
    #[inline]
    pub fn page_size() -> usize {
        PAGE
    }

    /// As the real `map_aligned`: `size` zeroed bytes aligned to `align`.
    pub fn map_aligned(size: usize, align: usize) -> *mut u8 {
        debug_assert!(size % PAGE == 0 && align.is_power_of_two());
        COUNTERS.mmap_calls.fetch_add(1, Relaxed);
        let Ok(layout) = Layout::from_size_align(size, align.max(PAGE)) else {
            return ptr::null_mut();
        };
        if size == 0 {
            return ptr::null_mut();
        }
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { System.alloc_zeroed(layout) };
        if p.is_null() {
            return p;
        }
        for slot in &TABLE {
            if slot.addr.compare_exchange(0, p.addr(), AcqRel, Relaxed).is_ok() {
                slot.size.store(size, Relaxed);
                slot.align.store(layout.align(), Relaxed);
                add_mapped(size);
                return p;
            }
        }
        // SAFETY: the allocation we just made, with its own layout.
        unsafe { System.dealloc(p, layout) };
        ptr::null_mut()
    }

    /// As the real `map`: `size` zeroed bytes, page-aligned.
    pub fn map(size: usize) -> *mut u8 {
        map_aligned(size, PAGE)
    }

    /// Frees the whole mapping at `p`, which must be `size` bytes long (a
    /// mapping is never unmapped in part here: `map_aligned` does not trim).
    fn release(p: *mut u8, size: usize) -> bool {
        for slot in &TABLE {
            if slot.addr.load(Acquire) == p.addr() {
                let (len, align) = (slot.size.load(Relaxed), slot.align.load(Relaxed));
                assert_eq!(len, size, "emulated munmap of part of a mapping");
                slot.addr.store(0, Release);
                // SAFETY: `p` is the start of a live allocation we made with
                // this layout, which the caller gives up.
                unsafe { System.dealloc(p, Layout::from_size_align_unchecked(len, align)) };
                sub_mapped(size);
                return true;
            }
        }
        false
    }

    /// As the real `unmap`.
    ///
    /// # Safety
    /// `[p, p + size)` must be a whole mapping made by this module, which
    /// nothing uses afterwards.
    #[must_use]
    pub unsafe fn unmap(p: *mut u8, size: usize) -> bool {
        COUNTERS.munmap_calls.fetch_add(1, Relaxed);
        assert!(release(p, size), "emulated munmap of memory not mapped here");
        true
    }

    /// As the real `keep_unreleased` (never needed: the emulated `unmap`
    /// never fails).
    ///
    /// # Safety
    /// The range must be mapped here and hold nothing anyone needs.
    pub unsafe fn keep_unreleased(p: *mut u8, size: usize) {
        // SAFETY: forwarded from the caller.
        unsafe { decommit(p, size) };
        COUNTERS.unreleased.fetch_add(size, Relaxed);
    }

    /// As the real `release_or_keep`; the emulated `unmap` never fails.
    ///
    /// # Safety
    /// As for [`unmap`].
    pub unsafe fn release_or_keep(p: *mut u8, size: usize) {
        // SAFETY: forwarded from the caller.
        let _ = unsafe { unmap(p, size) };
    }

    /// As the real `decommit`: the bytes read as zero afterwards.
    ///
    /// # Safety
    /// The range must be mapped by this module and hold no data anyone needs.
    pub unsafe fn decommit(p: *mut u8, size: usize) -> bool {
        if size == 0 {
            return true;
        }
        COUNTERS.madvise_calls.fetch_add(1, Relaxed);
        // SAFETY: the caller owns the range, which is mapped and writable.
        unsafe { ptr::write_bytes(p, 0, size) };
        true
    }

    /// As the real `remap_in_place`, which may always fail: it does here.
    ///
    /// # Safety
    /// As for the real call.
    pub unsafe fn remap_in_place(_p: *mut u8, _old: usize, _new: usize) -> bool {
        COUNTERS.mremap_calls.fetch_add(1, Relaxed);
        false
    }

    /// As the real `remap_to`, by copying: the first `min(old, new)` bytes
    /// of the old mapping move to `new_p`, and the old mapping is gone.
    ///
    /// # Safety
    /// As for the real call: both are whole mappings owned by the caller.
    pub unsafe fn remap_to(old_p: *mut u8, old: usize, new_p: *mut u8, new: usize) -> bool {
        COUNTERS.mremap_calls.fetch_add(1, Relaxed);
        // SAFETY: two distinct live mappings of at least the copied length.
        unsafe { ptr::copy_nonoverlapping(old_p, new_p, old.min(new)) };
        release(old_p, old)
    }

    /// No resident-set figure under Miri.
    pub fn resident_bytes() -> Option<usize> {
        None
    }
}

/// A saved `errno`, so that allocator paths leave it as they found it.
pub struct Errno(i32);

impl Errno {
    /// Saves the calling thread's `errno`.
    #[inline]
    pub fn save() -> Errno {
        // SAFETY: __errno_location returns this thread's errno slot.
        Errno(unsafe { *libc::__errno_location() })
    }

    /// Restores the saved value.
    #[inline]
    pub fn restore(self) {
        // SAFETY: as in `save`.
        unsafe { *libc::__errno_location() = self.0 };
    }
}

/// Sets the calling thread's `errno`.
#[inline]
pub fn set_errno(v: i32) {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() = v };
}

/// Makes `len` bytes at `p` inaccessible (`PROT_NONE`): any read or write
/// there faults. False if the kernel refuses; under Miri, always false.
///
/// # Safety
/// `p .. p + len` must be page-aligned and part of a mapping of ours that
/// nothing else uses.
pub unsafe fn protect_none(p: *mut u8, len: usize) -> bool {
    #[cfg(miri)]
    {
        let _ = (p, len);
        false
    }
    #[cfg(not(miri))]
    // SAFETY: by the caller.
    unsafe {
        libc::mprotect(p.cast(), len, libc::PROT_NONE) == 0
    }
}

/// 64 bits from the kernel's random source (`getrandom`, without blocking).
/// If that fails (an old kernel, a seccomp filter, entropy not yet ready),
/// the 16 random bytes the kernel gave the process at exec (`AT_RANDOM`),
/// mixed with the clock and an address, stand in.
pub fn random_u64() -> u64 {
    let mut v = 0u64;
    // SAFETY: `v` is 8 writable bytes.
    let n = unsafe { libc::getrandom((&mut v as *mut u64).cast(), 8, libc::GRND_NONBLOCK) };
    if n == 8 {
        return v;
    }
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let mut x = (ts.tv_sec as u64).wrapping_mul(1_000_000_007) ^ ts.tv_nsec as u64 ^ (&ts as *const _ as u64);
    #[cfg(not(miri))]
    {
        // SAFETY: getauxval has no preconditions; AT_RANDOM, when present,
        // points at 16 bytes the kernel placed on the initial stack.
        let at = unsafe { libc::getauxval(libc::AT_RANDOM) } as *const u64;
        if !at.is_null() {
            // SAFETY: as above; the bytes may be unaligned.
            x ^= unsafe { at.read_unaligned() ^ at.add(1).read_unaligned().rotate_left(32) };
        }
    }
    x
}

/// Milliseconds on a coarse monotonic clock (a vDSO call, no system call).
pub fn now_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC_COARSE is always
    // available on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// Writes `bytes` to standard error with `write(2)`, retrying short writes.
/// Used for reports and fatal messages; never allocates.
pub fn write_stderr(bytes: &[u8]) {
    let e = Errno::save();
    let mut rest = bytes;
    while !rest.is_empty() {
        // SAFETY: `rest` is a valid readable buffer of the given length.
        let n = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
        if n <= 0 {
            // SAFETY: reading this thread's errno.
            if n < 0 && unsafe { *libc::__errno_location() } == libc::EINTR {
                continue;
            }
            break;
        }
        rest = &rest[n as usize..];
    }
    e.restore();
}

/// Aborts the process (raising SIGABRT) without unwinding or allocating.
pub fn abort() -> ! {
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

/// Returns the calling process's resident set size in bytes, read from
/// `/proc/self/statm` without allocating. `None` if unavailable.
#[cfg(not(miri))]
pub fn resident_bytes() -> Option<usize> {
    let path = b"/proc/self/statm\0";
    // SAFETY: the path is NUL-terminated; open has no other preconditions.
    let fd = unsafe { libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    let mut buf = [0u8; 128];
    // SAFETY: `buf` is writable for its length; `fd` is open.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    // SAFETY: closing the descriptor we opened.
    unsafe { libc::close(fd) };
    if n <= 0 {
        return None;
    }
    // Second field: resident pages.
    let text = &buf[..n as usize];
    let mut fields = text.split(|&b| b == b' ');
    fields.next()?;
    let resident = fields.next()?;
    let mut v = 0usize;
    for &b in resident {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (b - b'0') as usize;
    }
    Some(v * page_size())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_is_a_power_of_two() {
        assert!(page_size().is_power_of_two());
        assert!(page_size() >= 4096);
    }

    #[test]
    fn aligned_mapping_is_aligned_and_zeroed() {
        for shift in [12, 16, 22, 24] {
            let align = 1usize << shift;
            let size = 3 * page_size();
            let p = map_aligned(size, align);
            assert!(!p.is_null());
            assert_eq!(p as usize % align, 0);
            // SAFETY: `p` maps `size` bytes.
            let s = unsafe { core::slice::from_raw_parts_mut(p, size) };
            assert!(s.iter().all(|&b| b == 0));
            s.fill(7);
            // SAFETY: our own mapping, no longer needed. The pointer comes
            // from `s`, which is read again below.
            assert!(unsafe { decommit(s.as_mut_ptr(), size) });
            assert!(s.iter().all(|&b| b == 0), "decommitted pages read as zero");
            // SAFETY: our own mapping, no longer used.
            assert!(unsafe { unmap(p, size) });
        }
    }

    #[test]
    fn impossible_mapping_returns_null_and_keeps_errno() {
        set_errno(1234);
        let p = map_aligned(usize::MAX & !(page_size() - 1), 1 << 22);
        assert!(p.is_null());
        // SAFETY: reading this thread's errno.
        assert_eq!(unsafe { *libc::__errno_location() }, 1234);
    }

    #[test]
    fn errno_survives_unmap() {
        let p = map(page_size());
        set_errno(77);
        // SAFETY: our own mapping, unused.
        assert!(unsafe { unmap(p, page_size()) });
        // SAFETY: reading this thread's errno.
        assert_eq!(unsafe { *libc::__errno_location() }, 77);
    }

    #[test]
    #[cfg_attr(miri, ignore = "reads /proc, which Miri's isolation hides")]
    fn resident_bytes_reads_statm() {
        let r = resident_bytes().expect("statm is readable");
        assert!(r > 0);
    }
}
