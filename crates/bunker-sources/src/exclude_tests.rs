use super::*;
use crate::meta::lstat_meta;

fn fake_meta(kind: FileKind, size: u64) -> FsMeta {
    FsMeta {
        kind,
        mode: kind.type_bits() | 0o644,
        uid: 0,
        gid: 0,
        user: None,
        group: None,
        size,
        mtime: (0, 0),
        atime: (0, 0),
        ctime: (0, 0),
        inode: 1,
        dev: 1,
        nlink: 1,
        rdev: 0,
        blocks: 0,
        link_target: None,
        xattrs: Vec::new(),
    }
}

fn excluder(opts: ExcludeOptions) -> Excluder {
    Excluder::new(&opts).unwrap()
}

#[test]
fn pattern_table() {
    let ex = excluder(ExcludeOptions {
        excludes: vec![
            "*.o".into(),
            "/home/*/.cache".into(),
            "node_modules".into(),
            "/srv/data/*".into(),
            "!/srv/data/important".into(),
        ],
        iexcludes: vec!["*.JPG".into(), "Thumbs.db".into()],
        ..Default::default()
    });
    let file = fake_meta(FileKind::File, 10);
    let table: &[(&str, bool)] = &[
        ("/src/main.o", true),
        ("/src/main.c", false),
        ("/home/ann/.cache", true),
        ("/home/ann/.cache/x/y", true),
        ("/home/ann/proj/.cache", false),
        ("/a/b/node_modules/left-pad/index.js", true),
        ("/a/b/node_modules_backup/x", false),
        ("/srv/data/tmp", true),
        ("/srv/data/important", false),
        ("/srv/data/important/file", false),
        ("/photos/IMG_1.jpg", true),
        ("/photos/IMG_1.Jpg", true),
        ("/photos/IMG_1.png", false),
        ("/win/THUMBS.DB", true),
        ("/win/Thumbs.DB.txt", false),
    ];
    for (path, want) in table {
        assert_eq!(ex.excluded(Path::new(path), &file), *want, "{path}");
        assert_eq!(ex.excluded_by_name(Path::new(path)), *want, "{path}");
    }
}

#[test]
fn case_sensitive_exclude_is_case_sensitive() {
    let ex = excluder(ExcludeOptions {
        excludes: vec!["*.JPG".into()],
        ..Default::default()
    });
    assert!(ex.excluded_by_name(Path::new("/p/a.JPG")));
    assert!(!ex.excluded_by_name(Path::new("/p/a.jpg")));
}

