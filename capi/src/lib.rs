//! `libpoolmalloc.so`: the C allocator interface.
//!
//! Every function forwards to the `poolmalloc` core and adds only the C
//! conventions: `errno` set to `ENOMEM` or `EINVAL` where glibc sets it,
//! overflow checks on multiplications, and glibc's edge cases (`malloc(0)`
//! returns a unique pointer, `realloc(p, 0)` frees and returns NULL, `free`
//! leaves `errno` alone). Built with `panic = "abort"`; nothing here can
//! unwind.
//!
//! Load it into any dynamically linked program with
//! `LD_PRELOAD=target/release/libpoolmalloc.so`.

#![allow(clippy::missing_safety_doc)] // the C standard documents these functions

use core::ffi::{c_char, c_int, c_void};
use core::ptr;
use pm::internals as core_alloc;

use pm::cabi;

const _: () = assert!(
    !pm::OVERRIDE,
    "libpoolmalloc.so defines the C allocation functions itself: build it without poolmalloc's `override` feature"
);

/// `malloc(3)`.
#[no_mangle]
pub extern "C" fn malloc(size: usize) -> *mut c_void {
    cabi::malloc(size)
}

/// `free(3)`; preserves `errno`.
#[no_mangle]
pub unsafe extern "C" fn free(p: *mut c_void) {
    // SAFETY: the C contract, forwarded.
    unsafe { cabi::free(p) }
}

/// `cfree(3)`, an old alias of `free`.
#[no_mangle]
pub unsafe extern "C" fn cfree(p: *mut c_void) {
    // SAFETY: the C contract, forwarded.
    unsafe { cabi::cfree(p) }
}

/// `calloc(3)`: ENOMEM on multiplication overflow.
#[no_mangle]
pub extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    cabi::calloc(n, size)
}

/// `realloc(3)`: `realloc(NULL, n)` is `malloc(n)`; `realloc(p, 0)` frees
/// `p` and returns NULL; on failure the old block is left intact.
#[no_mangle]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: the C contract, forwarded.
    unsafe { cabi::realloc(p, size) }
}

/// `reallocarray(3)`: ENOMEM on multiplication overflow.
#[no_mangle]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    // SAFETY: the C contract, forwarded.
    unsafe { cabi::reallocarray(p, n, size) }
}

/// `posix_memalign(3)`: EINVAL unless `align` is a power of two multiple of
/// `sizeof(void *)`; ENOMEM if it cannot allocate. `*memptr` is untouched on
/// failure, and `errno` is not changed.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(memptr: *mut *mut c_void, align: usize, size: usize) -> c_int {
    // SAFETY: the C contract, forwarded.
    unsafe { cabi::posix_memalign(memptr, align, size) }
}

/// `aligned_alloc(3)`: EINVAL unless `align` is a power of two.
#[no_mangle]
pub extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    cabi::aligned_alloc(align, size)
}

/// `memalign(3)`: like glibc, an alignment that is not a power of two is
/// rounded up to one; an impossible one gives EINVAL.
#[no_mangle]
pub extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    cabi::memalign(align, size)
}

/// `valloc(3)`: page-aligned.
#[no_mangle]
pub extern "C" fn valloc(size: usize) -> *mut c_void {
    cabi::valloc(size)
}

/// `pvalloc(3)`: page-aligned, size rounded up to whole pages.
#[no_mangle]
pub extern "C" fn pvalloc(size: usize) -> *mut c_void {
    cabi::pvalloc(size)
}

/// `malloc_usable_size(3)`: 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    // SAFETY: the C contract, forwarded.
    unsafe { cabi::malloc_usable_size(p) }
}

/// C23 `free_sized`.
#[no_mangle]
pub unsafe extern "C" fn free_sized(p: *mut c_void, size: usize) {
    // SAFETY: the C contract, forwarded.
    unsafe { cabi::free_sized(p, size) }
}

