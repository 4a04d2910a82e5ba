//! Options, read once from the environment.
//!
//! Options are read with libc's `getenv` (never `std::env`, which allocates)
//! the first time any thread allocates, and kept in atomics. A value that does
//! not parse gets a one-line warning on stderr and the default. Every option
//! is in [`TABLE`]; a test checks that the README's options table says the
//! same.

use crate::os;
use crate::sync::atomic::{AtomicBool, AtomicI64, AtomicPtr, AtomicU8, AtomicUsize, Ordering::{Acquire, Relaxed, Release}};
use core::ptr;

/// One documented option.
pub struct OptionDoc {
    /// Environment variable.
    pub name: &'static str,
    /// Default value, as text.
    pub default: &'static str,
    /// What it does.
    pub help: &'static str,
    /// The values it takes, for the warning about one that does not parse.
    pub expected: &'static str,
    /// Whether [`set`] can change it while the program runs.
    pub runtime: bool,
}

/// Every option poolmalloc reads.
pub const TABLE: &[OptionDoc] = &[
    OptionDoc {
        name: "POOLMALLOC_THREADS",
        default: "perthread",
        help: "`perthread`: each thread allocates from its own heap. `locked`: one heap behind one lock (the pymalloc-under-the-GIL model), for comparison.",
        expected: "perthread or locked",
        runtime: false,
    },
    OptionDoc {
        name: "POOLMALLOC_PURGE_DELAY",
        default: "100",
        help: "Milliseconds a free pool keeps its pages before they are decommitted (MADV_DONTNEED), while free pages fit the allowance (8 MiB plus a sixteenth of the memory in use; beyond it, at once); also how long freed huge spans stay cached. 0: at once. -1: never.",
        expected: "milliseconds, or -1 for never",
        runtime: true,
    },
    OptionDoc {
        name: "POOLMALLOC_SHOW_STATS",
        default: "0",
        help: "1: print the statistics report to stderr when the process exits.",
        expected: "0 or 1",
        runtime: true,
    },
    OptionDoc {
        name: "POOLMALLOC_VERBOSE",
        default: "0",
        help: "1: print a line on stderr when poolmalloc starts, with the options in effect.",
        expected: "0 or 1",
        runtime: false,
    },
    OptionDoc {
        name: "POOLMALLOC_DEBUG",
        default: "0",
        help: "1: debug mode, like `PYTHONMALLOC=debug`: guard bytes around every block, fill patterns, serial numbers, and checks on every free and realloc that report and abort.",
        expected: "0 or 1",
        runtime: false,
    },
    OptionDoc {
        name: "POOLMALLOC_DEBUG_QUARANTINE",
        default: "0",
        help: "In debug mode, keep the last N freed blocks (at most 65536) out of circulation and check that they still hold the free pattern when they leave, to catch writes after free.",
        expected: "a number of blocks",
        runtime: true,
    },
    OptionDoc {
        name: "POOLMALLOC_SECURE",
        default: "0",
        help: "1: secure mode: free lists encoded with per-pool random keys, allocation order randomised within each pool, freed blocks held back before reuse, every free checked (see Threat model). Always on in programs built with the `secure` Cargo feature.",
        expected: "0 or 1",
        runtime: false,
    },
    OptionDoc {
        name: "POOLMALLOC_PROF",
        default: "0",
        help: "1: sample allocations for the heap profiler and write `PREFIX.<pid>.heap` at exit (see Heap profiling; `poolmalloc prof` turns it into pprof, flame graphs and a table). Off in debug and locked mode.",
        expected: "0 or 1",
        runtime: false,
    },
    OptionDoc {
        name: "POOLMALLOC_PROF_SAMPLE",
        default: "524288",
        help: "Mean number of bytes allocated between two samples of the heap profiler (the intervals are drawn from an exponential distribution).",
        expected: "a number of bytes above 0",
        runtime: false,
    },
    OptionDoc {
        name: "POOLMALLOC_PROF_PREFIX",
        default: "poolmalloc-prof",
        help: "Path prefix of the heap profile written at exit: `PREFIX.<pid>.heap` (a fork child writes a file of its own).",
        expected: "a path of 1 to 200 bytes",
        runtime: false,
    },
    OptionDoc {
        name: "POOLMALLOC_INVALID_FREE",
        default: "abort",
        help: "What to do with a pointer poolmalloc does not own passed to free, realloc or malloc_usable_size: `abort` (report and raise SIGABRT), `warn` (report and ignore), `ignore`.",
        expected: "abort, warn or ignore",
        runtime: true,
    },
    OptionDoc {
        name: "POOLMALLOC_THP",
        default: "never",
        help: "Transparent huge pages for poolmalloc's mappings: `never` (4 KiB pages: marked MADV_NOHUGEPAGE where the system's THP setting is `always`), `default` (as the system's setting has them), `always` (marked MADV_HUGEPAGE). Applies to mappings made after a change. Huge pages cost 1.62× the peak RSS and 1.12× the time on the bench suite (see Options).",
        expected: "never, default or always",
        runtime: true,
    },
];

