//! Heap profiles: `poolmalloc prof FILE...` and `poolmalloc run --profile
//! PREFIX`. The allocator (with `POOLMALLOC_PROF=1`) writes a raw profile
//! at exit, `PREFIX.<pid>.heap` (see [`raw`]); a process with a second
//! copy of the allocator (a Rust program whose `#[global_allocator]` is
//! poolmalloc, with libpoolmalloc.so preloaded) writes a second one,
//! `PREFIX.<pid>.2.heap`, and so on up to `.9`. This module symbolises
//! one or more of them, merges them (see [`merge`]) and writes:
//!
//! * `PREFIX.pb.gz`: pprof's format, all four figures per stack;
//! * `PREFIX.svg`: a flame graph of the bytes still live at exit;
//! * `PREFIX.alloc.svg`: a flame graph of all bytes allocated;
//!
//! and prints on stderr a table of allocation sites (and, asked, the live
//! allocations by stack).

mod merge;
mod pprof;
mod raw;
mod report;
mod symbolize;

use crate::cli::ProfArgs;
use crate::proc::Exit;
use anyhow::{anyhow, bail, Context, Result};
use report::View;
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `poolmalloc prof FILE...`.
pub fn main(args: &ProfArgs) -> Result<ExitCode> {
    let Some(first) = args.files.first() else { bail!("no raw profile given") };
    for (i, file) in args.files.iter().enumerate() {
        if args.files[..i].iter().any(|earlier| same_file(earlier, file)) {
            bail!("`{}` is given twice: its counts would be added twice", file.display());
        }
    }
    let prefix = args.out.clone().unwrap_or_else(|| default_prefix(first));
    convert(&args.files, &prefix, args.top, args.leaks)?;
    Ok(ExitCode::SUCCESS)
}

/// Whether two paths name the same file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// FILE less a trailing `.heap`.
fn default_prefix(file: &Path) -> PathBuf {
    match file.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".heap")) {
        Some(stem) if !stem.is_empty() => file.with_file_name(stem),
        _ => file.to_path_buf(),
    }
}

/// `PREFIX` with `suffix` appended to its last component.
fn suffixed(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = OsString::from(prefix);
    s.push(suffix);
    PathBuf::from(s)
}

/// The files written from a raw profile.
struct Outputs {
    pprof: PathBuf,
    inuse_svg: PathBuf,
    alloc_svg: PathBuf,
}

impl Outputs {
    fn new(prefix: &Path) -> Outputs {
        Outputs {
            pprof: suffixed(prefix, ".pb.gz"),
            inuse_svg: suffixed(prefix, ".svg"),
            alloc_svg: suffixed(prefix, ".alloc.svg"),
        }
    }
}

fn write(path: &Path, data: &[u8]) -> Result<()> {
    fs::write(path, data).with_context(|| format!("cannot write `{}`", path.display()))
}

/// A path's last component, for titles.
fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into())
}

