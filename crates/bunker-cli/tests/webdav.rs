//! `bunker` over `opendal:webdav` against a real WebDAV server (Apache httpd with
//! mod_dav_fs on loopback, no mock): init, backup, restore and check --read-data;
//! the restic layout on the server's disk; a wrong repository password, a wrong
//! WebDAV password and an unreachable server each give a one-line error and a
//! non-zero exit. Skipped (with a note) when Apache is not installed.

mod fstree;
mod output_support;
#[path = "../../bunker-storage/tests/webdav_server/mod.rs"]
mod webdav_server;

use std::process::{Command, Output};

use assert_cmd::cargo::CommandCargoExt;
use fstree::{assert_same_tree, build_source};
use output_support::{run_ok, show};
use webdav_server::{apache_or_skip, DavServer};

const PASSWORD: &str = "webdav cli test password";

fn bunker(options: &[(String, String)]) -> Command {
    let mut c = Command::cargo_bin("bunker").expect("bunker binary");
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("BUNKER_REPOSITORY", "opendal:webdav")
        .env("BUNKER_PASSWORD", PASSWORD)
        .env("BUNKER_TEST_KDF_N", "1024")
        .arg("--no-progress");
    for (k, v) in options {
        c.arg("-o").arg(format!("{k}={v}"));
    }
    c
}

/// Asserts a failure with exactly one line on stderr, which is returned.
fn one_line_failure(out: &Output) -> String {
    assert!(!out.status.success(), "{}", show(out));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(err.lines().count(), 1, "{}", show(out));
    assert!(err.starts_with("bunker: error: "), "{}", show(out));
    err
}

fn with(options: &[(String, String)], key: &str, value: &str) -> Vec<(String, String)> {
    let mut v: Vec<_> = options.iter().filter(|(k, _)| k != key).cloned().collect();
    v.push((key.into(), value.into()));
    v
}

#[test]
fn webdav_round_trip_and_errors() {
    let Some(apache) = apache_or_skip("webdav_round_trip_and_errors") else {
        return;
    };
    let mut server = DavServer::start(&apache).unwrap_or_else(|e| panic!("apache: {e}"));
    let opts = server.options("/backups/host1");
    let repo = server.served().join("backups/host1");
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    build_source(&src);

    run_ok(bunker(&opts).arg("init"));
    assert!(repo.join("config").is_file(), "{}", server.log_tail());
    assert!(repo.join("data/00").is_dir() && repo.join("keys").is_dir());
    run_ok(bunker(&opts).arg("backup").arg(&src));
    let target = dir.path().join("restore");
    run_ok(
        bunker(&opts)
            .args(["restore", "latest", "--target"])
            .arg(&target),
    );
    assert_same_tree(&src, &target.join(src.strip_prefix("/").expect("absolute")));
    run_ok(bunker(&opts).args(["check", "--read-data"]));
    // Packs are on the server's disk under data/XX/, no temporary file is left.
    let mut packs = 0;
    for sub in std::fs::read_dir(repo.join("data"))
        .expect("data")
        .flatten()
    {
        for f in std::fs::read_dir(sub.path()).expect("data/XX").flatten() {
            let name = f.file_name().to_string_lossy().to_string();
            assert!(!name.starts_with('.'), "temporary file left: {name}");
            assert!(
                name.starts_with(&*sub.file_name().to_string_lossy()),
                "{name}"
            );
            packs += 1;
        }
    }
    assert!(packs > 0, "no pack on the server");
    let puts: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|l| l.starts_with("PUT ") && !l.contains("/.bunker-tmp-"))
        .collect();
    assert!(puts.is_empty(), "uploads to visible names: {puts:?}");

    // A wrong repository password: exit 12, one line.
    let out = bunker(&opts)
        .env("BUNKER_PASSWORD", "wrong")
        .arg("snapshots")
        .output()
        .expect("spawn");
    let err = one_line_failure(&out);
    assert_eq!(out.status.code(), Some(12), "{}", show(&out));
    assert!(err.contains("wrong password"), "{err}");

    // A wrong WebDAV password: refused at once (not retried), one line, secret hidden.
    let bad = with(&opts, "password", "not-the-dav-password");
    let started = std::time::Instant::now();
    let out = bunker(&bad).arg("snapshots").output().expect("spawn");
    let err = one_line_failure(&out);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "retried"
    );
    assert!(err.to_lowercase().contains("unauthorized"), "{err}");
    assert!(!err.contains("not-the-dav-password"), "{err}");

    // An unreachable server: one line naming the endpoint, after bounded retries.
    let endpoint = server.endpoint();
    server.stop();
    let down = with(&opts, "retry.max_elapsed", "2");
    let out = bunker(&down).arg("snapshots").output().expect("spawn");
    let err = one_line_failure(&out);
    assert!(err.contains(&endpoint), "{err}");
}
