//! `bunker` over storage backends against real servers (no mocks):
//!
//! * SFTP (bunker's own backend, fsynced writes) to a real `sshd` on loopback (host
//!   keys checked against a known_hosts file the test writes): init, backup,
//!   restore, check --read-data,
//!   restic reading the same repository over its own sftp backend, and no ssh
//!   control master left behind.
//! * S3 storage classes per file type on a real Garage. Garage neither stores nor
//!   returns `x-amz-storage-class` (it keeps only content headers and
//!   `x-amz-meta-*`), so a small recording proxy between bunker and Garage checks
//!   what bunker sent: packs with the data class, everything else without (or with
//!   the metadata class).
//!
//! Skipped (with a note) when `sshd` or `garage` is not installed.

#[path = "../../bunker-storage/tests/garage_harness/mod.rs"]
mod garage_harness;
mod output_support;
#[path = "../../bunker-storage/tests/sshd_harness/mod.rs"]
mod sshd_harness;

mod fstree;

use output_support::{run_ok, show};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};

use assert_cmd::cargo::CommandCargoExt;
use fstree::{assert_same_tree, build_source};
use garage_harness::{garage_or_skip, GarageCluster};
use sshd_harness::{sshd_or_skip, SshServer};

const PASSWORD: &str = "storage backends test password";

fn bunker(location: &str) -> Command {
    let mut c = Command::cargo_bin("bunker").expect("bunker binary");
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("BUNKER_REPOSITORY", location)
        .env("BUNKER_PASSWORD", PASSWORD)
        .env("BUNKER_TEST_KDF_N", "1024")
        .arg("--no-progress");
    c
}

fn restic_available() -> bool {
    Command::new("restic")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn sftp_round_trip_and_restic_interop() {
    let Some(sshd) = sshd_or_skip("sftp_round_trip_and_restic_interop") else {
        return;
    };
    let server = SshServer::start(&sshd, true).unwrap_or_else(|e| panic!("sshd: {e}"));
    let repo = server.dir().join("repos/host1");
    let loc = server.location(&repo);
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    build_source(&src);

    let b = || {
        let mut c = bunker(&loc);
        c.envs(server.client_env());
        for (k, v) in server.options() {
            c.arg("-o").arg(format!("{k}={v}"));
        }
        c
    };
    run_ok(b().arg("init"));
    assert!(repo.join("config").is_file() && repo.join("data/00").is_dir());
    run_ok(b().arg("backup").arg(&src));
    let target = dir.path().join("restore");
    run_ok(b().args(["restore", "latest", "--target"]).arg(&target));
    assert_same_tree(&src, &target.join(src.strip_prefix("/").expect("absolute")));
    run_ok(b().args(["check", "--read-data"]));
    let left = server.leftover_processes();
    assert!(left.is_empty(), "ssh control masters left behind: {left:?}");

    // Without the key option the login is refused: a clear, non-retried error.
    let out = bunker(&loc)
        .envs(server.client_env())
        .arg("snapshots")
        .output()
        .expect("spawn");
    assert!(!out.status.success(), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sftp.key") || stderr.contains("Permission denied"),
        "{stderr}"
    );

    // restic's own sftp backend reads and verifies what bunker wrote over sftp.
    if !restic_available() {
        eprintln!("note: sftp restic interop skipped, restic not installed");
        return;
    }
    let ssh = format!(
        "ssh -p {} -l {} -i {} -o IdentitiesOnly=yes -o BatchMode=yes 127.0.0.1 -s sftp",
        server.port,
        server.user,
        server.user_key.display()
    );
    let out = Command::new("restic")
        .envs(server.client_env())
        .env("RESTIC_PASSWORD", PASSWORD)
        .arg("--no-cache")
        .arg("-r")
        .arg(format!("sftp:127.0.0.1:{}", repo.display()))
        .arg("-o")
        .arg(format!("sftp.command={ssh}"))
        .args(["check", "--read-data"])
        .output()
        .expect("spawn restic");
    assert!(
        out.status.success(),
        "restic check over sftp: {}",
        show(&out)
    );
}

/// One request seen by the proxy: method, path, `x-amz-storage-class` if sent.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    class: Option<String>,
}

