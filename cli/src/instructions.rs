//! `poolmalloc bench --instructions`: instructions per malloc and free,
//! counted by valgrind's callgrind, which repeats exactly from run to run.
//!
//! The pattern is batches of 100: allocate 100 blocks of one size, then
//! free the 100, at 16 B and 256 B, after a warm-up. Collection is switched
//! on only around the allocation loop, then only around the free loop.
//!
//! * **C ABI.** A small C program, embedded here and compiled at run time
//!   with `cc`, calls `malloc` and `free`; it runs under callgrind with each
//!   library preloaded (callgrind does not replace malloc, so `LD_PRELOAD`
//!   applies as usual; the program prints where `malloc` resolved to, and
//!   that is checked). The same loops without the calls give the loops' own
//!   cost, which is subtracted.
//! * **Rust front.** This binary's hidden `__instr` subcommand calls each
//!   allocator's `GlobalAlloc::alloc` and sized `dealloc` with a constant
//!   layout, as `Box` does, in `#[inline(never)]` loops bracketed by
//!   callgrind client requests. A do-nothing allocator run through the same
//!   loops gives the loops' own cost.

use crate::alloc;
use crate::callgrind;
use crate::cli::{BenchArgs, InstrTarget, InstrWorkerArgs};
use crate::format;
use crate::libs;
use crate::output::Outputs;
use crate::proc::{self, Finished};
use crate::report::Machine;
use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use comfy_table::{presets, CellAlignment, Table};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::alloc::{GlobalAlloc, Layout};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

/// Blocks per batch.
const BATCH: usize = 100;
/// Measured batches per phase and size.
const BATCHES: u32 = 1000;
/// Batches run before measuring.
const WARMUP: u32 = 200;
/// Block sizes measured.
const SIZES: [usize; 2] = [16, 256];
/// Alignment of the Rust front's layouts (a `Box<[u64; N]>`).
const RUST_ALIGN: usize = 8;

const C_SOURCE: &str = include_str!("../c/pairs.c");

/// One allocator at one size.
#[derive(Debug, Serialize)]
pub struct Row {
    /// `C ABI` or `Rust GlobalAlloc`.
    pub front: &'static str,
    pub allocator: String,
    pub size: usize,
    /// Instructions per `malloc` (or `alloc`), net of the loop's own.
    pub malloc: f64,
    /// Instructions per `free` (or `dealloc`), net of the loop's own.
    pub free: f64,
    /// `malloc + free`.
    pub pair: f64,
    /// Raw counts of the measured loops, and of the loops without the calls.
    pub raw_malloc_ir: u64,
    pub raw_free_ir: u64,
    pub loop_malloc_ir: u64,
    pub loop_free_ir: u64,
    pub pairs: u64,
}

#[derive(Debug, Serialize)]
struct InstructionReport {
    tool: &'static str,
    version: &'static str,
    date: String,
    command: Vec<String>,
    machine: Machine,
    valgrind: String,
    batch: usize,
    batches: u32,
    warmup_batches: u32,
    skipped: Vec<String>,
    rows: Vec<Row>,
}

/// One callgrind run to make.
struct Target {
    front: &'static str,
    name: String,
    /// C front: the library to preload (none for glibc).
    preload: Option<PathBuf>,
    /// Rust front: the allocator.
    rust: Option<InstrTarget>,
}

