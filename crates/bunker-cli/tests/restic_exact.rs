//! Exactly restic where restic has the same thing, checked against the real
//! restic (Debian's `restic`) on the same repository: tree ids of directories
//! with extended attributes, `dump`'s tar bytes and exit codes,
//! `diff --metadata`, and the shapes of `key list --json`, `ls --json` and
//! `ls -l`. Each test skips with a note when restic is not installed.

mod output_support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use assert_cmd::cargo::CommandCargoExt;
use output_support::{run_ok, show};

const PASSWORD: &str = "exact password";

fn restic_available() -> bool {
    let ok = Command::new("restic")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED: restic is not installed (apt-get install restic)");
    }
    ok
}

fn bunker(repo: &Path) -> Command {
    let mut c = Command::cargo_bin("bunker").unwrap();
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("TZ", "UTC")
        .env("BUNKER_REPOSITORY", repo)
        .env("BUNKER_PASSWORD", PASSWORD)
        .arg("--no-progress");
    c
}

fn restic(repo: &Path) -> Command {
    let mut c = Command::new("restic");
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("TZ", "UTC")
        .env("RESTIC_REPOSITORY", repo)
        .env("RESTIC_PASSWORD", PASSWORD)
        .arg("--no-cache");
    c
}

/// A restic repository with a fast KDF is not possible from the CLI, so
/// restic's own (calibrated) parameters are used; bunker opens it as is.
fn restic_repo(dir: &Path) -> PathBuf {
    let repo = dir.join("repo");
    run_ok(restic(&repo).arg("init"));
    repo
}

/// The id of the newest snapshot tagged `tag`, and its root tree.
fn snapshot_with_tag(repo: &Path, tag: &str) -> (String, String) {
    let out = run_ok(restic(repo).args(["snapshots", "--json", "--tag", tag]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let last = v.as_array().and_then(|a| a.last()).expect("a snapshot");
    (
        last["id"].as_str().unwrap().to_string(),
        last["tree"].as_str().unwrap().to_string(),
    )
}

/// The subtree id of the directory `abs` below `tree`, walked with
/// `restic cat blob` (restic is the oracle here, not bunker).
fn subtree_of(repo: &Path, tree: &str, abs: &Path) -> String {
    let mut id = tree.to_string();
    for comp in abs.components().skip(1) {
        let name = comp.as_os_str().to_str().unwrap();
        let out = run_ok(restic(repo).args(["cat", "blob", &id]));
        let t: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let node = t["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in tree {id}"));
        id = node["subtree"].as_str().unwrap().to_string();
    }
    id
}

/// Read every file and directory below `root` twice, a little apart, so
/// that relatime has updated each atime once and the backups that follow
/// see (and store) the same atimes.
fn settle_atimes(root: &Path) {
    for _ in 0..2 {
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                let t = e.file_type().unwrap();
                if t.is_dir() {
                    stack.push(e.path());
                } else if t.is_file() {
                    std::fs::read(e.path()).unwrap();
                }
            }
        }
        std::thread::sleep(Duration::from_millis(30));
    }
}

/// Whether user xattrs can be set below `dir` (prints a note when not).
fn xattrs_supported(dir: &Path) -> bool {
    let probe = dir.join(".probe");
    std::fs::write(&probe, b"").unwrap();
    let ok = xattr::set(&probe, "user.probe", b"1").is_ok();
    std::fs::remove_file(&probe).unwrap();
    if !ok {
        eprintln!("SKIPPED: the file system does not support user xattrs");
    }
    ok
}

/// Set xattrs in an order that is not sorted by name (ext4 and tmpfs list
/// them in the order they were set).
fn set_unsorted_xattrs(p: &Path) {
    for (n, v) in [("user.zeta", "z"), ("user.alpha", "a"), ("user.mid", "m")] {
        xattr::set(p, n, v.as_bytes()).unwrap();
    }
}

