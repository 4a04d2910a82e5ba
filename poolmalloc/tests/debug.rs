//! Debug-mode faults through `DebugPoolMalloc`, each in a child process:
//! the child commits one memory bug and must die by SIGABRT with the
//! expected first report line. Without arguments this program runs every
//! case as a child of itself; with `POOLMALLOC_TEST_FAULT=<case>` it is the
//! child.

use poolmalloc::DebugPoolMalloc;
use std::alloc::{GlobalAlloc, Layout};
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

const CASES: &[(&str, &str, &str)] = &[
    ("overflow1", "overflow (trailing pad overwritten)", "dealloc"),
    ("overflow8", "overflow (trailing pad overwritten)", "dealloc"),
    ("underflow1", "underflow (leading pad overwritten)", "dealloc"),
    ("double", "double free", "dealloc"),
    ("mmap", "pointer not allocated by poolmalloc", "dealloc"),
    ("middle", "pointer into the middle of a block", "dealloc"),
    ("wrong_layout", "sized free with a size different from the allocation", "dealloc"),
    ("use_after_free", "write after free (quarantined block modified)", "dealloc"),
];

fn say(p: *mut u8) {
    println!("block {p:p}");
}

fn child(case: &str) {
    let a = DebugPoolMalloc;
    let l = Layout::from_size_align(24, 8).unwrap();
    // SAFETY: each case commits one deliberate bug on a block it owns; the
    // allocator must catch it before anything else happens.
    unsafe {
        let p = a.alloc(l);
        assert!(!p.is_null());
        assert_eq!(*p, 0xCD, "new memory is filled with 0xCD");
        match case {
            "overflow1" => {
                say(p);
                p.add(24).write_volatile(b'A');
                a.dealloc(p, l);
            }
            "overflow8" => {
                say(p);
                std::ptr::write_bytes(p.add(24), b'A', 8);
                a.dealloc(p, l);
            }
            "underflow1" => {
                say(p);
                p.sub(1).write_volatile(b'A');
                a.dealloc(p, l);
            }
            "double" => {
                say(p);
                a.dealloc(p, l);
                a.dealloc(p, l);
            }
            "mmap" => {
                let m = libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                ) as *mut u8;
                say(m);
                a.dealloc(m, l);
            }
            "middle" => {
                say(p.add(16));
                a.dealloc(p.add(16), Layout::from_size_align(8, 8).unwrap());
            }
            "wrong_layout" => {
                say(p);
                a.dealloc(p, Layout::from_size_align(23, 8).unwrap());
            }
            "use_after_free" => {
                say(p);
                a.dealloc(p, l);
                assert_eq!(*p.add(5), 0xDD, "freed memory is filled with 0xDD");
                p.add(5).write_volatile(b'X');
                for _ in 0..64 {
                    let q = a.alloc(l);
                    a.dealloc(std::hint::black_box(q), l);
                }
            }
            other => panic!("unknown case {other}"),
        }
    }
    println!("survived");
}

fn main() {
    if let Ok(case) = std::env::var("POOLMALLOC_TEST_FAULT") {
        child(&case);
        std::process::exit(1);
    }
    let me = std::env::current_exe().expect("own path");
    for &(case, check, api) in CASES {
        let out = Command::new(&me)
            .env("POOLMALLOC_TEST_FAULT", case)
            .env("POOLMALLOC_DEBUG_QUARANTINE", "8")
            .output()
            .expect("run the child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{case}: must abort\n{stdout}\n{stderr}");
        let addr = stdout.lines().find_map(|l| l.strip_prefix("block ")).expect("block address printed");
        let expected = format!("poolmalloc: debug check failed: {check} in {api} of {addr}");
        assert_eq!(stderr.lines().next(), Some(expected.as_str()), "{case}: report\n{stderr}");
        assert!(!stdout.contains("survived"), "{case}");
        println!("debug {case}: ok");
    }
    // A clean run passes every check.
    let a = DebugPoolMalloc;
    for size in [1usize, 24, 1000, 40_000, 3 << 20] {
        for align in [1usize, 16, 64, 4096, 1 << 16] {
            let l = Layout::from_size_align(size, align).unwrap();
            // SAFETY: valid layouts, freed with the layout they were made with.
            unsafe {
                let p = a.alloc_zeroed(l);
                assert_eq!(p as usize % align, 0);
                assert!(std::slice::from_raw_parts(p, size).iter().all(|&b| b == 0));
                let q = a.realloc(p, l, size * 2);
                assert_eq!(q as usize % align, 0);
                a.dealloc(q, Layout::from_size_align(size * 2, align).unwrap());
            }
        }
    }
    // Several medium blocks of one class at once: some start in a later
    // slice of their pool's run, and their frees must find the pool's own
    // record. Afterwards the class counts no block in use.
    let class = poolmalloc::internals::class_of(40_100);
    let before = poolmalloc::stats().classes[class].blocks_in_use;
    let l = Layout::from_size_align(40_000, 8).unwrap();
    // SAFETY: a valid layout.
    let blocks: Vec<*mut u8> = (0..9).map(|_| unsafe { a.alloc(l) }).collect();
    assert_eq!(
        poolmalloc::stats().classes[class].blocks_in_use,
        before + 9,
        "debug blocks of 40,000 B are in class {class}"
    );
    for p in blocks {
        // SAFETY: allocated above with `l`.
        unsafe { a.dealloc(p, l) };
    }
    poolmalloc::trim();
    let after = poolmalloc::stats().classes[class].blocks_in_use;
    assert_eq!(after, before, "medium debug blocks freed onto the wrong pool record");
    poolmalloc::internals::check_arena_invariants();
    println!("debug: ok");
}
