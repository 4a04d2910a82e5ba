//! End-to-end tests of the heap-profile commands, `poolmalloc prof` and
//! `poolmalloc run --profile`, on raw profiles written here by hand: their
//! maps section is this test process's own `/proc/self/maps`, and their pcs
//! are in two functions of this process (and in the C library's malloc),
//! so the command symbolises them from this very test binary.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

mod common;
use common::{library, one_error_line, poolmalloc};

/// The site that allocates the most: small, so nothing is inlined at its start.
#[inline(never)]
fn leaky_site(x: u64) -> u64 {
    x.wrapping_mul(0x9e37_79b9)
}

/// A site that allocates less and frees everything.
#[inline(never)]
fn small_site(x: u64) -> u64 {
    x.rotate_left(13) ^ 0x5bd1_e995
}

/// A return address inside `f`.
fn pc_in(f: fn(u64) -> u64) -> String {
    format!("{:x}", f as usize + 1)
}

const MIB: u64 = 1 << 20;

/// A raw profile of this process:
/// * leaky_site, called through libc's malloc: 8 MiB allocated, 4 MiB live;
/// * leaky_site, another stack (no malloc frame): 0.5 MiB, all live;
/// * small_site: 1 MiB allocated, none live;
/// * a stack without frames: 4 KiB allocated.
fn raw_profile(path: &Path) {
    let malloc = format!("{:x}", libc::malloc as *const () as usize + 1);
    let (leaky, small) = (pc_in(leaky_site), pc_in(small_site));
    let mut text = format!(
        "poolmalloc heap profile 1\ninterval 524288\npid 4242\n\
         stack 8 {} 4 {} {malloc} {leaky}\n\
         stack 1 {} 1 {} {leaky}\n\
         stack 2 {} 0 0 {small}\n\
         stack 1 4096 0 0\n\
         maps\n",
        8 * MIB,
        4 * MIB,
        MIB / 2,
        MIB / 2,
        MIB
    );
    text += &fs::read_to_string("/proc/self/maps").unwrap();
    fs::write(path, text).unwrap();
}

/// A second raw profile of this process, as a second copy of the allocator
/// would write, sampled every 4 KiB:
/// * leaky_site through malloc, the same frames as in [`raw_profile`]:
///   2 MiB allocated, 1 MiB live;
/// * small_site: 3 MiB allocated, none live.
fn second_raw_profile(path: &Path) {
    let malloc = format!("{:x}", libc::malloc as *const () as usize + 1);
    let (leaky, small) = (pc_in(leaky_site), pc_in(small_site));
    let mut text = format!(
        "poolmalloc heap profile 1\ninterval 4096\npid 4242\n\
         stack 2 {} 1 {} {malloc} {leaky}\n\
         stack 4 {} 0 0 {small}\n\
         maps\n",
        2 * MIB,
        MIB,
        3 * MIB
    );
    text += &fs::read_to_string("/proc/self/maps").unwrap();
    fs::write(path, text).unwrap();
}

