//! Fault reports (bottom layer: every layer may call it).
//!
//! An invalid pointer handed to poolmalloc (wild, foreign, interior,
//! misaligned, already freed) gets one line on stderr naming the entry point,
//! the pointer and the reason, built in a stack buffer, then by default an
//! abort. `POOLMALLOC_INVALID_FREE` chooses abort, warn or ignore. Callable
//! from any thread, holding any lock: it takes none and never allocates.

use crate::options::{self, InvalidFree};
use crate::os;
use crate::report::Line;

/// Reports an invalid pointer passed to `free` (the pool layer's checks).
#[cold]
pub(crate) fn invalid_free(p: *mut u8, why: &str) {
    invalid_pointer("free", p, why);
}

/// Reports an invalid pointer passed to `what`, then aborts unless
/// `POOLMALLOC_INVALID_FREE` says otherwise.
#[cold]
pub(crate) fn invalid_pointer(what: &str, p: *mut u8, why: &str) {
    let mode = options::invalid_free();
    if mode == InvalidFree::Ignore {
        return;
    }
    let mut m = Line::new();
    m.push("poolmalloc: invalid ").push(what).push(" of ").push_hex(p as usize);
    m.push(" (").push(why).push(")\n");
    os::write_stderr(m.as_bytes());
    if mode == InvalidFree::Abort {
        os::abort();
    }
}
