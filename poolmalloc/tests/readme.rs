//! The README's options table must match `poolmalloc::options::TABLE`.

#[test]
fn readme_lists_every_option_with_its_default() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let readme = std::fs::read_to_string(path).expect("README.md at the repository root");
    for o in poolmalloc::options::TABLE {
        let runtime = if o.runtime { "yes" } else { "no" };
        let row = format!("| `{}` | `{}` | {runtime} | {} |", o.name, o.default, o.help);
        assert!(readme.contains(&row), "README options table is missing or differs for {}:\n{row}", o.name);
    }
    let rows = readme.lines().filter(|l| l.starts_with("| `POOLMALLOC_")).count();
    assert_eq!(rows, poolmalloc::options::TABLE.len(), "README lists options that the code does not read");
}
