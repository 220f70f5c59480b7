//! Tests of the OpenDAL backend (memory, fs, runtime nesting, error mapping).
use super::*;
use crate::conformance;

fn service(scheme: &str, kv: &[(&str, &str)]) -> OpendalStorage {
    let o = Options {
        service: kv
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Options::default()
    };
    OpendalStorage::service(scheme, &o).unwrap_or_else(|e| panic!("{scheme}: {e}"))
}

#[test]
fn memory_conformance() {
    let s = service("memory", &[]);
    conformance::run(&s).expect("memory conformance");
}

#[test]
fn fs_conformance_and_restic_layout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_string_lossy().into_owned();
    let s = service("fs", &[("root", &root)]);
    conformance::run(&s).expect("fs conformance");
    assert!(dir.path().join("data/ff").is_dir());
    assert!(dir.path().join("keys").is_dir());
    // Files written through OpenDAL are readable by the local backend and vice versa.
    s.write(FileType::Pack, "abcd", Bytes::from_static(b"pack"))
        .expect("write");
    let local = crate::LocalStorage::new(dir.path());
    assert_eq!(
        local.read(FileType::Pack, "abcd").expect("read"),
        &b"pack"[..]
    );
    local
        .write(FileType::Index, "i1", Bytes::from_static(b"idx"))
        .expect("write");
    assert_eq!(
        s.list(FileType::Index).expect("list"),
        vec![FileInfo {
            name: "i1".into(),
            size: 3
        }]
    );
}

#[test]
fn works_from_inside_a_tokio_runtime() {
    let s = service("memory", &[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("rt");
    rt.block_on(async {
        s.write(FileType::Key, "k", Bytes::from_static(b"key"))
            .expect("write");
        assert_eq!(s.stat(FileType::Key, "k").expect("stat"), Some(3));
    });
    drop(rt);
    // Dropping the storage inside a runtime must not panic either.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("rt");
    rt.block_on(async move { drop(s) });
}

#[test]
fn unknown_or_disabled_service_is_invalid() {
    for scheme in ["nosuchservice", "redis"] {
        let e = OpendalStorage::service(scheme, &Options::default()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid, "{scheme}: {e}");
    }
}

#[test]
fn unreachable_s3_endpoint_is_retryable_error() {
    // Nothing listens on port 9 of localhost: the request fails fast.
    let loc = match crate::parse_location("s3:http://127.0.0.1:9/bucket/prefix") {
        Ok(crate::Location::S3(l)) => l,
        other => panic!("{other:?}"),
    };
    let mut o = Options::default();
    o.s3.access_key_id = Some("id".into());
    o.s3.secret_access_key = Some("secret".into());
    o.timeout = Some(Duration::from_secs(5));
    let s = OpendalStorage::s3(&loc, &o).expect("open");
    assert_eq!(s.location(), "s3:http://127.0.0.1:9/bucket/prefix");
    let e = s.read(FileType::Config, "").unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert!(!e.to_string().contains("secret"));
    assert!(e.to_string().contains("127.0.0.1:9"), "{e}");
}