/// What `raw_profile` and `second_raw_profile` come to, merged: the table
/// and its totals (leaky_site 8.5 + 2 MiB of 14.5 MiB + 4 KiB, small_site
/// 1 + 3 MiB), the leaks, the pprof file and the flame graphs.
fn assert_merged(stderr: &str, prefix: &Path) {
    assert!(
        stderr.contains(
            "Total: 14.5 MiB allocated in 18 objects; 5.5 MiB live at exit in 6 objects \
             (estimates from samples every 512.0 KiB on average; 2 raw profiles merged)"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("poolmalloc: warning: the raw profiles were sampled at different intervals"), "{stderr}");
    let rows = table_rows(stderr);
    assert_eq!(rows.len(), 3, "{stderr}");
    assert_eq!(rows[0], ["10.5", "MiB", "72.4%", "10.5", "MiB", "72.4%", "11", "profile::leaky_site"], "{stderr}");
    assert_eq!(rows[1], ["4.0", "MiB", "27.6%", "4.0", "MiB", "27.6%", "6", "profile::small_site"], "{stderr}");
    assert_eq!(rows[2], ["4.0", "KiB", "0.0%", "4.0", "KiB", "0.0%", "1", "[unknown]"], "{stderr}");

    let leaks = &stderr[stderr.find("Live at exit:").expect("no leak section")..];
    assert!(leaks.starts_with("Live at exit: 5.5 MiB in 6 objects (estimated), from 1 stack:"), "{leaks}");
    assert!(leaks.contains("  5.5 MiB in 6 objects (100.0%)\n      #0 profile::leaky_site ("), "{leaks}");

    let file = |ext: &str| PathBuf::from(format!("{}.{ext}", prefix.display()));
    let p = read_pprof(&file("pb.gz"));
    assert_eq!(p.period, 524_288, "the first profile's interval");
    let got: Vec<(Vec<String>, Vec<i64>)> =
        p.sample.iter().map(|s| (sample_functions(&p, s), s.value.clone())).collect();
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(got[0].0[0].contains("malloc"), "{got:?}");
    assert_eq!(got[0].0[1], "profile::leaky_site");
    assert_eq!(got[0].1, [10, 10 << 20, 5, 5 << 20]);
    assert_eq!(got[1], (vec!["profile::leaky_site".to_string()], vec![1, 1 << 19, 1, 1 << 19]));
    assert_eq!(got[2], (vec!["profile::small_site".to_string()], vec![6, 4 << 20, 0, 0]));
    assert_eq!(got[3], (vec!["[unknown]".to_string()], vec![1, 4096, 0, 0]));

    let inuse = fs::read_to_string(file("svg")).unwrap();
    assert!(
        inuse.contains("Live heap at exit (inuse_space), sampled every 512.0 KiB on average, 2 raw profiles merged")
    );
    assert!(inuse.contains("profile::leaky_site") && !inuse.contains("small_site"));
    let alloc = fs::read_to_string(file("alloc.svg")).unwrap();
    assert!(alloc.contains("2 raw profiles merged") && alloc.contains("profile::small_site"));
}

/// The part of pprof's schema these tests read back.
mod pprof {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Profile {
        #[prost(message, repeated, tag = "1")]
        pub sample_type: Vec<ValueType>,
        #[prost(message, repeated, tag = "2")]
        pub sample: Vec<Sample>,
        #[prost(message, repeated, tag = "4")]
        pub location: Vec<Location>,
        #[prost(message, repeated, tag = "5")]
        pub function: Vec<Function>,
        #[prost(string, repeated, tag = "6")]
        pub string_table: Vec<String>,
        #[prost(int64, tag = "12")]
        pub period: i64,
        #[prost(int64, tag = "14")]
        pub default_sample_type: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueType {
        #[prost(int64, tag = "1")]
        pub r#type: i64,
        #[prost(int64, tag = "2")]
        pub unit: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(uint64, repeated, tag = "1")]
        pub location_id: Vec<u64>,
        #[prost(int64, repeated, tag = "2")]
        pub value: Vec<i64>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Location {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(message, repeated, tag = "4")]
        pub line: Vec<Line>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Line {
        #[prost(uint64, tag = "1")]
        pub function_id: u64,
        #[prost(int64, tag = "2")]
        pub line: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Function {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(int64, tag = "2")]
        pub name: i64,
    }
}

fn read_pprof(path: &Path) -> pprof::Profile {
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(fs::File::open(path).unwrap()).read_to_end(&mut bytes).unwrap();
    prost::Message::decode(bytes.as_slice()).unwrap()
}

/// The functions of a sample, leaf first (the outer function of each location).
fn sample_functions(p: &pprof::Profile, s: &pprof::Sample) -> Vec<String> {
    s.location_id
        .iter()
        .map(|id| {
            let loc = p.location.iter().find(|l| l.id == *id).unwrap();
            let f = p.function.iter().find(|f| f.id == loc.line.last().unwrap().function_id).unwrap();
            p.string_table[f.name as usize].clone()
        })
        .collect()
}

/// The rows of the table of sites in `stderr`: (flat, cum, site).
fn table_rows(stderr: &str) -> Vec<Vec<String>> {
    let mut lines = stderr.lines().skip_while(|l| !l.contains("flat%"));
    lines.next().expect("no table header");
    lines
        .take_while(|l| !l.starts_with('(') && !l.starts_with("Live") && !l.starts_with("poolmalloc:"))
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[test]
fn prof_converts_a_raw_profile() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("p.4242.heap");
    raw_profile(&raw);
    let out =
        poolmalloc().arg("prof").arg(&raw).args(["--top", "3", "--leaks"]).assert().success().get_output().clone();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.stdout.is_empty());

    // Totals: 8 + 0.5 + 1 MiB + 4 KiB allocated, 4.5 MiB live.
    assert!(stderr.contains("Total: 9.5 MiB allocated in 12 objects; 4.5 MiB live at exit in 5 objects"), "{stderr}");
    assert!(stderr.contains("samples every 512.0 KiB on average"), "{stderr}");
    // The table: leaky_site first (malloc in libc is not a site), then small_site.
    let rows = table_rows(&stderr);
    assert_eq!(rows.len(), 3, "{stderr}");
    assert_eq!(rows[0][..4], ["8.5", "MiB", "89.4%", "8.5"], "{stderr}");
    assert_eq!(rows[0].last().unwrap(), "profile::leaky_site", "{stderr}");
    assert_eq!(rows[0][6], "9", "objects: {stderr}");
    assert_eq!(rows[1].last().unwrap(), "profile::small_site", "{stderr}");
    assert_eq!(rows[2].last().unwrap(), "[unknown]", "{stderr}");
    assert!(!stderr.contains("  malloc"), "{stderr}");

    // --leaks: both leaky_site stacks, merged, with the source line.
    let leaks = &stderr[stderr.find("Live at exit:").expect("no leak section")..];
    assert!(leaks.starts_with("Live at exit: 4.5 MiB in 5 objects (estimated), from 1 stack:"), "{leaks}");
    assert!(leaks.contains("  4.5 MiB in 5 objects (100.0%)\n      #0 profile::leaky_site ("), "{leaks}");
    assert!(leaks.contains("tests/profile.rs:"), "{leaks}");
    assert!(!leaks.contains("small_site"), "{leaks}");

    // The files, named after FILE less .heap.
    let prefix = dir.path().join("p.4242");
    let files = ["pb.gz", "svg", "alloc.svg"].map(|ext| PathBuf::from(format!("{}.{ext}", prefix.display())));
    for f in &files {
        assert!(stderr.contains(&f.display().to_string()), "{stderr}");
    }
    let p = read_pprof(&files[0]);
    let s = |i: i64| p.string_table[i as usize].as_str();
    assert_eq!(p.string_table[0], "");
    let types: Vec<&str> = p.sample_type.iter().map(|t| s(t.r#type)).collect();
    assert_eq!(types, ["alloc_objects", "alloc_space", "inuse_objects", "inuse_space"]);
    assert_eq!((s(p.default_sample_type), p.period), ("inuse_space", 524_288));
    assert_eq!(p.sample.len(), 4);
    assert_eq!(p.sample[0].value, [8, 8 << 20, 4, 4 << 20]);
    let first = sample_functions(&p, &p.sample[0]);
    assert_eq!(first.len(), 2);
    assert!(first[0].contains("malloc"), "{first:?}");
    assert_eq!(first[1], "profile::leaky_site");
    assert_eq!(sample_functions(&p, &p.sample[2]), ["profile::small_site"]);
    assert_eq!(sample_functions(&p, &p.sample[3]), ["[unknown]"]);

    let inuse = fs::read_to_string(&files[1]).unwrap();
    assert!(inuse.contains("<svg") && inuse.contains("Live heap at exit (inuse_space)"));
    assert!(inuse.contains("profile::leaky_site") && !inuse.contains("small_site"));
    let alloc = fs::read_to_string(&files[2]).unwrap();
    assert!(alloc.contains("Allocated bytes (alloc_space)") && alloc.contains("sampled every 512.0 KiB"));
    assert!(alloc.contains("profile::leaky_site") && alloc.contains("profile::small_site"));
}

#[test]
fn prof_merges_several_raw_profiles() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("p.4242.heap"), dir.path().join("p.4242.2.heap"));
    raw_profile(&first);
    second_raw_profile(&second);
    let out = poolmalloc().arg("prof").arg(&first).arg(&second).args(["--top", "3", "--leaks"]).assert().success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    // Named after the first file.
    assert_merged(&stderr, &dir.path().join("p.4242"));
    assert!(!dir.path().join("p.4242.2.pb.gz").exists());
    let svg = fs::read_to_string(dir.path().join("p.4242.svg")).unwrap();
    assert!(svg.contains("p.4242.heap (pid 4242), p.4242.2.heap (pid 4242)"), "the subtitle names both");

    // The same file twice would count twice: refused.
    let same = dir.path().join(".").join("p.4242.heap");
    let out = poolmalloc().arg("prof").arg(&first).arg(&same).assert().failure().code(1).get_output().clone();
    let text = one_error_line(&out.stderr);
    assert!(text.contains("is given twice"), "{text}");
    // A bad second file fails the whole command.
    let bad = dir.path().join("bad.heap");
    fs::write(&bad, "nope\n").unwrap();
    let out = poolmalloc()
        .arg("prof")
        .arg(&first)
        .arg(&bad)
        .arg("--out")
        .arg(dir.path().join("none"))
        .assert()
        .failure()
        .get_output()
        .clone();
    let text = one_error_line(&out.stderr);
    assert!(text.contains(&format!("{}: not a poolmalloc heap profile", bad.display())), "{text}");
    assert!(!dir.path().join("none.pb.gz").exists());
}

#[test]
fn prof_writes_where_out_says_and_an_empty_live_graph_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("freed.heap");
    let text = format!(
        "poolmalloc heap profile 1\ninterval 4096\nstack 3 12288 0 0 {}\nmaps\n{}",
        pc_in(small_site),
        fs::read_to_string("/proc/self/maps").unwrap()
    );
    fs::write(&raw, text).unwrap();
    let prefix = dir.path().join("elsewhere");
    let out = poolmalloc().arg("prof").arg(&raw).arg("--out").arg(&prefix).assert().success().get_output().clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("0 B live at exit"), "{stderr}");
    assert!(stderr.contains("elsewhere.svg has no graph, only the message: No sampled allocation"), "{stderr}");
    let svg = fs::read_to_string(dir.path().join("elsewhere.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("No sampled allocation was still live at exit"));
    let alloc = fs::read_to_string(dir.path().join("elsewhere.alloc.svg")).unwrap();
    assert!(alloc.contains("profile::small_site"));
    assert!(!dir.path().join("freed.svg").exists());
}

#[test]
fn prof_rejects_a_bad_file_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.heap");
    fs::write(&bad, "heap profile: 1: 2 [3: 4] @ heap\n").unwrap();
    let out = poolmalloc().arg("prof").arg(&bad).assert().failure().code(1).get_output().clone();
    let text = one_error_line(&out.stderr);
    assert!(text.contains(&format!("{}: not a poolmalloc heap profile", bad.display())), "{text}");

    fs::write(&bad, "poolmalloc heap profile 1\ninterval 4096\nbogus 1 2\nmaps\n").unwrap();
    let out = poolmalloc().arg("prof").arg(&bad).assert().failure().get_output().clone();
    let text = one_error_line(&out.stderr);
    assert!(text.contains(&format!("{}: line 3: unknown record `bogus`", bad.display())), "{text}");

    let out = poolmalloc().arg("prof").arg(dir.path().join("missing.heap")).assert().failure().get_output().clone();
    let text = one_error_line(&out.stderr);
    assert!(text.contains("cannot read") && text.contains("missing.heap"), "{text}");
    // Nothing was written for the bad file.
    assert!(!dir.path().join("bad.pb.gz").exists());
}

