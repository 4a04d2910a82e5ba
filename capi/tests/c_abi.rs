//! The C interface of `libpoolmalloc.so`, tested from C.
//!
//! Each program in `tests/c/` is compiled with the system C compiler and run
//! with the library preloaded (`LD_PRELOAD`); it checks one area of the C
//! allocation API against glibc's semantics, verifies that its allocation
//! functions really are poolmalloc's, and exits 0 only if every check
//! passed. A last test runs part of CPython's own test suite on poolmalloc.
//!
//! `cargo test` does not build a `cdylib` for the integration tests of its
//! package, so the first test to need the library builds it with
//! `cargo build --release -p poolmalloc-c` into this build's target
//! directory. Set `POOLMALLOC_TEST_LIB` to a built `libpoolmalloc.so` to test
//! that file instead. The C compiler is `$CC`, or `cc`; the Python
//! interpreter is `$POOLMALLOC_TEST_PYTHON`, or `python3` (the CPython test
//! is skipped, with a message, when it or its regression tests are missing).

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long one C program may run before it is killed and the test fails.
const TIMEOUT: Duration = Duration::from_secs(60);

/// How long the CPython test suite may run.
const PYTHON_TIMEOUT: Duration = Duration::from_secs(600);

/// The version in the statistics report's title.
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `<target>/tmp`, given to integration tests for their files.
fn scratch_dir() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

/// The library under test, built once per test run (see
/// `poolmalloc_reliability::cdylib`).
fn library() -> &'static Path {
    poolmalloc_reliability::cdylib::library(scratch_dir().parent().expect("CARGO_TARGET_TMPDIR has a parent"))
}

/// Where the compiled C programs go.
fn bin_dir() -> PathBuf {
    let dir = scratch_dir().join("c_abi");
    std::fs::create_dir_all(&dir).expect("create the C programs' directory");
    dir
}

/// Compiles `tests/c/<name>.c` (with `extra` arguments last) and returns the
/// executable. The build is written under a per-process name and renamed,
/// so concurrent test runs never see a half-written program.
/// Compiles `tests/c/<name>.c` once per test run (tests running in parallel
/// share the binary).
fn compile(name: &str, extra: &[&OsStr]) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, path)) = built.iter().find(|(n, _)| n == name) {
        return path.clone();
    }
    let path = compile_now(name, extra);
    built.push((name.to_string(), path.clone()));
    path
}

fn compile_now(name: &str, extra: &[&OsStr]) -> PathBuf {
    let src_dir = manifest_dir().join("tests").join("c");
    let out = bin_dir().join(name);
    let partial = bin_dir().join(format!("{name}.{}.partial", std::process::id()));
    let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    let result = Command::new(&cc)
        .args(["-std=gnu11", "-O2", "-g", "-pthread", "-Wall", "-Wextra"])
        .arg("-I")
        .arg(manifest_dir().join("include"))
        .arg("-I")
        .arg(&src_dir)
        .arg(src_dir.join(format!("{name}.c")))
        .arg("-o")
        .arg(&partial)
        .arg("-ldl")
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler {cc:?}: {e}"));
    assert!(result.status.success(), "compiling {name}.c failed:\n{}", String::from_utf8_lossy(&result.stderr));
    let warnings = String::from_utf8_lossy(&result.stderr);
    if !warnings.trim().is_empty() {
        eprintln!("warnings compiling {name}.c:\n{warnings}");
    }
    std::fs::rename(&partial, &out).expect("rename the compiled program");
    out
}

/// What a finished program did.
struct Outcome {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Outcome {
    fn describe(&self) -> String {
        format!("status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}", self.status, self.stdout, self.stderr)
    }

    #[track_caller]
    fn assert_success(&self, what: &str) {
        assert!(self.status.success(), "{what} failed\n{}", self.describe());
    }
}

/// Kills the whole process group of `child` (its children included).
fn kill_group(child: &Child) {
    let pgid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    // SAFETY: kill has no memory-safety preconditions. The group is still
    // there: the child is not reaped yet, or processes it started (members
    // of its group) still hold its output open.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
}

/// Runs `cmd` in its own process group with a time limit, collecting its
/// output. On timeout the group is killed and the test fails.
fn run(mut cmd: Command, timeout: Duration) -> Outcome {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    // SAFETY: the closure runs in the child between fork and exec and only
    // calls setrlimit, which is async-signal-safe. No core files for the
    // programs that abort on purpose.
    unsafe {
        cmd.pre_exec(|| {
            let none = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            libc::setrlimit(libc::RLIMIT_CORE, &none);
            Ok(())
        });
    }
    let what = format!("{cmd:?}");
    let start = Instant::now();
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let readers =
        [reader(child.stdout.take().expect("piped stdout")), reader(child.stderr.take().expect("piped stderr"))];
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the program") {
            break status;
        }
        if start.elapsed() > timeout {
            kill_group(&child);
            let status = child.wait().expect("wait for the killed program");
            let [stdout, stderr] = readers.map(|r| r.join().expect("output reader"));
            panic!(
                "{what} did not finish within {timeout:?} and was killed ({status})\n\
                 --- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
            );
        }
        thread::sleep(Duration::from_millis(10));
    };
    let elapsed = start.elapsed();
    // Processes the program started may still hold its output open.
    while !readers.iter().all(|r| r.is_finished()) {
        if start.elapsed() > timeout {
            kill_group(&child);
            let [stdout, stderr] = readers.map(|r| r.join().expect("output reader"));
            panic!(
                "{what} exited ({status}) but left processes running\n\
                 --- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
            );
        }
        thread::sleep(Duration::from_millis(10));
    }
    let [stdout, stderr] = readers.map(|r| r.join().expect("output reader"));
    Outcome { status, stdout, stderr, elapsed }
}

