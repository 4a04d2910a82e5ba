//! Bad-input cases chosen by the fuzzer, each in a forked child that must
//! end in the documented report and SIGABRT. C cases use
//! `$POOLMALLOC_FUZZ_LIB`, or `target/release/libpoolmalloc.so`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poolmalloc_reliability::bad::{self, Case};
use std::path::PathBuf;

fuzz_target!(|case: Case| {
    let lib = std::env::var_os("POOLMALLOC_FUZZ_LIB")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/release/libpoolmalloc.so"));
    if let Err(e) = bad::run(case, Some(&lib)) {
        panic!("{e}");
    }
});
