//! End-to-end: what a damaged, interrupted or read-only repository needs —
//! `repair index` / `repair snapshots` (restic's `check` as the oracle),
//! leftovers of killed writers, read-only repositories, key files written by
//! other tools, and damaged archived WAL files.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::time::{Duration, SystemTime};

use common::{Env, PASSWORD};
use rand::{RngCore, SeedableRng};

/// Two 5 MiB files of random bytes: several data packs at `--pack-size 4`.
fn source(env: &Env) -> PathBuf {
    let src = env.path("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    for (i, name) in ["one.bin", "sub/two.bin"].iter().enumerate() {
        let mut v = vec![0u8; 5 << 20];
        rand::rngs::StdRng::seed_from_u64(i as u64).fill_bytes(&mut v);
        std::fs::write(src.join(name), v).unwrap();
    }
    std::fs::write(src.join("small.txt"), b"small file\n").unwrap();
    src
}

fn backup(env: &Env, src: &Path) {
    env.bunker()
        .args(["--no-progress", "--pack-size", "4", "backup"])
        .arg(src)
        .assert()
        .success();
}

/// `(success, stdout + stderr)` of `bunker ARGS`.
fn run(env: &Env, args: &[&str]) -> (bool, i32, String) {
    let out = env
        .bunker()
        .arg("--no-progress")
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), out.status.code().unwrap_or(-1), text)
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            out.extend(files_in(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out.sort();
    out
}

/// `restic check` on the repository: `None` when restic is not installed.
fn restic_check(repo: &Path) -> Option<(bool, String)> {
    let out = StdCommand::new("restic")
        .args(["--no-cache", "-r"])
        .arg(repo)
        .arg("check")
        .env("RESTIC_PASSWORD", PASSWORD)
        .output()
        .ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), text))
}

fn expect_restic_clean(repo: &Path) {
    match restic_check(repo) {
        Some((ok, text)) => assert!(ok, "restic check after repair:\n{text}"),
        None => eprintln!("restic is not installed; skipping the restic oracle"),
    }
}

#[test]
fn lost_index_file_check_recommends_repair_index_and_prune_refuses() {
    let env = Env::init();
    let src = source(&env);
    backup(&env, &src);
    for f in files_in(&env.repo.join("index")) {
        std::fs::remove_file(f).unwrap();
    }

    let (ok, _, text) = run(&env, &["check"]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("not referenced by any index but holds"),
        "{text}"
    );
    assert!(text.contains("bunker repair index"), "{text}");
    assert!(
        !text.contains("prune` removes it"),
        "dangerous advice: {text}"
    );

    let (ok, _, text) = run(&env, &["prune"]);
    assert!(!ok, "prune must refuse: {text}");
    assert!(text.contains("bunker repair index"), "{text}");

    let (ok, _, text) = run(&env, &["repair", "index"]);
    assert!(ok, "{text}");
    assert!(text.contains("not indexed before, added"), "{text}");
    let (ok, _, text) = run(&env, &["check", "--read-data"]);
    assert!(ok, "{text}");
    expect_restic_clean(&env.repo);
    let target = env.path("restored");
    env.bunker()
        .args(["restore", "latest", "--target"])
        .arg(&target)
        .assert()
        .success();
    let back = common::under(&target, &src);
    assert_eq!(
        std::fs::read(back.join("sub/two.bin")).unwrap(),
        std::fs::read(src.join("sub/two.bin")).unwrap()
    );
}

#[test]
fn deleted_pack_repair_snapshots_forget_leaves_a_clean_repository() {
    let env = Env::init();
    let src = source(&env);
    backup(&env, &src);
    let old_id = env.latest_id();
    // The largest pack holds file data, not trees.
    let victim = files_in(&env.repo.join("data"))
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    std::fs::remove_file(&victim).unwrap();
    let (ok, _, text) = run(&env, &["check"]);
    assert!(!ok && text.contains("does not exist"), "{text}");

    let (ok, _, text) = run(&env, &["repair", "index"]);
    assert!(ok && text.contains("dropped from the index"), "{text}");
    let (ok, _, text) = run(&env, &["repair", "snapshots", "--dry-run"]);
    assert!(ok && text.contains("removed missing content"), "{text}");
    assert_eq!(env.latest_id(), old_id, "a dry run changes nothing");
    let (ok, _, text) = run(&env, &["repair", "snapshots", "--forget"]);
    assert!(ok, "{text}");
    assert!(text.contains("original removed"), "{text}");

    let (ok, _, text) = run(&env, &["check", "--read-data"]);
    assert!(ok, "{text}");
    expect_restic_clean(&env.repo);
    let snaps = env.json(&["snapshots"]);
    let snaps = snaps.as_array().unwrap();
    assert_eq!(snaps.len(), 1, "the original was forgotten");
    assert_ne!(snaps[0]["id"].as_str().unwrap(), old_id);
    assert_eq!(snaps[0]["original"].as_str().unwrap(), old_id);
    assert!(snaps[0]["tags"].to_string().contains("repaired"));
    // What survived restores: files lost the chunks that are gone (they are
    // shorter, with their size corrected), nothing else changed.
    let target = env.path("restored");
    env.bunker()
        .args(["restore", "latest", "--target"])
        .arg(&target)
        .assert()
        .success();
    let back = common::under(&target, &src);
    let (mut before, mut after) = (0, 0);
    for name in ["one.bin", "sub/two.bin", "small.txt"] {
        let orig = std::fs::metadata(src.join(name)).unwrap().len();
        let now = std::fs::metadata(back.join(name)).unwrap().len();
        assert!(now <= orig, "{name}: {now} > {orig}");
        before += orig;
        after += now;
    }
    assert!(after < before, "the deleted pack's data is gone");
}

