//! `bunker` against real Garage clusters (no mocks): the command round trip over
//! S3, restic interoperability on the same buckets, a node failing during a
//! backup on a replicated cluster, the whole cluster failing during a backup,
//! injected faults and flipped bits. Skipped (with a note) without `garage`.

#[path = "../../bunker-storage/tests/garage_harness/mod.rs"]
mod garage_harness;
mod output_support;

mod fstree;

use output_support::{json_last, run_ok, show};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use bunker_storage::FileType;
use fstree::{assert_same_tree, build_source, pseudo_random};
use garage_harness::{garage_or_skip, GarageCluster};

const PASSWORD: &str = "garage test password";

fn must<T>(r: std::io::Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("garage: {e}"))
}

fn bunker(cluster: &GarageCluster, location: &str) -> Command {
    let mut c = Command::cargo_bin("bunker").expect("bunker binary");
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("BUNKER_REPOSITORY", location)
        .env("BUNKER_PASSWORD", PASSWORD)
        .env("BUNKER_TEST_KDF_N", "1024")
        .env(
            "BUNKER_CACHE_DIR",
            cluster.scratch_dir().join("bunker-cache"),
        )
        .envs(cluster.aws_env())
        .arg("--no-progress");
    c
}

/// `restore latest` into `target` equals `src`, and `check --read-data` passes.
fn restores_and_checks(cluster: &GarageCluster, loc: &str, src: &Path, target: &Path) {
    run_ok(
        bunker(cluster, loc)
            .args(["restore", "latest", "--target"])
            .arg(target),
    );
    assert_same_tree(src, &restored(target, src));
    run_ok(bunker(cluster, loc).args(["check", "--read-data"]));
}

/// Every file below `dir` (recursively).
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

fn restic(cluster: &GarageCluster, location: &str, cache: &Path) -> Command {
    let mut c = Command::new("restic");
    c.env("RESTIC_REPOSITORY", location)
        .env("RESTIC_PASSWORD", PASSWORD)
        .env("RESTIC_CACHE_DIR", cache)
        .envs(cluster.aws_env())
        .arg("--no-cache");
    c
}

fn restored(target: &Path, src: &Path) -> PathBuf {
    target.join(src.strip_prefix("/").expect("absolute"))
}

