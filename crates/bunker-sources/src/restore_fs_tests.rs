use super::*;
use crate::meta::lstat_meta;
use std::io::Write;
use std::os::unix::fs::MetadataExt;

fn setup() -> (tempfile::TempDir, TargetDir) {
    let dir = tempfile::tempdir().unwrap();
    let target = TargetDir::open(&dir.path().join("target"), true).unwrap();
    (dir, target)
}

/// A directory outside the target, in the system temp dir, with a random name.
fn outside() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("outside-")
        .tempdir()
        .unwrap()
}

fn dir_entries(p: &Path) -> Vec<std::ffi::OsString> {
    let mut v: Vec<_> = std::fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    v.sort();
    v
}

const UNSAFE: &[&[u8]] = &[
    b"", b".", b"..", b"a/b", b"/", b"/etc", b"../x", b"x/..", b"a\0b", b"\0",
];

#[test]
fn unsafe_names_are_rejected() {
    for name in UNSAFE {
        assert!(
            matches!(validate_name(name), Err(SourceError::InvalidName { .. })),
            "{name:?}"
        );
    }
    for ok in [&b"a"[..], b"...", b".hidden", b"a..b", b"\xff\xfe", b"-"] {
        validate_name(ok).unwrap();
    }
}

#[test]
fn unsafe_names_create_nothing() {
    let (_tmp, t) = setup();
    t.mkdir(&[b"d"], 0o755).unwrap();
    for name in UNSAFE {
        for rel in [vec![*name], vec![&b"d"[..], *name], vec![*name, &b"x"[..]]] {
            assert!(t.mkdir(&rel, 0o755).is_err(), "{rel:?}");
            assert!(t.create_file(&rel, true).is_err(), "{rel:?}");
            assert!(t.symlink(&rel, b"x").is_err(), "{rel:?}");
            assert!(t.mkfifo(&rel, 0o644).is_err(), "{rel:?}");
            assert!(t.hardlink(&[b"d"], &rel).is_err(), "{rel:?}");
            assert!(t.remove(&rel).is_err(), "{rel:?}");
            assert!(t.exists(&rel).is_err(), "{rel:?}");
            assert!(t.apply_meta(&rel, &RestoreMeta::default(), false).is_err());
        }
    }
    assert!(matches!(t.mkdir(&[], 0o755), Err(SourceError::EmptyPath)));
    assert_eq!(dir_entries(t.path()), vec![std::ffi::OsString::from("d")]);
    assert!(dir_entries(&t.path().join("d")).is_empty());
}

#[test]
fn symlinked_parent_is_never_followed() {
    let (_tmp, t) = setup();
    let out = outside();
    let victim = out.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o640)).unwrap();
    let before = std::fs::metadata(&victim).unwrap();

    t.symlink(&[b"evil"], out.path().as_os_str().as_bytes())
        .unwrap();
    t.symlink(&[b"evilfile"], victim.as_os_str().as_bytes())
        .unwrap();
    let under: &[&[u8]] = &[b"evil", b"x"];
    let on_victim: &[&[u8]] = &[b"evil", b"victim"];
    assert!(t.mkdir(under, 0o777).is_err());
    assert!(t.create_file(under, false).is_err());
    assert!(t.create_file(on_victim, true).is_err());
    assert!(t.symlink(under, b"/etc/passwd").is_err());
    assert!(t.mkfifo(under, 0o666).is_err());
    assert!(t.hardlink(&[b"evilfile"], under).is_err());
    assert!(t.hardlink(on_victim, &[b"stolen"]).is_err());
    assert!(t.remove(on_victim).is_err());
    assert!(t.exists(on_victim).is_err());
    let meta = RestoreMeta {
        mode: 0o777,
        mtime: (1, 0),
        atime: (1, 0),
        ..Default::default()
    };
    assert!(t.apply_meta(on_victim, &meta, false).is_err());
    // the final component is not followed either
    assert!(t.mkdir(&[b"evil"], 0o755).is_err());
    assert!(t.create_file(&[b"evilfile"], false).is_err());
    assert!(t.apply_meta(&[b"evilfile"], &meta, false).is_err());
    t.apply_meta(&[b"evilfile"], &meta, true).unwrap();

    assert_eq!(
        dir_entries(out.path()),
        vec![std::ffi::OsString::from("victim")]
    );
    let after = std::fs::metadata(&victim).unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert_eq!(after.mode(), before.mode());
    assert_eq!(after.mtime(), before.mtime());
    assert_eq!(after.nlink(), 1);

    // overwrite replaces the symlink itself, the victim stays intact
    let mut f = t.create_file(&[b"evilfile"], true).unwrap();
    f.write_all(b"new").unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    let m = lstat_meta(&t.path().join("evilfile"), false).unwrap();
    assert_eq!(m.kind, FileKind::File);
    assert!(!t.path().join("stolen").exists());
}