/// A TCP proxy to `upstream` that records the head of every HTTP/1.1 request.
struct RecordingProxy {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl RecordingProxy {
    fn start(upstream: u16) -> RecordingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let log = log.clone();
                std::thread::spawn(move || forward_requests(client, server, log));
            }
        });
        RecordingProxy { port, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

/// Copies requests client -> server, recording each head; answers flow back raw.
fn forward_requests(client: TcpStream, mut server: TcpStream, log: Arc<Mutex<Vec<Seen>>>) {
    let (Ok(mut back_from), Ok(mut back_to)) = (server.try_clone(), client.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut back_from, &mut back_to);
        let _ = back_to.shutdown(Shutdown::Write);
    });
    let mut reader = BufReader::new(client);
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => {
                    let _ = server.shutdown(Shutdown::Write);
                    return;
                }
                Ok(_) => {}
            }
            let end = line == "\r\n";
            head.push(line);
            if end {
                break;
            }
        }
        let mut parts = head[0].split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or_default().to_string(),
            parts.next().unwrap_or_default().to_string(),
        );
        let header = |name: &str| {
            head.iter().skip(1).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        let class = header("x-amz-storage-class");
        let length: u64 = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
        if let Ok(mut l) = log.lock() {
            l.push(Seen {
                method,
                path,
                class,
            });
        }
        if server.write_all(head.concat().as_bytes()).is_err() {
            return;
        }
        if chunked {
            // Not used by bunker's S3 client; forward the rest unparsed.
            let _ = std::io::copy(&mut reader, &mut server);
            return;
        }
        if std::io::copy(&mut (&mut reader).take(length), &mut server).is_err() {
            return;
        }
    }
}

#[test]
fn s3_storage_class_per_file_type_on_garage() {
    let Some(bin) = garage_or_skip("s3_storage_class_per_file_type_on_garage") else {
        return;
    };
    let cluster = GarageCluster::single(&bin).unwrap_or_else(|e| panic!("garage: {e}"));
    let proxy = RecordingProxy::start(cluster.nodes[0].s3_port);
    let loc = format!(
        "s3:http://127.0.0.1:{}/{}/classes",
        proxy.port, cluster.bucket
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    for i in 0..5u8 {
        std::fs::write(src.join(format!("f{i}")), vec![i; 300_000]).expect("write");
    }
    let b = |opts: &[&str]| {
        let mut c = bunker(&loc);
        c.envs(cluster.aws_env());
        for o in opts {
            c.arg("-o").arg(o);
        }
        c
    };
    let data_only = ["s3.storage_class.data=STANDARD_IA"];
    run_ok(b(&data_only).arg("init"));
    run_ok(b(&data_only).arg("backup").arg(&src));

    let puts = |seen: &[Seen], dir: &str| -> Vec<Seen> {
        let prefix = format!("/{}/classes/{dir}", cluster.bucket);
        seen.iter()
            .filter(|s| s.method == "PUT" && s.path.starts_with(&prefix))
            .cloned()
            .collect()
    };
    let seen = proxy.seen();
    let packs = puts(&seen, "data/");
    assert!(!packs.is_empty(), "no pack uploads recorded: {seen:?}");
    for p in &packs {
        assert_eq!(p.class.as_deref(), Some("STANDARD_IA"), "{p:?}");
    }
    for d in ["config", "keys/", "index/", "snapshots/", "locks/"] {
        let other = puts(&seen, d);
        assert!(!other.is_empty(), "no {d} uploads recorded");
        assert!(other.iter().all(|s| s.class.is_none()), "{d}: {other:?}");
    }

    // A metadata class applies to snapshots, index and locks, not to packs.
    std::fs::write(src.join("new"), vec![9u8; 200_000]).expect("write");
    let before = seen.len();
    let both = [
        "s3.storage_class.data=STANDARD_IA",
        "s3.storage_class.metadata=STANDARD",
    ];
    run_ok(b(&both).arg("backup").arg(&src));
    let seen = proxy.seen().split_off(before);
    for p in puts(&seen, "data/") {
        assert_eq!(p.class.as_deref(), Some("STANDARD_IA"), "{p:?}");
    }
    for d in ["index/", "snapshots/", "locks/"] {
        let other = puts(&seen, d);
        assert!(!other.is_empty(), "no {d} uploads recorded");
        assert!(
            other.iter().all(|s| s.class.as_deref() == Some("STANDARD")),
            "{other:?}"
        );
    }
    run_ok(b(&[]).args(["check", "--read-data"]));

    // Archive classes warn; bad names and archive metadata are refused.
    let out = run_ok(b(&["s3.storage_class.data=DEEP_ARCHIVE"]).arg("snapshots"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("DEEP_ARCHIVE") && stderr.contains("check --read-data"),
        "{stderr}"
    );
    for bad in [
        "s3.storage_class.data=standard-ia",
        "s3.storage_class.metadata=GLACIER",
    ] {
        let out = b(&[bad]).arg("snapshots").output().expect("spawn");
        assert_eq!(out.status.code(), Some(1), "{bad}: {}", show(&out));
        let key = bad.split('=').next().unwrap_or_default();
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(key),
            "{}",
            show(&out)
        );
    }
}