#[test]
fn invalid_pattern_is_an_error() {
    let err = Excluder::new(&ExcludeOptions {
        excludes: vec!["[oops".into()],
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(err, SourceError::InvalidPattern { .. }));
}

#[test]
fn size_parsing_and_rule() {
    assert_eq!(parse_size("100").unwrap(), 100);
    assert_eq!(parse_size("7b").unwrap(), 7);
    assert_eq!(parse_size("2k").unwrap(), 2048);
    assert_eq!(parse_size("3M").unwrap(), 3 << 20);
    assert_eq!(parse_size("1g").unwrap(), 1 << 30);
    assert_eq!(parse_size("1T").unwrap(), 1 << 40);
    for bad in ["", "k", "1.5M", "-1", "12x", "99999999999t"] {
        assert!(parse_size(bad).is_err(), "{bad}");
    }
    let ex = excluder(ExcludeOptions {
        exclude_larger_than: Some("1k".into()),
        ..Default::default()
    });
    let p = Path::new("/x/f");
    assert!(!ex.excluded(p, &fake_meta(FileKind::File, 1024)));
    assert!(ex.excluded(p, &fake_meta(FileKind::File, 1025)));
    assert!(!ex.excluded(p, &fake_meta(FileKind::Dir, 1 << 20)));
}

#[test]
fn variable_expansion_like_go() {
    let env = |k: &str| match k {
        "HOME" => Some("/home/ann".to_string()),
        "X" => Some("x".to_string()),
        "1" => Some("one".to_string()),
        _ => None,
    };
    let cases: &[(&str, &str)] = &[
        ("$HOME/.cache", "/home/ann/.cache"),
        ("${HOME}/tmp", "/home/ann/tmp"),
        ("$$HOME", "$HOME"),
        ("a$", "a$"),
        ("$UNSET/x", "/x"),
        ("${}x", "x"),
        ("${X", "X"),
        ("$1a", "onea"),
        ("$X$X", "xx"),
        ("$-y", "y"),
        ("100$ /x", "100$ /x"),
        ("plain", "plain"),
    ];
    for (input, want) in cases {
        assert_eq!(expand_vars(input, &env), *want, "{input}");
    }
}

#[test]
fn exclude_files_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("excl");
    std::fs::write(
        &f,
        "# comment\n\n   *.log  \n/var/tmp\n!/var/tmp/keep\n\t# indented comment\n",
    )
    .unwrap();
    let fi = dir.path().join("iexcl");
    // UTF-16LE with BOM, as written by some Windows editors
    let mut data = vec![0xFF, 0xFE];
    for u in "*.BAK\r\n".encode_utf16() {
        data.extend_from_slice(&u.to_le_bytes());
    }
    std::fs::write(&fi, data).unwrap();
    let ex = excluder(ExcludeOptions {
        exclude_files: vec![f],
        iexclude_files: vec![fi],
        ..Default::default()
    });
    assert!(ex.excluded_by_name(Path::new("/a/b.log")));
    assert!(ex.excluded_by_name(Path::new("/var/tmp/x")));
    assert!(!ex.excluded_by_name(Path::new("/var/tmp/keep")));
    assert!(ex.excluded_by_name(Path::new("/a/b.bak")));
    assert!(!ex.excluded_by_name(Path::new("/a/# comment")));

    let missing = Excluder::new(&ExcludeOptions {
        exclude_files: vec![dir.path().join("nope")],
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(missing.kind(), crate::error::SourceErrorKind::NotFound);
}

#[test]
fn cachedir_tag_and_if_present() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let cache = root.join("cache");
    let fake = root.join("fake");
    let marked = root.join("marked");
    let normal = root.join("normal");
    for d in [&cache, &fake, &marked, &normal] {
        std::fs::create_dir(d).unwrap();
        std::fs::write(d.join("data"), b"x").unwrap();
    }
    std::fs::write(
        cache.join("CACHEDIR.TAG"),
        b"Signature: 8a477f597d28d172789f06886806bc55\n# created by x\n",
    )
    .unwrap();
    std::fs::write(fake.join("CACHEDIR.TAG"), b"Signature: nope").unwrap();
    std::fs::write(marked.join(".nobackup"), b"").unwrap();
    let ex = excluder(ExcludeOptions {
        exclude_caches: true,
        exclude_if_present: vec![".nobackup".into()],
        ..Default::default()
    });
    let check = |p: PathBuf| ex.excluded(&p, &lstat_meta(&p, false).unwrap());
    assert!(check(cache.join("data")));
    assert!(
        !check(cache.join("CACHEDIR.TAG")),
        "tag file itself is kept"
    );
    assert!(!check(cache.clone()), "the directory itself is kept");
    assert!(!check(fake.join("data")), "wrong signature");
    assert!(check(marked.join("data")));
    assert!(!check(marked.join(".nobackup")));
    assert!(!check(normal.join("data")));
    // cached answer stays consistent
    assert!(check(cache.join("data")));

    assert!(Excluder::new(&ExcludeOptions {
        exclude_if_present: vec![":header".into()],
        ..Default::default()
    })
    .is_err());
}

#[test]
fn one_file_system() {
    assert!(Excluder::new(&ExcludeOptions {
        one_file_system: true,
        ..Default::default()
    })
    .is_err());

    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f");
    std::fs::write(&f, b"x").unwrap();
    let ex = excluder(ExcludeOptions {
        one_file_system: true,
        roots: vec![dir.path().to_path_buf()],
        ..Default::default()
    });
    let mut meta = lstat_meta(&f, false).unwrap();
    assert!(!ex.excluded(&f, &meta));
    meta.dev = meta.dev.wrapping_add(1);
    assert!(ex.excluded(&f, &meta), "file on another device");
    // a directory on another device whose parent is on the root device is a
    // mount point and is kept (its contents are not)
    let sub = dir.path().join("mnt");
    std::fs::create_dir(&sub).unwrap();
    let mut dmeta = lstat_meta(&sub, false).unwrap();
    dmeta.dev = dmeta.dev.wrapping_add(1);
    assert!(!ex.excluded(&sub, &dmeta));
    let deeper = sub.join("deeper");
    std::fs::create_dir(&deeper).unwrap();
    // parent `sub` really is on the root device; simulate the real case with
    // /proc below / when both exist on different devices
    let root_ex = excluder(ExcludeOptions {
        one_file_system: true,
        roots: vec![PathBuf::from("/")],
        ..Default::default()
    });
    let proc_ = Path::new("/proc");
    let self_ = Path::new("/proc/self/fd");
    if let (Ok(pm), Ok(sm), Ok(rm)) = (
        lstat_meta(proc_, false),
        lstat_meta(self_, false),
        lstat_meta(Path::new("/"), false),
    ) {
        if pm.dev != rm.dev {
            assert!(!root_ex.excluded(proc_, &pm), "mount point kept");
            assert!(root_ex.excluded(self_, &sm), "below mount point excluded");
        }
    }
}