fn reader(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        // A read error ends the output early; what was read is still useful.
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// A command running `program` with the library preloaded and `env` set.
/// Options that the caller's environment might set are removed first.
fn preloaded(program: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(program);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("POOLMALLOC_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("LD_PRELOAD", library()).envs(env.iter().copied()).current_dir(bin_dir());
    cmd
}

/// Compiles and runs C program `name` with `env`; it must exit 0 with
/// nothing on stderr.
fn run_c(name: &str, env: &[(&str, &str)]) -> Outcome {
    let program = compile(name, &[]);
    let outcome = run(preloaded(&program, env), TIMEOUT);
    outcome.assert_success(&format!("{name} with {env:?}"));
    assert!(outcome.stderr.is_empty(), "{name} with {env:?} wrote to stderr\n{}", outcome.describe());
    println!("{name} {env:?}: ok in {:.2?}", outcome.elapsed);
    outcome
}

#[test]
fn too_large_sizes_fail_with_enomem() {
    run_c("too_large", &[]);
}

#[test]
fn calloc_zeroes_reused_memory() {
    run_c("calloc", &[]);
    run_c("calloc", &[("POOLMALLOC_PURGE_DELAY", "0")]);
    run_c("calloc", &[("POOLMALLOC_PURGE_DELAY", "-1")]);
}

#[test]
fn realloc_keeps_contents() {
    run_c("realloc", &[]);
}

#[test]
fn aligned_allocation_every_alignment() {
    run_c("memalign", &[]);
}

#[test]
fn malloc_usable_size_covers_the_request() {
    run_c("usable_size", &[]);
}

#[test]
fn free_sized_and_header_extras() {
    // Linked against the library through poolmalloc.h, and preloaded too.
    let link = link_flags();
    let link: Vec<&OsStr> = link.iter().map(|s| s.as_os_str()).collect();
    let program = compile("free_sized", &link);
    let outcome = run(preloaded(&program, &[]), TIMEOUT);
    outcome.assert_success("free_sized");
    assert!(outcome.stderr.is_empty(), "free_sized wrote to stderr\n{}", outcome.describe());
    println!("free_sized: ok in {:.2?}", outcome.elapsed);
}

/// Flags that link a test program against the library, as a C user would.
fn link_flags() -> Vec<std::ffi::OsString> {
    let dir = library().parent().expect("library directory");
    vec![
        OsStr::new("-L").to_owned(),
        dir.as_os_str().to_owned(),
        format!("-Wl,-rpath,{}", dir.display()).into(),
        OsStr::new("-lpoolmalloc").to_owned(),
    ]
}

#[test]
fn control_api_counts_sets_and_refuses() {
    let link = link_flags();
    let link: Vec<&OsStr> = link.iter().map(|s| s.as_os_str()).collect();
    let program = compile("control", &link);
    let outcome = run(preloaded(&program, &[]), TIMEOUT);
    outcome.assert_success("control");
    assert!(outcome.stderr.is_empty(), "control wrote to stderr\n{}", outcome.describe());
}

/// `capi/install.sh` installs the libraries, the header and the pkg-config
/// files; a C program built with `pkg-config --cflags --libs` against each
/// file links and runs on poolmalloc with nothing preloaded.
#[test]
fn installed_library_links_through_pkg_config() {
    let lib_dir = library().parent().expect("library directory");
    assert!(lib_dir.join("libpoolmalloc.a").is_file(), "the static library is built beside the shared one");
    let prefix = scratch_dir().join("install");
    let _ = std::fs::remove_dir_all(&prefix);
    let out = Command::new("sh")
        .arg(manifest_dir().join("install.sh"))
        .arg("--prefix")
        .arg(&prefix)
        .arg("--from")
        .arg(lib_dir)
        .output()
        .expect("run capi/install.sh");
    assert!(out.status.success(), "install.sh failed:\n{}", String::from_utf8_lossy(&out.stderr));
    for f in ["lib/libpoolmalloc.so", "lib/libpoolmalloc.a", "include/poolmalloc.h", "lib/pkgconfig/poolmalloc.pc"] {
        assert!(prefix.join(f).is_file(), "{f} not installed");
    }
    let pkg_path = prefix.join("lib").join("pkgconfig");
    for (pc, kind) in [("poolmalloc", "shared"), ("poolmalloc-static", "static")] {
        let flags = Command::new("pkg-config")
            .args(["--cflags", "--libs", pc])
            .env("PKG_CONFIG_PATH", &pkg_path)
            .output()
            .expect("pkg-config is needed (CI installs it)");
        assert!(flags.status.success(), "pkg-config {pc}: {}", String::from_utf8_lossy(&flags.stderr));
        let flags = String::from_utf8(flags.stdout).unwrap();
        let program = bin_dir().join(format!("installed-{kind}"));
        let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
        let built = Command::new(&cc)
            .args(["-std=gnu11", "-O2", "-Wall", "-Wextra", "-o"])
            .arg(&program)
            .arg(manifest_dir().join("tests").join("c").join("installed.c"))
            .args(flags.split_whitespace())
            .arg("-ldl")
            .output()
            .expect("run the C compiler");
        assert!(built.status.success(), "building against {pc}.pc failed:\n{}", String::from_utf8_lossy(&built.stderr));
        let mut cmd = Command::new(&program);
        // Cargo points LD_LIBRARY_PATH at the build's own library, which
        // would be found before the installed one.
        cmd.arg(kind).env_remove("LD_PRELOAD").env_remove("LD_LIBRARY_PATH");
        let outcome = run(cmd, TIMEOUT);
        outcome.assert_success(&format!("a program built against {pc}.pc"));
        assert!(outcome.stdout.contains(&format!("({kind})")), "{}", outcome.describe());
    }
}

#[test]
fn free_preserves_errno() {
    run_c("errno_free", &[]);
    run_c("errno_free", &[("POOLMALLOC_PURGE_DELAY", "0")]);
}

#[test]
fn threads_free_each_others_aligned_blocks() {
    run_c("threads", &[]);
}

#[test]
fn threads_that_first_allocate_in_the_last_tls_destructor_round_leave_no_heap_behind() {
    run_c("late_tls", &[]);
}

#[test]
fn threads_in_locked_mode() {
    let program = compile("threads", &[]);
    let env = [("POOLMALLOC_THREADS", "locked"), ("POOLMALLOC_VERBOSE", "1")];
    let outcome = run(preloaded(&program, &env), TIMEOUT);
    outcome.assert_success("threads in locked mode");
    let lines: Vec<&str> = outcome.stderr.lines().collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with(&format!("poolmalloc {VERSION}: threads=locked ")),
        "expected only the verbose start-up line saying threads=locked\n{}",
        outcome.describe()
    );
    println!("threads (locked): ok in {:.2?}", outcome.elapsed);
}

#[test]
fn medium_blocks_share_arenas_and_bad_frees_into_them_are_reported() {
    let program = compile("medium", &[]);
    let outcome = run(preloaded(&program, &[("POOLMALLOC_INVALID_FREE", "warn")]), TIMEOUT);
    outcome.assert_success("medium");
    assert!(outcome.stdout.contains("bad frees done"), "{}", outcome.describe());
    let addr = |label: &str| {
        let hex = outcome
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix(label).and_then(|r| r.strip_prefix(" 0x")))
            .unwrap_or_else(|| panic!("medium did not print its {label} address\n{}", outcome.describe()));
        usize::from_str_radix(hex.trim(), 16).expect("a hexadecimal address")
    };
    let lines: Vec<&str> = outcome.stderr.lines().collect();
    assert_eq!(lines.len(), 3, "expected three reports\n{}", outcome.describe());
    assert_eq!(lines[0], format!("poolmalloc: invalid free of {:#x} (not the start of a block)", addr("interior")));
    assert_eq!(lines[1], format!("poolmalloc: invalid free of {:#x} (not the start of a block)", addr("follower")));
    // The second free finds the block on its pool's free list ("double
    // free"), or its pool already given up ("block is not allocated").
    let double = format!("poolmalloc: invalid free of {:#x} (", addr("double"));
    assert!(
        lines[2] == format!("{double}double free)") || lines[2] == format!("{double}block is not allocated)"),
        "{}",
        outcome.describe()
    );
}

