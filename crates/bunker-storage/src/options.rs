//! Backend options (`-o key=value`) and their validation.

use std::fmt;
use std::time::Duration;

use crate::error::StorageError;
use crate::location::Location;
use crate::sftp::{KnownHosts, SftpOptions, SFTP_KEYS};
use crate::storage_class::{self, ClassTarget};

/// Options every backend accepts.
pub const COMMON_KEYS: &[&str] = &[
    "connections",
    "timeout",
    "retry.max_elapsed",
    "index.flush_interval",
];

/// Options the S3 backend accepts in addition to [`COMMON_KEYS`].
pub const S3_KEYS: &[&str] = &[
    "s3.access_key_id",
    "s3.secret_access_key",
    "s3.session_token",
    "s3.region",
    "s3.storage_class",
    "s3.storage_class.data",
    "s3.storage_class.metadata",
    "s3.storage-class",
    "s3.storage-class.data",
    "s3.storage-class.metadata",
    "s3.bucket-lookup",
    "s3.conditional-write",
];

/// How S3 buckets are addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BucketLookup {
    /// Virtual-host style for Amazon, path style for every other endpoint.
    #[default]
    Auto,
    /// `https://endpoint/bucket/key`.
    Path,
    /// `https://bucket.endpoint/key`.
    Dns,
}

/// S3 settings, from options with the AWS environment as fallback.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Options {
    /// Access key id (`s3.access_key_id` or `AWS_ACCESS_KEY_ID`).
    pub access_key_id: Option<String>,
    /// Secret key (`s3.secret_access_key` or `AWS_SECRET_ACCESS_KEY`).
    pub secret_access_key: Option<String>,
    /// Session token (`s3.session_token` or `AWS_SESSION_TOKEN`).
    pub session_token: Option<String>,
    /// Region (`s3.region`, `AWS_DEFAULT_REGION`, `AWS_REGION`; else detected on AWS, else `us-east-1`).
    pub region: Option<String>,
    /// Storage class for every file (`s3.storage_class`, alias `s3.storage-class`).
    pub storage_class: Option<String>,
    /// Storage class for pack files (`s3.storage_class.data`), overriding `storage_class`.
    pub storage_class_data: Option<String>,
    /// Storage class for every other file: config, keys, index, snapshots, locks
    /// (`s3.storage_class.metadata`), overriding `storage_class`.
    pub storage_class_metadata: Option<String>,
    /// Bucket addressing (`s3.bucket-lookup=auto|path|dns`).
    pub bucket_lookup: BucketLookup,
    /// Use `If-None-Match: *` for `write_new` (`s3.conditional-write=false` to disable).
    pub conditional_write: bool,
}

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("S3Options")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &redact(&self.secret_access_key))
            .field("session_token", &redact(&self.session_token))
            .field("region", &self.region)
            .field("storage_class", &self.storage_class)
            .field("storage_class_data", &self.storage_class_data)
            .field("storage_class_metadata", &self.storage_class_metadata)
            .field("bucket_lookup", &self.bucket_lookup)
            .field("conditional_write", &self.conditional_write)
            .finish()
    }
}

impl S3Options {
    /// The class pack files are written with (`None`: the bucket's default).
    pub fn data_class(&self) -> Option<&str> {
        self.storage_class_data
            .as_deref()
            .or(self.storage_class.as_deref())
    }

    /// The class every other file is written with (`None`: the bucket's default).
    pub fn metadata_class(&self) -> Option<&str> {
        self.storage_class_metadata
            .as_deref()
            .or(self.storage_class.as_deref())
    }

    /// Fills unset credentials and region from the environment (via `env` lookup).
    pub fn with_env(mut self, env: impl Fn(&str) -> Option<String>) -> Self {
        let get = |k: &str| env(k).filter(|v| !v.is_empty());
        if self.access_key_id.is_none() {
            self.access_key_id = get("AWS_ACCESS_KEY_ID");
        }
        if self.secret_access_key.is_none() {
            self.secret_access_key = get("AWS_SECRET_ACCESS_KEY");
        }
        if self.session_token.is_none() {
            self.session_token = get("AWS_SESSION_TOKEN");
        }
        if self.region.is_none() {
            self.region = get("AWS_DEFAULT_REGION").or_else(|| get("AWS_REGION"));
        }
        self
    }
}