#[test]
fn temp_files_of_killed_writers_are_reported_and_old_ones_pruned() {
    let env = Env::init();
    let src = source(&env);
    backup(&env, &src);
    // What a backup killed with SIGKILL leaves: a partial pack under its
    // temporary name. One abandoned two hours ago, one being written now.
    let old = env.repo.join("data/ab/.ab00ff.tmp-0123456789abcdef");
    let fresh = env.repo.join("data/cd/.cd00ff.tmp-fedcba9876543210");
    std::fs::write(&old, vec![7u8; 100_000]).unwrap();
    std::fs::write(&fresh, vec![7u8; 1000]).unwrap();
    let two_hours_ago = SystemTime::now() - Duration::from_secs(2 * 3600);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();
    let nfs = env.repo.join("data/ab/.nfs0000000000000042");
    std::fs::write(&nfs, b"an open file on NFS").unwrap();

    let (ok, _, text) = run(&env, &["check"]);
    assert!(ok, "leftovers are a warning: {text}");
    assert!(
        text.contains("2 temporary file(s) of interrupted writers"),
        "{text}"
    );
    let v = env.json(&["check"]);
    assert_eq!(v["leftovers"]["files"], 2);
    assert_eq!(v["leftovers"]["abandoned"], 1);

    let (ok, _, text) = run(&env, &["prune", "--dry-run"]);
    assert!(ok && text.contains("1 would be removed"), "{text}");
    assert!(old.exists());
    let (ok, _, text) = run(&env, &["prune"]);
    assert!(ok, "{text}");
    assert!(text.contains("1 removed"), "{text}");
    assert!(!old.exists(), "abandoned temp file removed");
    assert!(fresh.exists(), "a live writer's temp file is kept");
    assert!(nfs.exists(), "other dot files are never touched");
}

/// A read-only bind mount of the repository, unmounted on drop.
struct ReadOnlyMount(PathBuf);

impl ReadOnlyMount {
    fn new(src: &Path, at: &Path) -> Option<ReadOnlyMount> {
        std::fs::create_dir_all(at).ok()?;
        let ok = StdCommand::new("mount")
            .args(["--bind", "-o", "ro"])
            .arg(src)
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        let m = ReadOnlyMount(at.to_path_buf());
        // Older kernels ignore `ro` on the first bind: remount.
        let _ = StdCommand::new("mount")
            .args(["-o", "remount,bind,ro"])
            .arg(at)
            .status();
        (ok && std::fs::write(at.join("probe"), b"x").is_err()).then_some(m)
    }
}

impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        let _ = StdCommand::new("umount").arg(&self.0).status();
    }
}

#[test]
fn read_only_repository_is_readable_and_writers_get_their_own_error() {
    let env = Env::init();
    let src = env.make_source();
    backup(&env, &src);
    let ro = env.path("ro");
    let Some(_mount) = ReadOnlyMount::new(&env.repo, &ro) else {
        eprintln!("cannot make a read-only bind mount (needs root); skipping");
        return;
    };
    let ro_str = ro.to_str().unwrap();
    let on_ro = |args: &[&str]| {
        let mut full = vec!["-r", ro_str];
        full.extend_from_slice(args);
        run(&env, &full)
    };
    for args in [
        &["snapshots"][..],
        &["ls", "latest"],
        &["check", "--read-data"],
        &["key", "list"],
    ] {
        let (ok, code, text) = on_ro(args);
        assert!(ok, "{args:?} exited {code}: {text}");
        assert!(text.contains("refuses writes"), "{args:?}: {text}");
    }
    let target = env.path("restored");
    let (ok, _, text) = on_ro(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(common::under(&target, &src).join("a.txt").is_file());
    let (ok, _, text) = on_ro(&["--no-lock", "snapshots"]);
    assert!(ok && !text.contains("refuses writes"), "{text}");

    // Writers cannot work, and say why: not exit 11 "locked".
    let (ok, code, text) = on_ro(&["prune"]);
    assert!(!ok);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("refuses writes"), "{text}");
    assert!(!text.contains("locked"), "{text}");
}