#[test]
fn hardlinks_stay_inside() {
    let (_tmp, t) = setup();
    t.mkdir(&[b"a"], 0o755).unwrap();
    t.mkdir(&[b"b"], 0o755).unwrap();
    t.create_file(&[b"a", b"f"], false)
        .unwrap()
        .write_all(b"data")
        .unwrap();
    t.hardlink(&[b"a", b"f"], &[b"b", b"g"]).unwrap();
    let f = lstat_meta(&t.path().join("a/f"), false).unwrap();
    let g = lstat_meta(&t.path().join("b/g"), false).unwrap();
    assert_eq!(f.inode, g.inode);
    assert_eq!(g.nlink, 2);
    // linking a symlink links the link, not its target
    let out = outside();
    t.symlink(&[b"l"], out.path().as_os_str().as_bytes())
        .unwrap();
    t.hardlink(&[b"l"], &[b"l2"]).unwrap();
    assert_eq!(
        lstat_meta(&t.path().join("l2"), false).unwrap().kind,
        FileKind::Symlink
    );
    assert!(t.hardlink(&[b"a", b"f"], &[b"..", b"escape"]).is_err());
    assert!(t.hardlink(&[b"a", b"f"], &[b"l", b"escape"]).is_err());
    assert!(dir_entries(out.path()).is_empty());
}

#[test]
fn create_file_overwrite_rules() {
    let (_tmp, t) = setup();
    t.create_file(&[b"f"], false)
        .unwrap()
        .write_all(b"one")
        .unwrap();
    assert!(t.create_file(&[b"f"], false).is_err());
    // an existing hard link elsewhere keeps the old content
    t.hardlink(&[b"f"], &[b"keep"]).unwrap();
    t.create_file(&[b"f"], true)
        .unwrap()
        .write_all(b"two")
        .unwrap();
    assert_eq!(std::fs::read(t.path().join("f")).unwrap(), b"two");
    assert_eq!(std::fs::read(t.path().join("keep")).unwrap(), b"one");
    t.mkdir(&[b"d"], 0o755).unwrap();
    assert!(matches!(
        t.create_file(&[b"d"], true),
        Err(SourceError::UnexpectedType { .. })
    ));
    t.mkdir(&[b"d"], 0o755).unwrap();
    assert!(t.mkdir(&[b"f"], 0o755).is_err());
}

#[test]
fn exists_reports() {
    let (_tmp, t) = setup();
    assert!(!t.exists(&[b"x"]).unwrap());
    assert!(!t.exists(&[b"x", b"y"]).unwrap());
    t.symlink(&[b"dangling"], b"/nonexistent/path").unwrap();
    assert!(t.exists(&[b"dangling"]).unwrap());
    assert!(t.exists(&[b"dangling", b"y"]).is_err());
    t.mkdir(&[b"x"], 0o700).unwrap();
    assert!(t.exists(&[b"x"]).unwrap());
    t.remove(&[b"dangling"]).unwrap();
    assert!(!t.exists(&[b"dangling"]).unwrap());
    assert!(t.remove(&[b"x"]).is_err());
}

