//! Thread identity (bottom layer, used by every layer above).
//!
//! A thread's id is the address of its thread control block, which the
//! CPU's thread pointer register holds (`fs:0` on x86-64 Linux): reading it
//! costs one load and no call. Elsewhere (and under Miri) it is the address
//! of a 64-byte-aligned thread-local. Either way it is never 0, is a
//! multiple of 64 (the owner-word flags live in the low bits), and is unique
//! among live threads. A pool's owner word holds its owning thread's id, and
//! locks record their holder's.
//!
//! The per-thread heap slot is not here: it belongs to the thread layer
//! ([`crate::lifecycle`] sets it, [`crate::thread`] reads it).

/// The calling thread's id (never 0, a multiple of 64).
#[cfg(all(target_arch = "x86_64", not(feature = "portable"), target_os = "linux", not(miri)))]
#[inline(always)]
pub(crate) fn thread_id() -> usize {
    let t: usize;
    // SAFETY: fs:0 holds the thread control block's own address (x86-64
    // TLS ABI), unique among live threads.
    unsafe {
        core::arch::asm!("mov {t}, qword ptr fs:[0]", t = out(reg) t, options(nostack, preserves_flags, readonly, pure));
    }
    t
}

/// A thread-local whose address is the thread id: aligned so the low bits
/// stay free for the owner-word flags, as a TCB address's are.
#[cfg(not(all(target_arch = "x86_64", not(feature = "portable"), target_os = "linux", not(miri))))]
#[repr(align(64))]
struct Id(#[allow(dead_code)] u8);

#[cfg(not(all(target_arch = "x86_64", not(feature = "portable"), target_os = "linux", not(miri))))]
std::thread_local! {
    static ID: Id = const { Id(0) };
}

/// The calling thread's id (never 0, a multiple of 64).
#[cfg(not(all(target_arch = "x86_64", not(feature = "portable"), target_os = "linux", not(miri))))]
#[inline(always)]
pub(crate) fn thread_id() -> usize {
    ID.with(|b| b as *const Id as usize)
}