/// Reaction to an invalid pointer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub(crate) enum InvalidFree {
    /// Report and abort.
    Abort = 0,
    /// Report and carry on.
    Warn = 1,
    /// Carry on silently.
    Ignore = 2,
}

static LOCKED: AtomicBool = AtomicBool::new(false);
static PROF: AtomicBool = AtomicBool::new(false);
static PROF_SAMPLE: AtomicI64 = AtomicI64::new(512 * 1024);
static PROF_PREFIX: AtomicPtr<u8> = AtomicPtr::new(ptr::null_mut());
static PROF_PREFIX_LEN: AtomicUsize = AtomicUsize::new(0);
static PURGE_DELAY: AtomicI64 = AtomicI64::new(100);
static SHOW_STATS: AtomicBool = AtomicBool::new(false);
static VERBOSE: AtomicBool = AtomicBool::new(false);
static INVALID: AtomicU8 = AtomicU8::new(InvalidFree::Abort as u8);
static DEBUG: AtomicBool = AtomicBool::new(false);
static QUARANTINE: AtomicI64 = AtomicI64::new(0);
static SECURE: AtomicBool = AtomicBool::new(cfg!(feature = "secure"));

/// Whether secure mode is on (`POOLMALLOC_SECURE=1`, or the `secure`
/// feature). Fixed before the first pool is made.
#[inline]
pub fn secure() -> bool {
    SECURE.load(Relaxed)
}

/// Whether debug mode is on (`POOLMALLOC_DEBUG=1`).
#[inline]
pub fn debug() -> bool {
    DEBUG.load(Relaxed)
}

/// Blocks kept in the debug quarantine.
pub fn quarantine() -> usize {
    QUARANTINE.load(Relaxed).max(0) as usize
}

/// Sets the debug quarantine length (capped at 65536).
pub(crate) fn set_quarantine(n: usize) {
    QUARANTINE.store(n.min(65536) as i64, Relaxed);
}

/// Whether locked mode is on.
#[inline]
pub fn locked_mode() -> bool {
    LOCKED.load(Relaxed)
}

/// The purge delay in milliseconds (negative: never).
#[inline]
pub fn purge_delay_ms() -> i64 {
    PURGE_DELAY.load(Relaxed)
}

/// Whether to print statistics at exit.
pub fn show_stats() -> bool {
    SHOW_STATS.load(Relaxed)
}

/// Whether verbose output is on.
pub fn verbose() -> bool {
    VERBOSE.load(Relaxed)
}

/// What to do with invalid pointers.
pub(crate) fn invalid_free() -> InvalidFree {
    match INVALID.load(Relaxed) {
        0 => InvalidFree::Abort,
        1 => InvalidFree::Warn,
        _ => InvalidFree::Ignore,
    }
}

