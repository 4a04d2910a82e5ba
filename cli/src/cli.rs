//! Command-line syntax: the subcommands and their options.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "poolmalloc",
    version,
    about = "Benchmark poolmalloc against other allocators, or run a program on it and profile its heap",
    long_about = "Benchmark poolmalloc against mimalloc, jemalloc, tcmalloc and glibc, or run any \
                  dynamically linked program with libpoolmalloc.so preloaded and profile its heap.",
    after_help = "Examples:\n  \
                  poolmalloc bench --quick\n  \
                  poolmalloc bench --only server,python --runs 7 --svg ratios.svg\n  \
                  poolmalloc bench --instructions\n  \
                  poolmalloc run --stats -- python3 script.py\n  \
                  poolmalloc run --python -- python3 -m pytest\n  \
                  poolmalloc run --profile prof --leaks -- ./myprog\n  \
                  poolmalloc prof prof.12345.heap"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the workload suite and compare allocators side by side.
    #[command(long_about = BENCH_ABOUT)]
    Bench(BenchArgs),

    /// Run a program with libpoolmalloc.so preloaded as its malloc.
    #[command(long_about = RUN_ABOUT)]
    Run(RunArgs),

    /// Convert raw heap profiles (PREFIX.<pid>.heap) to pprof and flame graphs, and print their top sites.
    #[command(long_about = PROF_ABOUT)]
    Prof(ProfArgs),

    /// Internal: run one workload with one allocator and print one JSON line.
    #[command(name = "__worker", hide = true)]
    Worker(WorkerArgs),

    /// Internal: do nothing; measures the harness's own peak RSS.
    #[command(name = "__baseline", hide = true)]
    Baseline,

    /// Internal: the Rust-front instruction-count loop, run under callgrind.
    #[command(name = "__instr", hide = true)]
    InstrWorker(InstrWorkerArgs),
}

const BENCH_ABOUT: &str = "\
Run the workload suite and compare allocators side by side.

