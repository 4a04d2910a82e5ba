//! The workload registry, and what the workloads share.
//!
//! Each in-process workload is a generic function over the allocator under
//! test, `A: GlobalAlloc + Sync`, called directly (never through the global
//! allocator). It times only its own loop and returns an [`Outcome`] whose
//! checksum is built from the memory it allocated, so no work can be
//! optimised away and a wrong block shows up as a different checksum.
//! Setup that is the same for every allocator (tables of slots, threads'
//! stacks, channels) comes from the harness's own allocator, `System`.

pub mod false_sharing;
pub mod free_then_idle;
pub mod handoff;
pub mod large;
pub mod many_medium;
pub mod migrate;
pub mod network;
pub mod numeric;
pub mod pareto;
pub mod producer_consumer;
pub mod python;
pub mod random_replacement;
pub mod random_sizes;
pub mod server;
pub mod server_buffers;
pub mod strings;
pub mod thread_leak;
pub mod typed;

use crate::cli::Size;
use crate::syscalls;
use serde::{Deserialize, Serialize};
use std::alloc::{GlobalAlloc, Layout};
use std::fs::File;
use std::io::Read;
use std::time::Instant;

/// What a workload's figure measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Wall time of a fixed amount of work; lower is better.
    Seconds,
    /// Operations per second over a fixed time; higher is better.
    OpsPerSec,
}

/// How many threads a case runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    One,
    /// The `--threads` count.
    All,
}

/// One measured case of a workload.
#[derive(Debug)]
pub struct Variant {
    /// Empty for a workload with a single case.
    pub name: &'static str,
    pub threads: Threads,
    /// Whether the in-process allocators run this case through `GlobalAlloc`.
    pub allocators: bool,
    /// poolmalloc APIs this case also measures, as comparators of their own.
    pub apis: &'static [Api],
    /// The case of the same workload (by variant name) whose `poolmalloc`
    /// row this case's ratios are taken against, when it has none itself.
    pub reference: Option<&'static str>,
}

impl Variant {
    /// A case that every in-process allocator runs, and nothing else.
    pub const fn new(name: &'static str, threads: Threads) -> Variant {
        Variant { name, threads, allocators: true, apis: &[], reference: None }
    }

    /// The API of this case named `name`.
    pub fn api(&self, name: &str) -> Option<Api> {
        self.apis.iter().copied().find(|a| a.name() == name)
    }
}

/// A comparator that is not an allocator: a poolmalloc API that a case
/// measures next to the allocators, doing the same work. Only the cases
/// that list it run it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// `poolmalloc::TypedPool<T>` in place of `Box::new` and drop.
    TypedPool,
    /// One shared `poolmalloc::BufferPool` in place of plain allocation.
    BufferPool,
}

impl Api {
    pub fn name(self) -> &'static str {
        match self {
            Api::TypedPool => "typed-pool",
            Api::BufferPool => "buffer-pool",
        }
    }

    /// How it runs, for the reports.
    pub fn how(self) -> &'static str {
        match self {
            Api::TypedPool => "poolmalloc::TypedPool<T> (slots from PoolMalloc), in a worker process",
            Api::BufferPool => "one shared poolmalloc::BufferPool (storage from PoolMalloc), in a worker process",
        }
    }
}

/// How a workload is run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runner {
    /// A worker process calls each in-process allocator through `GlobalAlloc`.
    InProcess(Id),
    /// CPython runs embedded scripts under each allocator; see [`python`].
    Python,
}

/// The in-process workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Id {
    Numeric,
    Strings,
    Server,
    ProducerConsumer,
    RandomSizes,
    Pareto,
    Migrate,
    FalseSharing,
    Large,
    ThreadLeak,
    Network,
    Typed,
    ServerBuffers,
    Handoff,
    ManyMedium,
    RandomReplacement,
    FreeThenIdle,
}