/// Sets the reaction to invalid pointers.
pub(crate) fn set_invalid_free(v: InvalidFree) {
    INVALID.store(v as u8, Relaxed);
}

fn getenv(name: &[u8]) -> Option<&'static [u8]> {
    debug_assert!(name.ends_with(b"\0"));
    // SAFETY: `name` is NUL-terminated; getenv does not allocate, and the
    // returned string lives as long as the environment (we copy nothing).
    let p = unsafe { libc::getenv(name.as_ptr().cast()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: getenv returns a NUL-terminated string.
    let len = unsafe { libc::strlen(p) };
    // SAFETY: `len` bytes are readable at `p`.
    Some(unsafe { core::slice::from_raw_parts(p.cast::<u8>(), len) })
}

fn warn(name: &str, value: &[u8], expected: &str, default: &str) {
    let mut m = crate::report::Line::new();
    m.push("poolmalloc: ignoring ").push(name).push("=").push_bytes(value);
    m.push(" (expected ").push(expected).push("); using ").push(default).push("\n");
    os::write_stderr(m.as_bytes());
}

fn parse_bool(v: &[u8]) -> Option<bool> {
    match v {
        b"1" | b"true" | b"yes" | b"on" => Some(true),
        b"0" | b"false" | b"no" | b"off" | b"" => Some(false),
        _ => None,
    }
}

fn parse_i64(v: &[u8]) -> Option<i64> {
    let (neg, digits) = match v.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, v),
    };
    if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits.iter().fold(0i64, |a, &d| a * 10 + (d - b'0') as i64);
    Some(if neg { -n } else { n })
}

/// Whether the heap profiler samples from the start (`POOLMALLOC_PROF`).
pub fn prof() -> bool {
    PROF.load(Relaxed)
}

/// The heap profiler's mean sampling interval in bytes.
pub fn prof_sample() -> usize {
    PROF_SAMPLE.load(Relaxed) as usize
}

/// The heap profile's path prefix (`POOLMALLOC_PROF_PREFIX`), as the
/// environment held it at start-up.
pub(crate) fn prof_prefix() -> &'static [u8] {
    let p = PROF_PREFIX.load(Relaxed);
    if p.is_null() {
        return b"poolmalloc-prof";
    }
    // SAFETY: set once from getenv's string, which lives as long as the
    // environment; the profiler copies it at set-up.
    unsafe { core::slice::from_raw_parts(p, PROF_PREFIX_LEN.load(Relaxed)) }
}

pub use crate::os::Thp;

/// The THP mode for new mappings.
#[inline]
pub fn thp() -> Thp {
    os::thp()
}

/// Why [`set`] or [`get`] refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OptionError {
    /// No option has that name.
    Unknown,
    /// The value does not parse for that option (see its entry in
    /// [`TABLE`]).
    BadValue,
    /// The option is fixed once poolmalloc has started (for example the
    /// threading mode: pools already made depend on it).
    Fixed,
}

impl core::fmt::Display for OptionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            OptionError::Unknown => "no such option",
            OptionError::BadValue => "bad value for this option",
            OptionError::Fixed => "this option cannot change at run time",
        })
    }
}

impl std::error::Error for OptionError {}

