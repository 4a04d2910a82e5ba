//! `poolmalloc bench`: plans the measurements, runs each in a child
//! process, and reports medians and ratios.
//!
//! The plan alternates comparators: for each run, for each case, every
//! comparator runs once, in an order rotated from run to run and case to
//! case, so no comparator always goes first and slow drifts of a shared
//! machine spread over all of them. No comparator's runs happen back to
//! back.

use crate::alloc::Allocator;
use crate::cli::{BenchArgs, Size};
use crate::format;
use crate::instructions;
use crate::libs;
use crate::output::Outputs;
use crate::proc::{self, Finished};
use crate::report::{self, CaseResult, ComparatorResult, Failure, Machine, Report, Role, RunFigure, SyscallFigure};
use crate::svg;
use crate::syscalls;
use crate::workloads::{self, python, Api, Outcome, Runner, Threads, Variant, Workload};
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

/// How a comparator runs a case.
#[derive(Clone, Debug)]
enum Comparator {
    InProcess(Allocator),
    /// A poolmalloc API, in a worker process.
    Api(Api),
    Python(python::Comparator),
}

impl Comparator {
    fn name(&self) -> &str {
        match self {
            Comparator::InProcess(a) => a.name(),
            Comparator::Api(a) => a.name(),
            Comparator::Python(c) => c.name,
        }
    }

    fn role(&self) -> Role {
        match self {
            Comparator::InProcess(Allocator::PoolMallocDebug) => Role::Debug,
            Comparator::InProcess(Allocator::PoolMallocSecure) => Role::Secure,
            Comparator::InProcess(Allocator::PoolMallocProf) => Role::Profile,
            Comparator::InProcess(Allocator::PoolMallocThp) => Role::Thp,
            Comparator::InProcess(_) | Comparator::Python(_) => Role::Allocator,
            Comparator::Api(_) => Role::Api,
        }
    }

    fn how(&self) -> String {
        match self {
            Comparator::InProcess(_) => "GlobalAlloc, in a worker process".to_string(),
            Comparator::Api(a) => a.how().to_string(),
            Comparator::Python(c) => match (&c.preload, c.malloc) {
                _ if c.install_from.is_some() => "poolmalloc.install() before the script (no preload)".to_string(),
                (Some(lib), _) => format!("PYTHONMALLOC=malloc LD_PRELOAD={}", lib.display()),
                (None, true) => "PYTHONMALLOC=malloc (glibc malloc)".to_string(),
                (None, false) => "CPython default (pymalloc)".to_string(),
            },
        }
    }
}

/// One case to measure and the comparators that run it.
struct Case {
    workload: &'static Workload,
    variant: &'static Variant,
    threads: usize,
    comparators: Vec<Comparator>,
}

/// Settings shared by every measurement.
struct Plan {
    exe: PathBuf,
    size: Size,
    timeout: Duration,
    python: Option<PathBuf>,
    /// Where profiled workers write their heap profiles (`--with-profile`),
    /// removed at the end.
    prof_dir: Option<tempfile::TempDir>,
}