/// Converts the raw profiles `raw_paths` (one, or several to merge) into
/// `PREFIX.pb.gz`, `PREFIX.svg` and `PREFIX.alloc.svg`, and prints the
/// table (and the leaks) on stderr.
pub fn convert(raw_paths: &[PathBuf], prefix: &Path, top: usize, leaks: bool) -> Result<()> {
    // Every file is read and parsed before any is symbolised, which is slow.
    let mut raws = Vec::with_capacity(raw_paths.len());
    let mut written: Option<SystemTime> = None;
    for path in raw_paths {
        let data = fs::read(path).with_context(|| format!("cannot read `{}`", path.display()))?;
        let raw = raw::parse(&data).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        if let Ok(time) = fs::metadata(path).and_then(|m| m.modified()) {
            written = written.max(Some(time));
        }
        raws.push(raw);
    }
    let Some(first) = raws.first() else { bail!("no raw profile given") };
    let time_nanos =
        written.and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(0));
    let names: Vec<String> = raw_paths.iter().map(|p| file_name(p)).collect();
    let (subtitle, comment) = if raws.len() == 1 {
        match first.pid {
            Some(pid) => (format!("{}, pid {pid}", names[0]), format!("poolmalloc heap profile of pid {pid}")),
            None => (names[0].clone(), "poolmalloc heap profile".to_string()),
        }
    } else {
        let list: Vec<String> = names
            .iter()
            .zip(&raws)
            .map(|(name, raw)| match raw.pid {
                Some(pid) => format!("{name} (pid {pid})"),
                None => name.clone(),
            })
            .collect();
        let list = format!("{} raw profiles merged: {}", raws.len(), list.join(", "));
        (list.clone(), format!("poolmalloc heap profile, {list}"))
    };
    if raws.iter().any(|r| r.interval != first.interval) {
        let intervals: Vec<String> =
            names.iter().zip(&raws).map(|(name, raw)| format!("{name}: {}", report::bytes(raw.interval))).collect();
        eprintln!(
            "poolmalloc: warning: the raw profiles were sampled at different intervals ({}); their estimates \
             are added as they are, and the interval shown (and pprof's period) is the first one's",
            intervals.join(", ")
        );
    }

    let mut files = symbolize::Files::default();
    let parts: Vec<_> = raws
        .into_iter()
        .map(|raw| {
            let sym = symbolize::symbolize_with(&raw, &mut files);
            (raw, sym)
        })
        .collect();
    let merged = merge::merge(parts);
    let (sym, interval, count) = (&merged.sym, merged.interval, merged.files);
    for (path, why) in &sym.unreadable {
        eprintln!("poolmalloc: warning: cannot read `{path}`, so its frames are shown as offsets: {why}");
    }

    let out = Outputs::new(prefix);
    write(&out.pprof, &pprof::encode_gz(&pprof::build(&merged.maps, sym, interval, &comment, time_nanos)))?;

    let mut notes = Vec::new();
    for (view, path) in [(View::Inuse, &out.inuse_svg), (View::Alloc, &out.alloc_svg)] {
        let svg = report::flame_graph(sym, view, interval, count, &subtitle)
            .with_context(|| format!("cannot draw `{}`", path.display()))?;
        let svg = match svg {
            Some(svg) => svg,
            None => {
                let message = match view {
                    View::Inuse => "No sampled allocation was still live at exit: nothing to draw.",
                    View::Alloc => "No allocation was sampled: nothing to draw.",
                };
                notes.push(format!("{} has no graph, only the message: {message}", path.display()));
                report::empty_graph(view, interval, count, message)
            }
        };
        write(path, &svg)?;
    }

    eprint!("{}", report::table(sym, interval, count, top));
    if leaks {
        eprint!("{}", report::leaks(sym, top));
    }
    for note in notes {
        eprintln!("poolmalloc: note: {note}");
    }
    eprintln!(
        "poolmalloc: wrote {} (pprof), {} (live bytes at exit), {} (allocated bytes)",
        out.pprof.display(),
        out.inuse_svg.display(),
        out.alloc_svg.display()
    );
    Ok(())
}

/// Whether `path` can be written, without changing what is there: an
/// existing file is opened for appending; a new one is created and removed.
fn check_writable(path: &Path) -> std::io::Result<()> {
    if path.exists() {
        fs::OpenOptions::new().append(true).open(path).map(drop)
    } else {
        fs::OpenOptions::new().write(true).create_new(true).open(path)?;
        fs::remove_file(path)
    }
}

/// The most raw profiles one process writes, one per copy of the allocator
/// in it: `PREFIX.<pid>.heap`, then `PREFIX.<pid>.2.heap` up to
/// `PREFIX.<pid>.9.heap` (the library creates each with `O_EXCL`, so a
/// copy takes the first name that is free).
const MAX_COPIES: u32 = 9;

/// The raw profile that copy `copy` (1 for the first) of the allocator in
/// process `pid` writes.
fn raw_path(prefix: &Path, pid: u64, copy: u32) -> PathBuf {
    if copy <= 1 {
        suffixed(prefix, &format!(".{pid}.heap"))
    } else {
        suffixed(prefix, &format!(".{pid}.{copy}.heap"))
    }
}

/// A raw profile found next to the prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
struct HeapFile {
    path: PathBuf,
    pid: u64,
    /// 1 for `<pid>.heap`, k for `<pid>.<k>.heap`.
    copy: u32,
    modified: Option<SystemTime>,
}

/// `<pid>.heap` is (pid, 1); `<pid>.<k>.heap` with k at least 2 is (pid, k).
fn parse_heap_name(rest: &str) -> Option<(u64, u32)> {
    let rest = rest.strip_suffix(".heap")?;
    let number = |s: &str| (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then_some(());
    let (pid, copy) = match rest.split_once('.') {
        Some((pid, copy)) => {
            number(copy)?;
            (pid, copy.parse::<u32>().ok().filter(|&k| k >= 2)?)
        }
        None => (rest, 1),
    };
    number(pid)?;
    Some((pid.parse().ok()?, copy))
}

/// The raw profiles `PREFIX.<pid>.heap` and `PREFIX.<pid>.<k>.heap` that
/// exist, with their times.
fn heap_files(prefix: &Path) -> Vec<HeapFile> {
    let dir = match prefix.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Some(stem) = prefix.file_name().and_then(|n| n.to_str()) else { return Vec::new() };
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name();
            let (pid, copy) = parse_heap_name(name.to_str()?.strip_prefix(stem)?.strip_prefix('.')?)?;
            Some(HeapFile { path: e.path(), pid, copy, modified: e.metadata().and_then(|m| m.modified()).ok() })
        })
        .collect()
}

