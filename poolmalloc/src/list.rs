//! Intrusive doubly linked lists (bottom layer): the one list type that pool
//! records, arenas and huge spans are kept on.
//!
//! The links live in the nodes; a node type names, for each list it can be
//! on, where that list's pair of links is, through a [`Links`]
//! implementation. A list is not synchronised: its *user* holds the lock
//! that guards it, or is its only user, and the links of the nodes on it are
//! guarded the same way. Only the user may read or change the list, so every
//! method that does is `unsafe`: its caller vouches that it is the user.

use crate::sync::Local;
use core::marker::PhantomData;
use core::ptr;

/// Where the (next, prev) links of one list live in a node of type `T`.
pub trait Links<T> {
    /// The (next, prev) links of `node` for this list.
    ///
    /// # Safety
    /// `node` must point at a live node, and the links must not be used
    /// after it is gone.
    unsafe fn links<'a>(node: *mut T) -> (&'a Local<*mut T>, &'a Local<*mut T>);
}

/// A list of `T` through the links `L` names, with its length.
pub struct List<T, L> {
    head: Local<*mut T>,
    len: Local<usize>,
    links: PhantomData<L>,
}

impl<T, L: Links<T>> List<T, L> {
    /// An empty list.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        List { head: Local::new(ptr::null_mut()), len: Local::new(0), links: PhantomData }
    }

    /// An empty list.
    #[cfg(loom)]
    pub fn new() -> Self {
        List { head: Local::new(ptr::null_mut()), len: Local::new(0), links: PhantomData }
    }

    /// The first node, or null.
    ///
    /// # Safety
    /// The caller must be the list's user (see the module docs).
    #[inline]
    pub unsafe fn head(&self) -> *mut T {
        // SAFETY: by the caller, the list's user.
        unsafe { self.head.get() }
    }

    /// Nodes on the list.
    ///
    /// # Safety
    /// The caller must be the list's user.
    #[cfg_attr(loom, allow(clippy::len_without_is_empty))]
    pub unsafe fn len(&self) -> usize {
        // SAFETY: by the caller, the list's user.
        unsafe { self.len.get() }
    }

    /// Whether the list is empty.
    ///
    /// # Safety
    /// The caller must be the list's user.
    #[cfg(test)]
    pub unsafe fn is_empty(&self) -> bool {
        // SAFETY: by the caller, the list's user.
        unsafe { self.head.get().is_null() }
    }

    /// The node after `node` on this list, or null.
    ///
    /// # Safety
    /// `node` must be on a list that uses these links, and the caller must
    /// be that list's user.
    pub unsafe fn next(node: *mut T) -> *mut T {
        // SAFETY: by the caller, `node` is a live node whose links the
        // caller, the list's user, may read.
        unsafe { L::links(node).0.get() }
    }

    /// Pushes `node` at the front.
    ///
    /// # Safety
    /// `node` must be a live node on no list that uses these links, and the
    /// caller must be this list's user.
    pub unsafe fn push(&self, node: *mut T) {
        // SAFETY: by the caller we are the list's user, so the head, the
        // length and the links of `h` (on this list) are ours; `node` is
        // live and on no list, so its links are ours too.
        unsafe {
            let h = self.head.get();
            let (next, prev) = L::links(node);
            prev.set(ptr::null_mut());
            next.set(h);
            if !h.is_null() {
                L::links(h).1.set(node);
            }
            self.head.set(node);
            self.len.set(self.len.get() + 1);
        }
    }

    /// Unlinks `node`.
    ///
    /// # Safety
    /// `node` must be on this list, and the caller must be its user.
    pub unsafe fn remove(&self, node: *mut T) {
        // SAFETY: `node` and its neighbours are live nodes of this list, and
        // by the caller we are its user: the head, the length and their
        // links are ours.
        unsafe {
            let (next_link, prev_link) = L::links(node);
            let (next, prev) = (next_link.get(), prev_link.get());
            if prev.is_null() {
                self.head.set(next);
            } else {
                L::links(prev).0.set(next);
            }
            if !next.is_null() {
                L::links(next).1.set(prev);
            }
            next_link.set(ptr::null_mut());
            prev_link.set(ptr::null_mut());
            self.len.set(self.len.get() - 1);
        }
    }

    /// Pops the first node, or null.
    ///
    /// # Safety
    /// The caller must be the list's user.
    pub unsafe fn pop(&self) -> *mut T {
        // SAFETY: by the caller, the list's user; `h` is on this list.
        unsafe {
            let h = self.head.get();
            if !h.is_null() {
                self.remove(h);
            }
            h
        }
    }

    /// Forgets every node (their links are left as they are): for a fork
    /// child, where the nodes are reclaimed by other means, and for a list
    /// whose nodes are all being released.
    ///
    /// # Safety
    /// The caller must be the list's user.
    pub unsafe fn clear(&self) {
        // SAFETY: by the caller, the list's user.
        unsafe {
            self.head.set(ptr::null_mut());
            self.len.set(0);
        }
    }
}

impl<T, L: Links<T>> Default for List<T, L> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Node {
        next: Local<*mut Node>,
        prev: Local<*mut Node>,
    }

    struct NodeLinks;

    impl Links<Node> for NodeLinks {
        unsafe fn links<'a>(node: *mut Node) -> (&'a Local<*mut Node>, &'a Local<*mut Node>) {
            // SAFETY: by the caller, `node` is live.
            unsafe { (&(*node).next, &(*node).prev) }
        }
    }

    #[test]
    fn push_remove_pop_keep_links_and_length() {
        let mut nodes: [Node; 3] =
            core::array::from_fn(|_| Node { next: Local::new(ptr::null_mut()), prev: Local::new(ptr::null_mut()) });
        let base = nodes.as_mut_ptr();
        let at = |i: usize| base.wrapping_add(i);
        let list: List<Node, NodeLinks> = List::new();
        // SAFETY: the nodes live in `nodes` for the whole test, each on the
        // list at most once; the list and the nodes are this test's alone,
        // so this thread is the list's only user.
        unsafe {
            assert!(list.is_empty());
            for i in 0..3 {
                list.push(at(i));
            }
            assert_eq!((list.len(), list.head()), (3, at(2)));
            list.remove(at(1));
            assert_eq!(List::<Node, NodeLinks>::next(at(2)), at(0));
            assert_eq!((*at(0)).prev.get(), at(2));
            assert_eq!(list.pop(), at(2));
            assert_eq!(list.pop(), at(0));
            assert!(list.pop().is_null());
            assert_eq!(list.len(), 0);
        }
    }
}
