//! `poolmalloc run -- CMD ARGS..`: runs a program with `libpoolmalloc.so`
//! preloaded, and exits with its status. With `--profile PREFIX`, turns on
//! the allocator's heap profiler and converts its profile after the exit.

use crate::cli::RunArgs;
use crate::error::CodedError;
use crate::format;
use crate::libs;
use crate::proc::{self, Exit, Inherited};
use crate::profile::RunProfile;
use anyhow::{anyhow, Result};
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::Path;
use std::process::{Command, ExitCode};

/// Exit status when the program was not found, as in shells.
const NOT_FOUND: u8 = 127;
/// Exit status when the program was found but could not be run.
const CANNOT_RUN: u8 = 126;

pub fn main(args: &RunArgs) -> Result<ExitCode> {
    // An unwritable profile is reported before anything runs.
    let profile = match &args.profile {
        Some(prefix) => Some(RunProfile::prepare(prefix, args.top, args.leaks)?),
        None => None,
    };
    let lib = libs::find_poolmalloc(args.lib.as_deref()).map_err(|why| anyhow!(why))?;
    let Some((program, rest)) = args.command.split_first() else {
        return Err(anyhow!("no program given; usage: poolmalloc run [OPTIONS] -- COMMAND [ARGS]..."));
    };
    let shown = program.to_string_lossy();
    let Some(path) = libs::find_program(program) else {
        return Err(CodedError::new(NOT_FOUND, format!("cannot run `{shown}`: command not found")).into());
    };
    let statically_linked = is_static_elf(&path) == Some(true);
    if statically_linked {
        eprintln!("poolmalloc: warning: `{shown}` is statically linked; LD_PRELOAD has no effect on it");
    }

    let mut cmd = Command::new(program);
    cmd.args(rest).env("LD_PRELOAD", preload_list(&lib, std::env::var_os("LD_PRELOAD").as_deref()));
    if args.python {
        cmd.env("PYTHONMALLOC", "malloc");
    }
    if args.locked {
        cmd.env("POOLMALLOC_THREADS", "locked");
    }
    if args.stats {
        cmd.env("POOLMALLOC_SHOW_STATS", "1");
    }
    if let Some(profile) = &profile {
        profile.set_env(&mut cmd, args.prof_sample);
    }

    let Inherited { pid, exit, usage } = match proc::run_inherited(&mut cmd) {
        Ok(done) => done,
        Err(e) => {
            let (code, reason) = match e.kind() {
                io::ErrorKind::NotFound => (NOT_FOUND, "command not found".to_string()),
                io::ErrorKind::PermissionDenied => (CANNOT_RUN, "permission denied".to_string()),
                _ => (CANNOT_RUN, e.to_string()),
            };
            return Err(CodedError::new(code, format!("cannot run `{shown}`: {reason}")).into());
        }
    };
    if let Exit::Signal(sig) = exit {
        if sig != libc::SIGINT && sig != libc::SIGPIPE {
            eprintln!("poolmalloc: `{shown}` was {}", exit.describe());
        }
    }
    if args.stats {
        eprintln!(
            "poolmalloc: `{shown}`: {}; wall {}, user {}, sys {}, peak RSS {}",
            exit.describe(),
            format::seconds(usage.wall),
            format::seconds(usage.user),
            format::seconds(usage.sys),
            format::bytes(usage.max_rss)
        );
    }
    if let Some(profile) = &profile {
        profile.finish(&shown, pid, exit, statically_linked);
    }
    Ok(ExitCode::from(exit.shell_status()))
}

/// `lib` in front of the entries already in `LD_PRELOAD`, so its malloc
/// is the one every other library binds to.
fn preload_list(lib: &Path, existing: Option<&OsStr>) -> OsString {
    let mut list = OsString::from(lib);
    if let Some(old) = existing.filter(|o| !o.is_empty()) {
        list.push(":");
        list.push(old);
    }
    list
}

/// Whether `path` is an ELF executable without an interpreter (statically
/// linked, so the dynamic loader never reads `LD_PRELOAD`). `None` when it
/// is not a 64-bit ELF file (for example a script). Read with the `object`
/// crate, which reads only the headers it needs.
fn is_static_elf(path: &Path) -> Option<bool> {
    use object::read::elf::{ElfFile64, ProgramHeader as _};
    let file = std::fs::File::open(path).ok()?;
    let cache = object::ReadCache::new(file);
    let elf = ElfFile64::<object::Endianness, _>::parse(&cache).ok()?;
    let endian = elf.endian();
    Some(!elf.elf_program_headers().iter().any(|ph| ph.p_type(endian) == object::elf::PT_INTERP))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preload_goes_first() {
        let lib = Path::new("/x/libpoolmalloc.so");
        assert_eq!(preload_list(lib, None), "/x/libpoolmalloc.so");
        assert_eq!(preload_list(lib, Some(OsStr::new(""))), "/x/libpoolmalloc.so");
        assert_eq!(preload_list(lib, Some(OsStr::new("/y/liba.so"))), "/x/libpoolmalloc.so:/y/liba.so");
    }

    #[test]
    fn detects_dynamic_executables() {
        let sh = libs::find_program(OsStr::new("sh")).unwrap();
        assert_eq!(is_static_elf(&sh.canonicalize().unwrap()), Some(false));
        assert_eq!(is_static_elf(Path::new("/etc/passwd")), None);
    }
}