/// C23 `free_aligned_sized`.
#[no_mangle]
pub unsafe extern "C" fn free_aligned_sized(p: *mut c_void, align: usize, size: usize) {
    // SAFETY: the C contract, forwarded.
    unsafe { cabi::free_aligned_sized(p, align, size) }
}

/// glibc's `malloc_trim(3)`: returns 1 (memory may have been released).
#[no_mangle]
pub extern "C" fn malloc_trim(_pad: usize) -> c_int {
    cabi::malloc_trim(_pad)
}

/// glibc's `malloc_stats(3)`: prints poolmalloc's report to stderr.
#[no_mangle]
pub extern "C" fn malloc_stats() {
    cabi::malloc_stats()
}

/// Prints the statistics report to stderr.
#[no_mangle]
pub extern "C" fn pm_stats_print() {
    pm::internals::print_stats();
}

/// Returns free memory to the OS now.
#[no_mangle]
pub extern "C" fn pm_trim() {
    pm::trim();
}

static VERSION_C: &[u8] = concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes();

/// The library version as a NUL-terminated string.
#[no_mangle]
pub extern "C" fn pm_version() -> *const c_char {
    VERSION_C.as_ptr().cast()
}

/// Text written into a caller's buffer: as much as fits, then NUL; counts
/// the whole length so the caller can retry with a buffer large enough.
/// Allocates nothing.
struct Sink {
    buf: *mut u8,
    cap: usize,
    len: usize,
}

impl Sink {
    fn put(&mut self, bytes: &[u8]) {
        let room = self.cap.saturating_sub(1).saturating_sub(self.len);
        let n = bytes.len().min(room);
        if n > 0 {
            // SAFETY: `buf` has `cap` writable bytes (the caller's contract);
            // `len + n < cap`.
            unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), self.buf.add(self.len), n) };
        }
        self.len += bytes.len();
    }

    /// NUL-terminates what fits and returns the full length.
    fn finish(self) -> usize {
        if self.cap > 0 {
            let at = self.len.min(self.cap - 1);
            // SAFETY: `at < cap`.
            unsafe { self.buf.add(at).write(0) };
        }
        self.len
    }
}

impl core::fmt::Write for Sink {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.put(s.as_bytes());
        Ok(())
    }
}

