//! Finding the libraries to preload and the programs the suite runs.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The file name of poolmalloc's C library.
pub const POOLMALLOC_LIB: &str = "libpoolmalloc.so";

/// `libpoolmalloc.so`: the one given with `--lib`, or the one next to this
/// executable (`cargo build --release` puts both in `target/release/`).
/// The error is a one-line explanation.
pub fn find_poolmalloc(explicit: Option<&Path>) -> Result<PathBuf, String> {
    let path = match explicit {
        Some(p) => {
            if !p.is_file() {
                return Err(format!("library `{}` not found", p.display()));
            }
            p.to_path_buf()
        }
        None => {
            let exe = std::env::current_exe().map_err(|e| format!("cannot locate this executable: {e}"))?;
            let dir = exe.parent().unwrap_or(Path::new("."));
            let p = dir.join(POOLMALLOC_LIB);
            if !p.is_file() {
                return Err(format!(
                    "{POOLMALLOC_LIB} not found in {}; run `cargo build --release` first, or pass --lib PATH",
                    dir.display()
                ));
            }
            p
        }
    };
    let path = path.canonicalize().map_err(|e| format!("cannot resolve `{}`: {e}", path.display()))?;
    preloadable(&path)?;
    if !is_elf(&path) {
        return Err(format!("`{}` is not an ELF shared library", path.display()));
    }
    Ok(path)
}

fn is_elf(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && magic == *b"\x7fELF"
}

/// LD_PRELOAD splits on colons and spaces, so a path holding either cannot be preloaded.
pub fn preloadable(path: &Path) -> Result<(), String> {
    let s = path.to_string_lossy();
    if s.contains([':', ' ']) {
        return Err(format!("`{s}` contains a colon or a space, which LD_PRELOAD cannot carry"));
    }
    Ok(())
}

/// A distribution's build of another allocator.
pub struct DebianLib {
    pub name: &'static str,
    pub file: &'static str,
    pub package: &'static str,
}

/// The preloadable comparators from Debian packages.
pub const DEBIAN: &[DebianLib] = &[
    DebianLib { name: "mimalloc", file: "libmimalloc.so.2", package: "libmimalloc2.0" },
    DebianLib { name: "jemalloc", file: "libjemalloc.so.2", package: "libjemalloc2" },
    DebianLib { name: "tcmalloc", file: "libtcmalloc_minimal.so.4", package: "libtcmalloc-minimal4" },
];

/// Directories where the distribution's shared libraries live.
fn lib_dirs() -> Vec<PathBuf> {
    let multiarch = format!("/usr/lib/{}-linux-gnu", std::env::consts::ARCH);
    [multiarch.as_str(), "/usr/lib64", "/usr/lib", "/lib64", "/lib"].iter().map(PathBuf::from).collect()
}

/// The path of a Debian comparator, or why it is unavailable.
pub fn find_debian(lib: &DebianLib) -> Result<PathBuf, String> {
    lib_dirs()
        .into_iter()
        .map(|d| d.join(lib.file))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("{} not installed (Debian package {})", lib.file, lib.package))
}

/// The full path of a program, searched in `PATH` when it has no slash
/// (the `which` crate).
pub fn find_program(name: &OsStr) -> Option<PathBuf> {
    which::which(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_programs_in_path() {
        assert!(find_program(OsStr::new("sh")).is_some());
        assert!(find_program(OsStr::new("/bin/sh")).is_some());
        assert!(find_program(OsStr::new("no-such-program-xyz")).is_none());
    }

    #[test]
    fn rejects_unpreloadable_paths() {
        assert!(preloadable(Path::new("/a b/libpoolmalloc.so")).is_err());
        assert!(preloadable(Path::new("/a:b/libpoolmalloc.so")).is_err());
        assert!(preloadable(Path::new("/opt/lib/libpoolmalloc.so")).is_ok());
    }

    #[test]
    fn explicit_library_must_exist_and_be_elf() {
        let err = find_poolmalloc(Some(Path::new("/nonexistent/libpoolmalloc.so"))).unwrap_err();
        assert!(err.contains("not found"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("libfake.so");
        std::fs::write(&text, "not a library").unwrap();
        let err = find_poolmalloc(Some(&text)).unwrap_err();
        assert!(err.contains("is not an ELF shared library"), "{err}");
    }
}
