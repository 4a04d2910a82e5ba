//! Results: raw figures per run, medians, ratios, geometric means, and the
//! table, CSV and JSON forms of them.
//!
//! Ratios are comparator ÷ poolmalloc (and, for CPython, comparator ÷
//! pymalloc), computed from medians. For a fixed-time workload scored in
//! operations per second, the time ratio is the inverse ratio of the
//! scores, so for every workload a ratio above 1 means poolmalloc needed
//! less time (or less memory).

use crate::format;
use crate::workloads::{self, Memory, Metric};
use comfy_table::{presets, CellAlignment, ContentArrangement, Table};
use serde::Serialize;
use std::collections::BTreeMap;

/// The reference every ratio is taken against.
pub const POOLMALLOC: &str = "poolmalloc";
/// CPython's own allocator, the second reference for the python workload.
pub const PYMALLOC: &str = "pymalloc";
/// The other allocator the poolmalloc APIs are compared with by name.
pub const MIMALLOC: &str = "mimalloc";

/// What a comparator is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// An allocator (or a way of running CPython): in the geometric means.
    Allocator,
    /// poolmalloc's debug mode: reported as what debug mode costs instead.
    Debug,
    /// poolmalloc's secure mode: reported as what secure mode costs instead.
    Secure,
    /// poolmalloc with its heap profiler on: reported as what profiling
    /// costs instead.
    Profile,
    /// poolmalloc with transparent huge pages asked for: reported as what
    /// they cost instead.
    Thp,
    /// A poolmalloc API doing the same work (`typed-pool`, `buffer-pool`):
    /// reported against the allocators instead.
    Api,
}

/// One successful run.
#[derive(Clone, Debug, Serialize)]
pub struct RunFigure {
    pub run: u32,
    /// The measured loop (in-process) or the process's wall time (CPython).
    pub seconds: f64,
    pub ops: u64,
    pub ops_per_sec: f64,
    pub wall_seconds: f64,
    pub user_seconds: f64,
    pub sys_seconds: f64,
    pub peak_rss_bytes: u64,
    pub checksum: u64,
    /// What the workload read itself, for the workloads that do:
    /// `live_bytes`, `rss_after_bytes` and maybe `final_rss_bytes`.
    #[serde(flatten)]
    pub memory: Option<Memory>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    pub run: u32,
    pub message: String,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Medians {
    pub seconds: f64,
    pub ops_per_sec: f64,
    pub peak_rss_bytes: u64,
    /// Each memory figure's median over the runs that have it.
    #[serde(flatten)]
    pub memory: Option<Memory>,
}

/// The memory system calls of one comparator's measured loop, from one
/// extra, untimed run traced by [`crate::syscalls`].
#[derive(Clone, Debug, Serialize)]
pub struct SyscallFigure {
    /// Operations the counted run's loop made.
    pub ops: u64,
    /// Calls made while the loop ran (all threads), by name: `mmap`,
    /// `munmap`, `mremap`, `madvise`, `brk`, `mprotect`.
    pub by_call: BTreeMap<String, u64>,
    /// The sum of `by_call`.
    pub total: u64,
    /// `total` per million of `ops`.
    pub per_million_ops: f64,
    /// The same calls made by the whole worker process, from `exec` to
    /// exit: the loader, the setup and the final frees included.
    pub process_total: u64,
}

/// Every figure for one allocator on one case.
#[derive(Debug, Serialize)]
pub struct ComparatorResult {
    pub allocator: String,
    pub role: Role,
    /// How it was run: through `GlobalAlloc`, or preloaded into CPython.
    pub how: String,
    pub runs: Vec<RunFigure>,
    pub failures: Vec<Failure>,
    pub median: Option<Medians>,
    pub time_ratio_to_poolmalloc: Option<f64>,
    pub rss_ratio_to_poolmalloc: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_ratio_to_pymalloc: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_ratio_to_pymalloc: Option<f64>,
    /// For the workloads that count them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syscalls: Option<SyscallFigure>,
    /// Why a workload that counts system calls has no count here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syscalls_unavailable: Option<String>,
}

impl ComparatorResult {
    pub fn new(allocator: &str, how: String, role: Role) -> Self {
        ComparatorResult {
            allocator: allocator.to_string(),
            role,
            how,
            runs: Vec::new(),
            failures: Vec::new(),
            median: None,
            time_ratio_to_poolmalloc: None,
            rss_ratio_to_poolmalloc: None,
            time_ratio_to_pymalloc: None,
            rss_ratio_to_pymalloc: None,
            syscalls: None,
            syscalls_unavailable: None,
        }
    }

