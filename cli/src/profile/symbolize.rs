//! Symbolisation of a raw profile's return addresses with the `addr2line`
//! crate (DWARF line tables and inlined frames, else the symbol table) and
//! the `object` crate (the ELF program headers, for the load bias).
//!
//! For each pc: the mapping that holds it comes from the profile's maps
//! section; the ELF `PT_LOAD` segment whose file range holds the
//! mapping's file offset gives the load bias,
//! `bias = map_start - (p_vaddr + (map_offset - p_offset))`, and the file
//! address looked up is `pc - 1 - bias` (`pc` is a return address; `pc - 1`
//! is inside the call instruction). One `Loader` is kept per file.

use super::raw::{Counts, RawProfile};
use addr2line::Loader;
use object::{Object, ObjectSegment};
use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;

/// One source-level frame.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Frame {
    /// The demangled function name, or for a frame that could not be
    /// symbolised `libfoo.so+0x1234` (the file offset of the pc) or `0x7f..`
    /// (the pc, outside any file mapping).
    pub function: String,
    /// The name as it is in the object file, when it differs (mangled).
    pub system_name: Option<String>,
    /// The source file, when the debug information says.
    pub file: Option<String>,
    /// The source line, 0 when unknown.
    pub line: u32,
    /// Whether `function` is a real name rather than an address.
    pub symbolised: bool,
}

impl Frame {
    fn unknown(function: String) -> Frame {
        Frame { function, system_name: None, file: None, line: 0, symbolised: false }
    }

    /// `function (file:line)`, `function (file)` or `function`.
    pub fn display(&self) -> String {
        match (&self.file, self.line) {
            (Some(file), 0) => format!("{} ({file})", self.function),
            (Some(file), line) => format!("{} ({file}:{line})", self.function),
            (None, _) => self.function.clone(),
        }
    }
}

/// One distinct pc and the frames it stands for, innermost (inlined) first.
#[derive(Clone, Debug)]
pub struct Location {
    pub pc: u64,
    /// Index into the profile's maps.
    pub mapping: Option<usize>,
    /// The basename of the mapped file, or the pseudo-path (`[vdso]`).
    pub object: Option<String>,
    /// At least one frame.
    pub frames: Vec<Frame>,
    /// Whether the line information came from DWARF (and so has inlined frames).
    pub from_dwarf: bool,
}

/// A stack of the profile with its pcs replaced by locations.
#[derive(Clone, Debug)]
pub struct Stack {
    pub counts: Counts,
    /// Indexes into `Symbolized::locations`, innermost first.
    pub locations: Vec<usize>,
}

/// A profile with every pc symbolised.
#[derive(Debug)]
pub struct Symbolized {
    pub locations: Vec<Location>,
    pub stacks: Vec<Stack>,
    /// The GNU build id of each mapped file that could be read, by path.
    pub build_ids: HashMap<String, String>,
    /// Files that could not be read, with the reason.
    pub unreadable: Vec<(String, String)>,
}

impl Symbolized {
    /// The frames of a stack, innermost first, each with the object file
    /// it is in.
    pub fn frames<'a>(&'a self, stack: &'a Stack) -> impl Iterator<Item = (&'a Frame, Option<&'a str>)> + 'a {
        stack.locations.iter().flat_map(move |&l| {
            let loc = &self.locations[l];
            loc.frames.iter().map(move |f| (f, loc.object.as_deref()))
        })
    }
}

/// A `PT_LOAD` segment's program header.
#[derive(Clone, Copy, Debug)]
struct Load {
    offset: u64,
    filesz: u64,
    vaddr: u64,
    align: u64,
    executable: bool,
}

/// An object file opened for symbolisation.
struct Opened {
    loader: Loader,
    loads: Vec<Load>,
}

