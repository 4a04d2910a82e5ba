//! pprof output: a gzipped `perftools.profiles.Profile` protocol buffer
//! (the schema of github.com/google/pprof/proto/profile.proto), declared
//! here by hand for `prost`, with the field numbers of that schema.

use super::raw::Mapping as RawMapping;
use super::symbolize::{Frame, Symbolized};
use flate2::write::GzEncoder;
use flate2::Compression;
use std::collections::HashMap;
use std::io::Write;

#[derive(Clone, PartialEq, prost::Message)]
pub struct Profile {
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    pub mapping: Vec<Mapping>,
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    /// All strings the other fields refer to by index; `string_table[0]` is "".
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
    #[prost(int64, tag = "7")]
    pub drop_frames: i64,
    #[prost(int64, tag = "8")]
    pub keep_frames: i64,
    #[prost(int64, tag = "9")]
    pub time_nanos: i64,
    #[prost(int64, tag = "10")]
    pub duration_nanos: i64,
    #[prost(message, optional, tag = "11")]
    pub period_type: Option<ValueType>,
    #[prost(int64, tag = "12")]
    pub period: i64,
    #[prost(int64, repeated, tag = "13")]
    pub comment: Vec<i64>,
    #[prost(int64, tag = "14")]
    pub default_sample_type: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueType {
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// The leaf first.
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
    #[prost(message, repeated, tag = "3")]
    pub label: Vec<Label>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(int64, tag = "1")]
    pub key: i64,
    #[prost(int64, tag = "2")]
    pub str: i64,
    #[prost(int64, tag = "3")]
    pub num: i64,
    #[prost(int64, tag = "4")]
    pub num_unit: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Mapping {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint64, tag = "2")]
    pub memory_start: u64,
    #[prost(uint64, tag = "3")]
    pub memory_limit: u64,
    #[prost(uint64, tag = "4")]
    pub file_offset: u64,
    #[prost(int64, tag = "5")]
    pub filename: i64,
    #[prost(int64, tag = "6")]
    pub build_id: i64,
    #[prost(bool, tag = "7")]
    pub has_functions: bool,
    #[prost(bool, tag = "8")]
    pub has_filenames: bool,
    #[prost(bool, tag = "9")]
    pub has_line_numbers: bool,
    #[prost(bool, tag = "10")]
    pub has_inline_frames: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Location {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint64, tag = "2")]
    pub mapping_id: u64,
    #[prost(uint64, tag = "3")]
    pub address: u64,
    /// Inlined frames first; the last line is the function they were inlined into.
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
    #[prost(bool, tag = "5")]
    pub is_folded: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Line {
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
    #[prost(int64, tag = "2")]
    pub line: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Function {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(int64, tag = "2")]
    pub name: i64,
    #[prost(int64, tag = "3")]
    pub system_name: i64,
    #[prost(int64, tag = "4")]
    pub filename: i64,
    #[prost(int64, tag = "5")]
    pub start_line: i64,
}

/// The string table, with each string stored once.
struct Strings {
    table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Strings {
        Strings { table: vec![String::new()], index: HashMap::from([(String::new(), 0)]) }
    }