Every measurement runs in a fresh child process. In-process workloads call \
poolmalloc, poolmalloc-locked, mimalloc, jemalloc and the system allocator \
directly through GlobalAlloc (with --with-debug, poolmalloc's debug mode \
too); the typed and network workloads also measure poolmalloc's TypedPool \
and BufferPool doing the same work. The python workload runs CPython under \
pymalloc and with each allocator preloaded. Allocators alternate within each \
run, and each figure is the median over all runs: time (or operations per \
second), and peak RSS as reported by wait4. Ratios are comparator / poolmalloc, \
so a ratio above 1 means poolmalloc used less time or memory.

With --instructions, counts instructions per malloc+free pair under \
valgrind's callgrind instead (16 B and 256 B, batches of 100), through the C \
ABI and through the Rust GlobalAlloc front.";

const RUN_ABOUT: &str = "\
Run a program with libpoolmalloc.so preloaded as its malloc.

The library is put first in LD_PRELOAD, in front of any entries already \
there. The exit status is the program's own, or 128 + the signal number if \
a signal killed it. Only dynamically linked programs can be preloaded.

With --profile PREFIX, the allocator samples the program's allocations \
(one every --prof-sample bytes on average) and writes a raw profile at \
exit (one per copy of the allocator in the process: PREFIX.<pid>.heap, \
PREFIX.<pid>.2.heap ...), which is then converted, the copies' profiles \
merged, as `poolmalloc prof` does: PREFIX.pb.gz, \
PREFIX.svg and PREFIX.alloc.svg, and a table of allocation sites on stderr. \
Stacks come from frame-pointer walking: build the program with \
-fno-omit-frame-pointer (C, C++) or -C force-frame-pointers=yes (Rust) for \
full stacks.";

const PROF_ABOUT: &str = "\
Convert raw heap profiles to pprof and flame graphs, and print their top sites.

The allocator writes a raw profile, PREFIX.<pid>.heap, at exit when \
POOLMALLOC_PROF=1 (`poolmalloc run --profile PREFIX` sets it); a process \
with a second copy of the allocator (a Rust program whose global allocator \
is poolmalloc, with libpoolmalloc.so preloaded) also writes \
PREFIX.<pid>.2.heap, and so on up to .9. Given several files, the command \
merges them: stacks with the same symbolised frames add their counts. \
Addresses are symbolised with the debug information and symbol tables of \
the files that were mapped into the process (they must still be there), and \
the profile is written as PREFIX.pb.gz (pprof: alloc_objects, alloc_space, inuse_objects, \
inuse_space), PREFIX.svg (flame graph of the bytes still live at exit) and \
PREFIX.alloc.svg (flame graph of all bytes allocated). The table on stderr \
lists allocation sites by allocated bytes: flat is what a site allocated \
itself, cum what was allocated in stacks it appears in. The site of a stack \
is its innermost frame that is the program's own: outside the allocator, \
the C library and the standard libraries.";

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Small sizes, 3 runs: a smoke run of the whole suite in seconds (used by CI).
    #[arg(long)]
    pub quick: bool,

    /// Run only these workloads (comma-separated; see the list in the README or the error message).
    #[arg(long, value_name = "NAME,..", value_delimiter = ',', num_args = 1..)]
    pub only: Vec<String>,

    /// Threads for the multithreaded workloads [default: number of CPUs].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,

    /// Runs per workload and allocator; each figure is the median [default: 5, or 3 with --quick].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub runs: Option<u32>,

    /// Write every raw figure and the medians as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Write the table of medians and ratios as CSV.
    #[arg(long, value_name = "FILE", conflicts_with = "instructions")]
    pub csv: Option<PathBuf>,

    /// Write a bar chart of time ratios (comparator / poolmalloc) as SVG.
    #[arg(long, value_name = "FILE", conflicts_with = "instructions")]
    pub svg: Option<PathBuf>,

    /// Also run poolmalloc's debug mode (poolmalloc-debug) on the in-process workloads and report what it costs.
    #[arg(long)]
    pub with_debug: bool,

    /// Also run poolmalloc's secure mode (poolmalloc-secure: PoolMalloc with POOLMALLOC_SECURE=1) on the in-process workloads and report what it costs.
    #[arg(long)]
    pub with_secure: bool,

    /// Also run poolmalloc with its heap profiler on (poolmalloc-prof: PoolMalloc with POOLMALLOC_PROF=1) on the in-process workloads and report what profiling costs.
    #[arg(long)]
    pub with_profile: bool,

    /// Also run poolmalloc with transparent huge pages asked for (poolmalloc-thp: PoolMalloc with POOLMALLOC_THP=always) on the in-process workloads and report what they cost.
    #[arg(long)]
    pub with_thp: bool,

    /// Count instructions per malloc+free pair under valgrind instead of timing the suite.
    #[arg(long, conflicts_with_all = ["only", "threads", "runs", "with_debug", "with_secure", "with_profile", "with_thp"])]
    pub instructions: bool,

    /// List the workloads and what each one stresses, then exit.
    #[arg(long, conflicts_with_all = ["instructions", "json", "csv", "svg"])]
    pub list: bool,

    /// The C library to preload for poolmalloc [default: libpoolmalloc.so next to this executable].
    #[arg(long, value_name = "PATH")]
    pub lib: Option<PathBuf>,

    /// Kill any single measurement that runs longer than this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Print poolmalloc's statistics report when the program exits, then its time and peak RSS.
    #[arg(long)]
    pub stats: bool,

    /// Use locked mode: one heap behind one lock (POOLMALLOC_THREADS=locked).
    #[arg(long)]
    pub locked: bool,

    /// Make CPython use malloc for its objects too (PYTHONMALLOC=malloc).
    #[arg(long)]
    pub python: bool,

    /// The library to preload [default: libpoolmalloc.so next to this executable].
    #[arg(long, value_name = "PATH")]
    pub lib: Option<PathBuf>,

    /// Profile the heap: write PREFIX.pb.gz (pprof), PREFIX.svg and PREFIX.alloc.svg (flame graphs) at exit.
    #[arg(long, value_name = "PREFIX")]
    pub profile: Option<PathBuf>,

    /// With --profile: mean bytes allocated between two samples [default: 524288].
    #[arg(long, value_name = "BYTES", requires = "profile", value_parser = clap::value_parser!(u64).range(1..))]
    pub prof_sample: Option<u64>,

    /// With --profile: also list the sampled allocations still live at exit, by stack.
    #[arg(long, requires = "profile")]
    pub leaks: bool,

    /// With --profile: rows of the table of allocation sites (and of --leaks).
    #[arg(long, value_name = "N", default_value_t = 10, requires = "profile")]
    pub top: usize,

    /// The program to run, and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

#[derive(Args, Debug)]
pub struct ProfArgs {
    /// The raw profiles, PREFIX.<pid>.heap (and PREFIX.<pid>.2.heap ...), merged into one when there are several.
    #[arg(value_name = "FILE", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,

    /// Write PREFIX.pb.gz, PREFIX.svg and PREFIX.alloc.svg [default: the first FILE less its .heap].
    #[arg(long, value_name = "PREFIX")]
    pub out: Option<PathBuf>,

    /// Rows of the table of allocation sites (and of --leaks).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,

    /// Also list the sampled allocations still live at exit, by stack.
    #[arg(long)]
    pub leaks: bool,
}

/// Workload size.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// Seconds for the whole suite.
    Quick,
    /// For real measurement.
    Full,
}