pub fn main(args: &BenchArgs, outputs: &mut Outputs) -> Result<ExitCode> {
    let Some(valgrind) = libs::find_program("valgrind".as_ref()) else {
        bail!("valgrind not found in PATH; instruction counts need it (Debian package valgrind)");
    };
    if !callgrind::SUPPORTED {
        bail!("instruction counts are implemented for x86-64 only");
    }
    let lib = libs::find_poolmalloc(args.lib.as_deref());
    if let (Some(_), Err(why)) = (&args.lib, &lib) {
        bail!("{why}");
    }
    let exe = std::env::current_exe().context("cannot locate this executable")?;
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let timeout = Duration::from_secs(args.timeout);
    let mut skipped = Vec::new();

    // The C program, and the libraries to preload into it.
    let c_program = match compile(dir.path()) {
        Ok(p) => Some(p),
        Err(why) => {
            skipped.push(format!("C ABI: skipping every allocator: {why}"));
            None
        }
    };
    let mut targets = Vec::new();
    if c_program.is_some() {
        match &lib {
            Ok(path) => targets.push(Target {
                front: "C ABI",
                name: "poolmalloc".into(),
                preload: Some(path.clone()),
                rust: None,
            }),
            Err(why) => skipped.push(format!("C ABI: skipping poolmalloc: {why}")),
        }
        for d in libs::DEBIAN {
            match libs::find_debian(d) {
                Ok(path) => {
                    targets.push(Target { front: "C ABI", name: d.name.into(), preload: Some(path), rust: None })
                }
                Err(why) => skipped.push(format!("C ABI: skipping {}: {why}", d.name)),
            }
        }
        targets.push(Target { front: "C ABI", name: "glibc".into(), preload: None, rust: None });
    }
    for &t in InstrTarget::value_variants() {
        targets.push(Target { front: "Rust GlobalAlloc", name: instr_target_name(t), preload: None, rust: Some(t) });
    }
    for line in &skipped {
        eprintln!("poolmalloc: {line}");
    }

    let bar = ProgressBar::new(targets.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:32} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut counts: Vec<(&Target, BTreeMap<String, u64>)> = Vec::new();
    let mut failures = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        bar.set_message(format!("{} · {}", t.front, t.name));
        let out = dir.path().join(format!("callgrind.{i}.out"));
        let mut cmd = Command::new(&valgrind);
        cmd.args(["--tool=callgrind", "--instr-atstart=no", "--collect-atstart=no", "--combine-dumps=yes", "-q"])
            .arg(format!("--callgrind-out-file={}", out.display()))
            .env_remove("LD_PRELOAD");
        match (&t.rust, &c_program) {
            (Some(r), _) => {
                cmd.arg(&exe).arg("__instr").arg(instr_target_name(*r));
                cmd.args(["--batches", &BATCHES.to_string(), "--warmup", &WARMUP.to_string()]);
            }
            (None, Some(program)) => {
                cmd.arg(program).arg(BATCHES.to_string()).arg(WARMUP.to_string());
                cmd.args(SIZES.map(|s| s.to_string()));
                if let Some(lib) = &t.preload {
                    cmd.env("LD_PRELOAD", lib);
                }
            }
            (None, None) => continue,
        }
        match run_one(&mut cmd, timeout, t, &out) {
            Ok(parts) => counts.push((t, parts)),
            Err(why) => {
                bar.suspend(|| eprintln!("poolmalloc: {} {}: {why}", t.front, t.name));
                failures.push(format!("{} {}: {why}", t.front, t.name));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();

    let rows = rows(&counts)?;
    print_table(&rows);
    let report = InstructionReport {
        tool: "poolmalloc bench --instructions",
        version: env!("CARGO_PKG_VERSION"),
        date: format::utc_now(),
        command: std::env::args().collect(),
        machine: Machine::detect(),
        valgrind: valgrind_version(&valgrind),
        batch: BATCH,
        batches: BATCHES,
        warmup_batches: WARMUP,
        skipped,
        rows,
    };
    outputs.write_json(&report)?;
    if let Some(p) = outputs.json_path() {
        println!("JSON written to {}", p.display());
    }
    if !failures.is_empty() {
        bail!("{} instruction count(s) failed; see the lines above", failures.len());
    }
    Ok(ExitCode::SUCCESS)
}

fn instr_target_name(t: InstrTarget) -> String {
    t.to_possible_value().map_or_else(String::new, |v| v.get_name().to_string())
}

/// Compiles the embedded C program into `dir`.
fn compile(dir: &Path) -> Result<PathBuf, String> {
    let cc = libs::find_program("cc".as_ref()).ok_or("no C compiler (`cc`) in PATH")?;
    let source = dir.join("pairs.c");
    let program = dir.join("pairs");
    std::fs::write(&source, C_SOURCE).map_err(|e| format!("cannot write {}: {e}", source.display()))?;
    let mut cmd = Command::new(cc);
    cmd.args(["-O2", "-fno-builtin", "-fno-tree-vectorize", "-fno-unroll-loops", "-o"])
        .arg(&program)
        .arg(&source)
        .arg("-ldl");
    let f = proc::run_captured(&mut cmd, Duration::from_secs(120)).map_err(|e| format!("cannot run cc: {e}"))?;
    if !f.exit.success() {
        let err = String::from_utf8_lossy(&f.stderr);
        let first = err.lines().find(|l| l.contains("error")).unwrap_or_else(|| err.lines().next().unwrap_or(""));
        return Err(format!(
            "cannot compile the measuring program (is valgrind's callgrind.h installed?): {}",
            first.trim()
        ));
    }
    Ok(program)
}

fn run_one(cmd: &mut Command, timeout: Duration, t: &Target, out: &Path) -> Result<BTreeMap<String, u64>, String> {
    let f: Finished = proc::run_captured(cmd, timeout).map_err(|e| format!("cannot start valgrind: {e}"))?;
    if f.timed_out {
        return Err(format!("timed out after {} s", timeout.as_secs()));
    }
    if !f.exit.success() {
        let err = String::from_utf8_lossy(&f.stderr);
        let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
        return Err(format!("{}: {last}", f.exit.describe()));
    }
    if t.rust.is_none() {
        // Make sure malloc really came from the library under test.
        let stdout = String::from_utf8_lossy(&f.stdout);
        let resolved = stdout.lines().find_map(|l| l.strip_prefix("malloc: ")).unwrap_or("?").trim();
        let expected = match &t.preload {
            Some(lib) => lib.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            None => "libc.so".to_string(),
        };
        if !resolved.contains(&expected) {
            return Err(format!("malloc resolved to `{resolved}`, not to {expected}; LD_PRELOAD did not take effect"));
        }
    }
    let text = std::fs::read_to_string(out).map_err(|e| format!("cannot read callgrind's output: {e}"))?;
    Ok(callgrind::parts(&text))
}

/// Per-operation counts, net of the loops' own instructions.
fn rows(counts: &[(&Target, BTreeMap<String, u64>)]) -> Result<Vec<Row>> {
    let null = counts.iter().find(|(t, _)| t.rust == Some(InstrTarget::Null)).map(|(_, p)| p);
    let pairs = u64::from(BATCHES) * BATCH as u64;
    let mut rows = Vec::new();
    for (t, parts) in counts {
        if t.rust == Some(InstrTarget::Null) {
            continue;
        }
        for size in SIZES {
            let get = |m: &BTreeMap<String, u64>, k: &str| m.get(&format!("{k}-{size}")).copied();
            let (loop_m, loop_f) = match t.rust {
                Some(_) => match null {
                    Some(n) => (get(n, "malloc"), get(n, "free")),
                    None => (None, None),
                },
                None => (get(parts, "loop-malloc"), get(parts, "loop-free")),
            };
            let (Some(m), Some(f), Some(lm), Some(lf)) = (get(parts, "malloc"), get(parts, "free"), loop_m, loop_f)
            else {
                bail!("callgrind's output for {} {} lacks the {size} B parts", t.front, t.name);
            };
            let per = |raw: u64, base: u64| raw.saturating_sub(base) as f64 / pairs as f64;
            let (malloc, free) = (per(m, lm), per(f, lf));
            rows.push(Row {
                front: t.front,
                allocator: t.name.clone(),
                size,
                malloc,
                free,
                pair: malloc + free,
                raw_malloc_ir: m,
                raw_free_ir: f,
                loop_malloc_ir: lm,
                loop_free_ir: lf,
                pairs,
            });
        }
    }
    Ok(rows)
}

fn print_table(rows: &[Row]) {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED).set_header(["front", "allocator", "size", "malloc", "free", "pair"]);
    for r in rows {
        t.add_row(vec![
            r.front.to_string(),
            r.allocator.clone(),
            format!("{} B", r.size),
            format!("{:.1}", r.malloc),
            format!("{:.1}", r.free),
            format!("{:.1}", r.pair),
        ]);
    }
    for i in 2..6 {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    println!("Instructions per operation under callgrind, batches of {BATCH} ({BATCHES} batches after {WARMUP} warm-up), net of the loop:");
    println!("{t}");
}

fn valgrind_version(valgrind: &Path) -> String {
    match proc::run_captured(Command::new(valgrind).arg("--version"), Duration::from_secs(30)) {
        Ok(f) => String::from_utf8_lossy(&f.stdout).trim().to_string(),
        Err(_) => String::new(),
    }
}

// ---------------------------------------------------------------------------
// The Rust-front worker, run under callgrind.

/// The calls the measured loops make: `GlobalAlloc`'s, or nothing.
trait PairAlloc {
    /// # Safety
    /// As for `GlobalAlloc::alloc`.
    unsafe fn alloc(&self, layout: Layout) -> *mut u8;
    /// # Safety
    /// As for `GlobalAlloc::dealloc`.
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout);
}

impl<T: GlobalAlloc> PairAlloc for T {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded from the caller.
        unsafe { GlobalAlloc::alloc(self, layout) }
    }

    #[inline(always)]
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: forwarded from the caller.
        unsafe { GlobalAlloc::dealloc(self, p, layout) }
    }
}

