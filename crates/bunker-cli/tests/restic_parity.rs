//! restic is the oracle: `find`, `stats`, `tag` and `rewrite` give restic's
//! results on the same repositories, written by restic and by bunker.

mod output_support;
#[macro_use]
mod parity_support;

use std::collections::BTreeSet;
use std::path::Path;

use output_support::run_ok;
use parity_support::{both_repos, build_tree, bunker, json, restic, snapshot_ids};
use serde_json::Value;

/// (snapshot, path) of every match of a `find --json` path search.
fn find_hits(v: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for s in v.as_array().expect("array") {
        let sn = s["snapshot"].as_str().expect("snapshot").to_string();
        let matches = s["matches"].as_array().expect("matches");
        assert_eq!(s["hits"].as_u64(), Some(matches.len() as u64));
        for m in matches {
            out.insert((sn.clone(), m["path"].as_str().expect("path").to_string()));
        }
    }
    out
}

/// (snapshot, path, id, object type) of a `find --json --blob/--tree` search.
fn object_hits(v: &Value) -> BTreeSet<(String, String, String, String)> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|h| {
            let s = |k: &str| h[k].as_str().unwrap_or_default().to_string();
            (s("snapshot"), s("path"), s("id"), s("object_type"))
        })
        .collect()
}

#[test]
fn find_gives_restics_matches_on_restic_and_bunker_repositories() {
    need_restic!();
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    build_tree(&src);
    let etc = format!("{}/etc", src.display());
    let deep = format!("{}/*/deep/*.txt", src.display());
    for repo in both_repos(tmp.path(), &src) {
        let searches: [&[&str]; 10] = [
            &["-i", &deep],
            &["--newest", "2011-01-01", "*.txt", "*.conf"],
            &["--oldest", "2011-01-01 12:00", "*.txt", "*.conf"],
            &["readme.txt"],
            &["*.conf", "*.bin"],
            &["deep"],
            &["-i", "notes.txt"],
            &["**/app/*"],
            &[&etc],
            &["--snapshot", "latest", "*.txt"],
        ];
        for args in searches {
            let ours = find_hits(&json(
                bunker(&repo.path).args(["find", "--json"]).args(args),
            ));
            let theirs = find_hits(&json(
                restic(&repo.path).args(["find", "--json"]).args(args),
            ));
            assert!(
                !theirs.is_empty(),
                "{}: restic finds nothing for {args:?}",
                repo.name
            );
            assert_eq!(ours, theirs, "{} repository, find {args:?}", repo.name);
        }
        // A data blob of a file that is stored under two names.
        let blob = first_blob_of(&repo.path, &src.join("media/small.bin"));
        for (flag, id) in [("--blob", blob.as_str()), ("--blob", &blob[..8])] {
            let ours = object_hits(&json(bunker(&repo.path).args(["find", "--json", flag, id])));
            let theirs = object_hits(&json(restic(&repo.path).args(["find", "--json", flag, id])));
            assert_eq!(
                ours.len(),
                4,
                "{}: small.bin and its hard link in 2 snapshots",
                repo.name
            );
            assert_eq!(ours, theirs, "{} repository, find {flag} {id}", repo.name);
        }
    }
}