/// Parsed options for [`crate::open`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Maximum parallel requests (`connections=N`).
    pub connections: Option<usize>,
    /// Per-request timeout (`timeout=DURATION`, seconds or `90s`, `2m`).
    pub timeout: Option<Duration>,
    /// Total time budget of the retry layer (`retry.max_elapsed=SECS`).
    pub retry_max_elapsed: Option<Duration>,
    /// How often long operations write index files for uploaded packs
    /// (`index.flush_interval=DURATION`). Validated here, used by the repository layer.
    pub index_flush_interval: Option<Duration>,
    /// S3 settings (S3 locations only).
    pub s3: S3Options,
    /// SFTP settings (`sftp:` locations only).
    pub sftp: SftpOptions,
    /// Service configuration handed to OpenDAL unchanged (`opendal:` locations only).
    pub service: Vec<(String, String)>,
    /// Extra CA certificate (PEM) trusted by the `rest:` backend (`rest.cacert=FILE`).
    pub rest_cacert: Option<std::path::PathBuf>,
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let service: Vec<&str> = self.service.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Options")
            .field("connections", &self.connections)
            .field("timeout", &self.timeout)
            .field("retry_max_elapsed", &self.retry_max_elapsed)
            .field("index_flush_interval", &self.index_flush_interval)
            .field("s3", &self.s3)
            .field("sftp", &self.sftp)
            .field("service_keys", &service)
            .finish()
    }
}

fn bad(key: &str, why: impl fmt::Display) -> StorageError {
    StorageError::invalid("options", format!("option {key}: {why}"))
}

/// A duration option: a plain number of seconds (`30`, `1.5`, `30s`) as
/// before, or a human duration as everywhere else in bunker (`90s`, `5m`,
/// `1h30m`).
pub fn parse_duration_option(key: &str, v: &str) -> Result<Duration, StorageError> {
    let t = v.trim();
    let d = match t.trim_end_matches('s').parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 && secs < 1e9 => Duration::from_secs_f64(secs),
        Ok(_) => return Err(bad(key, "must be a positive duration")),
        Err(_) => humantime::parse_duration(t).map_err(|_| {
            bad(
                key,
                format!("{v:?} is not a duration (seconds, or like \"90s\", \"5m\", \"1h\")"),
            )
        })?,
    };
    if d.is_zero() || d.as_secs() >= 1_000_000_000 {
        return Err(bad(key, "must be a positive duration"));
    }
    Ok(d)
}

fn parse_bool(key: &str, v: &str) -> Result<bool, StorageError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "on" | "yes" | "1" => Ok(true),
        "false" | "off" | "no" | "0" => Ok(false),
        _ => Err(bad(key, format!("{v:?} is not true/false"))),
    }
}

