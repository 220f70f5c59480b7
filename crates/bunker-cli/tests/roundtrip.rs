//! End-to-end: backup, snapshots, ls, restore, dump, diff, check, cat.

mod common;

use common::{tree_contents, under, Env};
use predicates::prelude::*;

#[test]
fn backup_then_restore_round_trips() {
    let env = Env::init();
    let src = env.make_source();
    env.bunker()
        .arg("backup")
        .arg(&src)
        .args(["--tag", "first"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Files:"))
        .stdout(predicate::str::contains("3 new"))
        .stdout(predicate::str::contains("Added to the repository:"))
        .stdout(predicate::str::is_match(r"snapshot [0-9a-f]{8} saved").expect("regex"));

    let table = env.stdout(&["snapshots"]);
    assert!(
        table.contains("ID") && table.contains("Paths") && table.contains("Size"),
        "{table}"
    );
    assert!(table.contains(src.to_str().expect("utf-8")), "{table}");
    assert!(table.contains("first"), "{table}");
    assert!(table.contains("1 snapshots"), "{table}");

    let target = env.path("restored");
    env.bunker()
        .args(["restore", "latest", "--target"])
        .arg(&target)
        .assert()
        .success();
    assert_eq!(tree_contents(&src), tree_contents(&under(&target, &src)));
}

#[test]
fn second_backup_reads_nothing_and_json_summary_has_restic_fields() {
    let env = Env::init();
    let src = env.make_source();
    let lines = env.json_lines(&["backup", src.to_str().expect("utf-8")]);
    let first = lines.last().expect("summary");
    assert_eq!(first["message_type"], "summary");
    for field in [
        "files_new",
        "files_changed",
        "files_unmodified",
        "dirs_new",
        "dirs_changed",
        "dirs_unmodified",
        "data_blobs",
        "tree_blobs",
        "data_added",
        "data_added_packed",
        "total_files_processed",
        "total_bytes_processed",
        "total_duration",
        "backup_start",
        "backup_end",
        "snapshot_id",
    ] {
        assert!(first.get(field).is_some(), "summary lacks {field}: {first}");
    }
    assert_eq!(first["files_new"], 3);
    assert_eq!(first["total_bytes_processed"], 3_000_000 + 13 + 12);

    let lines = env.json_lines(&["backup", src.to_str().expect("utf-8")]);
    let second = lines.last().expect("summary");
    assert_eq!(second["files_unmodified"], 3, "{second}");
    assert_eq!(second["files_new"], 0, "{second}");
    assert_eq!(second["data_blobs"], 0, "{second}");

    let snaps = env.json(&["snapshots"]);
    let arr = snaps.as_array().expect("array");
    assert_eq!(arr.len(), 2);
    assert_eq!(arr[1]["id"], second["snapshot_id"]);
    assert_eq!(arr[1]["short_id"].as_str().map(str::len), Some(8));
    assert!(
        arr[1]["paths"].is_array() && arr[1]["tree"].is_string(),
        "{}",
        arr[1]
    );
}

#[test]
fn dry_run_writes_no_snapshot() {
    let env = Env::init();
    let src = env.make_source();
    env.bunker()
        .args(["backup", "--dry-run"])
        .arg(&src)
        .assert()
        .success()
        .stdout(predicate::str::contains("Would add to the repository"));
    assert_eq!(env.json(&["snapshots"]), serde_json::json!([]));
    assert_eq!(
        std::fs::read_dir(env.repo.join("index"))
            .expect("index")
            .count(),
        0
    );
}

#[test]
fn stdin_backup_and_dump() {
    let env = Env::init();
    env.bunker()
        .args(["backup", "--stdin", "--stdin-filename", "db.sql"])
        .write_stdin("CREATE TABLE t (x int);\n")
        .assert()
        .success();
    env.bunker()
        .args(["dump", "latest", "/db.sql"])
        .assert()
        .success()
        .stdout("CREATE TABLE t (x int);\n");
}

#[test]
fn missing_source_path_exits_3_but_saves_snapshot() {
    let env = Env::init();
    let src = env.make_source();
    let missing = env.path("does-not-exist");
    let out = env
        .bunker()
        .arg("backup")
        .arg(&src)
        .arg(&missing)
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("does-not-exist"));
    assert_eq!(env.json(&["snapshots"]).as_array().map(Vec::len), Some(1));
}

#[test]
fn ls_lists_the_snapshot() {
    let env = Env::init();
    let src = env.make_source();
    env.bunker().arg("backup").arg(&src).assert().success();
    let s = src.to_str().expect("utf-8");
    let listing = env.stdout(&["ls", "latest", "--recursive"]);
    for p in ["a.txt", "big.bin", "sub/b.txt", "empty"] {
        assert!(
            listing.lines().any(|l| l == format!("{s}/{p}")),
            "missing {p}:\n{listing}"
        );
    }
    let sub = env.stdout(&["ls", "latest", &format!("{s}/sub")]);
    assert!(sub.lines().any(|l| l.ends_with("/sub/b.txt")), "{sub}");
    assert!(!sub.contains("a.txt"), "{sub}");
    let long = env.stdout(&["ls", "-l", "latest", &format!("{s}/sub")]);
    assert!(
        long.lines()
            .any(|l| l.contains("12") && l.starts_with("-rw")),
        "{long}"
    );
    let json = env.json_lines(&["ls", "latest", "--recursive"]);
    assert_eq!(json[0]["struct_type"], "snapshot");
    assert!(json[1..]
        .iter()
        .all(|n| n["struct_type"] == "node" && n["path"].is_string()));
    assert!(json
        .iter()
        .any(|n| n["path"] == format!("{s}/big.bin") && n["size"] == 3_000_000));
}

#[test]
fn restore_into_non_empty_target_skips_and_exits_3() {
    let env = Env::init();
    let src = env.make_source();
    env.bunker().arg("backup").arg(&src).assert().success();
    let target = env.path("t");
    let existing = under(&target, &src).join("a.txt");
    std::fs::create_dir_all(existing.parent().expect("parent")).expect("mkdir");
    std::fs::write(&existing, b"local edit").expect("write");

    env.bunker()
        .args(["restore", "latest", "--target"])
        .arg(&target)
        .assert()
        .code(3);
    assert_eq!(std::fs::read(&existing).expect("read"), b"local edit");
    assert_eq!(
        std::fs::read(under(&target, &src).join("sub/b.txt")).expect("restored"),
        b"second file\n"
    );

    let out = env
        .bunker()
        .args([
            "--json",
            "restore",
            "latest",
            "--overwrite",
            "--verify",
            "--target",
        ])
        .arg(&target)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(
        out.stdout
            .split(|&b| b == b'\n')
            .rfind(|l| !l.is_empty())
            .expect("a line"),
    )
    .expect("json");
    assert_eq!(summary["message_type"], "summary");
    // Only the edited file differs; the others are unchanged (restic counts
    // them as skipped), nothing was left unrestored.
    assert_eq!(summary["skipped_existing"], 0, "{summary}");
    assert_eq!(summary["files"], 1, "{summary}");
    assert!(
        summary["unchanged"].as_u64().is_some_and(|n| n >= 2),
        "{summary}"
    );
    assert_eq!(summary["files_skipped"], summary["unchanged"], "{summary}");
    assert_eq!(std::fs::read(&existing).expect("read"), b"hello bunker\n");
}

#[test]
fn restore_subpath_with_include() {
    let env = Env::init();
    let src = env.make_source();
    env.bunker().arg("backup").arg(&src).assert().success();
    let target = env.path("t");
    let spec = format!("latest:{}", src.display());
    env.bunker()
        .args(["restore", &spec, "--include", "/sub", "--target"])
        .arg(&target)
        .assert()
        .success();
    assert_eq!(
        std::fs::read(target.join("sub/b.txt")).expect("restored"),
        b"second file\n"
    );
    assert!(!target.join("a.txt").exists());
    assert!(!target.join("big.bin").exists());
}

#[test]
fn diff_shows_changes() {
    let env = Env::init();
    let src = env.make_source();
    env.bunker().arg("backup").arg(&src).assert().success();
    let first = env.latest_id();
    std::fs::write(src.join("a.txt"), b"changed content\n").expect("write");
    std::fs::write(src.join("new.txt"), b"new\n").expect("write");
    std::fs::remove_file(src.join("sub/b.txt")).expect("rm");
    env.bunker().arg("backup").arg(&src).assert().success();
    let second = env.latest_id();
    let out = env.stdout(&["diff", &first, &second]);
    let s = src.to_str().expect("utf-8");
    assert!(
        out.lines()
            .any(|l| l.starts_with('M') && l.ends_with(&format!("{s}/a.txt"))),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with('+') && l.ends_with(&format!("{s}/new.txt"))),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with('-') && l.ends_with(&format!("{s}/sub/b.txt"))),
        "{out}"
    );
    let lines = env.json_lines(&["diff", &first[..8], &second[..8]]);
    assert!(
        lines
            .iter()
            .any(|v| v["message_type"] == "change" && v["modifier"] == "+"),
        "{lines:?}"
    );
    assert_eq!(lines.last().expect("stats")["message_type"], "statistics");
}