/// The first data blob of `file` in the newest snapshot, via restic.
fn first_blob_of(repo: &Path, file: &Path) -> String {
    let parent = file.parent().expect("parent");
    let tree_of = |sn: &str, dir: &Path| -> Value {
        // restic cat the snapshot, then walk trees down to `dir`.
        let snap = json(restic(repo).args(["cat", "snapshot", sn]));
        let mut tree = snap["tree"].as_str().expect("tree").to_string();
        for comp in dir.components().skip(1) {
            let t = json(restic(repo).args(["cat", "blob", &tree]));
            let name = comp.as_os_str().to_str().expect("utf-8");
            let node = t["nodes"]
                .as_array()
                .expect("nodes")
                .iter()
                .find(|n| n["name"] == name)
                .unwrap_or_else(|| panic!("no {name} in tree {tree}"))
                .clone();
            tree = node["subtree"].as_str().expect("subtree").to_string();
        }
        json(restic(repo).args(["cat", "blob", &tree]))
    };
    let ids = snapshot_ids(repo);
    let t = tree_of(ids.last().expect("a snapshot"), parent);
    let name = file.file_name().and_then(|n| n.to_str()).expect("name");
    t["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["name"] == name)
        .expect("file node")["content"][0]
        .as_str()
        .expect("blob id")
        .to_string()
}

#[test]
fn stats_in_all_four_modes_equal_restics() {
    need_restic!();
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    build_tree(&src);
    for repo in both_repos(tmp.path(), &src) {
        for mode in [
            "restore-size",
            "files-by-contents",
            "blobs-per-file",
            "raw-data",
        ] {
            for selection in [&[][..], &["latest"][..], &["--tag", "etc"][..]] {
                let ours = json(
                    bunker(&repo.path)
                        .args(["stats", "--json", "--mode", mode])
                        .args(selection),
                );
                let theirs = json(
                    restic(&repo.path)
                        .args(["stats", "--json", "--mode", mode])
                        .args(selection),
                );
                for key in [
                    "total_size",
                    "total_file_count",
                    "total_blob_count",
                    "snapshots_count",
                ] {
                    // restic 0.14 prints a zero file count in raw-data mode; we omit zeros.
                    let theirs_v = theirs[key].as_u64().unwrap_or(0);
                    let ours_v = ours[key].as_u64().unwrap_or(0);
                    assert_eq!(
                        ours_v, theirs_v,
                        "{} repository, stats --mode {mode} {selection:?}: {key}\nours {ours}\nrestic {theirs}",
                        repo.name
                    );
                }
                assert!(ours["total_size"].as_u64().unwrap_or(0) > 0);
            }
        }
    }
}

/// (time, tags, original) of every snapshot, as restic reads them.
fn tag_state(repo: &Path) -> Vec<(String, Value, Value)> {
    let v = json(restic(repo).args(["snapshots", "--json"]));
    let mut out: Vec<(String, Value, Value)> = v
        .as_array()
        .expect("array")
        .iter()
        .map(|s| {
            (
                s["time"].as_str().expect("time").to_string(),
                s["tags"].clone(),
                s["original"].clone(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn copy_dir(from: &Path, to: &Path) {
    run_ok(std::process::Command::new("cp").arg("-a").arg(from).arg(to));
}

#[test]
fn tag_changes_equal_restics_and_keep_the_original_id() {
    need_restic!();
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    build_tree(&src);
    for repo in both_repos(tmp.path(), &src) {
        let ours = tmp.path().join(format!("{}-ours", repo.name));
        let theirs = tmp.path().join(format!("{}-theirs", repo.name));
        copy_dir(&repo.path, &ours);
        copy_dir(&repo.path, &theirs);
        let ids = snapshot_ids(&repo.path);
        let steps: Vec<Vec<String>> = vec![
            vec![
                "--add".into(),
                "x,y".into(),
                "--add".into(),
                "z".into(),
                ids[0].clone(),
            ],
            vec!["--remove".into(), "full".into(), "--tag".into(), "z".into()],
            vec!["--set".into(), "a,b".into(), "--tag".into(), "etc".into()],
            vec!["--add".into(), "all".into()],
            vec!["--remove".into(), "x".into(), "--tag".into(), "all".into()],
        ];
        for step in &steps {
            run_ok(bunker(&ours).arg("tag").args(step));
            run_ok(restic(&theirs).arg("tag").args(step));
            let (o, t) = (tag_state(&ours), tag_state(&theirs));
            assert_eq!(o, t, "{} repository after tag {step:?}", repo.name);
        }
        // Every snapshot was retagged; `original` names the first version.
        let originals: Vec<String> = tag_state(&ours)
            .iter()
            .map(|s| s.2.as_str().expect("original set").to_string())
            .collect();
        assert_eq!(originals, ids);
        run_ok(restic(&ours).args(["check", "--read-data"]));
        // Nothing to do is a clear error, not a silent success.
        let out = bunker(&ours).arg("tag").output().expect("run");
        assert!(!out.status.success());
    }
}

/// Paths of a snapshot as `restic ls` lists them.
fn restic_ls(repo: &Path, snapshot: &str) -> BTreeSet<String> {
    let out = run_ok(restic(repo).args(["ls", "--json", snapshot]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["struct_type"] == "node")
        .map(|v| v["path"].as_str().expect("path").to_string())
        .collect()
}

#[test]
fn rewrite_removes_exactly_the_excluded_paths_and_restic_checks_clean() {
    need_restic!();
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    build_tree(&src);
    let media = format!("{}/media", src.display());
    for repo in both_repos(tmp.path(), &src) {
        let before = snapshot_ids(&repo.path);
        let before_ls: Vec<BTreeSet<String>> =
            before.iter().map(|id| restic_ls(&repo.path, id)).collect();
        let keep = |paths: &BTreeSet<String>, gone: &dyn Fn(&str) -> bool| -> BTreeSet<String> {
            paths.iter().filter(|p| !gone(p)).cloned().collect()
        };

        // Dry run: nothing changes.
        run_ok(bunker(&repo.path).args(["rewrite", "--dry-run", "--exclude", "secret.key"]));
        assert_eq!(snapshot_ids(&repo.path), before);

        // Without --forget: the old snapshots stay, new ones are tagged
        // `rewrite` and name their original.
        let out = json(bunker(&repo.path).args(["rewrite", "--json", "--exclude", "secret.key"]));
        let done = out.as_array().expect("array");
        assert_eq!(done.len(), 3);
        let after = snapshot_ids(&repo.path);
        assert_eq!(after.len(), 6, "{}: old snapshots are kept", repo.name);
        for (i, d) in done.iter().enumerate() {
            let new = d["new"].as_str().expect("a new snapshot");
            let sn = json(restic(&repo.path).args(["cat", "snapshot", new]));
            assert_eq!(sn["original"], Value::from(before[i].clone()));
            assert!(sn["tags"]
                .as_array()
                .expect("tags")
                .contains(&"rewrite".into()));
            let expected = keep(&before_ls[i], &|p| p.ends_with("/secret.key"));
            assert_ne!(expected, before_ls[i], "the secret was in the snapshot");
            assert_eq!(
                restic_ls(&repo.path, new),
                expected,
                "{} snapshot {i}",
                repo.name
            );
        }

        // With --forget, on one snapshot: the directory and everything below
        // it is gone, the old snapshot is removed.
        let last = done[2]["new"].as_str().expect("new").to_string();
        let out = json(
            bunker(&repo.path)
                .args(["rewrite", "--json", "--forget", "--exclude", &media])
                .arg(&last),
        );
        let newest = out[0]["new"].as_str().expect("new").to_string();
        let ids = snapshot_ids(&repo.path);
        assert!(
            !ids.contains(&last) && ids.contains(&newest),
            "{}",
            repo.name
        );
        let expected = keep(&before_ls[2], &|p| {
            p.ends_with("/secret.key") || p == media || p.starts_with(&format!("{media}/"))
        });
        assert_eq!(restic_ls(&repo.path, &newest), expected);

        run_ok(restic(&repo.path).args(["check", "--read-data"]));
        run_ok(bunker(&repo.path).args(["check", "--read-data"]));
        // After prune, restic still finds every blob it needs.
        run_ok(bunker(&repo.path).args(["forget", "--keep-last", "1"]));
        run_ok(bunker(&repo.path).arg("prune"));
        run_ok(restic(&repo.path).args(["check", "--read-data"]));
    }
}
