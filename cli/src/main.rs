//! The `poolmalloc` command.
//!
//! * `poolmalloc bench` runs the workload suite, or with `--instructions`
//!   counts instructions per malloc/free pair under callgrind.
//! * `poolmalloc run -- CMD ARGS..` runs a program with `libpoolmalloc.so`
//!   preloaded; with `--profile PREFIX`, profiles its heap.
//! * `poolmalloc prof FILE...` converts raw heap profiles (several are
//!   merged) to pprof and flame graphs and prints the top allocation sites.
//!
//! The command is a front on top of the library; the library never depends
//! on it. Its own global allocator is the default (`System`), so the
//! harness's allocations are never charged to an allocator under test: each
//! measurement runs in a child process (a hidden `__worker` subcommand of
//! this same binary) that calls the allocator under test directly through
//! `GlobalAlloc`.

mod alloc;
mod bench;
mod callgrind;
mod cli;
mod error;
mod format;
mod instructions;
mod libs;
mod output;
mod proc;
mod profile;
mod report;
mod rng;
mod run;
mod svg;
mod syscalls;
mod worker;
mod workloads;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    proc::restore_sigpipe();
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Bench(args) => bench::main(&args),
        cli::Command::Run(args) => run::main(&args),
        cli::Command::Prof(args) => profile::main(&args),
        cli::Command::Worker(args) => worker::main(&args),
        cli::Command::Baseline => worker::baseline(),
        cli::Command::InstrWorker(args) => instructions::rust_worker(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            let code = error::exit_code(&err);
            eprintln!("poolmalloc: error: {}", error::one_line(&err));
            ExitCode::from(code)
        }
    }
}
