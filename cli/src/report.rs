//! Results: raw figures per run, medians, ratios, geometric means, and the
//! table, CSV and JSON forms of them.
//!
//! Ratios are comparator ÷ poolmalloc (and, for CPython, comparator ÷
//! pymalloc), computed from medians. For a fixed-time workload scored in
//! operations per second, the time ratio is the inverse ratio of the
//! scores, so for every workload a ratio above 1 means poolmalloc needed
//! less time (or less memory).

use crate::format;
use crate::workloads::Metric;
use comfy_table::{presets, CellAlignment, ContentArrangement, Table};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The reference every ratio is taken against.
pub const POOLMALLOC: &str = "poolmalloc";
/// CPython's own allocator, the second reference for the python workload.
pub const PYMALLOC: &str = "pymalloc";

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
}

/// Every figure for one allocator on one case.
#[derive(Debug, Serialize)]
pub struct ComparatorResult {
    pub allocator: String,
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
}

impl ComparatorResult {
    pub fn new(allocator: &str, how: String) -> Self {
        ComparatorResult {
            allocator: allocator.to_string(),
            how,
            runs: Vec::new(),
            failures: Vec::new(),
            median: None,
            time_ratio_to_poolmalloc: None,
            rss_ratio_to_poolmalloc: None,
            time_ratio_to_pymalloc: None,
            rss_ratio_to_pymalloc: None,
        }
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
    Some(Medians { seconds: median(&mut secs), ops_per_sec: median(&mut ops), peak_rss_bytes: median(&mut rss) as u64 })
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

/// Fills in medians, ratios and checksum mismatches.
pub fn analyse(cases: &mut [CaseResult]) {
    for case in cases.iter_mut() {
        for c in &mut case.comparators {
            c.median = medians(&c.runs);
        }
        let find = |name: &str| case.comparators.iter().find(|c| c.allocator == name).and_then(|c| c.median);
        let (pm, py) = (find(POOLMALLOC), find(PYMALLOC));
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
            for c in &case.comparators {
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

fn rss_cell(c: &ComparatorResult) -> String {
    c.median.map_or_else(|| "-".to_string(), |m| format::bytes(m.peak_rss_bytes))
}

fn new_table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
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

/// The table of in-process cases, or `None` if there are none.
pub fn in_process_table(cases: &[CaseResult]) -> Option<Table> {
    let mut t = new_table(&[
        "workload",
        "threads",
        "allocator",
        "median",
        "time vs poolmalloc",
        "peak RSS",
        "RSS vs poolmalloc",
    ]);
    let mut any = false;
    for case in cases.iter().filter(|c| !c.python) {
        for (i, c) in case.comparators.iter().enumerate() {
            let (name, threads) =
                if i == 0 { (case.case.clone(), case.threads.to_string()) } else { Default::default() };
            t.add_row(vec![
                name,
                threads,
                c.allocator.clone(),
                median_cell(case.metric, c),
                ratio_cell(c.time_ratio_to_poolmalloc),
                rss_cell(c),
                ratio_cell(c.rss_ratio_to_poolmalloc),
            ]);
            any = true;
        }
    }
    align_numbers(&mut t, 3);
    any.then_some(t)
}

/// The table of CPython cases, or `None` if there are none.
pub fn python_table(cases: &[CaseResult]) -> Option<Table> {
    let mut t = new_table(&[
        "python",
        "allocator",
        "median wall",
        "vs pymalloc",
        "vs poolmalloc",
        "peak RSS",
        "RSS vs pymalloc",
        "RSS vs poolmalloc",
    ]);
    let mut any = false;
    for case in cases.iter().filter(|c| c.python) {
        for (i, c) in case.comparators.iter().enumerate() {
            t.add_row(vec![
                if i == 0 { case.case.clone() } else { String::new() },
                c.allocator.clone(),
                median_cell(case.metric, c),
                ratio_cell(c.time_ratio_to_pymalloc),
                ratio_cell(c.time_ratio_to_poolmalloc),
                rss_cell(c),
                ratio_cell(c.rss_ratio_to_pymalloc),
                ratio_cell(c.rss_ratio_to_poolmalloc),
            ]);
            any = true;
        }
    }
    align_numbers(&mut t, 2);
    any.then_some(t)
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

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(String::new, |v| format!("{v:.6}"))
}

/// One row per case and allocator: medians and ratios.
pub fn csv(cases: &[CaseResult]) -> String {
    let mut out = String::from(
        "case,workload,variant,threads,metric,allocator,runs_ok,runs_failed,median_seconds,median_ops_per_sec,\
         median_peak_rss_bytes,time_ratio_to_poolmalloc,rss_ratio_to_poolmalloc,time_ratio_to_pymalloc,\
         rss_ratio_to_pymalloc\n",
    );
    for case in cases {
        for c in &case.comparators {
            let metric = match case.metric {
                Metric::Seconds => "seconds",
                Metric::OpsPerSec => "ops_per_sec",
            };
            let _ = writeln!(
                out,
                "{},{},{},{},{metric},{},{},{},{},{},{},{},{},{},{}",
                csv_field(&case.case),
                csv_field(&case.workload),
                csv_field(&case.variant),
                case.threads,
                csv_field(&c.allocator),
                c.runs.len(),
                c.failures.len(),
                opt(c.median.map(|m| m.seconds)),
                opt(c.median.map(|m| m.ops_per_sec)),
                c.median.map_or_else(String::new, |m| m.peak_rss_bytes.to_string()),
                opt(c.time_ratio_to_poolmalloc),
                opt(c.rss_ratio_to_poolmalloc),
                opt(c.time_ratio_to_pymalloc),
                opt(c.rss_ratio_to_pymalloc),
            );
        }
    }
    out
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
                    let mut c = ComparatorResult::new(name, "GlobalAlloc".into());
                    c.runs = secs.iter().enumerate().map(|(i, &s)| figure(i as u32 + 1, s, *rss, 7)).collect();
                    c
                })
                .collect(),
            checksum_mismatch: None,
        }
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
    fn csv_has_a_row_per_comparator() {
        let mut cases = vec![case(Metric::Seconds, &[("poolmalloc", &[1.0], 1), ("system", &[2.0], 1)])];
        analyse(&mut cases);
        let text = csv(&cases);
        assert_eq!(text.lines().count(), 3);
        assert!(text.lines().nth(2).unwrap().starts_with("w,w,,1,seconds,system,1,0,2.000000,"));
    }
}
