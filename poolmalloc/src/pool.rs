//! Layer 3: pools.
//!
//! A pool is a 64 KiB slice of an arena that holds blocks of one size class,
//! or for a class above 32 KiB a run of contiguous slices
//! ([`size_class::slices`]). Its metadata ([`Pool`]) lives in the arena
//! header, never among the blocks, so a user overflow cannot reach a
//! free-list head, a count or an owner. The metadata records of a run's other
//! slices are FOLLOWERs that name their leader's.
//!
//! A pool hands out blocks from, in order of preference:
//!
//! 1. its **local free list** (`free`), a LIFO stack threaded through freed
//!    blocks, pushed and popped only by the owning thread;
//! 2. its **remote free list** (`remote`), an atomic stack that other threads
//!    push onto with one compare-and-swap; the owner takes the whole stack
//!    over when the local list runs empty;
//! 3. its **bump pointer** over blocks never handed out, carved a page at a
//!    time into the local list, so untouched memory stays untouched.
//!
//! # Pool states
//!
//! ```text
//!            acquire               last block out          first free
//!   FREE ──────────────▶ USED ─────────────────▶ FULL ───────────────▶ USED
//!  (arena)   (heap lists:   ▲   (heap full list;      (remote or local)
//!              current or   │    owner FULL bit)
//!              avail)       │
//!               │ last block freed           thread exits with blocks live
//!               ▼                                  │
//!            EMPTY ──▶ FREE (back to the arena)    ▼
//!          (heap stash)                      ABANDONED ──adopt──▶ USED
//! ```
//!
//! A medium pool's later slices are FOLLOWER from the moment the arena hands
//! the run out until it takes it back; only the first slice's record moves
//! through the states above.
//!
//! The `owner` word says who may use the local list: the owning thread's id,
//! `LOCKED_OWNER` for the locked-mode heap, or 0 when nobody owns it. Its low
//! bit marks the pool FULL, so a local free to a full pool fails the owner
//! comparison on the fast path and takes the slow path, which moves the pool
//! back to its heap's list of pools with free blocks. No extra test is needed
//! on the fast path for this.
//!
//! The remote word holds the remote stack head with a `FULL` flag in its low
//! bit. The owner sets the flag (from an empty stack) when it files the pool
//! as full. The first remote free clears it as part of its push, and then
//! sets this pool's class bit in the owner's [`RemoteHints`]; the owner looks
//! at those bits before taking a new pool, so a full pool that receives
//! remote frees is never stranded.

use crate::list::{Links, List};
use crate::size_class;
use crate::sync::Local;
use core::ptr;
use crate::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering::*};

/// log2 of the pool size (one arena slice).
pub const POOL_SHIFT: usize = size_class::SLICE_SHIFT;
/// Bytes per single-slice pool.
pub const POOL_SIZE: usize = 1 << POOL_SHIFT;
/// At most this many bytes of never-used blocks are carved into the free list
/// at once, so that memory is touched only as it is needed.
const CARVE_BYTES: usize = 4096;

const _: () = assert!(POOL_SIZE >= 2 * size_class::SLICE_CLASS_MAX, "a single-slice pool holds at least two blocks");
const _: () = assert!(POOL_SIZE % (1 << size_class::SLICE_POOL_ALIGN_SHIFT) == 0);

/// Owner value of pools owned by the locked-mode heap. Never a thread id:
/// thread ids are thread-control-block addresses, far above 4.
pub const LOCKED_OWNER: usize = 4;
/// Set in the owner word of an EMPTY pool in its heap's stash, with the
/// heap's owner id, so a free into it fails the fast-path owner comparison
/// and a fork child still knows whose stash holds it.
pub const OWNER_STASHED: usize = 8;
/// Set in the owner word of every pool of a class above 32 KiB, so that
/// every free into it fails the fast-path owner comparison and the slow path
/// checks that the pointer starts a block (interior pointers into medium
/// blocks are reported, as they are for huge blocks). Thread ids are
/// multiples of 64 and first-class heap ids multiples of 64 plus 2, so the
/// bit is free in both.
pub const OWNER_CHECKED: usize = 16;
/// Bit set in the owner id of every first-class heap (never in a thread id,
/// which is an aligned address, nor in `LOCKED_OWNER`). First-class heap ids
/// are multiples of 64 plus this bit, leaving the owner-word flags free.
pub const USER_OWNER_BIT: usize = 2;
/// Set in a pool's address to make its remote mark.
const REMOTE_MARK_BIT: usize = 8;
const _: () = assert!(core::mem::align_of::<Pool>() > REMOTE_MARK_BIT);
/// The heap owner id in an owner word.
#[inline(always)]
pub const fn owner_id(word: usize) -> usize {
    word & !(OWNER_FULL | OWNER_STASHED | OWNER_CHECKED)
}


pub use crate::handover::{state, RemoteHints, OWNER_FULL};
use crate::handover::{Handover, HINT_CLASSES};
pub use crate::remote::Block;

const _: () = assert!(size_class::NUM_CLASSES <= HINT_CLASSES);

/// Metadata of one pool. Lives in its arena's header.
///
/// The first cache line holds what the owner touches on every allocation and
/// free; the second holds what other threads read and write (the owner word
/// and the remote list).
///
/// # Who may touch what
///
/// The plain (`Local`) fields follow the protocols named on them:
///
/// * **Owner only.** The pool's *owner* is the user of the heap that holds
///   it (the thread that owns that heap, or the holder of the locked heap's
///   lock; the owner word names the heap), or, while the pool is on no heap,
///   whoever took it: from its arena, from a heap's stash or from the
///   abandoned lists (whose lock makes the sweeper their holder), or the one
///   thread of a fork child.
/// * **Geometry** (`class`, `block_size`, `capacity`, `end`,
///   `generation`): written only by [`init`](Self::init), by the owner,
///   before any block of the pool is handed out. They are relaxed atomics,
///   so any thread may read them without undefined behaviour, but only the
///   owner and a thread that holds a handed-out block of the pool (the block
///   reached it after the init) are sure to see the current init's values.
///   Any other reader (a statistics snapshot, the diagnosis of a stale or
///   doubly freed pointer) may see an earlier or a later init's values, or
///   a mix of both, and uses them only where that is harmless.
/// * `start` is written once, when the arena is made, before anyone can see
///   the record: any thread may read it.
/// * The list links belong to the user of the list the pool is on; the
///   arena fields (`freed_at`, `slices`) to the arena lock (`slices` also to
///   the owner, for reading: the arena sets it before it hands the pool out).
///
/// The methods that touch these fields are `unsafe` and say which of the
/// protocols their caller must follow.
#[repr(C, align(128))]
pub struct Pool {
    // ---- owner's cache line ----
    /// Head of the local free list. Owner only.
    pub free: Local<*mut Block>,
    /// Blocks handed out and not yet freed locally or collected from the
    /// remote list, less `floor` (see [`used`](Self::used)). Written by the
    /// owner only; read by statistics.
    pub used: AtomicU32,
    /// Size class. Geometry: written by the owner when the pool is
    /// (re)initialised, before any of its blocks can reach another thread.
    class: AtomicU32,
    /// Next never-used byte. Owner only.
    pub bump: Local<*mut u8>,
    /// While non-zero, a watermark of blocks in use: `used` counts only the
    /// blocks above it, so the free that brings the pool down to `floor`
    /// blocks in use takes the branch of the free that empties it (see
    /// [`arm`](Self::arm)). Written by the owner only; read by statistics.
    floor: AtomicU16,
    /// Pages of the block area given back to the OS while the pool is in
    /// use: bit j stands for the j-th [`cold_unit`] of the pool's slice.
    /// Every block that overlaps one is free and on no list (see
    /// [`cool`](Self::cool)). Written by the owner only; any thread may
    /// read it.
    cold: AtomicU16,
    /// Bytes from `start` to the end of the last whole block. As `class`.
    span: AtomicU32,
    /// Block size in bytes. As `class`.
    block_size: AtomicU32,
    /// Blocks that fit in this pool. As `class`.
    capacity: AtomicU32,
    /// Links in whichever list holds the pool (a heap's class lists or stash,
    /// or an abandoned list). Owned by that list's owner.
    pub next: Local<*mut Pool>,
    /// See `next`.
    pub prev: Local<*mut Pool>,
    /// Secure mode: the head of the pool's store of free blocks, whose links
    /// are encoded with `skey` (see [`secure_push`](Self::secure_push)).
    /// Owner only.
    pub store: Local<*mut Block>,

