//! Waiting for a forked child with a time limit.

use std::time::{Duration, Instant};

/// Waits up to `limit` for the child `pid` and returns its wait status, or
/// `None` if it was still running then (it is killed and reaped: a hang).
pub fn wait(pid: libc::pid_t, limit: Duration) -> Option<libc::c_int> {
    let deadline = Instant::now() + limit;
    let mut status = 0;
    loop {
        // SAFETY: waiting for the caller's own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return Some(status);
        }
        assert!(r == 0, "waitpid({pid}) failed");
        if Instant::now() > deadline {
            // SAFETY: the caller's own child, killed and reaped.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