/// The time now as file times count it, in whole seconds: the kernel
/// stamps files from a clock that lags the precise one by up to a tick,
/// and some file systems keep whole seconds only, so a file written after
/// this moment never has an earlier time.
fn file_clock_now() -> SystemTime {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec that clock_gettime only writes.
    let secs = if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) } == 0 {
        u64::try_from(ts.tv_sec).unwrap_or(0)
    } else {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
    };
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// The raw profiles of process `pid` (`PREFIX.<pid>.heap`, then
/// `PREFIX.<pid>.<k>.heap`, k = 2..=9) that exist, as (fresh, stale):
/// a stale one is older than `started`, or was already there unchanged
/// before the run (`before`), so an earlier process with the same pid
/// wrote it.
fn own_files(
    prefix: &Path,
    pid: u64,
    started: SystemTime,
    before: &HashMap<PathBuf, Option<SystemTime>>,
) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let (mut fresh, mut stale) = (Vec::new(), Vec::new());
    for copy in 1..=MAX_COPIES {
        let path = raw_path(prefix, pid, copy);
        let Ok(meta) = fs::metadata(&path) else { continue };
        if !meta.is_file() {
            continue;
        }
        let modified = meta.modified().ok();
        if modified.is_some_and(|t| t < started) || before.get(&path) == Some(&modified) {
            stale.push(path);
        } else {
            fresh.push(path);
        }
    }
    (fresh, stale)
}

/// `poolmalloc run --profile PREFIX`: set up before the program runs,
/// converted after it exits.
pub struct RunProfile {
    /// The prefix made absolute (the program may change directory).
    prefix: PathBuf,
    /// Raw profiles already there, so that only new ones are listed.
    before: HashMap<PathBuf, Option<SystemTime>>,
    /// When the run started, as file times count it ([`file_clock_now`]).
    started: SystemTime,
    top: usize,
    leaks: bool,
}

impl RunProfile {
    /// Checks that `PREFIX.pb.gz` can be written, before anything runs.
    pub fn prepare(prefix: &Path, top: usize, leaks: bool) -> Result<RunProfile> {
        let prefix = std::path::absolute(prefix)
            .with_context(|| format!("cannot resolve the profile prefix `{}`", prefix.display()))?;
        let pprof = Outputs::new(&prefix).pprof;
        check_writable(&pprof).map_err(|e| anyhow!("cannot write the profile {}: {e}", pprof.display()))?;
        let started = file_clock_now();
        let before = heap_files(&prefix).into_iter().map(|f| (f.path, f.modified)).collect();
        Ok(RunProfile { prefix, before, started, top, leaks })
    }

    /// Turns the profiler on in the program's environment.
    pub fn set_env(&self, cmd: &mut Command, sample: Option<u64>) {
        cmd.env("POOLMALLOC_PROF", "1").env("POOLMALLOC_PROF_PREFIX", &self.prefix);
        if let Some(bytes) = sample {
            cmd.env("POOLMALLOC_PROF_SAMPLE", bytes.to_string());
        }
    }