fn restic_available() -> bool {
    Command::new("restic")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A source of `files` incompressible files of `mib` MiB each.
fn big_source(root: &Path, files: usize, mib: usize) -> u64 {
    std::fs::create_dir_all(root).expect("mkdir");
    for i in 0..files {
        let data = pseudo_random(mib * 1024 * 1024, 1000 + i as u64);
        std::fs::write(root.join(format!("f{i:02}.bin")), data).expect("write");
    }
    (files * mib * 1024 * 1024) as u64
}

/// Polls the repository until `t` has at least one file (or `timeout`).
fn wait_for_files(cluster: &GarageCluster, location: &str, t: FileType, timeout: Duration) -> bool {
    let storage = bunker_storage::open(location, &cluster.options()).expect("open");
    let start = Instant::now();
    while start.elapsed() < timeout {
        if storage.list(t).is_ok_and(|l| !l.is_empty()) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn cli_round_trip_on_garage() {
    let Some(bin) = garage_or_skip("cli_round_trip_on_garage") else {
        return;
    };
    let cluster = must(GarageCluster::single(&bin));
    let loc = cluster.location("hosts/one");
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    build_source(&src);

    let b = || bunker(&cluster, &loc);
    run_ok(b().arg("init"));
    let out = run_ok(b().args(["--json", "backup"]).arg(&src));
    assert!(json_last(&out)["snapshot_id"].is_string());
    std::fs::write(src.join("added-later.txt"), b"second snapshot").expect("write");
    run_ok(b().arg("backup").arg(&src));
    let snaps = json_last(&run_ok(b().args(["--json", "snapshots"])));
    assert_eq!(snaps.as_array().map(Vec::len), Some(2), "{snaps}");

    let target = dir.path().join("restore");
    run_ok(b().args(["restore", "latest", "--target"]).arg(&target));
    assert_same_tree(&src, &restored(&target, &src));
    run_ok(b().args(["check", "--read-data"]));

    // Tree packs were cached locally; a damaged cached copy is never trusted:
    // the restore reads those trees from the bucket again and is still exact.
    let cached = files_below(&cluster.scratch_dir().join("bunker-cache"));
    assert!(!cached.is_empty(), "no tree pack was cached");
    for f in &cached {
        let mut bytes = std::fs::read(f).expect("read cached pack");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        std::fs::write(f, bytes).expect("damage cached pack");
    }
    let target = dir.path().join("restore-after-damage");
    let out = run_ok(b().args(["restore", "latest", "--target"]).arg(&target));
    assert_same_tree(&src, &restored(&target, &src));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("dropping damaged copy"),
        "the damaged cache was not noticed: {}",
        show(&out)
    );
    // --no-cache reads everything from the bucket.
    let target = dir.path().join("restore-no-cache");
    run_ok(
        b().args(["--no-cache", "restore", "latest", "--target"])
            .arg(&target),
    );
    assert_same_tree(&src, &restored(&target, &src));

    run_ok(b().args(["forget", "--keep-last", "1", "--prune"]));
    let snaps = json_last(&run_ok(b().args(["--json", "snapshots"])));
    assert_eq!(snaps.as_array().map(Vec::len), Some(1), "{snaps}");
    run_ok(b().args(["check", "--read-data"]));

    // Credentials as -o options instead of the environment.
    let mut c = b();
    c.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    for (k, v) in cluster.options() {
        c.arg("-o").arg(format!("{k}={v}"));
    }
    run_ok(c.arg("snapshots"));
}

#[test]
fn restic_and_bunker_share_garage_buckets() {
    let Some(bin) = garage_or_skip("restic_and_bunker_share_garage_buckets") else {
        return;
    };
    if !restic_available() {
        eprintln!("note: restic_and_bunker_share_garage_buckets: skipped, restic not installed");
        return;
    }
    let cluster = must(GarageCluster::single(&bin));
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let src = dir.path().join("src");
    build_source(&src);

    // bunker writes, restic verifies every byte and restores.
    let loc = cluster.location("by-bunker");
    run_ok(bunker(&cluster, &loc).arg("init"));
    run_ok(bunker(&cluster, &loc).arg("backup").arg(&src));
    run_ok(restic(&cluster, &loc, &cache).args(["check", "--read-data"]));
    let t1 = dir.path().join("r1");
    run_ok(
        restic(&cluster, &loc, &cache)
            .args(["restore", "latest", "--target"])
            .arg(&t1),
    );
    assert_same_tree(&src, &restored(&t1, &src));

    // restic writes, bunker verifies and restores.
    let loc = cluster.location("by-restic");
    run_ok(restic(&cluster, &loc, &cache).args(["init", "--repository-version", "2"]));
    run_ok(restic(&cluster, &loc, &cache).arg("backup").arg(&src));
    run_ok(bunker(&cluster, &loc).args(["check", "--read-data"]));
    let t2 = dir.path().join("r2");
    run_ok(
        bunker(&cluster, &loc)
            .args(["restore", "latest", "--target"])
            .arg(&t2),
    );
    assert_same_tree(&src, &restored(&t2, &src));
}

#[test]
fn backup_completes_when_one_of_three_nodes_dies() {
    let Some(bin) = garage_or_skip("backup_completes_when_one_of_three_nodes_dies") else {
        return;
    };
    let mut cluster = must(GarageCluster::start(&bin, 3, 3));
    let loc = cluster.location("rf3");
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    big_source(&src, 12, 4);
    run_ok(bunker(&cluster, &loc).arg("init"));

    let mut child = bunker(&cluster, &loc)
        .args([
            "--pack-size",
            "4",
            "--compression",
            "max",
            "-o",
            "connections=2",
        ])
        .args(["--json", "backup", "--read-concurrency", "1"])
        .arg(&src)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn backup");
    assert!(
        wait_for_files(&cluster, &loc, FileType::Pack, Duration::from_secs(120)),
        "no pack appeared"
    );
    let running = matches!(child.try_wait(), Ok(None));
    cluster.kill_node(2);
    assert!(
        running,
        "the backup finished before a node could be stopped"
    );
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "backup with a node down: {}",
        show(&out)
    );

    restores_and_checks(&cluster, &loc, &src, &dir.path().join("restore"));
}

#[test]
fn garage_down_during_backup_fails_clearly_and_next_backup_reuses_packs() {
    let Some(bin) =
        garage_or_skip("garage_down_during_backup_fails_clearly_and_next_backup_reuses_packs")
    else {
        return;
    };
    let mut cluster = must(GarageCluster::single(&bin));
    let loc = cluster.location("outage");
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    let total = big_source(&src, 12, 4);
    run_ok(bunker(&cluster, &loc).arg("init"));

    let slow = [
        "--pack-size",
        "4",
        "--compression",
        "max",
        "-o",
        "connections=1",
        "-o",
        "index.flush_interval=0.2",
        "-o",
        "retry.max_elapsed=3",
    ];
    let mut child = bunker(&cluster, &loc)
        .args(slow)
        .args(["backup", "--read-concurrency", "1"])
        .arg(&src)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn backup");
    assert!(
        wait_for_files(&cluster, &loc, FileType::Index, Duration::from_secs(120)),
        "no index file appeared"
    );
    let running = matches!(child.try_wait(), Ok(None));
    cluster.kill_all();
    assert!(
        running,
        "the backup finished before garage could be stopped"
    );
    let out = child.wait_with_output().expect("wait");
    assert!(!out.status.success(), "backup must fail: {}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&cluster.endpoint()),
        "the error must name the endpoint {}: {stderr}",
        cluster.endpoint()
    );
    assert!(!stderr.contains("internal error"), "{stderr}");

    must(cluster.start_all());
    let out = run_ok(bunker(&cluster, &loc).args(["--json", "backup"]).arg(&src));
    let added = json_last(&out)["data_added"].as_u64().expect("data_added");
    assert!(
        added < total,
        "the second backup added {added} of {total} bytes: uploaded packs were not reused"
    );
    restores_and_checks(&cluster, &loc, &src, &dir.path().join("restore"));
}

#[test]
fn injected_errors_never_corrupt_the_repository() {
    let Some(bin) = garage_or_skip("injected_errors_never_corrupt_the_repository") else {
        return;
    };
    let cluster = must(GarageCluster::single(&bin));
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    build_source(&src);
    big_source(&src.join("big"), 3, 2);
    for seed in 1..=3u64 {
        let loc = cluster.location(&format!("faults-{seed}"));
        run_ok(bunker(&cluster, &loc).arg("init"));
        let out = bunker(&cluster, &loc)
            .env("BUNKER_FAULTS", format!("error=0.05,seed={seed}"))
            .args(["--pack-size", "4", "-o", "retry.max_elapsed=20", "backup"])
            .arg(&src)
            .output()
            .expect("spawn");
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            let target = dir.path().join(format!("restore-{seed}"));
            run_ok(
                bunker(&cluster, &loc)
                    .args(["restore", "latest", "--target"])
                    .arg(&target),
            );
            assert_same_tree(&src, &restored(&target, &src));
        } else {
            assert!(!stderr.contains("internal error"), "seed {seed}: {stderr}");
            assert!(
                stderr.lines().any(|l| l.starts_with("bunker: error:")),
                "{stderr}"
            );
        }
        run_ok(bunker(&cluster, &loc).args(["unlock"]));
        run_ok(bunker(&cluster, &loc).args(["check", "--read-data"]));
    }
}