#[test]
fn trees_with_xattrs_get_the_same_ids_as_restics() {
    if !restic_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    if !xattrs_supported(tmp.path()) {
        return;
    }
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), b"alpha").unwrap();
    std::fs::write(src.join("sub/b.txt"), b"beta").unwrap();
    set_unsorted_xattrs(&src.join("a.txt"));
    set_unsorted_xattrs(&src.join("sub"));
    xattr::set(src.join("sub/b.txt"), "user.b", b"2").unwrap();
    xattr::set(src.join("sub/b.txt"), "user.a", b"1").unwrap();
    let listed: Vec<String> = xattr::list(src.join("a.txt"))
        .unwrap()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| n.starts_with("user."))
        .collect();
    let mut sorted = listed.clone();
    sorted.sort();
    if listed == sorted {
        eprintln!("SKIPPED: this file system lists xattrs sorted; the order cannot differ");
        return;
    }
    settle_atimes(&src);
    let repo = restic_repo(tmp.path());
    run_ok(restic(&repo).args(["backup", "--tag", "restic"]).arg(&src));
    run_ok(bunker(&repo).args(["backup", "--tag", "bunker"]).arg(&src));
    let (_, restic_tree) = snapshot_with_tag(&repo, "restic");
    let (_, bunker_tree) = snapshot_with_tag(&repo, "bunker");
    let ours = subtree_of(&repo, &bunker_tree, &src);
    let theirs = subtree_of(&repo, &restic_tree, &src);
    if ours != theirs {
        let a = run_ok(restic(&repo).args(["cat", "blob", &theirs]));
        let b = run_ok(restic(&repo).args(["cat", "blob", &ours]));
        panic!(
            "tree of {src:?} differs:\nrestic: {}\nbunker: {}",
            String::from_utf8_lossy(&a.stdout),
            String::from_utf8_lossy(&b.stdout)
        );
    }
}

