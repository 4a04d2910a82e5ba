//! The fronts the model drives.

use crate::model::{Block, Front};
use allocator_api2::alloc::Allocator;
use core::ffi::{c_int, c_void};
use core::ptr::{self, NonNull};
use poolmalloc::{PoolBox, PoolMalloc, TypedPool};
use std::alloc::{GlobalAlloc, Layout};
use std::collections::HashMap;
use std::path::Path;

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).expect("the model only makes valid layouts")
}

/// A Rust global allocator (`PoolMalloc`, `LockedPoolMalloc`,
/// `DebugPoolMalloc`) through `GlobalAlloc`, with zero-size requests through
/// `PoolMalloc`'s `Allocator` implementation and usable sizes from
/// `poolmalloc::internals::usable_size`.
pub struct Global<A: GlobalAlloc> {
    /// The allocator.
    pub alloc: A,
    /// Whether usable sizes may be asked (not for debug blocks, whose
    /// usable size is the requested one).
    pub usable: bool,
}

impl<A: GlobalAlloc> Front for Global<A> {
    fn alloc(&mut self, size: usize, align: usize, zeroed: bool) -> Option<Block> {
        let l = layout(size, align);
        // SAFETY: a valid layout of non-zero size.
        let ptr = unsafe {
            if zeroed {
                self.alloc.alloc_zeroed(l)
            } else {
                self.alloc.alloc(l)
            }
        };
        Some(Block { ptr, usable: size })
    }

    fn alloc_zero_size(&mut self) -> Option<Block> {
        let b = PoolMalloc.allocate(Layout::new::<()>()).ok()?;
        Some(Block { ptr: b.as_ptr().cast(), usable: 0 })
    }

    fn realloc(&mut self, b: Block, size: usize, align: usize, new_size: usize) -> Option<Block> {
        if size == 0 {
            return None; // a zero-size block is not `GlobalAlloc`'s to resize
        }
        // SAFETY: `b` is live with this layout; `new_size` is non-zero and
        // the model's sizes never overflow when rounded to `align`.
        let ptr = unsafe { self.alloc.realloc(b.ptr, layout(size, align), new_size) };
        Some(Block { ptr, usable: new_size })
    }

    fn free(&mut self, b: Block, size: usize, align: usize) {
        if size == 0 {
            // SAFETY: from `alloc_zero_size`, with this layout.
            unsafe { PoolMalloc.deallocate(NonNull::new(b.ptr).expect("non-null"), Layout::new::<()>()) };
            return;
        }
        // SAFETY: `b` is live with this layout.
        unsafe { self.alloc.dealloc(b.ptr, layout(size, align)) };
    }

    fn usable_size(&mut self, b: Block, size: usize, _align: usize) -> Option<usize> {
        if !self.usable || size == 0 {
            return None;
        }
        // SAFETY: `b` is a live block of poolmalloc's.
        Some(unsafe { poolmalloc::internals::usable_size(b.ptr, "usable_size") })
    }
}

type MallocFn = unsafe extern "C" fn(usize) -> *mut c_void;
type CallocFn = unsafe extern "C" fn(usize, usize) -> *mut c_void;
type ReallocFn = unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void;
type FreeFn = unsafe extern "C" fn(*mut c_void);
type PosixMemalignFn = unsafe extern "C" fn(*mut *mut c_void, usize, usize) -> c_int;
type AlignedFn = unsafe extern "C" fn(usize, usize) -> *mut c_void;
type UsableFn = unsafe extern "C" fn(*mut c_void) -> usize;
type FreeSizedFn = unsafe extern "C" fn(*mut c_void, usize);
type FreeAlignedSizedFn = unsafe extern "C" fn(*mut c_void, usize, usize);