/// An option's value now, as [`get`] returns it; its `Display` is the text
/// that [`set`] and the environment take.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OptionValue {
    /// A number (milliseconds, bytes, blocks).
    Number(i64),
    /// On (`1`) or off (`0`).
    Flag(bool),
    /// One of the option's words (`perthread`, `abort`, ...).
    Word(&'static str),
    /// A path prefix, as the environment held it.
    Bytes(&'static [u8]),
}

impl core::fmt::Display for OptionValue {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            OptionValue::Number(n) => write!(f, "{n}"),
            OptionValue::Flag(b) => f.write_str(if b { "1" } else { "0" }),
            OptionValue::Word(w) => f.write_str(w),
            OptionValue::Bytes(b) => {
                for chunk in b.utf8_chunks() {
                    f.write_str(chunk.valid())?;
                    if !chunk.invalid().is_empty() {
                        f.write_str("\u{fffd}")?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// The entry of `name` in [`TABLE`]: its variable name, or that name's
/// lower-case suffix (`purge_delay` for `POOLMALLOC_PURGE_DELAY`).
fn find(name: &str) -> Option<&'static OptionDoc> {
    TABLE.iter().find(|o| {
        o.name == name || {
            let suffix = &o.name["POOLMALLOC_".len()..];
            suffix.len() == name.len() && suffix.bytes().zip(name.bytes()).all(|(a, b)| a.to_ascii_lowercase() == b)
        }
    })
}

/// Sets option `name` (see [`find`]) to `v`, the text the environment
/// would hold. Stores nothing unless `v` parses.
fn apply(name: &str, v: &[u8]) -> Result<(), OptionError> {
    let bad = OptionError::BadValue;
    let flag = |cell: &AtomicBool| parse_bool(v).map(|b| cell.store(b, Relaxed)).ok_or(bad);
    match name {
        "POOLMALLOC_THREADS" => match v {
            b"locked" => LOCKED.store(true, Relaxed),
            b"perthread" | b"" => LOCKED.store(false, Relaxed),
            _ => return Err(bad),
        },
        "POOLMALLOC_PURGE_DELAY" => PURGE_DELAY.store(parse_i64(v).ok_or(bad)?.max(-1), Relaxed),
        "POOLMALLOC_SHOW_STATS" => flag(&SHOW_STATS)?,
        "POOLMALLOC_VERBOSE" => flag(&VERBOSE)?,
        "POOLMALLOC_DEBUG" => flag(&DEBUG)?,
        "POOLMALLOC_DEBUG_QUARANTINE" => match parse_i64(v) {
            Some(n) if n >= 0 => set_quarantine(n as usize),
            _ => return Err(bad),
        },
        // The `secure` feature cannot be switched off from outside.
        "POOLMALLOC_SECURE" => SECURE.store(parse_bool(v).ok_or(bad)? || cfg!(feature = "secure"), Relaxed),
        "POOLMALLOC_PROF" => flag(&PROF)?,
        "POOLMALLOC_PROF_SAMPLE" => match parse_i64(v) {
            Some(n) if n > 0 => PROF_SAMPLE.store(n, Relaxed),
            _ => return Err(bad),
        },
        "POOLMALLOC_PROF_PREFIX" => {
            if v.is_empty() || v.len() > 200 {
                return Err(bad);
            }
            PROF_PREFIX_LEN.store(v.len(), Relaxed);
            PROF_PREFIX.store(v.as_ptr().cast_mut(), Relaxed);
        }
        "POOLMALLOC_INVALID_FREE" => set_invalid_free(match v {
            b"abort" => InvalidFree::Abort,
            b"warn" => InvalidFree::Warn,
            b"ignore" => InvalidFree::Ignore,
            _ => return Err(bad),
        }),
        "POOLMALLOC_THP" => os::set_thp(match v {
            b"never" => Thp::Never,
            b"default" => Thp::Default,
            b"always" => Thp::Always,
            _ => return Err(bad),
        }),
        _ => return Err(OptionError::Unknown),
    }
    Ok(())
}

/// Changes an option while the program runs. `name` is the variable name
/// (`POOLMALLOC_PURGE_DELAY`) or its lower-case suffix (`purge_delay`);
/// `value` is what the environment variable would hold. Only options whose
/// [`OptionDoc::runtime`] is true can change; a refused call changes
/// nothing. The environment is read first if it was not yet, so the first
/// allocation does not undo the change.
pub fn set(name: &str, value: &str) -> Result<(), OptionError> {
    let o = find(name).ok_or(OptionError::Unknown)?;
    init();
    if !o.runtime {
        return Err(OptionError::Fixed);
    }
    apply(o.name, value.as_bytes())
}

/// The value an option has now; `name` as for [`set`].
pub fn get(name: &str) -> Result<OptionValue, OptionError> {
    let o = find(name).ok_or(OptionError::Unknown)?;
    init();
    Ok(match o.name {
        "POOLMALLOC_THREADS" => OptionValue::Word(if locked_mode() { "locked" } else { "perthread" }),
        "POOLMALLOC_PURGE_DELAY" => OptionValue::Number(purge_delay_ms()),
        "POOLMALLOC_SHOW_STATS" => OptionValue::Flag(show_stats()),
        "POOLMALLOC_VERBOSE" => OptionValue::Flag(verbose()),
        "POOLMALLOC_DEBUG" => OptionValue::Flag(debug()),
        "POOLMALLOC_DEBUG_QUARANTINE" => OptionValue::Number(quarantine() as i64),
        "POOLMALLOC_SECURE" => OptionValue::Flag(secure()),
        "POOLMALLOC_PROF" => OptionValue::Flag(prof()),
        "POOLMALLOC_PROF_SAMPLE" => OptionValue::Number(prof_sample() as i64),
        "POOLMALLOC_PROF_PREFIX" => OptionValue::Bytes(prof_prefix()),
        "POOLMALLOC_INVALID_FREE" => OptionValue::Word(match invalid_free() {
            InvalidFree::Abort => "abort",
            InvalidFree::Warn => "warn",
            InvalidFree::Ignore => "ignore",
        }),
        "POOLMALLOC_THP" => OptionValue::Word(match thp() {
            Thp::Never => "never",
            Thp::Default => "default",
            Thp::Always => "always",
        }),
        _ => return Err(OptionError::Unknown),
    })
}

/// Whether the environment was read: 0 not yet, 1 being read, 2 read.
static ENV_READ: AtomicU8 = AtomicU8::new(0);

/// Reads every option from the environment, once: the first allocation of
/// the process calls this, and so do [`set`] and [`get`], which may come
/// first. A second caller waits until the first is done (reading the
/// environment neither allocates nor blocks).
pub(crate) fn init() {
    if ENV_READ.load(Acquire) == 2 {
        return;
    }
    if ENV_READ.compare_exchange(0, 1, Acquire, Acquire).is_err() {
        while ENV_READ.load(Acquire) != 2 {
            core::hint::spin_loop();
        }
        return;
    }
    read_env();
    ENV_READ.store(2, Release);
}

fn read_env() {
    for o in TABLE {
        let mut name = [0u8; 40];
        name[..o.name.len()].copy_from_slice(o.name.as_bytes());
        if let Some(v) = getenv(&name[..=o.name.len()]) {
            if apply(o.name, v).is_err() {
                warn(o.name, v, o.expected, o.default);
            }
        }
    }
    if verbose() {
        let mut m = crate::report::Line::new();
        m.push("poolmalloc ").push(crate::VERSION).push(": threads=");
        m.push(if locked_mode() { "locked" } else { "perthread" });
        m.push(" purge_delay=").push_i64(purge_delay_ms()).push("ms show_stats=");
        m.push(if show_stats() { "1" } else { "0" });
        m.push(" debug=").push(if debug() { "1" } else { "0" });
        m.push(" secure=").push(if secure() { "1" } else { "0" });
        m.push(" prof=").push(if prof() { "1" } else { "0" }).push("\n");
        os::write_stderr(m.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_parse_strictly() {
        assert_eq!(parse_i64(b"10"), Some(10));
        assert_eq!(parse_i64(b"-1"), Some(-1));
        assert_eq!(parse_i64(b""), None);
        assert_eq!(parse_i64(b"1x"), None);
        assert_eq!(parse_i64(b"99999999999999999999"), None);
    }

    #[test]
    fn table_names_are_prefixed_and_unique() {
        for (i, o) in TABLE.iter().enumerate() {
            assert!(o.name.starts_with("POOLMALLOC_"));
            assert!(TABLE[i + 1..].iter().all(|p| p.name != o.name));
        }
    }
}
