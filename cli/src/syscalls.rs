//! Counting the memory system calls a worker makes in its measured loop.
//!
//! **Marks.** A worker marks the start and the end of its measured loop
//! ([`mark`], called by `workloads::timed` outside the timed region) with a
//! `getpid` call whose first argument is a marker value. Untraced, that is
//! one cheap system call at each end of the loop.
//!
//! **Tracing.** [`run_traced`] starts the worker as a traced child
//! (`PTRACE_TRACEME`) under a seccomp filter. The filter lets every system
//! call through at once, except the six memory calls ([`CALLS`]: `mmap`,
//! `munmap`, `mremap`, `madvise`, `brk`, `mprotect`) and the two marks: for
//! those it returns `SECCOMP_RET_TRACE` with the call's index as data, which
//! stops the calling thread and reports to the harness. The harness reads
//! the index (`PTRACE_GETEVENTMSG`), counts the call and resumes the thread;
//! the call itself then runs unchanged. Threads the worker starts are traced
//! from their first instruction (`PTRACE_O_TRACECLONE`) and inherit the
//! filter. Only the counted calls stop, so tracing does not slow the
//! worker much, but the traced run is still a separate run and never timed.
//!
//! **What is counted.** Every counted call that any thread makes between
//! the marks. That includes what the loop itself needs apart from the
//! allocator under test, the same for every allocator: stacks for threads
//! started inside the loop (mapped by the C library, which keeps a cache
//! of them), and the harness's own allocations from `System` (channel
//! slots, thread handles). The calls of the whole process, from `exec` to
//! exit, are counted too, as a separate total.
//!
//! The tracing loop runs on the thread that spawned the worker: Linux
//! accepts ptrace requests only from the tracing thread, and with
//! `PTRACE_TRACEME` that is the thread that forked.

#![cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), allow(dead_code))]

use crate::proc::{self, Finished};
use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

/// The memory system calls counted, in the order of [`Counts::window`].
pub const CALLS: [&str; 6] = ["mmap", "munmap", "mremap", "madvise", "brk", "mprotect"];

/// The two ends of a measured loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    Start,
    Stop,
}

/// High half of both marker values.
const MARK_HIGH: u32 = 0x706d_7363;
const START_LOW: u32 = 0x7374_6172;
const STOP_LOW: u32 = 0x7374_6f70;
/// Filter data of the two marks; the counted calls use `0..CALLS.len()`.
const START_DATA: u16 = 0x100;
const STOP_DATA: u16 = 0x101;

impl Mark {
    fn value(self) -> u64 {
        let low = match self {
            Mark::Start => START_LOW,
            Mark::Stop => STOP_LOW,
        };
        u64::from(MARK_HIGH) << 32 | u64::from(low)
    }
}

/// Marks one end of a measured loop for a tracer; does nothing else.
#[inline(never)]
pub fn mark(m: Mark) {
    // SAFETY: `getpid` ignores its arguments and has no effect; the value
    // only identifies the call to a seccomp filter.
    unsafe { libc::syscall(libc::SYS_getpid, m.value() as libc::c_long) };
}

/// Counts of a traced run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Calls made between the marks, by [`CALLS`] index.
    pub window: [u64; 6],
    /// Calls made by the whole process, from `exec` to exit.
    pub process: u64,
    /// Measured loops marked (start marks seen).
    pub loops: u32,
    /// Start marks not yet matched by a stop mark.
    open: u32,
}

impl Counts {
    /// Calls made between the marks, all kinds together.
    pub fn total(&self) -> u64 {
        self.window.iter().sum()
    }

    /// Counts one stop, by the data the filter returned.
    fn record(&mut self, data: libc::c_ulong) {
        match data {
            d if d < CALLS.len() as libc::c_ulong => {
                self.process += 1;
                if self.open > 0 {
                    self.window[d as usize] += 1;
                }
            }
            d if d == libc::c_ulong::from(START_DATA) => {
                self.loops += 1;
                self.open += 1;
            }
            d if d == libc::c_ulong::from(STOP_DATA) => self.open = self.open.saturating_sub(1),
            _ => {}
        }
    }
}

/// A traced run: how the worker ended, and what it called.
pub struct Traced {
    pub finished: Finished,
    pub counts: Counts,
}

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