    // ---- shared cache line ----
    /// The owner word, the remote-free list, the hints pointer and the
    /// state: what other threads use (see [`crate::handover`]). The owner
    /// word opens this line, not the owner's, because threads that free
    /// into the pool read it on every free: in the owner's line, which the
    /// owner writes on every allocation, it would make that line bounce
    /// between the two threads (measured: producer-consumer about twice as
    /// slow).
    pub hand: Handover,
    /// Secure mode: the pool's random key, drawn each time the pool is
    /// initialised. Owner only.
    skey: Local<usize>,
    /// First byte of the pool's block area. Set once when the arena is made.
    pub start: Local<*mut u8>,
    /// When the pool last became FREE (ms). Arena lock.
    pub freed_at: Local<u64>,
    /// Slices the pool spans (1 for every class up to 32 KiB). Set by the
    /// arena, under its lock, when it hands the pool out.
    pub slices: Local<u8>,
    /// For a FOLLOWER slice: how many slices back its pool's record is.
    /// Written under the arena lock; read by frees of any pointer into the
    /// slice.
    pub lead: AtomicU8,
    /// Blocks of this pool the heap profiler sampled and that are still
    /// live. Raised by the owner when it samples a block (which also sets
    /// `OWNER_CHECKED`, so that every free into the pool looks the block up);
    /// lowered by whichever thread frees a sampled block.
    pub prof_samples: AtomicU16,
    /// How many times the pool was initialised, so that what a block left
    /// in its memory can be told from what an earlier use of the same
    /// memory left (debug mode's reuse check). As `class`.
    generation: AtomicU32,
}

const _: () = assert!(core::mem::size_of::<Pool>() == 128);
const _: () = assert!(core::mem::offset_of!(Pool, hand) == 64, "the owner word opens the shared line");

impl Pool {
    /// Metadata for a pool whose blocks start at `start`. The pool is FREE.
    pub const fn new(start: *mut u8) -> Pool {
        Pool {
            free: Local::new(ptr::null_mut()),
            used: AtomicU32::new(0),
            class: AtomicU32::new(0),
            hand: Handover::new(),
            bump: Local::new(ptr::null_mut()),
            floor: AtomicU16::new(0),
            cold: AtomicU16::new(0),
            span: AtomicU32::new(0),
            block_size: AtomicU32::new(0),
            capacity: AtomicU32::new(0),
            next: Local::new(ptr::null_mut()),
            prev: Local::new(ptr::null_mut()),
            store: Local::new(ptr::null_mut()),
            skey: Local::new(0),
            start: Local::new(start),
            freed_at: Local::new(0),
            slices: Local::new(1),
            lead: AtomicU8::new(0),
            prof_samples: AtomicU16::new(0),
            generation: AtomicU32::new(0),
        }
    }

    /// Flags every owner word of this pool carries: [`OWNER_CHECKED`] for a
    /// class above 32 KiB, for every class in secure mode (whose frees all
    /// take the checked path), while the pool holds a block the heap
    /// profiler sampled, and while it has cold pages (a free of a block in
    /// one is a double free, which the mark cannot show: the page reads as
    /// zero).
    ///
    /// # Safety
    /// As for [`is_medium`](Self::is_medium).
    #[inline]
    pub unsafe fn owner_flags(&self) -> usize {
        // SAFETY: forwarded from the caller.
        if unsafe { self.is_medium() }
            || crate::options::secure()
            || self.prof_samples.load(Relaxed) != 0
            || self.cold.load(Relaxed) != 0
        {
            OWNER_CHECKED
        } else {
            0
        }
    }

    /// A free of `p`, a block of this pool (checked to start a block): if
    /// the pool holds sampled blocks and `p` is one, its record goes. Called
    /// before the block goes back, so a record never names a block handed
    /// out again.
    #[inline]
    pub fn prof_free(&self, p: *mut u8) {
        if self.prof_samples.load(Relaxed) != 0 && crate::prof::forget(p) {
            self.prof_samples.fetch_sub(1, Relaxed);
        }
    }

    /// Clears an `OWNER_CHECKED` that no longer applies: the profiler's
    /// last sampled block of the pool was freed by another thread, which
    /// may not write the owner word. `word` is the owner word just read.
    ///
    /// # Safety
    /// The caller must be the pool's owner.
    #[cold]
    pub unsafe fn drop_stale_check(&self, word: usize) {
        // SAFETY: by the caller, we own the pool.
        if unsafe { self.owner_flags() } == 0 {
            self.hand.owner.store(word & !OWNER_CHECKED, Relaxed);
        }
    }

    /// Whether the pool serves a class above 32 KiB (a run of slices).
    ///
    /// # Safety
    /// The caller must be the pool's owner, or hold a handed-out block of it
    /// (the geometry protocol, see [`Pool`]).
    #[inline]
    pub unsafe fn is_medium(&self) -> bool {
        // By the caller, the init that wrote `class` happened before this
        // read, and no init can run while the caller owns the pool or holds
        // one of its blocks.
        self.class() >= size_class::NUM_SINGLE
    }

    /// Stores an owner word (an owner id with `OWNER_FULL` or
    /// `OWNER_STASHED`), adding this pool's [`owner_flags`](Self::owner_flags);
    /// 0 (no owner) is stored as is.
    ///
    /// # Safety
    /// As for [`is_medium`](Self::is_medium).
    #[inline]
    pub unsafe fn set_owner_word(&self, word: usize) {
        // SAFETY: forwarded from the caller.
        self.hand.owner.store(unsafe { self.with_flags(word) }, Relaxed);
    }

    /// `word` with this pool's [`owner_flags`](Self::owner_flags), or 0 for
    /// no owner.
    ///
    /// # Safety
    /// As for [`is_medium`](Self::is_medium).
    #[inline]
    unsafe fn with_flags(&self, word: usize) -> usize {
        if word == 0 {
            0
        } else {
            // SAFETY: forwarded from the caller.
            word | unsafe { self.owner_flags() }
        }
    }

    /// Whether `p` is the start of one of this pool's blocks (carved or not;
    /// whether it is handed out is another question). Address arithmetic
    /// only.
    ///
    /// # Safety
    /// As for [`is_medium`](Self::is_medium): the caller owns the pool or
    /// holds a handed-out block of it.
    #[inline]
    pub unsafe fn is_block_start(&self, p: *const u8) -> bool {
        // SAFETY: `start` never changes once the arena is made; `end` and
        // `class` are geometry, which by the caller was written before these
        // reads and is not being rewritten.
        unsafe {
            let (start, end) = (self.start.get() as usize, self.end() as usize);
            let a = p as usize;
            a >= start && a < end && size_class::is_multiple(a - start, self.class())
        }
    }

    /// Prepares the pool to serve `class` for `owner`, whose remote hints are
    /// at `hints`. `area_end` is the end of the pool's slice of the arena.
    ///
    /// # Safety
    /// The caller must hold the pool off every heap and list with no block of
    /// it handed out (just taken from its arena or from its heap's stash), so
    /// that it is the pool's owner and no other thread reads its geometry.
    /// `hints` must stay valid for ever (it lives in a heap, and heaps are
    /// never unmapped).
    pub unsafe fn init(&self, class: usize, owner: usize, hints: *const RemoteHints, area_end: usize) {
        let bs = size_class::class_size(class);
        // SAFETY: by the caller we own the pool and nobody holds a block of
        // it, so no other thread reads or writes these fields; `start` never
        // changes.
        unsafe {
            let start = self.start.get();
            let cap = (area_end - start as usize) / bs;
            self.generation.store(self.generation().wrapping_add(1), Relaxed);
            self.class.store(class as u32, Relaxed);
            self.block_size.store(bs as u32, Relaxed);
            self.capacity.store(cap as u32, Relaxed);
            self.span.store((cap * bs) as u32, Relaxed);
            self.free.set(ptr::null_mut());
            self.store.set(ptr::null_mut());
            if crate::options::secure() {
                self.skey.set(new_key(self as *const Pool as usize));
            }
            self.bump.set(start);
        }
        self.used.store(0, Relaxed);
        self.floor.store(0, Relaxed);
        // SAFETY: by the caller, we hold the pool with no block out (an
        // empty pool from a stash may still have cold pages).
        unsafe { self.forget_cold() };
        self.hand.reset();
        // SAFETY: we own the pool (see above); `class` was just written by
        // us. `hints` lives in a heap, and heaps are never unmapped (by the
        // caller).
        unsafe { self.hand.publish(self.with_flags(owner), hints) };
    }

    /// Adoption: `owner`, whose remote hints are at `hints`, takes over an
    /// abandoned pool with its blocks, and the pool is USED again.
    ///
    /// # Safety
    /// The caller must hold the pool (whoever took it off the abandoned
    /// lists, or a fork child), which lets it read the geometry. `hints`
    /// must stay valid for ever, as for [`init`](Self::init).
    pub unsafe fn adopt(&self, owner: usize, hints: *const RemoteHints) {
        // SAFETY: by the caller, we hold the pool; `hints` is valid for
        // ever (by the caller).
        unsafe { self.hand.adopt(self.with_flags(owner), hints) };
    }