    /// Converts the program's raw profiles after it exited (`pid` was its
    /// process), merged when it had more than one copy of the allocator,
    /// and lists the raw profiles of the processes it started. Reports
    /// problems on stderr; the exit status stays the program's.
    pub fn finish(&self, program: &str, pid: u32, exit: Exit, statically_linked: bool) {
        let pid = u64::from(pid);
        let (fresh, stale) = own_files(&self.prefix, pid, self.started, &self.before);
        // Those of other processes, new or rewritten in this run, by pid.
        let mut others: BTreeMap<u64, Vec<(u32, PathBuf)>> = BTreeMap::new();
        for f in heap_files(&self.prefix) {
            if f.pid != pid && self.before.get(&f.path) != Some(&f.modified) {
                others.entry(f.pid).or_default().push((f.copy, f.path));
            }
        }

        if fresh.is_empty() {
            let raw = raw_path(&self.prefix, pid, 1);
            let why = match exit {
                Exit::Signal(sig) => format!(
                    "`{program}` was killed by {} before it could write one at exit",
                    crate::proc::signal_name(sig)
                ),
                Exit::Code(_) if statically_linked => {
                    format!("`{program}` is statically linked, so libpoolmalloc.so was not loaded into it")
                }
                Exit::Code(_) => format!(
                    "`{program}` left without running its exit handlers (_exit, or exec of another program), \
                     or the preloaded library does not write profiles"
                ),
            };
            eprintln!("poolmalloc: no heap profile: {} was not written: {why}", raw.display());
        } else {
            let list = fresh.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
            if fresh.len() == 1 {
                eprintln!("poolmalloc: heap profile of `{program}` from {list}:");
            } else {
                eprintln!(
                    "poolmalloc: heap profile of `{program}` from {list} (one raw profile per copy of the \
                     allocator in the process), merged:"
                );
            }
            if let Err(e) = convert(&fresh, &self.prefix, self.top, self.leaks) {
                eprintln!("poolmalloc: error: {}", crate::error::one_line(&e));
            }
        }
        for path in stale {
            eprintln!(
                "poolmalloc: note: left out {}: it is older than this run, so an earlier process with the same \
                 pid wrote it",
                path.display()
            );
        }
        if !others.is_empty() {
            let files: usize = others.values().map(Vec::len).sum();
            eprintln!(
                "poolmalloc: note: {files} more raw heap profile(s), written by {} process(es) that `{program}` \
                 started; convert (and merge) each process's with `poolmalloc prof FILE...`:",
                others.len()
            );
            for mut paths in others.into_values() {
                paths.sort();
                let paths: Vec<String> = paths.iter().map(|(_, p)| p.display().to_string()).collect();
                eprintln!("  poolmalloc prof {}", paths.join(" "));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(default_prefix(Path::new("out/p.1234.heap")), Path::new("out/p.1234"));
        assert_eq!(default_prefix(Path::new("p.prof")), Path::new("p.prof"));
        assert_eq!(default_prefix(Path::new(".heap")), Path::new(".heap"));
        assert_eq!(suffixed(Path::new("/tmp/x"), ".alloc.svg"), Path::new("/tmp/x.alloc.svg"));
    }

    #[test]
    fn writability_is_checked_without_leaving_files() {
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("p.pb.gz");
        check_writable(&new).unwrap();
        assert!(!new.exists());
        fs::write(&new, b"old").unwrap();
        check_writable(&new).unwrap();
        assert_eq!(fs::read(&new).unwrap(), b"old");
        let err = check_writable(Path::new("/proc/nonexistent/x.pb.gz")).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn finds_raw_profiles_by_prefix() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "p.12.heap",
            "p.13.heap",
            "p.12.2.heap",
            "p.12.9.heap",
            "p.x.heap",
            "p.12.heap.bak",
            "q.14.heap",
            "p..heap",
            "p.12..heap",
            "p.12.1.heap",
            "p.12.x.heap",
            "p.12.2.3.heap",
        ] {
            fs::write(dir.path().join(name), b"").unwrap();
        }
        let mut found: Vec<(String, u64, u32)> = heap_files(&dir.path().join("p"))
            .into_iter()
            .map(|f| (f.path.file_name().unwrap().to_string_lossy().into_owned(), f.pid, f.copy))
            .collect();
        found.sort();
        let want = [("p.12.2.heap", 12, 2), ("p.12.9.heap", 12, 9), ("p.12.heap", 12, 1), ("p.13.heap", 13, 1)];
        assert_eq!(found, want.map(|(n, pid, copy)| (n.to_string(), pid, copy)));
        assert_eq!(raw_path(Path::new("/d/p"), 12, 1), Path::new("/d/p.12.heap"));
        assert_eq!(raw_path(Path::new("/d/p"), 12, 3), Path::new("/d/p.12.3.heap"));
    }

    #[test]
    fn own_files_leave_out_stale_ones() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("p");
        let started = file_clock_now();
        let write = |name: &str, age: Option<u64>| {
            let path = dir.path().join(name);
            let file = fs::File::create(&path).unwrap();
            if let Some(secs) = age {
                file.set_modified(SystemTime::now() - Duration::from_secs(secs)).unwrap();
            }
            path
        };
        let (first, second) = (write("p.7.heap", None), write("p.7.2.heap", None));
        // From an earlier process with pid 7: an hour old.
        let old = write("p.7.3.heap", Some(3600));
        // There, unchanged, before the run started (even if this second).
        let unchanged = write("p.7.4.heap", None);
        let before = HashMap::from([(unchanged.clone(), fs::metadata(&unchanged).unwrap().modified().ok())]);
        // Beyond the ninth copy, or another pid: not this process's.
        write("p.7.10.heap", None);
        write("p.70.heap", None);
        write("p.7.5.heap.tmp", None);
        let (fresh, stale) = own_files(&prefix, 7, started, &before);
        assert_eq!(fresh, [first, second]);
        assert_eq!(stale, [old, unchanged]);
        assert_eq!(own_files(&prefix, 8, started, &before), (vec![], vec![]));
        // The clock file times use is never ahead of them.
        let now = fs::metadata(write("now", None)).unwrap().modified().unwrap();
        assert!(file_clock_now() <= now);
    }
}
