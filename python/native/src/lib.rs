//! `poolmalloc._native`: the native half of the Python package.
//!
//! It drives one of two copies of the allocator:
//!
//! * **A `libpoolmalloc.so` already in the process** (the launcher preloads
//!   it): found through `dlsym(RTLD_DEFAULT, "pm_owns")`. Its `malloc` is
//!   the process's `malloc`, so this module calls the C allocation functions
//!   and the library's `pm_*` extras.
//! * **The copy linked into this module.** The package builds the module
//!   twice: `_native_ie`, whose allocator keeps its thread-local heap slot in
//!   initial-exec TLS (one load per allocation, but `dlopen` can place it
//!   only while the static TLS block has room), and `_native`, built with the
//!   `dlopen` feature (general-dynamic TLS: a call per allocation, and it
//!   loads whatever room is left). The package imports the first that loads.
//!
//! [`install`] switches CPython's object and memory domains onto that
//! allocator through the PEP 445 API. Blocks the previous allocator handed
//! out stay its own: every free and realloc asks the ownership map whether
//! the pointer is poolmalloc's, and passes the others to the allocator it
//! replaced, which it keeps as the context of its hooks.

use core::ffi::{c_char, c_int, c_void};
use core::ptr;
use poolmalloc::internals as pm;
use pyo3::ffi::{self, PyMemAllocatorDomain, PyMemAllocatorEx};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// The `pm_*` functions of a `libpoolmalloc.so` that is the process's
/// `malloc`.
struct Preloaded {
    owns: unsafe extern "C" fn(*const c_void) -> c_int,
    stats_json: unsafe extern "C" fn(*mut c_char, usize) -> usize,
    stats_report: unsafe extern "C" fn(*mut c_char, usize) -> usize,
    trim: unsafe extern "C" fn(),
}

/// The preloaded library, looked up once; `None` when there is none.
fn preloaded() -> Option<&'static Preloaded> {
    static FOUND: OnceLock<Option<Preloaded>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let find = |name: &[u8]| {
                // SAFETY: `name` is NUL-terminated; RTLD_DEFAULT searches the
                // global scope and returns null when nothing matches.
                let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr().cast()) };
                (!p.is_null()).then_some(p)
            };
            let (owns, json, report, trim) =
                (find(b"pm_owns\0")?, find(b"pm_stats_json\0")?, find(b"pm_stats_report\0")?, find(b"pm_trim\0")?);
            // SAFETY: these symbols are libpoolmalloc's, with the types its
            // header `poolmalloc.h` declares.
            unsafe {
                Some(Preloaded {
                    owns: core::mem::transmute::<*mut c_void, unsafe extern "C" fn(*const c_void) -> c_int>(owns),
                    stats_json: core::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut c_char, usize) -> usize>(
                        json,
                    ),
                    stats_report: core::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut c_char, usize) -> usize>(
                        report,
                    ),
                    trim: core::mem::transmute::<*mut c_void, unsafe extern "C" fn()>(trim),
                })
            }
        })
        .as_ref()
}

/// Text from one of the library's `pm_stats_*` functions, which say how
/// long the whole text is; retried while it grows between the calls.
fn text_from(f: unsafe extern "C" fn(*mut c_char, usize) -> usize) -> String {
    let mut cap = 1 << 14;
    loop {
        let mut buf = vec![0u8; cap];
        // SAFETY: `buf` has `cap` writable bytes.
        let len = unsafe { f(buf.as_mut_ptr().cast(), cap) };
        if len < cap {
            buf.truncate(len);
            return String::from_utf8_lossy(&buf).into_owned();
        }
        cap = len + 1 + len / 4;
    }
}

/// The allocators PEP 445 hooks replaced, one per domain this module takes
/// over; each hook's context points at its domain's entry.
struct Replaced(PyMemAllocatorEx);

// SAFETY: the saved allocator is written once, before it is published, and
// only read after; CPython's allocators may be called from any thread.
unsafe impl Send for Replaced {}
// SAFETY: as above.
unsafe impl Sync for Replaced {}

