//! `libpoolmalloc.so` under Valgrind's memcheck, as the allocator that runs.
//!
//! `tests/c/memcheck.c` is compiled with `$CC` (or `cc`) and run as
//!
//! ```text
//! LD_PRELOAD=libpoolmalloc.so valgrind --tool=memcheck --error-exitcode=99 --trace-children=no \
//!     --soname-synonyms=somalloc=nouserintercepts --log-file=<file> memcheck
//! ```
//!
//! The program exercises `malloc`, `calloc`, `realloc`, `free`,
//! `posix_memalign`, `aligned_alloc` and `malloc_usable_size` over small
//! sizes, every size-class boundary, large blocks (above the 32 KiB largest
//! class, up to 8 MiB), realloc growth and shrinking, aligned requests, and
//! two threads that free each other's blocks, and checks every result
//! itself. The test asserts that the program exits 0, that it ran on
//! poolmalloc, and that memcheck's `ERROR SUMMARY` counts 0 errors.
//!
//! # Which allocator runs
//!
//! By default memcheck replaces the allocation functions of *every* shared
//! object that exports them, `libpoolmalloc.so` included: under a plain
//! `valgrind` command poolmalloc's code never runs (`malloc_usable_size` of a
//! 1-byte block is 1, memcheck's answer, instead of poolmalloc's 16). The
//! option `--soname-synonyms=somalloc=nouserintercepts` limits the
//! replacement to the system libraries (`libc.so*` and the C++ runtimes),
//! whose functions are never called because the dynamic linker binds the
//! preloaded library's. (`somalloc=*poolmalloc*` happens to have the same
//! effect today only because the library has no `DT_SONAME` for the pattern
//! to match; `somalloc=NONE` matches objects without a soname and so
//! replaces poolmalloc.) Two checks confirm the choice on every run: the
//! program reports `allocator: poolmalloc` only when `pm_version` resolves,
//! the `malloc` it calls is defined in the same library, and that `malloc`
//! rounds a 1-byte request up to 16 (symbol look-ups cannot see memcheck's
//! run-time redirection, the usable size can); and memcheck's own heap
//! summary must say `total heap usage: 0 allocs`.
//!
//! # What memcheck sees through poolmalloc
//!
//! When it does not replace the allocator, memcheck knows nothing of blocks:
//! poolmalloc's arenas and large spans are anonymous `mmap` memory, which it
//! treats as addressable and defined (zero-filled) from the moment it is
//! mapped until it is unmapped. Hence, with this library preloaded:
//!
//! * **Not seen**: overflows and underflows inside a pool (a write 24
//!   bytes past the end of a 16-byte block, a read 8 bytes before its
//!   start), or into the rest of a large span's mapping; use after free of
//!   a pool block, or of a large span that poolmalloc keeps mapped in its
//!   cache (a freed 100,000-byte block); reads of a block's contents
//!   before they were written (a fresh block is
//!   defined zero pages, a reused one holds its previous owner's defined
//!   bytes); leaks (the heap summary counts memcheck's allocator only:
//!   `in use at exit: 0 bytes in 0 blocks`, "no leaks are possible", with
//!   blocks never freed). Invalid and double frees are poolmalloc's own to
//!   report (it aborts with its message; memcheck counts nothing).
//! * **Seen**: accesses outside any mapping, such as a read past the end of
//!   a large span into unmapped space, or of a huge block after poolmalloc
//!   has unmapped it ("Invalid read ... not stack'd, malloc'd or (recently)
//!   free'd", then `SIGSEGV`); undefined bytes that memcheck does track (an
//!   uninitialised stack buffer, uninitialised registers) carried through a
//!   block to a branch or to a system call ("Conditional jump or move
//!   depends on uninitialised value(s)", "Syscall param write(buf) points
//!   to uninitialised byte(s)"); and everything poolmalloc's own code does,
//!   which is instrumented like any other code: its reads and writes of
//!   unmapped memory, its branches on uninitialised values, its system
//!   calls with undefined arguments. That last part is what this test is
//!   for.
//!
//! One interaction to know when reading memcheck's reports on other
//! programs: `free` reads the second word of the block it is given (the
//! mark that makes a double free suspect) and branches on it. If the
//! program stored bytes that memcheck considers undefined there (struct
//! padding copied from the stack, say), memcheck reports an uninitialised
//! conditional jump inside poolmalloc's `free`. The program here writes
//! every byte it allocates, so it cannot trigger that.
//!
//! Valgrind must be installed: without it the test fails and says so.

use std::fs::{self, File};
use std::io::ErrorKind;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long the program may run under memcheck (it takes a few seconds).
const TIMEOUT: Duration = Duration::from_secs(120);