#[test]
fn check_clean_and_damaged() {
    let env = Env::init();
    let src = env.make_source();
    env.bunker().arg("backup").arg(&src).assert().success();
    env.bunker()
        .arg("check")
        .assert()
        .success()
        .stdout(predicate::str::contains("no errors were found"));
    env.bunker()
        .args(["check", "--read-data-subset", "1/2"])
        .assert()
        .success();
    let v = env.json(&["check", "--read-data"]);
    assert_eq!(v["message_type"], "summary");
    assert_eq!(v["ok"], true);
    assert!(v["packs_read"].as_u64().is_some_and(|n| n > 0), "{v}");

    // Damage the biggest pack: check --read-data must fail and name it.
    let mut packs: Vec<(u64, std::path::PathBuf)> = Vec::new();
    for d in std::fs::read_dir(env.repo.join("data"))
        .expect("data")
        .flatten()
    {
        for f in std::fs::read_dir(d.path()).expect("sub").flatten() {
            packs.push((f.metadata().expect("meta").len(), f.path()));
        }
    }
    packs.sort();
    let (_, victim) = packs.last().expect("a pack").clone();
    let mut bytes = std::fs::read(&victim).expect("read");
    bytes[100] ^= 0x40;
    std::fs::write(&victim, bytes).expect("write");
    let name = victim
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let out = env
        .bunker()
        .args(["check", "--read-data"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("damaged pack: {name}")),
        "{stdout}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines()
            .last()
            .is_some_and(|l| l.starts_with("bunker: error: ")),
        "{err}"
    );
}