impl std::io::Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.put(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes the statistics as JSON (the keys of the JSON report) into `buf`
/// (`cap` bytes), NUL-terminated. Returns the length of the whole text
/// without the NUL; when that is `cap` or more, `buf` holds a prefix and
/// the caller may retry with a larger buffer. `buf` may be null when `cap`
/// is 0.
#[no_mangle]
pub unsafe extern "C" fn pm_stats_json(buf: *mut c_char, cap: usize) -> usize {
    let mut sink = Sink { buf: buf.cast(), cap, len: 0 };
    // The sink never fails, and the snapshot has no map with non-string
    // keys: serialising cannot fail.
    let _ = serde_json::to_writer(&mut sink, &pm::stats());
    sink.finish()
}

/// Writes the text statistics report (the one `pm_stats_print` prints) into
/// `buf`, as [`pm_stats_json`] does.
#[no_mangle]
pub unsafe extern "C" fn pm_stats_report(buf: *mut c_char, cap: usize) -> usize {
    let mut sink = Sink { buf: buf.cast(), cap, len: 0 };
    let _ = core::fmt::Write::write_fmt(&mut sink, format_args!("{}", pm::stats()));
    sink.finish()
}

/// `struct pm_counters` of `poolmalloc.h`: [`pm::Counters`] in C.
#[repr(C)]
pub struct PmCounters {
    /// Bytes of live blocks.
    pub allocated: usize,
    /// Bytes of the pages that hold live blocks.
    pub active: usize,
    /// Bytes mapped from the OS.
    pub mapped: usize,
    /// Mapped bytes less those given back to the OS while still mapped.
    pub resident: usize,
}

/// Success.
pub const PM_OK: c_int = 0;
/// No option of that name.
pub const PM_EUNKNOWN: c_int = -1;
/// The value does not parse for that option.
pub const PM_EVALUE: c_int = -2;
/// The option cannot change at run time.
pub const PM_EFIXED: c_int = -3;
/// A null pointer, or a name or value that is not UTF-8.
pub const PM_EINVAL: c_int = -4;

fn option_code(e: pm::options::OptionError) -> c_int {
    match e {
        pm::options::OptionError::Unknown => PM_EUNKNOWN,
        pm::options::OptionError::BadValue => PM_EVALUE,
        pm::options::OptionError::Fixed => PM_EFIXED,
    }
}

/// A C string as `&str`, or `None` for null or bytes that are not UTF-8.
///
/// # Safety
/// `s` must be null or a NUL-terminated string.
unsafe fn c_str<'a>(s: *const c_char) -> Option<&'a str> {
    if s.is_null() {
        return None;
    }
    // SAFETY: by the caller, `s` is NUL-terminated.
    unsafe { core::ffi::CStr::from_ptr(s) }.to_str().ok()
}

/// Fills `*out` with the byte counters of [`pm::counters`]: O(1), no lock,
/// no allocation. `PM_EINVAL` if `out` is null.
#[no_mangle]
pub unsafe extern "C" fn pm_counters(out: *mut PmCounters) -> c_int {
    if out.is_null() {
        return PM_EINVAL;
    }
    let c = pm::counters();
    // SAFETY: by the caller, a non-null `out` points to a writable struct.
    unsafe {
        out.write(PmCounters { allocated: c.allocated, active: c.active, mapped: c.mapped, resident: c.resident })
    };
    PM_OK
}

/// Sets option `name` (`"POOLMALLOC_PURGE_DELAY"` or `"purge_delay"`) to
/// `value`, as [`pm::options::set`] does. A refused call changes nothing.
#[no_mangle]
pub unsafe extern "C" fn pm_option_set(name: *const c_char, value: *const c_char) -> c_int {
    // SAFETY: by the C contract, each is null or a NUL-terminated string.
    let (Some(name), Some(value)) = (unsafe { c_str(name) }, unsafe { c_str(value) }) else {
        return PM_EINVAL;
    };
    match pm::options::set(name, value) {
        Ok(()) => PM_OK,
        Err(e) => option_code(e),
    }
}

/// Writes the text of option `name`'s value into `buf` (`cap` bytes,
/// NUL-terminated, as [`pm_stats_json`] does) and returns its length
/// without the NUL, or a negative `PM_E*` code with nothing written.
#[no_mangle]
pub unsafe extern "C" fn pm_option_get(name: *const c_char, buf: *mut c_char, cap: usize) -> core::ffi::c_long {
    // SAFETY: by the C contract, `name` is null or a NUL-terminated string.
    let Some(name) = (unsafe { c_str(name) }) else {
        return PM_EINVAL.into();
    };
    if buf.is_null() && cap > 0 {
        return PM_EINVAL.into();
    }
    match pm::options::get(name) {
        Ok(v) => {
            let mut sink = Sink { buf: buf.cast(), cap, len: 0 };
            let _ = core::fmt::Write::write_fmt(&mut sink, format_args!("{v}"));
            sink.finish() as core::ffi::c_long
        }
        Err(e) => option_code(e).into(),
    }
}

/// 1 if `p` points into memory poolmalloc handed out (a live block, or a
/// bad pointer into poolmalloc's memory, which its `free` reports), 0 for
/// memory of any other allocator and for null. Never dereferences a
/// pointer that is not poolmalloc's.
#[no_mangle]
pub extern "C" fn pm_owns(p: *const c_void) -> c_int {
    c_int::from(core_alloc::owns(p.cast_mut().cast()))
}