    /// The owner's thread exits with blocks of the pool out: the pool loses
    /// its owner and becomes ABANDONED (see [`Handover::abandon`]).
    ///
    /// # Safety
    /// The caller must be the pool's owner (see [`Pool`]).
    pub unsafe fn abandon(&self) {
        self.hand.abandon();
    }

    /// The size class (geometry: see [`Pool`]).
    #[inline(always)]
    pub fn class(&self) -> usize {
        self.class.load(Relaxed) as usize
    }

    /// The block size in bytes (geometry).
    #[inline(always)]
    pub fn block_size(&self) -> usize {
        self.block_size.load(Relaxed) as usize
    }

    /// How many blocks fit in the pool (geometry).
    #[inline(always)]
    pub fn capacity(&self) -> usize {
        self.capacity.load(Relaxed) as usize
    }

    /// The end of the last whole block (geometry).
    #[inline(always)]
    pub fn end(&self) -> *mut u8 {
        // SAFETY: `start` is written once, before the record is visible.
        unsafe { self.start.get() }.wrapping_add(self.span.load(Relaxed) as usize)
    }

    /// How many times the pool was initialised (geometry).
    #[inline(always)]
    pub fn generation(&self) -> u32 {
        self.generation.load(Relaxed)
    }

    /// Blocks in use as seen by the owner: the counter plus the floor.
    #[inline(always)]
    pub fn used(&self) -> u32 {
        self.used.load(Relaxed).wrapping_add(u32::from(self.floor.load(Relaxed)))
    }

    /// The thinning watermark (0 when the pool is not armed).
    #[inline]
    pub fn floor(&self) -> u32 {
        u32::from(self.floor.load(Relaxed))
    }

    /// Arms the pool: the free that leaves `floor` blocks in use will call
    /// the same hook as the one that empties it (the fast path's one
    /// branch serves both), so that the heap learns the pool thinned out.
    /// Does nothing unless more than `floor` blocks are in use. Owner only.
    ///
    /// # Safety
    /// The caller must be the pool's owner (see [`Pool`]).
    pub unsafe fn arm(&self, floor: u16) {
        let used = self.used();
        if floor != 0 && used > u32::from(floor) {
            self.floor.store(floor, Relaxed);
            self.used.store(used - u32::from(floor), Relaxed);
        }
    }

    /// Takes the floor down, so that `used` counts every block in use again.
    /// Owner only.
    ///
    /// # Safety
    /// The caller must be the pool's owner (see [`Pool`]).
    pub unsafe fn disarm(&self) {
        let used = self.used();
        self.floor.store(0, Relaxed);
        self.used.store(used, Relaxed);
    }

    /// Counts `n` blocks as no longer in use and returns how many are;
    /// takes the floor down first if they reach it. Owner only.
    ///
    /// # Safety
    /// The caller must be the pool's owner (see [`Pool`]).
    pub unsafe fn drop_used(&self, n: u32) -> u32 {
        // SAFETY: forwarded from the caller.
        unsafe {
            if self.used.load(Relaxed) <= n {
                self.disarm();
            }
        }
        let left = self.used() - n;
        self.used.store(left - self.floor(), Relaxed);
        left
    }

