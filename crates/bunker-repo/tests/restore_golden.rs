//! Restore the latest snapshot of the golden repository written by restic
//! and compare the result with `fixtures/golden.expected`.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use bunker_format::Id;
use bunker_repo::progress::NoProgress;
use bunker_repo::restore::{restore, RestoreOptions};
use bunker_repo::snapshots::{self, SnapshotFilter};
use bunker_repo::{RepoOptions, Repository};

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// `\xNN` escapes of the expected file, as bytes.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') && i + 3 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 2..i + 4], 16) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn escape(b: &[u8]) -> String {
    let mut s = String::new();
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                s.push_str("\\x5c");
            } else {
                s.push(c);
            }
        }
        for x in chunk.invalid() {
            s.push_str(&format!("\\x{x:02x}"));
        }
    }
    s
}

fn describe(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let md = std::fs::symlink_metadata(&p).unwrap();
        let rel = Path::new("/").join(p.strip_prefix(root).unwrap());
        let mtime = md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128;
        let perm = md.mode() & 0o7777;
        let (kind, size, what) = if md.is_dir() {
            describe(root, &p, out);
            ("dir", 0, "-".to_string())
        } else if md.is_symlink() {
            let t = std::fs::read_link(&p).unwrap();
            ("symlink", 0, escape(t.as_os_str().as_bytes()))
        } else {
            let data = std::fs::read(&p).unwrap();
            ("file", data.len(), Id::hash(&data).to_hex())
        };
        out.push(format!(
            "{kind} {perm:o} {size} {mtime} {what} {}",
            escape(rel.as_os_str().as_bytes())
        ));
    }
}

#[test]
fn restores_restic_golden_repository() {
    let repo_dir = fixtures().join("restic-golden");
    let expected_text = std::fs::read_to_string(fixtures().join("golden.expected")).unwrap();
    let storage = bunker_storage::open(&repo_dir.to_string_lossy(), &[]).unwrap();
    let repo = Repository::open(storage, b"golden", RepoOptions::default()).unwrap();
    repo.load_index().unwrap();
    let snap = snapshots::find(&repo, "latest", &SnapshotFilter::default()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("t");
    let opts = RestoreOptions {
        target: target.clone(),
        sub_path: Some("/srv/bunker-golden".into()),
        verify: true,
        ..Default::default()
    };
    let s = restore(&repo, &snap, &opts, &NoProgress).unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(s.hardlinks, 1);
    assert_eq!(s.verified_files, s.files);

    let mut got = Vec::new();
    describe(&target, &target, &mut got);
    got.sort();
    let mut want: Vec<String> = expected_text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            // Normalise the path's escapes so both sides print alike.
            let (head, path) =
                l.splitn(6, ' ')
                    .enumerate()
                    .fold((String::new(), ""), |(h, p), (i, part)| {
                        if i < 5 {
                            (format!("{h}{part} "), p)
                        } else {
                            (h, part)
                        }
                    });
            format!("{head}{}", escape(&unescape(path)))
        })
        .collect();
    want.sort();
    assert_eq!(got, want);
    // Hard links of the snapshot are hard links again.
    let a = std::fs::metadata(target.join("docs/hello.txt")).unwrap();
    let b = std::fs::metadata(target.join("docs/nested/hardlink-to-hello")).unwrap();
    assert_eq!(a.ino(), b.ino());
}