/// Byte offsets in `struct seccomp_data`.
const NR_AT: u32 = 0;
const ARCH_AT: u32 = 4;
/// The first argument; the low half comes first on the little-endian
/// architectures this module supports.
const ARG0_LOW_AT: u32 = 16;
const ARG0_HIGH_AT: u32 = 20;

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter { code: code as u16, jt: 0, jf: 0, k }
}

fn jeq(k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16, jt, jf, k }
}

/// The seccomp filter: trace the counted calls and the marks, allow the rest.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn filter() -> Vec<libc::sock_filter> {
    let load = |at| stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, at);
    let ret = |k| stmt(libc::BPF_RET | libc::BPF_K, k);
    let allow = ret(libc::SECCOMP_RET_ALLOW);
    let numbers =
        [libc::SYS_mmap, libc::SYS_munmap, libc::SYS_mremap, libc::SYS_madvise, libc::SYS_brk, libc::SYS_mprotect];
    let mut f = vec![load(ARCH_AT), jeq(AUDIT_ARCH, 1, 0), allow, load(NR_AT)];
    for (i, nr) in numbers.into_iter().enumerate() {
        f.push(jeq(nr as u32, 0, 1));
        f.push(ret(libc::SECCOMP_RET_TRACE | i as u32));
    }
    f.extend([
        jeq(libc::SYS_getpid as u32, 1, 0),
        allow,
        load(ARG0_HIGH_AT),
        jeq(MARK_HIGH, 1, 0),
        allow,
        load(ARG0_LOW_AT),
        jeq(START_LOW, 0, 1),
        ret(libc::SECCOMP_RET_TRACE | u32::from(START_DATA)),
        jeq(STOP_LOW, 0, 1),
        ret(libc::SECCOMP_RET_TRACE | u32::from(STOP_DATA)),
        allow,
    ]);
    f
}