#[test]
fn run_reports_an_unwritable_profile_before_running_the_program() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let out = poolmalloc()
        .args(["run", "--profile", "/proc/nonexistent/x", "--", "sh", "-c", "touch \"$0\""])
        .arg(&marker)
        .assert()
        .failure()
        .code(1)
        .get_output()
        .clone();
    let text = one_error_line(&out.stderr);
    assert!(text.contains("cannot write the profile /proc/nonexistent/x.pb.gz: No such file or directory"), "{text}");
    assert!(!marker.exists(), "the program ran");
}

#[test]
fn run_profile_sets_the_environment_and_converts_the_childs_profile() {
    library();
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("fixture.heap");
    raw_profile(&fixture);
    // A raw profile from an earlier run: not listed.
    fs::write(dir.path().join("out.1.heap"), "old").unwrap();
    // The program writes the raw profiles a profiled process and one of its
    // children would, then dies by SIGKILL so that no exit handler of a
    // preloaded profiler overwrites them.
    let script = "echo \"$POOLMALLOC_PROF $POOLMALLOC_PROF_SAMPLE $POOLMALLOC_PROF_PREFIX\"; \
                  cp \"$0\" \"$POOLMALLOC_PROF_PREFIX.$$.heap\"; cp \"$0\" \"$POOLMALLOC_PROF_PREFIX.99999999.heap\"; \
                  kill -KILL $$";
    let out = poolmalloc()
        .current_dir(dir.path())
        .args(["run", "--profile", "out", "--prof-sample", "4096", "--top", "2", "--", "sh", "-c", script])
        .arg(&fixture)
        .assert()
        .code(128 + 9)
        .get_output()
        .clone();
    let prefix = std::path::absolute(dir.path().join("out")).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("1 4096 {}\n", prefix.display()));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(stderr.contains("`sh` was killed by SIGKILL"), "{stderr}");
    assert!(stderr.contains("poolmalloc: heap profile of `sh` from"), "{stderr}");
    let rows = table_rows(&stderr);
    assert_eq!(rows.len(), 2, "{stderr}");
    assert_eq!(rows[0].last().unwrap(), "profile::leaky_site", "{stderr}");
    assert!(!stderr.contains("Live at exit:"), "no --leaks: {stderr}");
    for ext in ["pb.gz", "svg", "alloc.svg"] {
        assert!(dir.path().join(format!("out.{ext}")).is_file(), "out.{ext}: {stderr}");
    }
    assert!(stderr.contains(&format!("poolmalloc prof {}.99999999.heap", prefix.display())), "{stderr}");
    assert!(!stderr.contains("out.1.heap"), "{stderr}");
    assert!(fs::read_to_string(dir.path().join("out.svg")).unwrap().contains("profile::leaky_site"));
}

