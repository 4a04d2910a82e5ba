//! The C allocation functions (`malloc`, `free`, `calloc`, `realloc`,
//! `posix_memalign` and the rest of the C and glibc API) with C semantics:
//! `errno` set to `ENOMEM` or `EINVAL` where glibc sets it, overflow checks
//! on multiplications, and glibc's edge cases (`malloc(0)` returns a unique
//! pointer, `realloc(p, 0)` frees and returns NULL, `free` leaves `errno`
//! alone).
//!
//! `libpoolmalloc.so` exports them under their C names. With the
//! `override` Cargo feature, this crate exports them itself, so that a Rust
//! program (a static or musl binary included) makes poolmalloc the C
//! `malloc` of its whole process: the C library's own calls, C code linked
//! in, and `std::alloc::System`. Without the feature they are ordinary Rust
//! functions.

#![allow(clippy::missing_safety_doc)] // the C standard documents these functions

use crate::front;
use crate::internals::set_errno;
use core::ffi::{c_int, c_void};
use core::ptr;

#[cfg(all(feature = "override", feature = "dlopen"))]
compile_error!(
    "the `override` and `dlopen` features do not go together: a library loaded with dlopen cannot replace the \
     process's malloc (its symbols do not interpose), so its malloc and the C library's would mix blocks"
);

const ENOMEM: c_int = libc::ENOMEM;
const EINVAL: c_int = libc::EINVAL;

#[inline(always)]
fn nomem(p: *mut u8) -> *mut c_void {
    if p.is_null() {
        set_errno(ENOMEM);
    }
    p.cast()
}

/// `malloc(3)`.
#[cfg_attr(feature = "override", no_mangle)]
#[cfg_attr(not(feature = "override"), inline)]
pub extern "C" fn malloc(size: usize) -> *mut c_void {
    // The core sets ENOMEM itself on failure.
    front::malloc(size).cast()
}

/// `free(3)`; preserves `errno`.
#[cfg_attr(feature = "override", no_mangle)]
#[cfg_attr(not(feature = "override"), inline)]
pub unsafe extern "C" fn free(p: *mut c_void) {
    // SAFETY: the C contract: `p` is null or a live block.
    unsafe { front::free(p.cast()) }
}

/// `cfree(3)`, an old alias of `free`.
#[cfg_attr(feature = "override", no_mangle)]
#[cfg_attr(not(feature = "override"), inline)]
pub unsafe extern "C" fn cfree(p: *mut c_void) {
    // SAFETY: as for free.
    unsafe { front::free(p.cast()) }
}

/// `calloc(3)`: ENOMEM on multiplication overflow.
#[cfg_attr(feature = "override", no_mangle)]
#[cfg_attr(not(feature = "override"), inline)]
pub extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    let Some(total) = n.checked_mul(size) else {
        set_errno(ENOMEM);
        return ptr::null_mut();
    };
    nomem(front::calloc(total))
}

/// `realloc(3)`: `realloc(NULL, n)` is `malloc(n)`; `realloc(p, 0)` frees
/// `p` and returns NULL; on failure the old block is left intact.
#[cfg_attr(feature = "override", no_mangle)]
#[cfg_attr(not(feature = "override"), inline)]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    if p.is_null() {
        return malloc(size);
    }
    if size == 0 {
        // SAFETY: the C contract: `p` is a live block.
        unsafe { front::free(p.cast()) };
        return ptr::null_mut();
    }
    // SAFETY: the C contract: `p` is a live block.
    nomem(unsafe { front::realloc(p.cast(), size) })
}

/// `reallocarray(3)`: ENOMEM on multiplication overflow.
#[cfg_attr(feature = "override", no_mangle)]
#[cfg_attr(not(feature = "override"), inline)]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    let Some(total) = n.checked_mul(size) else {
        set_errno(ENOMEM);
        return ptr::null_mut();
    };
    // SAFETY: forwarded.
    unsafe { realloc(p, total) }
}