pub fn main(args: &BenchArgs) -> Result<ExitCode> {
    if args.list {
        print_workloads();
        return Ok(ExitCode::SUCCESS);
    }
    let mut outputs = Outputs::open(args.json.as_deref(), args.csv.as_deref(), args.svg.as_deref())?;
    if args.instructions {
        return instructions::main(args, &mut outputs);
    }
    let size = if args.quick { Size::Quick } else { Size::Full };
    let runs = args.runs.unwrap_or(if args.quick { 3 } else { 5 });
    let threads =
        args.threads.map_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()), |n| n as usize);
    let selected = workloads::select(&args.only)?;
    let exe = std::env::current_exe().context("cannot locate this executable")?;
    let lib = libs::find_poolmalloc(args.lib.as_deref());
    if let (Some(_), Err(why)) = (&args.lib, &lib) {
        bail!("{why}");
    }
    let timeout = Duration::from_secs(args.timeout);

    let python = PythonSetup::find(&selected, &lib, timeout);
    for line in &python.skipped {
        eprintln!("poolmalloc: {line}");
    }
    if let Some(i) = &python.interpreter {
        eprintln!("poolmalloc: python: CPython {} at {}", i.version, i.executable.display());
    }
    let environment: BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| k.starts_with("POOLMALLOC_"))
        .collect();
    for (k, v) in &environment {
        eprintln!("poolmalloc: note: {k}={v} is set and applies to every poolmalloc run");
    }

    let modes =
        Modes { debug: args.with_debug, secure: args.with_secure, profile: args.with_profile, thp: args.with_thp };
    let cases = build_cases(&selected, &python, threads, modes);
    if cases.is_empty() {
        bail!("nothing to run: every selected workload was skipped");
    }
    let prof_dir = if args.with_profile { Some(tempfile::tempdir()?) } else { None };
    let plan = Plan { exe, size, timeout, python: python.interpreter.as_ref().map(|i| i.executable.clone()), prof_dir };
    let (mut results, baseline, failed) = run_all(&plan, &cases, runs);

    report::analyse(&mut results);
    let geomeans = report::geomeans(&results);
    let apis = report::api_ratios(&results);
    let debug_cost = report::mode_cost(&results, Role::Debug);
    let secure_cost = report::mode_cost(&results, Role::Secure);
    let profile_cost = report::mode_cost(&results, Role::Profile);
    let thp_cost = report::mode_cost(&results, Role::Thp);
    let subtitle = format!(
        "poolmalloc bench, {} size, {runs} runs, {threads} threads, {}",
        size.name(),
        format::utc_now().get(..10).unwrap_or_default()
    );
    print_summary(
        &results,
        &geomeans,
        &apis,
        [debug_cost.as_ref(), secure_cost.as_ref(), profile_cost.as_ref(), thp_cost.as_ref()],
        baseline,
        &subtitle,
    );
    let mut mismatches = 0usize;
    for c in &results {
        if let Some(m) = &c.checksum_mismatch {
            println!("checksum mismatch in {}: {m}", c.case);
            mismatches += 1;
        }
    }

    let report = Report {
        tool: "poolmalloc bench",
        version: env!("CARGO_PKG_VERSION"),
        date: format::utc_now(),
        command: std::env::args().collect(),
        size: size.name(),
        runs,
        threads,
        machine: Machine::detect(),
        baseline_peak_rss_bytes: baseline,
        python: python.interpreter,
        environment,
        skipped: python.skipped,
        cases: results,
        geomeans,
        apis,
        debug_cost,
        secure_cost,
        profile_cost,
        thp_cost,
    };
    write_outputs(&mut outputs, &report, &subtitle)?;

    if failed > 0 || mismatches > 0 {
        bail!("{failed} measurement(s) failed and {mismatches} case(s) had checksum mismatches; see the lines above");
    }
    Ok(ExitCode::SUCCESS)
}

/// The CPython comparators, when the python workload is selected.
struct PythonSetup {
    interpreter: Option<python::Interpreter>,
    comparators: Vec<python::Comparator>,
    /// One line per comparator that is unavailable, and why.
    skipped: Vec<String>,
}

impl PythonSetup {
    fn find(selected: &[&Workload], lib: &Result<PathBuf, String>, timeout: Duration) -> PythonSetup {
        let mut setup = PythonSetup { interpreter: None, comparators: Vec::new(), skipped: Vec::new() };
        if !selected.iter().any(|w| w.runner == Runner::Python) {
            return setup;
        }
        match python::interpreter(timeout) {
            Ok(found) => {
                let (available, missing) = python::comparators(lib, &found.executable, timeout);
                setup.comparators = available;
                setup.skipped = missing;
                setup.interpreter = Some(found);
            }
            Err(why) => setup.skipped.push(format!("python: skipping the python workload: {why}")),
        }
        setup
    }
}

/// The poolmalloc modes to run beside the default one.
#[derive(Clone, Copy)]
struct Modes {
    debug: bool,
    secure: bool,
    profile: bool,
    thp: bool,
}