#[test]
fn malloc_zero_is_unique() {
    run_c("malloc_zero", &[]);
}

#[test]
fn fork_from_threaded_parent() {
    run_c("fork_threads", &[]);
}

/// The address the foreign-pointer program printed (`mapped 0x...`).
fn mapped_address(outcome: &Outcome) -> usize {
    let hex = outcome
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("mapped 0x"))
        .unwrap_or_else(|| panic!("foreign_free did not print its page\n{}", outcome.describe()));
    usize::from_str_radix(hex.trim(), 16).expect("a hexadecimal address")
}

fn invalid_free_line(addr: usize) -> String {
    format!("poolmalloc: invalid free of {addr:#x} (not allocated by poolmalloc)")
}

#[test]
fn foreign_pointer_aborts() {
    let program = compile("foreign_free", &[]);
    let outcome = run(preloaded(&program, &[]), TIMEOUT);
    assert_eq!(
        outcome.status.signal(),
        Some(libc::SIGABRT),
        "free of a foreign page must abort\n{}",
        outcome.describe()
    );
    let expected = format!("{}\n", invalid_free_line(mapped_address(&outcome)));
    assert_eq!(outcome.stderr, expected, "stderr must be exactly the report line");
    assert!(!outcome.stdout.contains("survived"), "the program went on after the invalid free");
}

#[test]
fn foreign_pointer_ignored_on_request() {
    let program = compile("foreign_free", &[]);
    let outcome = run(preloaded(&program, &[("POOLMALLOC_INVALID_FREE", "ignore")]), TIMEOUT);
    outcome.assert_success("foreign_free with POOLMALLOC_INVALID_FREE=ignore");
    assert!(outcome.stderr.is_empty(), "ignore must print nothing\n{}", outcome.describe());
    assert!(outcome.stdout.contains("survived"), "{}", outcome.describe());
}

#[test]
fn foreign_pointer_warned_on_request() {
    let program = compile("foreign_free", &[]);
    let outcome = run(preloaded(&program, &[("POOLMALLOC_INVALID_FREE", "warn")]), TIMEOUT);
    outcome.assert_success("foreign_free with POOLMALLOC_INVALID_FREE=warn");
    // The page, then a global and a stack address: three reports.
    let lines: Vec<&str> = outcome.stderr.lines().collect();
    assert_eq!(lines.len(), 3, "expected three reports\n{}", outcome.describe());
    assert_eq!(lines[0], invalid_free_line(mapped_address(&outcome)));
    assert!(lines[1..].iter().all(|l| l.starts_with("poolmalloc: invalid free of 0x")));
}

#[test]
fn bad_option_value_warns_and_keeps_default() {
    let program = compile("threads", &[]);
    let env = [("POOLMALLOC_THREADS", "bogus"), ("POOLMALLOC_VERBOSE", "1")];
    let outcome = run(preloaded(&program, &env), TIMEOUT);
    outcome.assert_success("threads with POOLMALLOC_THREADS=bogus");
    let lines: Vec<&str> = outcome.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "expected the warning and the start-up line\n{}", outcome.describe());
    assert!(
        lines[0].starts_with("poolmalloc: ignoring POOLMALLOC_THREADS=bogus (") && lines[0].contains(')'),
        "bad warning line: {:?}",
        lines[0]
    );
    assert!(
        lines[1].starts_with(&format!("poolmalloc {VERSION}: threads=perthread ")),
        "the default (perthread) must stay in effect: {:?}",
        lines[1]
    );
}

#[test]
fn every_bad_option_value_warns_once() {
    let program = compile("malloc_zero", &[]);
    let env = [
        ("POOLMALLOC_THREADS", "sometimes"),
        ("POOLMALLOC_PURGE_DELAY", "soon"),
        ("POOLMALLOC_SHOW_STATS", "maybe"),
        ("POOLMALLOC_VERBOSE", "loud"),
        ("POOLMALLOC_INVALID_FREE", "explode"),
    ];
    let outcome = run(preloaded(&program, &env), TIMEOUT);
    outcome.assert_success("malloc_zero with bad option values");
    let lines: Vec<&str> = outcome.stderr.lines().collect();
    assert_eq!(lines.len(), env.len(), "one warning per option\n{}", outcome.describe());
    for (name, value) in env {
        let prefix = format!("poolmalloc: ignoring {name}={value} (");
        assert_eq!(
            lines.iter().filter(|l| l.starts_with(&prefix)).count(),
            1,
            "expected one warning for {name}\n{}",
            outcome.describe()
        );
    }
}