    /// Whether the pool has no block handed out (remote frees collected).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.used() == 0
    }

    /// The double-free mark of this pool's locally freed blocks: the pool's
    /// address, which no block the program owns has reason to hold in its
    /// second word.
    #[inline(always)]
    fn mark(&self) -> usize {
        self as *const Pool as usize
    }

    /// The mark of a block on this pool's remote list (or in a freeing
    /// thread's batch bound for it): the pool's address with bit 3 set
    /// (records are 128-byte aligned). It differs from the local mark, so a
    /// block waiting on the remote list is not taken for a local double free.
    #[inline(always)]
    pub fn remote_mark(&self) -> usize {
        self as *const Pool as usize | REMOTE_MARK_BIT
    }

    /// Checks a pointer the owner is about to push: it must be aligned to
    /// 16 (every block is) and must not be on the local free list already.
    /// A block carries the mark only while on the local list, or when the
    /// program happened to store the mark there itself; the cold path tells
    /// the two apart by walking the list. Returns false after reporting a
    /// bad pointer (which then must not be pushed). Owner only.
    ///
    /// # Safety
    /// `b` must point into this pool's block area, and the caller must be
    /// the pool's owner (see [`Pool`]).
    #[inline(always)]
    pub unsafe fn may_free(&self, b: *mut Block) -> bool {
        // SAFETY: forwarded from the caller.
        if unsafe { self.suspect(b) } {
            // SAFETY: forwarded from the caller.
            unsafe { self.check_suspect(b) }
        } else {
            true
        }
    }

    /// The fast-path half of [`may_free`](Self::may_free): whether `b` needs
    /// the full check (it is misaligned, or carries this pool's mark).
    ///
    /// The mark word belongs to the program while the block is handed out,
    /// and the program may have left it uninitialised (padding, a
    /// `MaybeUninit`); reading it as a Rust integer would be undefined
    /// behaviour. On x86-64 the compare is one instruction in inline
    /// assembly, which reads whatever bytes are there.
    ///
    /// # Safety
    /// `b` must point into this pool's block area.
    #[inline(always)]
    #[cfg(all(target_arch = "x86_64", not(feature = "portable"), not(miri)))]
    pub unsafe fn suspect(&self, b: *mut Block) -> bool {
        if b as usize & (size_class::ALIGNMENT - 1) != 0 {
            return true;
        }
        // SAFETY: `b` is aligned and in this pool's block area, which is
        // mapped; every block is at least two words long, so the compare
        // reads mapped memory and writes nothing.
        unsafe {
            core::arch::asm!(
                "cmp qword ptr [{b} + {mark}], {m}",
                "je {hit}",
                b = in(reg) b,
                mark = const core::mem::offset_of!(Block, mark),
                m = in(reg) self.mark(),
                hit = label { return true; },
                options(nostack, readonly)
            );
        }
        false
    }

    /// Portable form of the test above, for targets without the assembly.
    ///
    /// # Safety
    /// `b` must point into this pool's block area.
    #[inline(always)]
    #[cfg(all(any(not(target_arch = "x86_64"), feature = "portable"), not(miri)))]
    pub unsafe fn suspect(&self, b: *mut Block) -> bool {
        // SAFETY: the mark is read only from an aligned address in this
        // pool's block area, which is mapped; every block is at least two
        // words long. A volatile read keeps the compiler from reasoning
        // about the (possibly uninitialised) bytes.
        b as usize & (size_class::ALIGNMENT - 1) != 0
            || unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*b).mark)) } == self.mark()
    }

    /// Under Miri every block is suspect, so the full check (a walk of the
    /// local list, with the same verdicts) runs instead of the mark test:
    /// the mark word is the program's data while the block is handed out,
    /// and the program may have left it uninitialised (padding, a
    /// `MaybeUninit`), which Miri rightly refuses to read as an integer.
    ///
    /// # Safety
    /// `b` must point into this pool's block area.
    #[inline(always)]
    #[cfg(miri)]
    pub unsafe fn suspect(&self, _b: *mut Block) -> bool {
        true
    }

    /// The cold half of [`may_free`](Self::may_free), for a suspect `b`.
    ///
    /// # Safety
    /// `b` must point into this pool's block area, and the caller must be
    /// the pool's owner (see [`Pool`]).
    #[cold]
    #[inline(never)]
    pub unsafe fn check_suspect(&self, b: *mut Block) -> bool {
        if b as usize & (size_class::ALIGNMENT - 1) != 0 {
            crate::fault::invalid_free(b.cast(), "not the start of a block");
            return false;
        }
        // SAFETY: by the caller, we own the pool and its local list.
        let mut f = unsafe { self.free.get() };
        while !f.is_null() {
            if f == b {
                crate::fault::invalid_free(b.cast(), "double free");
                return false;
            }
            // SAFETY: blocks on the local list are free blocks of this pool.
            f = unsafe { (*f).next };
        }
        true
    }

    /// Whether the block starting at `p` has been handed out and is not on
    /// the local free list: carved, and not found on the list (a walk, so
    /// for medium pools, which hold few blocks). Blocks on the remote list
    /// still count as handed out. Owner only.
    ///
    /// # Safety
    /// The caller must be the pool's owner (see [`Pool`]).
    pub unsafe fn handed_out(&self, p: *const u8) -> bool {
        // SAFETY: by the caller, we own the pool: its bump pointer, local
        // list and store are ours.
        unsafe {
            (p as usize) < self.bump.get() as usize
                && !self.in_cold(p)
                && !self.on_local_list(p.cast())
                && !self.in_store(p)
        }
    }

    /// Recomputes `used` from the local list and the bump pointer. For a
    /// fork child taking over a dead thread's pool: that thread may have
    /// been between updating its list and its count when the parent forked.
    /// The list itself is always well formed (a block is linked before it is
    /// published). Its head may have lost its mark, if the thread was inside
    /// [`pop`](Self::pop) between clearing the mark and unlinking the block:
    /// every block on the list is marked again, and counts as free.
    ///
    /// # Safety
    /// The caller must be the pool's owner (see [`Pool`]): in a fork child,
    /// its one thread.
    pub unsafe fn recount(&self) {
        let mut free = 0u32;
        // SAFETY: by the caller, we own the pool and its local list.
        let mut f = unsafe { self.free.get() };
        while !f.is_null() {
            free += 1;
            // SAFETY: blocks on the local list are free blocks of this pool,
            // and nobody else uses the pool in the child.
            unsafe {
                (*f).mark = self.mark();
                f = (*f).next;
            }
        }
        // SAFETY: we own the pool (by the caller): the store, the bump
        // pointer and the geometry are ours; `start` never changes.
        unsafe {
            free += self.store_len() as u32 + self.cold_blocks() as u32;
            let carved = (self.bump.get() as usize - self.start.get() as usize) / self.block_size();
            self.floor.store(0, Relaxed);
            self.used.store(carved as u32 - free, Relaxed);
        }
    }

    /// Pops a block from the local list. Owner only.
    ///
    /// Every block on the local list carries the pool's mark, and a block
    /// loses it when handed out, so a block without it was not put on the
    /// list by the pool: a write to a freed block changed a link to point
    /// at a live block, at one handed out twice, or outside the pool. That
    /// ends in a report and an abort, never in handing the block out.
    ///
    /// # Safety
    /// The caller must be the pool's owner (see [`Pool`]), or the pool's
    /// local list must be empty and never written (the heap layer's empty
    /// pool, which any thread may pop from: `pop` then only reads).
    #[inline(always)]
    pub unsafe fn pop(&self) -> *mut Block {
        // SAFETY: by the caller, we own the pool, or nobody ever writes its
        // list head.
        let b = unsafe { self.free.get() };
        if !b.is_null() {
            // SAFETY: the head of the local list is a free block of this
            // pool, unless a link was forged; then it is still a pointer that
            // a block of this pool held, and only its second word is touched
            // before it is refused. Free blocks are the pool's; their first
            // word is the link and their second the mark, which a handed-out
            // block must not carry. The list is not empty, so by the caller
            // we own the pool and may write its head.
            unsafe {
                self.take_mark(b);
                self.free.set((*b).next);
            }
            self.used.store(self.used.load(Relaxed) + 1, Relaxed);
        }
        b
    }

    /// Clears `b`'s mark, which must be this pool's local mark, and
    /// reports a corrupted free list if it is not: a compare with the pool's
    /// address (in a register) and a branch before the store that clears
    /// it. Nothing is written to a block that fails: a forged link may point
    /// anywhere.
    ///
    /// # Safety
    /// `b` must be the head of the local list: a pointer a block of this
    /// pool linked to, with two writable words.
    #[inline(always)]
    unsafe fn take_mark(&self, b: *mut Block) {
        // SAFETY: by the caller, the mark word is readable; it is written
        // only once it proved to be the pool's.
        unsafe {
            if (*b).mark != self.mark() {
                crate::fault::corrupted_free_list(self.mark(), b as usize);
            }
            (*b).mark = 0;
        }
    }

    /// Pushes a block onto the local list and returns the new value of the
    /// `used` counter: 0 when the pool emptied or, if armed, reached its
    /// floor (see [`arm`](Self::arm)). Owner only.
    ///
    /// # Safety
    /// `b` must be a block of this pool that is handed out, and the caller
    /// must be the pool's owner (see [`Pool`]).
    #[inline(always)]
    pub unsafe fn push(&self, b: *mut Block) -> u32 {
        // SAFETY: the caller hands the block back; its first two words are
        // ours. By the caller we own the pool, so its list head is ours.
        unsafe {
            (*b).next = self.free.get();
            (*b).mark = self.mark();
            self.free.set(b);
        }
        let u = self.used.load(Relaxed) - 1;
        self.used.store(u, Relaxed);
        u
    }

    /// Pushes a block onto the local list and calls `emptied` if the pool
    /// then has no block in use or, if armed, reached its floor (the `used`
    /// counter reached zero; see [`arm`](Self::arm)). Owner only.
    ///
    /// # Safety
    /// `b` must be a block of this pool that is handed out, and the caller
    /// must be the pool's owner (see [`Pool`]).
    #[inline(always)]
    pub unsafe fn push_then(&self, b: *mut Block, emptied: impl FnOnce()) {
        // SAFETY: the caller hands the block back; its first two words are
        // ours. By the caller we own the pool, so its list head is ours.
        unsafe {
            (*b).next = self.free.get();
            (*b).mark = self.mark();
            self.free.set(b);
        }
        #[cfg(all(target_arch = "x86_64", not(feature = "portable"), not(miri)))]
        {
            // SAFETY: one `sub` on the owner's own counter: only the owner
            // writes `used`, and an aligned 4-byte store is single-copy atomic
            // on x86-64, so to other threads (which only load it) this is the
            // relaxed load and relaxed store the portable branch does, in one
            // instruction whose zero flag decides the branch.
            unsafe {
                core::arch::asm!(
                    "sub dword ptr [{pool} + {used}], 1",
                    "jz {emptied}",
                    pool = in(reg) self as *const Pool,
                    used = const core::mem::offset_of!(Pool, used),
                    emptied = label { emptied() },
                    options(nostack)
                );
            }
        }
        #[cfg(not(all(target_arch = "x86_64", not(feature = "portable"), not(miri))))]
        {
            let u = self.used.load(Relaxed) - 1;
            self.used.store(u, Relaxed);
            if u == 0 {
                emptied();
            }
        }
    }

    /// Carves up to a page of never-used blocks into the local list. Returns
    /// false if the bump pointer is exhausted. Owner only.
    ///
    /// # Safety
    /// The caller must be the pool's owner (see [`Pool`]).
    pub unsafe fn carve(&self) -> bool {
        // SAFETY: by the caller, we own the pool.
        let Some((bump, bs, n)) = (unsafe { self.to_carve() }) else { return false };
        // SAFETY: by the caller, we own the pool and its local list.
        let mut next = unsafe { self.free.get() };
        // Link back to front so the list runs in address order.
        let mut i = n;
        while i > 0 {
            i -= 1;
            let b = bump.wrapping_add(i * bs).cast::<Block>();
            // SAFETY: `b` is a never-used block inside this pool's area, which
            // the pool owns.
            unsafe { *b = Block { next, mark: self.mark() } };
            next = b;
        }
        // The blocks count as carved before the list holds them, so that a
        // fork child that recounts the pool never finds a listed block
        // beyond the bump pointer.
        // SAFETY: by the caller, we own the pool: its bump pointer and local
        // list are ours.
        unsafe {
            self.bump.set(bump.wrapping_add(n * bs));
            core::sync::atomic::compiler_fence(Release);
            self.free.set(next);
        }
        true
    }

    /// What the next carve takes: the bump pointer, the block size and how
    /// many blocks (up to a page of them); `None` when none are left.
    ///
    /// # Safety
    /// The caller must be the pool's owner (see [`Pool`]).
    unsafe fn to_carve(&self) -> Option<(*mut u8, usize, usize)> {
        // SAFETY: by the caller, we own the pool: the bump pointer and the
        // geometry are ours.
        let (bs, bump, end) = unsafe { (self.block_size(), self.bump.get(), self.end()) };
        let left = end as usize - bump as usize;
        (left != 0).then(|| (bump, bs, (left / bs).min((CARVE_BYTES / bs).max(1))))
    }

    /// The page units of the pool's slice that the block starting at `a`
    /// overlaps, as a mask (see [`cold`](Self::cold)). Arithmetic only.
    #[inline]
    fn units_of(&self, a: usize) -> u32 {
        let unit = cold_unit();
        let first = (a & (POOL_SIZE - 1)) / unit;
        let last = ((a & (POOL_SIZE - 1)) + self.block_size() - 1) / unit;
        let last = last.min(31);
        ((u64::MAX >> (63 - last)) as u32) & !((1u32 << first) - 1)
    }

    /// Whether `p` lies in a block that overlaps a cold page (a free block
    /// on no list). Any thread; exact for the owner.
    #[inline(always)]
    pub fn in_cold(&self, p: *const u8) -> bool {
        let cold = u32::from(self.cold.load(Relaxed));
        cold != 0 && self.overlaps(p as usize, cold)
    }

    /// Whether the block starting at `a` overlaps the page units in `mask`.
    #[cold]
    #[inline(never)]
    fn overlaps(&self, a: usize, mask: u32) -> bool {
        self.units_of(a) & mask != 0
    }

    /// The carved blocks that overlap cold pages. Owner only.
    ///
    /// # Safety
    /// The caller must be the pool's owner (see [`Pool`]).
    pub unsafe fn cold_blocks(&self) -> usize {
        let cold = u32::from(self.cold.load(Relaxed));
        if cold == 0 {
            return 0;
        }
        // SAFETY: by the caller, we own the pool; `start` never changes.
        let (start, bump) = unsafe { (self.start.get() as usize, self.bump.get() as usize) };
        let bs = self.block_size();
        (start..bump).step_by(bs).filter(|&a| self.units_of(a) & cold != 0).count()
    }

    /// Gives back to the OS every page of the carved area that holds only
    /// free blocks, and takes the blocks that overlap those pages off the
    /// local list: they become cold, free and on no list, until
    /// [`warm`](Self::warm) puts them back. Returns the bytes given back.
    ///
    /// This is how a pool that the program thinned out, and left so, stops
    /// costing memory for its free blocks while it still holds live ones.
    /// It walks the local list once and costs one `madvise` per run of
    /// pages. Pages past the bump pointer are left to the carve. The pool's
    /// owner word gets `OWNER_CHECKED` (see [`owner_flags`](Self::owner_flags)),
    /// which [`warm`](Self::warm) drops again.
    /// Nothing happens for a medium pool, in secure mode, or where a page
    /// is more than half a pool.
    ///
    /// # Safety
    /// The caller must be the pool's owner (see [`Pool`]), and the pool
    /// must not be filed as full.
    pub unsafe fn cool(&self) -> usize {
        const WORDS: usize = POOL_SIZE / size_class::ALIGNMENT / 64;
        let unit = cold_unit();
        let units = POOL_SIZE / unit;
        // SAFETY: by the caller, we own the pool.
        if units < 2 || crate::options::secure() || unsafe { self.is_medium() } {
            return 0;
        }
        // SAFETY: by the caller, we own the pool: its bump pointer and local
        // list are ours; `start` never changes.
        let (origin, bump, head) = unsafe { (self.start.get(), self.bump.get() as usize, self.free.get()) };
        let (start, bs) = (origin as usize, self.block_size());
        let base = start & !(POOL_SIZE - 1);
        let cold = u32::from(self.cold.load(Relaxed));
        // One bit per carved block: free (on the list, or cold already).
        let mut free = [0u64; WORDS];
        let mut b = head;
        while !b.is_null() {
            let i = (b as usize - start) / bs;
            free[i / 64] |= 1 << (i % 64);
            // SAFETY: blocks on the local list are free blocks of this pool.
            b = unsafe { (*b).next };
        }
        if cold != 0 {
            for (i, a) in (start..bump).step_by(bs).enumerate() {
                if self.units_of(a) & cold != 0 {
                    free[i / 64] |= 1 << (i % 64);
                }
            }
        }
        let all_free = |first: usize, last: usize| (first..=last).all(|i| free[i / 64] & (1 << (i % 64)) != 0);
        let mut fresh = 0u32;
        for j in 0..units {
            let (lo, hi) = (base + j * unit, base + (j + 1) * unit);
            if lo < start || hi > bump || cold & (1 << j) != 0 {
                continue;
            }
            if all_free((lo - start) / bs, (hi - 1 - start) / bs) {
                fresh |= 1 << j;
            }
        }
        if fresh == 0 {
            return 0;
        }
        // The list first: its links lie in the pages about to read as zero.
        let now = cold | fresh;
        let (mut first, mut last): (*mut Block, *mut Block) = (ptr::null_mut(), ptr::null_mut());
        let mut b = head;
        while !b.is_null() {
            // SAFETY: as above; a kept block's link is rewritten only once
            // the block it follows is known.
            unsafe {
                let next = (*b).next;
                if self.units_of(b as usize) & now == 0 {
                    if last.is_null() {
                        first = b;
                    } else {
                        (*last).next = b;
                    }
                    last = b;
                }
                b = next;
            }
        }
        // SAFETY: `last` is a free block of ours (by the caller, the list is).
        unsafe {
            if !last.is_null() {
                (*last).next = ptr::null_mut();
            }
            self.free.set(first);
        }
        // Counted first: a fork child must never subtract what was not added.
        COLD_BYTES.fetch_add(fresh.count_ones() as usize * unit, Relaxed);
        self.cold.store(now as u16, Relaxed);
        // Frees into the pool are checked from now on (the owner word is the
        // owner's to store while the pool is not filed as full, which a pool
        // with free blocks is not).
        self.hand.owner.store(self.hand.owner.load(Relaxed) | OWNER_CHECKED, Relaxed);
        let mut given = 0;
        let mut m = fresh;
        while m != 0 {
            let j = m.trailing_zeros() as usize;
            let run = (m >> j).trailing_ones() as usize;
            // If the call fails the pages keep their bytes and stay cold all
            // the same.
            // SAFETY: pages of our pool's carved area holding only free
            // blocks, on no list: nothing reads them until `warm` writes them.
            if unsafe { crate::os::decommit(origin.wrapping_add(base + j * unit - start), run * unit) } {
                given += run * unit;
            }
            m &= !(((1u64 << run) - 1) << j) as u32;
        }
        given
    }

    /// Forgets the pool's cold pages: it is being given back to its arena,
    /// with no block in use, so they are simply free pages now. Called by
    /// whoever gives the pool back (under the arena lock).
    ///
    /// # Safety
    /// The caller must hold the pool off every heap and list with no block
    /// of it in use.
    pub unsafe fn forget_cold(&self) {
        let cold = u32::from(self.cold.swap(0, Relaxed));
        if cold != 0 {
            COLD_BYTES.fetch_sub(cold.count_ones() as usize * cold_unit(), Relaxed);
        }
    }

    /// Puts the blocks of the cold pages back on the local list, in address
    /// order (the pages fill with zeros as they are written). Returns false
    /// if the pool has no cold page. Owner only.
    ///
    /// # Safety
    /// The caller must be the pool's owner (see [`Pool`]).
    pub unsafe fn warm(&self) -> bool {
        let cold = u32::from(self.cold.load(Relaxed));
        if cold == 0 {
            return false;
        }
        // SAFETY: by the caller, we own the pool: its bump pointer and local
        // list are ours; `start` never changes.
        let (origin, bump, mut next) = unsafe { (self.start.get(), self.bump.get() as usize, self.free.get()) };
        let (start, bs) = (origin as usize, self.block_size());
        let mut a = bump;
        while a > start {
            a -= bs;
            if self.units_of(a) & cold != 0 {
                let b = origin.wrapping_add(a - start).cast::<Block>();
                // SAFETY: a cold block of our pool: free and on no list.
                unsafe { *b = Block { next, mark: self.mark() } };
                next = b;
            }
        }
        self.cold.store(0, Relaxed);
        COLD_BYTES.fetch_sub(cold.count_ones() as usize * cold_unit(), Relaxed);
        // SAFETY: by the caller, we own the pool and its list; the owner
        // word is ours to store while the pool is not filed as full (a pool
        // being refilled is current).
        unsafe {
            self.free.set(next);
            self.drop_stale_check(self.hand.owner.load(Relaxed));
        }
        true
    }

    /// Whether there are never-used blocks left.
    ///
    /// # Safety
    /// The caller must be the pool's owner (see [`Pool`]).
    pub unsafe fn can_carve(&self) -> bool {
        // SAFETY: by the caller, we own the pool.
        unsafe { self.bump.get() < self.end() }
    }

    /// Whether the remote list holds blocks. Any thread.
    #[inline]
    pub fn has_remote(&self) -> bool {
        self.hand.has_remote()
    }

    /// Takes the whole remote list over into the local list, and returns how
    /// many blocks it held. Owner only (or the holder of an abandoned pool).
    ///
    /// The remote links were written into freed blocks by threads that do
    /// not own them, where a write after free can change them. So the chain
    /// is walked before it joins the local list: each block must lie in the
    /// carved part of this pool, be aligned, and carry the remote mark, and
    /// the chain must be exactly as long as the count the pushers kept, and
    /// no block may lie on a cold page (it would be free already: freed
    /// twice). A block that fails ends in the corrupted-free-list report. The walk
    /// also gives each block the local mark that [`pop`](Self::pop) checks
    /// (in secure mode, it puts each block in the store instead).
    ///
    /// # Safety
    /// The caller must be the pool's owner (see [`Pool`]; whoever took an
    /// abandoned pool, or holds the abandoned lists' lock, is its owner).
    pub unsafe fn collect_remote(&self) -> u32 {
        let (head, n) = self.hand.take_remote();
        if head.is_null() {
            return 0;
        }
        // SAFETY: by the caller, we own the pool, so its bump pointer is
        // ours; `start` never changes.
        let (lo, hi) = unsafe { (self.start.get() as usize, self.bump.get() as usize) };
        let remote_mark = self.remote_mark();
        // In secure mode the blocks go to the store, not the local list.
        let secure = crate::options::secure();
        let mut tail = head;
        let mut len = 1;
        loop {
            let a = tail as usize;
            // SAFETY: `tail` is checked to be an aligned address in this
            // pool's carved area before it is read or written: a block of
            // this pool, handed out or free, whose first two words are ours
            // while it is on the remote list. Pushers published their links
            // and marks before the Release CAS we synchronised with. We own
            // the pool (by the caller), as `secure_push` requires.
            unsafe {
                if a < lo
                    || a >= hi
                    || a & (size_class::ALIGNMENT - 1) != 0
                    || (*tail).mark != remote_mark
                    || self.in_cold(tail.cast())
                {
                    crate::fault::corrupted_free_list(self.mark(), a);
                }
                let next = (*tail).next;
                if secure {
                    self.secure_push(tail);
                } else {
                    (*tail).mark = self.mark();
                }
                if next.is_null() {
                    break;
                }
                if len == n {
                    // Longer than counted: a link was forged into a cycle or
                    // onto another list.
                    crate::fault::corrupted_free_list(self.mark(), next as usize);
                }
                len += 1;
                tail = next;
            }
        }
        if len != n {
            crate::fault::corrupted_free_list(self.mark(), 0);
        }
        if !secure {
            // SAFETY: `tail` is the chain's last block, checked above; by the
            // caller we own the pool and its local list.
            unsafe {
                (*tail).next = self.free.get();
                self.free.set(head);
            }
        }
        // SAFETY: by the caller, we own the pool.
        unsafe { self.drop_used(n) };
        n
    }

    /// Pushes a block freed by a thread that does not own the pool. Any thread.
    ///
    /// # Safety
    /// `b` must be a handed-out block of this pool, given up by the caller.
    pub unsafe fn push_remote(&self, b: *mut Block) {
        // SAFETY: forwarded from the caller: the block's first words are ours.
        unsafe {
            (*b).mark = self.remote_mark();
            self.push_remote_chain(b, b, 1)
        }
    }

    /// Pushes a chain of `n` blocks freed by a thread that does not own the
    /// pool, with one compare-and-swap, and tells the owner if it filed the
    /// pool as full. Any thread.
    ///
    /// # Safety
    /// Every block from `head` to `tail` (`n` of them) must be a handed-out
    /// block of this pool, given up by the caller, and carry the pool's
    /// [`remote_mark`](Self::remote_mark).
    pub unsafe fn push_remote_chain(&self, head: *mut Block, tail: *mut Block, n: u32) {
        // Read while the caller holds handed-out blocks of this pool: the
        // current init's class. Once the push below gives them back, the
        // owner may empty the pool and initialise it for another class.
        let class = self.class();
        // SAFETY: forwarded from the caller.
        unsafe { self.hand.free_remote(head, tail, n, class) };
    }

    /// Files the pool as full for remote notification, with the owner word
    /// `word` (which carries `OWNER_FULL`). Fails (returns false, changing
    /// nothing) if remote frees are already waiting.
    ///
    /// # Safety
    /// The caller must be the pool's owner (see [`Pool`]).
    pub unsafe fn file_full(&self, word: usize) -> bool {
        // SAFETY: forwarded from the caller.
        self.hand.file_full(unsafe { self.with_flags(word) })
    }

    /// Withdraws the request for remote notification; the owner word
    /// becomes `word`.
    ///
    /// # Safety
    /// The caller must be the pool's owner (see [`Pool`]).
    pub unsafe fn withdraw_full(&self, word: usize) {
        // SAFETY: forwarded from the caller.
        self.hand.withdraw_full(unsafe { self.with_flags(word) });
    }
}