impl Options {
    /// Validates `pairs` for `location`. Unknown keys are errors, except for
    /// `opendal:` locations, whose extra keys configure the OpenDAL service.
    /// S3 credentials are not read from the environment here; see [`S3Options::with_env`].
    pub fn parse(pairs: &[(String, String)], location: &Location) -> Result<Self, StorageError> {
        let mut o = Options {
            s3: S3Options {
                conditional_write: true,
                ..S3Options::default()
            },
            ..Options::default()
        };
        let is_s3 = matches!(location, Location::S3(_));
        let is_sftp = matches!(location, Location::Sftp(_));
        for (key, value) in pairs {
            let k = key.trim();
            let v = value.trim().to_string();
            match k {
                "connections" => {
                    let n: usize = v
                        .parse()
                        .map_err(|_| bad(k, format!("{v:?} is not a count")))?;
                    if n == 0 {
                        return Err(bad(k, "must be at least 1"));
                    }
                    o.connections = Some(n);
                }
                "timeout" => o.timeout = Some(parse_duration_option(k, &v)?),
                "retry.max_elapsed" => o.retry_max_elapsed = Some(parse_duration_option(k, &v)?),
                "index.flush_interval" => {
                    o.index_flush_interval = Some(parse_duration_option(k, &v)?)
                }
                _ if is_s3 && S3_KEYS.contains(&k) => {
                    let s = &mut o.s3;
                    match k {
                        "s3.access_key_id" => s.access_key_id = Some(v),
                        "s3.secret_access_key" => s.secret_access_key = Some(v),
                        "s3.session_token" => s.session_token = Some(v),
                        "s3.region" => s.region = Some(v),
                        "s3.storage_class" | "s3.storage-class" => {
                            s.storage_class =
                                Some(storage_class::validate(k, &v, ClassTarget::Metadata)?)
                        }
                        "s3.storage_class.data" | "s3.storage-class.data" => {
                            s.storage_class_data =
                                Some(storage_class::validate(k, &v, ClassTarget::Data)?)
                        }
                        "s3.storage_class.metadata" | "s3.storage-class.metadata" => {
                            s.storage_class_metadata =
                                Some(storage_class::validate(k, &v, ClassTarget::Metadata)?)
                        }
                        "s3.conditional-write" => s.conditional_write = parse_bool(k, &v)?,
                        _ => {
                            s.bucket_lookup = match v.to_ascii_lowercase().as_str() {
                                "auto" => BucketLookup::Auto,
                                "path" => BucketLookup::Path,
                                "dns" => BucketLookup::Dns,
                                _ => return Err(bad(k, "expected auto, path or dns")),
                            }
                        }
                    }
                }
                "rest.cacert" if matches!(location, Location::Rest(_)) => {
                    o.rest_cacert = Some(v.into())
                }
                "sftp.key" if is_sftp => o.sftp.key = Some(v),
                "sftp.known_hosts" if is_sftp => o.sftp.known_hosts = KnownHosts::parse(k, &v)?,
                _ if matches!(location, Location::Opendal { .. }) => {
                    let k = k.strip_prefix("opendal.").unwrap_or(k);
                    o.service.push((k.to_string(), v));
                }
                _ => {
                    let mut valid: Vec<&str> = COMMON_KEYS.to_vec();
                    if is_s3 {
                        valid.extend_from_slice(S3_KEYS);
                    }
                    if is_sftp {
                        valid.extend_from_slice(SFTP_KEYS);
                    }
                    if matches!(location, Location::Rest(_)) {
                        valid.push("rest.cacert");
                    }
                    return Err(bad(
                        k,
                        format!(
                            "unknown option for this backend; valid: {}",
                            valid.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::location::parse_location;

    fn pairs(kv: &[(&str, &str)]) -> Vec<(String, String)> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn s3_options_and_env_fallback() {
        let loc = parse_location("s3:http://localhost:3900/b/p").expect("loc");
        let o = Options::parse(
            &pairs(&[
                ("connections", "4"),
                ("timeout", "30"),
                ("retry.max_elapsed", "1.5"),
                ("index.flush_interval", "2m"),
                ("s3.storage-class.data", "STANDARD_IA"),
                ("s3.access_key_id", "from-option"),
                ("s3.bucket-lookup", "path"),
            ]),
            &loc,
        )
        .expect("parse");
        assert_eq!(o.connections, Some(4));
        assert_eq!(o.timeout, Some(Duration::from_secs(30)));
        assert_eq!(o.retry_max_elapsed, Some(Duration::from_millis(1500)));
        assert_eq!(o.index_flush_interval, Some(Duration::from_secs(120)));
        assert_eq!(o.s3.storage_class_data.as_deref(), Some("STANDARD_IA"));
        assert_eq!(o.s3.bucket_lookup, BucketLookup::Path);
        assert!(o.s3.conditional_write);
        let env = |k: &str| match k {
            "AWS_ACCESS_KEY_ID" => Some("from-env".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("s3cret".to_string()),
            "AWS_DEFAULT_REGION" => Some("garage".to_string()),
            _ => None,
        };
        let s3 = o.s3.with_env(env);
        assert_eq!(s3.access_key_id.as_deref(), Some("from-option"));
        assert_eq!(s3.secret_access_key.as_deref(), Some("s3cret"));
        assert_eq!(s3.region.as_deref(), Some("garage"));
        assert!(
            !format!("{s3:?}").contains("s3cret"),
            "Debug must redact secrets"
        );
    }

    #[test]
    fn bad_options_are_rejected() {
        let local = parse_location("/srv/x").expect("loc");
        let s3 = parse_location("s3:h/b").expect("loc");
        for (loc, k, v) in [
            (&local, "connections", "0"),
            (&local, "connections", "many"),
            (&local, "timeout", "-1"),
            (&local, "timeout", "soon"),
            (&local, "timeout", "0s"),
            (&local, "retry.max_elapsed", "5 parsecs"),
            (&local, "index.flush_interval", "often"),
            (&local, "s3.region", "x"),
            (&local, "bogus", "1"),
            (&s3, "s3.bucket-lookup", "sideways"),
            (&s3, "s3.conditional-write", "maybe"),
            (&s3, "s3.nope", "1"),
        ] {
            let e = Options::parse(&pairs(&[(k, v)]), loc).expect_err(k);
            assert_eq!(e.kind, crate::ErrorKind::Invalid);
            assert!(e.message.contains(k), "{e}");
        }
    }

    #[test]
    fn opendal_passes_service_keys_through() {
        let loc = parse_location("opendal:fs").expect("loc");
        let o = Options::parse(
            &pairs(&[("root", "/r"), ("opendal.bucket", "b"), ("timeout", "5")]),
            &loc,
        )
        .expect("parse");
        assert_eq!(o.service, pairs(&[("root", "/r"), ("bucket", "b")]));
        assert_eq!(o.timeout, Some(Duration::from_secs(5)));
    }

    #[test]
    fn storage_classes_per_file_type() {
        let loc = parse_location("s3:http://localhost:3900/b/p").expect("loc");
        let o = Options::parse(
            &pairs(&[
                ("s3.storage_class", "STANDARD"),
                ("s3.storage_class.data", "DEEP_ARCHIVE"),
            ]),
            &loc,
        )
        .expect("parse");
        assert_eq!(o.s3.data_class(), Some("DEEP_ARCHIVE"));
        assert_eq!(o.s3.metadata_class(), Some("STANDARD"));
        let o = Options::parse(
            &pairs(&[
                ("s3.storage-class.data", "STANDARD_IA"),
                ("s3.storage_class.metadata", "ONEZONE_IA"),
            ]),
            &loc,
        )
        .expect("parse aliases");
        assert_eq!(o.s3.data_class(), Some("STANDARD_IA"));
        assert_eq!(o.s3.metadata_class(), Some("ONEZONE_IA"));
        let none = Options::parse(&[], &loc).expect("parse");
        assert_eq!(
            (none.s3.data_class(), none.s3.metadata_class()),
            (None, None)
        );
        for (k, v) in [
            ("s3.storage_class.metadata", "GLACIER"),
            ("s3.storage_class", "DEEP_ARCHIVE"),
            ("s3.storage_class.data", "standard_ia"),
        ] {
            let e = Options::parse(&pairs(&[(k, v)]), &loc).expect_err(k);
            assert!(e.message.contains(k), "{e}");
        }
        let local = parse_location("/srv/x").expect("loc");
        assert!(
            Options::parse(&pairs(&[("s3.storage_class.data", "STANDARD_IA")]), &local).is_err()
        );
    }

    #[test]
    fn sftp_options() {
        let loc = parse_location("sftp:bk@nas:/srv/r").expect("loc");
        let o = Options::parse(
            &pairs(&[("sftp.key", "/keys/id"), ("sftp.known_hosts", "add")]),
            &loc,
        )
        .expect("parse");
        assert_eq!(o.sftp.key.as_deref(), Some("/keys/id"));
        assert_eq!(o.sftp.known_hosts, KnownHosts::Add);
        assert_eq!(
            Options::parse(&[], &loc).expect("default").sftp.known_hosts,
            KnownHosts::Strict
        );
        let e = Options::parse(&pairs(&[("sftp.known_hosts", "off")]), &loc).expect_err("bad");
        assert!(e.message.contains("sftp.known_hosts"), "{e}");
        let e = Options::parse(&pairs(&[("root", "/x")]), &loc).expect_err("unknown");
        assert!(e.message.contains("sftp.key"), "{e}");
        let s3 = parse_location("s3:h/b").expect("loc");
        assert!(Options::parse(&pairs(&[("sftp.key", "/k")]), &s3).is_err());
    }
}
