//! `ls`, `dump` and `diff` on hand-built snapshots.

mod common_restore;

use std::io::Read;

use bunker_format::node::NodeType;
use bunker_repo::diff::{diff, DiffKind};
use bunker_repo::dump::dump;
use bunker_repo::walk::{find_subtree, ls, walk_tree, WalkAction};
use common_restore::{new_repo, time, Builder};

#[test]
fn ls_lists_recursively_or_one_level() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = new_repo(tmp.path());
    let b = Builder::new(&repo);
    let snap = b.snapshot(vec![b.dir(
        b"home",
        vec![
            b.dir(b"a", vec![b.file(b"f.txt", b"hello")]),
            b.symlink(b"l", b"a"),
        ],
    )]);
    let all: Vec<String> = ls(&repo, &snap, None, true)
        .unwrap()
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(all, vec!["/home", "/home/a", "/home/a/f.txt", "/home/l"]);
    let top: Vec<String> = ls(&repo, &snap, None, false)
        .unwrap()
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(top, vec!["/home"]);
    let home = ls(&repo, &snap, Some("/home"), false).unwrap();
    let paths: Vec<&str> = home.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, vec!["/home", "/home/a", "/home/l"]);
    let file = ls(&repo, &snap, Some("home/a/f.txt"), true).unwrap();
    assert_eq!(file.len(), 1);
    assert_eq!(file[0].size, Some(5));
    assert_eq!(file[0].node_type, NodeType::File);
    assert_eq!(file[0].permissions, "-rw-r--r--");
    let json = serde_json::to_value(&file[0]).unwrap();
    assert_eq!(json["path"], "/home/a/f.txt");
    assert_eq!(json["struct_type"], "node");
    assert!(matches!(
        ls(&repo, &snap, Some("/nope"), true),
        Err(bunker_repo::RepoError::PathNotInSnapshot(_))
    ));

    // walk_tree can skip subtrees; find_subtree resolves directories only.
    let mut seen = Vec::new();
    walk_tree(&repo, &snap.snapshot.tree, &mut |p, n| {
        seen.push(String::from_utf8_lossy(p).into_owned());
        Ok(if n.name == b"a" {
            WalkAction::SkipSubtree
        } else {
            WalkAction::Continue
        })
    })
    .unwrap();
    assert_eq!(seen, vec!["/home", "/home/a", "/home/l"]);
    assert!(find_subtree(&repo, &snap.snapshot.tree, "/home/a").is_ok());
    assert!(find_subtree(&repo, &snap.snapshot.tree, "/home/a/f.txt").is_err());
    assert!(find_subtree(&repo, &snap.snapshot.tree, "/home/../etc").is_err());
}

#[test]
fn dump_file_and_directory_as_tar() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = new_repo(tmp.path());
    let b = Builder::new(&repo);
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let snap = b.snapshot(vec![b.dir(
        b"data",
        vec![
            b.file_chunked(b"big", &big, 70_000),
            b.dir(b"sub", vec![b.file(b"x", b"xx")]),
            b.symlink(b"link", b"sub/x"),
            b.file(b"../evil", b"never"),
        ],
    )]);
    let mut out = Vec::new();
    assert!(dump(&repo, &snap, "/data/big", &mut out)
        .unwrap()
        .left_out
        .is_empty());
    assert!(out == big);

    let mut tar_bytes = Vec::new();
    let report = dump(&repo, &snap, "/data", &mut tar_bytes).unwrap();
    // The unsafe name is left out, and the report says so (exit 3).
    assert_eq!(report.left_out.len(), 1, "{report:?}");
    assert!(report.left_out[0].contains("evil"), "{report:?}");
    let mut archive = tar::Archive::new(&tar_bytes[..]);
    let mut entries = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let kind = e.header().entry_type();
        let mut body = Vec::new();
        e.read_to_end(&mut body).unwrap();
        if path == "data/big" {
            assert!(body == big);
            assert_eq!(e.header().mode().unwrap(), 0o644);
            assert_eq!(e.header().mtime().unwrap(), 1_600_000_000);
        }
        if path == "data/link" {
            assert_eq!(e.link_name().unwrap().unwrap().to_string_lossy(), "sub/x");
        }
        entries.push((path, kind));
    }
    let names: Vec<&str> = entries.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        names,
        vec!["data/big", "data/link", "data/sub/", "data/sub/x"]
    );
    assert!(entries[2].1.is_dir());
    assert!(entries[1].1.is_symlink());
    // Not a file or directory, not in the snapshot, below a non-directory:
    // typed errors (restic's dump exits 2 for each).
    assert!(matches!(
        dump(&repo, &snap, "/data/link", &mut Vec::new()),
        Err(bunker_repo::RepoError::WrongNodeType(_))
    ));
    for missing in ["/data/nope", "/data/big/below"] {
        assert!(matches!(
            dump(&repo, &snap, missing, &mut Vec::new()),
            Err(bunker_repo::RepoError::PathNotInSnapshot(_))
        ));
    }
}