#[derive(Debug)]
pub struct Workload {
    pub name: &'static str,
    /// What it stresses, one line.
    pub stresses: &'static str,
    pub metric: Metric,
    /// Whether every allocator must produce the same checksum (seeded work
    /// whose result does not depend on thread scheduling).
    pub deterministic: bool,
    pub variants: &'static [Variant],
    pub runner: Runner,
    /// Whether the suite also counts the memory system calls of each
    /// comparator's measured loop, in one extra untimed run (see
    /// [`crate::syscalls`]).
    pub syscalls: bool,
    /// For a workload that reads its own memory figures (see [`Memory`]):
    /// what its live bytes and RSS readings are, one line for the report.
    pub memory: Option<&'static str>,
}

const SINGLE: &[Variant] = &[Variant::new("", Threads::One)];
const MULTI: &[Variant] = &[Variant::new("", Threads::All)];

/// Every workload, in the order the suite runs them.
pub const WORKLOADS: &[Workload] = &[
    Workload {
        name: "numeric",
        stresses: "single-thread small-object speed and LIFO reuse (bignum temporaries, 16-64 B)",
        metric: Metric::Seconds,
        deterministic: true,
        variants: SINGLE,
        runner: Runner::InProcess(Id::Numeric),
        syscalls: false,
        memory: None,
    },
    Workload {
        name: "strings",
        stresses: "realloc within and across size classes, fragmentation from mixed free order",
        metric: Metric::Seconds,
        deterministic: true,
        variants: SINGLE,
        runner: Runner::InProcess(Id::Strings),
        syscalls: false,
        memory: None,
    },
    Workload {
        name: "server",
        stresses: "cross-thread frees and thread churn: tables of 8-1000 B blocks handed to new threads",
        metric: Metric::Seconds,
        deterministic: true,
        variants: MULTI,
        runner: Runner::InProcess(Id::Server),
        syscalls: false,
        memory: None,
    },
    Workload {
        name: "producer-consumer",
        stresses: "the remote-free path under a steady stream of 64 B blocks",
        metric: Metric::Seconds,
        deterministic: true,
        variants: MULTI,
        runner: Runner::InProcess(Id::ProducerConsumer),
        syscalls: false,
        memory: None,
    },
    Workload {
        name: "random-sizes",
        stresses: "mixed size classes, 4 B-32 KiB with inverse-square sizes, for a fixed time",
        metric: Metric::OpsPerSec,
        deterministic: false,
        variants: MULTI,
        runner: Runner::InProcess(Id::RandomSizes),
        syscalls: false,
        memory: None,
    },
    Workload {
        name: "pareto",
        stresses: "scaling from 1 to N threads with Pareto sizes up to 1 KiB",
        metric: Metric::Seconds,
        deterministic: true,
        variants: &[Variant::new("1t", Threads::One), Variant::new("nt", Threads::All)],
        runner: Runner::InProcess(Id::Pareto),
        syscalls: false,
        memory: None,
    },
    Workload {
        name: "migrate",
        stresses:
            "abandoned heaps and reclaiming: power-of-two blocks reallocated and moved between short-lived threads",
        metric: Metric::Seconds,
        deterministic: false,
        variants: MULTI,
        runner: Runner::InProcess(Id::Migrate),
        syscalls: false,
        memory: None,
    },
    Workload {
        name: "false-sharing",
        stresses: "passive and active false sharing of small blocks written hard by several threads",
        metric: Metric::Seconds,
        deterministic: true,
        variants: &[Variant::new("passive", Threads::All), Variant::new("active", Threads::All)],
        runner: Runner::InProcess(Id::FalseSharing),
        syscalls: false,
        memory: None,
    },
    Workload {
        name: "large",
        stresses: "the large path: 5-25 MiB blocks allocated, grown and freed; mremap; giving memory back",
        metric: Metric::Seconds,
        deterministic: true,
        variants: SINGLE,
        runner: Runner::InProcess(Id::Large),
        syscalls: false,
        memory: None,
    },
    Workload {
        name: "thread-leak",
        stresses: "threads exiting with live blocks freed later elsewhere; peak RSS must stay flat",
        metric: Metric::Seconds,
        deterministic: true,
        variants: MULTI,
        runner: Runner::InProcess(Id::ThreadLeak),
        syscalls: false,
        memory: None,
    },
    Workload {
        name: "network",
        stresses: "1.5, 9 and 64 KiB packet buffers filled and handed to another thread",
        metric: Metric::Seconds,
        deterministic: true,
        // Plain allocation under every allocator; then the same packets
        // from one `BufferPool`. Its storage always comes from PoolMalloc,
        // whatever the allocator under test, so it runs once and is compared
        // with the allocators' rows of the `malloc` case.
        variants: &[
            Variant::new("malloc", Threads::All),
            Variant {
                name: "bufferpool",
                threads: Threads::All,
                allocators: false,
                apis: &[Api::BufferPool],
                reference: Some("malloc"),
            },
        ],
        runner: Runner::InProcess(Id::Network),
        syscalls: false,
        memory: None,
    },
    Workload {
        name: "typed",
        stresses: "TypedPool<T> for a 48 B struct, against Box::new and drop through each allocator",
        metric: Metric::Seconds,
        deterministic: true,
        variants: &[Variant {
            name: "",
            threads: Threads::One,
            allocators: true,
            apis: &[Api::TypedPool],
            reference: None,
        }],
        runner: Runner::InProcess(Id::Typed),
        syscalls: false,
        memory: None,
    },
    Workload {
        name: "server-buffers",
        stresses: "1-64 KiB connection buffers passed around a ring of threads, checked, sometimes grown, freed",
        metric: Metric::Seconds,
        deterministic: true,
        variants: MULTI,
        runner: Runner::InProcess(Id::ServerBuffers),
        syscalls: true,
        memory: None,
    },
    Workload {
        name: "handoff",
        stresses: "arrays of live blocks inherited by new threads each generation: frees of exited threads' blocks",
        metric: Metric::Seconds,
        deterministic: true,
        variants: &[Variant::new("small", Threads::All), Variant::new("medium", Threads::All)],
        runner: Runner::InProcess(Id::Handoff),
        syscalls: true,
        memory: None,
    },
    Workload {
        name: "many-medium",
        stresses: "20,000-100,000 live 40,000 B blocks at once, then freed in random order: mappings per block",
        metric: Metric::Seconds,
        deterministic: true,
        variants: SINGLE,
        runner: Runner::InProcess(Id::ManyMedium),
        syscalls: true,
        memory: None,
    },
    Workload {
        name: "random-replacement",
        stresses: "fragmentation: a table of slots kept half full, random slots freed and filled, one thread",
        metric: Metric::Seconds,
        deterministic: true,
        variants: &[
            Variant::new("1-16", Threads::One),
            Variant::new("1-1024", Threads::One),
            Variant::new("inv-square", Threads::One),
        ],
        runner: Runner::InProcess(Id::RandomReplacement),
        syscalls: false,
        memory: Some(random_replacement::MEMORY),
    },
    Workload {
        name: "free-then-idle",
        stresses: "memory given back without another call: 5% of a burst of small blocks kept, then idle or fast path",
        metric: Metric::Seconds,
        deterministic: true,
        variants: &[Variant::new("sleep", Threads::One), Variant::new("fast", Threads::One)],
        runner: Runner::InProcess(Id::FreeThenIdle),
        syscalls: false,
        memory: Some(free_then_idle::MEMORY),
    },
    Workload {
        name: "python",
        stresses: "the allocator as CPython's object allocator (PYTHONMALLOC=malloc and LD_PRELOAD)",
        metric: Metric::Seconds,
        deterministic: true,
        variants: python::VARIANTS,
        runner: Runner::Python,
        syscalls: false,
        memory: None,
    },
];