/// Bytes of cold pages in every pool of the process (pages of pools in use
/// given back to the OS; see [`Pool::cool`]). The arenas scale what they
/// let free pools keep resident with the memory in use that is resident.
pub static COLD_BYTES: AtomicUsize = AtomicUsize::new(0);

/// The unit of a pool's cold pages: the system page, at least 4 KiB.
#[inline]
pub fn cold_unit() -> usize {
    crate::os::page_size().max(4096)
}

const _: () = assert!(POOL_SIZE / 4096 <= 16, "a pool's pages fit the 16-bit cold mask");

/// Blocks a secure-mode refill moves from the store to the local list at
/// once: the local list's plain links (checked by `pop` all the same) cover
/// at most this many blocks of a pool.
pub const SECURE_BATCH: usize = 16;
/// Most blocks one carve makes (a page of the smallest class).
const CARVE_MAX: usize = CARVE_BYTES / size_class::ALIGNMENT;

/// Process-wide secret the per-pool keys are drawn from (secure mode).
static KEY_SEED: AtomicU64 = AtomicU64::new(0);
/// Keys drawn so far (secure mode).
static KEYS_DRAWN: AtomicU64 = AtomicU64::new(0);

/// A fresh pool key: the process secret, a counter and the pool's address
/// through a 64-bit mixer (splitmix64's finaliser). The secret comes from
/// the kernel the first time a key is drawn.
fn new_key(pool: usize) -> usize {
    let mut seed = KEY_SEED.load(Relaxed);
    if seed == 0 {
        let fresh = crate::os::random_u64() | 1;
        seed = match KEY_SEED.compare_exchange(0, fresh, Relaxed, Relaxed) {
            Ok(_) => fresh,
            Err(other) => other,
        };
    }
    let n = KEYS_DRAWN.fetch_add(1, Relaxed);
    let mut z = seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (pool as u64).rotate_left(17);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) as usize
}

