//! Fork in the two places where allocators deadlock or corrupt their state,
//! with poolmalloc as the global allocator:
//!
//! * from a signal handler that interrupts `malloc` and `free` (a timer
//!   fires every 100 µs at a thread that does nothing but allocate and
//!   free, while another thread allocates too): 100 forks;
//! * from four threads at once, while two more threads allocate: 100 forks.
//!
//! Every child allocates, checks and frees memory, then exits; the parent
//! waits for each with a timeout. A child that has not exited in 20 seconds
//! is a hang and fails the test, as does any other exit.

use poolmalloc::PoolMalloc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering::*};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: PoolMalloc = PoolMalloc;

const FORKS: usize = 100;
const TIMEOUT: Duration = Duration::from_secs(20);

/// Allocates, fills, checks and frees `rounds` batches; returns whether
/// every block kept its contents.
fn churn(seed: usize, rounds: usize) -> bool {
    let mut ok = true;
    let mut v: Vec<Vec<u8>> = Vec::new();
    for i in 0..rounds {
        let n = 1 + (seed.wrapping_mul(31).wrapping_add(i * 97)) % 3000;
        v.push(vec![(i % 251) as u8; n]);
        if v.len() > 64 {
            let b = v.swap_remove((seed + i) % v.len());
            ok &= b.iter().all(|&x| x == b[0]);
        }
    }
    ok && v.iter().all(|b| b.iter().all(|&x| x == b[0]))
}

/// Waits for `pid` with the timeout; Err describes a hang or a failure.
fn wait(pid: libc::pid_t) -> Result<(), String> {
    match poolmalloc_reliability::child::wait(pid, TIMEOUT) {
        None => Err(format!("child {pid} hung")),
        Some(status) if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 => Ok(()),
        Some(status) => Err(format!("child {pid} ended with status {status:#x}")),
    }
}

/// Set in the child by the signal handler.
static IN_CHILD: AtomicBool = AtomicBool::new(false);
/// The last child forked by the handler (0: none since the loop took it).
static FORKED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_alarm(_: libc::c_int) {
    if FORKED.load(Relaxed) != 0 || IN_CHILD.load(Relaxed) {
        return; // one child at a time
    }
    // SAFETY: fork from a signal handler; the child only returns into the
    // interrupted code, finishes its allocation loop step and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        IN_CHILD.store(true, Relaxed);
    } else if pid > 0 {
        FORKED.store(pid, Relaxed);
    }
}

/// A child forked by the signal handler: keeps allocating for a while,
/// checks the blocks it inherited, and leaves.
fn child_work(i: usize, live: &[Box<[u8]>]) -> ! {
    let ok = churn(i, 2000) && live.iter().all(|b| b.iter().all(|&x| x == b[0]));
    // SAFETY: ends the child.
    unsafe { libc::_exit(if ok { 0 } else { 3 }) }
}

fn fork_from_signal_handler() -> Result<usize, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let other = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Relaxed) {
                assert!(churn(i, 200));
                i += 1;
            }
        })
    };
    // SAFETY: installing a handler for SIGALRM, which only this test uses;
    // SA_RESTART keeps waitpid and sleep from failing with EINTR.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_alarm as extern "C" fn(libc::c_int) as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut()), 0);
    }
    let mut forks = 0;
    let mut failures = Vec::new();
    // A timer thread sends SIGALRM to this thread every 100 µs.
    // SAFETY: pthread_self is always safe.
    let target = unsafe { libc::pthread_self() };
    let ticking = Arc::new(AtomicBool::new(true));
    let timer = {
        let ticking = ticking.clone();
        let target = target as usize;
        std::thread::spawn(move || {
            while ticking.load(Relaxed) {
                // SAFETY: the main test thread lives until `ticking` is false.
                unsafe { libc::pthread_kill(target as libc::pthread_t, libc::SIGALRM) };
                std::thread::sleep(Duration::from_micros(100));
            }
        })
    };
    let mut i = 0usize;
    let mut live: Vec<Box<[u8]>> = Vec::new();
    while forks < FORKS {
        // The interrupted work: allocation and free of assorted sizes.
        live.push(vec![(i % 253) as u8; 1 + (i * 131) % 5000].into_boxed_slice());
        if live.len() > 100 {
            let b = live.swap_remove(i % live.len());
            assert!(b.iter().all(|&x| x == b[0]), "a block changed under the parent");
        }
        i += 1;
        if IN_CHILD.load(Relaxed) {
            child_work(i, &live);
        }
        let pid = FORKED.load(Relaxed);
        if pid != 0 {
            if let Err(e) = wait(pid) {
                failures.push(e);
            }
            forks += 1;
            FORKED.store(0, Relaxed);
        }
    }
    if IN_CHILD.load(Relaxed) {
        // Forked by a signal that came after the last count, before the
        // loop's test: the child has no timer thread to join.
        child_work(i, &live);
    }
    ticking.store(false, Relaxed);
    timer.join().unwrap();
    // A last signal may have forked after the count was reached.
    let pid = FORKED.swap(0, Relaxed);
    if pid != 0 {
        if let Err(e) = wait(pid) {
            failures.push(e);
        }
    }
    stop.store(true, Relaxed);
    other.join().unwrap();
    if failures.is_empty() {
        Ok(forks)
    } else {
        Err(failures.join("\n"))
    }
}

fn fork_from_several_threads() -> Result<usize, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let busy: Vec<_> = (0..2)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut i = t * 1000;
                while !stop.load(Relaxed) {
                    assert!(churn(i, 300));
                    i += 1;
                }
            })
        })
        .collect();
    let done = Arc::new(AtomicUsize::new(0));
    let forkers: Vec<_> = (0..4)
        .map(|t| {
            let done = done.clone();
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                for k in 0..FORKS / 4 {
                    let keep = churn(t * 100 + k, 50);
                    // SAFETY: the child only allocates, frees and exits.
                    let pid = unsafe { libc::fork() };
                    assert!(pid >= 0, "fork failed");
                    if pid == 0 {
                        let ok = keep && churn(k, 3000);
                        // SAFETY: ends the child.
                        unsafe { libc::_exit(if ok { 0 } else { 3 }) };
                    }
                    if let Err(e) = wait(pid) {
                        failures.push(e);
                    }
                    done.fetch_add(1, Relaxed);
                }
                failures
            })
        })
        .collect();
    let failures: Vec<String> = forkers.into_iter().flat_map(|f| f.join().unwrap()).collect();
    stop.store(true, Relaxed);
    for b in busy {
        b.join().unwrap();
    }
    if failures.is_empty() {
        Ok(done.load(Relaxed))
    } else {
        Err(failures.join("\n"))
    }
}

fn main() {
    let mut failed = false;
    for (name, test) in [
        ("fork from a signal handler interrupting malloc/free", fork_from_signal_handler as fn() -> _),
        ("fork from 4 threads at once, 2 more allocating", fork_from_several_threads),
    ] {
        let start = Instant::now();
        match test() {
            Ok(n) => println!("{name}: {n} forks, 0 hangs, 0 failures ({:.1} s)", start.elapsed().as_secs_f64()),
            Err(e) => {
                println!("{name}: FAILED\n{e}");
                failed = true;
            }
        }
    }
    assert!(!failed, "fork tests failed");
}
