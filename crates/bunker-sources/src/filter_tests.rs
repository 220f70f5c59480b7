use super::*;

fn m(pattern: &str, path: &str) -> bool {
    Pattern::parse(pattern)
        .unwrap_or_else(|e| panic!("{pattern}: {e}"))
        .matches(path.as_bytes())
}

#[test]
fn match_table() {
    let table: &[(&str, &str, bool)] = &[
        // relative patterns match at any depth, also as a parent directory
        ("*.rs", "/src/crate/lib.rs", true),
        ("*.rs", "/src/crate/lib.rc", false),
        ("*", "/a/b/c", true),
        ("**", "/a/b/c", true),
        ("crate", "/src/crate", true),
        ("crate", "/src/crate/lib.rs", true),
        ("crate", "/src/crates/lib.rs", false),
        ("cra*", "/src/crate/lib.rs", true),
        ("crate/*", "/src/crate/lib.rs", true),
        ("crate/*", "/src/crate", false),
        ("src/crate", "/home/src/crate/x", true),
        ("src/lib.rs", "/src/crate/lib.rs", false),
        ("Lib.rs", "/src/crate/lib.rs", false),
        // anchored patterns
        ("/src", "/src/crate/lib.rs", true),
        ("/src/", "/src/crate", true),
        ("/crate", "/src/crate", false),
        ("/src/*", "/src", false),
        ("/src/*", "/src/x", true),
        ("/src/*lib.*", "/src/crate/lib.rs", false),
        ("/src/*/lib.*", "/src/crate/lib.rs", true),
        ("/*/*/x/y", "/a/b/x/y", true),
        ("/*/*/x/y", "/a/x/y", false),
        // cleaning of the pattern
        ("/src///crate", "/src/crate", true),
        ("/src/./crate", "/src/crate", true),
        ("/x/../src", "/src", true),
        ("/x/../src", "/x/src", false),
        // double star
        ("a/**/z/*.txt", "/r/a/b/c/d/z/f.txt", true),
        ("a/**/z/*.txt", "/r/a/z/f.txt", true),
        ("a/**/z/*.txt", "/a/z/f.txt", true),
        ("a/**/z/*.txt", "/r/a/f.txt", false),
        ("a/**/z/*.txt", "/z/a/f.txt", false),
        ("a/**/z", "/r/a/b/z/deeper/file", true),
        ("a/**/z/**/q", "/a/z/q", true),
        ("a/**/z/**/q", "/a/1/2/z/3/4/q", true),
        ("/**/cache", "/x/y/cache", true),
        ("/a/**", "/a/b/c", true),
        ("/a/**", "/b/a/c", false),
        ("/", "/anything/at/all", true),
        // single-character and class globs
        ("file?.txt", "/d/file1.txt", true),
        ("file?.txt", "/d/file12.txt", false),
        ("file?.txt", "/d/fileé.txt", true),
        ("[abc].txt", "/d/b.txt", true),
        ("[abc].txt", "/d/d.txt", false),
        ("[^abc].txt", "/d/d.txt", true),
        ("[^abc].txt", "/d/a.txt", false),
        ("[a-c]x", "/d/bx", true),
        ("[a-c]x", "/d/dx", false),
        ("[\\]]", "/d/]", true),
        ("\\*", "/d/*", true),
        ("\\*", "/d/x", false),
        ("*a*b*c", "/d/xxaxxbxxc", true),
        ("*a*b*c", "/d/xxaxxbxx", false),
        // relative path input (no root marker)
        ("lib.rs", "crate/lib.rs", true),
        ("/crate", "crate/lib.rs", false),
    ];
    for (pattern, path, want) in table {
        assert_eq!(m(pattern, path), *want, "pattern {pattern:?} path {path:?}");
    }
}

#[test]
fn non_utf8_paths() {
    let p = Pattern::parse("*.bin").unwrap();
    assert!(p.matches(b"/d/\xff\xfe.bin"));
    let p = Pattern::parse("?.bin").unwrap();
    assert!(p.matches(b"/d/\xff.bin"));
}

#[test]
fn malformed_patterns_rejected() {
    for bad in ["[", "[]", "[a", "a[", "x\\", "[a-]", "[^]", "/ok/[z"] {
        assert!(Pattern::parse(bad).is_err(), "{bad:?} should be invalid");
    }
    for good in ["]", "a]b", "[]a]x"] {
        let r = Pattern::parse(good);
        // `[]a]x` is invalid in Go (empty class), the others are literals.
        assert_eq!(r.is_ok(), good != "[]a]x", "{good:?}");
    }
}

#[test]
fn clean_like_go() {
    let cases: &[(&str, &str)] = &[
        ("", "."),
        ("/", "/"),
        ("a/b/", "a/b"),
        ("a//b/./c/..", "a/b"),
        ("/../x", "/x"),
        ("../x", "../x"),
        ("a/../..", ".."),
    ];
    for (input, want) in cases {
        assert_eq!(clean(input.as_bytes()), want.as_bytes(), "{input}");
    }
}

#[test]
fn negation_reincludes() {
    let list = PatternList::parse(&["/data/*", "!/data/keep", "", "*.tmp"]).unwrap();
    assert_eq!(list.len(), 3);
    assert!(list.matches(b"/data/drop"));
    assert!(!list.matches(b"/data/keep"));
    // children of the re-included dir: `/data/*` matches them too, and the
    // negation matches as well (prefix match), so they stay included
    assert!(!list.matches(b"/data/keep/file"));
    // a later positive pattern wins over an earlier negation
    assert!(list.matches(b"/data/keep/file.tmp"));
    assert!(!list.matches(b"/other/file"));
}

#[test]
fn negation_order_matters() {
    // a negation before the positive pattern has nothing to undo
    let list = PatternList::parse(&["!/data/keep", "/data/*"]).unwrap();
    assert!(list.matches(b"/data/keep"));
}

#[test]
fn empty_list_matches_nothing() {
    let list = PatternList::parse::<&str>(&[]).unwrap();
    assert!(list.is_empty());
    assert!(!list.matches(b"/x"));
}