#[test]
fn diff_reports_restic_symbols() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = new_repo(tmp.path());
    let b1 = Builder::new(&repo);
    let common = || b1.dir(b"same", vec![b1.file(b"c", b"common")]);
    let a = b1.snapshot(vec![
        b1.file(b"changed", b"v1"),
        b1.dir(b"d", vec![b1.file(b"f", b"v1")]),
        b1.file(b"gone", b"bye"),
        common(),
        b1.file(b"meta", b"m"),
        b1.file(b"kind", b"file"),
        b1.dir(b"olddir", vec![b1.file(b"inner", b"i")]),
    ]);
    let b2 = Builder::new(&repo);
    let mut meta = b2.file(b"meta", b"m");
    meta.mtime = time(1_650_000_000, 1);
    let b = b2.snapshot(vec![
        b2.file(b"changed", b"v2"),
        b2.dir(b"d", vec![b2.file(b"f", b"v2")]),
        b2.dir(b"kind", vec![]),
        meta,
        b2.dir(b"newdir", vec![b2.file(b"n", b"new")]),
        b2.dir(b"same", vec![b2.file(b"c", b"common")]),
    ]);
    let r = diff(&repo, &a, &b).unwrap();
    let lines: Vec<String> = r
        .changes
        .iter()
        .map(|(k, p)| format!("{} {p}", k.symbol()))
        .collect();
    assert_eq!(
        lines,
        vec![
            "M /changed",
            // restic: a directory whose subtree changed is `U` (--metadata).
            "U /d/",
            "M /d/f",
            "- /gone",
            "T /kind/",
            "U /meta",
            "+ /newdir/",
            "+ /newdir/n",
            "- /olddir/",
            "- /olddir/inner",
        ]
    );
    assert_eq!(r.stats.changed_files, 2);
    // What `diff` prints, with and without --metadata (restic's `TU`).
    let shown = |metadata: bool| -> Vec<String> {
        r.changes
            .iter()
            .filter_map(|(k, p)| Some(format!("{} {p}", k.modifier(metadata)?)))
            .collect()
    };
    assert!(shown(true).contains(&"TU /kind/".to_string()));
    assert!(shown(false).contains(&"T /kind/".to_string()));
    assert!(!shown(false).iter().any(|l| l.starts_with('U')));
    assert_eq!((r.stats.added.files, r.stats.added.dirs), (1, 1));
    assert_eq!((r.stats.removed.files, r.stats.removed.dirs), (2, 1));
    // v2 and "new" are new data; v1, bye, file, i are gone ("m" and "common" stay).
    assert_eq!(r.stats.added.data_blobs, 2);
    assert_eq!(r.stats.removed.data_blobs, 4);
    assert!(r.stats.added.bytes >= 5);
    let same = diff(&repo, &a, &a).unwrap();
    assert!(same.changes.is_empty());
    assert_eq!(same.stats, Default::default());
    assert!(r.changes.iter().any(|(k, _)| *k == DiffKind::TypeChanged));
}