#[test]
fn header_compiles_as_cxx() {
    let cxx = std::env::var_os("CXX").unwrap_or_else(|| "c++".into());
    let test = "#include <poolmalloc.h>\n\
                int main() { const char *v = pm_version(); (void)v; \
                void (*fs)(void *, size_t) = free_sized; (void)fs; return 0; }\n";
    let src = bin_dir().join(format!("header-{}.cc", std::process::id()));
    std::fs::write(&src, test).expect("write the C++ test");
    let result = Command::new(&cxx)
        .args(["-fsyntax-only", "-Wall", "-Wextra"])
        .arg("-I")
        .arg(manifest_dir().join("include"))
        .arg(&src)
        .output();
    std::fs::remove_file(&src).expect("remove the C++ test");
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("skipped: no C++ compiler ({cxx:?})");
        }
        Err(e) => panic!("cannot run {cxx:?}: {e}"),
        Ok(out) => assert!(
            out.status.success() && out.stderr.is_empty(),
            "poolmalloc.h does not compile cleanly as C++:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// CPython's regression tests most sensitive to the allocator.
const PYTHON_TESTS: &[&str] = &[
    "test_list",
    "test_dict",
    "test_set",
    "test_unicode",
    "test_bytes",
    "test_json",
    "test_re",
    "test_threading",
    "test_gc",
    "test_weakref",
];

/// Runs `python3 -c <code>` without the library; `None` if there is no
/// `python3`.
fn python_query(python: &OsStr, args: &[&str]) -> Option<String> {
    match Command::new(python).args(args).stdin(Stdio::null()).output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("cannot run {python:?}: {e}"),
        Ok(out) => {
            assert!(out.status.success(), "{python:?} {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
            Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        }
    }
}

/// CPython's test suite with `PYTHONMALLOC=malloc`, so that every object
/// allocation goes through poolmalloc's `malloc`.
///
/// The top-level interpreter prints poolmalloc's statistics at exit, which
/// proves that the library was loaded; it removes `POOLMALLOC_SHOW_STATS`
/// from its environment first, so that the worker processes and the
/// interpreters that the tests start (and whose stderr some tests compare
/// with an expected text) do not print it too.
#[test]
fn cpython_test_suite() {
    let interpreter = std::env::var_os("POOLMALLOC_TEST_PYTHON").unwrap_or_else(|| "python3".into());
    let Some(python) = python_query(&interpreter, &["-c", "import sys; print(sys.executable)"]) else {
        println!("skipped: {interpreter:?} not found");
        return;
    };
    // Distributions ship the regression tests separately (Debian:
    // libpython3.X-testsuite); without them there is nothing to run.
    let find = format!(
        "import importlib.util\n\
         def have(m):\n    \
             try:\n        return importlib.util.find_spec('test.' + m) is not None\n    \
             except ImportError:\n        return False\n\
         print(' '.join(m for m in {PYTHON_TESTS:?} if not have(m)))\n"
    );
    let missing = python_query(OsStr::new(&python), &["-c", &find]).unwrap_or_default();
    if !missing.is_empty() {
        println!("skipped: {python} lacks CPython's regression tests ({missing}); install them to run this test");
        return;
    }
    let mut args: Vec<&str> = vec![
        "-c",
        "import os, runpy; del os.environ['POOLMALLOC_SHOW_STATS']; \
         runpy.run_module('test', run_name='__main__', alter_sys=True)",
        "-j2",
    ];
    // test_import_from_another_thread requires that a plain `python -I`
    // start-up does not import threading; a site-packages .pth file that
    // does makes it fail with any allocator, so it is left out there.
    let preimported = python_query(OsStr::new(&python), &["-I", "-c", "import sys; print('threading' in sys.modules)"]);
    if preimported.as_deref() == Some("True") {
        println!("note: this Python imports threading at start-up; ignoring test_import_from_another_thread");
        args.extend(["-i", "test_import_from_another_thread"]);
    }
    args.extend(PYTHON_TESTS);

    let work = scratch_dir().join("cpython");
    std::fs::create_dir_all(&work).expect("create the CPython working directory");
    let mut cmd = preloaded(Path::new(&python), &[("PYTHONMALLOC", "malloc"), ("POOLMALLOC_SHOW_STATS", "1")]);
    cmd.args(&args).current_dir(&work).env_remove("PYTHONPATH").env_remove("PYTHONHOME");
    let outcome = run(cmd, PYTHON_TIMEOUT);
    println!("CPython tests: {:.1?}", outcome.elapsed);

    outcome.assert_success("python3 -m test");
    assert!(outcome.stdout.contains("Tests result: SUCCESS"), "no \"Tests result: SUCCESS\"\n{}", outcome.describe());
    let failures = outcome.stdout.lines().filter(|l| l.contains("failures=")).any(|l| !l.contains("failures=0"));
    assert!(!failures, "tests failed\n{}", outcome.describe());
    let title = format!("poolmalloc {VERSION} statistics");
    assert!(
        outcome.stderr.lines().any(|l| l.starts_with(&title)),
        "no statistics report on stderr: was libpoolmalloc.so loaded?\n{}",
        outcome.describe()
    );
    assert!(
        outcome.stderr.lines().any(|l| l.starts_with("Total mapped") && l.ends_with("(matches the parts)")),
        "the statistics report does not balance\n{}",
        outcome.describe()
    );
}

/// Runs one debug-mode fault and checks the abort and the first report line.
fn debug_fault(case: &str, check: &str, api: &str, extra_env: &[(&str, &str)]) {
    debug_fault_sized(case, "small", check, api, extra_env);
}

/// [`debug_fault`] on a block of a size kind: `small`, `medium` or `huge`.
fn debug_fault_sized(case: &str, kind: &str, check: &str, api: &str, extra_env: &[(&str, &str)]) {
    let program = compile("debug_faults", &[]);
    let mut env = vec![("POOLMALLOC_DEBUG", "1")];
    env.extend_from_slice(extra_env);
    let mut cmd = preloaded(&program, &env);
    cmd.args([case, kind]);
    let case = &format!("{case} ({kind})");
    let outcome = run(cmd, TIMEOUT);
    assert_eq!(outcome.status.signal(), Some(libc::SIGABRT), "{case} must abort\n{}", outcome.describe());
    let addr = outcome
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("block "))
        .unwrap_or_else(|| panic!("{case}: no block address printed\n{}", outcome.describe()));
    let expected = format!("poolmalloc: debug check failed: {check} in {api} of {addr}");
    assert_eq!(
        outcome.stderr.lines().next(),
        Some(expected.as_str()),
        "{case}: first report line\n{}",
        outcome.describe()
    );
    assert!(outcome.stderr.ends_with("poolmalloc: aborting\n"), "{case}\n{}", outcome.describe());
    assert!(!outcome.stdout.contains("survived"), "{case}\n{}", outcome.describe());
}

