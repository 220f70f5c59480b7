//! Opening a storage stack from a location string and options.

use std::sync::Arc;

use crate::error::StorageError;
use crate::fault::{FaultConfig, FaultStorage};
use crate::local::LocalStorage;
use crate::location::{parse_location, Location};
use crate::opendal_backend::OpendalStorage;
use crate::options::Options;
use crate::rest::RestStorage;
use crate::retry::{RetryConfig, RetryStorage};
use crate::sftp_backend::SftpStorage;
use crate::DynStorage;

/// Opens `location` with `options` (`-o key=value` pairs) and returns
/// `RetryStorage(FaultStorage?(backend))`; the fault layer is present only when
/// `BUNKER_FAULTS` is set.
///
/// Locations: a plain path or `local:PATH`; `s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX]`,
/// `s3:s3.amazonaws.com/BUCKET[/PREFIX]`, `s3:HOST/BUCKET[/PREFIX]` (https);
/// `sftp:[USER@]HOST:/PATH` and `sftp://[USER@]HOST:PORT//PATH`;
/// `rest:http(s)://[USER:PASS@]HOST[:PORT]/[PATH/]` (restic's REST protocol); and
/// `opendal:SCHEME` configured by the options. S3 credentials come from
/// `s3.access_key_id`/`s3.secret_access_key` options or `AWS_ACCESS_KEY_ID`/
/// `AWS_SECRET_ACCESS_KEY`; the region from `s3.region`, `AWS_DEFAULT_REGION`,
/// `AWS_REGION`, detection on AWS, else `us-east-1`.
pub fn open(location: &str, options: &[(String, String)]) -> Result<DynStorage, StorageError> {
    let (loc, opts) = parse(location, options)?;
    let backend = build(&loc, &opts)?;
    let layered: DynStorage = match FaultConfig::from_env()? {
        Some(config) => {
            tracing::warn!(?config, "fault injection enabled by BUNKER_FAULTS");
            Arc::new(FaultStorage::new(backend, config))
        }
        None => backend,
    };
    let mut retry = RetryConfig::default();
    if let Some(max) = opts.retry_max_elapsed {
        retry.max_elapsed = max;
    }
    Ok(Arc::new(RetryStorage::with_config(layered, retry)))
}

/// Opens only the backend for `location`, without retry or fault layers.
pub fn open_backend(
    location: &str,
    options: &[(String, String)],
) -> Result<DynStorage, StorageError> {
    let (loc, opts) = parse(location, options)?;
    build(&loc, &opts)
}

fn parse(
    location: &str,
    options: &[(String, String)],
) -> Result<(Location, Options), StorageError> {
    let loc = parse_location(location)?;
    let mut opts = Options::parse(options, &loc)?;
    if matches!(loc, Location::S3(_)) {
        opts.s3 = opts.s3.with_env(|k| std::env::var(k).ok());
    }
    Ok((loc, opts))
}

fn build(loc: &Location, opts: &Options) -> Result<DynStorage, StorageError> {
    Ok(match loc {
        Location::Local(path) => Arc::new(LocalStorage::new(path)),
        Location::S3(s3) => Arc::new(OpendalStorage::s3(s3, opts)?),
        Location::Sftp(sftp) => Arc::new(SftpStorage::open(sftp, opts)?),
        Location::Rest(rest) => Arc::new(RestStorage::open(rest, opts)?),
        Location::Opendal { scheme } => Arc::new(OpendalStorage::service(scheme, opts)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorKind, FileType};
    use bytes::Bytes;

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn open_local_and_opendal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r");
        let s = open(&format!("local:{}", path.display()), &[]).expect("open local");
        assert!(s.location().starts_with("local:"));
        s.create().expect("create");
        s.write(FileType::Config, "", Bytes::from_static(b"cfg"))
            .expect("write");
        let plain = open(
            &path.display().to_string(),
            &kv(&[("retry.max_elapsed", "2")]),
        )
        .expect("open path");
        assert_eq!(plain.read(FileType::Config, "").expect("read"), &b"cfg"[..]);

        let fs =
            open("opendal:fs", &kv(&[("root", &path.display().to_string())])).expect("opendal fs");
        assert_eq!(fs.read(FileType::Config, "").expect("read"), &b"cfg"[..]);
        assert!(fs.location().contains("opendal:fs"));
    }

    #[test]
    fn open_reports_bad_input() {
        let e = open("ftp:host/x", &[]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid);
        assert!(e.to_string().contains("supported forms"));
        let e = open("/srv/x", &kv(&[("s3.region", "x")])).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid);
        let e = open("opendal:doesnotexist", &[]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid);
    }

    #[test]
    fn open_s3_location_never_shows_secrets() {
        let s = open(
            "s3:http://127.0.0.1:9/bkt/pre",
            &kv(&[
                ("s3.access_key_id", "AKIDEXAMPLE"),
                ("s3.secret_access_key", "TOPSECRET"),
                ("s3.region", "garage"),
                ("s3.storage-class.data", "STANDARD_IA"),
                ("connections", "2"),
                ("timeout", "3"),
            ]),
        )
        .expect("open s3");
        assert_eq!(s.location(), "s3:http://127.0.0.1:9/bkt/pre");
        assert!(!format!("{s:?}").contains("TOPSECRET"));
    }
}
