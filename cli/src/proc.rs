//! Child processes: spawning, a watchdog, and reaping with `wait4` to read
//! the child's own CPU time and peak RSS.
//!
//! A child is first waited for with `waitid(WNOWAIT)`, which leaves it a
//! zombie: its pid cannot be reused until it is reaped, so the watchdog can
//! kill it without racing with a new process of the same pid. Then `wait4`
//! reaps it and returns its resource usage.

use std::io::{self, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }

    /// The status a shell would report: the code, or 128 + the signal.
    pub fn shell_status(self) -> u8 {
        match self {
            Exit::Code(c) => (c & 0xff) as u8,
            Exit::Signal(s) => (128 + s).clamp(0, 255) as u8,
        }
    }

    pub fn describe(self) -> String {
        match self {
            Exit::Code(c) => format!("exit status {c}"),
            Exit::Signal(s) => format!("killed by {}", signal_name(s)),
        }
    }
}

/// The usual name of a signal.
pub fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        _ => return format!("signal {sig}"),
    };
    format!("{name} (signal {sig})")
}

/// A child's resource usage.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// Seconds from spawn to exit, measured here.
    pub wall: f64,
    /// CPU seconds in user mode, from `wait4`.
    pub user: f64,
    /// CPU seconds in the kernel, from `wait4`.
    pub sys: f64,
    /// Peak resident set size in bytes, from `wait4`.
    pub max_rss: u64,
}

/// A finished child with captured output.
pub struct Finished {
    pub exit: Exit,
    pub usage: Usage,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Whether the watchdog killed it.
    pub timed_out: bool,
}

fn seconds(tv: libc::timeval) -> f64 {
    tv.tv_sec as f64 + tv.tv_usec as f64 * 1e-6
}

