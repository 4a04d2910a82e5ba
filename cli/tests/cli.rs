//! End-to-end tests of the `poolmalloc` command.
//!
//! The `run` tests preload `libpoolmalloc.so`, which the command finds next
//! to its own executable. `cargo test --workspace --release` builds both
//! into `target/release/`.

use predicates::prelude::*;

mod common;
use common::{library, one_error_line, poolmalloc};

fn have(program: &str) -> bool {
    std::process::Command::new(program).arg("--version").output().is_ok_and(|o| o.status.success())
}

#[test]
fn help_lists_the_commands() {
    poolmalloc()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("bench").and(predicate::str::contains("run")))
        .stdout(predicate::str::contains("__worker").not());
    poolmalloc()
        .args(["bench", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("--quick").and(predicate::str::contains("--instructions")));
    poolmalloc().args(["run", "--help"]).assert().success().stdout(predicate::str::contains("--stats"));
}

#[test]
fn quick_bench_writes_every_in_process_comparator_to_json() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("out.json");
    poolmalloc()
        .args(["bench", "--quick", "--only", "numeric", "--json"])
        .arg(&json)
        .assert()
        .success()
        .stdout(predicate::str::contains("numeric").and(predicate::str::contains("poolmalloc/mimalloc")));

    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["size"], "quick");
    assert_eq!(report["runs"], 3);
    let cases = report["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 1);
    assert_eq!(cases[0]["case"], "numeric");
    let comparators = cases[0]["comparators"].as_array().unwrap();
    for name in ["poolmalloc", "poolmalloc-locked", "mimalloc", "jemalloc", "glibc"] {
        let c = comparators.iter().find(|c| c["allocator"] == name).unwrap_or_else(|| panic!("no {name} in {report}"));
        let runs = c["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 3, "{name}");
        for r in runs {
            assert!(r["seconds"].as_f64().unwrap() > 0.0, "{name}");
            assert!(r["peak_rss_bytes"].as_u64().unwrap() > 0, "{name}");
        }
        assert!(c["median"]["seconds"].as_f64().unwrap() > 0.0, "{name}");
        assert!(c["time_ratio_to_poolmalloc"].as_f64().unwrap() > 0.0, "{name}");
        assert!(c["rss_ratio_to_poolmalloc"].as_f64().unwrap() > 0.0, "{name}");
    }
    assert!(report["geomeans"].as_array().unwrap().iter().any(|g| g["versus"] == "mimalloc"));
}

#[test]
fn unknown_workload_is_a_clean_error() {
    let out = poolmalloc().args(["bench", "--only", "numeric,nope"]).assert().failure().code(1).get_output().clone();
    let text = one_error_line(&out.stderr);
    assert!(text.contains("unknown workload `nope`") && text.contains("numeric") && text.contains("python"), "{text}");
}

#[test]
fn unwritable_output_is_a_clean_error() {
    let out = poolmalloc()
        .args(["bench", "--quick", "--only", "numeric", "--json", "/nonexistent-dir/out.json"])
        .assert()
        .failure()
        .get_output()
        .clone();
    let text = one_error_line(&out.stderr);
    assert!(text.contains("cannot write `/nonexistent-dir/out.json`"), "{text}");
}

#[test]
fn run_passes_the_exit_status_through() {
    library();
    poolmalloc().args(["run", "--", "/bin/true"]).assert().code(0);
    poolmalloc().args(["run", "--", "/bin/false"]).assert().code(1);
    poolmalloc().args(["run", "--", "sh", "-c", "exit 7"]).assert().code(7);
}

#[test]
fn run_reports_death_by_signal_as_128_plus_signal() {
    library();
    poolmalloc()
        .args(["run", "--", "sh", "-c", "kill -SEGV $$"])
        .assert()
        .code(128 + 11)
        .stderr(predicate::str::contains("SIGSEGV"));
}

#[test]
fn run_sets_up_the_environment() {
    let lib = library();
    let lib = lib.canonicalize().unwrap();
    poolmalloc()
        .args(["run", "--python", "--locked", "--", "sh", "-c", "echo $LD_PRELOAD $PYTHONMALLOC $POOLMALLOC_THREADS"])
        .env("LD_PRELOAD", "/nonexistent/libother.so")
        .assert()
        .success()
        .stdout(format!("{}:/nonexistent/libother.so malloc locked\n", lib.display()));
}

#[test]
fn run_of_a_missing_program_is_a_clean_error() {
    library();
    let out =
        poolmalloc().args(["run", "--", "nonexistent-program-xyz"]).assert().failure().code(127).get_output().clone();
    let text = one_error_line(&out.stderr);
    assert!(text.contains("cannot run `nonexistent-program-xyz`: command not found"), "{text}");
}

#[test]
fn run_with_a_missing_library_is_a_clean_error() {
    let out = poolmalloc()
        .args(["run", "--lib", "/nonexistent/libpoolmalloc.so", "--", "/bin/true"])
        .assert()
        .failure()
        .get_output()
        .clone();
    let text = one_error_line(&out.stderr);
    assert!(text.contains("/nonexistent/libpoolmalloc.so` not found"), "{text}");
}

#[test]
fn run_stats_prints_the_report_for_python() {
    library();
    if !have("python3") {
        eprintln!("skipped: python3 is not installed");
        return;
    }
    poolmalloc()
        .args(["run", "--stats", "--", "python3", "-c", "pass"])
        .assert()
        .success()
        .stderr(predicate::str::contains("poolmalloc ").and(predicate::str::contains("statistics")))
        .stderr(predicate::str::contains("peak RSS"));
}

#[test]
fn quick_typed_bench_compares_typed_pool_with_every_allocator() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("typed.json");
    poolmalloc()
        .args(["bench", "--quick", "--only", "typed", "--json"])
        .arg(&json)
        .assert()
        .success()
        .stdout(predicate::str::contains("typed-pool").and(predicate::str::contains("typed-pool/mimalloc")))
        .stdout(predicate::function(|out: &str| {
            // One name per allocator, one ratio direction stated once, and
            // nothing wider than 100 columns.
            out.lines().all(|l| l.chars().count() <= 100)
                && out.matches("Every ratio is poolmalloc ÷ the comparator").count() == 1
                && !out.contains("system")
        }));

    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let cases = report["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 1);
    assert_eq!(cases[0]["case"], "typed");
    let comparators = cases[0]["comparators"].as_array().unwrap();
    for name in ["poolmalloc", "poolmalloc-locked", "mimalloc", "jemalloc", "glibc", "typed-pool"] {
        let c = comparators.iter().find(|c| c["allocator"] == name).unwrap_or_else(|| panic!("no {name} in {report}"));
        let runs = c["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 3, "{name}");
        assert!(runs.iter().all(|r| r["seconds"].as_f64().unwrap() > 0.0 && r["ops"].as_u64().unwrap() > 0));
        assert!(c["time_ratio_to_poolmalloc"].as_f64().unwrap() > 0.0, "{name}");
        let role = if name == "typed-pool" { "api" } else { "allocator" };
        assert_eq!(c["role"], role, "{name}");
    }
    assert!(comparators.iter().all(|c| c["allocator"] != "poolmalloc-debug"));
    assert!(cases[0].get("checksum_mismatch").is_none(), "{report}");
    // typed-pool against Box::new through poolmalloc and through mimalloc.
    let apis = report["apis"].as_array().unwrap();
    for versus in ["poolmalloc", "mimalloc"] {
        assert!(
            apis.iter()
                .any(|r| r["comparator"] == "typed-pool" && r["versus"] == versus && r["time"].as_f64().unwrap() > 0.0),
            "{report}"
        );
    }
    // The API is not an allocator: no geometric mean for it.
    assert!(report["geomeans"].as_array().unwrap().iter().all(|g| g["versus"] != "typed-pool"));
    assert!(report.get("debug_cost").is_none());
}

#[test]
fn with_debug_reports_what_debug_mode_costs() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("debug.json");
    poolmalloc()
        .args([
            "bench",
            "--quick",
            "--runs",
            "1",
            "--only",
            "numeric,network",
            "--with-debug",
            "--threads",
            "2",
            "--json",
        ])
        .arg(&json)
        .assert()
        .success()
        .stdout(predicate::str::contains("What debug mode costs").and(predicate::str::contains("buffer-pool")));

    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let cases = report["cases"].as_array().unwrap();
    let labels: Vec<&str> = cases.iter().map(|c| c["case"].as_str().unwrap()).collect();
    assert_eq!(labels, ["numeric", "network/malloc", "network/bufferpool"]);
    // The buffer-pool case runs once and is compared with network/malloc.
    let pool = &cases[2];
    assert_eq!(pool["reference_case"], "network/malloc");
    let only: Vec<&str> =
        pool["comparators"].as_array().unwrap().iter().map(|c| c["allocator"].as_str().unwrap()).collect();
    assert_eq!(only, ["buffer-pool"]);
    assert!(pool["comparators"][0]["time_ratio_to_poolmalloc"].as_f64().unwrap() > 0.0);
    // Debug mode: per case and a geometric mean, not among the allocators' means.
    let cost = &report["debug_cost"];
    let per_case: Vec<&str> = cost["cases"].as_array().unwrap().iter().map(|c| c["case"].as_str().unwrap()).collect();
    assert_eq!(per_case, ["numeric", "network/malloc"]);
    assert!(cost["geomean_time"].as_f64().unwrap() > 0.0 && cost["geomean_rss"].as_f64().unwrap() > 0.0);
    assert!(report["geomeans"].as_array().unwrap().iter().all(|g| g["versus"] != "poolmalloc-debug"));
}

#[test]
fn with_secure_reports_what_secure_mode_costs() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("secure.json");
    poolmalloc()
        .args(["bench", "--quick", "--runs", "1", "--only", "numeric", "--with-secure", "--threads", "2", "--json"])
        .arg(&json)
        .assert()
        .success()
        .stdout(predicate::str::contains("What secure mode costs"));
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let cost = &report["secure_cost"];
    assert_eq!(cost["mode"], "poolmalloc-secure");
    let per_case: Vec<&str> = cost["cases"].as_array().unwrap().iter().map(|c| c["case"].as_str().unwrap()).collect();
    assert_eq!(per_case, ["numeric"]);
    assert!(cost["geomean_time"].as_f64().unwrap() > 0.0 && cost["geomean_rss"].as_f64().unwrap() > 0.0);
    assert!(report["geomeans"].as_array().unwrap().iter().all(|g| g["versus"] != "poolmalloc-secure"));
    assert!(report.get("debug_cost").is_none());
}