/// Allocates nothing: a pointer the optimiser cannot see through, and a
/// free that consumes it. Like a real call, each asm block may touch
/// memory, so the loops keep the same shape. Its count is the loops' own
/// cost.
struct NullAlloc;

static NULL_BLOCK: [u8; 16] = [0; 16];

impl PairAlloc for NullAlloc {
    #[inline(always)]
    unsafe fn alloc(&self, _layout: Layout) -> *mut u8 {
        let mut p = NULL_BLOCK.as_ptr().cast_mut();
        // SAFETY: an empty asm that only claims to change `p`.
        unsafe { std::arch::asm!("/* {0} */", inout(reg) p, options(nostack, preserves_flags)) };
        p
    }

    #[inline(always)]
    unsafe fn dealloc(&self, p: *mut u8, _layout: Layout) {
        // SAFETY: an empty asm that only reads `p`.
        unsafe { std::arch::asm!("/* {0} */", in(reg) p, options(nostack, preserves_flags)) };
    }
}

#[inline(never)]
fn alloc_phase<A: PairAlloc, const SIZE: usize>(a: &A, slots: &mut [*mut u8; BATCH]) {
    let layout = match Layout::from_size_align(SIZE, RUST_ALIGN) {
        Ok(l) => l,
        Err(_) => unreachable!("constant sizes are valid"),
    };
    for s in slots.iter_mut() {
        // SAFETY: a non-zero size.
        *s = unsafe { a.alloc(layout) };
    }
}