#[test]
fn debug_mode_catches_overflow_by_1_and_8() {
    debug_fault("overflow1", "overflow (trailing pad overwritten)", "free", &[]);
    debug_fault("overflow8", "overflow (trailing pad overwritten)", "free", &[]);
}

#[test]
fn debug_mode_catches_underflow() {
    debug_fault("underflow1", "underflow (leading pad overwritten)", "free", &[]);
}

#[test]
fn debug_mode_catches_double_free() {
    debug_fault("double", "double free", "free", &[]);
}

#[test]
fn debug_mode_catches_free_of_mmap_memory() {
    debug_fault("mmap", "pointer not allocated by poolmalloc", "free", &[]);
}

#[test]
fn debug_mode_catches_free_of_the_middle_of_a_block() {
    debug_fault("middle", "pointer into the middle of a block", "free", &[]);
}

#[test]
fn debug_mode_catches_free_sized_with_the_wrong_size() {
    debug_fault("free_sized", "sized free with a size different from the allocation", "free_sized", &[]);
}

#[test]
fn debug_mode_catches_write_after_free_in_quarantine() {
    debug_fault(
        "use_after_free",
        "write after free (quarantined block modified)",
        "free",
        &[("POOLMALLOC_DEBUG_QUARANTINE", "8")],
    );
}

#[test]
fn debug_mode_catches_overflow_and_underflow_by_1_and_32_of_every_size() {
    for kind in ["small", "medium", "huge"] {
        debug_fault_sized("overflow1", kind, "overflow (trailing pad overwritten)", "free", &[]);
        debug_fault_sized("overflow32", kind, "overflow (trailing pad overwritten)", "free", &[]);
        debug_fault_sized("underflow1", kind, "underflow (leading pad overwritten)", "free", &[]);
        debug_fault_sized("underflow32", kind, "underflow (header overwritten)", "free", &[]);
    }
}

#[test]
fn debug_mode_catches_writes_through_a_zero_size_block() {
    debug_fault("zero_write", "overflow (trailing pad overwritten)", "free", &[]);
}

#[test]
fn debug_mode_catches_interleaved_and_delayed_double_frees() {
    debug_fault("double_interleaved", "double free", "free", &[]);
    debug_fault("double_delayed", "double free", "free", &[("POOLMALLOC_DEBUG_QUARANTINE", "1000")]);
}

#[test]
fn debug_mode_catches_write_after_free_when_the_block_is_reused() {
    debug_fault("use_after_free_reuse", "write after free (freed block modified before reuse)", "malloc", &[]);
}

#[test]
fn debug_mode_passes_a_clean_program() {
    let program = compile("debug_faults", &[]);
    let mut cmd = preloaded(&program, &[("POOLMALLOC_DEBUG", "1"), ("POOLMALLOC_DEBUG_QUARANTINE", "16")]);
    cmd.arg("clean");
    run(cmd, TIMEOUT).assert_success("debug_faults clean");
}

/// Runs one free-list poisoning mode and checks that it ends in the
/// corrupted-free-list report and an abort, without the forged address ever
/// coming back from `malloc`.
fn poisoning_is_refused(mode: &str) {
    let program = compile("poison", &[]);
    let mut cmd = preloaded(&program, &[]);
    cmd.arg(mode);
    let outcome = run(cmd, TIMEOUT);
    assert!(outcome.stdout.contains("target 0x"), "{mode}: no target printed\n{}", outcome.describe());
    assert!(!outcome.stdout.contains("FORGED"), "{mode}: malloc returned the forged address\n{}", outcome.describe());
    assert!(!outcome.stdout.contains("survived"), "{mode}: the corruption went unnoticed\n{}", outcome.describe());
    assert_eq!(outcome.status.signal(), Some(libc::SIGABRT), "{mode} must abort\n{}", outcome.describe());
    let line = outcome.stderr.lines().next().unwrap_or("");
    assert!(
        line.starts_with("poolmalloc: corrupted free list in the pool at 0x") && line.contains(": link to 0x"),
        "{mode}: report line\n{}",
        outcome.describe()
    );
}

#[test]
fn a_forged_local_link_is_refused() {
    poisoning_is_refused("local");
}

#[test]
fn a_forged_link_to_a_live_block_is_refused() {
    poisoning_is_refused("live");
}

#[test]
fn a_forged_remote_link_is_refused() {
    poisoning_is_refused("remote");
}