/// Every case of the selected workloads, with the comparators that run it:
/// the in-process allocators (and debug and secure mode, as `modes` asks)
/// where the case runs them, then the case's poolmalloc APIs.
fn build_cases(selected: &[&'static Workload], python: &PythonSetup, threads: usize, modes: Modes) -> Vec<Case> {
    let mut cases = Vec::new();
    for &w in selected {
        if w.runner == Runner::Python && python.interpreter.is_none() {
            continue;
        }
        for v in w.variants {
            let comparators: Vec<Comparator> = match w.runner {
                Runner::InProcess(_) => {
                    let mut list = Vec::new();
                    if v.allocators {
                        list.extend(Allocator::ALL.iter().map(|&a| Comparator::InProcess(a)));
                        if modes.debug {
                            list.push(Comparator::InProcess(Allocator::PoolMallocDebug));
                        }
                        if modes.secure {
                            list.push(Comparator::InProcess(Allocator::PoolMallocSecure));
                        }
                        if modes.profile {
                            list.push(Comparator::InProcess(Allocator::PoolMallocProf));
                        }
                        if modes.thp {
                            list.push(Comparator::InProcess(Allocator::PoolMallocThp));
                        }
                    }
                    list.extend(v.apis.iter().map(|&a| Comparator::Api(a)));
                    list
                }
                Runner::Python => python.comparators.iter().cloned().map(Comparator::Python).collect(),
            };
            let t = match v.threads {
                Threads::One => 1,
                Threads::All => threads,
            };
            cases.push(Case { workload: w, variant: v, threads: t, comparators });
        }
    }
    cases
}

/// The order of the measurements: `(run, case, comparator)`. Within a run,
/// each case runs every comparator once, starting from a different one in
/// each run and case.
fn schedule(cases: &[Case], runs: u32) -> Vec<(u32, usize, usize)> {
    let mut jobs = Vec::new();
    for run in 0..runs as usize {
        for (ci, case) in cases.iter().enumerate() {
            let n = case.comparators.len();
            for k in 0..n {
                jobs.push((run as u32 + 1, ci, (k + run + ci) % n));
            }
        }
    }
    jobs
}

/// Runs the baseline and every measurement under a progress bar. Returns
/// the raw results, the baseline RSS, and the number of failed measurements.
fn run_all(plan: &Plan, cases: &[Case], runs: u32) -> (Vec<CaseResult>, Option<u64>, usize) {
    let jobs = schedule(cases, runs);
    let counting = counting_jobs(cases);
    let bar = ProgressBar::new((jobs.len() + counting.len()) as u64 + 1);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:32} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));

    bar.set_message("harness baseline");
    let baseline = match measure_baseline(plan) {
        Ok(rss) => Some(rss),
        Err(e) => {
            bar.suspend(|| eprintln!("poolmalloc: cannot measure the harness baseline: {e}"));
            None
        }
    };
    bar.inc(1);

    let mut results: Vec<CaseResult> = cases
        .iter()
        .map(|c| CaseResult {
            case: c.workload.label(c.variant),
            workload: c.workload.name.to_string(),
            variant: c.variant.name.to_string(),
            threads: c.threads,
            metric: c.workload.metric,
            deterministic: c.workload.deterministic,
            python: c.workload.runner == Runner::Python,
            comparators: c.comparators.iter().map(|k| ComparatorResult::new(k.name(), k.how(), k.role())).collect(),
            reference_case: c.variant.reference.and_then(|r| c.workload.variant(Some(r))).map(|r| c.workload.label(r)),
            checksum_mismatch: None,
        })
        .collect();

    let mut failed = 0usize;
    for (run, ci, k) in jobs {
        let case = &cases[ci];
        let comparator = &case.comparators[k];
        bar.set_message(format!("{} · {} · run {run}/{runs}", results[ci].case, comparator.name()));
        match measure(plan, case, comparator) {
            Ok(mut figure) => {
                figure.run = run;
                results[ci].comparators[k].runs.push(figure);
            }
            Err(message) => {
                failed += 1;
                bar.suspend(|| {
                    eprintln!("poolmalloc: {} with {}, run {run}: {message}", results[ci].case, comparator.name())
                });
                results[ci].comparators[k].failures.push(Failure { run, message });
            }
        }
        bar.inc(1);
    }

    let mut unavailable: Option<String> = None;
    for (ci, k) in counting {
        let case = &cases[ci];
        let comparator = &case.comparators[k];
        let label = results[ci].case.clone();
        let result = &mut results[ci].comparators[k];
        bar.set_message(format!("{label} · {} · counting system calls", comparator.name()));
        if let Some(why) = &unavailable {
            result.syscalls_unavailable = Some(why.clone());
            bar.inc(1);
            continue;
        }
        match count_syscalls(plan, case, comparator) {
            Counted::Figure(f) => result.syscalls = Some(f),
            Counted::Unavailable(why) => {
                bar.suspend(|| eprintln!("poolmalloc: memory system calls are not counted: {why}"));
                result.syscalls_unavailable = Some(why.clone());
                unavailable = Some(why);
            }
            Counted::Failed(message) => {
                failed += 1;
                let message = format!("counting run: {message}");
                bar.suspend(|| eprintln!("poolmalloc: {label} with {}, {message}", comparator.name()));
                result.syscalls_unavailable = Some(message.clone());
                result.failures.push(Failure { run: 0, message });
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    (results, baseline, failed)
}

/// The `(case, comparator)` pairs whose memory system calls are counted:
/// the in-process comparators of the workloads that ask for it.
fn counting_jobs(cases: &[Case]) -> Vec<(usize, usize)> {
    let mut jobs = Vec::new();
    for (ci, case) in cases.iter().enumerate() {
        if !case.workload.syscalls {
            continue;
        }
        for (k, c) in case.comparators.iter().enumerate() {
            if matches!(c, Comparator::InProcess(_) | Comparator::Api(_)) {
                jobs.push((ci, k));
            }
        }
    }
    jobs
}

fn print_workloads() {
    for w in workloads::WORKLOADS {
        let cases: Vec<String> = w
            .variants
            .iter()
            .filter(|v| !v.name.is_empty() || !v.apis.is_empty())
            .map(|v| {
                let apis: Vec<&str> = v.apis.iter().map(|a| a.name()).collect();
                match (apis.is_empty(), v.allocators) {
                    (true, _) => w.label(v),
                    (false, true) => format!("{}: allocators + {}", w.label(v), apis.join(", ")),
                    (false, false) => format!("{}: {}", w.label(v), apis.join(", ")),
                }
            })
            .collect();
        let cases = if cases.is_empty() { String::new() } else { format!(" [{}]", cases.join("; ")) };
        println!("{:<18} {}{cases}", w.name, w.stresses);
    }
}

fn print_summary(
    results: &[CaseResult],
    geomeans: &[report::Geomean],
    apis: &[report::CaseRatio],
    mode_costs: [Option<&report::ModeCost>; 4],
    baseline: Option<u64>,
    subtitle: &str,
) {
    println!("{subtitle}");
    if let Some(t) = report::in_process_table(results) {
        println!("{t}");
    }
    if let Some(t) = report::python_table(results) {
        println!("{t}");
    }
    if let Some(t) = report::memory_table(results) {
        println!("{t}");
    }
    say("Medians over all runs. Every ratio is poolmalloc ÷ the comparator (pm ÷ time: time, or time per operation for Mop/s workloads; pm ÷ RSS: peak RSS): below 1.00× poolmalloc took less.");
    for line in report::syscall_lines(results) {
        say(&line);
    }
    if let Some(b) = baseline.filter(|_| results.iter().any(|c| !c.python)) {
        say(&format!(
            "Peak RSS of in-process workloads includes the harness's own {} (an idle worker).",
            format::bytes(b)
        ));
    }
    for line in report::memory_lines(results, baseline) {
        say(&line);
    }
    for line in report::geomean_lines(geomeans) {
        say(&line);
    }
    for line in report::api_lines(apis) {
        say(&line);
    }
    for cost in mode_costs.into_iter().flatten() {
        for line in report::mode_lines(cost) {
            say(&line);
        }
    }
}

/// Prints a line of the summary wrapped to the tables' width, its
/// continuation lines indented.
fn say(line: &str) {
    let indent = if line.starts_with("  ") { "    " } else { "  " };
    // Lines break at spaces only, never inside a name like typed-pool/mimalloc.
    let options = textwrap::Options::new(report::WIDTH.into())
        .subsequent_indent(indent)
        .word_splitter(textwrap::WordSplitter::NoHyphenation);
    println!("{}", textwrap::fill(line, options));
}

fn write_outputs(outputs: &mut Outputs, report: &Report, subtitle: &str) -> Result<()> {
    outputs.write_json(report)?;
    outputs.write_csv(&report::csv(&report.cases))?;
    if outputs.svg_path().is_some() {
        match svg::chart(&report.cases, subtitle) {
            Some(chart) => outputs.write_svg(&chart)?,
            None => bail!("no ratios to chart: poolmalloc has no successful runs to compare against"),
        }
    }
    for (what, path) in [("JSON", outputs.json_path()), ("CSV", outputs.csv_path()), ("SVG", outputs.svg_path())] {
        if let Some(p) = path {
            println!("{what} written to {}", p.display());
        }
    }
    Ok(())
}

/// A worker command with a clean allocator environment.
fn worker_command(exe: &Path) -> Command {
    let mut cmd = Command::new(exe);
    cmd.env_remove("LD_PRELOAD").env_remove("PYTHONMALLOC");
    cmd
}

fn measure_baseline(plan: &Plan) -> Result<u64, String> {
    let mut cmd = worker_command(&plan.exe);
    cmd.arg("__baseline");
    let f = proc::run_captured(&mut cmd, plan.timeout).map_err(|e| format!("cannot start a worker: {e}"))?;
    check_exit(&f, plan.timeout)?;
    Ok(f.usage.max_rss)
}

/// The worker command that runs `case` with an in-process comparator.
fn case_worker(plan: &Plan, case: &Case, comparator: &Comparator) -> Command {
    let mut cmd = worker_command(&plan.exe);
    cmd.arg("__worker").arg(case.workload.name).arg(comparator.name()).args([
        "--size",
        plan.size.name(),
        "--threads",
        &case.threads.to_string(),
    ]);
    if !case.variant.name.is_empty() {
        cmd.args(["--variant", case.variant.name]);
    }
    if matches!(comparator, Comparator::InProcess(Allocator::PoolMallocSecure)) {
        cmd.env("POOLMALLOC_SECURE", "1");
    }
    if matches!(comparator, Comparator::InProcess(Allocator::PoolMallocThp)) {
        cmd.env("POOLMALLOC_THP", "always");
    }
    if let (Comparator::InProcess(Allocator::PoolMallocProf), Some(dir)) = (comparator, &plan.prof_dir) {
        // The profile each worker writes at exit goes to a directory removed
        // at the end; writing it is not part of the measured time.
        cmd.env("POOLMALLOC_PROF", "1").env("POOLMALLOC_PROF_PREFIX", dir.path().join("w"));
    }
    cmd
}

/// The outcome a worker printed as its last line.
fn worker_outcome(f: &Finished) -> Result<Outcome, String> {
    let line = String::from_utf8_lossy(&f.stdout);
    serde_json::from_str(line.lines().last().unwrap_or_default())
        .map_err(|e| format!("unreadable worker output `{}`: {e}", line.trim()))
}

/// What counting a comparator's system calls gave.
enum Counted {
    Figure(SyscallFigure),
    /// Counting is not possible here; the same for every comparator.
    Unavailable(String),
    /// The traced worker failed.
    Failed(String),
}

/// Runs one extra, untimed measurement of an in-process comparator with
/// its memory system calls counted (see [`crate::syscalls`]).
fn count_syscalls(plan: &Plan, case: &Case, comparator: &Comparator) -> Counted {
    let mut cmd = case_worker(plan, case, comparator);
    let traced = match syscalls::run_traced(&mut cmd, plan.timeout) {
        Ok(t) => t,
        Err(why) => return Counted::Unavailable(why),
    };
    let outcome = match check_exit(&traced.finished, plan.timeout).and_then(|()| worker_outcome(&traced.finished)) {
        Ok(o) => o,
        Err(message) => return Counted::Failed(message),
    };
    let counts = traced.counts;
    if counts.loops == 0 {
        return Counted::Failed("the worker marked no measured loop".to_string());
    }
    let total = counts.total();
    Counted::Figure(SyscallFigure {
        ops: outcome.ops,
        by_call: syscalls::CALLS.iter().map(|c| c.to_string()).zip(counts.window).collect(),
        total,
        per_million_ops: if outcome.ops > 0 { total as f64 * 1e6 / outcome.ops as f64 } else { 0.0 },
        process_total: counts.process,
    })
}

/// Runs one measurement; the error is a one-line reason.
fn measure(plan: &Plan, case: &Case, comparator: &Comparator) -> Result<RunFigure, String> {
    match comparator {
        Comparator::InProcess(_) | Comparator::Api(_) => {
            let mut cmd = case_worker(plan, case, comparator);
            let f = proc::run_captured(&mut cmd, plan.timeout).map_err(|e| format!("cannot start a worker: {e}"))?;
            check_exit(&f, plan.timeout)?;
            Ok(figure(&worker_outcome(&f)?, &f))
        }
        Comparator::Python(c) => {
            let Some(python) = &plan.python else { return Err("python3 not found".to_string()) };
            let mut cmd = python::command(python, case.variant.name, plan.size, c);
            let f = proc::run_captured(&mut cmd, plan.timeout)
                .map_err(|e| format!("cannot start `{}`: {e}", python.display()))?;
            check_exit(&f, plan.timeout)?;
            let out = String::from_utf8_lossy(&f.stdout);
            let checksum: u64 =
                out.trim().parse().map_err(|_| format!("unexpected output from the script: `{}`", out.trim()))?;
            let outcome = Outcome { seconds: f.usage.wall, ops: 1, checksum, memory: None };
            Ok(figure(&outcome, &f))
        }
    }
}

fn check_exit(f: &Finished, timeout: Duration) -> Result<(), String> {
    if f.timed_out {
        return Err(format!("timed out after {} s and was killed", timeout.as_secs()));
    }
    if f.exit.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&f.stderr);
    let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    if last.is_empty() {
        Err(f.exit.describe())
    } else {
        Err(format!("{}: {last}", f.exit.describe()))
    }
}

fn figure(o: &Outcome, f: &Finished) -> RunFigure {
    RunFigure {
        run: 0,
        seconds: o.seconds,
        ops: o.ops,
        ops_per_sec: o.ops_per_sec(),
        wall_seconds: f.usage.wall,
        user_seconds: f.usage.user,
        sys_seconds: f.usage.sys,
        peak_rss_bytes: f.usage.max_rss,
        checksum: o.checksum,
        memory: o.memory,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_alternates_comparators() {
        let w = workloads::find("numeric").unwrap();
        let comparators: Vec<Comparator> = Allocator::ALL.iter().map(|&a| Comparator::InProcess(a)).collect();
        let cases: Vec<Case> = (0..2)
            .map(|_| Case { workload: w, variant: &w.variants[0], threads: 1, comparators: comparators.clone() })
            .collect();
        let jobs = schedule(&cases, 3);
        assert_eq!(jobs.len(), 3 * 2 * 5);
        // Every comparator runs once per case per run.
        for run in 1..=3 {
            for ci in 0..2 {
                let mut ks: Vec<usize> = jobs.iter().filter(|j| j.0 == run && j.1 == ci).map(|j| j.2).collect();
                ks.sort_unstable();
                assert_eq!(ks, [0, 1, 2, 3, 4]);
            }
        }
        // The first comparator changes from run to run, and no comparator
        // runs twice in a row.
        let firsts: Vec<usize> = (1..=3).map(|r| jobs.iter().find(|j| j.0 == r && j.1 == 0).unwrap().2).collect();
        assert_eq!(firsts, [0, 1, 2]);
        assert!(jobs.windows(2).all(|p| p[0].2 != p[1].2 || p[0].1 != p[1].1));
    }
}
