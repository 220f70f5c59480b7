//! The storage contract over SFTP against a real OpenSSH server on loopback:
//! conformance, atomic writes, host-key checking, unreachable servers, and no ssh
//! control master left behind. Skipped (with a note) when `sshd` is not installed.
//!
//! One test function: the ssh wrapper is put on this process's `PATH`, which must
//! not change while other threads spawn processes.

mod sshd_harness;

use bunker_storage::{conformance, open, open_backend, ErrorKind, FileType};
use bytes::Bytes;
use sshd_harness::{sshd_or_skip, SshServer};

#[test]
fn sftp_backend_on_real_sshd() {
    let Some(sshd) = sshd_or_skip("sftp_backend_on_real_sshd") else {
        return;
    };
    let server = SshServer::start(&sshd, true).unwrap_or_else(|e| panic!("sshd: {e}"));
    for (k, v) in server.client_env() {
        std::env::set_var(k, v);
    }
    let root = server.dir().join("repo");
    let location = server.location(&root);
    {
        let s = open(&location, &server.options()).expect("open sftp");
        assert_eq!(s.location(), location);
        if let Err(e) = conformance::run(&*s) {
            panic!(
                "conformance over sftp: {e}\nsshd log:\n{}",
                server.log_tail()
            );
        }
        // The restic layout lands on the server's disk; no temporary file remains.
        s.write(FileType::Pack, "ab01", Bytes::from_static(b"pack bytes"))
            .expect("write pack");
        assert_eq!(
            std::fs::read(root.join("data/ab/ab01")).expect("pack on disk"),
            b"pack bytes"
        );
        let leftovers: Vec<_> = std::fs::read_dir(root.join("data/ab"))
            .expect("dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
        assert!(root.join("keys").is_dir() && root.join("data/ff").is_dir());
        // A killed writer's temporary file is found (with its age) and removed;
        // other dot files are not touched.
        let planted = "data/ab/.ab02.tmp-0123456789abcdef";
        std::fs::write(root.join(planted), b"partial").expect("plant temp file");
        std::fs::write(root.join("data/ab/.nfs0000000000000001"), b"x").expect("plant");
        let found = s.list_temp().expect("list_temp over sftp");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].path.as_str(), found[0].size), (planted, 7));
        assert!(found[0].modified.is_some(), "{found:?}");
        s.remove_temp(planted).expect("remove_temp over sftp");
        assert!(!root.join(planted).exists());
        assert!(root.join("data/ab/.nfs0000000000000001").exists());
        std::fs::remove_file(root.join("data/ab/.nfs0000000000000001")).expect("rm");
    }
    // Dropping the storage closes every ssh control master it started.
    let left = server.leftover_processes();
    assert!(left.is_empty(), "ssh processes left behind: {left:?}");

    // A server whose host key is not in known_hosts is refused, and not retried.
    let mut stranger = SshServer::start(&sshd, false).unwrap_or_else(|e| panic!("sshd: {e}"));
    let mut opts = stranger.options();
    opts.push(("retry.max_elapsed".into(), "5".into()));
    let s = open(&stranger.location(&stranger.dir().join("r")), &opts).expect("open");
    let e = s.stat(FileType::Config, "").expect_err("unknown host key");
    assert_eq!(e.kind, ErrorKind::Unauthenticated, "{e}");
    assert!(e.to_string().contains("127.0.0.1"), "{e}");
    drop(s);

    // A stopped server is unreachable: a retryable error naming the endpoint.
    let gone = stranger.location(&stranger.dir().join("r"));
    stranger.stop();
    let s = open_backend(&gone, &stranger.options()).expect("open");
    let e = s.stat(FileType::Config, "").expect_err("server down");
    assert!(e.is_retryable(), "{e}");
    assert!(e.to_string().contains(&stranger.port.to_string()), "{e}");
}
