//! restic is the oracle for `list` and `recover`; `cache` lists and cleans
//! only repository cache directories.

mod output_support;
#[macro_use]
mod parity_support;

use std::collections::BTreeSet;
use std::path::Path;

use output_support::run_ok;
use parity_support::{both_repos, build_tree, bunker, json, restic, snapshot_ids};
use serde_json::Value;

fn lines(out: &std::process::Output) -> BTreeSet<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn list_prints_the_same_ids_as_restic() {
    need_restic!();
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    build_tree(&src);
    for repo in both_repos(tmp.path(), &src) {
        let snap = snapshot_ids(&repo.path).remove(0);
        for kind in ["blobs", "packs", "index", "snapshots", "keys", "locks"] {
            if kind == "locks" {
                // A lock file of another process (list only names files; a
                // locking command would have removed this unreadable one).
                std::fs::create_dir_all(repo.path.join("locks")).expect("mkdir");
                std::fs::copy(
                    repo.path.join("snapshots").join(&snap),
                    repo.path.join("locks").join(&snap),
                )
                .expect("copy");
            }
            let ours = lines(&run_ok(bunker(&repo.path).args(["list", kind])));
            let theirs = lines(&run_ok(restic(&repo.path).args([
                "--no-lock",
                "list",
                kind,
            ])));
            assert!(!ours.is_empty(), "{}: nothing listed for {kind}", repo.name);
            assert_eq!(ours, theirs, "{} repository, list {kind}", repo.name);
        }
        let v = json(bunker(&repo.path).args(["list", "--json", "snapshots"]));
        assert_eq!(v.as_array().map(Vec::len), Some(3));
        assert!(!bunker(&repo.path)
            .args(["list", "trees"])
            .output()
            .expect("run")
            .status
            .success());
    }
}

/// (name, subtree) of the nodes of a snapshot's root tree, via restic.
fn root_entries(repo: &Path, snapshot: &str) -> BTreeSet<(String, String)> {
    let sn = json(restic(repo).args(["cat", "snapshot", snapshot]));
    let tree = json(restic(repo).args(["cat", "blob", sn["tree"].as_str().expect("tree")]));
    tree["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            let s = |k: &str| n[k].as_str().unwrap_or_default().to_string();
            (s("name"), s("subtree"))
        })
        .collect()
}

fn newest(repo: &Path) -> String {
    snapshot_ids(repo).pop().expect("a snapshot")
}

#[test]
fn recover_finds_the_trees_restic_finds_and_restic_reads_them() {
    need_restic!();
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    build_tree(&src);
    let lost = tmp.path().join("lost");
    std::fs::create_dir_all(lost.join("inner")).expect("mkdir");
    std::fs::write(lost.join("inner/only-here.txt"), b"forgotten by mistake\n").expect("write");
    for repo in both_repos(tmp.path(), &src) {
        run_ok(bunker(&repo.path).arg("backup").arg(&lost));
        let forgotten = newest(&repo.path);
        let before = run_ok(restic(&repo.path).args(["ls", &forgotten]));
        run_ok(restic(&repo.path).args(["forget", &forgotten]));

        let ours = tmp.path().join(format!("{}-ours", repo.name));
        let theirs = tmp.path().join(format!("{}-theirs", repo.name));
        for to in [&ours, &theirs] {
            run_ok(
                std::process::Command::new("cp")
                    .arg("-a")
                    .arg(&repo.path)
                    .arg(to),
            );
        }
        let dry = json(bunker(&ours).args(["recover", "--json", "--dry-run"]));
        assert!(dry["snapshot"].is_null());
        assert_eq!(snapshot_ids(&ours).len(), 3, "a dry run writes nothing");

        let rec = json(bunker(&ours).args(["recover", "--json"]));
        let recovered = rec["snapshot"].as_str().expect("a snapshot").to_string();
        run_ok(restic(&theirs).arg("recover"));
        assert_eq!(
            root_entries(&ours, &recovered),
            root_entries(&theirs, &newest(&theirs)),
            "{} repository: same lost trees as restic",
            repo.name
        );
        let sn = json(restic(&ours).args(["cat", "snapshot", &recovered]));
        assert_eq!(sn["paths"], serde_json::json!(["/recover"]));

        // The forgotten file is back, below the lost root's directory.
        let listed = lines(&run_ok(restic(&ours).args(["ls", &recovered])));
        let file = listed
            .iter()
            .find(|l| l.ends_with("/inner/only-here.txt"))
            .unwrap_or_else(|| panic!("file not recovered: {listed:?}"));
        assert!(String::from_utf8_lossy(&before.stdout).contains("/inner/only-here.txt"));
        let dump = run_ok(restic(&ours).args(["dump", &recovered, file]));
        assert_eq!(dump.stdout, b"forgotten by mistake\n");
        run_ok(restic(&ours).args(["check", "--read-data"]));

        // Nothing is lost any more.
        let again = json(bunker(&ours).args(["recover", "--json"]));
        assert_eq!(again["roots"], Value::Array(vec![]));
    }
}

#[test]
fn cache_lists_and_cleans_only_repository_directories() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("cache");
    let id = "0123456789abcdef".repeat(4);
    std::fs::create_dir_all(root.join(&id).join("packs/01")).expect("mkdir");
    std::fs::write(root.join(&id).join("packs/01/p"), vec![0u8; 1000]).expect("write");
    std::fs::create_dir_all(root.join("keep-me")).expect("mkdir");
    let cache = |args: &[&str]| {
        json(
            bunker(&tmp.path().join("no-repo"))
                .args(["cache", "--json", "--cache-dir"])
                .arg(&root)
                .args(args),
        )
    };
    let listed = cache(&[]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    assert_eq!(listed[0]["repo_id"], Value::from(id.clone()));
    assert_eq!(listed[0]["size"], Value::from(1000));
    assert_eq!(listed[0]["old"], Value::from(false));
    // Not old yet: nothing removed.
    assert_eq!(cache(&["--cleanup"]), Value::Array(vec![]));
    assert!(root.join(&id).exists());
    let removed = cache(&["--cleanup", "--max-age", "0"]);
    assert_eq!(removed.as_array().map(Vec::len), Some(1));
    assert!(!root.join(&id).exists());
    assert!(root.join("keep-me").exists());
}
