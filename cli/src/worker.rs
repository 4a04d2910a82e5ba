//! The worker: the child process that runs one workload with one allocator
//! and prints its [`Outcome`](crate::workloads::Outcome) as one JSON line.
//!
//! The parent reads the line and reaps the worker with `wait4`, so the peak
//! RSS it reports belongs to this one workload and allocator (plus the
//! harness's fixed baseline, measured by [`baseline`]).

use crate::alloc::{with_allocator, Allocator};
use crate::cli::WorkerArgs;
use crate::workloads::{self, Params, Runner};
use anyhow::{anyhow, bail, Result};
use clap::ValueEnum;
use std::process::ExitCode;

/// Exit status of a worker whose workload found a corrupted block.
pub const CORRUPTION_STATUS: u8 = 3;

pub fn main(args: &WorkerArgs) -> Result<ExitCode> {
    let Some(workload) = workloads::find(&args.workload) else {
        bail!("unknown workload `{}`; valid workloads: {}", args.workload, workloads::names());
    };
    let Runner::InProcess(id) = workload.runner else {
        bail!("workload `{}` does not run in a worker", workload.name);
    };
    let variant = workload.variant(args.variant.as_deref()).ok_or_else(|| {
        anyhow!("workload `{}` has no case `{}`", workload.name, args.variant.as_deref().unwrap_or(""))
    })?;
    let params = Params { size: args.size, threads: args.threads.max(1), variant: variant.name };
    let result = match (Allocator::from_str(&args.allocator, false), variant.api(&args.allocator)) {
        (Ok(allocator), _) if variant.allocators => with_allocator!(allocator, |a| workloads::run(id, a, &params)),
        (_, Some(api)) => workloads::run_api(id, api, &params),
        _ => {
            let mut valid: Vec<&str> = Vec::new();
            if variant.allocators {
                valid.extend(Allocator::EVERY.iter().map(|a| a.name()));
            }
            valid.extend(variant.apis.iter().map(|a| a.name()));
            bail!("`{}` cannot run {}; valid here: {}", args.allocator, workload.label(variant), valid.join(", "));
        }
    };
    match result {
        Ok(outcome) => {
            println!("{}", serde_json::to_string(&outcome)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(message) => {
            eprintln!("poolmalloc: error: {message}");
            Ok(ExitCode::from(CORRUPTION_STATUS))
        }
    }
}

/// Does no work: the parent measures the harness's own peak RSS with it.
pub fn baseline() -> Result<ExitCode> {
    println!("{}", serde_json::to_string(&workloads::Outcome { seconds: 0.0, ops: 0, checksum: 0, memory: None })?);
    Ok(ExitCode::SUCCESS)
}