#[test]
fn cat_objects() {
    let env = Env::init();
    let src = env.make_source();
    env.bunker().arg("backup").arg(&src).assert().success();
    let config: serde_json::Value =
        serde_json::from_str(&env.stdout(&["cat", "config"])).expect("config is JSON");
    assert_eq!(config["version"], 2);
    let snap: serde_json::Value =
        serde_json::from_str(&env.stdout(&["cat", "snapshot", "latest"])).expect("snapshot JSON");
    let tree_id = snap["tree"].as_str().expect("tree id").to_string();
    let tree: serde_json::Value =
        serde_json::from_str(&env.stdout(&["cat", "tree", &tree_id[..12]])).expect("tree JSON");
    assert!(tree["nodes"].is_array(), "{tree}");
    let mk: serde_json::Value =
        serde_json::from_str(&env.stdout(&["cat", "masterkey"])).expect("masterkey JSON");
    assert!(mk["encrypt"].is_string());
    env.bunker().args(["cat", "snapshot"]).assert().code(1);
    env.bunker().args(["cat", "blob", "zz"]).assert().code(1);
}

#[test]
fn json_verbose_backup_prints_only_json_on_stdout() {
    let env = Env::init();
    let src = env.make_source();
    let out = env
        .bunker()
        .args(["--json", "-v", "backup"])
        .arg(&src)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}")))
        .collect();
    let (last, rest) = lines.split_last().expect("a summary");
    assert_eq!(last["message_type"], "summary");
    assert!(
        rest.iter().all(|v| v["message_type"] == "status"),
        "{rest:?}"
    );
}

#[test]
fn snapshot_filters_and_latest() {
    let env = Env::init();
    let src = env.make_source();
    for (host, tag) in [("h1", "daily"), ("h2", "daily"), ("h1", "weekly")] {
        env.bunker()
            .args(["backup", "--host", host, "--tag", tag])
            .arg(&src)
            .assert()
            .success();
    }
    let count = |args: &[&str]| {
        let mut a = vec!["snapshots"];
        a.extend_from_slice(args);
        env.json(&a).as_array().map(Vec::len).expect("array")
    };
    assert_eq!(count(&[]), 3);
    assert_eq!(count(&["--host", "h1"]), 2);
    assert_eq!(count(&["--tag", "daily"]), 2);
    assert_eq!(count(&["--tag", "daily", "--host", "h2"]), 1);
    assert_eq!(count(&["--latest", "1"]), 2);
    // `latest` honours the filters of restore.
    let target = env.path("t");
    env.bunker()
        .args(["restore", "latest", "--host", "h2", "--target"])
        .arg(&target)
        .assert()
        .success()
        .stdout(predicate::str::contains("@h2"));
    env.bunker()
        .args(["restore", "latest", "--host", "nope", "--target"])
        .arg(&target)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no snapshot matches"));
}
