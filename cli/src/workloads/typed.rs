//! `typed`: many 48-byte objects of one type made and dropped, the way a
//! program uses `Box::new` for its nodes, messages or numbers. Single
//! thread.
//!
//! Each round makes a batch of 100 objects, then reads and drops them
//! newest first; then it makes and drops one object at a time, 100 times.
//! Each object is written whole when it is made, and every word is read
//! back into the checksum before it is dropped.
//!
//! Under an allocator `A` an object is made as `Box::new` makes it with `A`
//! as the global allocator: `A.alloc` with the type's layout and a
//! `ptr::write`, and dropped with `drop_in_place` and `A.dealloc`. The
//! `typed-pool` comparator does the same work with a
//! `poolmalloc::TypedPool<T>` in a `static` and its `PoolBox`es, whose slots
//! come from poolmalloc.

use super::{alloc, cookie, mix, timed, Outcome, Params, WorkResult};
use poolmalloc::{PoolBox, TypedPool};
use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::ptr::{self, NonNull};

/// The object: 48 bytes.
#[derive(Clone, Copy)]
#[repr(C)]
struct Object {
    id: u64,
    words: [u64; 5],
}

const _: () = assert!(std::mem::size_of::<Object>() == 48);

/// Objects made and dropped as a batch, LIFO.
const BATCH: usize = 100;
/// Single make-and-drop pairs per round.
const PAIRS: usize = 100;

impl Object {
    #[inline(always)]
    fn new(id: u64) -> Object {
        let c = cookie(id);
        Object { id, words: [c, c ^ 1, c ^ 2, c ^ 3, c.rotate_left(7)] }
    }

    #[inline(always)]
    fn fold(&self) -> u64 {
        self.words.iter().fold(self.id, |h, &w| h.wrapping_add(w))
    }
}

/// How objects are made and dropped.
trait Maker {
    type Handle;
    fn make(&self, o: Object) -> Self::Handle;
    fn get(h: &Self::Handle) -> &Object;
    fn drop_it(&self, h: Self::Handle);
}

/// `Box::new` and drop, through allocator `A`.
struct Boxes<'a, A>(&'a A);

/// An object made by [`Boxes::make`]; only that function makes one.
struct Boxed(NonNull<Object>);

impl<A: GlobalAlloc> Maker for Boxes<'_, A> {
    type Handle = Boxed;

    #[inline(always)]
    fn make(&self, o: Object) -> Boxed {
        let p = alloc(self.0, Layout::new::<Object>()).cast::<Object>();
        // SAFETY: a fresh block with `Object`'s layout.
        unsafe { p.write(o) };
        // SAFETY: `alloc` never returns null.
        Boxed(unsafe { NonNull::new_unchecked(p) })
    }

    #[inline(always)]
    fn get(h: &Boxed) -> &Object {
        // SAFETY: a `Boxed` is a live, initialised object owned by its holder.
        unsafe { h.0.as_ref() }
    }

    #[inline(always)]
    fn drop_it(&self, h: Boxed) {
        let p = h.0.as_ptr();
        // SAFETY: a live object made by `make` with this allocator and
        // layout; consumed here, so dropped and freed once.
        unsafe {
            ptr::drop_in_place(p);
            self.0.dealloc(p.cast(), Layout::new::<Object>());
        }
    }
}

static POOL: TypedPool<Object> = TypedPool::new();

/// `TypedPool::alloc` and dropping the `PoolBox`.
struct Pooled;

impl Maker for Pooled {
    type Handle = PoolBox<'static, Object>;

    #[inline(always)]
    fn make(&self, o: Object) -> Self::Handle {
        POOL.alloc(o)
    }

    #[inline(always)]
    fn get(h: &Self::Handle) -> &Object {
        h
    }

    #[inline(always)]
    fn drop_it(&self, h: Self::Handle) {
        drop(h);
    }
}

/// The workload under allocator `a`, objects made as `Box::new` makes them.
pub fn run<A: GlobalAlloc + Sync>(a: &'static A, p: &Params) -> WorkResult {
    Ok(objects(&Boxes(a), p))
}

/// The workload with `TypedPool<T>`.
pub fn run_pool(p: &Params) -> WorkResult {
    Ok(objects(&Pooled, p))
}

fn objects<M: Maker>(m: &M, p: &Params) -> Outcome {
    let rounds = p.pick(20_000u64, 200_000);
    // The batch's slots come from the harness, before the clock starts.
    let mut batch: Vec<M::Handle> = Vec::with_capacity(BATCH);
    let (seconds, checksum) = timed(|| {
        let mut h = 0u64;
        let mut id = 0u64;
        for _ in 0..rounds {
            for _ in 0..BATCH {
                batch.push(m.make(Object::new(id)));
                id += 1;
            }
            let mut sum = 0u64;
            while let Some(o) = batch.pop() {
                sum = sum.wrapping_add(M::get(&o).fold());
                m.drop_it(o);
            }
            h = mix(h, sum);
            for _ in 0..PAIRS {
                let o = black_box(m.make(Object::new(id)));
                id += 1;
                sum = sum.wrapping_add(M::get(&o).fold());
                m.drop_it(o);
            }
            h = mix(h, sum);
        }
        h
    });
    Outcome { seconds, ops: rounds * (BATCH + PAIRS) as u64, checksum, memory: None }
}
