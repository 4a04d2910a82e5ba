//! What the CLI's integration tests share: the command under test, with
//! the caller's allocator settings removed, and the library it preloads.

use assert_cmd::Command;
use std::path::{Path, PathBuf};

/// The `poolmalloc` command, without `LD_PRELOAD` or any `POOLMALLOC_*`
/// variable of the caller's environment.
pub fn poolmalloc() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_poolmalloc"));
    cmd.env_remove("LD_PRELOAD");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("POOLMALLOC_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// The library that `run` preloads, with a clear failure when it was not built.
#[allow(dead_code)] // not every test file runs programs
pub fn library() -> PathBuf {
    let lib = Path::new(env!("CARGO_BIN_EXE_poolmalloc")).with_file_name("libpoolmalloc.so");
    assert!(
        lib.is_file(),
        "{} is missing: run the tests with `cargo test --workspace --release`, or build the C library \
         first with `cargo build --release -p poolmalloc-c`",
        lib.display()
    );
    lib
}

/// A failure message is exactly one `poolmalloc: error:` line, with no panic.
#[allow(dead_code)] // not every test file checks failures
pub fn one_error_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr).into_owned();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got:\n{text}");
    assert!(lines[0].starts_with("poolmalloc: error: "), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    text
}