/// Secure mode: the mark a block carries in its second word while a heap
/// holds it back after its free, drawn from the block's address and the
/// process secret (so that the program is unlikely to hold it by chance).
#[inline]
pub fn held_mark(b: *const Block) -> usize {
    (b as usize ^ KEY_SEED.load(Relaxed) as usize).rotate_left(13) ^ 0x6865_6c64
}

/// A small per-heap random generator (xorshift64*), seeded from the kernel
/// on first use. For secure mode's choices (which held-back block to
/// release, the order of carved blocks), not for keys.
pub struct Rng {
    state: Local<u64>,
}

impl Rng {
    /// A generator that seeds itself on first use.
    pub const fn new() -> Self {
        Rng { state: Local::new(0) }
    }

    /// The next 64 random bits.
    ///
    /// # Safety
    /// The caller must be the generator's one user at a time: for a heap's
    /// generator, the heap's user.
    #[inline]
    pub unsafe fn next(&self) -> u64 {
        // SAFETY: by the caller, nobody else uses the state meanwhile.
        let mut x = unsafe { self.state.get() };
        if x == 0 {
            x = crate::os::random_u64() | 1;
        }
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        // SAFETY: as above.
        unsafe { self.state.set(x) };
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (not zero).
    ///
    /// # Safety
    /// As for [`next`](Self::next).
    #[inline]
    pub unsafe fn below(&self, n: usize) -> usize {
        // SAFETY: forwarded from the caller.
        (((unsafe { self.next() } >> 32) * n as u64) >> 32) as usize
    }
}

impl Default for Rng {
    fn default() -> Self {
        Self::new()
    }
}

/// Secure mode: the store. Free blocks wait there, linked through their
/// first word as `next ^ key` and marked in their second word with a value
/// drawn from the key and the block's address, until a refill moves a batch
/// of them to the local list. A link or mark written by the program after a
/// free fails the check on the way out, unless the writer knew the pool's
/// random key.
impl Pool {
    /// The store mark of block `b`.
    ///
    /// # Safety
    /// The caller must be the pool's owner (see [`Pool`]).
    #[inline]
    pub unsafe fn store_mark(&self, b: *const Block) -> usize {
        // SAFETY: by the caller, we own the pool and its key.
        (b as usize ^ unsafe { self.skey.get() }).rotate_left(29) ^ 0x5ec0_5ec0
    }

    /// Puts a free block of this pool in the store. Owner only; does not
    /// change `used`.
    ///
    /// # Safety
    /// `b` must be a block of this pool that nothing else holds, and the
    /// caller must be the pool's owner (see [`Pool`]).
    pub unsafe fn secure_push(&self, b: *mut Block) {
        // SAFETY: by the caller, we own the pool: its key and store are
        // ours, and the block's first two words are ours.
        unsafe {
            let key = self.skey.get();
            let next = self.store.get().map_addr(|a| a ^ key);
            *b = Block { next, mark: self.store_mark(b) };
            self.store.set(b);
        }
    }

    /// Checks that `b`, taken from the store, is a carved block of this pool
    /// carrying its store mark; reports a corrupted free list otherwise.
    /// Reads nothing outside the pool.
    ///
    /// # Safety
    /// The caller must be the pool's owner (see [`Pool`]).
    unsafe fn check_stored(&self, b: *mut Block) {
        // SAFETY: by the caller, we own the pool: its bump pointer, geometry
        // and key are ours. The mark is read only once `b` proved to start
        // a carved block of this pool.
        let ok = unsafe {
            (b as usize) < self.bump.get() as usize
                && self.is_block_start(b.cast())
                && (*b).mark == self.store_mark(b)
        };
        if !ok {
            crate::fault::corrupted_free_list(self.mark(), b as usize);
        }
    }