static REPLACED_MEM: OnceLock<Replaced> = OnceLock::new();
static REPLACED_OBJ: OnceLock<Replaced> = OnceLock::new();
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// The allocator a hook replaced, from the hook's context.
///
/// # Safety
/// `ctx` must be the context [`install`] gave the hook.
unsafe fn replaced<'a>(ctx: *mut c_void) -> &'a PyMemAllocatorEx {
    // SAFETY: by the caller, `ctx` points at a `Replaced` in a static.
    unsafe { &(*ctx.cast::<Replaced>()).0 }
}

// The hooks on the copy linked into this module.

extern "C" fn linked_malloc(_ctx: *mut c_void, size: usize) -> *mut c_void {
    pm::malloc(size).cast()
}

extern "C" fn linked_calloc(_ctx: *mut c_void, nelem: usize, elsize: usize) -> *mut c_void {
    match nelem.checked_mul(elsize) {
        Some(total) => pm::calloc(total).cast(),
        None => ptr::null_mut(),
    }
}

extern "C" fn linked_realloc(ctx: *mut c_void, p: *mut c_void, size: usize) -> *mut c_void {
    if p.is_null() {
        return pm::malloc(size).cast();
    }
    if pm::owns(p.cast()) {
        // SAFETY: CPython passes a live block of this domain, and the map
        // says it is ours. PEP 445 asks that a resize to 0 keep a block.
        return unsafe { pm::realloc(p.cast(), size.max(1)) }.cast();
    }
    // SAFETY: the hook's context is its domain's replaced allocator, which
    // handed `p` out.
    let old = unsafe { replaced(ctx) };
    match old.realloc {
        Some(f) => f(old.ctx, p, size),
        None => ptr::null_mut(),
    }
}

extern "C" fn linked_free(ctx: *mut c_void, p: *mut c_void) {
    // SAFETY: CPython passes null or a live block of this domain, ours or
    // the replaced allocator's.
    if p.is_null() || unsafe { pm::free_if_ours(p.cast()) } {
        return;
    }
    // SAFETY: as in `linked_realloc`.
    let old = unsafe { replaced(ctx) };
    if let Some(f) = old.free {
        f(old.ctx, p);
    }
}

// The hooks on a preloaded library: the C allocation functions are its.

extern "C" fn preloaded_malloc(_ctx: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: C `malloc`, the preloaded poolmalloc's.
    unsafe { libc::malloc(size) }
}

extern "C" fn preloaded_calloc(_ctx: *mut c_void, nelem: usize, elsize: usize) -> *mut c_void {
    // SAFETY: C `calloc`, which checks the product.
    unsafe { libc::calloc(nelem, elsize) }
}

fn preloaded_owns(p: *mut c_void) -> bool {
    // SAFETY: `pm_owns` dereferences nothing that is not poolmalloc's.
    preloaded().is_some_and(|l| unsafe { (l.owns)(p) } != 0)
}

extern "C" fn preloaded_realloc(ctx: *mut c_void, p: *mut c_void, size: usize) -> *mut c_void {
    if p.is_null() || preloaded_owns(p) {
        // SAFETY: null, or a live block of the process's `malloc`.
        return unsafe { libc::realloc(p, size.max(1)) };
    }
    // SAFETY: as in `linked_realloc`.
    let old = unsafe { replaced(ctx) };
    match old.realloc {
        Some(f) => f(old.ctx, p, size),
        None => ptr::null_mut(),
    }
}

extern "C" fn preloaded_free(ctx: *mut c_void, p: *mut c_void) {
    if p.is_null() {
        return;
    }
    if preloaded_owns(p) {
        // SAFETY: a live block of the process's `malloc`.
        unsafe { libc::free(p) };
        return;
    }
    // SAFETY: as in `linked_realloc`.
    let old = unsafe { replaced(ctx) };
    if let Some(f) = old.free {
        f(old.ctx, p);
    }
}

