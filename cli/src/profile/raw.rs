//! The raw heap profile that the allocator writes (`POOLMALLOC_PROF=1`, or
//! `poolmalloc::profile::dump`): text, one record per line.
//!
//! ```text
//! poolmalloc heap profile 1
//! interval 524288
//! pid 12345
//! stack <alloc_objects> <alloc_bytes> <inuse_objects> <inuse_bytes> <pc> <pc> ...
//! maps
//! <the verbatim /proc/self/maps of the profiled process, to the end of the file>
//! ```
//!
//! The counts are unbiased estimates, already scaled up from the samples.
//! The pcs are lowercase hex return addresses, innermost frame first.

use std::fmt;

/// The first line, less the version number.
const MAGIC: &str = "poolmalloc heap profile";
/// The version this parser reads.
pub const VERSION: u32 = 1;

/// A parse failure: its message names the line where one applies.
#[derive(Debug, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Estimated objects and bytes of one stack (or a sum of stacks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Objects allocated since profiling started.
    pub alloc_objects: u64,
    /// Bytes allocated since profiling started.
    pub alloc_bytes: u64,
    /// Objects still allocated when the profile was written.
    pub inuse_objects: u64,
    /// Bytes still allocated when the profile was written.
    pub inuse_bytes: u64,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.alloc_objects = self.alloc_objects.saturating_add(other.alloc_objects);
        self.alloc_bytes = self.alloc_bytes.saturating_add(other.alloc_bytes);
        self.inuse_objects = self.inuse_objects.saturating_add(other.inuse_objects);
        self.inuse_bytes = self.inuse_bytes.saturating_add(other.inuse_bytes);
    }
}

/// One `stack` record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawStack {
    pub counts: Counts,
    /// Return addresses, innermost frame first; may be empty.
    pub pcs: Vec<u64>,
}

/// One line of the maps section.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    /// `r-xp` and the like.
    pub perms: String,
    /// Offset in the file of the first mapped byte.
    pub offset: u64,
    /// A file's path, a pseudo-path such as `[vdso]`, or empty (anonymous).
    pub path: String,
}

impl Mapping {
    pub fn is_executable(&self) -> bool {
        self.perms.as_bytes().get(2) == Some(&b'x')
    }

    /// Whether the mapping is of a file (rather than `[vdso]`, `[heap]` or
    /// anonymous memory).
    pub fn is_file(&self) -> bool {
        self.path.starts_with('/')
    }

    /// The last component of the path (the whole pseudo-path for `[vdso]`).
    pub fn basename(&self) -> &str {
        if self.is_file() {
            self.path.rsplit('/').next().unwrap_or(&self.path)
        } else {
            &self.path
        }
    }
}

/// A parsed raw profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawProfile {
    /// Mean bytes between samples.
    pub interval: u64,
    /// The profiled process, when the file says.
    pub pid: Option<u64>,
    pub stacks: Vec<RawStack>,
    /// The process's memory map, in address order as the kernel lists it.
    pub maps: Vec<Mapping>,
}

impl RawProfile {
    /// The mapping that holds `addr`, if any.
    pub fn mapping_of(&self, addr: u64) -> Option<usize> {
        let i = self.maps.partition_point(|m| m.start <= addr);
        let i = i.checked_sub(1)?;
        (addr < self.maps[i].end).then_some(i)
    }
}

