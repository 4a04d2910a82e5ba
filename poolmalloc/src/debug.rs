//! Debug mode, in the manner of CPython's `PYTHONMALLOC=debug`.
//!
//! Enabled for the whole process with `POOLMALLOC_DEBUG=1` (both the C
//! library and `PoolMalloc`), or per allocator with [`DebugPoolMalloc`].
//! Debug blocks come from the locked-mode heap: its pools' owner word never
//! matches a thread id, so every `free` leaves the fast path and reaches
//! these checks, and the normal fast path pays nothing for the mode.
//!
//! # Block layout
//!
//! ```text
//!  raw                                   p = raw + H             p + n
//!  │ offset H │ 0xFD … │ n │ serial │ state │ 0xFD × 16 │ data (n bytes) │ 0xFD × 16 │
//!  └ 8 bytes ─┘        p-40   p-32    p-24    p-16        0xCD when new      tail pad
//!                                                         0xDD when freed
//! ```
//!
//! * `H` = max(64, alignment): the header keeps `p` aligned.
//! * `n`: the requested size; `serial`: the how-manieth debug allocation this
//!   is; `state`: a magic number bound to `p`, one value while allocated and
//!   another once freed.
//! * Forbidden bytes (0xFD) fill the lead pad and the tail pad; new memory is
//!   filled with 0xCD (except zeroed allocations), freed memory with 0xDD.
//!
//! # Checks on every free and realloc
//!
//! the pointer is poolmalloc's; it is the start of a block (not its middle);
//! the block is not already freed (double free); the lead pad is intact
//! (underflow); the tail pad is intact (overflow); a sized free
//! (`free_sized`, Rust's `dealloc`) gives the size that was allocated. With
//! `POOLMALLOC_DEBUG_QUARANTINE=N` the last N freed blocks stay out of
//! circulation and are checked to still hold 0xDD when they leave (write
//! after free). A failed check prints a report naming the check, the
//! address, the requested size, the serial number and the bytes around the
//! bad spot (bad ones marked), then aborts.

use crate::lock::RawLock;
use crate::options;
use crate::os;
use crate::pool::state;
use crate::report::Line;
use crate::size_class::{self, ALIGNMENT};
use crate::sync::Local;
use crate::{arena, engine, large, lifecycle, ownership, thread};
use core::alloc::{GlobalAlloc, Layout};
use core::ptr;
use crate::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Forbidden byte: guard pads.
pub const FORBIDDEN: u8 = 0xFD;
/// Fill of new blocks.
pub const CLEAN: u8 = 0xCD;
/// Fill of freed blocks.
pub const DEAD: u8 = 0xDD;
/// Bytes of the lead and tail pads.
pub const PAD: usize = 16;
/// Smallest header before the data.
pub const HEADER: usize = 64;

const ALLOCATED: u64 = 0x6465_6275_6761_6c6c; // "debugall"
const FREED: u64 = 0x6465_6275_6766_7265; // "debugfre"
/// Stamped (with the pool's generation and the address) 16 bytes into a
/// raw block given back to its pool, where the pool's links do not reach.
const RETURNED: u64 = 0x6465_6275_6772_6574; // "debugret"

static SERIAL: AtomicU64 = AtomicU64::new(0);

/// Upper bound of the quarantine.
pub const QUARANTINE_MAX: usize = 65536;

struct Quarantine {
    lock: RawLock,
    ring: [Local<usize>; QUARANTINE_MAX],
    head: Local<usize>,
    len: Local<usize>,
}

static QUARANTINE: Quarantine = Quarantine {
    lock: RawLock::new(),
    ring: [const { Local::new(0) }; QUARANTINE_MAX],
    head: Local::new(0),
    len: Local::new(0),
};

fn header_for(align: usize) -> usize {
    align.max(HEADER)
}

/// Reads the word at `at`.
///
/// # Safety
/// `at` must be inside a live raw block, 8-aligned.
unsafe fn word(at: usize) -> u64 {
    // SAFETY: by the caller.
    unsafe { (at as *const u64).read() }
}

/// Writes the word at `at`.
///
/// # Safety
/// As for [`word`].
unsafe fn set_word(at: usize, v: u64) {
    // SAFETY: by the caller.
    unsafe { (at as *mut u64).write(v) }
}

