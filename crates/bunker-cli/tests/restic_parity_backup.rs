//! `backup --files-from*` select what restic selects for the same list;
//! `--skip-if-unchanged` saves no empty-change snapshot; `snapshots
//! --group-by` groups as restic does.

mod output_support;
#[macro_use]
mod parity_support;

use std::collections::BTreeSet;
use std::path::Path;

use output_support::run_ok;
use parity_support::{both_repos, build_tree, bunker, json, restic, snapshot_ids};
use serde_json::Value;

/// The snapshot's `paths` and every path `restic ls` lists in it.
fn content(repo: &Path, snapshot: &str) -> (Value, BTreeSet<String>) {
    let sn = json(restic(repo).args(["cat", "snapshot", snapshot]));
    let mut paths: Vec<Value> = sn["paths"].as_array().cloned().unwrap_or_default();
    paths.sort_by_key(|p| p.to_string());
    let out = run_ok(restic(repo).args(["ls", "--json", snapshot]));
    let listed = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["struct_type"] == "node")
        .map(|v| v["path"].as_str().expect("path").to_string())
        .collect();
    (Value::Array(paths), listed)
}

#[test]
fn files_from_lists_select_what_restic_selects() {
    need_restic!();
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    build_tree(&src);
    std::fs::write(src.join("docs/odd\nname.txt"), b"newline in the name\n").expect("write");
    let s = src.display();
    let patterns = tmp.path().join("patterns.txt");
    std::fs::write(
        &patterns,
        format!("# what to save\n\n  {s}/docs/*.txt  \r\n{s}/etc/app/*.conf\n{s}/nothing-*\n"),
    )
    .expect("write");
    let verbatim = tmp.path().join("verbatim.txt");
    std::fs::write(&verbatim, format!("{s}/media/small.bin\n\n{s}/etc/empty\n")).expect("write");
    let raw = tmp.path().join("raw.bin");
    std::fs::write(&raw, format!("{s}/docs/odd\nname.txt\0{s}/empty-dir\0")).expect("write");

    let ours = tmp.path().join("ours");
    let theirs = tmp.path().join("theirs");
    run_ok(bunker(&ours).arg("init"));
    run_ok(restic(&theirs).args(["init", "--repository-version", "2"]));
    for (flag, list) in [
        ("--files-from", &patterns),
        ("--files-from-verbatim", &verbatim),
        ("--files-from-raw", &raw),
    ] {
        run_ok(bunker(&ours).args(["backup", flag]).arg(list));
        run_ok(restic(&theirs).args(["backup", flag]).arg(list));
        let (a, b) = (
            content(&ours, &snapshot_ids(&ours).pop().expect("snapshot")),
            content(&theirs, &snapshot_ids(&theirs).pop().expect("snapshot")),
        );
        assert!(a.1.len() > 3, "{flag}: too little saved: {:?}", a.1);
        assert_eq!(a, b, "backup {flag}: bunker and restic differ");
    }
    // All three lists and a path argument together.
    let all = |c: &mut std::process::Command| {
        c.arg("backup")
            .arg("--files-from")
            .arg(&patterns)
            .arg("--files-from-verbatim")
            .arg(&verbatim)
            .arg("--files-from-raw")
            .arg(&raw)
            .arg(src.join("media/big.bin"));
    };
    let mut c = bunker(&ours);
    all(&mut c);
    run_ok(&mut c);
    let mut c = restic(&theirs);
    all(&mut c);
    run_ok(&mut c);
    assert_eq!(
        content(&ours, &snapshot_ids(&ours).pop().expect("snapshot")),
        content(&theirs, &snapshot_ids(&theirs).pop().expect("snapshot"))
    );
    // A list that names nothing is an error, not an empty snapshot.
    let empty = tmp.path().join("empty.txt");
    std::fs::write(&empty, "# nothing\n").expect("write");
    let out = bunker(&ours)
        .args(["backup", "--files-from"])
        .arg(&empty)
        .output()
        .expect("run");
    assert!(!out.status.success());
}

#[test]
fn skip_if_unchanged_saves_no_snapshot_until_something_changes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    build_tree(&src);
    let repo = tmp.path().join("repo");
    run_ok(bunker(&repo).arg("init"));
    let backup = || {
        let out = run_ok(
            bunker(&repo)
                .args(["backup", "--json", "--skip-if-unchanged"])
                .arg(&src),
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let last = text.lines().last().unwrap_or_default().to_string();
        serde_json::from_str::<Value>(&last).expect("summary")
    };
    let first = backup();
    assert!(
        first["snapshot_id"].is_string(),
        "the first backup saves: {first}"
    );
    let second = backup();
    assert_eq!(second["skipped_unchanged"], Value::Bool(true), "{second}");
    assert!(second["snapshot_id"].is_null());
    let count = |r: &Path| {
        json(bunker(r).args(["snapshots", "--json"]))
            .as_array()
            .map(Vec::len)
    };
    assert_eq!(count(&repo), Some(1));
    std::fs::write(src.join("docs/readme.txt"), b"changed\n").expect("write");
    let third = backup();
    assert!(third["snapshot_id"].is_string(), "a change saves: {third}");
    assert_eq!(count(&repo), Some(2));
}

/// (group key, snapshot ids) of `snapshots --json --group-by`.
fn groups(v: &Value) -> BTreeSet<(String, Vec<String>)> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|g| {
            let mut ids: Vec<String> = g["snapshots"]
                .as_array()
                .expect("snapshots")
                .iter()
                .map(|s| s["id"].as_str().expect("id").to_string())
                .collect();
            ids.sort();
            (g["group_key"].to_string(), ids)
        })
        .collect()
}

#[test]
fn snapshots_group_by_groups_as_restic() {
    need_restic!();
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    build_tree(&src);
    for repo in both_repos(tmp.path(), &src) {
        for by in ["host", "paths", "tags", "host,paths", "host,paths,tags"] {
            let ours = json(bunker(&repo.path).args(["snapshots", "--json", "--group-by", by]));
            let theirs = json(restic(&repo.path).args(["snapshots", "--json", "--group-by", by]));
            assert_eq!(
                groups(&ours),
                groups(&theirs),
                "{}: --group-by {by}",
                repo.name
            );
        }
        let text = run_ok(bunker(&repo.path).args(["snapshots", "--group-by", "tags"]));
        assert!(String::from_utf8_lossy(&text.stdout).contains("snapshots for (tags [etc]):"));
    }
}
