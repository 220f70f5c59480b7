//! bunker's `rest:` storage backend against an in-process `bunker serve`:
//! the Storage contract over the wire (listing sizes, ranges, write_new,
//! missing files) and the server's refusals mapped to error kinds.

use std::time::Duration;

use bunker_server::{Access, Auth, Roles, ServeConfig, Server};
use bunker_storage::{ErrorKind, FileType};
use bytes::Bytes;
use sha2::Digest;

/// Starts a server on a free loopback port in a background runtime; returns its URL.
fn start(root: &std::path::Path, append_only: bool) -> (String, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let config = ServeConfig {
        root: root.to_path_buf(),
        access: Access {
            auth: Auth::None,
            roles: Roles::default(),
            append_only,
            private_repos: false,
        },
        tls: None,
        max_request_bytes: 1 << 20,
        max_connections: 16,
        log: None,
    };
    let server = rt
        .block_on(Server::bind("127.0.0.1:0", config))
        .expect("bind");
    let addr = server.local_addr().expect("addr");
    rt.spawn(server.run(std::future::pending()));
    (format!("http://{addr}/"), rt)
}

fn named(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

#[test]
fn rest_backend_speaks_the_storage_contract_to_bunker_serve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (url, _rt) = start(dir.path(), false);
    let s = bunker_storage::open_backend(&format!("rest:{url}repo/"), &[]).expect("open");
    // Before create: the repository directory does not exist.
    let e = s.read(FileType::Config, "").unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    s.create().expect("create");
    s.write(FileType::Config, "", Bytes::from_static(b"cfg"))
        .expect("config");
    assert_eq!(s.stat(FileType::Config, "").unwrap(), Some(3));

    let a = Bytes::from(vec![7u8; 5000]);
    let b = Bytes::from_static(b"second pack");
    let (na, nb) = (named(&a), named(&b));
    s.write(FileType::Pack, &na, a.clone()).expect("pack a");
    s.write_new(FileType::Pack, &nb, b.clone()).expect("pack b");
    let mut list = s.list(FileType::Pack).expect("list");
    list.sort();
    let mut want = vec![(na.clone(), 5000), (nb.clone(), b.len() as u64)];
    want.sort();
    assert_eq!(
        list.iter()
            .map(|f| (f.name.clone(), f.size))
            .collect::<Vec<_>>(),
        want
    );
    assert_eq!(
        s.read_range(FileType::Pack, &na, 4990, 10).unwrap(),
        a.slice(4990..)
    );
    let e = s.read_range(FileType::Pack, &na, 4995, 10).unwrap_err();
    assert!(!e.is_retryable(), "{e}");
    let e = s.write_new(FileType::Pack, &nb, b.clone()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::AlreadyExists);
    // Content not matching its SHA-256 name never lands.
    let e = s
        .write(FileType::Pack, &named(b"x"), Bytes::from_static(b"y"))
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Invalid, "{e}");
    // Different content under an existing name is refused, the old file kept.
    let e = s
        .write(FileType::Config, "", Bytes::from_static(b"other"))
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::PermissionDenied, "{e}");
    assert_eq!(s.read(FileType::Config, "").unwrap(), &b"cfg"[..]);

    // Bunker's own types travel as bunker-* and land in restic's layout beside it.
    s.write(
        FileType::Wal,
        "000000010000000000000001",
        Bytes::from_static(b"w"),
    )
    .unwrap();
    assert!(dir
        .path()
        .join("repo/bunker/wal/000000010000000000000001")
        .is_file());
    assert_eq!(s.list(FileType::Wal).unwrap().len(), 1);

    s.remove(FileType::Pack, &na).expect("remove");
    assert_eq!(s.stat(FileType::Pack, &na).unwrap(), None);
    let e = s.remove(FileType::Pack, &na).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
}

#[test]
fn append_only_refusals_are_permission_denied_and_not_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (url, _rt) = start(dir.path(), true);
    // Through the full stack, with its retry layer: a refusal must fail fast.
    let s = bunker_storage::open(&format!("rest:{url}"), &[]).expect("open");
    s.create().expect("create");
    let data = Bytes::from_static(b"a lock");
    let lock = named(&data);
    s.write(FileType::Lock, &lock, data.clone()).expect("lock");
    s.remove(FileType::Lock, &lock)
        .expect("locks may be removed");
    let snap = Bytes::from_static(b"a snapshot");
    let name = named(&snap);
    s.write(FileType::Snapshot, &name, snap).expect("append");
    let started = std::time::Instant::now();
    let e = s.remove(FileType::Snapshot, &name).unwrap_err();
    assert_eq!(e.kind, ErrorKind::PermissionDenied, "{e}");
    assert!(e.to_string().contains("append-only"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a refusal was retried"
    );
    assert!(s.stat(FileType::Snapshot, &name).unwrap().is_some());
    // Too large a body: 413, invalid, not retried.
    let big = Bytes::from(vec![0u8; 2 << 20]);
    let e = s.write(FileType::Pack, &named(&big), big).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Invalid, "{e}");
}
