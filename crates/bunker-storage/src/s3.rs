//! Translation of an S3 location and options into OpenDAL S3 service configuration.

use crate::location::S3Location;
use crate::options::{BucketLookup, S3Options};

/// Region used when neither options, environment nor detection provide one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Whether to address the bucket as `bucket.host` (virtual host) instead of `host/bucket`.
pub(crate) fn virtual_host(loc: &S3Location, o: &S3Options) -> bool {
    match o.bucket_lookup {
        BucketLookup::Dns => true,
        BucketLookup::Path => false,
        // Custom endpoints (Garage, MinIO, Ceph...) expect path style; Amazon prefers
        // virtual hosts, which cannot carry bucket names containing dots over TLS.
        BucketLookup::Auto => loc.aws && !loc.bucket.contains('.'),
    }
}

/// OpenDAL `s3` service configuration for `loc`.
///
/// `storage_class` is the class for this operator (packs may use a different one);
/// credentials come from `o` (already merged with the environment). Without explicit
/// credentials OpenDAL's own loaders (profile files, instance metadata) still apply.
pub(crate) fn service_config(
    loc: &S3Location,
    o: &S3Options,
    region: &str,
    storage_class: Option<&str>,
) -> Vec<(String, String)> {
    let mut cfg: Vec<(String, String)> = vec![
        ("bucket".into(), loc.bucket.clone()),
        ("root".into(), format!("/{}", loc.prefix)),
        ("endpoint".into(), loc.endpoint.clone()),
        ("region".into(), region.to_string()),
    ];
    let mut put = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            cfg.push((k.to_string(), v.clone()));
        }
    };
    put("access_key_id", &o.access_key_id);
    put("secret_access_key", &o.secret_access_key);
    put("session_token", &o.session_token);
    put("default_storage_class", &storage_class.map(str::to_string));
    if virtual_host(loc, o) {
        cfg.push(("enable_virtual_host_style".into(), "true".into()));
    }
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::location::{parse_location, Location};

    fn s3loc(s: &str) -> S3Location {
        match parse_location(s) {
            Ok(Location::S3(l)) => l,
            other => panic!("{s}: {other:?}"),
        }
    }

    fn get<'a>(cfg: &'a [(String, String)], k: &str) -> Option<&'a str> {
        cfg.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn garage_style_endpoint_is_path_style() {
        let loc = s3loc("s3:http://127.0.0.1:3900/bunker/team/repo");
        let o = S3Options {
            access_key_id: Some("GK123".into()),
            secret_access_key: Some("sek".into()),
            ..S3Options::default()
        };
        let cfg = service_config(&loc, &o, "garage", None);
        assert_eq!(get(&cfg, "bucket"), Some("bunker"));
        assert_eq!(get(&cfg, "root"), Some("/team/repo"));
        assert_eq!(get(&cfg, "endpoint"), Some("http://127.0.0.1:3900"));
        assert_eq!(get(&cfg, "region"), Some("garage"));
        assert_eq!(get(&cfg, "access_key_id"), Some("GK123"));
        assert_eq!(get(&cfg, "enable_virtual_host_style"), None);
        assert_eq!(get(&cfg, "default_storage_class"), None);
    }

    #[test]
    fn aws_uses_virtual_host_unless_told_or_dotted() {
        let mut o = S3Options::default();
        let loc = s3loc("s3:s3.amazonaws.com/bkt/p");
        assert!(virtual_host(&loc, &o));
        let cfg = service_config(&loc, &o, "eu-west-1", Some("STANDARD_IA"));
        assert_eq!(get(&cfg, "enable_virtual_host_style"), Some("true"));
        assert_eq!(get(&cfg, "default_storage_class"), Some("STANDARD_IA"));
        assert!(!virtual_host(&s3loc("s3:s3.amazonaws.com/my.bucket"), &o));
        o.bucket_lookup = BucketLookup::Path;
        assert!(!virtual_host(&loc, &o));
        o.bucket_lookup = BucketLookup::Dns;
        assert!(virtual_host(&s3loc("s3:https://minio.lan/b"), &o));
    }
}