/// The C functions of a loaded `libpoolmalloc.so`.
pub struct CApi {
    _lib: libloading::Library,
    /// `malloc`.
    pub malloc: MallocFn,
    /// `calloc`.
    pub calloc: CallocFn,
    /// `realloc`.
    pub realloc: ReallocFn,
    /// `free`.
    pub free: FreeFn,
    /// `posix_memalign`.
    pub posix_memalign: PosixMemalignFn,
    /// `aligned_alloc`.
    pub aligned_alloc: AlignedFn,
    /// `memalign`.
    pub memalign: AlignedFn,
    /// `malloc_usable_size`.
    pub malloc_usable_size: UsableFn,
    /// `free_sized`.
    pub free_sized: FreeSizedFn,
    /// `free_aligned_sized`.
    pub free_aligned_sized: FreeAlignedSizedFn,
}

impl CApi {
    /// Loads the library at `path` (without making it the process's
    /// `malloc`: its functions are reached through the handle). The library
    /// is never unloaded (`RTLD_NODELETE`): it registers fork handlers and a
    /// thread-exit destructor that must outlive the handle.
    pub fn load(path: &Path) -> Result<CApi, libloading::Error> {
        use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
        // SAFETY: loading poolmalloc's library runs only its own
        // initialisers, which allocate nothing and register fork handlers.
        let lib: libloading::Library =
            unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL | libc::RTLD_NODELETE)? }.into();
        macro_rules! sym {
            ($name:literal, $ty:ty) => {
                // SAFETY: the library exports this C function with this
                // signature (capi/include/poolmalloc.h, glibc's prototypes);
                // the copied pointer lives as long as `_lib`, which the
                // struct keeps.
                *unsafe { lib.get::<$ty>(concat!($name, "\0").as_bytes())? }
            };
        }
        Ok(CApi {
            malloc: sym!("malloc", MallocFn),
            calloc: sym!("calloc", CallocFn),
            realloc: sym!("realloc", ReallocFn),
            free: sym!("free", FreeFn),
            posix_memalign: sym!("posix_memalign", PosixMemalignFn),
            aligned_alloc: sym!("aligned_alloc", AlignedFn),
            memalign: sym!("memalign", AlignedFn),
            malloc_usable_size: sym!("malloc_usable_size", UsableFn),
            free_sized: sym!("free_sized", FreeSizedFn),
            free_aligned_sized: sym!("free_aligned_sized", FreeAlignedSizedFn),
            _lib: lib,
        })
    }
}

/// The C ABI: every allocation entry point in turn (`malloc`, `calloc` with
/// both factorings, `posix_memalign`, `aligned_alloc`, `memalign`, `realloc`,
/// and `free`, `free_sized`, `free_aligned_sized` and `realloc(p, 0)` to
/// free), with `malloc_usable_size` as the usable size.
pub struct C<'a> {
    api: &'a CApi,
    turn: usize,
}

impl<'a> C<'a> {
    /// A front over loaded functions.
    pub fn new(api: &'a CApi) -> C<'a> {
        C { api, turn: 0 }
    }

    fn next(&mut self, n: usize) -> usize {
        self.turn = self.turn.wrapping_add(1);
        self.turn % n
    }

    fn block(&self, p: *mut c_void) -> Block {
        let usable = if p.is_null() {
            0
        } else {
            // SAFETY: a live block from this library.
            unsafe { (self.api.malloc_usable_size)(p) }
        };
        Block { ptr: p.cast(), usable }
    }
}

impl Front for C<'_> {
    fn alloc(&mut self, size: usize, align: usize, zeroed: bool) -> Option<Block> {
        let a = self.api;
        // SAFETY: C allocation calls with valid arguments.
        let p = unsafe {
            match (zeroed, align <= 16) {
                (true, true) if size % 8 == 0 && self.next(2) == 0 => (a.calloc)(size / 8, 8),
                (true, true) => (a.calloc)(1, size),
                (true, false) => return None,
                (false, true) => (a.malloc)(size),
                (false, false) => match self.next(3) {
                    0 => {
                        let mut p = ptr::null_mut();
                        let rc = (a.posix_memalign)(&mut p, align, size);
                        if rc != 0 {
                            p = ptr::null_mut();
                        }
                        p
                    }
                    1 => (a.aligned_alloc)(align, size),
                    _ => (a.memalign)(align, size),
                },
            }
        };
        Some(self.block(p))
    }

