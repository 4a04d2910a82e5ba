//! `python`: CPython running small-object scripts, with the allocator as
//! its object allocator.
//!
//! The scripts are embedded in the binary. Each runs under CPython's default
//! pymalloc, then with `PYTHONMALLOC=malloc` and each allocator preloaded
//! (`libpoolmalloc.so`, Debian's mimalloc, jemalloc and tcmalloc where
//! installed) and under plain glibc malloc. Where the interpreter can import
//! the poolmalloc Python package (`pip install .`), a last run switches the
//! interpreter onto poolmalloc in-process (`poolmalloc.install()` before the
//! script, no preload). The harness times each run from spawn to exit and
//! reads its peak RSS from `wait4`. Every script prints a checksum, which
//! must be the same under every allocator.

use super::{Threads, Variant};
use crate::cli::Size;
use crate::libs;
use crate::proc;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub const VARIANTS: &[Variant] = &[
    Variant::new("containers", Threads::One),
    Variant::new("strings", Threads::One),
    Variant::new("json", Threads::One),
];

/// The script of a case.
fn script(variant: &str) -> &'static str {
    match variant {
        "containers" => include_str!("../../python/containers.py"),
        "strings" => include_str!("../../python/strings.py"),
        _ => include_str!("../../python/json_roundtrip.py"),
    }
}

/// The rounds a script runs, by size.
fn rounds(size: Size) -> u32 {
    match size {
        Size::Quick => 30,
        Size::Full => 300,
    }
}

/// The interpreter the suite measures.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Interpreter {
    pub executable: PathBuf,
    pub version: String,
}

/// Finds the real interpreter behind `python3` in `PATH`. A launcher
/// script (as version managers install) would otherwise run, with the
/// allocator preloaded, before CPython itself and be counted in its time.
pub fn interpreter(timeout: Duration) -> Result<Interpreter, String> {
    let python3 = libs::find_program("python3".as_ref()).ok_or("python3 not found in PATH")?;
    let mut cmd = Command::new(&python3);
    cmd.args(["-S", "-c", "import sys; print(sys.executable); print(sys.version.split()[0])"]);
    cmd.env_remove("LD_PRELOAD").env_remove("PYTHONMALLOC");
    let f = proc::run_captured(&mut cmd, timeout).map_err(|e| format!("cannot run {}: {e}", python3.display()))?;
    if !f.exit.success() {
        return Err(format!("{} failed: {}", python3.display(), f.exit.describe()));
    }
    let out = String::from_utf8_lossy(&f.stdout);
    let mut lines = out.lines();
    let executable = lines.next().map(str::trim).filter(|e| !e.is_empty()).map_or(python3.clone(), PathBuf::from);
    let version = lines.next().unwrap_or_default().trim().to_string();
    Ok(Interpreter { executable, version })
}

/// One way of running CPython.
#[derive(Clone, Debug)]
pub struct Comparator {
    pub name: &'static str,
    /// The library to preload, if any.
    pub preload: Option<PathBuf>,
    /// Whether objects go through malloc (`PYTHONMALLOC=malloc`).
    pub malloc: bool,
    /// In-process mode: the directory that holds the poolmalloc Python
    /// package, put on `sys.path` before `poolmalloc.install()` runs.
    pub install_from: Option<PathBuf>,
}

/// The name of the in-process comparator.
pub const IN_PROCESS: &str = "poolmalloc-install";

/// Where `python` imports the poolmalloc Python package from, if it can.
fn package_dir(python: &Path, timeout: Duration) -> Result<PathBuf, String> {
    let mut cmd = Command::new(python);
    cmd.args(["-c", "import os, poolmalloc; print(os.path.dirname(os.path.dirname(poolmalloc.__file__)))"]);
    cmd.env_remove("LD_PRELOAD").env_remove("PYTHONMALLOC").env_remove("POOLMALLOC_PYTHON");
    let f = proc::run_captured(&mut cmd, timeout).map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !f.exit.success() {
        return Err("the Python package is not installed for this interpreter (`python3 -m pip install .`)".to_string());
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&f.stdout).trim()))
}

/// The name of the reference comparator.
pub const PYMALLOC: &str = "pymalloc";

/// The comparators available on this machine, and a line for each one that is not.
pub fn comparators(
    poolmalloc_lib: &Result<PathBuf, String>,
    python: &Path,
    timeout: Duration,
) -> (Vec<Comparator>, Vec<String>) {
    let plain = |name, preload, malloc| Comparator { name, preload, malloc, install_from: None };
    let mut found = vec![plain(PYMALLOC, None, false)];
    let mut skipped = Vec::new();
    match poolmalloc_lib {
        Ok(path) => found.push(plain("poolmalloc", Some(path.clone()), true)),
        Err(why) => skipped.push(format!("python: skipping poolmalloc: {why}")),
    }
    for lib in libs::DEBIAN {
        match libs::find_debian(lib) {
            Ok(path) => found.push(plain(lib.name, Some(path), true)),
            Err(why) => skipped.push(format!("python: skipping {}: {why}", lib.name)),
        }
    }
    found.push(plain("glibc", None, true));
    match package_dir(python, timeout) {
        Ok(dir) => found.push(Comparator { name: IN_PROCESS, preload: None, malloc: false, install_from: Some(dir) }),
        Err(why) => skipped.push(format!("python: skipping {IN_PROCESS}: {why}")),
    }
    (found, skipped)
}

/// The command that runs case `variant` under comparator `c`.
pub fn command(python: &Path, variant: &str, size: Size, c: &Comparator) -> Command {
    let mut cmd = Command::new(python);
    // -S: skip site-packages, so only the script's own work is measured
    // (in-process mode adds the package's directory, and its switch).
    // The directory goes in as a JSON string, which is a valid Python
    // string literal.
    let source = match &c.install_from {
        Some(dir) => format!(
            "import sys as _s; _s.path.insert(0, {}); import poolmalloc as _p; _p.install(); del _s, _p\n{}",
            serde_json::to_string(&dir.to_string_lossy()).unwrap_or_default(),
            script(variant)
        ),
        None => script(variant).to_string(),
    };
    cmd.arg("-S").arg("-c").arg(source).arg(rounds(size).to_string());
    cmd.env_remove("PYTHONMALLOC").env_remove("LD_PRELOAD").env("PYTHONHASHSEED", "0");
    cmd.env_remove("POOLMALLOC_PYTHON");
    if c.malloc {
        cmd.env("PYTHONMALLOC", "malloc");
    }
    if let Some(lib) = &c.preload {
        cmd.env("LD_PRELOAD", lib);
    }
    cmd
}
