//! A backend-independent check of the [`Storage`] contract.
//!
//! [`run`] exercises every operation against an empty storage and reports the first
//! violation. Unit tests run it against every backend; integration tests against real
//! services (e.g. an S3 server) can call it on a fresh bucket prefix.

use bytes::Bytes;

use crate::error::ErrorKind;
use crate::file_type::{FileInfo, FileType};
use crate::Storage;

fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(what())
    }
}

fn expect_kind<T: std::fmt::Debug>(
    res: Result<T, crate::StorageError>,
    kind: ErrorKind,
    what: &str,
) -> Result<(), String> {
    match res {
        Err(e) if e.kind == kind => Ok(()),
        Err(e) => Err(format!("{what}: expected {kind:?}, got {:?}: {e}", e.kind)),
        Ok(v) => Err(format!("{what}: expected {kind:?}, got Ok({v:?})")),
    }
}

fn content(tag: &str, len: usize) -> Bytes {
    let seed = tag
        .bytes()
        .fold(7u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
    Bytes::from(
        (0..len)
            .map(|i| seed.wrapping_add((i % 251) as u8))
            .collect::<Vec<u8>>(),
    )
}

/// Runs the contract checks against `s`, which must be empty (nothing created yet).
/// Returns a description of the first violation.
pub fn run(s: &dyn Storage) -> Result<(), String> {
    let e = |what: &str| {
        let what = what.to_string();
        move |err: crate::StorageError| format!("{what}: {err}")
    };
    check(!s.location().is_empty(), || "empty location".into())?;
    s.create().map_err(e("create"))?;

    for t in FileType::ALL {
        let l = s.list(t).map_err(e("list on empty repo"))?;
        check(l.is_empty(), || format!("{t}: fresh repo lists {l:?}"))?;
    }

    // Missing files.
    check(
        s.stat(FileType::Config, "").map_err(e("stat"))?.is_none(),
        || "stat(config) on empty repo is not None".into(),
    )?;
    expect_kind(
        s.read(FileType::Config, ""),
        ErrorKind::NotFound,
        "read missing config",
    )?;
    expect_kind(
        s.read(FileType::Index, "0000"),
        ErrorKind::NotFound,
        "read missing",
    )?;
    expect_kind(
        s.read_range(FileType::Pack, "0000", 0, 1),
        ErrorKind::NotFound,
        "read_range missing",
    )?;
    expect_kind(
        s.remove(FileType::Snapshot, "0000"),
        ErrorKind::NotFound,
        "remove missing",
    )?;

    // Invalid names are rejected, never mapped outside the layout.
    for bad in ["", ".hidden", "../escape", "a/b"] {
        expect_kind(
            s.write(FileType::Key, bad, Bytes::from_static(b"x")),
            ErrorKind::Invalid,
            &format!("write with name {bad:?}"),
        )?;
    }

    // Config.
    let cfg = content("config", 155);
    s.write(FileType::Config, "", cfg.clone())
        .map_err(e("write config"))?;
    check(
        s.read(FileType::Config, "").map_err(e("read config"))? == cfg,
        || "config read back differs".into(),
    )?;
    let l = s.list(FileType::Config).map_err(e("list config"))?;
    check(
        l == vec![FileInfo {
            name: "config".into(),
            size: cfg.len() as u64,
        }],
        || format!("list(config) = {l:?}"),
    )?;

    // Every other type: write, list, read, ranges, overwrite, write_new, remove.
    for t in FileType::ALL.into_iter().filter(|t| *t != FileType::Config) {
        let names = ["00aa11", "ff0102", "7e7e7e"];
        let mut expected = Vec::new();
        for (i, n) in names.iter().enumerate() {
            let data = content(n, 1000 * i + 17);
            s.write(t, n, data.clone())
                .map_err(e(&format!("write {t} {n}")))?;
            expected.push(FileInfo {
                name: n.to_string(),
                size: data.len() as u64,
            });
        }
        expected.sort();
        let mut l = s.list(t).map_err(e("list"))?;
        l.sort();
        check(l == expected, || {
            format!("{t}: list {l:?}, expected {expected:?}")
        })?;
        for other in FileType::ALL
            .into_iter()
            .filter(|o| *o != t && *o != FileType::Config)
        {
            let l = s.list(other).map_err(e("list other"))?;
            check(l.is_empty(), || {
                format!("{t} files leak into list({other}): {l:?}")
            })?;
        }

        let n = names[2];
        let data = content(n, 2017);
        check(s.read(t, n).map_err(e("read"))? == data, || {
            format!("{t}: read differs")
        })?;
        check(s.stat(t, n).map_err(e("stat"))? == Some(2017), || {
            format!("{t}: stat size")
        })?;
        let r = s.read_range(t, n, 100, 50).map_err(e("read_range"))?;
        check(r == data.slice(100..150), || {
            format!("{t}: read_range differs")
        })?;
        let r = s.read_range(t, n, 0, 2017).map_err(e("read_range full"))?;
        check(r == data, || format!("{t}: full read_range differs"))?;
        let r = s
            .read_range(t, n, 2017, 0)
            .map_err(e("read_range empty at end"))?;
        check(r.is_empty(), || format!("{t}: empty range returned data"))?;
        match s.read_range(t, n, 2000, 100) {
            Ok(b) => return Err(format!("{t}: read past end returned {} bytes", b.len())),
            Err(err) => check(err.kind != ErrorKind::NotFound, || {
                format!("{t}: read past end reported NotFound: {err}")
            })?,
        }

        // Empty files are valid.
        s.write(t, "0empty", Bytes::new())
            .map_err(e("write empty"))?;
        check(
            s.read(t, "0empty").map_err(e("read empty"))?.is_empty(),
            || format!("{t}: empty file not empty"),
        )?;
        check(
            s.stat(t, "0empty").map_err(e("stat empty"))? == Some(0),
            || format!("{t}: empty stat"),
        )?;
        s.remove(t, "0empty").map_err(e("remove empty"))?;

        // Overwrite replaces.
        let newer = content("newer", 33);
        s.write(t, n, newer.clone()).map_err(e("overwrite"))?;
        check(
            s.read(t, n).map_err(e("read overwritten"))? == newer,
            || format!("{t}: overwrite not visible"),
        )?;

        // write_new.
        let fresh = content("fresh", 64);
        s.write_new(t, "aa0new", fresh.clone())
            .map_err(e("write_new"))?;
        expect_kind(
            s.write_new(t, "aa0new", content("other", 10)),
            ErrorKind::AlreadyExists,
            &format!("{t}: write_new over existing"),
        )?;
        check(
            s.read(t, "aa0new").map_err(e("read after conflict"))? == fresh,
            || format!("{t}: write_new conflict changed the file"),
        )?;

        // remove.
        for n in names.iter().copied().chain(["aa0new"]) {
            s.remove(t, n).map_err(e(&format!("remove {t} {n}")))?;
            check(s.stat(t, n).map_err(e("stat removed"))?.is_none(), || {
                format!("{t}: {n} still present after remove")
            })?;
        }
        expect_kind(s.remove(t, names[0]), ErrorKind::NotFound, "remove twice")?;
        let l = s.list(t).map_err(e("list after remove"))?;
        check(l.is_empty(), || format!("{t}: list after remove {l:?}"))?;
    }

    s.remove(FileType::Config, "").map_err(e("remove config"))?;
    check(
        s.list(FileType::Config)
            .map_err(e("list config"))?
            .is_empty(),
        || "config listed after remove".into(),
    )?;
    Ok(())
}