/// `posix_memalign(3)`: EINVAL unless `align` is a power of two multiple of
/// `sizeof(void *)`; ENOMEM if it cannot allocate. `*memptr` is untouched on
/// failure, and `errno` is not changed.
#[cfg_attr(feature = "override", no_mangle)]
#[cfg_attr(not(feature = "override"), inline)]
pub unsafe extern "C" fn posix_memalign(memptr: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !align.is_power_of_two() || align % core::mem::size_of::<*mut c_void>() != 0 {
        return EINVAL;
    }
    let e = crate::internals::Errno::save();
    let p = front::malloc_aligned(size, align);
    e.restore();
    if p.is_null() {
        return ENOMEM;
    }
    // SAFETY: the caller gives a writable pointer slot.
    unsafe { *memptr = p.cast() };
    0
}

/// `aligned_alloc(3)`: EINVAL unless `align` is a power of two.
#[cfg_attr(feature = "override", no_mangle)]
#[cfg_attr(not(feature = "override"), inline)]
pub extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        set_errno(EINVAL);
        return ptr::null_mut();
    }
    nomem(front::malloc_aligned(size, align))
}

/// `memalign(3)`: like glibc, an alignment that is not a power of two is
/// rounded up to one; an impossible one gives EINVAL.
#[cfg_attr(feature = "override", no_mangle)]
#[cfg_attr(not(feature = "override"), inline)]
pub extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    let Some(a) = align.max(1).checked_next_power_of_two() else {
        set_errno(EINVAL);
        return ptr::null_mut();
    };
    nomem(front::malloc_aligned(size, a))
}

/// `valloc(3)`: page-aligned.
#[cfg_attr(feature = "override", no_mangle)]
#[cfg_attr(not(feature = "override"), inline)]
pub extern "C" fn valloc(size: usize) -> *mut c_void {
    nomem(front::malloc_aligned(size, crate::internals::page_size()))
}

/// `pvalloc(3)`: page-aligned, size rounded up to whole pages.
#[cfg_attr(feature = "override", no_mangle)]
#[cfg_attr(not(feature = "override"), inline)]
pub extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let page = crate::internals::page_size();
    let Some(rounded) = crate::internals::align_up(size.max(1), page) else {
        set_errno(ENOMEM);
        return ptr::null_mut();
    };
    nomem(front::malloc_aligned(rounded, page))
}

/// `malloc_usable_size(3)`: 0 for NULL.
#[cfg_attr(feature = "override", no_mangle)]
#[cfg_attr(not(feature = "override"), inline)]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    // SAFETY: the C contract: `p` is null or a live block.
    unsafe { front::usable_size(p.cast(), "malloc_usable_size") }
}

/// C23 `free_sized`.
#[cfg_attr(feature = "override", no_mangle)]
#[cfg_attr(not(feature = "override"), inline)]
pub unsafe extern "C" fn free_sized(p: *mut c_void, size: usize) {
    // SAFETY: the C contract: `p` is null or a live block.
    unsafe { front::free_sized(p.cast(), size, "free_sized") }
}

/// C23 `free_aligned_sized`.
#[cfg_attr(feature = "override", no_mangle)]
#[cfg_attr(not(feature = "override"), inline)]
pub unsafe extern "C" fn free_aligned_sized(p: *mut c_void, _align: usize, size: usize) {
    // SAFETY: the C contract: `p` is null or a live block.
    unsafe { front::free_sized(p.cast(), size, "free_aligned_sized") }
}

/// glibc's `malloc_trim(3)`: returns 1 (memory may have been released).
#[cfg_attr(feature = "override", no_mangle)]
#[cfg_attr(not(feature = "override"), inline)]
pub extern "C" fn malloc_trim(_pad: usize) -> c_int {
    crate::trim();
    1
}

/// glibc's `malloc_stats(3)`: prints poolmalloc's report to stderr.
#[cfg_attr(feature = "override", no_mangle)]
#[cfg_attr(not(feature = "override"), inline)]
pub extern "C" fn malloc_stats() {
    crate::internals::print_stats();
}

