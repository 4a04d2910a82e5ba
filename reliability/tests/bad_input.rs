//! Every bad-input case (see `poolmalloc_reliability::bad`) in a child
//! process: each must end in the documented report and `SIGABRT`.

use poolmalloc_reliability::{bad, cdylib};
use std::path::Path;

fn main() {
    let lib = cdylib::library(Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target dir"));
    let cases = bad::all_cases();
    let mut failed = Vec::new();
    for &case in &cases {
        if let Err(e) = bad::run(case, Some(lib)) {
            failed.push(e);
        }
    }
    for e in &failed {
        eprintln!("FAILED {e}\n");
    }
    println!(
        "bad input: {} cases, {} ended in the documented report and SIGABRT",
        cases.len(),
        cases.len() - failed.len()
    );
    assert!(failed.is_empty(), "{} of {} bad-input cases failed", failed.len(), cases.len());
}