#[test]
fn rustic_key_file_opens_and_damaged_key_file_is_named() {
    let env = Env::init();
    let key = files_in(&env.repo.join("keys")).pop().unwrap();
    let original = std::fs::read(&key).unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&original).unwrap();
    let m = v.as_object_mut().unwrap();
    m.remove("created");
    m.remove("username");
    m.remove("hostname");
    std::fs::write(&key, serde_json::to_vec(&v).unwrap()).unwrap();
    let (ok, _, text) = run(&env, &["snapshots"]);
    assert!(ok, "a key file without `created` opens: {text}");

    v["salt"] = "%%% not base64 %%%".into();
    std::fs::write(&key, serde_json::to_vec(&v).unwrap()).unwrap();
    let (ok, code, text) = run(&env, &["snapshots"]);
    assert!(!ok);
    assert!(text.contains("no key file can be read"), "{text}");
    let name = key.file_name().unwrap().to_str().unwrap();
    assert!(text.contains(&format!("keys/{name}")), "{text}");
    assert!(text.contains("\"salt\": invalid base64"), "{text}");
    assert!(!text.contains("wrong password"), "{text}");
    assert_eq!(code, 1, "{text}");

    std::fs::write(&key, &original).unwrap();
    let out = env
        .bunker()
        .env("BUNKER_PASSWORD", "")
        .arg("snapshots")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("BUNKER_PASSWORD is set but empty"), "{err}");
}

#[test]
fn flipped_byte_in_archived_wal_is_found_by_check_and_wal_verify() {
    let env = Env::init();
    let name = "000000010000000000000001";
    let wal = env.path(name);
    let mut v = vec![0u8; 1 << 20];
    rand::rngs::StdRng::seed_from_u64(9).fill_bytes(&mut v[..300_000]);
    std::fs::write(&wal, v).unwrap();
    env.bunker()
        .args(["pg", "wal-push"])
        .arg(&wal)
        .assert()
        .success();
    let (ok, _, text) = run(&env, &["check", "--read-data"]);
    assert!(ok && text.contains("read 1 archived WAL files"), "{text}");

    let stored = env.repo.join("bunker/wal").join(name);
    let mut bytes = std::fs::read(&stored).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&stored, bytes).unwrap();
    for args in [
        &["check", "--read-data"][..],
        &["check", "--read-data-subset", "1/1"],
    ] {
        let (ok, _, text) = run(&env, args);
        assert!(!ok, "{args:?}: {text}");
        assert!(
            text.contains(&format!("damaged WAL file: {name}")),
            "{text}"
        );
    }
    let (ok, _, text) = run(&env, &["check"]);
    assert!(ok, "without --read-data the WAL is not read: {text}");
    let (ok, _, text) = run(&env, &["pg", "wal-verify", "--read-data"]);
    assert!(!ok);
    assert!(text.contains(&format!("damaged {name}")), "{text}");
}

#[test]
fn damaged_pack_repair_packs_salvages_intact_blobs() {
    let env = Env::init();
    let src = source(&env);
    backup(&env, &src);
    let victim = files_in(&env.repo.join("data"))
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let id = victim.file_name().unwrap().to_str().unwrap().to_string();
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&victim, &bytes).unwrap();
    let blobs_before = bytes.len();

    let (ok, _, text) = run(&env, &["check", "--read-data"]);
    assert!(
        !ok && text.contains(&format!("damaged pack: {id}")),
        "{text}"
    );
    let (ok, _, text) = run(&env, &["repair", "packs", &id[..12]]);
    assert!(ok, "{text}");
    assert!(text.contains("1 damaged (removed)"), "{text}");
    assert!(!victim.exists(), "the damaged pack is deleted");
    let (ok, _, text) = run(&env, &["repair", "snapshots", "--forget"]);
    assert!(ok && text.contains("removed missing content"), "{text}");
    let (ok, _, text) = run(&env, &["check", "--read-data"]);
    assert!(ok, "{text}");
    expect_restic_clean(&env.repo);
    // All but one blob of the pack survived.
    let salvaged: u64 = files_in(&env.repo.join("data"))
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(salvaged as usize > blobs_before / 2, "{salvaged}");
}