/// A raw block from the engine's locked heap (or a huge span), not a
/// debug block.
fn raw_alloc(size: usize, align: usize) -> *mut u8 {
    lifecycle::global_init();
    engine::alloc_locked(size, align, false)
}

/// The raw block containing `p` and its usable size, or `None`.
///
/// For a `p` in an arena this reads the geometry of `p`'s pool, which is
/// sound when `p` lies in a raw block that is handed out (the pool's `init`
/// happened before the block reached us). The checks also call it for
/// pointers that are not: see the note inside.
fn raw_block(p: usize) -> Option<(usize, usize)> {
    match ownership::tag_of(p) {
        ownership::TAG_ARENA => {
            // SAFETY: `p` is in an arena, whose header is mapped.
            let pool = unsafe { &*arena::owning_pool(ptr::with_exposed_provenance_mut(p)) };
            let st = pool.hand.state.load(Relaxed);
            // `end` and `block_size` are geometry (see `Pool`): for a `p` in
            // a handed-out raw block (a live debug block, a quarantined one,
            // a fresh one) they are the current init's. `validate` and
            // `dump` also ask about the pointers they diagnose (a block
            // freed twice, a stale pointer), whose pool may be re-initialised
            // meanwhile: the answer may then be stale, and it only shapes
            // the report.
            // SAFETY: `start` never changes once the arena is made.
            let start = unsafe { pool.start.get() } as usize;
            let (end, bs) = (pool.end() as usize, pool.block_size());
            if (st != state::USED && st != state::ABANDONED) || p < start || p >= end || bs == 0 {
                return None;
            }
            Some((start + (p - start) / bs * bs, bs))
        }
        ownership::TAG_LARGE_HEAD | ownership::TAG_LARGE_TAIL => {
            large::containing(p as *mut u8).map(|(b, n)| (b as usize, n))
        }
        _ => None,
    }
}

/// The stamp arena block `raw` gets when debug mode gives it back: bound to
/// the block's address, to the record of the pool that holds it and to that
/// pool's generation, so that it is found again only while the same use of
/// the same pool lasts.
fn returned_stamp(raw: usize) -> u64 {
    let pool = arena::owning_pool(ptr::with_exposed_provenance_mut(raw));
    // SAFETY: `raw` is in an arena, whose header is mapped. Its callers pass
    // a raw block that is handed out (one being given back, or one just
    // allocated), so this is the generation of the pool's current init.
    let generation = unsafe { (*pool).generation() };
    RETURNED ^ raw as u64 ^ (pool as u64).rotate_left(32) ^ (u64::from(generation) << 40)
}

/// Gives a raw block back.
fn raw_free(raw: usize) {
    if ownership::tag_of(raw) == ownership::TAG_ARENA {
        // SAFETY: raw + 16 .. raw + 24 is in the block's header (64 bytes or
        // more), which the pool's links (the first 16 bytes) do not reach.
        unsafe { set_word(raw + 16, returned_stamp(raw)) };
        thread::locked_free(raw as *mut u8);
    } else {
        large::free(raw as *mut u8);
    }
}