#[test]
fn run_profile_with_leaks_prints_the_leak_report() {
    library();
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("fixture.heap");
    raw_profile(&fixture);
    let prefix = dir.path().join("leaks");
    let out = poolmalloc()
        .arg("run")
        .arg("--profile")
        .arg(&prefix)
        .args(["--leaks", "--", "sh", "-c", "cp \"$0\" \"$POOLMALLOC_PROF_PREFIX.$$.heap\"; kill -KILL $$"])
        .arg(&fixture)
        .assert()
        .code(128 + 9)
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let leaks = &stderr[stderr.find("Live at exit:").expect("no leak section")..];
    assert!(leaks.contains("4.5 MiB in 5 objects (100.0%)\n      #0 profile::leaky_site ("), "{stderr}");
}

#[test]
fn run_profile_says_when_no_profile_was_written() {
    library();
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("none");
    let out = poolmalloc()
        .arg("run")
        .arg("--profile")
        .arg(&prefix)
        .args(["--", "sh", "-c", "kill -KILL $$"])
        .assert()
        .code(128 + 9)
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("poolmalloc: no heap profile: "), "{stderr}");
    assert!(stderr.contains(".heap was not written: `sh` was killed by SIGKILL"), "{stderr}");
    assert!(!dir.path().join("none.pb.gz").exists(), "{stderr}");
}