/// Parses a raw profile. The error says what is wrong, with a line number
/// where one applies; the caller puts the file name in front.
pub fn parse(data: &[u8]) -> Result<RawProfile, ParseError> {
    let err = |msg: String| Err(ParseError(msg));
    let not_ours = || ParseError("not a poolmalloc heap profile".to_string());

    let mut lines = data.split(|&b| b == b'\n').enumerate().map(|(i, l)| (i + 1, l.strip_suffix(b"\r").unwrap_or(l)));
    let (_, first) = lines.next().ok_or_else(not_ours)?;
    let first = std::str::from_utf8(first).map_err(|_| not_ours())?;
    let version = first.strip_prefix(MAGIC).and_then(|v| v.strip_prefix(' ')).ok_or_else(not_ours)?;
    match version.trim().parse::<u32>() {
        Ok(VERSION) => {}
        Ok(v) => {
            return err(format!(
                "unsupported poolmalloc heap profile version {v} (this command reads version {VERSION})"
            ))
        }
        Err(_) => return Err(not_ours()),
    }

    let mut interval = None;
    let mut pid = None;
    let mut stacks = Vec::new();
    let mut saw_maps = false;
    for (no, line) in lines.by_ref() {
        let Ok(line) = std::str::from_utf8(line) else {
            return err(format!("line {no}: not text"));
        };
        let mut words = line.split_ascii_whitespace();
        let Some(key) = words.next() else { continue };
        match key {
            "interval" => {
                let v = single_number(no, key, words)?;
                if v == 0 {
                    return err(format!("line {no}: the sampling interval is 0"));
                }
                if interval.replace(v).is_some() {
                    return err(format!("line {no}: a second `interval` line"));
                }
            }
            "pid" => {
                if pid.replace(single_number(no, key, words)?).is_some() {
                    return err(format!("line {no}: a second `pid` line"));
                }
            }
            "stack" => stacks.push(parse_stack(no, words)?),
            "maps" => {
                if words.next().is_some() {
                    return err(format!("line {no}: `maps` takes nothing after it"));
                }
                saw_maps = true;
                break;
            }
            other => return err(format!("line {no}: unknown record `{}`", shorten(other))),
        }
    }
    if !saw_maps {
        return err("no `maps` section: the file is truncated".to_string());
    }
    let Some(interval) = interval else {
        return err("no `interval` line".to_string());
    };
    let mut maps = Vec::new();
    for (no, line) in lines {
        // Paths are the kernel's bytes; a name that is not UTF-8 is only shown.
        let line = String::from_utf8_lossy(line);
        if line.trim().is_empty() {
            continue;
        }
        match parse_map_line(&line) {
            Some(m) => maps.push(m),
            None => return err(format!("line {no}: not a line of /proc/PID/maps: `{}`", shorten(&line))),
        }
    }
    // The kernel lists mappings in address order; make sure of it for the lookups.
    if !maps.is_sorted_by_key(|m: &Mapping| m.start) {
        maps.sort_by_key(|m| m.start);
    }
    Ok(RawProfile { interval, pid, stacks, maps })
}

fn shorten(s: &str) -> String {
    const MAX: usize = 60;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

fn single_number<'a>(no: usize, key: &str, mut words: impl Iterator<Item = &'a str>) -> Result<u64, ParseError> {
    let bad = || ParseError(format!("line {no}: `{key}` takes one decimal number"));
    let v = words.next().ok_or_else(bad)?.parse::<u64>().map_err(|_| bad())?;
    if words.next().is_some() {
        return Err(bad());
    }
    Ok(v)
}

fn parse_stack<'a>(no: usize, mut words: impl Iterator<Item = &'a str>) -> Result<RawStack, ParseError> {
    let mut count = |what: &str| -> Result<u64, ParseError> {
        let w = words.next().ok_or_else(|| ParseError(format!("line {no}: `stack` lacks its {what} count")))?;
        w.parse::<u64>().map_err(|_| ParseError(format!("line {no}: bad {what} count `{}`", shorten(w))))
    };
    let counts = Counts {
        alloc_objects: count("alloc_objects")?,
        alloc_bytes: count("alloc_bytes")?,
        inuse_objects: count("inuse_objects")?,
        inuse_bytes: count("inuse_bytes")?,
    };
    let pcs = words
        .map(|w| {
            let hex = !w.is_empty() && w.bytes().all(|b| b.is_ascii_hexdigit());
            hex.then(|| u64::from_str_radix(w, 16).ok())
                .flatten()
                .ok_or_else(|| ParseError(format!("line {no}: bad pc `{}` (hex without 0x)", shorten(w))))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RawStack { counts, pcs })
}

/// Takes the next whitespace-separated field off the front of `s`.
fn field<'a>(s: &mut &'a str) -> &'a str {
    let t = s.trim_start();
    let end = t.find(char::is_whitespace).unwrap_or(t.len());
    let (f, rest) = t.split_at(end);
    *s = rest;
    f
}