/// Blocks until child `pid` has exited, without reaping it.
fn wait_exited(pid: libc::pid_t) -> io::Result<()> {
    loop {
        // SAFETY: `siginfo_t` is plain data; all zeroes is a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, writable siginfo_t; `pid` is our child.
        let r = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if r == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Reaps child `pid` and returns how it ended and its resource usage.
fn reap(pid: libc::pid_t) -> io::Result<(Exit, libc::rusage)> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: `rusage` is plain data; all zeroes is a valid value.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid, writable out-pointers; `pid` is our child.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            let exit = if libc::WIFSIGNALED(status) {
                Exit::Signal(libc::WTERMSIG(status))
            } else {
                Exit::Code(libc::WEXITSTATUS(status))
            };
            return Ok((exit, ru));
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

fn usage(wall: Duration, ru: &libc::rusage) -> Usage {
    Usage {
        wall: wall.as_secs_f64(),
        user: seconds(ru.ru_utime),
        sys: seconds(ru.ru_stime),
        // Linux reports kilobytes.
        max_rss: u64::try_from(ru.ru_maxrss).unwrap_or(0) * 1024,
    }
}

fn drain(mut pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(p) = pipe.as_mut() {
            // A read error leaves what was read; the exit status tells the rest.
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

/// Kills a child that runs past its deadline.
struct Watchdog {
    exited: Arc<(Mutex<bool>, Condvar)>,
    thread: thread::JoinHandle<bool>,
}

impl Watchdog {
    fn start(pid: libc::pid_t, deadline: Instant) -> Watchdog {
        let exited = Arc::new((Mutex::new(false), Condvar::new()));
        let watch = Arc::clone(&exited);
        let thread = thread::spawn(move || {
            let (lock, cv) = &*watch;
            let mut done = lock.lock().unwrap_or_else(|e| e.into_inner());
            while !*done {
                let now = Instant::now();
                if now >= deadline {
                    // SAFETY: plain syscall. The child has not been reaped
                    // (its owner reaps only after setting `done`, which we
                    // hold the lock on), so `pid` still names it.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    return true;
                }
                done = cv.wait_timeout(done, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
            }
            false
        });
        Watchdog { exited, thread }
    }

    /// Stops the watchdog, which must be called after the child has exited
    /// and before it is reaped. Returns whether the watchdog killed it.
    fn stop(self) -> bool {
        {
            let (lock, cv) = &*self.exited;
            *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
            cv.notify_all();
        }
        self.thread.join().unwrap_or(false)
    }
}

/// A running child whose stdout and stderr are being captured, watched by
/// a watchdog.
pub struct Started {
    pub pid: libc::pid_t,
    start: Instant,
    out: thread::JoinHandle<Vec<u8>>,
    err: thread::JoinHandle<Vec<u8>>,
    watchdog: Watchdog,
}

/// Starts `cmd` with stdin closed and stdout and stderr captured; kills it
/// after `timeout`.
pub fn start_captured(cmd: &mut Command, timeout: Duration) -> io::Result<Started> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let start = Instant::now();
    let mut child: Child = cmd.spawn()?;
    let pid = child.id() as libc::pid_t;
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let watchdog = Watchdog::start(pid, start + timeout);
    Ok(Started { pid, start, out, err, watchdog })
}

impl Started {
    /// Finishes with a child that has exited but is not reaped yet
    /// (`waited` says whether waiting for that went well): stops the
    /// watchdog, reaps the child and collects its output.
    pub fn finish(self, waited: io::Result<()>) -> io::Result<Finished> {
        let wall = self.start.elapsed();
        let timed_out = self.watchdog.stop();
        waited?;
        let (exit, ru) = reap(self.pid)?;
        let stdout = self.out.join().unwrap_or_default();
        let stderr = self.err.join().unwrap_or_default();
        Ok(Finished { exit, usage: usage(wall, &ru), stdout, stderr, timed_out })
    }
}

/// Runs `cmd` with stdin closed and stdout and stderr captured; kills it
/// after `timeout`.
pub fn run_captured(cmd: &mut Command, timeout: Duration) -> io::Result<Finished> {
    let started = start_captured(cmd, timeout)?;
    let waited = wait_exited(started.pid);
    started.finish(waited)
}

/// A finished child that ran with the terminal's stdin, stdout and stderr.
#[derive(Clone, Copy, Debug)]
pub struct Inherited {
    /// The child's process id (it names the files it wrote, such as a heap profile).
    pub pid: u32,
    pub exit: Exit,
    pub usage: Usage,
}

/// Runs `cmd` with the terminal's stdin, stdout and stderr. While it runs,
/// SIGINT and SIGQUIT from the terminal go to the child (and its process
/// group) but do not end this process, so the child's status is still
/// reported, as `time(1)` does.
pub fn run_inherited(cmd: &mut Command) -> io::Result<Inherited> {
    let _guard = IgnoreTerminalSignals::install();
    let start = Instant::now();
    let child = cmd.spawn()?;
    let pid = child.id();
    wait_exited(pid as libc::pid_t)?;
    let wall = start.elapsed();
    let (exit, ru) = reap(pid as libc::pid_t)?;
    Ok(Inherited { pid, exit, usage: usage(wall, &ru) })
}

extern "C" fn ignore_signal(_: libc::c_int) {}

/// Catches SIGINT and SIGQUIT with a handler that does nothing; restores
/// the previous dispositions when dropped. A handler (unlike `SIG_IGN`) is
/// reset to the default by `exec`, so the child still receives them.
struct IgnoreTerminalSignals {
    previous: [(libc::c_int, libc::sighandler_t); 2],
}

impl IgnoreTerminalSignals {
    fn install() -> Self {
        let handler = ignore_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // SAFETY: the handler is async-signal-safe (it does nothing).
        let previous = [libc::SIGINT, libc::SIGQUIT].map(|sig| (sig, unsafe { libc::signal(sig, handler) }));
        IgnoreTerminalSignals { previous }
    }
}

impl Drop for IgnoreTerminalSignals {
    fn drop(&mut self) {
        for (sig, old) in self.previous {
            if old != libc::SIG_ERR {
                // SAFETY: restores a disposition returned by `signal`.
                unsafe { libc::signal(sig, old) };
            }
        }
    }
}

/// Lets a closed stdout end this process quietly (`poolmalloc bench | head`),
/// as it does for other command-line tools, instead of a failed write.
pub fn restore_sigpipe() {
    // SAFETY: sets the default disposition; no handler is involved.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_status_and_usage() {
        let f =
            run_captured(Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]), Duration::from_secs(30))
                .unwrap();
        assert_eq!(f.exit, Exit::Code(3));
        assert_eq!(f.stdout, b"out\n");
        assert_eq!(f.stderr, b"err\n");
        assert!(!f.timed_out);
        assert!(f.usage.max_rss > 0 && f.usage.wall > 0.0);
    }

    #[test]
    fn watchdog_kills_a_hung_child() {
        let f = run_captured(Command::new("sleep").arg("30"), Duration::from_millis(200)).unwrap();
        assert!(f.timed_out);
        assert_eq!(f.exit, Exit::Signal(libc::SIGKILL));
        assert!(f.usage.wall < 10.0);
    }

    #[test]
    fn inherited_run_reports_the_pid() {
        let done = run_inherited(Command::new("sh").args(["-c", "exit $(( $$ % 200 ))"])).unwrap();
        assert!(done.pid > 0);
        assert_eq!(done.exit, Exit::Code((done.pid % 200) as i32));
    }

    #[test]
    fn shell_status() {
        assert_eq!(Exit::Code(1).shell_status(), 1);
        assert_eq!(Exit::Signal(libc::SIGSEGV).shell_status(), 139);
        assert!(Exit::Signal(6).describe().contains("SIGABRT"));
    }
}