    fn alloc_zero_size(&mut self) -> Option<Block> {
        // SAFETY: malloc(0) returns a unique, freeable pointer.
        let p = unsafe { (self.api.malloc)(0) };
        Some(self.block(p))
    }

    fn realloc(&mut self, b: Block, _size: usize, align: usize, new_size: usize) -> Option<Block> {
        if align > 16 {
            return None; // realloc keeps only malloc's alignment
        }
        // SAFETY: `b` is live; on failure it stays live and null comes back.
        let p = unsafe { (self.api.realloc)(b.ptr.cast(), new_size) };
        Some(if p.is_null() { Block { ptr: ptr::null_mut(), usable: 0 } } else { self.block(p) })
    }

    fn free(&mut self, b: Block, size: usize, align: usize) {
        let a = self.api;
        let p = b.ptr.cast();
        // SAFETY: `b` is live and was allocated with `size` and `align`.
        unsafe {
            match self.next(4) {
                0 => (a.free)(p),
                1 if align <= 16 => (a.free_sized)(p, size),
                1 => (a.free_aligned_sized)(p, align, size),
                2 if size > 0 => {
                    let r = (a.realloc)(p, 0);
                    assert!(r.is_null(), "realloc(p, 0) returned {r:p}, not NULL");
                }
                _ => (a.free)(p),
            }
        }
    }

    fn usable_size(&mut self, b: Block, _size: usize, _align: usize) -> Option<usize> {
        // SAFETY: a live block from this library.
        Some(unsafe { (self.api.malloc_usable_size)(b.ptr.cast()) })
    }
}

/// A first-class `poolmalloc::Heap` through its `Allocator` implementation
/// (`allocate`, `allocate_zeroed`, `grow`, `shrink`, `deallocate`; zero-size
/// layouts included).
pub struct HeapFront {
    heap: poolmalloc::Heap,
}

impl HeapFront {
    /// A front over a new heap.
    pub fn new() -> HeapFront {
        HeapFront { heap: poolmalloc::Heap::new() }
    }
}

impl Default for HeapFront {
    fn default() -> Self {
        HeapFront::new()
    }
}

fn slice_block(r: Result<NonNull<[u8]>, allocator_api2::alloc::AllocError>) -> Block {
    match r {
        Ok(s) => Block { ptr: s.as_ptr().cast(), usable: s.len() },
        Err(_) => Block { ptr: ptr::null_mut(), usable: 0 },
    }
}

impl Front for HeapFront {
    fn alloc(&mut self, size: usize, align: usize, zeroed: bool) -> Option<Block> {
        let h = &self.heap;
        let l = layout(size, align);
        Some(slice_block(if zeroed { h.allocate_zeroed(l) } else { h.allocate(l) }))
    }

    fn alloc_zero_size(&mut self) -> Option<Block> {
        Some(slice_block((&self.heap).allocate(Layout::new::<()>())))
    }

    fn realloc(&mut self, b: Block, size: usize, align: usize, new_size: usize) -> Option<Block> {
        let h = &self.heap;
        let p = NonNull::new(b.ptr).expect("live blocks are non-null");
        let (old, new) = (layout(size, align), layout(new_size, align));
        // SAFETY: `p` is live in this heap with `old`; the sizes are ordered
        // as grow and shrink require.
        Some(slice_block(unsafe {
            if new_size >= size {
                h.grow(p, old, new)
            } else {
                h.shrink(p, old, new)
            }
        }))
    }

    fn free(&mut self, b: Block, size: usize, align: usize) {
        let p = NonNull::new(b.ptr).expect("live blocks are non-null");
        // SAFETY: `p` is live in this heap with this layout.
        unsafe { (&self.heap).deallocate(p, layout(size, align)) };
    }

    fn usable_size(&mut self, _b: Block, _size: usize, _align: usize) -> Option<usize> {
        None
    }
}