    /// Moves up to [`SECURE_BATCH`] blocks from the store to the local list,
    /// checking each. Returns false if the store was empty. Owner only.
    ///
    /// # Safety
    /// The caller must be the pool's owner (see [`Pool`]).
    pub unsafe fn secure_refill(&self) -> bool {
        // SAFETY: by the caller, we own the pool and its store.
        let mut b = unsafe { self.store.get() };
        if b.is_null() {
            return false;
        }
        // SAFETY: as above; the key is the owner's.
        let key = unsafe { self.skey.get() };
        let mut n = 0;
        // Each block leaves the store before it joins the list, so that a
        // fork child never finds a block on both (at worst on neither).
        while !b.is_null() && n < SECURE_BATCH {
            // SAFETY: we own the pool (by the caller): the store and local
            // list are ours. Once checked, `b` is a free block of this pool
            // in the store.
            unsafe {
                self.check_stored(b);
                let next = (*b).next.map_addr(|a| a ^ key);
                self.store.set(next);
                core::sync::atomic::compiler_fence(Release);
                *b = Block { next: self.free.get(), mark: self.mark() };
                self.free.set(b);
                b = next;
            }
            n += 1;
        }
        true
    }

    /// Carves up to a page of never-used blocks into the store in random
    /// order. Returns false if the bump pointer is exhausted. Owner only.
    ///
    /// # Safety
    /// The caller must be the pool's owner (see [`Pool`]) and `rng`'s one
    /// user.
    pub unsafe fn secure_carve(&self, rng: &Rng) -> bool {
        // SAFETY: by the caller, we own the pool.
        let Some((bump, bs, n)) = (unsafe { self.to_carve() }) else { return false };
        let mut order = [0u16; CARVE_MAX];
        for (i, o) in order[..n].iter_mut().enumerate() {
            *o = i as u16;
        }
        for i in (1..n).rev() {
            // SAFETY: by the caller, we are `rng`'s one user.
            order.swap(i, unsafe { rng.below(i + 1) });
        }
        // The blocks count as carved before they enter the store, which
        // accepts only carved blocks.
        // SAFETY: by the caller, we own the pool and its bump pointer.
        unsafe { self.bump.set(bump.wrapping_add(n * bs)) };
        for &i in &order[..n] {
            // SAFETY: a never-used block inside this pool's area; we own the
            // pool (by the caller).
            unsafe { self.secure_push(bump.wrapping_add(i as usize * bs).cast()) };
        }
        true
    }

    /// Makes free blocks reachable from the local list, from wherever they
    /// are: the local list itself, the remote list, never-used blocks, cold
    /// pages, and in secure mode the store (with `rng` for the carve order). Returns
    /// false if the pool has none. Owner only.
    ///
    /// # Safety
    /// The caller must be the pool's owner (see [`Pool`]) and `rng`'s one
    /// user.
    pub unsafe fn refill(&self, rng: &Rng) -> bool {
        // SAFETY: by the caller, we own the pool and are `rng`'s one user,
        // which is all that each of these asks.
        unsafe {
            if !self.free.get().is_null() {
                return true;
            }
            if !crate::options::secure() {
                return self.collect_remote() > 0 || self.carve() || self.warm();
            }
            self.secure_refill()
                || (self.collect_remote() > 0 && self.secure_refill())
                || (self.secure_carve(rng) && self.secure_refill())
        }
    }

    /// Whether the pool has a free block that the owner can reach without
    /// the remote list.
    ///
    /// # Safety
    /// The caller must be the pool's owner (see [`Pool`]).
    pub unsafe fn has_free(&self) -> bool {
        // SAFETY: by the caller, we own the pool.
        unsafe {
            !self.free.get().is_null()
                || !self.store.get().is_null()
                || self.can_carve()
                || self.cold.load(Relaxed) != 0
        }
    }

    /// Calls `f` on every block in the store, in order, checking each.
    ///
    /// # Safety
    /// The caller must be the pool's owner (see [`Pool`]).
    unsafe fn for_each_stored(&self, mut f: impl FnMut(*mut Block) -> bool) {
        // SAFETY: by the caller, we own the pool: its key, store and
        // geometry are ours.
        let (key, mut b, mut left) = unsafe { (self.skey.get(), self.store.get(), self.capacity()) };
        while !b.is_null() {
            if left == 0 {
                // More blocks than the pool holds: a cycle.
                crate::fault::corrupted_free_list(self.mark(), b as usize);
            }
            left -= 1;
            // SAFETY: we own the pool (by the caller).
            unsafe { self.check_stored(b) };
            if !f(b) {
                return;
            }
            // SAFETY: checked: a free block of this pool in the store.
            b = unsafe { (*b).next }.map_addr(|a| a ^ key);
        }
    }

    /// Whether `p` is in the store. Owner only.
    ///
    /// # Safety
    /// The caller must be the pool's owner (see [`Pool`]).
    pub unsafe fn in_store(&self, p: *const u8) -> bool {
        let mut found = false;
        // SAFETY: by the caller, we own the pool.
        unsafe {
            self.for_each_stored(|b| {
                found = core::ptr::eq(b.cast::<u8>(), p);
                !found
            })
        };
        found
    }

    /// Blocks in the store. Owner only.
    ///
    /// # Safety
    /// The caller must be the pool's owner (see [`Pool`]).
    pub unsafe fn store_len(&self) -> usize {
        let mut n = 0;
        // SAFETY: by the caller, we own the pool.
        unsafe {
            self.for_each_stored(|_| {
                n += 1;
                true
            })
        };
        n
    }

    /// Whether `b` is on the local list. Owner only.
    ///
    /// # Safety
    /// The caller must be the pool's owner (see [`Pool`]).
    pub unsafe fn on_local_list(&self, b: *const Block) -> bool {
        // SAFETY: by the caller, we own the pool and its local list.
        let mut f = unsafe { self.free.get() };
        while !f.is_null() {
            if core::ptr::eq(f, b) {
                return true;
            }
            // SAFETY: blocks on the local list are free blocks of this pool.
            f = unsafe { (*f).next };
        }
        false
    }
}

/// Where a pool record's links are: a pool is on at most one list at a
/// time (a heap's class lists or stash, or an abandoned list).
pub struct PoolLinks;

impl Links<Pool> for PoolLinks {
    unsafe fn links<'a>(p: *mut Pool) -> (&'a Local<*mut Pool>, &'a Local<*mut Pool>) {
        // SAFETY: by the caller, `p` is a live pool record.
        unsafe { (&(*p).next, &(*p).prev) }
    }
}

/// A list of pool records.
pub type PoolList = List<Pool, PoolLinks>;

/// The pool layer's part of the statistics snapshot: what the pool records
/// of all arenas hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Pools holding blocks of some class.
    pub used: usize,
    /// Of those, pools whose thread exited (on the abandoned lists).
    pub abandoned: usize,
    /// Empty pools held in heaps' stashes.
    pub stashed: usize,
    /// Pools free in their arenas.
    pub free: usize,
    /// Free pools whose pages have been decommitted.
    pub decommitted: usize,
    /// Bytes of blocks in use.
    pub bytes_in_blocks: usize,
    /// Bytes of free blocks in used pools.
    pub bytes_available: usize,
    /// Bytes of pools not holding any class (free or stashed).
    pub bytes_unused: usize,
    /// Bytes at the end of pools too small for one more block ("rounding").
    pub bytes_quantization: usize,
    /// Bytes of used pools' pages given back to the OS while the pools hold
    /// live blocks (cold pages, see [`Pool::cool`]); part of
    /// `bytes_available`.
    pub bytes_cold: usize,
}

/// What one pool in a heap holds, for the per-class and per-heap tallies.
pub(crate) struct Holding {
    /// The pool's owner word.
    pub owner: usize,
    /// Whether it is on the abandoned lists.
    pub abandoned: bool,
    /// Bytes of its slice or run.
    pub area: usize,
    /// Its class and block size; `None` for a stashed (empty) pool.
    pub class: Option<(usize, usize)>,
    /// Blocks in use and blocks it can hold (0 and 0 when stashed).
    pub in_use: usize,
    pub capacity: usize,
}

