//! The storage contract over `opendal:webdav` against a real WebDAV server (Apache
//! httpd with mod_dav_fs) on loopback: conformance, the restic layout on the
//! server's disk, no temporary file left, wrong passwords and unreachable servers.
//! Skipped (with a note) when Apache is not installed.

mod webdav_server;

use bunker_storage::{conformance, open, open_backend, ErrorKind, FileType};
use bytes::Bytes;
use webdav_server::{apache_or_skip, DavServer};

fn opts(pairs: Vec<(String, String)>, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v = pairs;
    v.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    v
}

#[test]
fn webdav_backend_on_real_apache() {
    let Some(apache) = apache_or_skip("webdav_backend_on_real_apache") else {
        return;
    };
    let server = DavServer::start(&apache).unwrap_or_else(|e| panic!("apache: {e}"));
    let root = server.served().join("repos/r1");
    let s = open("opendal:webdav", &server.options("/repos/r1")).expect("open webdav");
    assert!(s.location().contains("opendal:webdav"), "{}", s.location());
    assert!(
        s.location().contains(&server.endpoint()),
        "{}",
        s.location()
    );
    assert!(
        !format!("{s:?} {}", s.location()).contains(webdav_server::PASSWORD),
        "password shown"
    );
    if let Err(e) = conformance::run(&*s) {
        panic!(
            "conformance over webdav: {e}\napache log:\n{}",
            server.log_tail()
        );
    }

    // The restic layout lands on the server's disk; no temporary file remains.
    assert!(root.join("keys").is_dir() && root.join("data/ff").is_dir());
    s.write(FileType::Pack, "ab01", Bytes::from_static(b"pack bytes"))
        .expect("write pack");
    assert_eq!(
        std::fs::read(root.join("data/ab/ab01")).expect("pack on disk"),
        b"pack bytes"
    );
    // A killed writer's `.bunker-tmp-*` file is found (with its age) and removed.
    let planted = "data/ab/.bunker-tmp-0123456789abcdef";
    std::fs::write(root.join(planted), b"partial").expect("plant temp file");
    let found = s.list_temp().expect("list_temp over webdav");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].path, planted);
    assert!(found[0].modified.is_some(), "{found:?}");
    s.remove_temp(planted).expect("remove_temp over webdav");
    assert!(!root.join(planted).exists());
    s.write_new(FileType::Lock, "cd02", Bytes::from_static(b"lock"))
        .expect("write_new lock");
    assert_eq!(
        std::fs::read(root.join("locks/cd02")).expect("lock"),
        b"lock"
    );
    for d in ["data/ab", "locks"] {
        let leftovers: Vec<_> = std::fs::read_dir(root.join(d))
            .expect("dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(
            leftovers.is_empty(),
            "temp files left in {d}: {leftovers:?}"
        );
    }
    // Atomic writes: every upload went to a dot-name and was MOVEd onto its name.
    let requests = server.requests();
    let puts: Vec<&String> = requests.iter().filter(|l| l.starts_with("PUT ")).collect();
    assert!(!puts.is_empty(), "no PUT logged: {requests:?}");
    for put in &puts {
        let path = put.split(' ').nth(1).unwrap_or_default();
        let name = path.rsplit('/').next().unwrap_or_default();
        assert!(
            name.starts_with(".bunker-tmp-"),
            "PUT to a visible name: {put}"
        );
        let moved = requests
            .iter()
            .any(|l| l.starts_with(&format!("MOVE {path} 20")) && l.contains("overwrite=T"));
        assert!(moved, "{path} was not moved into place: {requests:?}");
    }
    let target = "/repos/r1/data/ab/ab01";
    assert!(
        requests
            .iter()
            .any(|l| l.starts_with("MOVE /repos/r1/data/ab/.bunker-tmp-") && l.ends_with(target)),
        "pack not moved onto {target}: {requests:?}"
    );

    // A dot-file (an interrupted upload) is never listed.
    std::fs::write(root.join("data/ab/.bunker-tmp-1"), b"half").expect("tmp");
    let packs = s.list(FileType::Pack).expect("list");
    assert_eq!(packs.len(), 1, "{packs:?}");
    assert_eq!((packs[0].name.as_str(), packs[0].size), ("ab01", 10));
    // A file on the server that is not where the layout puts it is not listed either.
    std::fs::write(root.join("data/ab01"), b"misplaced").expect("misplaced");
    assert_eq!(s.list(FileType::Pack).expect("list").len(), 1);
    // Range reads are served by the server (206), and past the end is an error.
    assert_eq!(
        s.read_range(FileType::Pack, "ab01", 5, 5).expect("range"),
        &b"bytes"[..]
    );
    let e = s
        .read_range(FileType::Pack, "ab01", 5, 50)
        .expect_err("past end");
    assert_ne!(e.kind, ErrorKind::NotFound, "{e}");
    drop(s);

    // A wrong password: unauthenticated, not retried, and the password never shown.
    let bad = opts(
        server
            .options("/repos/r1")
            .into_iter()
            .filter(|(k, _)| k != "password")
            .collect(),
        &[
            ("password", "not the password"),
            ("retry.max_elapsed", "30"),
        ],
    );
    let s = open("opendal:webdav", &bad).expect("open");
    let started = std::time::Instant::now();
    let e = s.stat(FileType::Config, "").expect_err("wrong password");
    assert_eq!(e.kind, ErrorKind::Unauthenticated, "{e}");
    assert!(!e.is_retryable(), "{e}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "retried"
    );
    assert!(!e.to_string().contains("not the password"), "{e}");
    let e = s
        .write(FileType::Key, "ee", Bytes::from_static(b"k"))
        .expect_err("write with a wrong password");
    assert_eq!(e.kind, ErrorKind::Unauthenticated, "{e}");
    drop(s);

    // A stopped server is unreachable: a retryable error naming the endpoint.
    let mut server = server;
    let endpoint = server.endpoint();
    let options = server.options("/repos/r1");
    server.stop();
    let s = open_backend("opendal:webdav", &options).expect("open");
    let e = s.stat(FileType::Config, "").expect_err("server down");
    assert!(e.is_retryable(), "{e}");
    assert!(e.to_string().contains(&endpoint), "{e}");
}
