//! `bunker copy` between two local repositories with different passwords and
//! chunker polynomials: full copy, skip on rerun, a killed copy resumed, restic's
//! `check --read-data` on the destination, and restores that equal the source.

mod fstree;
mod output_support;

use output_support::{json_last, run_ok};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use fstree::{assert_same_tree, build_source, pseudo_random};

fn bunker(repo: &Path, password: &str) -> Command {
    let mut c = Command::cargo_bin("bunker").expect("bunker binary");
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("BUNKER_REPOSITORY", repo)
        .env("BUNKER_PASSWORD", password)
        .env("BUNKER_TEST_KDF_N", "1024")
        .arg("--no-progress");
    c
}

fn restored(target: &Path, src: &Path) -> PathBuf {
    target.join(src.strip_prefix("/").expect("absolute"))
}

fn polynomial(repo: &Path, password: &str) -> String {
    let out = run_ok(bunker(repo, password).args(["cat", "config"]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("config JSON");
    v["chunker_polynomial"].to_string()
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

fn copy_cmd(dst: &Path, src: &Path) -> Command {
    let mut c = bunker(dst, "destination pw");
    c.env("BUNKER_FROM_PASSWORD", "source pw")
        .args(["--json", "copy", "--from-repo"])
        .arg(src);
    c
}

#[test]
fn copy_resumes_after_kill_and_restic_accepts_the_result() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (src_repo, dst_repo) = (dir.path().join("src-repo"), dir.path().join("dst-repo"));
    let data = dir.path().join("data");
    build_source(&data);
    run_ok(bunker(&src_repo, "source pw").arg("init"));
    run_ok(bunker(&dst_repo, "destination pw").arg("init"));
    assert_ne!(
        polynomial(&src_repo, "source pw"),
        polynomial(&dst_repo, "destination pw")
    );
    for i in 0..4u64 {
        std::fs::write(
            data.join(format!("blob{i}.bin")),
            pseudo_random(6 * 1024 * 1024, 77 + i),
        )
        .expect("write");
        run_ok(
            bunker(&src_repo, "source pw")
                .args(["backup", "--tag", "nightly"])
                .arg(&data),
        );
    }

    // Kill the first copy as soon as it has written a pack.
    let mut child = copy_cmd(&dst_repo, &src_repo)
        .args([
            "--compression",
            "max",
            "-o",
            "connections=1",
            "--pack-size",
            "4",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn copy");
    let start = Instant::now();
    let mut killed = false;
    while start.elapsed() < Duration::from_secs(120) {
        if matches!(child.try_wait(), Ok(Some(_))) {
            break;
        }
        let packs: usize = std::fs::read_dir(dst_repo.join("data"))
            .map(|d| d.flatten().map(|e| files_in(&e.path())).sum())
            .unwrap_or(0);
        if packs > 0 {
            child.kill().expect("kill");
            killed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.wait();
    assert!(killed, "the copy finished before it could be killed");
    let before = files_in(&dst_repo.join("snapshots"));
    assert!(before < 4, "a killed copy cannot have finished everything");

    // Stale lock of the killed process is ignored; the rerun completes.
    let out = run_ok(&mut copy_cmd(&dst_repo, &src_repo));
    let summary = json_last(&out);
    assert_eq!(
        summary["copied"].as_array().map(Vec::len),
        Some(4 - before),
        "{summary}"
    );
    assert_eq!(summary["skipped"].as_array().map(Vec::len), Some(before));

    // A third run copies nothing.
    let again = json_last(&run_ok(&mut copy_cmd(&dst_repo, &src_repo)));
    assert_eq!(again["copied"].as_array().map(Vec::len), Some(0));
    assert_eq!(again["bytes_copied"], 0);

    run_ok(bunker(&dst_repo, "destination pw").args(["check", "--read-data"]));
    let target = dir.path().join("restore");
    run_ok(
        bunker(&dst_repo, "destination pw")
            .args(["restore", "latest", "--target"])
            .arg(&target),
    );
    assert_same_tree(&data, &restored(&target, &data));

    let out = run_ok(bunker(&dst_repo, "destination pw").args(["--json", "snapshots"]));
    let snaps: serde_json::Value = serde_json::from_slice(&out.stdout).expect("snapshots JSON");
    for s in snaps.as_array().expect("array") {
        assert_eq!(s["tags"], serde_json::json!(["nightly"]));
        assert!(s["original"].is_string(), "{s}");
    }

    if Command::new("restic")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let out = Command::new("restic")
            .arg("--no-cache")
            .arg("-r")
            .arg(&dst_repo)
            .args(["check", "--read-data"])
            .env("RESTIC_PASSWORD", "destination pw")
            .output()
            .expect("restic");
        assert!(
            out.status.success(),
            "restic check: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!("note: restic not installed; restic check of the copy skipped");
    }
}

#[test]
fn copy_requires_a_source_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    run_ok(bunker(&a, "pw a").arg("init"));
    run_ok(bunker(&b, "pw b").arg("init"));
    let out = bunker(&b, "pw b")
        .args(["copy", "--from-repo"])
        .arg(&a)
        .stdin(Stdio::null())
        .output()
        .expect("spawn");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("BUNKER_FROM_PASSWORD"));
    let out = bunker(&b, "pw b")
        .env("BUNKER_FROM_PASSWORD", "wrong")
        .args(["copy", "--from-repo"])
        .arg(&a)
        .output()
        .expect("spawn");
    assert_eq!(out.status.code(), Some(12), "wrong source password");
}