/// Runs one case of `secure.c` in secure mode; it must abort with a first
/// report line that starts with `report` and names the printed block (when
/// `names_block`).
fn secure_fault(case: &str, report: &str, names_block: bool) {
    let program = compile("secure", &[]);
    let mut cmd = preloaded(&program, &[("POOLMALLOC_SECURE", "1")]);
    cmd.arg(case);
    let outcome = run(cmd, TIMEOUT);
    assert!(!outcome.stdout.contains("FORGED"), "{case}: malloc returned the forged address\n{}", outcome.describe());
    assert!(!outcome.stdout.contains("survived"), "{case}: not caught\n{}", outcome.describe());
    assert_eq!(outcome.status.signal(), Some(libc::SIGABRT), "{case} must abort\n{}", outcome.describe());
    let line = outcome.stderr.lines().next().unwrap_or("");
    assert!(line.starts_with(report), "{case}: report line\n{}", outcome.describe());
    if names_block {
        let addr = outcome
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("block "))
            .unwrap_or_else(|| panic!("{case}: no block printed\n{}", outcome.describe()));
        assert!(line.contains(&format!(" of {addr} ")), "{case}: the report names {addr}\n{}", outcome.describe());
    }
}

#[test]
fn secure_mode_catches_interleaved_and_delayed_double_frees() {
    secure_fault("double_interleaved", "poolmalloc: invalid free of 0x", true);
    secure_fault("double_delayed", "poolmalloc: invalid free of 0x", true);
}

#[test]
fn secure_mode_catches_a_free_near_the_start_of_a_block() {
    secure_fault("near_start", "poolmalloc: invalid free of 0x", true);
}

#[test]
fn secure_mode_zero_size_blocks_fault_when_used() {
    let program = compile("secure", &[]);
    for case in ["zero_read", "zero_write"] {
        let mut cmd = preloaded(&program, &[("POOLMALLOC_SECURE", "1")]);
        cmd.arg(case);
        let outcome = run(cmd, TIMEOUT);
        assert!(outcome.stdout.contains("block 0x"), "{case}\n{}", outcome.describe());
        assert!(!outcome.stdout.contains("survived"), "{case}: the access went through\n{}", outcome.describe());
        assert_eq!(outcome.status.signal(), Some(libc::SIGSEGV), "{case} must fault\n{}", outcome.describe());
    }
    secure_fault("zero_double", "poolmalloc: invalid free of 0x", true);
    let mut cmd = preloaded(&program, &[("POOLMALLOC_SECURE", "1")]);
    cmd.arg("zero_ok");
    run(cmd, TIMEOUT).assert_success("secure zero_ok");
    // The default mode: a zero-size block is an ordinary small block.
    let mut cmd = preloaded(&program, &[]);
    cmd.arg("zero_read");
    assert!(run(cmd, TIMEOUT).stdout.contains("survived"));
}

#[test]
fn secure_mode_refuses_forged_links_in_the_store() {
    secure_fault("poison_store", "poolmalloc: corrupted free list in the pool at 0x", false);
}

#[test]
fn secure_mode_defeats_local_and_remote_poisoning() {
    // The poisoning programs of the default mode: in secure mode the freed
    // blocks are held back and their links rewritten, so the forged address
    // never comes back; if a forged link is read, it is refused.
    let program = compile("poison", &[]);
    for mode in ["local", "live", "remote"] {
        let mut cmd = preloaded(&program, &[("POOLMALLOC_SECURE", "1")]);
        cmd.arg(mode);
        let outcome = run(cmd, TIMEOUT);
        assert!(
            !outcome.stdout.contains("FORGED"),
            "{mode}: malloc returned the forged address\n{}",
            outcome.describe()
        );
        let refused = outcome.status.signal() == Some(libc::SIGABRT)
            && outcome.stderr.starts_with("poolmalloc: corrupted free list");
        assert!(refused || outcome.status.success(), "{mode}: neither refused nor clean\n{}", outcome.describe());
    }
}

#[test]
fn secure_mode_does_not_hand_a_freed_block_out_next() {
    let program = compile("secure", &[]);
    let mut cmd = preloaded(&program, &[("POOLMALLOC_SECURE", "1")]);
    cmd.arg("reuse");
    let outcome = run(cmd, TIMEOUT);
    outcome.assert_success("secure reuse");
    let line = outcome
        .stdout
        .lines()
        .find(|l| l.starts_with("reuse "))
        .unwrap_or_else(|| panic!("no reuse line\n{}", outcome.describe()));
    let field = |name: &str| -> usize {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line:?}"))
    };
    println!("secure mode: {line}");
    assert_eq!(field("immediate"), 0, "a freed block was the next one handed out: {line}");
    assert!(field("median") >= 16, "freed blocks come back too soon: {line}");
    // The default mode, for contrast: last in, first out.
    let mut cmd = preloaded(&program, &[]);
    cmd.arg("reuse");
    let outcome = run(cmd, TIMEOUT);
    outcome.assert_success("default reuse");
    assert!(outcome.stdout.contains("reuse steps=20000 immediate=20000 median=1"), "{}", outcome.describe());
}

/// Builds `tests/plugin` (a cdylib with `PoolMalloc` as its global
/// allocator), with the `dlopen` feature or without, on its own (never with
/// the workspace, whose feature unification would change libpoolmalloc.so).
fn plugin(dlopen: bool) -> PathBuf {
    let variant = if dlopen { "gd" } else { "ie" };
    let features: &[&str] = if dlopen { &["--features", "dlopen"] } else { &[] };
    build_side_crate("plugin", &format!("plugin-{variant}"), features, "").join("release/libpoolmalloc_plugin_test.so")
}

