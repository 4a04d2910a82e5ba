//! What a person reads: the table of allocation sites, the leak report and
//! the flame graphs.

use super::raw::Counts;
use super::symbolize::{Frame, Symbolized};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

/// Function names, by prefix, of frames that are not the program's own:
/// the allocator, Rust's allocation shims, and the languages' standard
/// libraries (Rust's `std`, `core` and `alloc`; C++'s `std`), which
/// allocate on their caller's behalf as the C library does.
///
/// A stack's allocation site is its innermost frame that is the program's
/// own: frames are skipped from the innermost outwards while their
/// demangled name starts with one of these, is one of [`ALLOCATOR_NAMES`],
/// comes from one of [`ALLOCATOR_SOURCES`], or lies in one of
/// [`ALLOCATOR_OBJECTS`]. Only leading frames are skipped: a standard
/// library frame further out (`std::rt::lang_start`) stays in the stack.
pub const ALLOCATOR_PREFIXES: &[&str] = &[
    // poolmalloc itself: the Rust crate and the C library's exports.
    "poolmalloc::",
    "<poolmalloc::",
    "poolmalloc_capi::",
    "<poolmalloc_capi::",
    // The global-allocator shims rustc generates (newer compilers name
    // them `__rustc::__rust_alloc` and so on), and the default allocator.
    "__rustc::",
    "__rust_alloc",
    "__rust_realloc",
    "__rdl_",
    "__rg_",
    // Rust's standard libraries: `alloc` (Global, RawVec, Box, Vec, String,
    // the collections: `alloc::alloc::`, `alloc::raw_vec::` ...), `core`
    // (iterators collecting, formatting) and `std` (`std::alloc::`,
    // HashMap); their trait impls start with `<`. C++'s `std::` too.
    "alloc::",
    "<alloc::",
    "core::",
    "<core::",
    "std::",
    "<std::",
    // C++ operator new and delete, demangled.
    "operator new",
    "operator delete",
];

/// Source paths, matched against a frame's source file, of Rust's
/// standard libraries: their impls on primitive types demangle without
/// the crate's name (`<str>::repeat`, `<[T]>::to_vec`,
/// `<u64 as core::fmt::Display>::fmt`).
pub const ALLOCATOR_SOURCES: &[&str] = &["/library/alloc/src/", "/library/core/src/", "/library/std/src/"];

/// The C allocation entry points, by exact name (mangled C++ `operator new`
/// variants too, for files that could not be demangled).
pub const ALLOCATOR_NAMES: &[&str] = &[
    "malloc",
    "calloc",
    "realloc",
    "free",
    "posix_memalign",
    "aligned_alloc",
    "memalign",
    "valloc",
    "pvalloc",
    "reallocarray",
    "_Znwm",
    "_Znam",
    "_ZnwmRKSt9nothrow_t",
    "_ZnamRKSt9nothrow_t",
    "_ZnwmSt11align_val_t",
    "_ZnamSt11align_val_t",
    "_ZnwmSt11align_val_tRKSt9nothrow_t",
    "_ZnamSt11align_val_tRKSt9nothrow_t",
];

/// Object files (mapping basenames) whose frames are all skipped: the
/// allocator's C library, and the C library (whose own functions such as
/// `strdup` or `fopen` allocate on the caller's behalf).
pub const ALLOCATOR_OBJECTS: &[&str] = &["libpoolmalloc.so", "libc.so.6"];

/// What a stack is shown as when it has no frames at all.
pub const UNKNOWN: &str = "[unknown]";

fn is_allocator_frame(frame: &Frame, object: Option<&str>) -> bool {
    object.is_some_and(|o| ALLOCATOR_OBJECTS.contains(&o))
        || ALLOCATOR_NAMES.contains(&frame.function.as_str())
        || ALLOCATOR_PREFIXES.iter().any(|p| frame.function.starts_with(p))
        || frame.file.as_deref().is_some_and(|file| ALLOCATOR_SOURCES.iter().any(|s| file.contains(s)))
}

