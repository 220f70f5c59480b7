//! SFTP durability and ssh process lifetime against a real OpenSSH server:
//!
//! * every write fsyncs its temporary file (`fsync@openssh.com`) before renaming
//!   or linking it into place, as the server's `sftp-server` log shows;
//! * concurrent writers get several ssh connections;
//! * dropping the storage (also inside a tokio runtime) ends every ssh process;
//! * a process killed with SIGKILL in the middle of writing leaves no ssh process
//!   (control master or sftp client) running for more than a few seconds.
//!
//! The killed process is this test binary run again with only the ignored helper
//! test [`sftp_writer_until_killed`] selected. Skipped (with a note) when `sshd` is
//! not installed.

mod sshd_harness;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bunker_storage::{open, FileType};
use bytes::Bytes;
use sshd_harness::{sshd_or_skip, SshServer};

const CHILD_LOCATION: &str = "BUNKER_TEST_SFTP_CHILD_LOCATION";
const CHILD_KEY: &str = "BUNKER_TEST_SFTP_CHILD_KEY";

/// Checks that the file renamed or linked to `target` was fsynced (under its
/// temporary name) before, in an `sftp-server -l VERBOSE` log.
fn fsynced_before_publish(log: &str, target: &str) -> Result<(), String> {
    let new = format!(" new \"{target}\"");
    let lines: Vec<&str> = log.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains(" old \"") && l.ends_with(&new))
        .ok_or_else(|| format!("no rename or link to {target}"))?;
    let old = lines[at]
        .split(" old \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default();
    let fsync = format!("fsync \"{old}\"");
    if lines[..at].iter().any(|l| l.ends_with(&fsync)) {
        Ok(())
    } else {
        Err(format!("{old} was not fsynced before it became {target}"))
    }
}

#[test]
fn sftp_writes_are_fsynced_and_ssh_dies_with_a_killed_process() {
    let Some(sshd) = sshd_or_skip("sftp_writes_are_fsynced_and_ssh_dies_with_a_killed_process")
    else {
        return;
    };
    let server = SshServer::start(&sshd, true).unwrap_or_else(|e| panic!("sshd: {e}"));
    for (k, v) in server.client_env() {
        std::env::set_var(k, v);
    }
    let root = server.dir().join("repo");
    let location = server.location(&root);

    // Durability: fsync of the temporary file, then the rename (or link) into place.
    {
        let s = open(&location, &server.options()).expect("open sftp");
        s.create().expect("create");
        let pack = Bytes::from((0..700_000u32).map(|i| i as u8).collect::<Vec<u8>>());
        s.write(FileType::Pack, "ab02", pack.clone())
            .expect("write pack");
        s.write(FileType::Pack, "ab02", pack.clone())
            .expect("replace pack");
        s.write_new(FileType::Key, "k1", Bytes::from_static(b"key"))
            .expect("write_new key");
        assert_eq!(s.read(FileType::Pack, "ab02").expect("read"), pack);
        let e = s
            .write_new(FileType::Key, "k1", Bytes::from_static(b"other"))
            .expect_err("write_new over an existing name");
        assert_eq!(e.kind, bunker_storage::ErrorKind::AlreadyExists, "{e}");
    }
    match server.sftp_log() {
        None => eprintln!("note: fsync check skipped: no stand-alone sftp-server to log requests"),
        Some(log) => {
            let r = root.display().to_string();
            for target in [format!("{r}/data/ab/ab02"), format!("{r}/keys/k1")] {
                if let Err(e) = fsynced_before_publish(&log, &target) {
                    panic!("{e}; sftp-server log:\n{log}");
                }
            }
            assert!(
                log.contains(&format!("hardlink old \"{r}/keys/.k1.tmp-")),
                "write_new does not publish with a hard link:\n{log}"
            );
        }
    }
    // Concurrent writers are spread over several ssh connections.
    {
        let s = open(&location, &server.options()).expect("open sftp");
        let start = std::sync::Barrier::new(4);
        std::thread::scope(|scope| {
            for t in 0..4u8 {
                let (s, start) = (&s, &start);
                scope.spawn(move || {
                    start.wait();
                    let name = format!("ee{t:02x}");
                    let data = Bytes::from(vec![t; 3 << 20]);
                    s.write(FileType::Pack, &name, data.clone()).expect("write");
                    assert_eq!(s.read(FileType::Pack, &name).expect("read"), data);
                });
            }
        });
        let masters = server
            .ssh_processes()
            .iter()
            .filter(|cmd| cmd.contains(" -M "))
            .count();
        assert!(
            masters >= 2,
            "4 concurrent writers used {masters} ssh connection(s)"
        );
        assert_eq!(s.list(FileType::Pack).expect("list").len(), 5);
    }
    // Used and dropped inside a tokio runtime: the connections are closed as well.
    {
        let s = open(&location, &server.options()).expect("open sftp");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            assert_eq!(s.stat(FileType::Key, "k1").expect("stat"), Some(3));
            drop(s);
        });
    }
    let left = server.leftover_processes();
    assert!(left.is_empty(), "ssh processes left after drop: {left:?}");

    // Lifetime: SIGKILL a writing process; its ssh processes must go away soon.
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--ignored",
            "--exact",
            "sftp_writer_until_killed",
            "--nocapture",
        ])
        .envs(server.client_env())
        .env(CHILD_LOCATION, &location)
        .env(CHILD_KEY, &server.user_key)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn writer");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut written = 0;
    while written < 3 {
        match lines.next() {
            Some(Ok(l)) if l.starts_with("wrote ") => written += 1,
            Some(Ok(_)) => {}
            other => panic!("writer ended early ({other:?}): {}", server.log_tail()),
        }
    }
    let before = server.ssh_processes();
    assert!(!before.is_empty(), "the writer runs no ssh process?");
    child.kill().expect("SIGKILL writer");
    let killed_at = Instant::now();
    child.wait().expect("wait writer");
    let left = server.leftover_processes_within(Duration::from_secs(10));
    assert!(
        left.is_empty(),
        "ssh processes still running {:?} after SIGKILL: {left:?}",
        killed_at.elapsed()
    );
    eprintln!(
        "note: {} ssh processes of the killed writer were gone after {:?}",
        before.len(),
        killed_at.elapsed()
    );
}

/// Helper process for the test above: writes packs until killed.
#[test]
#[ignore = "helper process, started by sftp_writes_are_fsynced_and_ssh_dies_with_a_killed_process"]
fn sftp_writer_until_killed() {
    let (Ok(location), Ok(key)) = (std::env::var(CHILD_LOCATION), std::env::var(CHILD_KEY)) else {
        eprintln!("note: sftp_writer_until_killed only runs as a helper process");
        return;
    };
    let s = open(&location, &[("sftp.key".to_string(), key)]).expect("open sftp");
    let data = Bytes::from(vec![0x5a; 4 << 20]);
    for i in 0u64.. {
        let name = format!("cd{i:062x}");
        s.write(FileType::Pack, &name, data.clone()).expect("write");
        println!("wrote {name}");
    }
}