impl Opened {
    fn open(path: &str) -> Result<(Opened, Option<String>), String> {
        let file = File::open(path).map_err(|e| e.to_string())?;
        let cache = object::ReadCache::new(file);
        let obj = object::File::parse(&cache).map_err(|e| e.to_string())?;
        let loads = obj
            .segments()
            .map(|s| {
                let (offset, filesz) = s.file_range();
                let executable =
                    matches!(s.flags(), object::SegmentFlags::Elf { p_flags } if p_flags & object::elf::PF_X != 0);
                Load { offset, filesz, vaddr: s.address(), align: s.align(), executable }
            })
            .collect();
        let build_id = obj.build_id().ok().flatten().map(|id| id.iter().map(|b| format!("{b:02x}")).collect());
        let loader = Loader::new(path).map_err(|e| e.to_string())?;
        Ok((Opened { loader, loads }, build_id))
    }

    /// The load bias of a mapping of this file at `start` from file offset
    /// `offset`: from the `PT_LOAD` segment whose file range holds the
    /// offset. The kernel maps whole pages, so the mapping's offset may
    /// lie up to a page before the segment's; where two segments share
    /// that page, the one whose execute permission matches the mapping's
    /// is taken.
    fn bias(&self, start: u64, offset: u64, executable: bool) -> Option<u64> {
        let holds = |l: &&Load| {
            let page = if l.align.is_power_of_two() { l.align.max(4096) } else { 4096 };
            let first = l.offset & !(page - 1);
            first <= offset && offset < l.offset.saturating_add(l.filesz)
        };
        let load = self.loads.iter().filter(holds).max_by_key(|l| (l.executable == executable, l.offset <= offset))?;
        // bias = map_start - (p_vaddr + (map_offset - p_offset)), in wrapping
        // arithmetic since map_offset may be below p_offset.
        Some(start.wrapping_sub(load.vaddr.wrapping_add(offset.wrapping_sub(load.offset))))
    }

    /// The frames at file address `probe`, innermost first, and whether
    /// they came from DWARF. Empty when the file knows nothing of it.
    fn frames(&self, probe: u64) -> (Vec<Frame>, bool) {
        let symbol = || self.loader.find_symbol(probe);
        let mut frames = Vec::new();
        if let Ok(mut iter) = self.loader.find_frames(probe) {
            while let Ok(Some(frame)) = iter.next() {
                let (function, system_name) = match &frame.function {
                    Some(f) => {
                        let raw = f.raw_name().ok().map(Cow::into_owned);
                        let name = f.demangle().ok().map(Cow::into_owned);
                        (name, raw)
                    }
                    None => (None, None),
                };
                let (function, system_name) = match function {
                    Some(name) => (name, system_name),
                    None => match symbol() {
                        Some(sym) => (demangle(sym), Some(sym.to_string())),
                        None => ("??".to_string(), None),
                    },
                };
                let system_name = system_name.filter(|raw| *raw != function);
                let (file, line) =
                    frame.location.map_or((None, 0), |l| (l.file.map(str::to_string), l.line.unwrap_or(0)));
                frames.push(Frame { function, system_name, file, line, symbolised: true });
            }
        }
        if !frames.is_empty() {
            return (frames, true);
        }
        if let Some(sym) = symbol() {
            let function = demangle(sym);
            let system_name = (function != sym).then(|| sym.to_string());
            frames.push(Frame { function, system_name, file: None, line: 0, symbolised: true });
        }
        (frames, false)
    }
}

fn demangle(name: &str) -> String {
    addr2line::demangle_auto(Cow::Borrowed(name), None).into_owned()
}

/// The object files opened so far, by path, each with its build id, or
/// why it could not be read; shared by the profiles of one command, so
/// that a file is read once however many profiles mapped it.
#[derive(Default)]
pub struct Files {
    opened: HashMap<String, Result<(Opened, Option<String>), String>>,
}

/// Symbolises every distinct pc of `profile`.
#[cfg(test)]
pub fn symbolize(profile: &RawProfile) -> Symbolized {
    symbolize_with(profile, &mut Files::default())
}