impl Size {
    pub fn name(self) -> &'static str {
        match self {
            Size::Quick => "quick",
            Size::Full => "full",
        }
    }
}

#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// Workload name.
    pub workload: String,

    /// Allocator under test, or a poolmalloc API the case measures (`typed-pool`, `buffer-pool`).
    pub allocator: String,

    #[arg(long, value_enum, default_value_t = Size::Quick)]
    pub size: Size,

    #[arg(long, default_value_t = 1)]
    pub threads: usize,

    #[arg(long)]
    pub variant: Option<String>,
}

/// The allocators the Rust-front instruction loop can run, plus a baseline.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstrTarget {
    /// A do-nothing allocator: the loop's own instructions.
    Null,
    #[value(name = "poolmalloc")]
    PoolMalloc,
    #[value(name = "poolmalloc-locked")]
    PoolMallocLocked,
    #[value(name = "mimalloc")]
    MiMalloc,
    Jemalloc,
    /// `std::alloc::System` (glibc), named as in the benchmark tables.
    #[value(name = "glibc", alias = "system")]
    System,
}

#[derive(Args, Debug)]
pub struct InstrWorkerArgs {
    pub target: InstrTarget,

    #[arg(long)]
    pub batches: u32,

    #[arg(long)]
    pub warmup: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_takes_the_rest_of_the_line() {
        let cli = Cli::try_parse_from(["poolmalloc", "run", "--stats", "--", "python3", "-c", "pass"]).unwrap();
        let Command::Run(args) = cli.command else { panic!("not run") };
        assert!(args.stats);
        assert_eq!(args.command, ["python3", "-c", "pass"]);
    }

    #[test]
    fn run_profile_options() {
        let cli = Cli::try_parse_from([
            "poolmalloc",
            "run",
            "--profile",
            "out/p",
            "--prof-sample",
            "4096",
            "--leaks",
            "--",
            "prog",
            "--top",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else { panic!("not run") };
        assert_eq!(args.profile.as_deref(), Some(std::path::Path::new("out/p")));
        assert_eq!((args.prof_sample, args.leaks, args.top), (Some(4096), true, 10));
        assert_eq!(args.command, ["prog", "--top"]);
        assert!(Cli::try_parse_from(["poolmalloc", "run", "--leaks", "--", "prog"]).is_err());
        assert!(Cli::try_parse_from(["poolmalloc", "run", "--prof-sample", "8", "--", "prog"]).is_err());
        assert!(Cli::try_parse_from(["poolmalloc", "run", "--profile", "p", "--prof-sample", "0", "--", "x"]).is_err());
    }

    #[test]
    fn prof_takes_a_file() {
        let cli = Cli::try_parse_from(["poolmalloc", "prof", "p.1.heap", "--top", "3"]).unwrap();
        let Command::Prof(args) = cli.command else { panic!("not prof") };
        assert_eq!(args.files, [std::path::Path::new("p.1.heap")]);
        assert_eq!((args.top, args.leaks, args.out), (3, false, None));
        let cli = Cli::try_parse_from(["poolmalloc", "prof", "p.1.heap", "--leaks", "p.1.2.heap"]).unwrap();
        let Command::Prof(args) = cli.command else { panic!("not prof") };
        assert_eq!(args.files, [std::path::Path::new("p.1.heap"), std::path::Path::new("p.1.2.heap")]);
        assert!(args.leaks);
        assert!(Cli::try_parse_from(["poolmalloc", "prof"]).is_err());
    }

    #[test]
    fn only_splits_on_commas() {
        let cli = Cli::try_parse_from(["poolmalloc", "bench", "--only", "numeric,server"]).unwrap();
        let Command::Bench(args) = cli.command else { panic!("not bench") };
        assert_eq!(args.only, ["numeric", "server"]);
        assert!(!args.with_debug);
    }

    #[test]
    fn with_debug_does_not_go_with_instructions() {
        let cli = Cli::try_parse_from(["poolmalloc", "bench", "--quick", "--with-debug"]).unwrap();
        let Command::Bench(args) = cli.command else { panic!("not bench") };
        assert!(args.with_debug);
        assert!(Cli::try_parse_from(["poolmalloc", "bench", "--instructions", "--with-debug"]).is_err());
    }
}