/// Runs `cmd` traced, counting its memory system calls, with stdin closed
/// and stdout and stderr captured; kills it after `timeout`. `Err` says why
/// the calls cannot be counted here (tracing refused, an unsupported
/// architecture); a worker that fails is an `Ok` with its exit status.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub fn run_traced(cmd: &mut Command, timeout: Duration) -> Result<Traced, String> {
    let program = filter();
    // SAFETY: the closure runs in the child between fork and exec. It
    // allocates nothing and makes only system calls (ptrace, prctl), which
    // are async-signal-safe; `program` outlives it, as the closure owns it.
    unsafe {
        cmd.pre_exec(move || {
            let prog = libc::sock_fprog { len: program.len() as u16, filter: program.as_ptr().cast_mut() };
            let null = std::ptr::null_mut::<libc::c_void>();
            if libc::ptrace(libc::PTRACE_TRACEME, 0, null, null) != 0
                || libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const libc::sock_fprog) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let started = proc::start_captured(cmd, timeout)
        .map_err(|e| format!("cannot start the worker traced (ptrace and seccomp must be allowed): {e}"))?;
    let pid = started.pid;
    let mut counts = Counts::default();
    let mut refused: Option<String> = None;
    let mut attached = false;
    let waited = loop {
        let (tid, code) = match next_event() {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // Nothing left to wait for, or waiting failed: the worker
                // cannot be followed any further.
                kill(pid);
                break Err(e);
            }
        };
        if tid == pid && matches!(code, libc::CLD_EXITED | libc::CLD_KILLED | libc::CLD_DUMPED) {
            // The whole worker has exited; `finish` reaps it.
            break Ok(());
        }
        let Some(status) = take_event(tid) else { continue };
        if !libc::WIFSTOPPED(status) {
            // One of the worker's threads has exited.
            continue;
        }
        let (signal, event) = (libc::WSTOPSIG(status), status >> 16);
        let mut deliver = 0;
        if signal == libc::SIGTRAP && event == libc::PTRACE_EVENT_SECCOMP {
            if let Some(data) = event_message(tid) {
                counts.record(data);
            }
        } else if signal == libc::SIGTRAP && event == 0 && tid == pid && !attached {
            // The stop after `exec`, before the worker's first instruction:
            // from here on, follow its threads and take the filter's stops.
            attached = true;
            if let Err(e) = set_options(pid) {
                refused = Some(format!("the kernel refused ptrace options on the worker: {e}"));
                kill(pid);
            }
        } else if signal == libc::SIGTRAP && event != 0 {
            // A new thread (`PTRACE_EVENT_CLONE`): nothing to count.
        } else if signal != libc::SIGSTOP {
            // SIGSTOP is a new thread's first stop; any other signal is the
            // worker's own and goes on to it.
            deliver = signal;
        }
        resume(tid, deliver);
    };
    let finished = started.finish(waited).map_err(|e| format!("lost track of the traced worker: {e}"))?;
    match refused {
        Some(why) => Err(why),
        None => Ok(Traced { finished, counts }),
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub fn run_traced(_cmd: &mut Command, _timeout: Duration) -> Result<Traced, String> {
    Err("counting system calls is supported on x86_64 and aarch64 Linux only".to_string())
}

/// Waits for this thread's children and tracees only
/// (`__WNOTHREAD`): children that other threads of this process started are
/// theirs to wait for.
const WAIT_FLAGS: libc::c_int = libc::__WALL | libc::__WNOTHREAD;

/// Waits for the next event of a thread this thread traces, or of one of
/// its children, without consuming it: the thread id and the `si_code`.
fn next_event() -> io::Result<(libc::pid_t, libc::c_int)> {
    // SAFETY: `siginfo_t` is plain data; all zeroes is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | libc::WSTOPPED | libc::WNOWAIT | WAIT_FLAGS;
    // SAFETY: `info` is a valid, writable siginfo_t.
    if unsafe { libc::waitid(libc::P_ALL, 0, &mut info, flags) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: waitid filled in a SIGCHLD siginfo, whose pid field is valid.
    Ok((unsafe { info.si_pid() }, info.si_code))
}

/// Consumes the pending event of thread `tid`; returns its wait status.
fn take_event(tid: libc::pid_t) -> Option<libc::c_int> {
    let mut status = 0;
    // SAFETY: `status` is a valid out-pointer; `tid` has an event pending.
    let r = unsafe { libc::waitpid(tid, &mut status, WAIT_FLAGS) };
    (r == tid).then_some(status)
}

fn set_options(pid: libc::pid_t) -> io::Result<()> {
    let options = libc::PTRACE_O_TRACECLONE | libc::PTRACE_O_TRACESECCOMP | libc::PTRACE_O_EXITKILL;
    // SAFETY: `pid` is our traced child, stopped; the data argument is the
    // option mask, passed by value.
    let r = unsafe {
        libc::ptrace(libc::PTRACE_SETOPTIONS, pid, std::ptr::null_mut::<libc::c_void>(), options as libc::c_long)
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The data of a seccomp stop: what the filter returned with `SECCOMP_RET_TRACE`.
fn event_message(tid: libc::pid_t) -> Option<libc::c_ulong> {
    let mut data: libc::c_ulong = 0;
    // SAFETY: `tid` is a traced thread in a ptrace stop; `data` is a valid,
    // writable unsigned long.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_GETEVENTMSG,
            tid,
            std::ptr::null_mut::<libc::c_void>(),
            &mut data as *mut libc::c_ulong,
        )
    };
    (r == 0).then_some(data)
}

/// Lets a stopped thread go on, delivering `signal` (0 for none). A thread
/// that is gone already (killed by the worker's exit) is not an error.
fn resume(tid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: `tid` is a traced thread in a ptrace stop, or gone (ESRCH).
    unsafe { libc::ptrace(libc::PTRACE_CONT, tid, std::ptr::null_mut::<libc::c_void>(), signal as libc::c_long) };
}

fn kill(pid: libc::pid_t) {
    // SAFETY: plain syscall; `pid` is our child, which has not been reaped.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_between_the_marks() {
        let mut c = Counts::default();
        c.record(0);
        c.record(START_DATA.into());
        c.record(0);
        c.record(1);
        c.record(1);
        c.record(STOP_DATA.into());
        c.record(4);
        assert_eq!(c.window, [1, 2, 0, 0, 0, 0]);
        assert_eq!((c.total(), c.process, c.loops), (3, 5, 1));
    }

    /// A traced shell counts the calls of its loader, and marks nothing.
    #[test]
    fn traces_a_child() {
        let traced = match run_traced(Command::new("sh").args(["-c", "echo out"]), Duration::from_secs(30)) {
            Ok(t) => t,
            // Tracing may be refused where the tests run; the report then
            // says so instead of giving a figure.
            Err(why) => return eprintln!("not counted: {why}"),
        };
        assert!(traced.finished.exit.success());
        assert_eq!(traced.finished.stdout, b"out\n");
        assert!(traced.counts.process > 0);
        assert_eq!((traced.counts.loops, traced.counts.total()), (0, 0));
    }
}
