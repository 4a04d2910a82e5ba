//! Locating `libpoolmalloc.so` for tests.
//!
//! `cargo test` does not build a `cdylib` for the integration tests of other
//! packages, so the first test to need the library builds it with
//! `cargo build --release -p poolmalloc-c` into the caller's target
//! directory. `POOLMALLOC_TEST_LIB` names a built library to use instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The workspace's root manifest.
fn workspace_manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("Cargo.toml")
}

/// The library under test, built once per process into `target_dir` (the
/// parent of an integration test's `CARGO_TARGET_TMPDIR`).
pub fn library(target_dir: &Path) -> &'static Path {
    static LIBRARY: OnceLock<PathBuf> = OnceLock::new();
    LIBRARY.get_or_init(|| match std::env::var_os("POOLMALLOC_TEST_LIB") {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(path.is_file(), "POOLMALLOC_TEST_LIB={} is not a file", path.display());
            std::fs::canonicalize(&path).expect("canonicalize POOLMALLOC_TEST_LIB")
        }
        None => build(target_dir),
    })
}

fn build(target_dir: &Path) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--release", "-p", "poolmalloc-c", "--message-format=json-render-diagnostics"])
        .arg("--manifest-path")
        .arg(workspace_manifest())
        .arg("--target-dir")
        .arg(target_dir)
        .stdin(Stdio::null())
        .output()
        .expect("run cargo build");
    assert!(
        out.status.success(),
        "cargo build --release -p poolmalloc-c failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let messages = String::from_utf8_lossy(&out.stdout);
    let path = messages
        .lines()
        .filter(|l| l.contains(r#""reason":"compiler-artifact""#) && l.contains(r#""kind":["cdylib""#))
        .find_map(cdylib_file)
        .unwrap_or_else(|| panic!("cargo build did not report libpoolmalloc.so:\n{messages}"));
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// The `.so` in a `compiler-artifact` message's `filenames` list.
fn cdylib_file(message: &str) -> Option<PathBuf> {
    let start = message.find(r#""filenames":["#)? + r#""filenames":["#.len();
    let list = &message[start..start + message[start..].find(']')?];
    list.split(',').map(|f| f.trim_matches('"')).find(|f| f.ends_with(".so")).map(PathBuf::from)
}