/// An object count: exact below 10 000, then `81.2k`, `2.05M`.
fn objects(n: u64) -> String {
    if n < 10_000 {
        n.to_string()
    } else {
        crate::format::count(n as f64)
    }
}

/// A stack's frames, innermost first, less the leading allocator frames.
/// A stack that is all allocator frames keeps its outermost one (the best
/// that is known of where it was called from); an empty stack stays empty.
pub fn user_frames<'a>(sym: &'a Symbolized, stack: &'a super::symbolize::Stack) -> Vec<&'a Frame> {
    let all: Vec<(&Frame, Option<&str>)> = sym.frames(stack).collect();
    match all.iter().position(|&(f, o)| !is_allocator_frame(f, o)) {
        Some(first) => all[first..].iter().map(|&(f, _)| f).collect(),
        None => all.last().map(|&(f, _)| f).into_iter().collect(),
    }
}

/// Totals over all stacks.
pub fn totals(sym: &Symbolized) -> Counts {
    let mut t = Counts::default();
    for s in &sym.stacks {
        t.add(&s.counts);
    }
    t
}

/// One row of the table of sites.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub name: String,
    /// Allocated bytes of the stacks whose site this is.
    pub flat_bytes: u64,
    /// Allocated objects of the stacks whose site this is.
    pub flat_objects: u64,
    /// Allocated bytes of the stacks in which the function appears anywhere.
    pub cum_bytes: u64,
}