#[test]
fn run_profile_merges_the_profiles_of_the_copies_of_the_allocator() {
    library();
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("first.heap"), dir.path().join("second.heap"));
    raw_profile(&first);
    second_raw_profile(&second);
    // The program writes what a process with two copies of the allocator
    // would, a third file as an earlier process with its pid would have
    // left (dated 2000), and two files of a child; then it dies by SIGKILL
    // so that no exit handler of the preloaded library writes more.
    let script = "p=$POOLMALLOC_PROF_PREFIX; cp \"$0\" \"$p.$$.heap\"; cp \"$1\" \"$p.$$.2.heap\"; \
                  cp \"$0\" \"$p.$$.3.heap\"; touch -d @946684800 \"$p.$$.3.heap\"; \
                  cp \"$0\" \"$p.99999999.heap\"; cp \"$1\" \"$p.99999999.2.heap\"; kill -KILL $$";
    let prefix = dir.path().join("out");
    let out = poolmalloc()
        .arg("run")
        .arg("--profile")
        .arg(&prefix)
        .args(["--top", "3", "--leaks", "--", "sh", "-c", script])
        .arg(&first)
        .arg(&second)
        .assert()
        .code(128 + 9)
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let p = prefix.display().to_string();
    let from = format!("poolmalloc: heap profile of `sh` from {p}.");
    let pid: String =
        stderr[stderr.find(&from).expect(&stderr) + from.len()..].chars().take_while(char::is_ascii_digit).collect();
    assert!(
        stderr.contains(&format!(
            "{from}{pid}.heap, {p}.{pid}.2.heap (one raw profile per copy of the allocator in the process), merged:"
        )),
        "{stderr}"
    );
    assert_merged(&stderr, &prefix);
    assert!(
        stderr.contains(&format!("poolmalloc: note: left out {p}.{pid}.3.heap: it is older than this run")),
        "{stderr}"
    );
    // The child's two files, in one command (`cp` and `touch` write their
    // own raw profiles too, under the preloaded library).
    assert!(stderr.contains("more raw heap profile(s), written by"), "{stderr}");
    assert!(stderr.contains(&format!("\n  poolmalloc prof {p}.99999999.heap {p}.99999999.2.heap\n")), "{stderr}");
    assert!(!stderr.contains(&format!("prof {p}.{pid}.")), "the program's own files are not listed: {stderr}");
}