/// The workload with this name.
pub fn find(name: &str) -> Option<&'static Workload> {
    WORKLOADS.iter().find(|w| w.name == name)
}

/// The names of every workload, for error messages.
pub fn names() -> String {
    WORKLOADS.iter().map(|w| w.name).collect::<Vec<_>>().join(", ")
}

/// The workloads `--only` selects, in suite order; all of them for an empty list.
pub fn select(only: &[String]) -> anyhow::Result<Vec<&'static Workload>> {
    let mut wanted = Vec::new();
    for name in only.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        if find(name).is_none() {
            anyhow::bail!("unknown workload `{name}`; valid workloads: {}", names());
        }
        wanted.push(name);
    }
    Ok(WORKLOADS.iter().filter(|w| wanted.is_empty() || wanted.contains(&w.name)).collect())
}

impl Workload {
    /// The label of one case: `name` or `name/variant`.
    pub fn label(&self, variant: &Variant) -> String {
        if variant.name.is_empty() {
            self.name.to_string()
        } else {
            format!("{}/{}", self.name, variant.name)
        }
    }

    pub fn variant(&self, name: Option<&str>) -> Option<&'static Variant> {
        self.variants.iter().find(|v| v.name == name.unwrap_or(""))
    }
}

/// What a worker is asked to do.
#[derive(Clone, Debug)]
pub struct Params {
    pub size: Size,
    pub threads: usize,
    pub variant: &'static str,
}