#[inline(never)]
fn free_phase<A: PairAlloc, const SIZE: usize>(a: &A, slots: &[*mut u8; BATCH]) {
    let layout = match Layout::from_size_align(SIZE, RUST_ALIGN) {
        Ok(l) => l,
        Err(_) => unreachable!("constant sizes are valid"),
    };
    for &p in slots {
        // SAFETY: allocated by `alloc_phase` with the same allocator and layout.
        unsafe { a.dealloc(p, layout) };
    }
}

fn measure_size<A: PairAlloc, const SIZE: usize>(a: &A, batches: u32, warmup: u32) -> Result<()> {
    let mut slots = [std::ptr::null_mut(); BATCH];
    let check = |slots: &[*mut u8; BATCH]| {
        if slots.iter().any(|p| p.is_null()) {
            bail!("allocation of {SIZE} B failed");
        }
        Ok(())
    };
    for _ in 0..warmup {
        alloc_phase::<A, SIZE>(a, &mut slots);
        check(&slots)?;
        free_phase::<A, SIZE>(a, &slots);
    }
    for (phase, what) in ["malloc", "free"].into_iter().enumerate() {
        let name = CString::new(format!("{what}-{SIZE}"))?;
        for _ in 0..batches {
            if phase == 0 {
                callgrind::toggle_collect();
            }
            alloc_phase::<A, SIZE>(a, &mut slots);
            if phase == 0 {
                callgrind::toggle_collect();
            }
            check(&slots)?;
            if phase == 1 {
                callgrind::toggle_collect();
            }
            free_phase::<A, SIZE>(a, &slots);
            if phase == 1 {
                callgrind::toggle_collect();
            }
        }
        callgrind::dump_stats_at(&name);
    }
    Ok(())
}

fn measure_all<A: PairAlloc>(a: &A, args: &InstrWorkerArgs) -> Result<()> {
    callgrind::start_instrumentation();
    measure_size::<A, { SIZES[0] }>(a, args.batches, args.warmup)?;
    measure_size::<A, { SIZES[1] }>(a, args.batches, args.warmup)?;
    callgrind::stop_instrumentation();
    Ok(())
}

/// The hidden `__instr` subcommand.
pub fn rust_worker(args: &InstrWorkerArgs) -> Result<ExitCode> {
    match args.target {
        InstrTarget::Null => measure_all(&NullAlloc, args)?,
        InstrTarget::PoolMalloc => measure_all(&alloc::POOLMALLOC, args)?,
        InstrTarget::PoolMallocLocked => measure_all(&alloc::POOLMALLOC_LOCKED, args)?,
        InstrTarget::MiMalloc => measure_all(&alloc::MIMALLOC, args)?,
        InstrTarget::Jemalloc => measure_all(&alloc::JEMALLOC, args)?,
        InstrTarget::System => measure_all(&alloc::SYSTEM, args)?,
    }
    Ok(ExitCode::SUCCESS)
}