/// A source tree with what `dump` must get right: nested directories,
/// xattrs in kernel order, a symlink, a nested fifo, a pre-1970 mtime with
/// a fraction, half-second mtimes, a non-ASCII name and a long path.
fn dump_source(src: &Path, with_xattrs: bool) {
    let deep = src.join(format!("{}/{}", "d".repeat(60), "e".repeat(60)));
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("long-path-file.txt"), b"deep").unwrap();
    std::fs::create_dir_all(src.join("dir/sub")).unwrap();
    std::fs::write(src.join("dir/sub/file"), vec![7u8; 70_000]).unwrap();
    std::fs::write(src.join("dir/x.txt"), b"hello").unwrap();
    std::fs::write(src.join("dir/caf\u{e9}.txt"), b"unicode").unwrap();
    std::os::unix::fs::symlink("x.txt", src.join("dir/link")).unwrap();
    let fifo = src.join("dir/sub/fifo");
    let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success());
    std::fs::write(src.join("dir/old"), b"old").unwrap();
    std::fs::write(src.join("dir/half"), b"half").unwrap();
    std::fs::write(src.join("dir/below-half"), b"below").unwrap();
    std::fs::set_permissions(
        src.join("dir/x.txt"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    if with_xattrs {
        set_unsorted_xattrs(&src.join("dir/x.txt"));
        set_unsorted_xattrs(&src.join("dir/sub"));
    }
    let set = |p: &str, secs: i64, nanos: u32| {
        filetime::set_file_mtime(src.join(p), filetime::FileTime::from_unix_time(secs, nanos))
            .unwrap();
    };
    set("dir/old", -315_619_200, 700_000_000); // 1960-01-01T00:00:00.7Z
    set("dir/half", 1_600_000_000, 500_000_000);
    set("dir/below-half", 1_600_000_000, 499_999_999);
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

#[test]
fn dump_writes_restics_tar_bytes_and_exit_codes() {
    if !restic_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let with_xattrs = xattrs_supported(&src);
    dump_source(&src, with_xattrs);
    let repo = restic_repo(tmp.path());
    run_ok(restic(&repo).args(["backup", "--tag", "r"]).arg(&src));
    let (snap, _) = snapshot_with_tag(&repo, "r");
    let abs = |rel: &str| format!("{}/{rel}", src.display());

    // The same tar stream, byte for byte, for the whole tree and a subtree.
    for path in [src.display().to_string(), abs("dir"), "/".to_string()] {
        let theirs = run_ok(restic(&repo).args(["dump", &snap, &path]));
        let ours = run_ok(bunker(&repo).args(["dump", &snap, &path]));
        if ours.stdout != theirs.stdout {
            let list = |bytes: &[u8]| {
                let f = tmp.path().join("list.tar");
                std::fs::write(&f, bytes).unwrap();
                let o = Command::new("tar")
                    .args(["--full-time", "-tvf"])
                    .arg(&f)
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&o.stdout).into_owned()
            };
            let at = ours
                .stdout
                .iter()
                .zip(&theirs.stdout)
                .position(|(a, b)| a != b);
            panic!(
                "dump {path}: {} bytes from bunker, {} from restic, first difference at {at:?}\n\
                 restic:\n{}\nbunker:\n{}",
                ours.stdout.len(),
                theirs.stdout.len(),
                list(&theirs.stdout),
                list(&ours.stdout)
            );
        }
        assert_eq!(code(&ours), Some(0));
    }
    // A file's bytes.
    let theirs = run_ok(restic(&repo).args(["dump", &snap, &abs("dir/sub/file")]));
    let ours = run_ok(bunker(&repo).args(["dump", &snap, &abs("dir/sub/file")]));
    assert!(ours.stdout == theirs.stdout && ours.stdout.len() == 70_000);

    // A symlink, a fifo, a missing path, a path below a file: restic exits 2.
    for path in [
        abs("dir/link"),
        abs("dir/sub/fifo"),
        abs("dir/missing"),
        abs("dir/x.txt/below"),
    ] {
        let theirs = restic(&repo).args(["dump", &snap, &path]).output().unwrap();
        let ours = bunker(&repo).args(["dump", &snap, &path]).output().unwrap();
        assert_eq!(
            code(&theirs),
            Some(2),
            "restic dump {path}: {}",
            show(&theirs)
        );
        assert_eq!(
            code(&ours),
            code(&theirs),
            "bunker dump {path}: {}",
            show(&ours)
        );
        assert!(ours.stdout.is_empty());
        let err = String::from_utf8_lossy(&ours.stderr);
        assert!(err.starts_with("bunker: error: cannot dump"), "{err}");
    }
}

/// The change lines of `diff` output (restic's and ours have the same
/// `%-5s%s` layout), without the header and statistics.
fn change_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            l.len() > 5
                && l.as_bytes()[..5].iter().all(|&b| b"+-MUT? ".contains(&b))
                && !l[..5].trim_end().is_empty()
                && l.as_bytes()[5] == b'/'
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn diff_metadata_prints_restics_modifiers() {
    if !restic_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("d/inner")).unwrap();
    std::fs::write(src.join("d/inner/f"), b"one").unwrap();
    std::fs::write(src.join("d/keep"), b"keep").unwrap();
    std::fs::write(src.join("kind"), b"file first").unwrap();
    std::fs::write(src.join("mode"), b"chmod me").unwrap();
    std::fs::create_dir(src.join("same")).unwrap();
    std::fs::write(src.join("same/s"), b"same").unwrap();
    let repo = restic_repo(tmp.path());
    run_ok(restic(&repo).args(["backup", "--tag", "a"]).arg(&src));
    std::fs::write(src.join("d/inner/f"), b"two").unwrap();
    std::fs::remove_file(src.join("kind")).unwrap();
    std::fs::create_dir(src.join("kind")).unwrap();
    std::fs::set_permissions(src.join("mode"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(src.join("new"), b"new").unwrap();
    run_ok(restic(&repo).args(["backup", "--tag", "b"]).arg(&src));
    let (a, _) = snapshot_with_tag(&repo, "a");
    let (b, _) = snapshot_with_tag(&repo, "b");
    for metadata in [true, false] {
        let flag: &[&str] = if metadata { &["--metadata"] } else { &[] };
        let theirs = run_ok(restic(&repo).arg("diff").args(flag).args([&a, &b]));
        let ours = run_ok(bunker(&repo).arg("diff").args(flag).args([&a, &b]));
        let (theirs, ours) = (change_lines(&theirs), change_lines(&ours));
        assert!(!theirs.is_empty());
        assert_eq!(ours, theirs, "diff {flag:?}");
        if metadata {
            assert!(theirs.iter().any(|l| l.starts_with("TU ")), "{theirs:?}");
            assert!(
                theirs
                    .iter()
                    .any(|l| l.starts_with("U    /") && l.ends_with("/d/")),
                "{theirs:?}"
            );
        }
    }
}

#[test]
fn key_list_and_ls_print_restics_shapes() {
    if !restic_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("dir")).unwrap();
    std::fs::write(src.join("dir/f"), b"file").unwrap();
    std::os::unix::fs::symlink("dir/f", src.join("link")).unwrap();
    let repo = restic_repo(tmp.path());
    run_ok(restic(&repo).args(["backup", "--tag", "t"]).arg(&src));
    let (snap, _) = snapshot_with_tag(&repo, "t");

    // key list --json: the same array (short id, userName, hostName, created).
    let theirs = run_ok(restic(&repo).args(["key", "list", "--json"]));
    let ours = run_ok(bunker(&repo).args(["--json", "key", "list"]));
    let parse = |o: &Output| -> serde_json::Value {
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(o)))
    };
    assert_eq!(parse(&ours), parse(&theirs));

    // ls --json: every node line as restic's (bunker adds message_type and
    // the inode, documented), and no "mode":0.
    let theirs = run_ok(restic(&repo).args(["ls", "--json", &snap]));
    let ours = run_ok(bunker(&repo).args(["--json", "ls", &snap]));
    let nodes = |o: &Output| -> Vec<serde_json::Value> {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["struct_type"] == "node")
            .map(|mut v| {
                let o = v.as_object_mut().unwrap();
                o.remove("message_type");
                o.remove("inode");
                v
            })
            .collect()
    };
    assert_eq!(nodes(&ours), nodes(&theirs));

    // ls -l: restic's lines (its header line aside).
    let lines = |o: &Output| -> Vec<String> {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| !l.starts_with("snapshot "))
            .map(str::to_string)
            .collect()
    };
    let theirs = run_ok(restic(&repo).args(["ls", "-l", &snap]));
    let ours = run_ok(bunker(&repo).args(["ls", "-l", &snap]));
    assert_eq!(lines(&ours), lines(&theirs));

    // A path not in the snapshot: nothing listed, exit 0, as restic.
    let missing = format!("{}/nonexistent", src.display());
    let theirs = run_ok(restic(&repo).args(["ls", &snap, &missing]));
    let ours = run_ok(bunker(&repo).args(["ls", &snap, &missing]));
    assert!(lines(&theirs).is_empty());
    assert!(ours.stdout.is_empty(), "{}", show(&ours));
}