impl Params {
    /// `quick` or `full`, by size.
    pub fn pick<T>(&self, quick: T, full: T) -> T {
        match self.size {
            Size::Quick => quick,
            Size::Full => full,
        }
    }
}

/// What a worker reports: one JSON line on stdout.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Outcome {
    /// Wall time of the measured loop.
    pub seconds: f64,
    /// Allocations (or operations) the loop made.
    pub ops: u64,
    /// A value built from the blocks' contents.
    pub checksum: u64,
    /// Memory figures the workload read itself; most workloads leave this
    /// empty and have only the peak RSS the harness reads from `wait4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
}

/// Memory figures a workload reads itself, at moments it chooses, to stand
/// next to the peak RSS the harness reads from `wait4`. Each workload that
/// fills them in says in its [`Workload::memory`] line which moments those are. The
/// RSS figures are raw: like the peak RSS, they include the worker's own
/// memory (the harness's baseline and its tables from `System`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct Memory {
    /// Requested bytes (the sum of the layouts' sizes) the workload held
    /// live.
    pub live_bytes: u64,
    /// The process's RSS, read from `/proc/self/statm`.
    pub rss_after_bytes: u64,
    /// The last RSS reading of a workload that samples RSS over time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_rss_bytes: Option<u64>,
}

impl Outcome {
    pub fn ops_per_sec(&self) -> f64 {
        if self.seconds > 0.0 {
            self.ops as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// A workload's verdict: the figures, or a description of a corrupted block.
pub type WorkResult = Result<Outcome, String>;

/// Runs an in-process workload with allocator `a`.
pub fn run<A: GlobalAlloc + Sync>(id: Id, a: &'static A, p: &Params) -> WorkResult {
    match id {
        Id::Numeric => numeric::run(a, p),
        Id::Strings => strings::run(a, p),
        Id::Server => server::run(a, p),
        Id::ProducerConsumer => producer_consumer::run(a, p),
        Id::RandomSizes => random_sizes::run(a, p),
        Id::Pareto => pareto::run(a, p),
        Id::Migrate => migrate::run(a, p),
        Id::FalseSharing => false_sharing::run(a, p),
        Id::Large => large::run(a, p),
        Id::ThreadLeak => thread_leak::run(a, p),
        Id::Network => network::run(a, p),
        Id::Typed => typed::run(a, p),
        Id::ServerBuffers => server_buffers::run(a, p),
        Id::Handoff => handoff::run(a, p),
        Id::ManyMedium => many_medium::run(a, p),
        Id::RandomReplacement => random_replacement::run(a, p),
        Id::FreeThenIdle => free_then_idle::run(a, p),
    }
}

/// Runs an in-process workload with one of poolmalloc's APIs.
pub fn run_api(id: Id, api: Api, p: &Params) -> WorkResult {
    match (id, api) {
        (Id::Typed, Api::TypedPool) => typed::run_pool(p),
        (Id::Network, Api::BufferPool) => network::run_buffer_pool(p),
        _ => Err(format!("{} does not run this workload", api.name())),
    }
}

// ---------------------------------------------------------------------------
// Shared helpers.

/// The seed every workload derives its generators from.
pub const SEED: u64 = 0x706f_6f6c_6d61_6c6c;

/// A layout the workloads build from constants.
pub fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).expect("workload sizes and alignments are valid")
}

/// Allocates a block from `a`; a null result ends the process through
/// `handle_alloc_error`, which the harness reports as a failed run.
#[inline(always)]
pub fn alloc<A: GlobalAlloc + ?Sized>(a: &A, layout: Layout) -> *mut u8 {
    assert!(layout.size() != 0);
    // SAFETY: the layout has a non-zero size.
    let p = unsafe { a.alloc(layout) };
    if p.is_null() {
        std::alloc::handle_alloc_error(layout);
    }
    p
}

/// Resizes a block of `a`; a null result ends the process.
///
/// # Safety
/// `p` must be a live block of `a` allocated with `layout`, and `new_size`
/// must be non-zero.
#[inline(always)]
pub unsafe fn realloc<A: GlobalAlloc + ?Sized>(a: &A, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
    // SAFETY: by the caller.
    let q = unsafe { a.realloc(p, layout, new_size) };
    if q.is_null() {
        std::alloc::handle_alloc_error(self::layout(new_size, layout.align()));
    }
    q
}

/// A heap block handed between threads.
#[derive(Clone, Copy, Debug)]
pub struct SendPtr(pub *mut u8);

// SAFETY: a block belongs to whoever holds its pointer; the workloads hand
// each block to exactly one thread at a time, through joins, channels or
// atomic slots that order the accesses.
unsafe impl Send for SendPtr {}

/// Mixes a value into a checksum (order-sensitive).
#[inline(always)]
pub fn mix(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(0x0000_0100_0000_01B3).rotate_left(17)
}

/// A pattern word derived from a value, to write into blocks and check.
#[inline(always)]
pub fn cookie(v: u64) -> u64 {
    (v ^ 0x5DEE_CE66_D1CE_4E5B).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (v >> 29)
}

/// Times a closure that does the measured work. The loop is also marked
/// for a tracer that counts its system calls; the marks are not timed.
pub fn timed<T>(f: impl FnOnce() -> T) -> (f64, T) {
    syscalls::mark(syscalls::Mark::Start);
    let start = Instant::now();
    let value = f();
    let seconds = start.elapsed().as_secs_f64();
    syscalls::mark(syscalls::Mark::Stop);
    (seconds, value)
}

/// The resident set size of this process in bytes: the resident pages of
/// `/proc/self/statm` times the page size. The file is read into a buffer
/// on the stack, so this allocates from no allocator.
pub fn resident_bytes() -> Result<u64, String> {
    const STATM: &str = "/proc/self/statm";
    let fail = |why: String| format!("cannot read {STATM}: {why}");
    let mut buf = [0u8; 128];
    let n = File::open(STATM).and_then(|mut f| f.read(&mut buf)).map_err(|e| fail(e.to_string()))?;
    let pages = std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(|text| text.split_ascii_whitespace().nth(1))
        .and_then(|field| field.parse::<u64>().ok())
        .ok_or_else(|| fail("no resident page count".to_string()))?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let page = u64::try_from(page).map_err(|_| fail("no page size".to_string()))?;
    Ok(pages * page)
}

/// Joins a worker thread, turning a panic into an error message.
pub fn join<T>(h: std::thread::JoinHandle<T>) -> Result<T, String> {
    h.join().map_err(|_| "a workload thread panicked".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_variants_resolve() {
        for (i, w) in WORKLOADS.iter().enumerate() {
            assert!(WORKLOADS[..i].iter().all(|o| o.name != w.name));
            assert!(!w.variants.is_empty());
            for v in w.variants {
                let name = if v.name.is_empty() { None } else { Some(v.name) };
                assert!(std::ptr::eq(w.variant(name).unwrap(), v));
            }
        }
    }

    #[test]
    fn select_rejects_unknown_names() {
        assert_eq!(select(&[]).unwrap().len(), WORKLOADS.len());
        let only = select(&["server".into(), "numeric".into()]).unwrap();
        assert_eq!(only.iter().map(|w| w.name).collect::<Vec<_>>(), ["numeric", "server"]);
        let err = select(&["nope".into()]).unwrap_err().to_string();
        assert!(err.contains("unknown workload `nope`") && err.contains("numeric"), "{err}");
    }

    /// Every in-process workload runs at quick size with poolmalloc and the
    /// system allocator, and deterministic ones agree on the checksum.
    #[test]
    fn workloads_agree_across_allocators() {
        for w in WORKLOADS {
            let Runner::InProcess(id) = w.runner else { continue };
            for v in w.variants.iter().filter(|v| v.allocators) {
                let p = Params { size: Size::Quick, threads: 2, variant: v.name };
                let pm = run(id, &crate::alloc::POOLMALLOC, &p).unwrap();
                let sys = run(id, &crate::alloc::SYSTEM, &p).unwrap();
                assert!(pm.seconds > 0.0 && pm.ops > 0, "{}", w.label(v));
                if w.deterministic {
                    assert_eq!(pm.checksum, sys.checksum, "{}", w.label(v));
                    assert_eq!(pm.ops, sys.ops, "{}", w.label(v));
                }
                // A workload that explains memory figures reads them, and
                // the same work holds the same bytes live.
                for o in [&pm, &sys] {
                    assert_eq!(o.memory.is_some(), w.memory.is_some(), "{}", w.label(v));
                    assert!(o.memory.is_none_or(|m| m.live_bytes > 0 && m.rss_after_bytes > 0), "{}", w.label(v));
                }
                assert_eq!(pm.memory.map(|m| m.live_bytes), sys.memory.map(|m| m.live_bytes), "{}", w.label(v));
            }
        }
    }

    /// The worker's line carries memory figures only when there are some,
    /// and a line without them still reads.
    #[test]
    fn memory_is_optional_in_the_worker_line() {
        let plain = Outcome { seconds: 1.0, ops: 2, checksum: 3, memory: None };
        let line = serde_json::to_string(&plain).unwrap();
        assert!(!line.contains("memory"), "{line}");
        assert_eq!(serde_json::from_str::<Outcome>(r#"{"seconds":1.0,"ops":2,"checksum":3}"#).unwrap(), plain);
        let memory = Memory { live_bytes: 4, rss_after_bytes: 5, final_rss_bytes: None };
        let with = Outcome { memory: Some(memory), ..plain };
        let line = serde_json::to_string(&with).unwrap();
        assert!(!line.contains("final_rss_bytes"), "{line}");
        assert_eq!(serde_json::from_str::<Outcome>(&line).unwrap(), with);
    }

    #[test]
    fn resident_bytes_reads_this_process() {
        let rss = resident_bytes().unwrap();
        assert!(rss > 0 && rss % 4096 == 0, "{rss}");
    }

    /// Every API case does the same work as the allocators' case it is
    /// compared with: the same operations and checksum.
    #[test]
    fn apis_agree_with_the_allocators() {
        for w in WORKLOADS {
            let Runner::InProcess(id) = w.runner else { continue };
            for v in w.variants {
                for &api in v.apis {
                    let name = v.reference.unwrap_or(v.name);
                    let r = w.variant(if name.is_empty() { None } else { Some(name) }).unwrap();
                    assert!(r.allocators, "{}", w.label(v));
                    let p = Params { size: Size::Quick, threads: 2, variant: v.name };
                    let got = run_api(id, api, &p).unwrap();
                    let p = Params { variant: r.name, ..p };
                    let want = run(id, &crate::alloc::POOLMALLOC, &p).unwrap();
                    assert!(got.seconds > 0.0, "{}", w.label(v));
                    assert_eq!((got.ops, got.checksum), (want.ops, want.checksum), "{} {}", w.label(v), api.name());
                }
            }
        }
    }
}
