//! `bunker serve` end to end: restic and bunker's `rest:` backend back up
//! through it; append-only, roles, private repositories, authentication,
//! TLS and path validation are checked against the running server.
//! Needs restic and htpasswd (apache2-utils); TLS also openssl. Missing
//! programs skip the test with a note.

#[path = "../../bunker-notify/tests/support/certs.rs"]
mod certs;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use assert_cmd::cargo::CommandCargoExt;

const PASSWORD: &str = "serve test password";

fn have(prog: &str) -> bool {
    let ok = Command::new(prog)
        .arg(if prog == "htpasswd" { "-h" } else { "version" })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        eprintln!("skipping: {prog} is not installed");
    }
    ok
}

/// A running `bunker serve`, killed on drop.
struct Serve {
    child: Child,
    url: String,
    addr: String,
}

impl Serve {
    /// Starts `bunker serve --listen 127.0.0.1:0 --path DIR ARGS` and waits
    /// (at most 30 s) for its `listening on URL` line.
    fn start(dir: &Path, args: &[&str]) -> Serve {
        let mut child = Command::cargo_bin("bunker")
            .expect("binary")
            .args(["serve", "--listen", "127.0.0.1:0", "--path"])
            .arg(dir)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn bunker serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!("bunker serve did not print its address within 30 s");
            }
        };
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        let addr = url
            .split("://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .expect("address")
            .to_string();
        Serve { child, url, addr }
    }

    /// `rest:` URL of repository `repo` as `user:pass` (or anonymous).
    fn repo(&self, creds: Option<(&str, &str)>, repo: &str) -> String {
        let (scheme, rest) = self.url.split_once("://").expect("url");
        match creds {
            Some((u, p)) => format!("rest:{scheme}://{u}:{p}@{rest}{repo}/"),
            None => format!("rest:{scheme}://{rest}{repo}/"),
        }
    }

    /// One raw HTTP/1.1 request (exact path, no client-side normalisation).
    fn raw(
        &self,
        method: &str,
        path: &str,
        creds: Option<(&str, &str)>,
        body: &[u8],
    ) -> (u16, String) {
        use base64::Engine;
        let mut s = TcpStream::connect(&self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if let Some((u, p)) = creds {
            let b = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            req.push_str(&format!("Authorization: Basic {b}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).expect("send");
        s.write_all(body).expect("send body");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        let status = out
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status in {out:?}"));
        (status, out)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn restic(repo: &str, cache: &Path) -> Command {
    let mut c = Command::new("restic");
    c.env("RESTIC_REPOSITORY", repo)
        .env("RESTIC_PASSWORD", PASSWORD)
        .env_remove("RESTIC_PASSWORD_FILE")
        .env("RESTIC_CACHE_DIR", cache)
        .arg("--no-cache");
    c
}

fn bunker(repo: &str) -> Command {
    let mut c = Command::cargo_bin("bunker").expect("binary");
    c.env_remove("BUNKER_PASSWORD_FILE")
        .env_remove("BUNKER_PASSWORD_COMMAND")
        .env("BUNKER_REPOSITORY", repo)
        .env("BUNKER_PASSWORD", PASSWORD)
        .env("BUNKER_TEST_KDF_N", "1024")
        .args(["--no-progress", "--no-cache"])
        .stdin(Stdio::null());
    c
}

fn ok(c: &mut Command, what: &str) -> String {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(c: &mut Command, what: &str) -> String {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(!out.status.success(), "{what} should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A small source tree with a file of incompressible bytes.
fn source(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("sub")).expect("mkdir");
    std::fs::write(src.join("a.txt"), b"through the server\n").expect("write");
    let big: Vec<u8> = (0..700_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    std::fs::write(src.join("sub/big.bin"), big).expect("write");
    src
}

fn htpasswd(dir: &Path, users: &[(&str, &str)]) -> PathBuf {
    let file = dir.join("htpasswd");
    for (i, (u, p)) in users.iter().enumerate() {
        let mut c = Command::new("htpasswd");
        c.args(["-B", "-C", "4", "-b"]);
        if i == 0 {
            c.arg("-c");
        }
        ok(c.arg(&file).arg(u).arg(p), "htpasswd");
    }
    file
}

/// Names of the files below `dir`, recursively (the repository's state).
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

fn snapshot_count(repo: &str, cache: &Path) -> usize {
    let out = ok(
        restic(repo, cache).args(["snapshots", "--json"]),
        "snapshots",
    );
    serde_json::from_str::<serde_json::Value>(&out)
        .expect("json")
        .as_array()
        .map_or(0, Vec::len)
}

#[test]
fn restic_and_bunker_back_up_and_restore_through_serve() {
    if !have("restic") || !have("htpasswd") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("srv");
    std::fs::create_dir(&root).expect("mkdir");
    let pw = htpasswd(tmp.path(), &[("alice", "alicepw")]);
    let server = Serve::start(&root, &["--htpasswd", pw.to_str().unwrap()]);
    let src = source(tmp.path());
    let cache = tmp.path().join("cache");

    // restic: init, backup, check --read-data, restore.
    let r = server.repo(Some(("alice", "alicepw")), "restic-repo");
    ok(restic(&r, &cache).arg("init"), "restic init");
    ok(restic(&r, &cache).arg("backup").arg(&src), "restic backup");
    ok(
        restic(&r, &cache).args(["check", "--read-data"]),
        "restic check",
    );
    let target = tmp.path().join("restored-restic");
    ok(
        restic(&r, &cache)
            .args(["restore", "latest", "--target"])
            .arg(&target),
        "restic restore",
    );
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read(restored.join("sub/big.bin")).unwrap(),
        std::fs::read(src.join("sub/big.bin")).unwrap()
    );

    // bunker's rest: backend: init, backup, restore; restic then checks bunker's repository.
    let b = server.repo(Some(("alice", "alicepw")), "bunker-repo");
    ok(bunker(&b).arg("init"), "bunker init");
    ok(bunker(&b).arg("backup").arg(&src), "bunker backup");
    let target = tmp.path().join("restored-bunker");
    ok(
        bunker(&b)
            .args(["restore", "latest", "--target"])
            .arg(&target),
        "bunker restore",
    );
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read(restored.join("a.txt")).unwrap(),
        b"through the server\n"
    );
    ok(
        restic(&b, &cache).args(["check", "--read-data"]),
        "restic check of bunker's repo",
    );
    assert!(root.join("bunker-repo/config").is_file());

    // Wrong password: 401 for both tools and on the wire.
    let bad = server.repo(Some(("alice", "Zq9notthepw")), "restic-repo");
    fails(
        restic(&bad, &cache).arg("snapshots"),
        "restic with a wrong password",
    );
    let err = fails(
        bunker(&bad).arg("snapshots"),
        "bunker with a wrong password",
    );
    assert!(
        err.contains("unauthenticated") || err.contains("401"),
        "{err}"
    );
    assert!(
        !err.contains("Zq9notthepw"),
        "the password leaked into the error: {err}"
    );
    let (status, _) = server.raw("GET", "/restic-repo/config", None, b"");
    assert_eq!(status, 401);
}

#[test]
fn append_only_refuses_deletes_and_overwrites_but_backups_and_locks_work() {
    if !have("restic") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("srv");
    std::fs::create_dir(&root).expect("mkdir");
    let log = tmp.path().join("requests.log");
    let server = Serve::start(
        &root,
        &["--no-auth", "--append-only", "--log", log.to_str().unwrap()],
    );
    let src = source(tmp.path());
    let cache = tmp.path().join("cache");
    let r = server.repo(None, "r");
    ok(restic(&r, &cache).arg("init"), "restic init");
    ok(restic(&r, &cache).arg("backup").arg(&src), "backup 1");
    std::fs::write(src.join("a.txt"), b"changed\n").unwrap();
    ok(restic(&r, &cache).arg("backup").arg(&src), "backup 2");
    // Locks were created and removed by the backups.
    assert!(files(&root.join("r/locks")).is_empty(), "locks left behind");
    let before = files(&root.join("r"));

    let err = fails(
        restic(&r, &cache).args(["forget", "--keep-last", "1", "--prune"]),
        "restic forget --prune through --append-only",
    );
    assert!(
        err.contains("403") || err.to_lowercase().contains("forbidden"),
        "{err}"
    );
    let err = fails(
        bunker(&r).args(["forget", "--keep-last", "1", "--prune"]),
        "bunker forget --prune through --append-only",
    );
    assert!(
        err.contains("permission denied") && err.contains("append-only"),
        "{err}"
    );
    // Unchanged but for lock files and bunker's audit record of the refused
    // attempt (an append): both snapshots are still there.
    let after: Vec<_> = files(&root.join("r"))
        .into_iter()
        .filter(|f| !f.starts_with("locks/") && !f.starts_with("bunker/audit/"))
        .collect();
    assert_eq!(before, after);
    ok(
        restic(&r, &cache).arg("unlock").arg("--remove-all"),
        "unlock",
    );
    assert_eq!(snapshot_count(&r, &cache), 2);
    ok(restic(&r, &cache).arg("check"), "restic check");

    // A raw delete and an overwrite with different content are refused.
    let pack = before
        .iter()
        .find(|f| f.starts_with("data/"))
        .expect("a pack");
    let name = pack.rsplit('/').next().unwrap();
    let (status, body) = server.raw("DELETE", &format!("/r/data/{name}"), None, b"");
    assert_eq!(status, 403, "{body}");
    let snap = before.iter().find(|f| f.starts_with("snapshots/")).unwrap();
    let (status, _) = server.raw("POST", &format!("/r/{snap}"), None, b"tampered");
    assert_eq!(status, 400, "content not matching its name is refused");
    let config_before = std::fs::read(root.join("r/config")).unwrap();
    let (status, body) = server.raw("POST", "/r/config", None, b"tampered");
    assert_eq!(status, 403, "{body}");
    assert_eq!(std::fs::read(root.join("r/config")).unwrap(), config_before);
    // An identical re-upload (a client retry) is accepted.
    let (status, _) = server.raw("POST", "/r/config", None, &config_before);
    assert_eq!(status, 200);

    // The request log has the refused delete.
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("\"DELETE\"") && l.contains("\"status\":403")),
        "{log}"
    );
}

#[test]
fn roles_and_private_repos() {
    if !have("restic") || !have("htpasswd") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("srv");
    std::fs::create_dir(&root).expect("mkdir");
    let pw = htpasswd(
        tmp.path(),
        &[
            ("alice", "apw"),
            ("bob", "bpw"),
            ("pruner", "ppw"),
            ("auditor", "xpw"),
        ],
    );
    let roles = tmp.path().join("roles");
    std::fs::write(&roles, "# who may do what\npruner admin\nauditor restore\n").unwrap();
    let server = Serve::start(
        &root,
        &[
            "--htpasswd",
            pw.to_str().unwrap(),
            "--roles",
            roles.to_str().unwrap(),
            "--append-only",
            "--private-repos",
        ],
    );
    let src = source(tmp.path());
    let cache = tmp.path().join("cache");
    let alice = server.repo(Some(("alice", "apw")), "alice/r");
    ok(restic(&alice, &cache).arg("init"), "init");
    ok(restic(&alice, &cache).arg("backup").arg(&src), "backup 1");
    ok(restic(&alice, &cache).arg("backup").arg(&src), "backup 2");

    // bob cannot see alice's repository, nor create one outside /bob/.
    let as_bob = server.repo(Some(("bob", "bpw")), "alice/r");
    fails(
        restic(&as_bob, &cache).arg("snapshots"),
        "bob reading alice's repo",
    );
    let (status, _) = server.raw("POST", "/alice/x/?create=true", Some(("bob", "bpw")), b"");
    assert_eq!(status, 403);
    assert!(!root.join("alice/x").exists());
    let bobs = server.repo(Some(("bob", "bpw")), "bob/r");
    ok(restic(&bobs, &cache).arg("init"), "bob's own repo");

    // A backup user cannot delete; the admin can prune.
    fails(
        restic(&alice, &cache).args(["forget", "--keep-last", "1", "--prune"]),
        "backup role pruning",
    );
    ok(restic(&alice, &cache).arg("unlock"), "unlock");
    assert_eq!(snapshot_count(&alice, &cache), 2);
    // The restore role reads but cannot write.
    let as_auditor = server.repo(Some(("auditor", "xpw")), "alice/r");
    let (status, _) = server.raw("GET", "/alice/r/config", Some(("auditor", "xpw")), b"");
    assert_eq!(status, 403, "private repos apply to restore users too");
    let _ = as_auditor;
    let as_pruner = server.repo(Some(("pruner", "ppw")), "alice/r");
    ok(
        restic(&as_pruner, &cache).args(["forget", "--keep-last", "1", "--prune"]),
        "admin prune",
    );
    assert_eq!(snapshot_count(&alice, &cache), 1);
    ok(
        restic(&alice, &cache).args(["check", "--read-data"]),
        "check after prune",
    );
}

#[test]
fn path_traversal_and_bad_names_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("srv");
    std::fs::create_dir(&root).expect("mkdir");
    std::fs::write(tmp.path().join("secret"), b"outside").unwrap();
    let server = Serve::start(&root, &["--no-auth"]);
    let (status, _) = server.raw("POST", "/r/?create=true", None, b"");
    assert_eq!(status, 200);
    for (method, path) in [
        ("GET", "/../secret"),
        ("GET", "/r/../../secret"),
        ("GET", "/%2e%2e/secret"),
        ("GET", "/r/keys/..%2f..%2f..%2fsecret"),
        ("POST", "/../evil/?create=true"),
        ("POST", "/r/keys/.hidden"),
        ("POST", "/r/../../keys/x"),
        ("DELETE", "/r/keys/..%2F..%2Fsecret"),
    ] {
        let (status, body) = server.raw(method, path, None, b"x");
        assert_eq!(status, 400, "{method} {path}: {body}");
        assert!(!body.contains("outside"), "{method} {path} leaked a file");
    }
    assert!(tmp.path().join("secret").exists());
    assert!(!tmp.path().join("evil").exists());
    assert!(files(&root.join("r/keys")).is_empty());
}

#[test]
fn tls_with_a_throwaway_certificate() {
    if !have("restic") || !have("openssl") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("srv");
    std::fs::create_dir(&root).expect("mkdir");
    // A test CA and a server certificate it signs (webpki refuses a CA
    // certificate as the server's own, so a bare self-signed one will not do).
    let Some(certs) = certs::make() else { return };
    let (cert, key, ca) = (certs.cert.clone(), certs.key.clone(), certs.ca.clone());
    let server = Serve::start(
        &root,
        &[
            "--no-auth",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(server.url.starts_with("https://"), "{}", server.url);
    let src = source(tmp.path());
    let cache = tmp.path().join("cache");
    let r = server.repo(None, "tls");
    // Without the certificate the client refuses the server.
    fails(restic(&r, &cache).arg("init"), "restic without --cacert");
    ok(
        restic(&r, &cache).arg("--cacert").arg(&ca).arg("init"),
        "restic init over TLS",
    );
    ok(
        restic(&r, &cache)
            .arg("--cacert")
            .arg(&cert)
            .arg("backup")
            .arg(&src),
        "restic backup over TLS",
    );
    let cacert = format!("rest.cacert={}", ca.display());
    let out = ok(
        bunker(&r).args(["-o", &cacert, "snapshots", "--json"]),
        "bunker over TLS",
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let err = fails(
        bunker(&r).args(["-o", "retry.max_elapsed=1", "snapshots"]),
        "bunker without the CA",
    );
    assert!(err.contains("certificate"), "{err}");
}

#[test]
fn eight_parallel_restic_backups_through_append_only_serve_lose_nothing() {
    if !have("restic") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("srv");
    std::fs::create_dir(&root).expect("mkdir");
    let server = Serve::start(&root, &["--no-auth", "--append-only"]);
    let cache = tmp.path().join("cache");
    let r = server.repo(None, "shared");
    ok(restic(&r, &cache).arg("init"), "init");
    let mut children = Vec::new();
    for i in 0..8u32 {
        let src = tmp.path().join(format!("client{i}"));
        std::fs::create_dir_all(&src).expect("mkdir");
        let data: Vec<u8> = (0..300_000u32)
            .map(|j| (j.wrapping_mul(2_654_435_761).wrapping_add(i * 97) >> 9) as u8)
            .collect();
        std::fs::write(src.join("data.bin"), data).expect("write");
        let child = restic(&r, &cache)
            .args(["backup", "--host", &format!("client{i}")])
            .arg(&src)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn restic");
        children.push(child);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    for (i, mut c) in children.into_iter().enumerate() {
        loop {
            if let Some(status) = c.try_wait().expect("wait") {
                assert!(status.success(), "backup of client{i} failed");
                break;
            }
            if std::time::Instant::now() > deadline {
                let _ = c.kill();
                panic!("backup of client{i} still running after 180 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert_eq!(snapshot_count(&r, &cache), 8);
    ok(
        restic(&r, &cache).args(["check", "--read-data"]),
        "check --read-data",
    );
}