#[cfg_attr(feature = "dlopen", pyo3::pymodule(name = "_native"))]
#[cfg_attr(not(feature = "dlopen"), pyo3::pymodule(name = "_native_ie"))]
mod _native {
    use super::*;
    use pyo3::prelude::*;

    /// The allocator's version.
    #[pyfunction]
    fn version() -> &'static str {
        poolmalloc::VERSION
    }

    /// Whether a `libpoolmalloc.so` is the process's `malloc` (preloaded
    /// or linked); this module then drives it rather than its own copy.
    #[pyfunction]
    fn preloaded_library() -> bool {
        preloaded().is_some()
    }

    /// Whether `address` points into memory the driven allocator handed
    /// out. Never dereferences the address.
    #[pyfunction]
    fn owns(address: usize) -> bool {
        let p = ptr::with_exposed_provenance_mut::<c_void>(address);
        match preloaded() {
            Some(_) => preloaded_owns(p),
            None => pm::owns(p.cast()),
        }
    }

    /// Whether `install` has switched the interpreter's domains.
    #[pyfunction]
    fn installed() -> bool {
        INSTALLED.load(Ordering::Acquire)
    }

    /// Switches the object and memory domains onto the driven allocator,
    /// wrapping the allocators they had. Returns false when they were
    /// switched already. Runs with the GIL held, as PEP 445 requires.
    #[pyfunction]
    fn install(_py: Python<'_>) -> bool {
        if INSTALLED.load(Ordering::Acquire) {
            return false;
        }
        let linked = preloaded().is_none();
        for (domain, slot) in [
            (PyMemAllocatorDomain::PYMEM_DOMAIN_MEM, &REPLACED_MEM),
            (PyMemAllocatorDomain::PYMEM_DOMAIN_OBJ, &REPLACED_OBJ),
        ] {
            let mut old =
                PyMemAllocatorEx { ctx: ptr::null_mut(), malloc: None, calloc: None, realloc: None, free: None };
            // SAFETY: the GIL is held; `old` is a valid out-parameter.
            unsafe { ffi::PyMem_GetAllocator(domain, &mut old) };
            let saved = slot.get_or_init(|| Replaced(old));
            let ctx = ptr::from_ref(saved).cast_mut().cast::<c_void>();
            let mut hooks = if linked {
                PyMemAllocatorEx {
                    ctx,
                    malloc: Some(linked_malloc),
                    calloc: Some(linked_calloc),
                    realloc: Some(linked_realloc),
                    free: Some(linked_free),
                }
            } else {
                PyMemAllocatorEx {
                    ctx,
                    malloc: Some(preloaded_malloc),
                    calloc: Some(preloaded_calloc),
                    realloc: Some(preloaded_realloc),
                    free: Some(preloaded_free),
                }
            };
            // SAFETY: the GIL is held; CPython copies the hooks.
            unsafe { ffi::PyMem_SetAllocator(domain, &mut hooks) };
        }
        INSTALLED.store(true, Ordering::Release);
        true
    }

    /// The statistics snapshot as JSON (the keys of the JSON report).
    #[pyfunction]
    fn stats_json() -> String {
        match preloaded() {
            Some(l) => text_from(l.stats_json),
            // The snapshot has no map with non-string keys: serialising
            // cannot fail.
            None => serde_json::to_string(&poolmalloc::stats()).unwrap_or_default(),
        }
    }

    /// The text statistics report.
    #[pyfunction]
    fn report() -> String {
        match preloaded() {
            Some(l) => text_from(l.stats_report),
            None => poolmalloc::stats().to_string(),
        }
    }

    /// Returns free memory to the OS now.
    #[pyfunction]
    fn trim() {
        match preloaded() {
            // SAFETY: `pm_trim` takes no argument.
            Some(l) => unsafe { (l.trim)() },
            None => poolmalloc::trim(),
        }
    }
}