/// Builds the crate in `tests/<name>` on its own, never with the workspace
/// (whose feature unification would change libpoolmalloc.so and every other
/// member), into a scratch target directory named `dir`, with `args` after
/// `cargo build --release` and `RUSTFLAGS` set to `rustflags`. Returns the
/// target directory.
fn build_side_crate(name: &str, dir: &str, args: &[&str], rustflags: &str) -> PathBuf {
    let target = scratch_dir().join(dir);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--release", "--quiet"])
        .args(args)
        .arg("--manifest-path")
        .arg(manifest_dir().join("tests").join(name).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .env("RUSTFLAGS", rustflags)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo to build tests/{name}: {e}"));
    assert!(out.status.success(), "building tests/{name} ({dir}) failed:\n{}", String::from_utf8_lossy(&out.stderr));
    target
}

/// Copies of a library with initial-exec TLS, which `dlopen_host` loads
/// until the static TLS block is full.
fn tls_fillers(count: usize) -> Vec<PathBuf> {
    let dir = bin_dir().join(format!("fillers.{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the fillers' directory");
    let first = dir.join("filler-0.so");
    let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    let out = Command::new(&cc)
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&first)
        .arg(manifest_dir().join("tests/c/tls_filler.c"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler {cc:?}: {e}"));
    assert!(out.status.success(), "compiling tls_filler.c failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let mut all = vec![first.clone()];
    for i in 1..count {
        let copy = dir.join(format!("filler-{i}.so"));
        std::fs::copy(&first, &copy).expect("copy the filler");
        all.push(copy);
    }
    all
}

#[test]
fn a_plugin_using_poolmalloc_loads_with_dlopen_when_static_tls_is_full() {
    // The host is not preloaded: its own threads use the C library's malloc
    // while it loads the plugin and calls into it from four threads.
    let host = compile("dlopen_host", &[]);
    let fillers = tls_fillers(400);
    let run_host = |plugin: &Path, fill: bool| {
        let mut cmd = Command::new(&host);
        cmd.arg(plugin).env_remove("LD_PRELOAD");
        if fill {
            cmd.args(&fillers);
        }
        run(cmd, TIMEOUT)
    };
    let gd = plugin(true);
    let ie = plugin(false);
    for (path, name) in [(&gd, "dlopen build"), (&ie, "default build")] {
        let o = run_host(path, false);
        o.assert_success(&format!("{name}, static TLS not full"));
    }
    // With the static TLS block full, the dlopen build still loads and works.
    let o = run_host(&gd, true);
    o.assert_success("dlopen build, static TLS full");
    assert!(o.stderr.contains("static TLS full after"), "{}", o.describe());
    // The default build (initial-exec TLS) is what fails there: the test
    // does exhaust the block.
    let o = run_host(&ie, true);
    assert_eq!(o.status.code(), Some(3), "the default build loaded with static TLS full\n{}", o.describe());
    assert!(o.stderr.contains("static TLS"), "{}", o.describe());
}

/// One stack of a raw heap profile: allocated and live bytes, frames.
struct ProfStack {
    alloc_bytes: f64,
    live_bytes: f64,
    frames: Vec<usize>,
}

/// Parses the stack lines of a raw heap profile (`PREFIX.<pid>.heap`).
fn read_profile(path: &Path) -> Vec<ProfStack> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("poolmalloc heap profile 1"), "{text}");
    assert!(text.contains("\nmaps\n"), "the profile ends with the memory map");
    lines
        .take_while(|l| *l != "maps")
        .filter_map(|l| l.strip_prefix("stack "))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            ProfStack {
                alloc_bytes: f[1].parse().unwrap(),
                live_bytes: f[3].parse().unwrap(),
                frames: f[4..].iter().map(|x| usize::from_str_radix(x, 16).unwrap()).collect(),
            }
        })
        .collect()
}

/// Allocated and live bytes per function of `profile.c`: a stack counts for
/// the function that its innermost frame inside one of them returns into
/// (the nearest function start below the frame; each function is shorter
/// than 256 bytes).
fn bytes_per_function(stacks: &[ProfStack], functions: &[(String, usize)]) -> Vec<(String, f64, f64)> {
    let mut out: Vec<(String, f64, f64)> = functions.iter().map(|(n, _)| (n.clone(), 0.0, 0.0)).collect();
    for s in stacks {
        let owner = s.frames.iter().find_map(|&pc| {
            // The function with the nearest start below `pc`.
            let (i, a) = functions.iter().enumerate().filter(|(_, f)| f.1 < pc).max_by_key(|(_, f)| f.1)?;
            (pc - a.1 < 256).then_some(i)
        });
        if let Some(i) = owner {
            out[i].1 += s.alloc_bytes;
            out[i].2 += s.live_bytes;
        }
    }
    out
}

fn function_addresses(stdout: &str) -> Vec<(String, usize)> {
    stdout
        .lines()
        .filter_map(|l| {
            let (name, addr) = l.split_once(' ')?;
            Some((name.to_string(), usize::from_str_radix(addr.strip_prefix("0x")?, 16).ok()?))
        })
        .collect()
}

fn check_profile(path: &Path, functions: &[(String, usize)]) {
    let stacks = read_profile(path);
    let per = bytes_per_function(&stacks, functions);
    let get = |name: &str| per.iter().find(|p| p.0 == name).map(|p| (p.1, p.2)).unwrap();
    let near = |got: f64, want: f64, what: &str| {
        assert!((got - want).abs() <= 0.2 * want, "{what}: {got:.0} bytes against {want:.0}; {per:?}");
    };
    // The top allocation site, and every estimate within 20 % of the truth.
    let (big, big_live) = get("allocates_50mb");
    assert!(per.iter().all(|p| p.1 <= big), "allocates_50mb is the top site: {per:?}");
    near(big, 50_000.0 * 1024.0, "allocates_50mb allocated");
    near(get("allocates_5mb").0, 5_000.0 * 1024.0, "allocates_5mb allocated");
    assert!(big_live < 0.01 * big, "allocates_50mb frees what it allocates: {per:?}");
    // The leak is the top live entry; the huge blocks are all sampled.
    let (leak, leak_live) = get("leaks_10mb");
    near(leak, 2_500.0 * 4096.0, "leaks_10mb allocated");
    near(leak_live, 2_500.0 * 4096.0, "leaks_10mb live");
    let (_, huge_live) = get("keeps_huge");
    near(huge_live, 4.0 * 3.0 * 1048576.0, "keeps_huge live");
    assert!(per.iter().all(|p| p.2 <= leak_live + huge_live), "{per:?}");
}