    fn id(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The sample types, in the order of each sample's values.
pub const SAMPLE_TYPES: [(&str, &str); 4] =
    [("alloc_objects", "count"), ("alloc_space", "bytes"), ("inuse_objects", "count"), ("inuse_space", "bytes")];

/// Builds the profile of the stacks in `sym`, whose locations index
/// `maps`. `interval` is the sampling period, `comment` says what the
/// profile is, and `time_nanos` is when it was written (0: unknown).
pub fn build(maps: &[RawMapping], sym: &Symbolized, interval: u64, comment: &str, time_nanos: i64) -> Profile {
    let mut strings = Strings::new();
    let sample_type =
        SAMPLE_TYPES.iter().map(|(t, u)| ValueType { r#type: strings.id(t), unit: strings.id(u) }).collect();

    // Functions, one per distinct (name, system name, file).
    let mut functions: Vec<Function> = Vec::new();
    let mut function_ids: HashMap<(String, Option<String>, Option<String>), u64> = HashMap::new();
    let mut function_id = |strings: &mut Strings, f: &Frame| -> u64 {
        let key = (f.function.clone(), f.system_name.clone(), f.file.clone());
        *function_ids.entry(key).or_insert_with(|| {
            let id = functions.len() as u64 + 1;
            functions.push(Function {
                id,
                name: strings.id(&f.function),
                system_name: strings.id(f.system_name.as_deref().unwrap_or(&f.function)),
                filename: f.file.as_deref().map_or(0, |file| strings.id(file)),
                start_line: 0,
            });
            id
        })
    };

    // Mappings, only those that hold a pc, in address order but with the
    // main executable's first (pprof takes mapping[0] as the main binary;
    // the kernel lists the executable's file first).
    let main_file = maps.iter().find(|m| m.is_file()).map(|m| m.path.as_str());
    let mut used: Vec<usize> = sym.locations.iter().filter_map(|l| l.mapping).collect();
    used.sort_by_key(|&mi| (Some(maps[mi].path.as_str()) != main_file, mi));
    used.dedup();
    let mut mapping_ids: HashMap<usize, u64> = HashMap::new();
    let mut mappings: Vec<Mapping> = Vec::new();
    for mi in used {
        let m = &maps[mi];
        mappings.push(Mapping {
            id: mappings.len() as u64 + 1,
            memory_start: m.start,
            memory_limit: m.end,
            file_offset: m.offset,
            filename: strings.id(&m.path),
            build_id: sym.build_ids.get(&m.path).map_or(0, |b| strings.id(b)),
            ..Mapping::default()
        });
        mapping_ids.insert(mi, mappings.len() as u64);
    }
    for loc in &sym.locations {
        let Some(mi) = loc.mapping else { continue };
        let m = &mut mappings[mapping_ids[&mi] as usize - 1];
        let symbolised = loc.frames.iter().any(|f| f.symbolised);
        m.has_functions |= symbolised;
        m.has_filenames |= loc.frames.iter().any(|f| f.file.is_some());
        m.has_line_numbers |= loc.frames.iter().any(|f| f.line != 0);
        m.has_inline_frames |= loc.from_dwarf;
    }

    // One location per distinct pc; its address is the call instruction's
    // (return address - 1), so that a tool symbolising it lands in the caller.
    let mut locations: Vec<Location> = sym
        .locations
        .iter()
        .enumerate()
        .map(|(i, loc)| Location {
            id: i as u64 + 1,
            mapping_id: loc.mapping.map_or(0, |mi| mapping_ids[&mi]),
            address: loc.pc.wrapping_sub(1),
            line: loc
                .frames
                .iter()
                .map(|f| Line { function_id: function_id(&mut strings, f), line: i64::from(f.line) })
                .collect(),
            is_folded: false,
        })
        .collect();

    // A stack without pcs gets a location of its own, so that it shows.
    let mut unknown_location = None;
    let bytes_key = strings.id("bytes");
    let sample = sym
        .stacks
        .iter()
        .map(|s| {
            let location_id = if s.locations.is_empty() {
                let id = *unknown_location.get_or_insert_with(|| {
                    let id = locations.len() as u64 + 1;
                    let f = Frame {
                        function: "[unknown]".to_string(),
                        system_name: None,
                        file: None,
                        line: 0,
                        symbolised: false,
                    };
                    let line = vec![Line { function_id: function_id(&mut strings, &f), line: 0 }];
                    locations.push(Location { id, line, ..Location::default() });
                    id
                });
                vec![id]
            } else {
                s.locations.iter().map(|&l| l as u64 + 1).collect()
            };
            let c = &s.counts;
            // The mean object size, as Go's heap profiles label their samples.
            let label = (c.alloc_objects > 0)
                .then(|| Label {
                    key: bytes_key,
                    num: int(c.alloc_bytes / c.alloc_objects),
                    num_unit: bytes_key,
                    ..Label::default()
                })
                .into_iter()
                .collect();
            Sample {
                location_id,
                value: vec![int(c.alloc_objects), int(c.alloc_bytes), int(c.inuse_objects), int(c.inuse_bytes)],
                label,
            }
        })
        .collect();

    let period_type = Some(ValueType { r#type: strings.id("space"), unit: strings.id("bytes") });
    let default_sample_type = strings.id("inuse_space");
    let comment = vec![strings.id(comment)];
    Profile {
        sample_type,
        sample,
        mapping: mappings,
        location: locations,
        function: functions,
        string_table: strings.table,
        time_nanos,
        period_type,
        period: int(interval),
        comment,
        default_sample_type,
        ..Profile::default()
    }
}

/// The profile, encoded and gzipped as pprof reads it.
pub fn encode_gz(profile: &Profile) -> Vec<u8> {
    let bytes = prost::Message::encode_to_vec(profile);
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    // Writing to a Vec cannot fail.
    gz.write_all(&bytes).expect("in-memory gzip");
    gz.finish().expect("in-memory gzip")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::raw::{self, Counts};
    use crate::profile::symbolize::symbolize;
    use crate::profile::symbolize::tests::{own_profile, pc_in, profile_test_alpha, profile_test_beta};
    use prost::Message;
    use std::io::Read;

    fn decode(gz: &[u8]) -> Profile {
        let mut bytes = Vec::new();
        flate2::read::GzDecoder::new(gz).read_to_end(&mut bytes).unwrap();
        Profile::decode(bytes.as_slice()).unwrap()
    }

    #[test]
    fn encodes_a_profile_that_decodes_back() {
        let (alpha, beta) = (pc_in(profile_test_alpha), pc_in(profile_test_beta));
        let big = Counts { alloc_objects: 4, alloc_bytes: 4096, inuse_objects: 2, inuse_bytes: 2048 };
        let small = Counts { alloc_objects: 1, alloc_bytes: 100, inuse_objects: 0, inuse_bytes: 0 };
        let text = own_profile(&[(big, vec![alpha, beta]), (small, vec![beta]), (small, vec![])]);
        let raw = raw::parse(text.as_bytes()).unwrap();
        let sym = symbolize(&raw);
        let p = decode(&encode_gz(&build(&raw.maps, &sym, raw.interval, "poolmalloc heap profile of pid 1", 123)));

        let s = |i: i64| p.string_table[i as usize].as_str();
        assert_eq!(p.string_table[0], "");
        let types: Vec<(&str, &str)> = p.sample_type.iter().map(|t| (s(t.r#type), s(t.unit))).collect();
        assert_eq!(types, SAMPLE_TYPES);
        assert_eq!(s(p.default_sample_type), "inuse_space");
        let period = p.period_type.as_ref().unwrap();
        assert_eq!((s(period.r#type), s(period.unit), p.period), ("space", "bytes", 524_288));
        assert_eq!(p.time_nanos, 123);
        assert_eq!(s(p.comment[0]), "poolmalloc heap profile of pid 1");

        assert_eq!(p.sample.len(), 3);
        assert_eq!(p.sample[0].value, [4, 4096, 2, 2048]);
        assert_eq!(p.sample[1].value, [1, 100, 0, 0]);
        assert_eq!(s(p.sample[0].label[0].key), "bytes");
        assert_eq!(p.sample[0].label[0].num, 1024);

        // The leaf first, each location's innermost line first.
        let leaf_function = |sample: &Sample, depth: usize| {
            let loc = p.location.iter().find(|l| l.id == sample.location_id[depth]).unwrap();
            // The function the pc is in: the last line, after any inlined ones.
            let f = p.function.iter().find(|f| f.id == loc.line.last().unwrap().function_id).unwrap();
            s(f.name).to_string()
        };
        assert!(leaf_function(&p.sample[0], 0).ends_with("profile_test_alpha"));
        assert!(leaf_function(&p.sample[0], 1).ends_with("profile_test_beta"));
        assert!(leaf_function(&p.sample[1], 0).ends_with("profile_test_beta"));
        assert_eq!(leaf_function(&p.sample[2], 0), "[unknown]");
        // One location per distinct pc, plus the one for the empty stack.
        assert_eq!(p.location.len(), 3);
        assert_eq!(p.sample[0].location_id[1], p.sample[1].location_id[0]);

        let alpha_loc = p.location.iter().find(|l| l.id == p.sample[0].location_id[0]).unwrap();
        assert_eq!(alpha_loc.address, alpha - 1);
        let m = p.mapping.iter().find(|m| m.id == alpha_loc.mapping_id).unwrap();
        assert!(m.memory_start <= alpha_loc.address && alpha_loc.address < m.memory_limit);
        assert_eq!(s(m.filename), std::env::current_exe().unwrap().to_str().unwrap());
        assert_eq!(m.id, 1, "the main binary's mapping comes first");
        assert!(s(m.build_id).len() >= 16 || m.build_id == 0);
        assert!(m.has_functions && m.has_filenames && m.has_line_numbers && m.has_inline_frames);
        assert!(p.function.iter().all(|f| f.name != 0 && f.system_name != 0));
    }
}
