//! The C ABI of `libpoolmalloc.so` against the shadow model. The library is
//! `$POOLMALLOC_FUZZ_LIB`, or `target/release/libpoolmalloc.so` (build it
//! first with `cargo build --release`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use poolmalloc_reliability::fronts::{CApi, C};
use poolmalloc_reliability::model::{self, Op};
use std::path::PathBuf;
use std::sync::OnceLock;

fn api() -> &'static CApi {
    static API: OnceLock<CApi> = OnceLock::new();
    API.get_or_init(|| {
        let path = std::env::var_os("POOLMALLOC_FUZZ_LIB")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("target/release/libpoolmalloc.so"));
        CApi::load(&path).unwrap_or_else(|e| panic!("load {}: {e}", path.display()))
    })
}

fuzz_target!(|ops: Vec<Op>| {
    if let Err(e) = model::run(&mut C::new(api()), &ops) {
        panic!("divergence: {e}");
    }
});