#[test]
fn logs_on_a_redirected_stderr_have_no_colour_or_timestamps() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    run_ok(bunker(&repo).env("BUNKER_TEST_KDF_N", "1024").arg("init"));
    // stderr is a pipe here, as in a cron mail or a log file.
    let out = run_ok(bunker(&repo).env("BUNKER_LOG", "info").arg("snapshots"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("INFO opened repository"),
        "no log lines: {err}"
    );
    assert!(
        !err.contains('\u{1b}'),
        "ANSI codes on a non-terminal: {err:?}"
    );
    for line in err.lines() {
        assert!(
            !line.trim_start().starts_with(|c: char| c.is_ascii_digit()),
            "a timestamp on a non-terminal: {line:?}"
        );
    }
}

#[test]
fn logs_on_a_terminal_are_coloured_unless_no_color() {
    let has_script = Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_script {
        eprintln!("SKIPPED: `script` (util-linux) is not installed; no pseudo-terminal");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    run_ok(bunker(&repo).env("BUNKER_TEST_KDF_N", "1024").arg("init"));
    // `script` runs bunker with a pseudo-terminal as its stderr.
    let on_tty = |no_color: Option<&str>| -> String {
        let mut c = Command::new("script");
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("BUNKER_REPOSITORY", &repo)
            .env("BUNKER_PASSWORD", PASSWORD)
            .env("BUNKER_LOG", "info")
            .args(["-qec"])
            .arg(format!(
                "'{}' --no-progress snapshots",
                env!("CARGO_BIN_EXE_bunker")
            ))
            .arg("/dev/null");
        if let Some(v) = no_color {
            c.env("NO_COLOR", v);
        }
        String::from_utf8_lossy(&run_ok(&mut c).stdout).into_owned()
    };
    let coloured = on_tty(None);
    assert!(coloured.contains("opened repository"), "{coloured:?}");
    assert!(
        coloured.contains("\u{1b}["),
        "no colour on a terminal: {coloured:?}"
    );
    let plain = on_tty(Some("1"));
    assert!(plain.contains("opened repository"), "{plain:?}");
    assert!(
        !plain.contains('\u{1b}'),
        "colour despite NO_COLOR: {plain:?}"
    );
}