#[test]
fn flipped_bits_are_always_detected() {
    let Some(bin) = garage_or_skip("flipped_bits_are_always_detected") else {
        return;
    };
    let cluster = must(GarageCluster::single(&bin));
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    build_source(&src);
    let loc = cluster.location("flips");
    run_ok(bunker(&cluster, &loc).arg("init"));
    run_ok(bunker(&cluster, &loc).arg("backup").arg(&src));

    // Many reads, half of them flipped: every run must fail, none may panic.
    for seed in 1..=3u64 {
        for args in [
            vec!["check", "--read-data"],
            vec!["restore", "latest", "--target"],
        ] {
            let target = dir.path().join(format!("t-{seed}"));
            let mut c = bunker(&cluster, &loc);
            c.env("BUNKER_FAULTS", format!("flip=0.5,seed={seed}"))
                .args(&args);
            if args[0] == "restore" {
                c.arg(&target);
            }
            let out = c.output().expect("spawn");
            assert!(
                !out.status.success(),
                "{args:?} seed {seed} missed flips: {}",
                show(&out)
            );
            assert!(!String::from_utf8_lossy(&out.stderr).contains("internal error"));
        }
    }
    // Rare flips: a restore either fails or is byte-identical, never silently wrong.
    for seed in 1..=5u64 {
        let target = dir.path().join(format!("rare-{seed}"));
        let out = bunker(&cluster, &loc)
            .env("BUNKER_FAULTS", format!("flip=0.02,seed={seed}"))
            .args(["restore", "latest", "--target"])
            .arg(&target)
            .output()
            .expect("spawn");
        if out.status.success() {
            assert_same_tree(&src, &restored(&target, &src));
        }
    }
    run_ok(bunker(&cluster, &loc).args(["check", "--read-data"]));
}

#[test]
fn copy_heals_the_primary_after_a_fallback_backup() {
    let Some(bin) = garage_or_skip("copy_heals_the_primary_after_a_fallback_backup") else {
        return;
    };
    let mut cluster = must(GarageCluster::single(&bin));
    let primary = cluster.location("primary");
    let dir = tempfile::tempdir().expect("tempdir");
    let fallback = dir.path().join("fallback");
    let src = dir.path().join("src");
    build_source(&src);
    run_ok(bunker(&cluster, &primary).arg("init"));
    run_ok(bunker(&cluster, &fallback.to_string_lossy()).arg("init"));

    cluster.kill_all();
    let out = bunker(&cluster, &primary)
        .args([
            "-o",
            "retry.max_elapsed=2",
            "--json",
            "backup",
            "--fallback-repo",
        ])
        .arg(&fallback)
        .arg(&src)
        .output()
        .expect("spawn");
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    let json = json_last(&out);
    assert_eq!(json["fallback_used"], fallback.to_string_lossy().as_ref());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("WARNING") && stderr.contains(&cluster.endpoint()),
        "{stderr}"
    );

    must(cluster.start_all());
    let out = run_ok(
        bunker(&cluster, &primary)
            .env("BUNKER_FROM_PASSWORD", PASSWORD)
            .args(["--json", "copy", "--from-repo"])
            .arg(&fallback),
    );
    assert_eq!(json_last(&out)["copied"].as_array().map(Vec::len), Some(1));
    let target = dir.path().join("restore");
    run_ok(
        bunker(&cluster, &primary)
            .args(["restore", "latest", "--target"])
            .arg(&target),
    );
    assert_same_tree(&src, &restored(&target, &src));
    run_ok(bunker(&cluster, &primary).args(["check", "--read-data"]));
}