/// Over-aligned payload for the typed front.
#[repr(C, align(64))]
pub struct Align64(pub [u8; 64]);

static P8: TypedPool<u64> = TypedPool::new();
static P24: TypedPool<[u64; 3]> = TypedPool::new();
static P64: TypedPool<[u64; 8]> = TypedPool::new();
static P200: TypedPool<[u64; 25]> = TypedPool::new();
static P1000: TypedPool<[u64; 125]> = TypedPool::new();
static PA64: TypedPool<Align64> = TypedPool::new();
static PUNIT: TypedPool<()> = TypedPool::new();

#[allow(dead_code)] // held for their drops
enum Typed {
    U64(PoolBox<'static, u64>),
    B24(PoolBox<'static, [u64; 3]>),
    B64(PoolBox<'static, [u64; 8]>),
    B200(PoolBox<'static, [u64; 25]>),
    B1000(PoolBox<'static, [u64; 125]>),
    A64(PoolBox<'static, Align64>),
}

/// `TypedPool`s of several sizes and alignments (and a zero-sized type):
/// a request is served by the smallest type that holds it and whose
/// alignment covers it (8, or 64); other requests and realloc are not
/// typed-pool operations. The boxes are kept (and dropped) as their types,
/// so each goes back to its own pool.
#[derive(Default)]
pub struct TypedFront {
    boxes: HashMap<usize, Typed>,
    units: Vec<PoolBox<'static, ()>>,
}

impl Front for TypedFront {
    fn alloc(&mut self, size: usize, align: usize, _zeroed: bool) -> Option<Block> {
        let (ptr, usable, b): (*mut u8, usize, Typed) = match (size, align) {
            (_, 128..) => return None,
            (0..=64, 64) => {
                let mut b = PA64.alloc(Align64([0; 64]));
                (PoolBox::as_mut_ptr(&mut b).cast(), 64, Typed::A64(b))
            }
            (_, 9..) => return None,
            (0..=8, _) => {
                let mut b = P8.alloc(0);
                (PoolBox::as_mut_ptr(&mut b).cast(), 8, Typed::U64(b))
            }
            (0..=24, _) => {
                let mut b = P24.alloc([0; 3]);
                (PoolBox::as_mut_ptr(&mut b).cast(), 24, Typed::B24(b))
            }
            (0..=64, _) => {
                let mut b = P64.alloc([0; 8]);
                (PoolBox::as_mut_ptr(&mut b).cast(), 64, Typed::B64(b))
            }
            (0..=200, _) => {
                let mut b = P200.alloc([0; 25]);
                (PoolBox::as_mut_ptr(&mut b).cast(), 200, Typed::B200(b))
            }
            (0..=1000, _) => {
                let mut b = P1000.alloc([0; 125]);
                (PoolBox::as_mut_ptr(&mut b).cast(), 1000, Typed::B1000(b))
            }
            _ => return None,
        };
        let old = self.boxes.insert(ptr as usize, b);
        assert!(old.is_none(), "typed pool handed out {ptr:p} twice");
        Some(Block { ptr, usable })
    }

    fn alloc_zero_size(&mut self) -> Option<Block> {
        let mut b = PUNIT.alloc(());
        let ptr = PoolBox::as_mut_ptr(&mut b).cast();
        self.units.push(b);
        Some(Block { ptr, usable: 0 })
    }

    fn realloc(&mut self, _b: Block, _size: usize, _align: usize, _new_size: usize) -> Option<Block> {
        None
    }

    fn free(&mut self, b: Block, size: usize, _align: usize) {
        if size == 0 {
            self.units.pop().expect("a unit box is live");
            return;
        }
        self.boxes.remove(&(b.ptr as usize)).expect("the model frees only live boxes");
    }

    fn usable_size(&mut self, b: Block, _size: usize, _align: usize) -> Option<usize> {
        self.boxes.contains_key(&(b.ptr as usize)).then_some(b.usable)
    }
}