/// The exit status memcheck gives a run with errors (`--error-exitcode`).
const ERROR_EXIT: i32 = 99;

/// Options that keep memcheck's allocator out of the way: see the module
/// docs.
const VALGRIND_ARGS: &[&str] =
    &["--tool=memcheck", "--error-exitcode=99", "--trace-children=no", "--soname-synonyms=somalloc=nouserintercepts"];

fn scratch_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("memcheck");
    fs::create_dir_all(&dir).expect("create the test's scratch directory");
    dir
}

fn library() -> &'static Path {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("CARGO_TARGET_TMPDIR has a parent");
    poolmalloc_reliability::cdylib::library(target)
}

/// Fails, with a message that says what to install, unless `valgrind` runs.
fn require_valgrind() -> String {
    match Command::new("valgrind").arg("--version").stdin(Stdio::null()).output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        Ok(out) => panic!("`valgrind --version` failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr)),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            panic!("valgrind is not installed (no `valgrind` on PATH); this test needs it: install valgrind")
        }
        Err(e) => panic!("cannot run valgrind: {e}"),
    }
}

/// Compiles `tests/c/memcheck.c` into the scratch directory.
fn compile() -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("c").join("memcheck.c");
    let capi = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("capi");
    let dir = scratch_dir();
    let out = dir.join("memcheck");
    let partial = dir.join(format!("memcheck.{}.partial", std::process::id()));
    let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    let result = Command::new(&cc)
        .args(["-std=gnu11", "-O2", "-g", "-pthread", "-Wall", "-Wextra"])
        .arg("-I")
        .arg(capi.join("tests").join("c"))
        .arg("-I")
        .arg(capi.join("include"))
        .arg(&src)
        .arg("-o")
        .arg(&partial)
        .arg("-ldl")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler {cc:?}: {e}"));
    assert!(
        result.status.success(),
        "compiling {} failed:\n{}",
        src.display(),
        String::from_utf8_lossy(&result.stderr)
    );
    let warnings = String::from_utf8_lossy(&result.stderr);
    if !warnings.trim().is_empty() {
        eprintln!("warnings compiling memcheck.c:\n{warnings}");
    }
    fs::rename(&partial, &out).expect("rename the compiled program");
    out
}