/// Symbolises every distinct pc of `profile`, reading object files through
/// `files`. The result's `build_ids` and `unreadable` are those of the
/// files this profile mapped.
pub fn symbolize_with(profile: &RawProfile, files: &mut Files) -> Symbolized {
    let mut build_ids = HashMap::new();
    let mut unreadable = Vec::new();
    let mut by_pc: HashMap<u64, usize> = HashMap::new();
    let mut locations = Vec::new();
    let mut stacks = Vec::with_capacity(profile.stacks.len());

    for raw in &profile.stacks {
        let mut ids = Vec::with_capacity(raw.pcs.len());
        for &pc in &raw.pcs {
            let id = *by_pc.entry(pc).or_insert_with(|| {
                locations.push(locate(profile, pc, files, &mut build_ids, &mut unreadable));
                locations.len() - 1
            });
            ids.push(id);
        }
        stacks.push(Stack { counts: raw.counts, locations: ids });
    }
    Symbolized { locations, stacks, build_ids, unreadable }
}

fn locate(
    profile: &RawProfile,
    pc: u64,
    files: &mut Files,
    build_ids: &mut HashMap<String, String>,
    unreadable: &mut Vec<(String, String)>,
) -> Location {
    // The call instruction ends just before the return address.
    let call = pc.wrapping_sub(1);
    let Some(mi) = profile.mapping_of(call) else {
        return Location {
            pc,
            mapping: None,
            object: None,
            frames: vec![Frame::unknown(format!("0x{pc:x}"))],
            from_dwarf: false,
        };
    };
    let map = &profile.maps[mi];
    let object = (!map.path.is_empty()).then(|| map.basename().to_string());
    let fallback = || match &object {
        Some(name) => Frame::unknown(format!("{name}+0x{:x}", pc.wrapping_sub(map.start).wrapping_add(map.offset))),
        None => Frame::unknown(format!("0x{pc:x}")),
    };
    let mut frames = Vec::new();
    let mut from_dwarf = false;
    if map.is_file() && map.is_executable() {
        let entry = files.opened.entry(map.path.clone()).or_insert_with(|| Opened::open(&map.path));
        match entry {
            Ok((file, id)) => {
                if let Some(id) = id {
                    build_ids.entry(map.path.clone()).or_insert_with(|| id.clone());
                }
                if let Some(bias) = file.bias(map.start, map.offset, map.is_executable()) {
                    (frames, from_dwarf) = file.frames(call.wrapping_sub(bias));
                }
            }
            Err(why) => {
                if !unreadable.iter().any(|(path, _)| *path == map.path) {
                    unreadable.push((map.path.clone(), why.clone()));
                }
            }
        }
    }
    if frames.is_empty() {
        frames.push(fallback());
    }
    Location { pc, mapping: Some(mi), object, frames, from_dwarf }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::profile::raw;

    /// A function with a name the tests look for, small enough that
    /// nothing is inlined into its first instruction.
    #[inline(never)]
    pub(crate) fn profile_test_alpha(x: u64) -> u64 {
        x.wrapping_mul(0x9e37_79b9)
    }

    /// Another one, different enough not to be merged with the first.
    #[inline(never)]
    pub(crate) fn profile_test_beta(x: u64) -> u64 {
        x.rotate_left(13) ^ 0x5bd1_e995
    }

    /// The pc of a call from inside `f`: its address + 1.
    pub(crate) fn pc_in(f: fn(u64) -> u64) -> u64 {
        f as usize as u64 + 1
    }

    /// A raw profile of this process: its own maps, and the given stacks.
    pub(crate) fn own_profile(stacks: &[(Counts, Vec<u64>)]) -> String {
        let mut text = String::from("poolmalloc heap profile 1\ninterval 524288\npid 1\n");
        for (c, pcs) in stacks {
            let pcs: Vec<String> = pcs.iter().map(|pc| format!("{pc:x}")).collect();
            text += &format!(
                "stack {} {} {} {} {}\n",
                c.alloc_objects,
                c.alloc_bytes,
                c.inuse_objects,
                c.inuse_bytes,
                pcs.join(" ")
            );
        }
        text += "maps\n";
        text += &std::fs::read_to_string("/proc/self/maps").unwrap();
        text
    }

    #[test]
    fn symbolises_functions_of_this_process() {
        let (alpha, beta) = (pc_in(profile_test_alpha), pc_in(profile_test_beta));
        let malloc = libc::malloc as *const () as usize as u64 + 1;
        let text = own_profile(&[
            (Counts { alloc_objects: 1, alloc_bytes: 10, ..Counts::default() }, vec![alpha, beta]),
            (Counts::default(), vec![malloc, beta, 0x10]),
        ]);
        let profile = raw::parse(text.as_bytes()).unwrap();
        let sym = symbolize(&profile);
        assert!(sym.unreadable.is_empty(), "{:?}", sym.unreadable);
        // alpha, beta, malloc, 0x10: beta is shared.
        assert_eq!(sym.locations.len(), 4);
        let a = &sym.locations[sym.stacks[0].locations[0]];
        let names: Vec<&str> = a.frames.iter().map(|f| f.function.as_str()).collect();
        assert_eq!(names, ["poolmalloc::profile::symbolize::tests::profile_test_alpha"]);
        assert!(a.frames[0].symbolised);
        assert!(a.from_dwarf, "the release profile has line tables");
        assert!(a.frames[0].file.as_deref().is_some_and(|f| f.ends_with("cli/src/profile/symbolize.rs")), "{a:?}");
        assert!(
            a.frames[0].line > 0
                && a.frames[0].system_name.as_deref().is_some_and(|n| n.starts_with("_ZN") || n.starts_with("_R"))
        );
        let b = &sym.locations[sym.stacks[0].locations[1]];
        assert!(b.frames[0].function.ends_with("profile_test_beta"), "{:?}", b.frames);
        assert_eq!(sym.stacks[1].locations[1], sym.stacks[0].locations[1]);
        let m = &sym.locations[sym.stacks[1].locations[0]];
        assert_eq!(m.object.as_deref(), Some("libc.so.6"));
        assert!(m.frames.iter().any(|f| f.function.contains("malloc")), "{:?}", m.frames);
        let nowhere = &sym.locations[sym.stacks[1].locations[2]];
        assert_eq!(nowhere.frames, [Frame::unknown("0x10".to_string())]);
        assert!(nowhere.mapping.is_none());
    }

    #[test]
    fn bias_from_the_segment_that_holds_the_mapping() {
        let load = |offset, filesz, vaddr, executable| Load { offset, filesz, vaddr, align: 0x1000, executable };
        // As lld lays out a PIE: segments share pages in the file, and the
        // text is one page further in memory than in the file.
        let file = Opened {
            loader: Loader::new(std::env::current_exe().unwrap()).unwrap(),
            loads: vec![load(0, 0xcfc34, 0, false), load(0xcfc40, 0x2a29e0, 0xd0c40, true)],
        };
        let base = 0x5555_0000_0000;
        assert_eq!(file.bias(base + 0xd0000, 0xcf000, true), Some(base));
        assert_eq!(file.bias(base, 0, false), Some(base));
        assert_eq!(file.bias(base + 0xd0000, 0xcf000, false), Some(base + 0x1000));
        assert_eq!(file.bias(base, 0x400000, true), None);
    }

    #[test]
    fn unreadable_files_and_pseudo_mappings_fall_back_to_offsets() {
        let text = "poolmalloc heap profile 1\ninterval 4096\n\
            stack 1 2 3 4 10000011 20000011 30000011\n\
            maps\n\
            10000000-10001000 r-xp 00002000 08:01 1 /nonexistent/libgone.so\n\
            20000000-20001000 r-xp 00000000 00:00 0 [vdso]\n\
            30000000-30001000 r-xp 00000000 00:00 0\n";
        let sym = symbolize(&raw::parse(text.as_bytes()).unwrap());
        let names: Vec<&str> = sym.locations.iter().map(|l| l.frames[0].function.as_str()).collect();
        assert_eq!(names, ["libgone.so+0x2011", "[vdso]+0x11", "0x30000011"]);
        assert_eq!(sym.unreadable.len(), 1);
        assert_eq!(sym.unreadable[0].0, "/nonexistent/libgone.so");
    }
}
