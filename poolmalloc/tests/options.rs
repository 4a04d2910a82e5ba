//! Options changed at run time: `poolmalloc::options::set` and `get`, what
//! they refuse, and the THP mode as the kernel records it for new mappings.
//! One test, since options are process-wide.

use poolmalloc::options::{self, OptionError, OptionValue};
use poolmalloc::PoolMalloc;
use std::alloc::{GlobalAlloc, Layout};

#[global_allocator]
static GLOBAL: PoolMalloc = PoolMalloc;

/// The `VmFlags` line of the mapping that holds `p`, from /proc/self/smaps.
fn vm_flags(p: *const u8) -> String {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("/proc/self/smaps");
    let addr = p as usize;
    let mut inside = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((lo, hi)) = first.split_once('-') {
            if let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16)) {
                inside = lo <= addr && addr < hi;
                continue;
            }
        }
        if inside {
            if let Some(flags) = line.strip_prefix("VmFlags:") {
                return flags.trim().to_string();
            }
        }
    }
    panic!("no mapping holds {p:p}");
}

#[test]
fn options_change_at_run_time_and_refuse_what_they_must() {
    // Defaults, under both spellings of a name.
    assert_eq!(options::get("POOLMALLOC_PURGE_DELAY"), Ok(OptionValue::Number(100)));
    assert_eq!(options::get("purge_delay"), Ok(OptionValue::Number(100)));
    assert_eq!(options::get("invalid_free").unwrap().to_string(), "abort");
    assert_eq!(options::get("threads").unwrap().to_string(), "perthread");

    // A change that takes, then refusals that change nothing.
    assert_eq!(options::set("purge_delay", "250"), Ok(()));
    assert_eq!(options::get("purge_delay"), Ok(OptionValue::Number(250)));
    assert_eq!(options::set("purge_delay", "soon"), Err(OptionError::BadValue));
    assert_eq!(options::set("purge_delay", ""), Err(OptionError::BadValue));
    assert_eq!(options::get("purge_delay"), Ok(OptionValue::Number(250)));
    assert_eq!(options::set("POOLMALLOC_NO_SUCH", "1"), Err(OptionError::Unknown));
    assert_eq!(options::set("Purge_Delay", "1"), Err(OptionError::Unknown), "the short name is lower case");
    assert_eq!(options::get("no_such"), Err(OptionError::Unknown));
    assert_eq!(options::set("threads", "locked"), Err(OptionError::Fixed));
    assert_eq!(options::get("threads").unwrap().to_string(), "perthread");
    assert_eq!(options::set("secure", "1"), Err(OptionError::Fixed));
    assert_eq!(options::get("secure"), Ok(OptionValue::Flag(cfg!(feature = "secure"))));
    assert_eq!(options::set("invalid_free", "warn"), Ok(()));
    assert_eq!(options::get("invalid_free").unwrap().to_string(), "warn");
    assert_eq!(options::set("invalid_free", "abort"), Ok(()));
    // Every option the table lists can be read back, and every one the
    // table marks fixed is refused.
    for o in options::TABLE {
        let v = options::get(o.name).unwrap_or_else(|e| panic!("{}: {e}", o.name));
        if !o.runtime {
            assert_eq!(options::set(o.name, &v.to_string()), Err(OptionError::Fixed), "{}", o.name);
        }
    }

    // THP: the kernel records the advice on each new mapping (huge blocks
    // have mappings of their own; all stay live until the end, so none is
    // made from a cached one).
    let mut live = Vec::new();
    // `never` gives its advice only where the system's setting is `always`
    // (elsewhere no advice is needed for 4 KiB pages).
    assert_eq!(options::get("thp").unwrap().to_string(), "never", "the default");
    let system = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").ok();
    let thp_built = system.is_some();
    let system_always = system.as_deref().is_none_or(|s| s.starts_with("[always]"));
    let never_flag = if system_always { Some("nh") } else { None };
    for (mode, size_mib, flag) in [("never", 9, never_flag), ("always", 11, Some("hg")), ("default", 13, None)] {
        assert_eq!(options::set("thp", mode), Ok(()));
        assert_eq!(options::get("thp").unwrap().to_string(), mode);
        let l = Layout::from_size_align(size_mib << 20, 16).unwrap();
        // SAFETY: a valid layout; freed below with it.
        let p = unsafe { GLOBAL.alloc(l) };
        assert!(!p.is_null());
        let flags = vm_flags(p);
        let has = |f: &str| flags.split_whitespace().any(|x| x == f);
        match flag {
            Some(f) if thp_built => assert!(has(f), "THP {mode}: VmFlags {flags}"),
            _ => assert!(!has("nh") && !has("hg"), "THP {mode}: VmFlags {flags}"),
        }
        live.push((p, l));
    }
    for (p, l) in live {
        // SAFETY: allocated above with `l`.
        unsafe { GLOBAL.dealloc(p, l) };
    }
    assert_eq!(options::set("thp", "sometimes"), Err(OptionError::BadValue));
    assert_eq!(options::get("thp").unwrap().to_string(), "default");
}