#[test]
fn metadata_round_trip() {
    let (_tmp, t) = setup();
    t.mkdir(&[b"sticky"], 0o700).unwrap();
    t.create_file(&[b"sticky", b"suid"], false)
        .unwrap()
        .write_all(b"#!")
        .unwrap();
    t.symlink(&[b"sticky", b"link"], b"suid").unwrap();
    t.mkfifo(&[b"fifo"], 0o600).unwrap();

    let xattr_ok = xattr::set(t.path().join("sticky/suid"), "user.probe", b"1").is_ok();
    let root = rustix::process::geteuid().is_root();
    let (uid, gid) = if root {
        (1234, 5678)
    } else {
        (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        )
    };
    let file_meta = RestoreMeta {
        mode: 0o4755,
        uid,
        gid,
        atime: (1_600_000_000, 1),
        mtime: (1_500_000_000, 123_456_789),
        xattrs: vec![(b"user.bunker".to_vec(), b"\x00\xffvalue".to_vec())],
    };
    let dir_meta = RestoreMeta {
        mode: 0o1777,
        uid,
        gid,
        atime: (1_000_000_000, 5),
        mtime: (-1_000, 999_999_999),
        xattrs: vec![(b"user.dir".to_vec(), b"d".to_vec())],
    };
    let link_meta = RestoreMeta {
        mode: 0o777,
        uid,
        gid,
        atime: (1_234_567_890, 42),
        mtime: (1_234_567_891, 987_654_321),
        xattrs: vec![(b"user.on-link".to_vec(), b"x".to_vec())],
    };
    t.apply_meta(&[b"sticky", b"suid"], &file_meta, false)
        .unwrap();
    t.apply_meta(&[b"sticky", b"link"], &link_meta, true)
        .unwrap();
    t.apply_meta(
        &[b"fifo"],
        &RestoreMeta {
            mode: 0o640,
            uid,
            gid,
            mtime: (7, 7),
            atime: (7, 7),
            xattrs: vec![],
        },
        false,
    )
    .unwrap();
    t.apply_meta(&[b"sticky"], &dir_meta, false).unwrap();
    assert!(t
        .apply_meta(&[b"sticky", b"link"], &link_meta, false)
        .is_err());

    let f = lstat_meta(&t.path().join("sticky/suid"), true).unwrap();
    assert_eq!(f.permissions(), 0o4755, "setuid survives chown");
    assert_eq!(f.mtime, (1_500_000_000, 123_456_789));
    assert_eq!(f.atime, (1_600_000_000, 1));
    assert_eq!((f.uid, f.gid), (uid, gid));
    let d = lstat_meta(&t.path().join("sticky"), true).unwrap();
    assert_eq!(d.permissions(), 0o1777);
    assert_eq!(d.mtime, (-1_000, 999_999_999));
    let l = lstat_meta(&t.path().join("sticky/link"), true).unwrap();
    assert_eq!(l.kind, FileKind::Symlink);
    assert_eq!(l.mtime, (1_234_567_891, 987_654_321));
    assert_eq!(l.link_target.as_deref(), Some(&b"suid"[..]));
    let p = lstat_meta(&t.path().join("fifo"), false).unwrap();
    assert_eq!(
        (p.kind, p.permissions(), p.mtime),
        (FileKind::Fifo, 0o640, (7, 7))
    );

    if xattr_ok {
        assert!(f
            .xattrs
            .contains(&(b"user.bunker".to_vec(), b"\x00\xffvalue".to_vec())));
        assert!(d.xattrs.contains(&(b"user.dir".to_vec(), b"d".to_vec())));
        // user.* xattrs are not allowed on symlinks on Linux: counted, not fatal
        assert!(t.stats().xattrs_skipped >= 1);
    } else {
        assert!(t.stats().xattrs_skipped >= 3);
    }
    if !root {
        assert_eq!(t.stats().chown_skipped, 0);
    }
}

#[test]
fn device_nodes_when_permitted() {
    let (_tmp, t) = setup();
    let null = lstat_meta(Path::new("/dev/null"), false).unwrap();
    match t.mknod(&[b"null"], FileKind::CharDev, 0o666, null.rdev) {
        Ok(()) => {
            let m = lstat_meta(&t.path().join("null"), false).unwrap();
            assert_eq!(m.kind, FileKind::CharDev);
            assert_eq!(m.rdev, null.rdev);
        }
        Err(e) => assert_eq!(
            e.kind(),
            crate::error::SourceErrorKind::PermissionDenied,
            "{e}"
        ),
    }
    assert!(t.mknod(&[b"x"], FileKind::File, 0o644, 0).is_err());
    t.mknod(&[b"sock"], FileKind::Socket, 0o600, 0).unwrap();
    assert_eq!(
        lstat_meta(&t.path().join("sock"), false).unwrap().kind,
        FileKind::Socket
    );
}

use std::os::unix::fs::PermissionsExt;

#[test]
fn cached_directories_and_descriptor_metadata() {
    let (_tmp, t) = setup();
    let out = outside();
    t.mkdir(&[b"a"], 0o755).unwrap();
    t.mkdir(&[b"a", b"b"], 0o755).unwrap();
    let f = t.create_file(&[b"a", b"b", b"f"], false).unwrap();
    (&f).write_all(b"data").unwrap();
    let meta = RestoreMeta {
        mode: 0o640,
        uid: rustix::process::geteuid().as_raw(),
        gid: rustix::process::getegid().as_raw(),
        atime: (1_000_000, 5),
        mtime: (2_000_000, 7),
        ..Default::default()
    };
    t.apply_file_meta(&[b"a", b"b", b"f"], &f, &meta).unwrap();
    let m = std::fs::symlink_metadata(t.path().join("a/b/f")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o640);
    assert_eq!((m.mtime(), m.mtime_nsec()), (2_000_000, 7));
    assert_eq!((m.atime(), m.atime_nsec()), (1_000_000, 5));

    // "a/b" is cached now. Swapping it for a symlink to the outside must
    // not let anything land there: the cached descriptor names the removed
    // directory, in which nothing can be created.
    std::fs::remove_file(t.path().join("a/b/f")).unwrap();
    std::fs::remove_dir(t.path().join("a/b")).unwrap();
    std::os::unix::fs::symlink(out.path(), t.path().join("a/b")).unwrap();
    assert!(t.create_file(&[b"a", b"b", b"g"], false).is_err());
    assert!(dir_entries(out.path()).is_empty());
}
