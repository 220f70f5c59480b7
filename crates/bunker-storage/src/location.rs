//! Parsing of repository locations, written the way restic writes them.

use std::path::PathBuf;

use crate::error::StorageError;
use crate::sftp::SftpLocation;

/// The supported location forms, for error messages.
pub const SUPPORTED_FORMS: &str = "PATH, local:PATH, s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX], \
s3:s3.amazonaws.com/BUCKET[/PREFIX], s3:HOST/BUCKET[/PREFIX], sftp:[USER@]HOST:/PATH, \
sftp://[USER@]HOST:PORT//PATH, rest:http(s)://[USER:PASS@]HOST[:PORT]/[PATH/], opendal:SCHEME (with -o root=..., bucket=..., ...)";

/// Restic backends bunker does not speak natively (use `opendal:` where possible).
const UNSUPPORTED_SCHEMES: &[&str] = &["b2", "azure", "gs", "swift", "rclone"];

/// A parsed repository location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A local directory.
    Local(PathBuf),
    /// An S3-compatible bucket.
    S3(S3Location),
    /// A directory on an SFTP server (through OpenDAL's sftp service).
    Sftp(SftpLocation),
    /// A restic REST server (`bunker serve`, restic's rest-server).
    Rest(crate::rest::RestLocation),
    /// Any OpenDAL service, configured through options.
    Opendal {
        /// The OpenDAL scheme name, e.g. `fs`, `memory`, `azblob`, `gcs`.
        scheme: String,
    },
}

/// Where an S3 repository lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// `http://host[:port]` or `https://host[:port]`, without a trailing slash.
    pub endpoint: String,
    /// The bucket name.
    pub bucket: String,
    /// Key prefix inside the bucket, without leading or trailing slashes (may be empty).
    pub prefix: String,
    /// True for Amazon's own endpoints (`*.amazonaws.com`): region detection and
    /// virtual-host addressing apply; other endpoints use path-style addressing.
    pub aws: bool,
}

impl S3Location {
    /// `s3:ENDPOINT/BUCKET[/PREFIX]`, as shown to users.
    pub fn display(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3:{}/{}", self.endpoint, self.bucket)
        } else {
            format!("s3:{}/{}/{}", self.endpoint, self.bucket, self.prefix)
        }
    }
}

pub(crate) fn invalid(location: &str, why: &str) -> StorageError {
    StorageError::invalid(
        "location",
        format!("cannot use repository location {location:?}: {why}; supported forms: {SUPPORTED_FORMS}"),
    )
}

/// Parses a location string: a plain path, `local:PATH`, `s3:...` or `opendal:SCHEME`.
///
/// A leading `word:` that is not a known scheme is an error rather than a path
/// (write `./word:x` or `local:word:x` for such directories).
pub fn parse_location(location: &str) -> Result<Location, StorageError> {
    let s = location.trim();
    if s.is_empty() {
        return Err(invalid(location, "empty location"));
    }
    let Some((scheme, rest)) = split_scheme(s) else {
        return Ok(Location::Local(PathBuf::from(s)));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "local" => {
            if rest.is_empty() {
                Err(invalid(location, "missing path after local:"))
            } else {
                Ok(Location::Local(PathBuf::from(rest)))
            }
        }
        "s3" => parse_s3(location, rest).map(Location::S3),
        "sftp" => crate::sftp::parse(location, rest).map(Location::Sftp),
        "rest" => crate::rest::parse(location, rest).map(Location::Rest),
        "opendal" => {
            let scheme = rest.trim_matches('/');
            if scheme.is_empty()
                || !scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                Err(invalid(
                    location,
                    "expected opendal:SCHEME, e.g. opendal:fs or opendal:azblob",
                ))
            } else {
                Ok(Location::Opendal {
                    scheme: scheme.to_ascii_lowercase(),
                })
            }
        }
        other if UNSUPPORTED_SCHEMES.contains(&other) => Err(invalid(
            location,
            &format!(
                "the restic backend `{other}:` is not supported by bunker (try opendal:SCHEME)"
            ),
        )),
        other => Err(invalid(location, &format!("unknown scheme `{other}:`"))),
    }
}

/// Splits `word:rest` when `word` looks like a scheme (two or more alphanumerics,
/// so `C:` style drive letters and paths starting with `/` or `.` stay paths).
fn split_scheme(s: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = s.split_once(':')?;
    let looks_like_scheme = scheme.len() >= 2
        && scheme.chars().all(|c| c.is_ascii_alphanumeric())
        && scheme
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic());
    looks_like_scheme.then_some((scheme, rest))
}