/// Waits for `child`, killing it and failing the test after `TIMEOUT`.
fn wait(child: &mut std::process::Child, what: &str) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for valgrind") {
            return status;
        }
        if start.elapsed() > TIMEOUT {
            // Killing an already-exited child is harmless; the error is
            // ignored for that reason.
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {TIMEOUT:?} and was killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The number after `key` on the first line of `log` that contains it.
fn number_after(log: &str, key: &str) -> Option<u64> {
    let line = log.lines().find(|l| l.contains(key))?;
    let rest = &line[line.find(key)? + key.len()..];
    let digits: String = rest.trim_start().chars().take_while(|c| c.is_ascii_digit() || *c == ',').collect();
    digits.replace(',', "").parse().ok()
}

fn read(path: &Path) -> String {
    String::from_utf8_lossy(&fs::read(path).unwrap_or_default()).into_owned()
}

#[test]
fn memcheck_finds_no_errors_in_poolmalloc() {
    let version = require_valgrind();
    let program = compile();
    let lib = library();
    let dir = scratch_dir();
    let pid = std::process::id();
    let log_path = dir.join(format!("valgrind.{pid}.log"));
    let stdout_path = dir.join(format!("stdout.{pid}.txt"));
    let stderr_path = dir.join(format!("stderr.{pid}.txt"));

    let mut cmd = Command::new("valgrind");
    cmd.args(VALGRIND_ARGS).arg(format!("--log-file={}", log_path.display())).arg(&program);
    // Only the options above: none from the caller's environment, and
    // poolmalloc in its default configuration.
    cmd.env_remove("VALGRIND_OPTS");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("POOLMALLOC_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("LD_PRELOAD", lib)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(File::create(&stdout_path).expect("create the stdout file"))
        .stderr(File::create(&stderr_path).expect("create the stderr file"));
    let shown = format!(
        "LD_PRELOAD={} valgrind {} --log-file={} {}",
        lib.display(),
        VALGRIND_ARGS.join(" "),
        log_path.display(),
        program.display()
    );
    eprintln!("{version}: {shown}");

    let start = Instant::now();
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    let status = wait(&mut child, &shown);
    let elapsed = start.elapsed();

    let log = read(&log_path);
    let stdout = read(&stdout_path);
    let stderr = read(&stderr_path);
    let report = format!(
        "command: {shown}\nstatus: {status}\n--- program stdout ---\n{stdout}\n--- program stderr ---\n{stderr}\n\
         --- valgrind log ---\n{log}"
    );

    let errors = number_after(&log, "ERROR SUMMARY:");
    let allocs = number_after(&log, "total heap usage:");
    eprintln!(
        "finished in {:.1} s: {status}; ERROR SUMMARY: {} errors; memcheck's heap: {} allocs",
        elapsed.as_secs_f64(),
        errors.map_or("?".into(), |n| n.to_string()),
        allocs.map_or("?".into(), |n| n.to_string()),
    );

    assert!(log.contains("Memcheck, a memory error detector"), "the program did not run under memcheck\n{report}");
    assert!(status.signal().is_none(), "the program was killed by signal {:?}\n{report}", status.signal());
    let errors = errors.unwrap_or_else(|| panic!("no ERROR SUMMARY line in valgrind's log\n{report}"));
    assert_eq!(errors, 0, "memcheck reported errors\n{report}");
    assert_ne!(status.code(), Some(ERROR_EXIT), "memcheck reported errors\n{report}");
    assert!(
        stdout.lines().any(|l| l == "allocator: poolmalloc"),
        "the program did not run on poolmalloc (memcheck intercepted its allocation functions?)\n{report}"
    );
    assert_eq!(
        allocs,
        Some(0),
        "memcheck's own allocator served allocations, so not every allocation went through poolmalloc\n{report}"
    );
    assert_eq!(status.code(), Some(0), "the program's checks failed\n{report}");
    assert!(stdout.contains("memcheck workload: all checks passed"), "the program did not finish\n{report}");

    for path in [&log_path, &stdout_path, &stderr_path] {
        // Leftovers in the scratch directory are harmless.
        let _ = fs::remove_file(path);
    }
}

/// Builds `tests/memcheck-rust` (a Rust program on `PoolMalloc` with the
/// `valgrind` feature) on its own: never with the workspace, whose feature
/// unification would turn the feature on everywhere.
fn rust_program() -> PathBuf {
    let target = scratch_dir().join("rust-target");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--release", "--quiet", "--manifest-path"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/memcheck-rust/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .stdin(Stdio::null())
        .output()
        .expect("run cargo to build tests/memcheck-rust");
    assert!(out.status.success(), "building tests/memcheck-rust failed:\n{}", String::from_utf8_lossy(&out.stderr));
    target.join("release/poolmalloc-memcheck-rust")
}

/// With the `valgrind` feature, memcheck sees a Rust program's blocks
/// through poolmalloc's client requests: the program's clean run (which
/// frees many blocks whose second word, the one poolmalloc's double-free
/// check reads, it never wrote) has no error, memcheck counts its blocks in
/// its heap summary, and a leaked block and a read after free are reported.
#[test]
fn memcheck_sees_the_blocks_of_a_rust_program_with_the_valgrind_feature() {
    let version = require_valgrind();
    let program = rust_program();
    let dir = scratch_dir();
    for (mode, want_errors) in [("clean", 0), ("leak", 1), ("uaf", 1)] {
        let log_path = dir.join(format!("rust-{mode}.{}.log", std::process::id()));
        let args = ["--error-exitcode=3", "--leak-check=full", "--errors-for-leak-kinds=definite"];
        let mut cmd = Command::new("valgrind");
        cmd.args(args).arg(format!("--log-file={}", log_path.display())).arg(&program).arg(mode);
        cmd.env_remove("VALGRIND_OPTS").env_remove("LD_PRELOAD").stdin(Stdio::null()).stdout(Stdio::null());
        let shown = format!("valgrind {} {} {mode}", args.join(" "), program.display());
        eprintln!("{version}: {shown}");
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
        let status = wait(&mut child, &shown);
        let log = read(&log_path);
        let report = format!("command: {shown}\nstatus: {status}\n--- valgrind log ---\n{log}");
        assert_eq!(number_after(&log, "ERROR SUMMARY:"), Some(want_errors), "{report}");
        assert_eq!(status.code(), Some(if want_errors == 0 { 0 } else { 3 }), "{report}");
        let allocs = number_after(&log, "total heap usage:").unwrap_or(0);
        assert!(allocs > 50_000, "memcheck did not see poolmalloc's blocks ({allocs} allocs)\n{report}");
        match mode {
            "leak" => assert!(log.contains("112 bytes in 1 blocks are definitely lost"), "{report}"),
            "uaf" => assert!(log.contains("Invalid read of size 1") && log.contains("free'd"), "{report}"),
            _ => {}
        }
        // A leftover in the scratch directory is harmless.
        let _ = fs::remove_file(&log_path);
    }
}