#[test]
fn heap_profile_names_the_allocating_functions_and_the_leak() {
    let program = compile("profile", &[OsStr::new("-fno-omit-frame-pointer"), OsStr::new("-O1")]);
    let dir = tempfile_dir("profile");
    let prefix = dir.join("p");
    let prefix_s = prefix.to_str().unwrap();
    let env = [("POOLMALLOC_PROF", "1"), ("POOLMALLOC_PROF_SAMPLE", "16384"), ("POOLMALLOC_PROF_PREFIX", prefix_s)];
    let outcome = run(preloaded(&program, &env), TIMEOUT);
    outcome.assert_success("profile");
    let functions = function_addresses(&outcome.stdout);
    assert_eq!(functions.len(), 4, "{}", outcome.describe());
    let files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "one profile: {files:?}");
    check_profile(&files[0], &functions);

    // A fork child continues into a file of its own, just as complete.
    for f in &files {
        std::fs::remove_file(f).unwrap();
    }
    let mut cmd = preloaded(&program, &env);
    cmd.arg("fork");
    let outcome = run(cmd, TIMEOUT);
    outcome.assert_success("profile fork");
    // A new run, new addresses (the program is position-independent).
    let functions = function_addresses(&outcome.stdout);
    let child: u32 = outcome.stdout.lines().find_map(|l| l.strip_prefix("child ")?.parse().ok()).unwrap();
    let child_file = dir.join(format!("p.{child}.heap"));
    let files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 2, "parent and child profiles: {files:?}");
    for f in &files {
        check_profile(f, &functions);
    }
    assert!(files.contains(&child_file));
    // The child draws its own sampling intervals: its samples are not a
    // copy of the parent's.
    let stacks = |f: &Path| {
        let mut v: Vec<String> = std::fs::read_to_string(f)
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("stack "))
            .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
            .collect();
        v.sort();
        v
    };
    let parent_file = files.iter().find(|f| **f != child_file).unwrap();
    assert_ne!(stacks(parent_file), stacks(&child_file), "the child sampled exactly what the parent did");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn heap_profile_to_an_unwritable_prefix_is_reported() {
    let program = compile("malloc_zero", &[]);
    let env = [("POOLMALLOC_PROF", "1"), ("POOLMALLOC_PROF_PREFIX", "/proc/no/such/dir/p")];
    let outcome = run(preloaded(&program, &env), TIMEOUT);
    outcome.assert_success("malloc_zero, profiled");
    assert!(
        outcome.stderr.starts_with("poolmalloc: cannot write the heap profile /proc/no/such/dir/p."),
        "{}",
        outcome.describe()
    );
}

/// A fresh directory under the scratch directory.
fn tempfile_dir(name: &str) -> PathBuf {
    let d = scratch_dir().join(format!("{name}.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Builds `tests/override` (a Rust program whose C `malloc` is poolmalloc
/// through the `override` feature) as a static binary for `target`, on its
/// own (never with the workspace: feature unification would turn
/// `override` on for libpoolmalloc.so too).
fn override_program(target: &str, rustflags: &str) -> PathBuf {
    build_side_crate("override", &format!("override-{target}"), &["--target", target], rustflags)
        .join(target)
        .join("release/poolmalloc-override-test")
}

/// Whether an ELF file has a `PT_INTERP` program header (a dynamic loader
/// to run it), read with the `object` crate.
fn has_interpreter(elf: &[u8]) -> bool {
    use object::read::elf::{ElfFile64, ProgramHeader as _};
    let file = ElfFile64::<object::Endianness>::parse(elf).expect("an ELF64 file");
    file.elf_program_headers().iter().any(|ph| ph.p_type(file.endian()) == object::elf::PT_INTERP)
}

/// The `override` feature makes poolmalloc the C `malloc` of a statically
/// linked Rust program: glibc with `crt-static` always, and musl where its
/// standard library is installed (`rustup target add
/// x86_64-unknown-linux-musl`; CI installs it when the network allows).
/// The program checks with poolmalloc's statistics that C calls, the C
/// library's own allocations and Rust's `System` allocator all land in it.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[test]
fn override_feature_makes_poolmalloc_the_c_malloc_of_static_binaries() {
    let musl = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l.trim() == "x86_64-unknown-linux-musl"));
    let mut targets = vec![("x86_64-unknown-linux-gnu", "-C target-feature=+crt-static")];
    if musl {
        targets.push(("x86_64-unknown-linux-musl", ""));
    } else {
        eprintln!("skipping the musl build: the x86_64-unknown-linux-musl standard library is not installed");
    }
    for (target, flags) in targets {
        let program = override_program(target, flags);
        let bytes = std::fs::read(&program).expect("read the program");
        assert!(!has_interpreter(&bytes), "{target}: the program asks for a dynamic loader, so it is not static");
        let mut cmd = Command::new(&program);
        cmd.env_remove("LD_PRELOAD");
        let outcome = run(cmd, TIMEOUT);
        outcome.assert_success(&format!("the override program ({target})"));
        assert!(outcome.stdout.contains("all served by poolmalloc"), "{target}: {}", outcome.describe());
    }
}

/// The heap profiler on a Rust program built with frame pointers
/// (`tests/profile-rust`, `PoolMalloc` as its global allocator, profiling
/// started with `profile::start()` and written with `profile::dump`): the
/// same checks as for `profile.c`, on the stacks the frame-pointer walk
/// recorded through Rust frames.
#[test]
fn heap_profile_of_a_rust_program_with_frame_pointers_names_its_functions() {
    let dir = build_side_crate("profile-rust", "profile-rust", &[], "-C force-frame-pointers=yes");
    let profile = dir.join("p.heap");
    let _ = std::fs::remove_file(&profile);
    let mut cmd = Command::new(dir.join("release/poolmalloc-profile-rust-test"));
    cmd.arg(&profile).env("POOLMALLOC_PROF_SAMPLE", "16384").env_remove("LD_PRELOAD").env_remove("POOLMALLOC_PROF");
    let outcome = run(cmd, TIMEOUT);
    outcome.assert_success("profile-rust");
    let functions = function_addresses(&outcome.stdout);
    assert_eq!(functions.len(), 4, "{}", outcome.describe());
    check_profile(&profile, &functions);
}
