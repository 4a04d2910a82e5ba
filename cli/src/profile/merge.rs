//! Several raw profiles as one. A process with two copies of the allocator
//! (a Rust program whose `#[global_allocator]` is poolmalloc, run with
//! libpoolmalloc.so preloaded) writes one raw profile per copy:
//! `PREFIX.<pid>.heap`, then `PREFIX.<pid>.2.heap` and so on. Each is
//! symbolised with its own maps section; then stacks whose symbolised
//! frames are the same add their four counts, which are already estimates
//! scaled up from the samples, so they add whatever the intervals were.

use super::raw::{Mapping, RawProfile};
use super::symbolize::{Frame, Location, Stack, Symbolized};
use std::collections::HashMap;

/// One profile made from one or more raw profiles.
#[derive(Debug)]
pub struct Merged {
    /// The first raw profile's sampling interval.
    pub interval: u64,
    /// The raw profiles' maps, each distinct mapping once, the first
    /// profile's first and in its order; `sym`'s locations index it.
    pub maps: Vec<Mapping>,
    pub sym: Symbolized,
    /// How many raw profiles were merged.
    pub files: usize,
}

/// Merges raw profiles, each with its symbolisation, in the given order
/// (the first one's interval and main executable are the merged one's).
/// One profile is kept as it is.
///
/// # Panics
///
/// When `parts` is empty.
pub fn merge(parts: Vec<(RawProfile, Symbolized)>) -> Merged {
    assert!(!parts.is_empty(), "nothing to merge");
    let files = parts.len();
    let interval = parts[0].0.interval;
    if files == 1 {
        let (raw, sym) = parts.into_iter().next().expect("one part");
        return Merged { interval, maps: raw.maps, sym, files };
    }

    let mut maps: Vec<Mapping> = Vec::new();
    let mut map_ids: HashMap<Mapping, usize> = HashMap::new();
    let mut locations: Vec<Location> = Vec::new();
    let mut location_ids: HashMap<(Option<String>, Vec<Frame>), usize> = HashMap::new();
    let mut stacks: Vec<Stack> = Vec::new();
    let mut stack_ids: HashMap<Vec<usize>, usize> = HashMap::new();
    let mut build_ids = HashMap::new();
    let mut unreadable: Vec<(String, String)> = Vec::new();

    for (raw, sym) in parts {
        // Every mapping, not only those that hold a pc: the first profile's
        // main executable stays the first file mapping (pprof's main binary).
        let map_index: Vec<usize> = raw
            .maps
            .into_iter()
            .map(|m| {
                *map_ids.entry(m).or_insert_with_key(|m| {
                    maps.push(m.clone());
                    maps.len() - 1
                })
            })
            .collect();
        // A location is known by its frames (and object file), not by its
        // pc: two processes map the same code at different addresses.
        let location_index: Vec<usize> = sym
            .locations
            .into_iter()
            .map(|loc| {
                let key = (loc.object.clone(), loc.frames.clone());
                *location_ids.entry(key).or_insert_with(|| {
                    locations.push(Location { mapping: loc.mapping.map(|mi| map_index[mi]), ..loc });
                    locations.len() - 1
                })
            })
            .collect();
        for stack in sym.stacks {
            let ids: Vec<usize> = stack.locations.iter().map(|&l| location_index[l]).collect();
            match stack_ids.get(&ids) {
                Some(&i) => stacks[i].counts.add(&stack.counts),
                None => {
                    stack_ids.insert(ids.clone(), stacks.len());
                    stacks.push(Stack { counts: stack.counts, locations: ids });
                }
            }
        }
        for (path, id) in sym.build_ids {
            build_ids.entry(path).or_insert(id);
        }
        for (path, why) in sym.unreadable {
            if !unreadable.iter().any(|(p, _)| *p == path) {
                unreadable.push((path, why));
            }
        }
    }
    Merged { interval, maps, sym: Symbolized { locations, stacks, build_ids, unreadable }, files }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::raw::{self, Counts};
    use crate::profile::symbolize::symbolize;
    use crate::profile::symbolize::tests::{own_profile, pc_in, profile_test_alpha, profile_test_beta};

    fn counts(alloc_objects: u64, alloc_bytes: u64, inuse_objects: u64, inuse_bytes: u64) -> Counts {
        Counts { alloc_objects, alloc_bytes, inuse_objects, inuse_bytes }
    }

    fn part(stacks: &[(Counts, Vec<u64>)]) -> (RawProfile, Symbolized) {
        let raw = raw::parse(own_profile(stacks).as_bytes()).unwrap();
        let sym = symbolize(&raw);
        (raw, sym)
    }

    fn names(m: &Merged, stack: &Stack) -> Vec<String> {
        m.sym.frames(stack).map(|(f, _)| f.function.rsplit("::").next().unwrap().to_string()).collect()
    }

    #[test]
    fn one_profile_is_kept_as_it_is() {
        let (alpha, beta) = (pc_in(profile_test_alpha), pc_in(profile_test_beta));
        let (raw, sym) = part(&[(counts(1, 2, 3, 4), vec![alpha, beta]), (counts(5, 6, 7, 8), vec![alpha, beta])]);
        let maps = raw.maps.clone();
        let m = merge(vec![(raw, sym)]);
        assert_eq!((m.interval, m.files, m.maps.len()), (524_288, 1, maps.len()));
        assert_eq!(m.sym.stacks.len(), 2, "the stacks of one profile are not merged");
    }

    #[test]
    fn stacks_with_the_same_frames_add_their_counts() {
        let (alpha, beta) = (pc_in(profile_test_alpha), pc_in(profile_test_beta));
        let a = part(&[(counts(4, 4096, 2, 2048), vec![alpha, beta]), (counts(1, 100, 0, 0), vec![beta])]);
        let mut b = part(&[
            (counts(1, 100, 0, 0), vec![]),
            (counts(2, 1000, 1, 500), vec![alpha, beta]),
            (counts(3, 300, 3, 300), vec![beta, alpha]),
        ]);
        b.0.interval = 4096;
        let (a_maps, b_maps) = (a.0.maps.clone(), b.0.maps.clone());
        let m = merge(vec![a, b]);
        assert_eq!((m.interval, m.files), (524_288, 2));
        // The first profile's maps first, then the second's (the same
        // process's, read a little later) that are new, each mapping once.
        assert_eq!(m.maps[..a_maps.len()], a_maps);
        assert!(b_maps.iter().all(|b| m.maps.iter().filter(|m| *m == b).count() == 1));
        assert!(m.maps.len() < a_maps.len() + b_maps.len());
        // alpha and beta, each once.
        assert_eq!(m.sym.locations.len(), 2);
        let got: Vec<(Vec<String>, Counts)> = m.sym.stacks.iter().map(|s| (names(&m, s), s.counts)).collect();
        let stack = |names: &[&str], c: Counts| (names.iter().map(|n| n.to_string()).collect::<Vec<_>>(), c);
        let want = [
            stack(&["profile_test_alpha", "profile_test_beta"], counts(6, 5096, 3, 2548)),
            stack(&["profile_test_beta"], counts(1, 100, 0, 0)),
            stack(&[], counts(1, 100, 0, 0)),
            stack(&["profile_test_beta", "profile_test_alpha"], counts(3, 300, 3, 300)),
        ];
        assert_eq!(got, want);
        for loc in &m.sym.locations {
            let map = &m.maps[loc.mapping.unwrap()];
            assert!(map.start < loc.pc && loc.pc <= map.end && map.is_executable(), "{map:?}");
        }
    }

    #[test]
    fn the_same_frames_at_other_addresses_are_one_location() {
        // Two processes of one program map it at different addresses: the
        // second profile's maps are the first's moved by 4 GiB.
        let alpha = pc_in(profile_test_alpha);
        let a = part(&[(counts(1, 10, 1, 10), vec![alpha])]);
        let moved = (1u64 << 20) * 4096;
        let mut b_raw = a.0.clone();
        b_raw.maps.retain(|m| m.end.checked_add(moved).is_some());
        for m in &mut b_raw.maps {
            m.start += moved;
            m.end += moved;
        }
        b_raw.stacks[0].pcs = vec![alpha + moved];
        let b_sym = symbolize(&b_raw);
        assert!(b_sym.locations[0].frames[0].function.ends_with("profile_test_alpha"));
        let m = merge(vec![a, (b_raw, b_sym)]);
        assert_eq!(m.sym.locations.len(), 1);
        assert_eq!(m.sym.locations[0].pc, alpha, "the first profile's address");
        assert_eq!(m.sym.stacks.len(), 1);
        assert_eq!(m.sym.stacks[0].counts, counts(2, 20, 2, 20));
    }
}