/// `start-end perms offset dev inode [path]`; the path may hold spaces.
fn parse_map_line(line: &str) -> Option<Mapping> {
    let mut rest = line;
    let (start, end) = field(&mut rest).split_once('-')?;
    let perms = field(&mut rest);
    let offset = field(&mut rest);
    let dev = field(&mut rest);
    let inode = field(&mut rest);
    if perms.len() != 4 || !dev.contains(':') || inode.parse::<u64>().is_err() {
        return None;
    }
    let hex = |s: &str| u64::from_str_radix(s, 16).ok();
    Some(Mapping {
        start: hex(start)?,
        end: hex(end)?,
        perms: perms.to_string(),
        offset: hex(offset)?,
        path: rest.trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "poolmalloc heap profile 1\n\
        interval 524288\n\
        pid 42\n\
        stack 2 1048576 1 524288 5555deadbeef 7f0000001234\n\
        stack 1 100 0 0\n\
        maps\n\
        555500000000-555500001000 r--p 00000000 08:01 1234                       /usr/bin/my prog\n\
        5555dead0000-5555deae0000 r-xp 00001000 08:01 1234                       /usr/bin/my prog\n\
        7f0000000000-7f0000100000 r-xp 00028000 08:01 99 /usr/lib/x86_64-linux-gnu/libc.so.6 (deleted)\n\
        7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0                          [vdso]\n\
        7ffe00000000-7ffe00002000 rw-p 00000000 00:00 0\n";

    #[test]
    fn parses_a_profile() {
        let p = parse(GOOD.as_bytes()).unwrap();
        assert_eq!(p.interval, 524_288);
        assert_eq!(p.pid, Some(42));
        assert_eq!(p.stacks.len(), 2);
        assert_eq!(
            p.stacks[0].counts,
            Counts { alloc_objects: 2, alloc_bytes: 1_048_576, inuse_objects: 1, inuse_bytes: 524_288 }
        );
        assert_eq!(p.stacks[0].pcs, [0x5555_dead_beef, 0x7f00_0000_1234]);
        assert!(p.stacks[1].pcs.is_empty());
        assert_eq!(p.maps.len(), 5);
        assert_eq!(p.maps[1].path, "/usr/bin/my prog");
        assert_eq!(p.maps[1].basename(), "my prog");
        assert_eq!(p.maps[1].offset, 0x1000);
        assert!(p.maps[1].is_executable() && !p.maps[0].is_executable());
        assert_eq!(p.maps[2].basename(), "libc.so.6 (deleted)");
        assert_eq!(p.maps[3].basename(), "[vdso]");
        assert!(!p.maps[3].is_file());
        assert_eq!(p.maps[4].path, "");
        assert_eq!(p.mapping_of(0x5555_dead_beef), Some(1));
        assert_eq!(p.mapping_of(0x5555_deae_0000), None);
        assert_eq!(p.mapping_of(0x7f00_0000_1234), Some(2));
        assert_eq!(p.mapping_of(0x10), None);
    }

    fn error(text: &str) -> String {
        parse(text.as_bytes()).unwrap_err().0
    }

    #[test]
    fn rejects_what_is_not_a_profile() {
        assert_eq!(error(""), "not a poolmalloc heap profile");
        assert_eq!(error("heap profile: 1: 2 [3: 4] @ heap_v2/524288\n"), "not a poolmalloc heap profile");
        assert_eq!(error("poolmalloc heap profile x\n"), "not a poolmalloc heap profile");
        assert!(error("poolmalloc heap profile 2\n").contains("unsupported poolmalloc heap profile version 2"));
    }

    #[test]
    fn names_the_line_that_fails() {
        let head = "poolmalloc heap profile 1\ninterval 4096\n";
        assert_eq!(error(&format!("{head}frobnicate 1\nmaps\n")), "line 3: unknown record `frobnicate`");
        assert_eq!(error(&format!("{head}stack 1 2 3\nmaps\n")), "line 3: `stack` lacks its inuse_bytes count");
        assert_eq!(error(&format!("{head}stack 1 2 3 -4\nmaps\n")), "line 3: bad inuse_bytes count `-4`");
        assert_eq!(error(&format!("{head}stack 1 2 3 4 0x1234\nmaps\n")), "line 3: bad pc `0x1234` (hex without 0x)");
        assert_eq!(error(&format!("{head}interval 5\nmaps\n")), "line 3: a second `interval` line");
        assert_eq!(error(&format!("{head}maps\nhello\n")), "line 4: not a line of /proc/PID/maps: `hello`");
        assert_eq!(error("poolmalloc heap profile 1\nmaps\n"), "no `interval` line");
        assert_eq!(error(&format!("{head}stack 1 2 3 4 ab\n")), "no `maps` section: the file is truncated");
        assert_eq!(error("poolmalloc heap profile 1\ninterval 0\nmaps\n"), "line 2: the sampling interval is 0");
    }
}