/// Every function of the (allocator-stripped) stacks, by flat allocated
/// bytes, then cumulative, then name.
pub fn sites(sym: &Symbolized) -> Vec<Row> {
    let mut rows: HashMap<&str, Row> = HashMap::new();
    fn row<'a, 'r>(rows: &'r mut HashMap<&'a str, Row>, name: &'a str) -> &'r mut Row {
        rows.entry(name).or_insert_with(|| Row { name: name.to_string(), flat_bytes: 0, flat_objects: 0, cum_bytes: 0 })
    }
    for stack in &sym.stacks {
        let frames = user_frames(sym, stack);
        let c = &stack.counts;
        let site = row(&mut rows, frames.first().map_or(UNKNOWN, |f| f.function.as_str()));
        site.flat_bytes = site.flat_bytes.saturating_add(c.alloc_bytes);
        site.flat_objects = site.flat_objects.saturating_add(c.alloc_objects);
        let mut seen = HashSet::new();
        let names = frames.iter().map(|f| f.function.as_str());
        for name in names.chain(frames.is_empty().then_some(UNKNOWN)) {
            if seen.insert(name) {
                let r = row(&mut rows, name);
                r.cum_bytes = r.cum_bytes.saturating_add(c.alloc_bytes);
            }
        }
    }
    let mut rows: Vec<Row> = rows.into_values().collect();
    rows.sort_by(|a, b| {
        b.flat_bytes.cmp(&a.flat_bytes).then(b.cum_bytes.cmp(&a.cum_bytes)).then_with(|| a.name.cmp(&b.name))
    });
    rows
}

/// `512 B`, `1.5 KiB`, `12.3 MiB`, `1.02 GiB`.
pub fn bytes(b: u64) -> String {
    const K: f64 = 1024.0;
    let f = b as f64;
    if f < K {
        format!("{b} B")
    } else if f < K * K {
        format!("{:.1} KiB", f / K)
    } else if f < K * K * K {
        format!("{:.1} MiB", f / (K * K))
    } else {
        format!("{:.2} GiB", f / (K * K * K))
    }
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".to_string()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

/// `; 3 raw profiles merged` when `files` is more than one, else nothing.
fn merged(files: usize, separator: &str) -> String {
    if files > 1 {
        format!("{separator}{files} raw profiles merged")
    } else {
        String::new()
    }
}

/// The totals line, like jeprof's `Total: X MB`; `files` is how many raw
/// profiles it sums.
pub fn totals_line(t: &Counts, interval: u64, files: usize) -> String {
    format!(
        "Total: {} allocated in {} objects; {} live at exit in {} objects \
         (estimates from samples every {} on average{})",
        bytes(t.alloc_bytes),
        objects(t.alloc_objects),
        bytes(t.inuse_bytes),
        objects(t.inuse_objects),
        bytes(interval),
        merged(files, "; ")
    )
}

/// The table of the top `n` sites by allocated bytes, like `jeprof --text`,
/// of a profile made from `files` raw profiles.
pub fn table(sym: &Symbolized, interval: u64, files: usize, n: usize) -> String {
    let total = totals(sym);
    let mut out = totals_line(&total, interval, files);
    out.push('\n');
    let rows = sites(sym);
    if rows.is_empty() {
        out += "No sampled allocations.\n";
        return out;
    }
    let _ = writeln!(
        out,
        "{:>10} {:>6} {:>10} {:>6} {:>8}  site (allocated bytes)",
        "flat", "flat%", "cum", "cum%", "objects"
    );
    for r in rows.iter().take(n) {
        let _ = writeln!(
            out,
            "{:>10} {:>6} {:>10} {:>6} {:>8}  {}",
            bytes(r.flat_bytes),
            percent(r.flat_bytes, total.alloc_bytes),
            bytes(r.cum_bytes),
            percent(r.cum_bytes, total.alloc_bytes),
            objects(r.flat_objects),
            r.name
        );
    }
    if rows.len() > n {
        let _ = writeln!(out, "({} more functions; --top N shows more)", rows.len() - n);
    }
    out
}

/// Frames shown per stack in the leak report.
const LEAK_FRAMES: usize = 8;

/// The sampled allocations still live at exit, grouped by stack (less
/// the allocator's frames), the top `n` by live bytes.
pub fn leaks(sym: &Symbolized, n: usize) -> String {
    let mut groups: HashMap<Vec<&Frame>, Counts> = HashMap::new();
    for stack in sym.stacks.iter().filter(|s| s.counts.inuse_bytes > 0) {
        groups.entry(user_frames(sym, stack)).or_default().add(&stack.counts);
    }
    let live = totals(sym);
    let mut groups: Vec<(Vec<&Frame>, Counts)> = groups.into_iter().collect();
    groups.sort_by(|a, b| b.1.inuse_bytes.cmp(&a.1.inuse_bytes).then_with(|| a.0.cmp(&b.0)));
    let mut out = String::new();
    if groups.is_empty() {
        out += "Live at exit: no sampled allocation was still live.\n";
        return out;
    }
    let _ = writeln!(
        out,
        "Live at exit: {} in {} objects (estimated), from {} stack{}{}:",
        bytes(live.inuse_bytes),
        objects(live.inuse_objects),
        groups.len(),
        if groups.len() == 1 { "" } else { "s" },
        if groups.len() > n { format!("; the top {n}") } else { String::new() }
    );
    for (frames, c) in groups.iter().take(n) {
        let _ = writeln!(
            out,
            "  {} in {} objects ({})",
            bytes(c.inuse_bytes),
            objects(c.inuse_objects),
            percent(c.inuse_bytes, live.inuse_bytes)
        );
        if frames.is_empty() {
            let _ = writeln!(out, "      #0 {UNKNOWN}");
        }
        for (i, f) in frames.iter().take(LEAK_FRAMES).enumerate() {
            let _ = writeln!(out, "      #{i} {}", f.display());
        }
        if frames.len() > LEAK_FRAMES {
            let _ = writeln!(out, "      ... {} more frames", frames.len() - LEAK_FRAMES);
        }
    }
    out
}

/// Which figure a flame graph shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// Bytes still allocated at exit.
    Inuse,
    /// Bytes allocated in total.
    Alloc,
}

impl View {
    fn value(self, c: &Counts) -> u64 {
        match self {
            View::Inuse => c.inuse_bytes,
            View::Alloc => c.alloc_bytes,
        }
    }

    /// The graph's title; `files` is how many raw profiles it shows.
    pub fn title(self, interval: u64, files: usize) -> String {
        let what = match self {
            View::Inuse => "Live heap at exit (inuse_space)",
            View::Alloc => "Allocated bytes (alloc_space)",
        };
        format!("{what}, sampled every {} on average{}", bytes(interval), merged(files, ", "))
    }
}

/// Folded stacks (`outermost;...;site bytes`), merged, sorted, for the
/// flame graph of `view`. Stacks with no bytes in that view are left out.
pub fn folded(sym: &Symbolized, view: View) -> Vec<String> {
    let mut merged: BTreeMap<String, u64> = BTreeMap::new();
    for stack in &sym.stacks {
        let v = view.value(&stack.counts);
        if v == 0 {
            continue;
        }
        let frames = user_frames(sym, stack);
        let names: Vec<String> = if frames.is_empty() {
            vec![UNKNOWN.to_string()]
        } else {
            // `;` separates frames (Rust array types hold one); a space is fine.
            frames.iter().rev().map(|f| f.function.replace(';', ":")).collect()
        };
        let e = merged.entry(names.join(";")).or_default();
        *e = e.saturating_add(v);
    }
    merged.into_iter().map(|(stack, v)| format!("{stack} {v}")).collect()
}

/// The flame graph of `view` as SVG, drawn by inferno, of a profile made
/// from `files` raw profiles. `None` when the view has no bytes at all
/// (inferno draws nothing from no input).
pub fn flame_graph(
    sym: &Symbolized,
    view: View,
    interval: u64,
    files: usize,
    subtitle: &str,
) -> std::io::Result<Option<Vec<u8>>> {
    let lines = folded(sym, view);
    if lines.is_empty() {
        return Ok(None);
    }
    let mut opt = inferno::flamegraph::Options::default();
    opt.title = view.title(interval, files);
    opt.subtitle = Some(subtitle.to_string());
    opt.count_name = "bytes".to_string();
    opt.colors = inferno::flamegraph::color::Palette::Basic(inferno::flamegraph::color::BasicPalette::Mem);
    // The same function gets the same colour in both graphs and every run.
    opt.hash = true;
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(&mut opt, lines.iter().map(String::as_str), &mut svg)?;
    Ok(Some(svg))
}

/// A small SVG that says there is nothing to draw, in place of a flame
/// graph, so that an old graph is not left behind under the same name.
pub fn empty_graph(view: View, interval: u64, files: usize, message: &str) -> Vec<u8> {
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
    format!(
        "<?xml version=\"1.0\" standalone=\"no\"?>\n\
         <svg version=\"1.1\" width=\"900\" height=\"90\" xmlns=\"http://www.w3.org/2000/svg\">\n\
         <rect x=\"0\" y=\"0\" width=\"100%\" height=\"100%\" fill=\"#eef2ee\"/>\n\
         <text x=\"450\" y=\"30\" text-anchor=\"middle\" font-family=\"Verdana\" font-size=\"17\">{}</text>\n\
         <text x=\"450\" y=\"62\" text-anchor=\"middle\" font-family=\"Verdana\" font-size=\"13\">{}</text>\n\
         </svg>\n",
        esc(&view.title(interval, files)),
        esc(message)
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::symbolize::{Location, Stack};

    fn frame(name: &str) -> Frame {
        Frame { function: name.to_string(), system_name: None, file: None, line: 0, symbolised: true }
    }

    fn location(pc: u64, object: &str, names: &[&str]) -> Location {
        Location {
            pc,
            mapping: None,
            object: Some(object.to_string()),
            frames: names.iter().map(|n| frame(n)).collect(),
            from_dwarf: true,
        }
    }

    fn counts(alloc_bytes: u64, inuse_bytes: u64) -> Counts {
        Counts { alloc_objects: alloc_bytes / 16, alloc_bytes, inuse_objects: inuse_bytes / 16, inuse_bytes }
    }

    /// Locations 0: poolmalloc's malloc (two frames, one inlined), 1:
    /// libc's strdup, 2: app::parse inlined into app::load, 3: app::main,
    /// 4: Vec growth in the app, 5: a second pc in app::parse.
    fn sample() -> Symbolized {
        let locations = vec![
            location(1, "libpoolmalloc.so", &["poolmalloc::heap::Heap::alloc", "malloc"]),
            location(2, "libc.so.6", &["strdup"]),
            location(3, "app", &["app::parse", "app::load"]),
            location(4, "app", &["app::main"]),
            Location {
                frames: vec![
                    frame("alloc::raw_vec::finish_grow"),
                    Frame {
                        file: Some("/rustc/0123/library/alloc/src/str.rs".to_string()),
                        line: 530,
                        ..frame("<str>::repeat")
                    },
                    frame("<alloc::vec::Vec<T> as Clone>::clone"),
                ],
                ..location(5, "app", &[])
            },
            location(6, "app", &["app::parse", "app::load"]),
        ];
        let stacks = vec![
            Stack { counts: counts(1000, 500), locations: vec![0, 2, 3] },
            Stack { counts: counts(300, 0), locations: vec![0, 1, 3] },
            Stack { counts: counts(200, 100), locations: vec![0, 4, 3] },
            // Another pc, the same frames as the first: merged.
            Stack { counts: counts(100, 100), locations: vec![0, 5, 3] },
            Stack { counts: counts(50, 0), locations: vec![] },
            Stack { counts: counts(10, 10), locations: vec![0] },
        ];
        Symbolized { locations, stacks, build_ids: HashMap::new(), unreadable: Vec::new() }
    }

    #[test]
    fn sites_skip_the_allocator_and_libc() {
        let sym = sample();
        let names = |i: usize| -> Vec<String> {
            user_frames(&sym, &sym.stacks[i]).iter().map(|f| f.function.clone()).collect()
        };
        assert_eq!(names(0), ["app::parse", "app::load", "app::main"]);
        assert_eq!(names(1), ["app::main"]);
        assert_eq!(names(2), ["app::main"]);
        assert!(names(4).is_empty());
        // All allocator frames: the outermost one is kept.
        assert_eq!(names(5), ["malloc"]);

        let rows = sites(&sym);
        let row = |name: &str| rows.iter().find(|r| r.name == name).unwrap().clone();
        assert_eq!(rows[0].name, "app::parse");
        assert_eq!((row("app::parse").flat_bytes, row("app::parse").cum_bytes), (1100, 1100));
        assert_eq!(row("app::parse").flat_objects, 1000 / 16 + 100 / 16);
        assert_eq!((row("app::main").flat_bytes, row("app::main").cum_bytes), (500, 1600));
        assert_eq!((row("app::load").flat_bytes, row("app::load").cum_bytes), (0, 1100));
        assert_eq!(row(UNKNOWN).flat_bytes, 50);
        assert_eq!(row("malloc").flat_bytes, 10);
        // Sorted by flat, then cum.
        let order: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(order, ["app::parse", "app::main", UNKNOWN, "malloc", "app::load"]);
    }

    #[test]
    fn allocator_and_standard_library_frames_are_recognised() {
        let skipped = |name: &str, object: Option<&str>| is_allocator_frame(&frame(name), object);
        for name in [
            "__rustc::__rust_alloc",
            "__rust_alloc_zeroed",
            "poolmalloc::prof::sample",
            "<poolmalloc::global::PoolMalloc as core::alloc::global::GlobalAlloc>::alloc",
            "alloc::raw_vec::finish_grow",
            "<alloc::string::String as core::fmt::Write>::write_str",
            "core::iter::traits::iterator::Iterator::collect",
            "std::collections::hash::map::HashMap<K,V,S>::insert",
            "malloc",
            "_Znwm",
            "operator new(unsigned long)",
        ] {
            assert!(skipped(name, Some("app")), "{name}");
        }
        assert!(skipped("strdup", Some("libc.so.6")));
        assert!(skipped("anything", Some("libpoolmalloc.so")));
        let in_alloc =
            Frame { file: Some("/rustc/abc/library/alloc/src/str.rs".to_string()), ..frame("<str>::repeat") };
        assert!(is_allocator_frame(&in_alloc, Some("app")));
        for name in ["app::main", "mallocx_wrapper", "my_malloc", "<app::Config as core::fmt::Display>::fmt", "main"] {
            assert!(!skipped(name, Some("app")), "{name}");
        }
        assert!(!skipped("strdup", None));
    }

    #[test]
    fn table_has_totals_percentages_and_top_n() {
        let text = table(&sample(), 524_288, 1, 2);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("Total: 1.6 KiB allocated in 101 objects; 710 B live at exit in 43 objects"));
        assert!(lines[0].ends_with("(estimates from samples every 512.0 KiB on average)"), "{text}");
        let merged = table(&sample(), 524_288, 3, 2);
        assert!(merged.lines().next().unwrap().ends_with("every 512.0 KiB on average; 3 raw profiles merged)"));
        assert_eq!(merged.lines().skip(1).collect::<Vec<_>>(), lines[1..]);
        assert!(lines[1].contains("flat%") && lines[1].contains("cum%") && lines[1].contains("objects"));
        assert_eq!(lines[2], "   1.1 KiB  66.3%    1.1 KiB  66.3%       68  app::parse");
        assert_eq!(lines[3], "     500 B  30.1%    1.6 KiB  96.4%       30  app::main");
        assert_eq!(lines[4], "(3 more functions; --top N shows more)");
    }

    #[test]
    fn leaks_group_by_stack() {
        let text = leaks(&sample(), 10);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("Live at exit: 710 B in 43 objects (estimated), from 3 stacks"), "{text}");
        // The two app::parse stacks merged: 600 B.
        assert_eq!(lines[1], "  600 B in 37 objects (84.5%)");
        assert_eq!(lines[2], "      #0 app::parse");
        assert_eq!(lines[4], "      #2 app::main");
        assert_eq!(lines[5], "  100 B in 6 objects (14.1%)");
        assert!(text.contains("#0 malloc"));
        assert!(!text.contains("strdup"));
    }

    #[test]
    fn folded_stacks_are_merged_outermost_first() {
        let sym = sample();
        assert_eq!(folded(&sym, View::Inuse), ["app::main 100", "app::main;app::load;app::parse 600", "malloc 10"]);
        let alloc = folded(&sym, View::Alloc);
        assert!(alloc.contains(&"[unknown] 50".to_string()));
        assert!(alloc.contains(&"app::main 500".to_string()));
    }

    #[test]
    fn flame_graphs_name_the_functions() {
        let sym = sample();
        let svg = String::from_utf8(flame_graph(&sym, View::Alloc, 4096, 1, "test").unwrap().unwrap()).unwrap();
        assert!(svg.starts_with("<?xml") && svg.contains("</svg>"));
        assert!(svg.contains("app::parse") && svg.contains("Allocated bytes (alloc_space)"));
        let empty = Symbolized { stacks: vec![], ..sample() };
        assert!(flame_graph(&empty, View::Inuse, 4096, 1, "test").unwrap().is_none());
        let svg = String::from_utf8(empty_graph(View::Inuse, 4096, 1, "nothing <here>")).unwrap();
        assert!(svg.contains("nothing &lt;here&gt;") && svg.contains("Live heap at exit"));
        assert!(!svg.contains("merged"));
        let svg = String::from_utf8(flame_graph(&sym, View::Inuse, 4096, 2, "test").unwrap().unwrap()).unwrap();
        assert!(
            svg.contains("Live heap at exit (inuse_space), sampled every 4.0 KiB on average, 2 raw profiles merged")
        );
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
        assert_eq!(bytes(5 << 30), "5.00 GiB");
    }
}