#[test]
fn with_profile_reports_what_the_heap_profiler_costs() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("profile.json");
    poolmalloc()
        .args(["bench", "--quick", "--runs", "1", "--only", "numeric", "--with-profile", "--threads", "2", "--json"])
        .arg(&json)
        .current_dir(dir.path())
        .assert()
        .success()
        .stdout(predicate::str::contains("What the heap profiler costs"));
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let cost = &report["profile_cost"];
    assert_eq!(cost["mode"], "poolmalloc-prof");
    let per_case: Vec<&str> = cost["cases"].as_array().unwrap().iter().map(|c| c["case"].as_str().unwrap()).collect();
    assert_eq!(per_case, ["numeric"]);
    assert!(cost["geomean_time"].as_f64().unwrap() > 0.0 && cost["geomean_rss"].as_f64().unwrap() > 0.0);
    assert!(report["geomeans"].as_array().unwrap().iter().all(|g| g["versus"] != "poolmalloc-prof"));
    // The profiled workers' raw profiles went to a directory of their own,
    // removed at the end: none is left where the suite ran.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, [std::ffi::OsString::from("profile.json")]);
}

#[test]
fn memory_system_calls_are_counted_where_the_workload_asks() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("syscalls.json");
    poolmalloc()
        .args(["bench", "--quick", "--runs", "1", "--only", "numeric,many-medium", "--json"])
        .arg(&json)
        .assert()
        .success()
        .stdout(predicate::str::contains("syscalls/Mop"));

    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let cases = report["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    // numeric does not count them.
    for c in cases[0]["comparators"].as_array().unwrap() {
        assert!(c.get("syscalls").is_none() && c.get("syscalls_unavailable").is_none(), "{c}");
    }
    assert_eq!(cases[1]["case"], "many-medium");
    for c in cases[1]["comparators"].as_array().unwrap() {
        let name = &c["allocator"];
        let Some(s) = c.get("syscalls") else {
            // Where the kernel refuses to trace, the reason takes the figure's place.
            assert!(!c["syscalls_unavailable"].as_str().unwrap().is_empty(), "{name}");
            continue;
        };
        let ops = s["ops"].as_u64().unwrap();
        let total = s["total"].as_u64().unwrap();
        assert_eq!(ops, 20_000, "{name}");
        let by_call = s["by_call"].as_object().unwrap();
        let names: Vec<&str> = by_call.keys().map(String::as_str).collect();
        assert_eq!(names, ["brk", "madvise", "mmap", "mprotect", "mremap", "munmap"], "{name}");
        assert_eq!(by_call.values().map(|v| v.as_u64().unwrap()).sum::<u64>(), total, "{name}");
        let per_mop = s["per_million_ops"].as_f64().unwrap();
        assert!((per_mop - total as f64 * 1e6 / ops as f64).abs() < 1e-6, "{name}");
        // The loader maps the executable and its libraries, whatever the allocator.
        assert!(s["process_total"].as_u64().unwrap() > total, "{name}");
    }
}

