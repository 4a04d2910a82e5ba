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

/// Reports a corrupted free list and aborts, whatever
/// `POOLMALLOC_INVALID_FREE` says: a free block of `pool` links to `block`,
/// which is not a free block of that pool (a write to a freed block changed
/// the link). Handing the block out would give the program memory that is
/// not free, or an address of an attacker's choosing; carrying on without
/// the rest of the list would leave the pool's counts wrong.
#[cold]
#[inline(never)]
pub(crate) fn corrupted_free_list(pool: usize, block: usize) -> ! {
    let mut m = Line::new();
    m.push("poolmalloc: corrupted free list in the pool at ").push_hex(pool);
    m.push(": link to ").push_hex(block).push(", which is not a free block of the pool (written after free?)\n");
    os::write_stderr(m.as_bytes());
    os::abort()
}