fn parse_s3(location: &str, rest: &str) -> Result<S3Location, StorageError> {
    let (proto, after) = if let Some(r) = rest.strip_prefix("https://") {
        ("https", r)
    } else if let Some(r) = rest.strip_prefix("http://") {
        ("http", r)
    } else if rest.contains("://") {
        return Err(invalid(
            location,
            "s3 endpoints must use http:// or https://",
        ));
    } else {
        ("https", rest)
    };
    let (host, path) = after.split_once('/').unwrap_or((after, ""));
    if host.is_empty() {
        return Err(invalid(location, "missing S3 host"));
    }
    if host.contains(['@', '?', '#', ' ']) {
        return Err(invalid(
            location,
            "the S3 host must not contain credentials, queries or spaces",
        ));
    }
    if let Some((_, port)) = host.rsplit_once(':') {
        if port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) {
            return Err(invalid(location, "the S3 port must be a number"));
        }
    }
    let path = path.trim_matches('/');
    let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
    if bucket.is_empty() {
        return Err(invalid(
            location,
            "missing bucket name (s3:HOST/BUCKET[/PREFIX])",
        ));
    }
    if !valid_bucket(bucket) {
        return Err(invalid(
            location,
            &format!("{bucket:?} is not a valid bucket name"),
        ));
    }
    let prefix = prefix.trim_matches('/').to_string();
    if prefix.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(invalid(
            location,
            "the prefix must not contain . or .. segments",
        ));
    }
    let hostname = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
    Ok(S3Location {
        endpoint: format!("{proto}://{host}"),
        bucket: bucket.to_string(),
        prefix,
        aws: hostname == "s3.amazonaws.com" || hostname.ends_with(".amazonaws.com"),
    })
}

fn valid_bucket(b: &str) -> bool {
    (1..=255).contains(&b.len())
        && b.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(endpoint: &str, bucket: &str, prefix: &str, aws: bool) -> Location {
        Location::S3(S3Location {
            endpoint: endpoint.into(),
            bucket: bucket.into(),
            prefix: prefix.into(),
            aws,
        })
    }

    #[test]
    fn table_of_good_locations() {
        let cases = vec![
            ("/srv/repo", Location::Local("/srv/repo".into())),
            ("relative/repo", Location::Local("relative/repo".into())),
            ("./a:b", Location::Local("./a:b".into())),
            ("local:/srv/repo", Location::Local("/srv/repo".into())),
            ("local:x:y", Location::Local("x:y".into())),
            (
                "s3:http://localhost:3900/bunker/repo1",
                s3("http://localhost:3900", "bunker", "repo1", false),
            ),
            (
                "s3:https://minio.example.com/bkt",
                s3("https://minio.example.com", "bkt", "", false),
            ),
            (
                "s3:https://minio.example.com/bkt/",
                s3("https://minio.example.com", "bkt", "", false),
            ),
            (
                "s3:s3.amazonaws.com/my-bucket/some/prefix",
                s3("https://s3.amazonaws.com", "my-bucket", "some/prefix", true),
            ),
            (
                "s3:s3.eu-west-1.amazonaws.com/b/p",
                s3("https://s3.eu-west-1.amazonaws.com", "b", "p", true),
            ),
            (
                "s3:garage.lan:3900/bucket/a/b/",
                s3("https://garage.lan:3900", "bucket", "a/b", false),
            ),
            ("s3:host/bucket", s3("https://host", "bucket", "", false)),
            (
                "sftp:bk@nas:/srv/repo",
                Location::Sftp(SftpLocation {
                    user: Some("bk".into()),
                    host: "nas".into(),
                    port: None,
                    path: "/srv/repo".into(),
                }),
            ),
            (
                "opendal:memory",
                Location::Opendal {
                    scheme: "memory".into(),
                },
            ),
            (
                "opendal:AzBlob",
                Location::Opendal {
                    scheme: "azblob".into(),
                },
            ),
        ];
        for (input, want) in cases {
            let got = parse_location(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(got, want, "{input}");
        }
    }

    #[test]
    fn bad_locations_are_errors_listing_forms() {
        for input in [
            "",
            "   ",
            "local:",
            "s3:",
            "s3:http://",
            "s3:http://host",
            "s3:http://host/",
            "s3:ftp://host/b",
            "s3:host:abc/bucket",
            "s3:user:pw@host/bucket",
            "s3:host/bad*bucket",
            "s3:host/b/../x",
            "opendal:",
            "opendal:a b",
            "sftp:user@host:relative",
            "rest:ftp://host:8000/",
            "rest:host:8000/",
            "gopher:whatever",
        ] {
            let e = parse_location(input).expect_err(input);
            assert_eq!(e.kind, crate::ErrorKind::Invalid, "{input}");
            assert!(e.message.contains("supported forms"), "{input}: {e}");
        }
        let e = parse_location("b2:bucket/x").unwrap_err();
        assert!(e.message.contains("not supported"));
    }

    #[test]
    fn s3_display_roundtrips() {
        for input in ["s3:http://localhost:3900/bunker/repo1", "s3:https://h/b"] {
            match parse_location(input) {
                Ok(Location::S3(l)) => assert_eq!(l.display(), input),
                other => panic!("{input}: {other:?}"),
            }
        }
    }
}