    /// Whether system calls were counted, or meant to be, for this row.
    fn counts_syscalls(&self) -> bool {
        self.syscalls.is_some() || self.syscalls_unavailable.is_some()
    }
}

/// One case (a workload, or one variant of it) and all its comparators.
#[derive(Debug, Serialize)]
pub struct CaseResult {
    pub case: String,
    pub workload: String,
    pub variant: String,
    pub threads: usize,
    pub metric: Metric,
    pub deterministic: bool,
    /// Whether this is a CPython case (comparators are ways of running CPython).
    pub python: bool,
    pub comparators: Vec<ComparatorResult>,
    /// The case whose `poolmalloc` row the ratios are taken against, when
    /// this case has none of its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_case: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum_mismatch: Option<String>,
}

/// Geometric mean of poolmalloc ÷ `versus` over the cases both ran.
#[derive(Debug, Serialize)]
pub struct Geomean {
    /// `in-process` or `python`.
    pub scope: &'static str,
    pub versus: String,
    pub cases: usize,
    /// Geometric mean of time(poolmalloc) ÷ time(versus).
    pub time: f64,
    /// Geometric mean of peak RSS(poolmalloc) ÷ peak RSS(versus).
    pub rss: f64,
}

/// One case's ratio of one comparator to another, comparator ÷ reference.
#[derive(Debug, Serialize)]
pub struct CaseRatio {
    pub case: String,
    pub comparator: String,
    /// The comparator it is divided by, and the case that one ran in.
    pub versus: String,
    pub versus_case: String,
    pub time: f64,
    pub rss: f64,
}

/// What a mode of poolmalloc (debug, secure or profiled) costs: time(mode) ÷
/// time(poolmalloc).
#[derive(Debug, Serialize)]
pub struct ModeCost {
    /// `poolmalloc-debug`, `poolmalloc-secure` or `poolmalloc-prof`.
    pub mode: String,
    pub cases: Vec<CaseRatio>,
    /// Geometric mean over the cases of time(mode) ÷ time(poolmalloc).
    pub geomean_time: f64,
    /// The same for peak RSS.
    pub geomean_rss: f64,
}

/// The machine the figures come from.
#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub kernel: String,
    pub glibc: String,
}

impl Machine {
    pub fn detect() -> Machine {
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: kernel_release(),
            glibc: glibc_version(),
        }
    }
}

fn kernel_release() -> String {
    // SAFETY: `utsname` is plain data; all zeroes is a valid value.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return String::new();
    }
    // SAFETY: uname wrote a NUL-terminated string into `release`.
    unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }.to_string_lossy().into_owned()
}

fn glibc_version() -> String {
    // SAFETY: returns a pointer to a static NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) }.to_string_lossy().into_owned()
}

/// The whole suite's results, as written by `--json`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub version: &'static str,
    pub date: String,
    pub command: Vec<String>,
    pub size: &'static str,
    pub runs: u32,
    pub threads: usize,
    pub machine: Machine,
    /// Peak RSS of a worker that does nothing: included in every in-process figure.
    pub baseline_peak_rss_bytes: Option<u64>,
    /// The CPython the python workload ran.
    pub python: Option<crate::workloads::python::Interpreter>,
    /// `POOLMALLOC_*` variables that were set for the runs.
    pub environment: BTreeMap<String, String>,
    pub skipped: Vec<String>,
    pub cases: Vec<CaseResult>,
    pub geomeans: Vec<Geomean>,
    /// Each poolmalloc API against poolmalloc and mimalloc doing the same
    /// work through `GlobalAlloc`.
    pub apis: Vec<CaseRatio>,
    /// With `--with-debug`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debug_cost: Option<ModeCost>,
    /// With `--with-secure`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secure_cost: Option<ModeCost>,
    /// With `--with-profile`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile_cost: Option<ModeCost>,
    /// With `--with-thp`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thp_cost: Option<ModeCost>,
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn medians(runs: &[RunFigure]) -> Option<Medians> {
    if runs.is_empty() {
        return None;
    }
    let mut secs: Vec<f64> = runs.iter().map(|r| r.seconds).collect();
    let mut ops: Vec<f64> = runs.iter().map(|r| r.ops_per_sec).collect();
    let mut rss: Vec<f64> = runs.iter().map(|r| r.peak_rss_bytes as f64).collect();
    Some(Medians {
        seconds: median(&mut secs),
        ops_per_sec: median(&mut ops),
        peak_rss_bytes: median(&mut rss) as u64,
        memory: memory_medians(runs),
    })
}