/// Allocates a debug block of `size` bytes aligned to `align`; zeroed if
/// `zero`, else filled with 0xCD. Null (with ENOMEM) on failure.
pub fn malloc(size: usize, align: usize, zero: bool) -> *mut u8 {
    let align = align.max(ALIGNMENT);
    let h = header_for(align);
    let Some(total) = size.checked_add(h + PAD).filter(|&t| t <= isize::MAX as usize) else {
        os::set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    let raw = raw_alloc(total, align);
    if raw.is_null() {
        os::set_errno(libc::ENOMEM);
        return raw;
    }
    let r = raw as usize;
    check_reuse(r, h);
    let p = r + h;
    // SAFETY: the raw block holds `total` bytes: header, data, tail pad.
    unsafe {
        set_word(r, h as u64);
        ptr::write_bytes((r + 8) as *mut u8, FORBIDDEN, h - 8 - 40);
        set_word(p - 40, size as u64);
        set_word(p - 32, SERIAL.fetch_add(1, Relaxed) + 1);
        set_word(p - 24, ALLOCATED ^ p as u64);
        ptr::write_bytes((p - PAD) as *mut u8, FORBIDDEN, PAD);
        ptr::write_bytes(p as *mut u8, if zero { 0 } else { CLEAN }, size);
        ptr::write_bytes((p + size) as *mut u8, FORBIDDEN, PAD);
    }
    p as *mut u8
}

/// Checks a raw block about to be reused: if a debug block freed from it
/// still says so (its state word, which names its own address, survives in
/// the raw block after the free), its data must still be all free pattern.
/// This catches a write after free without a quarantine, when the block
/// comes back. `h` is the header length of the new block; blocks of the
/// common header length are looked for too. Only pool blocks are checked:
/// the pages of a cached huge span may have been given back to the kernel
/// in part, and read back as zero.
fn check_reuse(r: usize, h: usize) {
    if ownership::tag_of(r) != ownership::TAG_ARENA {
        return;
    }
    let Some((_, usable)) = raw_block(r) else { return };
    // Only a block that debug mode gave back to this very use of the pool:
    // memory left over from an earlier use of the pool's area, for another
    // class, may have been overwritten by that class's blocks.
    // SAFETY: the raw block has 64 bytes or more.
    if unsafe { word(r + 16) } != returned_stamp(r) {
        return;
    }
    let others = if h == HEADER { 0 } else { 1 };
    for &old_h in &[HEADER, h][..1 + others] {
        let p = r + old_h;
        if old_h + PAD > usable {
            continue;
        }
        // SAFETY: p - 40 .. p lies inside the raw block (old_h >= 64 and
        // old_h + PAD <= usable).
        let (st, size) = unsafe { (word(p - 24), word(p - 40) as usize) };
        // The old block must have had a raw block of this very size, or the
        // pool was made over for another class since, whose links may lie
        // in the old data.
        if st != FREED ^ p as u64
            || size > usable - old_h - PAD
            || size_class::class_size(size_class::class_of(old_h + size + PAD)) != usable
        {
            continue;
        }
        if let Some(bad) = first_not(p, size, DEAD) {
            fail("malloc", p, Some(r), Fault { check: "write after free (freed block modified before reuse)", bad_at: bad });
        }
    }
}

/// What a check found.
struct Fault {
    check: &'static str,
    /// Where the bad bytes are (0: none to show).
    bad_at: usize,
}

/// Validates the debug block at `p` for `api` ("free", "realloc", ...).
/// Returns (raw, requested size) or reports and aborts.
fn validate(p: usize, api: &str, expected: Option<usize>) -> (usize, usize) {
    let Some((raw, usable)) = raw_block(p) else {
        fail(api, p, None, Fault { check: "pointer not allocated by poolmalloc", bad_at: 0 });
    };
    if p - raw < HEADER {
        fail(api, p, None, Fault { check: "pointer into the middle of a block", bad_at: 0 });
    }
    // SAFETY: p - 40 .. p lies inside the raw block (p - raw >= 64).
    let st = unsafe { word(p - 24) };
    if st == FREED ^ p as u64 {
        fail(api, p, Some(raw), Fault { check: "double free", bad_at: 0 });
    }
    // SAFETY: raw + 0 is inside the raw block.
    let off = unsafe { word(raw) } as usize;
    if st != ALLOCATED ^ p as u64 {
        let check = if raw + off != p && p - raw > HEADER {
            "pointer into the middle of a block"
        } else {
            "underflow (header overwritten)"
        };
        fail(api, p, None, Fault { check, bad_at: p - 24 });
    }
    // SAFETY: as above.
    let size = unsafe { word(p - 40) } as usize;
    if off != p - raw || size > usable - off - PAD {
        fail(api, p, Some(raw), Fault { check: "underflow (header overwritten)", bad_at: p - 40 });
    }
    if let Some(bad) = first_not(p - PAD, PAD, FORBIDDEN) {
        fail(api, p, Some(raw), Fault { check: "underflow (leading pad overwritten)", bad_at: bad });
    }
    if let Some(bad) = first_not(p + size, PAD, FORBIDDEN) {
        fail(api, p, Some(raw), Fault { check: "overflow (trailing pad overwritten)", bad_at: bad });
    }
    if let Some(want) = expected {
        if want != size {
            fail(api, p, Some(raw), Fault { check: "sized free with a size different from the allocation", bad_at: 0 });
        }
    }
    (raw, size)
}

fn first_not(at: usize, len: usize, byte: u8) -> Option<usize> {
    // Eight bytes at a time (unaligned reads), then the bytes left; the
    // word that differs is searched byte by byte.
    let word = u64::from_ne_bytes([byte; 8]);
    let mut i = 0;
    while i + 8 <= len {
        // SAFETY: callers pass ranges inside a live raw block.
        if unsafe { ((at + i) as *const u64).read_unaligned() } != word {
            break;
        }
        i += 8;
    }
    // SAFETY: as above.
    (i..len).map(|k| at + k).find(|&a| unsafe { *(a as *const u8) } != byte)
}

/// Frees the debug block at `p` after the checks. `expected`: the size a
/// sized free gives.
///
/// # Safety
/// `p` must be null or a pointer the caller got from a debug allocation and
/// still owns. Violations that the checks catch (foreign, interior, freed,
/// overrun pointers) are reported and abort; others (a pointer into another
/// live block) cannot be caught.
pub unsafe fn free(p: *mut u8, expected: Option<usize>, api: &str) {
    if p.is_null() {
        return;
    }
    let p = p as usize;
    let (raw, size) = validate(p, api, expected);
    // SAFETY: validated: the data and the state word are in the block.
    unsafe {
        ptr::write_bytes(p as *mut u8, DEAD, size);
        set_word(p - 24, FREED ^ p as u64);
    }
    let q = options::quarantine();
    if q == 0 {
        raw_free(raw);
        return;
    }
    let evicted = {
        let _g = QUARANTINE.lock.guard();
        // SAFETY: the quarantine's lock is held (guard `_g`), which guards
        // its ring, head and length.
        unsafe {
            let len = QUARANTINE.len.get();
            let q = q.min(QUARANTINE_MAX);
            let head = QUARANTINE.head.get();
            if len < q {
                QUARANTINE.ring[(head + len) % QUARANTINE_MAX].set(p);
                QUARANTINE.len.set(len + 1);
                0
            } else {
                let old = QUARANTINE.ring[head].get();
                QUARANTINE.ring[(head + len) % QUARANTINE_MAX].set(p);
                QUARANTINE.head.set((head + 1) % QUARANTINE_MAX);
                old
            }
        }
    };
    if evicted != 0 {
        release_quarantined(evicted, api);
    }
}

/// A block leaves the quarantine (pushed out by a later `api` call): it must
/// still hold the free pattern.
fn release_quarantined(p: usize, api: &str) {
    let Some((raw, _)) = raw_block(p) else { return };
    // SAFETY: a quarantined block is still allocated to us.
    let size = unsafe { word(p - 40) } as usize;
    if let Some(bad) = first_not(p, size, DEAD) {
        fail(api, p, Some(raw), Fault { check: "write after free (quarantined block modified)", bad_at: bad });
    }
    raw_free(raw);
}

/// Resizes the debug block at `p` (checked first) to `size` bytes. Null
/// (with ENOMEM, old block intact) on failure.
///
/// # Safety
/// As for [`free`].
pub unsafe fn realloc(p: *mut u8, size: usize, align: usize) -> *mut u8 {
    if p.is_null() {
        return malloc(size, align, false);
    }
    let (_, old) = validate(p as usize, "realloc", None);
    let q = malloc(size, align, false);
    if q.is_null() {
        return q;
    }
    // SAFETY: both blocks are live; the copy fits both; `p` was validated
    // and is the caller's to give up.
    unsafe {
        ptr::copy_nonoverlapping(p, q, old.min(size));
        free(p, None, "realloc");
    }
    q
}

/// The requested size of the debug block at `p` (checked).
///
/// # Safety
/// As for [`free`].
pub unsafe fn usable_size(p: *mut u8) -> usize {
    if p.is_null() {
        return 0;
    }
    validate(p as usize, "malloc_usable_size", None).1
}

fn fail(api: &str, p: usize, raw: Option<usize>, f: Fault) -> ! {
    let mut l = Line::new();
    l.push("poolmalloc: debug check failed: ").push(f.check).push(" in ").push(api).push(" of ").push_hex(p).push("\n");
    os::write_stderr(l.as_bytes());
    if let Some(raw) = raw {
        dump(p, raw, f.bad_at);
    }
    let mut l = Line::new();
    l.push("poolmalloc: aborting\n");
    os::write_stderr(l.as_bytes());
    os::abort();
}

/// CPython-style dump of the block at `p`.
fn dump(p: usize, raw: usize, bad_at: usize) {
    // SAFETY: `raw` is a live raw block and p - raw >= HEADER (checked by
    // the callers before a dump is asked for).
    let (size, serial) = unsafe { (word(p - 40) as usize, word(p - 32)) };
    let usable = raw_block(p).map_or(0, |(_, n)| n);
    let size_ok = size <= usable.saturating_sub(p - raw + PAD);
    let mut l = Line::new();
    l.push("Debug memory block at address p=").push_hex(p).push(":\n");
    os::write_stderr(l.as_bytes());
    let mut l = Line::new();
    l.push("    ").push_u64(size as u64).push(" bytes originally requested\n");
    os::write_stderr(l.as_bytes());
    let mut l = Line::new();
    l.push("    The block was made by call #").push_u64(serial).push(" to debug malloc/realloc.\n");
    os::write_stderr(l.as_bytes());
    pad_report("The 16 pad bytes at p-16", p - PAD);
    if size_ok {
        let mut l = Line::new();
        l.push("The 16 pad bytes at tail=").push_hex(p + size);
        pad_report(core::str::from_utf8(l.as_bytes()).unwrap_or("tail"), p + size);
    }
    if bad_at != 0 {
        let lo = bad_at.saturating_sub(8).max(raw);
        let hi = (bad_at + 8).min(raw + usable);
        let mut l = Line::new();
        l.push("    Bytes around the bad spot ").push_hex(bad_at).push(" (p");
        if bad_at >= p {
            l.push("+").push_u64((bad_at - p) as u64);
        } else {
            l.push("-").push_u64((p - bad_at) as u64);
        }
        l.push("):\n");
        os::write_stderr(l.as_bytes());
        for a in lo..hi {
            // SAFETY: inside the raw block.
            let b = unsafe { *(a as *const u8) };
            let mut l = Line::new();
            l.push("        at ").push_hex(a).push(": ").push_hex(b as usize);
            if a == bad_at {
                l.push(" *** OUCH");
            }
            l.push("\n");
            os::write_stderr(l.as_bytes());
        }
    }
    let n = if size_ok { size.min(16) } else { 0 };
    let mut l = Line::new();
    l.push("    Data at p:");
    for i in 0..n {
        // SAFETY: inside the block's data.
        let b = unsafe { *((p + i) as *const u8) };
        l.push(" ").push_bytes(&[b"0123456789abcdef"[(b >> 4) as usize], b"0123456789abcdef"[(b & 15) as usize]]);
    }
    if size > n {
        l.push(" ...");
    }
    l.push("\n");
    os::write_stderr(l.as_bytes());
}

fn pad_report(label: &str, at: usize) {
    let mut l = Line::new();
    l.push("    ").push(label);
    match first_not(at, PAD, FORBIDDEN) {
        None => {
            l.push(" are FORBIDDENBYTE, as expected.\n");
            os::write_stderr(l.as_bytes());
        }
        Some(_) => {
            l.push(" are not all FORBIDDENBYTE (0xfd):\n");
            os::write_stderr(l.as_bytes());
            for a in at..at + PAD {
                // SAFETY: inside the raw block.
                let b = unsafe { *(a as *const u8) };
                let mut l = Line::new();
                l.push("        at ").push_hex(a).push(": ").push_hex(b as usize);
                if b != FORBIDDEN {
                    l.push(" *** OUCH");
                }
                l.push("\n");
                os::write_stderr(l.as_bytes());
            }
        }
    }
}

/// The debug-mode allocator for Rust programs: every block carries guard
/// bytes, a size and a serial number, and every `dealloc` and `realloc` is
/// checked (including the layout's size against the allocation).
///
/// ```
/// #[global_allocator]
/// static GLOBAL: poolmalloc::DebugPoolMalloc = poolmalloc::DebugPoolMalloc;
///
/// let v = vec![1u8; 100];
/// assert_eq!(v.iter().map(|&x| x as u32).sum::<u32>(), 100);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct DebugPoolMalloc;

impl DebugPoolMalloc {
    /// The allocator.
    pub const fn new() -> Self {
        DebugPoolMalloc
    }
}

// SAFETY: blocks are unique until freed and aligned as asked; no method
// unwinds (failed checks abort).
unsafe impl GlobalAlloc for DebugPoolMalloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        malloc(layout.size(), layout.align(), false)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        malloc(layout.size(), layout.align(), true)
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: forwarded from the caller.
        unsafe { free(p, Some(layout.size()), "dealloc") }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        validate(p as usize, "realloc", Some(layout.size()));
        // SAFETY: forwarded from the caller.
        unsafe { realloc(p, new_size, layout.align()) }
    }
}