#[test]
fn memory_workloads_report_live_bytes_and_rss_after() {
    let dir = tempfile::tempdir().unwrap();
    let (json, csv) = (dir.path().join("memory.json"), dir.path().join("memory.csv"));
    poolmalloc()
        .args(["bench", "--quick", "--runs", "1", "--only", "free-then-idle,random-replacement", "--json"])
        .arg(&json)
        .arg("--csv")
        .arg(&csv)
        .assert()
        .success()
        .stdout(predicate::str::contains("RSS after").and(predicate::str::contains("final RSS")))
        .stdout(
            predicate::str::contains("free-then-idle: live =").and(predicate::str::contains("nothing is subtracted")),
        );

    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let cases = report["cases"].as_array().unwrap();
    let labels: Vec<&str> = cases.iter().map(|c| c["case"].as_str().unwrap()).collect();
    assert_eq!(
        labels,
        [
            "random-replacement/1-16",
            "random-replacement/1-1024",
            "random-replacement/inv-square",
            "free-then-idle/sleep",
            "free-then-idle/fast"
        ]
    );
    for case in cases {
        let sampled = case["workload"] == "free-then-idle";
        let mut live = Vec::new();
        for c in case["comparators"].as_array().unwrap() {
            let label = format!("{} {}", case["case"], c["allocator"]);
            let run = &c["runs"][0];
            assert!(run["live_bytes"].as_u64().unwrap() > 0, "{label}");
            assert!(run["rss_after_bytes"].as_u64().unwrap() > 0, "{label}");
            assert_eq!(run.get("final_rss_bytes").is_some(), sampled, "{label}");
            if sampled {
                // The burst itself is 64 MiB of blocks at quick size.
                assert!(run["peak_rss_bytes"].as_u64().unwrap() > 64 << 20, "{label}");
            }
            let median = &c["median"];
            for field in ["live_bytes", "rss_after_bytes"] {
                assert_eq!(median[field], run[field], "{label} {field}");
            }
            live.push(run["live_bytes"].as_u64().unwrap());
        }
        // The same seeded work holds the same bytes live under every allocator.
        assert!(live.len() == 5 && live.windows(2).all(|w| w[0] == w[1]), "{}: {live:?}", case["case"]);
        assert!(case.get("checksum_mismatch").is_none(), "{report}");
    }

    let text = std::fs::read_to_string(&csv).unwrap();
    let header = text.lines().next().unwrap();
    assert!(header.ends_with(",median_live_bytes,median_rss_after_bytes,median_final_rss_bytes"), "{header}");
}
