//! Callgrind client requests from Rust, and reading callgrind's output.
//!
//! A client request is a special no-op instruction sequence that valgrind
//! recognises; outside valgrind it does nothing. poolmalloc exports the
//! sequence of `<valgrind/valgrind.h>` for x86-64 (its `valgrind` feature
//! uses it for memcheck), so the Rust front can switch collection on and off
//! around exactly the code it measures, as the C program does with
//! `CALLGRIND_TOGGLE_COLLECT`.

use std::collections::BTreeMap;

/// `VG_USERREQ_TOOL_BASE('C', 'T')`.
const BASE: usize = (b'C' as usize) << 24 | (b'T' as usize) << 16;
const TOGGLE_COLLECT: usize = BASE + 2;
const DUMP_STATS_AT: usize = BASE + 3;
const START_INSTRUMENTATION: usize = BASE + 4;
const STOP_INSTRUMENTATION: usize = BASE + 5;

/// One request with one argument, through poolmalloc's client-request
/// sequence.
#[inline(always)]
fn client_request(request: usize, arg1: usize) -> usize {
    poolmalloc::internals::client_request(0, &[request, arg1, 0, 0, 0, 0])
}

/// Whether client requests are implemented on this architecture.
pub const SUPPORTED: bool = cfg!(target_arch = "x86_64");

/// Switches event collection on if off, off if on.
#[inline(always)]
pub fn toggle_collect() {
    client_request(TOGGLE_COLLECT, 0);
}

pub fn start_instrumentation() {
    client_request(START_INSTRUMENTATION, 0);
}

pub fn stop_instrumentation() {
    client_request(STOP_INSTRUMENTATION, 0);
}

/// Writes the counts since the last dump as a part named `name`, and resets them.
pub fn dump_stats_at(name: &std::ffi::CStr) {
    client_request(DUMP_STATS_AT, name.as_ptr() as usize);
}

/// The instruction count of every part of a callgrind output file written
/// with `--combine-dumps=yes`, by the name given to `DUMP_STATS_AT`.
pub fn parts(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut name: Option<String> = None;
    for line in text.lines() {
        if line.starts_with("part:") {
            name = None;
        } else if let Some(trigger) = line.strip_prefix("desc: Trigger: Client Request: ") {
            name = Some(trigger.trim().to_string());
        } else if let Some(total) = line.strip_prefix("totals:") {
            if let (Some(n), Some(ir)) = (name.take(), total.split_whitespace().next().and_then(|t| t.parse().ok())) {
                out.insert(n, ir);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_no_ops_outside_valgrind() {
        toggle_collect();
        toggle_collect();
        dump_stats_at(c"test");
    }

    #[test]
    fn parses_combined_dumps() {
        let text = "version: 1\ncmd: ./x\npart: 1\ndesc: I1 cache:\ndesc: Trigger: Client Request: malloc-16\n\
                    events: Ir\nsummary: 7666007\nfn=(1) f\n3 5\ntotals: 7666007\n\npart: 2\n\
                    desc: Trigger: Client Request: free-16\nsummary: 11373000\ntotals: 11373000\n\npart: 3\n\
                    desc: Trigger: Program termination\nsummary: 184467440736\ntotals: 0\n";
        let p = parts(text);
        assert_eq!(p.len(), 2);
        assert_eq!(p["malloc-16"], 7_666_007);
        assert_eq!(p["free-16"], 11_373_000);
    }
}