impl PoolStats {
    /// Counts the pool record `p` (of `area` bytes, `free` in its arena and
    /// `dirty` if its pages may be resident); says what it holds if it is in
    /// a heap (used, abandoned or stashed). The later slices of a medium
    /// pool are counted with its first.
    ///
    /// # Safety
    /// The arena lock must be held (`p` being a record of one of the arenas
    /// it guards), so that no pool is handed out or given back meanwhile.
    pub(crate) unsafe fn add(&mut self, p: &Pool, area: usize, free: bool, dirty: bool) -> Option<Holding> {
        if free {
            self.free += 1;
            self.decommitted += usize::from(!dirty);
            self.bytes_unused += area;
            return None;
        }
        let st = p.hand.state.load(Relaxed);
        let owner = p.hand.owner.load(Relaxed);
        match st {
            state::USED | state::ABANDONED => {
                self.used += 1;
                self.abandoned += usize::from(st == state::ABANDONED);
                // The arena lock (held, by the caller) keeps the pool from
                // being given back and taken again, but a pool re-initialised
                // from its heap's stash takes no lock: `class` (a relaxed
                // atomic) may be an earlier init's, and then this snapshot
                // counts the pool under that class.
                let class = p.class().min(size_class::NUM_CLASSES - 1);
                let bs = size_class::class_size(class);
                let capacity = area / bs;
                let in_use = (p.used() as usize).min(capacity);
                self.bytes_in_blocks += in_use * bs;
                self.bytes_available += (capacity - in_use) * bs;
                self.bytes_quantization += area - capacity * bs;
                self.bytes_cold += p.cold.load(Relaxed).count_ones() as usize * cold_unit();
                let abandoned = st == state::ABANDONED;
                Some(Holding { owner, abandoned, area, class: Some((class, bs)), in_use, capacity })
            }
            state::FOLLOWER => None,
            _ => {
                self.stashed += 1;
                self.bytes_unused += area;
                let held = st == state::EMPTY;
                held.then_some(Holding { owner, abandoned: false, area, class: None, in_use: 0, capacity: 0 })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_pool(f: impl FnOnce(&Pool, usize)) {
        let size = POOL_SIZE;
        let mem = crate::os::map_aligned(size, POOL_SIZE);
        assert!(!mem.is_null());
        let pool = Pool::new(mem);
        f(&pool, mem.addr() + size);
        // SAFETY: our test mapping, no longer used.
        assert!(unsafe { crate::os::unmap(mem, size) });
    }

    // In these tests the pool is the test's own mapping, used by the test's
    // thread alone: that thread is its owner, for every protocol.

    #[test]
    fn carve_pop_push_counts_blocks() {
        with_pool(|p, end| {
            let hints = RemoteHints::new();
            let mut got = Vec::new();
            // SAFETY: the test's own pool (see above), with no block out.
            unsafe {
                p.init(3, 0x1000, &hints, end);
                assert_eq!(p.block_size(), 64);
                assert_eq!(p.capacity(), POOL_SIZE / 64);
                loop {
                    let b = p.pop();
                    if b.is_null() {
                        if !p.carve() {
                            break;
                        }
                        continue;
                    }
                    got.push(b);
                }
            }
            assert_eq!(got.len(), POOL_SIZE / 64);
            assert_eq!(p.used(), got.len() as u32);
            let mut sorted: Vec<usize> = got.iter().map(|b| b.addr()).collect();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), got.len(), "no block handed out twice");
            for (i, &b) in got.iter().enumerate() {
                // SAFETY: every block is a handed-out block of `p`, with 64
                // writable bytes.
                unsafe { b.cast::<u8>().write_bytes(i as u8, 64) };
            }
            for &b in &got {
                // SAFETY: `b` is a handed-out block of `p`, the test's own.
                unsafe { p.push(b) };
            }
            assert!(p.is_empty());
            // SAFETY: the test's own pool.
            unsafe {
                // The list now runs from the last block pushed back to the first.
                for &b in got.iter().rev() {
                    assert_eq!(p.pop(), b);
                }
                assert!(p.pop().is_null());
                assert!(!p.carve(), "every block was carved");
            }
        });
    }

    #[test]
    fn may_free_catches_double_frees_and_misaligned_pointers() {
        use crate::options::{set_invalid_free, InvalidFree};
        with_pool(|p, end| {
            let hints = RemoteHints::new();
            // SAFETY: the test's own pool, with no block out.
            let (a, b) = unsafe {
                p.init(1, 0x1000, &hints, end);
                assert!(p.carve());
                (p.pop(), p.pop())
            };
            // SAFETY: `a` and `b` are handed-out blocks of `p`, the test's
            // own; the checks that fail read nothing and report without
            // aborting (the mode is set to ignore for them).
            unsafe {
                assert!(p.may_free(a));
                p.push(a);
                // A live block that happens to hold the mark is not on the
                // list, so it may be freed.
                (*b).mark = p.mark();
                assert!(p.may_free(b));
                set_invalid_free(InvalidFree::Ignore);
                assert!(!p.may_free(a), "a block already on the local list");
                assert!(!p.may_free(b.cast::<u8>().wrapping_add(8).cast()), "not the start of a block");
                set_invalid_free(InvalidFree::Abort);
                p.push(b);
            }
            assert!(p.is_empty());
            // SAFETY: the test's own pool; `b` is a block just handed out
            // again: its mark is cleared.
            unsafe {
                assert_eq!(p.pop(), b);
                assert_eq!((*b).mark, 0);
                assert_eq!(p.pop(), a);
            }
        });
    }

    #[test]
    fn remote_frees_are_collected_and_notify_when_full() {
        with_pool(|p, end| {
            let hints = RemoteHints::new();
            // SAFETY: the test's own pool, with no block out.
            let (a, b) = unsafe {
                p.init(0, 0x1000, &hints, end);
                assert!(p.carve());
                (p.pop(), p.pop())
            };
            // SAFETY: the test's own pool.
            assert!(unsafe { p.file_full(0x1000 | OWNER_FULL) });
            // SAFETY: `a` and `b` are handed-out blocks of `p`.
            unsafe {
                p.push_remote(a);
                p.push_remote(b);
            }
            assert!(hints.take(0), "first remote free to a full pool posts a hint");
            assert!(!hints.take(0));
            // SAFETY: the test's own pool.
            assert!(!unsafe { p.file_full(0x1000 | OWNER_FULL) }, "cannot file as full with frees waiting");
            // SAFETY: the test's own pool.
            unsafe {
                assert_eq!(p.collect_remote(), 2);
                assert_eq!(p.used(), 0);
                assert_eq!(p.collect_remote(), 0);
            }
        });
    }

    #[test]
    fn the_secure_store_hands_out_every_block_once_in_shuffled_order() {
        with_pool(|p, end| {
            let hints = RemoteHints::new();
            let rng = Rng::new();
            let mut got = Vec::new();
            // SAFETY: the test's own pool, with no block out, and its own
            // generator.
            let cap = unsafe {
                p.init(2, 0x1000, &hints, end);
                p.skey.set(new_key(p as *const Pool as usize));
                while p.secure_carve(&rng) {
                    assert!(p.store_len() > 0);
                    while p.secure_refill() {
                        loop {
                            let b = p.pop();
                            if b.is_null() {
                                break;
                            }
                            got.push(b);
                        }
                    }
                }
                p.capacity()
            };
            assert_eq!(got.len(), cap);
            let addrs: Vec<usize> = got.iter().map(|b| b.addr()).collect();
            let mut sorted = addrs.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), cap, "no block handed out twice");
            assert_ne!(addrs, sorted, "the carve order is shuffled");
            // Freed blocks go to the store and come back through a refill.
            for &b in &got[..10] {
                // SAFETY: handed-out blocks of `p`, the test's own, given
                // back once.
                unsafe { p.secure_push(b) };
                p.used.store(p.used() - 1, Relaxed);
            }
            // SAFETY: the test's own pool.
            unsafe {
                assert_eq!(p.store_len(), 10);
                assert!(p.in_store(got[3].cast()));
                assert!(!p.handed_out(got[3].cast()));
                assert!(p.handed_out(got[20].cast()));
                p.recount();
                assert_eq!(p.used() as usize, cap - 10);
                assert!(p.secure_refill());
                assert_eq!(p.store_len(), 0);
                assert!(p.on_local_list(got[0]));
            }
        });
    }

    #[test]
    fn list_push_remove_pop() {
        let pools: Vec<Pool> = (0..3).map(|_| Pool::new(ptr::null_mut())).collect();
        let l = PoolList::new();
        // SAFETY: the list and the pools are the test's own, so this thread
        // is the list's only user; each pool is valid, pushed once, and
        // pools[1] is on the list when it is removed.
        unsafe {
            for p in &pools {
                l.push(p as *const Pool as *mut Pool);
            }
            assert_eq!(l.len(), 3);
            l.remove(&pools[1] as *const Pool as *mut Pool);
            assert_eq!(l.pop(), &pools[2] as *const Pool as *mut Pool);
            assert_eq!(l.pop(), &pools[0] as *const Pool as *mut Pool);
            assert!(l.pop().is_null());
            assert!(l.is_empty());
        }
    }
}