/// The median of one memory figure over the runs that have it.
fn median_bytes(runs: &[RunFigure], figure: impl Fn(&Memory) -> Option<u64>) -> Option<u64> {
    let mut values: Vec<f64> =
        runs.iter().filter_map(|r| r.memory.as_ref().and_then(&figure)).map(|b| b as f64).collect();
    (!values.is_empty()).then(|| median(&mut values) as u64)
}

fn memory_medians(runs: &[RunFigure]) -> Option<Memory> {
    Some(Memory {
        live_bytes: median_bytes(runs, |m| Some(m.live_bytes))?,
        rss_after_bytes: median_bytes(runs, |m| Some(m.rss_after_bytes))?,
        final_rss_bytes: median_bytes(runs, |m| m.final_rss_bytes),
    })
}

/// The cost a time ratio compares: seconds, or seconds per operation.
fn cost(metric: Metric, m: &Medians) -> f64 {
    match metric {
        Metric::Seconds => m.seconds,
        Metric::OpsPerSec => 1.0 / m.ops_per_sec,
    }
}

fn ratios(metric: Metric, m: &Medians, reference: Option<&Medians>) -> (Option<f64>, Option<f64>) {
    let Some(r) = reference else { return (None, None) };
    let time = cost(metric, m) / cost(metric, r);
    let rss = m.peak_rss_bytes as f64 / r.peak_rss_bytes as f64;
    (time.is_finite().then_some(time), rss.is_finite().then_some(rss))
}

/// The median of comparator `name` in the case labelled `label`.
fn median_of(cases: &[CaseResult], label: &str, name: &str) -> Option<Medians> {
    let case = cases.iter().find(|c| c.case == label)?;
    case.comparators.iter().find(|c| c.allocator == name).and_then(|c| c.median)
}

/// Fills in medians, ratios and checksum mismatches.
pub fn analyse(cases: &mut [CaseResult]) {
    for case in cases.iter_mut() {
        for c in &mut case.comparators {
            c.median = medians(&c.runs);
        }
    }
    for i in 0..cases.len() {
        let reference = cases[i].reference_case.clone().unwrap_or_else(|| cases[i].case.clone());
        let pm = median_of(cases, &reference, POOLMALLOC);
        let py = median_of(cases, &cases[i].case, PYMALLOC);
        let case = &mut cases[i];
        for c in &mut case.comparators {
            let Some(m) = c.median else { continue };
            (c.time_ratio_to_poolmalloc, c.rss_ratio_to_poolmalloc) = ratios(case.metric, &m, pm.as_ref());
            if case.python {
                (c.time_ratio_to_pymalloc, c.rss_ratio_to_pymalloc) = ratios(case.metric, &m, py.as_ref());
            }
        }
        if case.deterministic {
            let mut seen: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
            for c in &case.comparators {
                for r in &c.runs {
                    let names = seen.entry(r.checksum).or_default();
                    if !names.contains(&c.allocator.as_str()) {
                        names.push(&c.allocator);
                    }
                }
            }
            if seen.len() > 1 {
                let parts: Vec<String> =
                    seen.iter().map(|(sum, names)| format!("{} gave {sum:#x}", names.join(", "))).collect();
                case.checksum_mismatch = Some(parts.join("; "));
            }
        }
    }
}

fn geomean(values: &[f64]) -> f64 {
    (values.iter().map(|v| v.ln()).sum::<f64>() / values.len() as f64).exp()
}

/// Geometric means of poolmalloc ÷ each other comparator, in-process and
/// CPython cases apart.
pub fn geomeans(cases: &[CaseResult]) -> Vec<Geomean> {
    let mut out = Vec::new();
    for (scope, python) in [("in-process", false), ("python", true)] {
        let mut names: Vec<&str> = Vec::new();
        for case in cases.iter().filter(|c| c.python == python) {
            for c in case.comparators.iter().filter(|c| c.role == Role::Allocator) {
                if c.allocator != POOLMALLOC && !names.contains(&c.allocator.as_str()) {
                    names.push(&c.allocator);
                }
            }
        }
        for name in names {
            let (mut time, mut rss) = (Vec::new(), Vec::new());
            for case in cases.iter().filter(|c| c.python == python) {
                let c = case.comparators.iter().find(|c| c.allocator == name);
                if let Some((Some(t), Some(r))) = c.map(|c| (c.time_ratio_to_poolmalloc, c.rss_ratio_to_poolmalloc)) {
                    time.push(1.0 / t);
                    rss.push(1.0 / r);
                }
            }
            if !time.is_empty() {
                out.push(Geomean {
                    scope,
                    versus: name.to_string(),
                    cases: time.len(),
                    time: geomean(&time),
                    rss: geomean(&rss),
                });
            }
        }
    }
    out
}

