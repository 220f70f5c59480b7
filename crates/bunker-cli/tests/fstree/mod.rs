#![allow(dead_code)]
//! Test trees: build a source tree with every kind of entry bunker must keep,
//! and compare two trees in full (contents, modes, times, links, xattrs).

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Deterministic pseudo-random bytes (xorshift), partly compressible.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        // Every other 8-byte word is repeated: compressible but not trivially.
        out.extend_from_slice(&b);
        if x % 3 == 0 {
            out.extend_from_slice(&b);
        }
    }
    out.truncate(len);
    out
}

/// Build a tree with regular files (small and multi-chunk), empty files and
/// dirs, symlinks, a hard link, a FIFO, setuid/sticky modes, xattrs, a
/// non-UTF-8 name and nanosecond mtimes.
pub fn build_source(root: &Path) {
    fs::create_dir_all(root.join("a/b/c")).unwrap();
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    fs::create_dir_all(root.join("sticky")).unwrap();
    fs::write(root.join("a/hello.txt"), b"hello bunker\n").unwrap();
    fs::write(root.join("a/empty"), b"").unwrap();
    fs::write(
        root.join("a/b/big.bin"),
        pseudo_random(12 * 1024 * 1024 + 123, 7),
    )
    .unwrap();
    fs::write(root.join("a/b/c/medium.bin"), pseudo_random(700 * 1024, 9)).unwrap();
    let zeros = vec![0u8; 3 * 1024 * 1024];
    fs::write(root.join("a/zeros.bin"), zeros).unwrap();
    fs::write(root.join("a/page <&>.html"), b"<html>&amp;</html>\n").unwrap();
    fs::write(
        root.join(OsStr::from_bytes(b"a/latin1-\xe9.txt")),
        b"not utf-8 name\n",
    )
    .unwrap();
    for i in 0..40 {
        let mut f = fs::File::create(root.join(format!("a/b/small-{i:03}.txt"))).unwrap();
        writeln!(f, "small file number {i}").unwrap();
    }
    std::os::unix::fs::symlink("hello.txt", root.join("a/link-to-hello")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", root.join("a/dangling")).unwrap();
    fs::hard_link(root.join("a/hello.txt"), root.join("a/b/hardlink-to-hello")).unwrap();
    let fifo = root.join("a/fifo");
    let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    fs::write(root.join("a/setuid-prog"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(
        root.join("a/setuid-prog"),
        fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    fs::set_permissions(root.join("sticky"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::set_permissions(root.join("a/b/c"), fs::Permissions::from_mode(0o700)).unwrap();
    let _ = xattr::set(root.join("a/hello.txt"), "user.bunker", b"xattr value");
    // Nanosecond mtimes, deepest first so directory times stick.
    let mut all: Vec<PathBuf> = Vec::new();
    collect(root, &mut all);
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, p) in all.iter().enumerate() {
        let t = filetime::FileTime::from_unix_time(
            1_700_000_000 + i as i64 * 3600,
            123_456_789 + i as u32,
        );
        filetime::set_symlink_file_times(p, t, t).unwrap();
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let md = fs::symlink_metadata(&p).unwrap();
        if md.is_dir() {
            collect(&p, out);
        }
        out.push(p);
    }
}

/// Everything we compare about one entry.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime_ns: i128,
    pub content: Option<[u8; 32]>,
    pub link: Option<Vec<u8>>,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Snapshot of a tree: relative path -> entry, plus hard-link groups.
pub struct TreeState {
    pub entries: BTreeMap<Vec<u8>, Entry>,
    pub hardlink_groups: Vec<Vec<Vec<u8>>>,
}

pub fn scan(root: &Path) -> TreeState {
    let mut paths = Vec::new();
    collect(root, &mut paths);
    let mut entries = BTreeMap::new();
    let mut inodes: HashMap<(u64, u64), Vec<Vec<u8>>> = HashMap::new();
    for p in paths {
        let rel = p
            .strip_prefix(root)
            .unwrap()
            .as_os_str()
            .as_bytes()
            .to_vec();
        let md = fs::symlink_metadata(&p).unwrap();
        let ft = md.file_type();
        use std::os::unix::fs::FileTypeExt;
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_fifo() {
            "fifo"
        } else if ft.is_file() {
            "file"
        } else {
            "other"
        };
        let content = (kind == "file").then(|| {
            use sha2::{Digest, Sha256};
            <[u8; 32]>::from(Sha256::digest(fs::read(&p).unwrap()))
        });
        if kind == "file" && md.nlink() > 1 {
            inodes
                .entry((md.dev(), md.ino()))
                .or_default()
                .push(rel.clone());
        }
        let link =
            (kind == "symlink").then(|| fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec());
        let mut xattrs: Vec<(Vec<u8>, Vec<u8>)> = if kind == "symlink" {
            Vec::new()
        } else {
            xattr::list(&p)
                .map(|names| {
                    names
                        .filter_map(|n| {
                            xattr::get(&p, &n)
                                .ok()
                                .flatten()
                                .map(|v| (n.as_bytes().to_vec(), v))
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        xattrs.sort();
        entries.insert(
            rel,
            Entry {
                kind,
                mode: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                size: if kind == "file" { md.len() } else { 0 },
                mtime_ns: md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128,
                content,
                link,
                xattrs,
            },
        );
    }
    let mut hardlink_groups: Vec<Vec<Vec<u8>>> = inodes
        .into_values()
        .map(|mut v| {
            v.sort();
            v
        })
        .collect();
    hardlink_groups.sort();
    TreeState {
        entries,
        hardlink_groups,
    }
}

/// Assert two trees are equal in everything a restore must keep.
pub fn assert_same_tree(expected: &Path, actual: &Path) {
    let a = scan(expected);
    let b = scan(actual);
    let ka: Vec<_> = a
        .entries
        .keys()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    let kb: Vec<_> = b
        .entries
        .keys()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert_eq!(
        ka,
        kb,
        "different sets of paths in {} and {}",
        expected.display(),
        actual.display()
    );
    for (k, ea) in &a.entries {
        let eb = &b.entries[k];
        assert_eq!(ea, eb, "entry {:?} differs", String::from_utf8_lossy(k));
    }
    assert_eq!(
        a.hardlink_groups, b.hardlink_groups,
        "hard-link groups differ"
    );
}
