//! Interoperability with the real restic (Debian's `restic`), both ways:
//! restic checks and restores what bunker wrote, bunker checks and restores
//! what restic wrote, and both chunk identically (deduplication across tools).

mod fstree;
mod output_support;

use output_support::run_ok;
use std::path::{Path, PathBuf};
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;
use fstree::{assert_same_tree, build_source};

const PASSWORD: &str = "interop password";

fn restic_available() -> bool {
    Command::new("restic")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn bunker(repo: &Path) -> Command {
    let mut c = Command::cargo_bin("bunker").unwrap();
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("BUNKER_REPOSITORY", repo)
        .env("BUNKER_PASSWORD", PASSWORD)
        .env("BUNKER_TEST_KDF_N", "1024")
        .arg("--no-progress");
    c
}

fn restic(repo: &Path) -> Command {
    let mut c = Command::new("restic");
    c.env("RESTIC_REPOSITORY", repo)
        .env("RESTIC_PASSWORD", PASSWORD)
        .env("RESTIC_CACHE_DIR", repo.with_extension("restic-cache"))
        .arg("--no-cache");
    c
}

/// Where a backup of `src` lands below a restore target (both tools nest the absolute path).
fn restored(target: &Path, src: &Path) -> PathBuf {
    target.join(src.strip_prefix("/").unwrap())
}

/// `data_added` and `total_bytes_processed` of the final JSON summary line
/// (restic and bunker print the same `summary` message).
fn summary_added_total(stdout: &[u8]) -> (u64, u64) {
    let text = String::from_utf8_lossy(stdout);
    for line in text.lines().rev() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            if v["message_type"] == "summary" {
                return (
                    v["data_added"].as_u64().unwrap(),
                    v["total_bytes_processed"].as_u64().unwrap(),
                );
            }
        }
    }
    panic!("no summary in the JSON output:\n{text}");
}

#[test]
fn restic_reads_checks_and_restores_what_bunker_wrote() {
    if !restic_available() {
        eprintln!("SKIPPED: restic is not installed (apt-get install restic)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    build_source(&src);
    let repo = tmp.path().join("repo");

    run_ok(bunker(&repo).arg("init"));
    run_ok(
        bunker(&repo)
            .args(["backup", "--host", "interop"])
            .arg(&src),
    );

    // restic accepts the repository, reads every pack and restores identically.
    run_ok(restic(&repo).args(["check", "--read-data"]));
    let target = tmp.path().join("restic-restore");
    run_ok(
        restic(&repo)
            .args(["restore", "latest", "--target"])
            .arg(&target),
    );
    assert_same_tree(&src, &restored(&target, &src));

    // restic re-reading every file (no parent shortcut) must find nearly all
    // chunks already stored: same chunker, same polynomial, same blob ids.
    let out = run_ok(
        restic(&repo)
            .args(["backup", "--force", "--json", "--host", "interop"])
            .arg(&src),
    );
    let (added, total) = summary_added_total(&out.stdout);
    assert!(
        total > 15 * 1024 * 1024,
        "restic processed only {total} bytes"
    );
    assert!(
        (added as f64) < 0.01 * total as f64,
        "restic added {added} of {total} bytes after bunker's backup of the same tree"
    );
    run_ok(restic(&repo).args(["check", "--read-data"]));
}

#[test]
fn bunker_reads_checks_and_restores_what_restic_wrote() {
    if !restic_available() {
        eprintln!("SKIPPED: restic is not installed (apt-get install restic)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    build_source(&src);
    let repo = tmp.path().join("repo");

    run_ok(restic(&repo).args(["init", "--repository-version", "2"]));
    run_ok(
        restic(&repo)
            .args(["backup", "--host", "interop"])
            .arg(&src),
    );

    run_ok(bunker(&repo).args(["check", "--read-data"]));
    let target = tmp.path().join("bunker-restore");
    run_ok(
        bunker(&repo)
            .args(["restore", "latest", "--target"])
            .arg(&target),
    );
    assert_same_tree(&src, &restored(&target, &src));

    // And the other direction of deduplication: bunker after restic adds ~nothing.
    let out = run_ok(
        bunker(&repo)
            .args(["backup", "--force", "--json", "--host", "interop"])
            .arg(&src),
    );
    let (added, total) = summary_added_total(&out.stdout);
    assert!(
        total > 15 * 1024 * 1024,
        "bunker processed only {total} bytes"
    );
    assert!(
        (added as f64) < 0.01 * total as f64,
        "bunker added {added} of {total} bytes"
    );
    run_ok(restic(&repo).args(["check", "--read-data"]));
}