/// Time and RSS of `m` ÷ `r`, when both are finite.
fn ratio_pair(metric: Metric, m: &Medians, r: &Medians) -> Option<(f64, f64)> {
    match ratios(metric, m, Some(r)) {
        (Some(t), Some(r)) => Some((t, r)),
        _ => None,
    }
}

/// Every API row against the poolmalloc and mimalloc rows of its
/// reference case (its own case, or the one named in `reference_case`).
pub fn api_ratios(cases: &[CaseResult]) -> Vec<CaseRatio> {
    let mut out = Vec::new();
    for case in cases {
        let reference = case.reference_case.as_deref().unwrap_or(&case.case);
        for c in case.comparators.iter().filter(|c| c.role == Role::Api) {
            let Some(m) = c.median else { continue };
            for versus in [POOLMALLOC, MIMALLOC] {
                let Some(r) = median_of(cases, reference, versus) else { continue };
                if let Some((time, rss)) = ratio_pair(case.metric, &m, &r) {
                    out.push(CaseRatio {
                        case: case.case.clone(),
                        comparator: c.allocator.clone(),
                        versus: versus.to_string(),
                        versus_case: reference.to_string(),
                        time,
                        rss,
                    });
                }
            }
        }
    }
    out
}

/// A mode (comparators of `role`) against poolmalloc, per case and as
/// geometric means; `None` when no case ran both.
pub fn mode_cost(cases: &[CaseResult], role: Role) -> Option<ModeCost> {
    let mut out = Vec::new();
    let mut mode = String::new();
    for case in cases {
        for c in case.comparators.iter().filter(|c| c.role == role) {
            mode.clone_from(&c.allocator);
            if let (Some(time), Some(rss)) = (c.time_ratio_to_poolmalloc, c.rss_ratio_to_poolmalloc) {
                out.push(CaseRatio {
                    case: case.case.clone(),
                    comparator: c.allocator.clone(),
                    versus: POOLMALLOC.to_string(),
                    versus_case: case.reference_case.clone().unwrap_or_else(|| case.case.clone()),
                    time,
                    rss,
                });
            }
        }
    }
    if out.is_empty() {
        return None;
    }
    let time: Vec<f64> = out.iter().map(|r| r.time).collect();
    let rss: Vec<f64> = out.iter().map(|r| r.rss).collect();
    Some(ModeCost { mode, geomean_time: geomean(&time), geomean_rss: geomean(&rss), cases: out })
}

/// The lines on the poolmalloc APIs, one per API row.
pub fn api_lines(ratios: &[CaseRatio]) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut last: Option<(&str, &str)> = None;
    for r in ratios {
        let part = format!("{}/{} = {}", r.comparator, r.versus, format::ratio(r.time));
        if last == Some((&r.case, &r.comparator)) {
            if let Some(l) = lines.last_mut() {
                l.push_str(", ");
                l.push_str(&part);
            }
        } else {
            let whose = if r.versus_case == r.case {
                "Box::new through each allocator".to_string()
            } else {
                format!("plain allocation in {}", r.versus_case)
            };
            lines.push(format!("{}: API vs {whose}: time {part}", r.case));
        }
        last = Some((&r.case, &r.comparator));
    }
    lines
}

/// The lines on what a mode costs.
pub fn mode_lines(cost: &ModeCost) -> Vec<String> {
    let name = cost.mode.strip_prefix("poolmalloc-").unwrap_or(&cost.mode);
    let what = if name == "prof" { "the heap profiler".to_string() } else { format!("{name} mode") };
    let mut lines = vec![format!("What {what} costs, time({}) ÷ time(poolmalloc):", cost.mode)];
    for r in &cost.cases {
        lines.push(format!("  {:<24} time {:>8}, peak RSS {:>6}", r.case, format::ratio(r.time), format::ratio(r.rss)));
    }
    lines.push(format!(
        "geomean over {} workloads: time {m}/poolmalloc = {}, peak RSS {m}/poolmalloc = {}",
        cost.cases.len(),
        format::ratio(cost.geomean_time),
        format::ratio(cost.geomean_rss),
        m = cost.mode
    ));
    lines
}

fn median_cell(metric: Metric, c: &ComparatorResult) -> String {
    let Some(m) = c.median else { return "failed".to_string() };
    let value = match metric {
        Metric::Seconds => format::seconds(m.seconds),
        Metric::OpsPerSec => format::rate(m.ops_per_sec),
    };
    if c.failures.is_empty() {
        value
    } else {
        format!("{value} ({} failed)", c.failures.len())
    }
}

fn ratio_cell(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_string(), format::ratio)
}

/// A cell of poolmalloc ÷ the comparator, from a comparator ÷ poolmalloc
/// ratio: the one direction the printed tables and the chart use.
fn inverse_cell(r: Option<f64>) -> String {
    ratio_cell(r.filter(|r| *r > 0.0).map(|r| 1.0 / r))
}

fn rss_cell(c: &ComparatorResult) -> String {
    c.median.map_or_else(|| "-".to_string(), |m| format::bytes(m.peak_rss_bytes))
}

/// Columns the printed tables and lines fit in.
pub const WIDTH: u16 = 100;

fn new_table(header: &[&str]) -> Table {
    let mut t = Table::new();
    // Cells wrap (a long case name first) so the table fits WIDTH columns,
    // whether or not stdout is a terminal.
    t.load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(WIDTH)
        .set_header(header);
    t
}

fn align_numbers(t: &mut Table, from: usize) {
    let n = t.column_count();
    for i in from..n {
        if let Some(col) = t.column_mut(i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
}

fn syscalls_cell(c: &ComparatorResult) -> String {
    match (&c.syscalls, c.counts_syscalls()) {
        (Some(s), _) => format::count(s.per_million_ops),
        (None, true) => "n/a".to_string(),
        (None, false) => "-".to_string(),
    }
}

/// Whether any in-process row counted (or tried to count) system calls.
fn any_syscalls(cases: &[CaseResult]) -> bool {
    cases.iter().filter(|c| !c.python).flat_map(|c| &c.comparators).any(ComparatorResult::counts_syscalls)
}

/// The header over the time-ratio column, and the one over the RSS-ratio
/// column, of the printed tables: poolmalloc ÷ the row's comparator.
const TIME_RATIO: &str = "pm ÷ time";
const RSS_RATIO: &str = "pm ÷ RSS";

/// A case's name in the tables, with its thread count where above one.
fn case_label(case: &CaseResult) -> String {
    if case.threads > 1 {
        format!("{} ({}t)", case.case, case.threads)
    } else {
        case.case.clone()
    }
}

/// The table of in-process cases, or `None` if there are none. It has a
/// `sys/Mop` column (system calls per million operations) when some case
/// counted them. It fits 100 columns.
pub fn in_process_table(cases: &[CaseResult]) -> Option<Table> {
    let syscalls = any_syscalls(cases);
    let mut header = vec!["workload", "allocator", "median", TIME_RATIO, "peak RSS", RSS_RATIO];
    if syscalls {
        header.push("sys/Mop");
    }
    let mut t = new_table(&header);
    let mut any = false;
    for case in cases.iter().filter(|c| !c.python) {
        for (i, c) in case.comparators.iter().enumerate() {
            let name = if i == 0 { case_label(case) } else { String::new() };
            let mut row = vec![
                name,
                c.allocator.clone(),
                median_cell(case.metric, c),
                inverse_cell(c.time_ratio_to_poolmalloc),
                rss_cell(c),
                inverse_cell(c.rss_ratio_to_poolmalloc),
            ];
            if syscalls {
                row.push(syscalls_cell(c));
            }
            t.add_row(row);
            any = true;
        }
    }
    align_numbers(&mut t, 2);
    any.then_some(t)
}

/// The table of CPython cases, or `None` if there are none.
pub fn python_table(cases: &[CaseResult]) -> Option<Table> {
    let mut t = new_table(&["python", "allocator", "median wall", TIME_RATIO, "peak RSS", RSS_RATIO]);
    let mut any = false;
    for case in cases.iter().filter(|c| c.python) {
        for (i, c) in case.comparators.iter().enumerate() {
            t.add_row(vec![
                if i == 0 { case.case.clone() } else { String::new() },
                c.allocator.clone(),
                median_cell(case.metric, c),
                inverse_cell(c.time_ratio_to_poolmalloc),
                rss_cell(c),
                inverse_cell(c.rss_ratio_to_poolmalloc),
            ]);
            any = true;
        }
    }
    align_numbers(&mut t, 2);
    any.then_some(t)
}

/// Whether any run of a case read its own memory figures.
fn has_memory(case: &CaseResult) -> bool {
    case.comparators.iter().flat_map(|c| &c.runs).any(|r| r.memory.is_some())
}

fn bytes_cell(b: Option<u64>) -> String {
    b.map_or_else(|| "-".to_string(), format::bytes)
}

/// The table of the memory figures that workloads read themselves, next to
/// the peak RSS: one row per comparator of each case that has them, or
/// `None` if no case does. It has a `final RSS` column when some case has
/// a final sample.
pub fn memory_table(cases: &[CaseResult]) -> Option<Table> {
    let shown: Vec<&CaseResult> = cases.iter().filter(|c| has_memory(c)).collect();
    let last = shown
        .iter()
        .flat_map(|c| &c.comparators)
        .flat_map(|c| &c.runs)
        .any(|r| r.memory.is_some_and(|m| m.final_rss_bytes.is_some()));
    let mut header = vec!["workload", "allocator", "live", "peak RSS", "RSS after"];
    if last {
        header.push("final RSS");
    }
    let mut t = new_table(&header);
    for case in &shown {
        for (i, c) in case.comparators.iter().enumerate() {
            let m = c.median.and_then(|m| m.memory);
            let mut row = vec![
                if i == 0 { case.case.clone() } else { String::new() },
                c.allocator.clone(),
                bytes_cell(m.map(|m| m.live_bytes)),
                rss_cell(c),
                bytes_cell(m.map(|m| m.rss_after_bytes)),
            ];
            if last {
                row.push(bytes_cell(m.and_then(|m| m.final_rss_bytes)));
            }
            t.add_row(row);
        }
    }
    align_numbers(&mut t, 2);
    (!shown.is_empty()).then_some(t)
}

/// The lines that explain the memory table, when there is one: what each
/// workload's figures are, and that they are raw.
pub fn memory_lines(cases: &[CaseResult], baseline: Option<u64>) -> Vec<String> {
    let mut lines = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for case in cases.iter().filter(|c| has_memory(c)) {
        if seen.contains(&case.workload.as_str()) {
            continue;
        }
        seen.push(&case.workload);
        if let Some(what) = workloads::find(&case.workload).and_then(|w| w.memory) {
            lines.push(format!("  {}: {what}", case.workload));
        }
    }
    if seen.is_empty() {
        return lines;
    }
    let harness = baseline.map_or_else(|| "memory".to_string(), format::bytes);
    lines.insert(
        0,
        "Memory table: medians of what each worker read itself. live is requested bytes; RSS after and final RSS"
            .to_string(),
    );
    lines.insert(1, "are read from /proc/self/statm at the moments below; peak RSS is from wait4.".to_string());
    lines.push(format!("These RSS figures are raw: each includes the harness's own {harness}, nothing is subtracted."));
    lines
}

/// The lines that explain the `syscalls/Mop` column, when the table has one.
pub fn syscall_lines(cases: &[CaseResult]) -> Vec<String> {
    if !any_syscalls(cases) {
        return Vec::new();
    }
    let mut lines = vec![
        "syscalls/Mop: mmap, munmap, mremap, madvise, brk and mprotect calls per million operations of the measured"
            .to_string(),
        "loop, counted in one extra untimed run; they include the stacks of threads the loop starts.".to_string(),
    ];
    let mut reasons: Vec<&str> = Vec::new();
    for c in cases.iter().flat_map(|c| &c.comparators).filter(|c| c.syscalls.is_none()) {
        if let Some(why) = c.syscalls_unavailable.as_deref().filter(|w| !reasons.contains(w)) {
            reasons.push(why);
        }
    }
    lines.extend(reasons.iter().map(|why| format!("n/a: {why}")));
    lines
}

/// The geometric-mean lines under the tables.
pub fn geomean_lines(geomeans: &[Geomean]) -> Vec<String> {
    let mut lines = Vec::new();
    for g in geomeans {
        let scope = if g.scope == "python" { "CPython cases" } else { "workloads" };
        lines.push(format!(
            "geomean over {} {scope}: time poolmalloc/{} = {}, peak RSS poolmalloc/{} = {}",
            g.cases,
            g.versus,
            format::ratio(g.time),
            g.versus,
            format::ratio(g.rss)
        ));
    }
    lines
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(String::new, |v| format!("{v:.6}"))
}

fn count_field(v: Option<u64>) -> String {
    v.map_or_else(String::new, |v| v.to_string())
}

/// One row per case and allocator: medians and ratios, written by the
/// `csv` crate (which quotes what needs quoting).
pub fn csv(cases: &[CaseResult]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let header =
        "case,workload,variant,threads,metric,allocator,runs_ok,runs_failed,median_seconds,median_ops_per_sec,\
                  median_peak_rss_bytes,time_ratio_to_poolmalloc,rss_ratio_to_poolmalloc,time_ratio_to_pymalloc,\
                  rss_ratio_to_pymalloc,syscalls_per_million_ops,median_live_bytes,median_rss_after_bytes,\
                  median_final_rss_bytes";
    // Writing into a Vec cannot fail.
    let _ = w.write_record(header.split(','));
    for case in cases {
        for c in &case.comparators {
            let memory = c.median.and_then(|m| m.memory);
            let metric = match case.metric {
                Metric::Seconds => "seconds",
                Metric::OpsPerSec => "ops_per_sec",
            };
            let _ = w.write_record([
                case.case.clone(),
                case.workload.clone(),
                case.variant.clone(),
                case.threads.to_string(),
                metric.to_string(),
                c.allocator.clone(),
                c.runs.len().to_string(),
                c.failures.len().to_string(),
                opt(c.median.map(|m| m.seconds)),
                opt(c.median.map(|m| m.ops_per_sec)),
                c.median.map_or_else(String::new, |m| m.peak_rss_bytes.to_string()),
                opt(c.time_ratio_to_poolmalloc),
                opt(c.rss_ratio_to_poolmalloc),
                opt(c.time_ratio_to_pymalloc),
                opt(c.rss_ratio_to_pymalloc),
                opt(c.syscalls.as_ref().map(|s| s.per_million_ops)),
                count_field(memory.map(|m| m.live_bytes)),
                count_field(memory.map(|m| m.rss_after_bytes)),
                count_field(memory.and_then(|m| m.final_rss_bytes)),
            ]);
        }
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figure(run: u32, seconds: f64, rss: u64, checksum: u64) -> RunFigure {
        RunFigure {
            run,
            seconds,
            ops: 100,
            ops_per_sec: 100.0 / seconds,
            wall_seconds: seconds,
            user_seconds: 0.0,
            sys_seconds: 0.0,
            peak_rss_bytes: rss,
            checksum,
            memory: None,
        }
    }

    fn case(metric: Metric, figures: &[(&str, &[f64], u64)]) -> CaseResult {
        CaseResult {
            case: "w".into(),
            workload: "w".into(),
            variant: String::new(),
            threads: 1,
            metric,
            deterministic: true,
            python: false,
            comparators: figures
                .iter()
                .map(|(name, secs, rss)| {
                    let role = match *name {
                        "poolmalloc-debug" => Role::Debug,
                        "poolmalloc-secure" => Role::Secure,
                        "poolmalloc-prof" => Role::Profile,
                        "typed-pool" => Role::Api,
                        _ => Role::Allocator,
                    };
                    let mut c = ComparatorResult::new(name, "GlobalAlloc".into(), role);
                    c.runs = secs.iter().enumerate().map(|(i, &s)| figure(i as u32 + 1, s, *rss, 7)).collect();
                    c
                })
                .collect(),
            reference_case: None,
            checksum_mismatch: None,
        }
    }

    #[test]
    fn debug_and_apis_stay_out_of_the_geomeans() {
        let mut cases = vec![
            case(
                Metric::Seconds,
                &[
                    ("poolmalloc", &[1.0], 100),
                    ("mimalloc", &[2.0], 100),
                    ("poolmalloc-debug", &[8.0], 200),
                    ("typed-pool", &[0.5], 100),
                ],
            ),
            case(Metric::Seconds, &[("typed-pool", &[0.25], 50)]),
        ];
        cases[1].case = "w/pool".into();
        cases[1].reference_case = Some("w".into());
        analyse(&mut cases);
        let g = geomeans(&cases);
        assert_eq!(g.iter().map(|g| g.versus.as_str()).collect::<Vec<_>>(), ["mimalloc"]);
        let cost = mode_cost(&cases, Role::Debug).unwrap();
        assert_eq!(cost.cases.len(), 1);
        assert!((cost.geomean_time - 8.0).abs() < 1e-9 && (cost.geomean_rss - 2.0).abs() < 1e-9);
        // The second case has no poolmalloc row: its ratios use the first's.
        assert_eq!(cases[1].comparators[0].time_ratio_to_poolmalloc, Some(0.25));
        let apis = api_ratios(&cases);
        let got: Vec<(&str, &str, f64)> = apis.iter().map(|r| (r.case.as_str(), r.versus.as_str(), r.time)).collect();
        assert_eq!(
            got,
            [
                ("w", "poolmalloc", 0.5),
                ("w", "mimalloc", 0.25),
                ("w/pool", "poolmalloc", 0.25),
                ("w/pool", "mimalloc", 0.125)
            ]
        );
        let lines = api_lines(&apis);
        assert_eq!(lines.len(), 2);
        assert!(
            lines[1].contains("plain allocation in w") && lines[1].contains("typed-pool/mimalloc = 0.12"),
            "{lines:?}"
        );
    }

    #[test]
    fn medians_and_ratios() {
        let mut cases = vec![case(
            Metric::Seconds,
            &[("poolmalloc", &[1.0, 3.0, 2.0], 100), ("mimalloc", &[4.0, 4.0, 9.0, 1.0], 50)],
        )];
        analyse(&mut cases);
        let mi = &cases[0].comparators[1];
        assert_eq!(mi.median.unwrap().seconds, 4.0);
        assert_eq!(mi.time_ratio_to_poolmalloc, Some(2.0));
        assert_eq!(mi.rss_ratio_to_poolmalloc, Some(0.5));
        assert_eq!(cases[0].comparators[0].time_ratio_to_poolmalloc, Some(1.0));
        let g = geomeans(&cases);
        assert_eq!(g.len(), 1);
        assert!((g[0].time - 0.5).abs() < 1e-12 && (g[0].rss - 2.0).abs() < 1e-12);
    }

    #[test]
    fn throughput_ratio_is_inverse() {
        let mut cases = vec![case(Metric::OpsPerSec, &[("poolmalloc", &[1.0], 1), ("system", &[2.0], 1)])];
        analyse(&mut cases);
        // system did the same ops in twice the time: half the throughput.
        assert_eq!(cases[0].comparators[1].time_ratio_to_poolmalloc, Some(2.0));
    }

    #[test]
    fn checksum_mismatch_is_reported() {
        let mut cases = vec![case(Metric::Seconds, &[("poolmalloc", &[1.0], 1), ("system", &[1.0], 1)])];
        cases[0].comparators[1].runs[0].checksum = 8;
        analyse(&mut cases);
        let m = cases[0].checksum_mismatch.as_deref().unwrap();
        assert!(m.contains("poolmalloc gave 0x7") && m.contains("system gave 0x8"), "{m}");
    }

    #[test]
    fn memory_figures_get_medians_a_table_and_csv_columns() {
        let mut cases = vec![case(Metric::Seconds, &[("poolmalloc", &[1.0, 2.0, 3.0], 100), ("system", &[1.0], 100)])];
        cases[0].workload = "free-then-idle".into();
        for (i, r) in cases[0].comparators[0].runs.iter_mut().enumerate() {
            let after = 1000 * (i as u64 + 1);
            r.memory = Some(Memory { live_bytes: 10, rss_after_bytes: after, final_rss_bytes: Some(500) });
        }
        analyse(&mut cases);
        let m = cases[0].comparators[0].median.unwrap().memory;
        assert_eq!(m, Some(Memory { live_bytes: 10, rss_after_bytes: 2000, final_rss_bytes: Some(500) }));
        assert_eq!(cases[0].comparators[1].median.unwrap().memory, None);

        // In JSON the figures sit next to the peak RSS, in each run and in the median.
        let json = serde_json::to_value(&cases[0].comparators).unwrap();
        assert_eq!(json[0]["runs"][0]["live_bytes"], 10);
        assert_eq!(json[0]["median"]["rss_after_bytes"], 2000);
        assert_eq!(json[0]["median"]["final_rss_bytes"], 500);
        assert!(json[1]["runs"][0].get("live_bytes").is_none() && json[1]["median"].get("live_bytes").is_none());

        let table = memory_table(&cases).unwrap().to_string();
        assert!(table.contains("RSS after") && table.contains("final RSS"), "{table}");
        let lines = memory_lines(&cases, Some(4 << 20));
        assert!(lines.iter().any(|l| l.starts_with("  free-then-idle: live =")), "{lines:?}");
        assert!(lines.last().unwrap().contains("harness's own 4.0 MiB"), "{lines:?}");

        let text = csv(&cases);
        let rows: Vec<&str> = text.lines().collect();
        assert!(rows[0].ends_with(",median_live_bytes,median_rss_after_bytes,median_final_rss_bytes"));
        assert!(rows[1].ends_with(",10,2000,500") && rows[2].ends_with(",,,"), "{text}");

        // Cases without them: no table, no lines.
        cases[0].comparators[0].runs.iter_mut().for_each(|r| r.memory = None);
        assert!(memory_table(&cases).is_none() && memory_lines(&cases, None).is_empty());
    }

    #[test]
    fn csv_has_a_row_per_comparator() {
        let mut cases = vec![case(Metric::Seconds, &[("poolmalloc", &[1.0], 1), ("system", &[2.0], 1)])];
        analyse(&mut cases);
        let text = csv(&cases);
        assert_eq!(text.lines().count(), 3);
        assert!(text.lines().nth(2).unwrap().starts_with("w,w,,1,seconds,system,1,0,2.000000,"));
        // A field with a comma or a quote is quoted, its quotes doubled.
        cases[0].case = "a,\"b\"".into();
        assert!(csv(&cases).lines().nth(1).unwrap().starts_with("\"a,\"\"b\"\"\",w,"));
    }
}
