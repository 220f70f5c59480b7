//! Fallback repositories: when the primary repository is unreachable, a backup
//! goes to the first reachable fallback instead, and says so loudly.
//!
//! "Unreachable" means opening the primary failed with a retryable storage error
//! (connection refused, timeouts, 5xx) within [`PROBE_BUDGET`]; wrong passwords,
//! missing repositories, bad credentials or options are never a reason to fall
//! back. Fallbacks are opened with the same password and options (S3-only options
//! are left out for non-S3 fallbacks) and must already be initialised. Once the
//! primary is back, `bunker copy --from-repo FALLBACK` heals it.
//!
//! `bunker backup --fallback-repo LOC` uses [`open_for_backup`]; `bunker run` calls
//! [`open_first_reachable`] with the policy's repository and `fallbacks`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bunker_repo::{RepoError, RepoOptions, Repository};
use bunker_storage::{FileType, StorageError};

use crate::cli::GlobalOpts;

/// How long opening the primary may keep retrying before it counts as unreachable.
pub const PROBE_BUDGET: Duration = Duration::from_secs(20);

/// A repository opened for writing, possibly a fallback.
pub struct Opened {
    pub repo: Arc<Repository>,
    /// The location that was opened.
    pub location: String,
    /// Set when the primary was unreachable and this fallback was used instead.
    pub fallback_used: Option<String>,
    /// Why the primary (and any fallback tried before this one) was skipped.
    pub skipped: Vec<(String, String)>,
}

/// Options for `location`: S3-only (`s3.*`) and SFTP-only (`sftp.*`) keys are
/// dropped for other locations, so one option list can serve an S3 or SFTP
/// primary and a local fallback.
pub fn options_for(location: &str, options: &[(String, String)]) -> Vec<(String, String)> {
    let loc = bunker_storage::parse_location(location);
    let is_s3 = matches!(loc, Ok(bunker_storage::Location::S3(_)));
    let is_sftp = matches!(loc, Ok(bunker_storage::Location::Sftp(_)));
    options
        .iter()
        .filter(|(k, _)| is_s3 || !k.starts_with("s3."))
        .filter(|(k, _)| is_sftp || !k.starts_with("sftp."))
        .cloned()
        .collect()
}

/// Whether an error from opening a repository means "unreachable, try elsewhere".
pub fn is_unreachable(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<StorageError>()
            .is_some_and(StorageError::is_retryable)
            || cause
                .downcast_ref::<RepoError>()
                .is_some_and(|r| matches!(r, RepoError::Storage(e) if e.is_retryable()))
    })
}

/// Checks quickly (bounded retries) that `location` answers, then opens it with
/// the normal retry budget.
fn open_one(
    location: &str,
    options: &[(String, String)],
    repo_options: &RepoOptions,
    password: &[u8],
    probe: bool,
) -> Result<Arc<Repository>> {
    let options = options_for(location, options);
    if probe {
        let mut probe_opts = options.clone();
        if !probe_opts.iter().any(|(k, _)| k == "retry.max_elapsed") {
            probe_opts.push((
                "retry.max_elapsed".into(),
                PROBE_BUDGET.as_secs().to_string(),
            ));
        }
        let storage = bunker_storage::open(location, &probe_opts)
            .with_context(|| format!("opening repository {location}"))?;
        storage
            .stat(FileType::Config, "")
            .with_context(|| format!("reaching repository {location}"))?;
    }
    let storage = bunker_storage::open(location, &options)
        .with_context(|| format!("opening repository {location}"))?;
    let repo = Repository::open(storage, password, repo_options.clone())
        .with_context(|| format!("opening repository {location}"))?;
    Ok(repo)
}

/// Opens `primary`, or the first reachable of `fallbacks` when the primary is
/// unreachable. `warn` receives one loud message per skipped repository. Errors
/// other than unreachability are returned at once; if every repository is
/// unreachable, the primary's error is returned.
pub fn open_first_reachable(
    primary: &str,
    fallbacks: &[String],
    options: &[(String, String)],
    repo_options: &RepoOptions,
    password: &[u8],
    warn: &dyn Fn(&str),
) -> Result<Opened> {
    let probe = !fallbacks.is_empty();
    let first_err = match open_one(primary, options, repo_options, password, probe) {
        Ok(repo) => {
            return Ok(Opened {
                repo,
                location: primary.to_string(),
                fallback_used: None,
                skipped: Vec::new(),
            })
        }
        Err(e) if probe && is_unreachable(&e) => e,
        Err(e) => return Err(e),
    };
    let mut skipped = vec![(primary.to_string(), crate::exit::one_line(&first_err))];
    warn(&format!(
        "primary repository {primary} is unreachable: {}",
        skipped[0].1
    ));
    for (i, fb) in fallbacks.iter().enumerate() {
        let last = i + 1 == fallbacks.len();
        match open_one(fb, options, repo_options, password, !last) {
            Ok(repo) => {
                warn(&format!(
                    "USING FALLBACK REPOSITORY {fb} instead of {primary}; run \
                     `bunker copy --from-repo {fb}` against {primary} once it is reachable again"
                ));
                return Ok(Opened {
                    repo,
                    location: fb.clone(),
                    fallback_used: Some(fb.clone()),
                    skipped,
                });
            }
            Err(e) => {
                let msg = crate::exit::one_line(&e);
                warn(&format!("fallback repository {fb} cannot be used: {msg}"));
                skipped.push((fb.clone(), msg));
            }
        }
    }
    Err(first_err.context(format!(
        "the primary repository and all {} fallback repositories failed",
        fallbacks.len()
    )))
}

/// [`open_first_reachable`] for the global `-r` repository, password and options;
/// warnings go to standard error.
pub fn open_for_backup(g: &GlobalOpts, fallbacks: &[String]) -> Result<Opened> {
    let primary = crate::repo::location(g)?;
    let repo_options = crate::repo::repo_options(g)?;
    let password = crate::password::for_open(g)?;
    let opened = open_first_reachable(
        primary,
        fallbacks,
        &g.options,
        &repo_options,
        &password,
        &|msg| eprintln!("bunker: WARNING: {msg}"),
    )?;
    crate::interrupt::register(&opened.repo);
    Ok(opened)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bunker_format::keyfile::KdfParams;

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn init(path: &std::path::Path) {
        let storage = bunker_storage::open(&path.to_string_lossy(), &[]).expect("storage");
        let kdf = KdfParams {
            n: 1024,
            r: 8,
            p: 1,
        };
        Repository::init(storage, b"pw", RepoOptions::default(), kdf).expect("init");
    }

    /// A loopback port nothing listens on.
    fn closed_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    }

    #[test]
    fn s3_options_are_dropped_for_local_fallbacks() {
        let o = kv(&[("s3.region", "garage"), ("connections", "2")]);
        assert_eq!(options_for("/srv/x", &o), kv(&[("connections", "2")]));
        assert_eq!(options_for("s3:http://h:1/b/p", &o), o);
        let o = kv(&[("sftp.key", "/k"), ("timeout", "5")]);
        assert_eq!(options_for("sftp:nas:/srv/r", &o), o);
        assert_eq!(options_for("/srv/x", &o), kv(&[("timeout", "5")]));
    }

    #[test]
    fn unreachable_primary_falls_back_loudly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fb = dir.path().join("fallback");
        init(&fb);
        let primary = format!("s3:http://127.0.0.1:{}/bucket/p", closed_port());
        let options = kv(&[
            ("s3.access_key_id", "k"),
            ("s3.secret_access_key", "s"),
            ("retry.max_elapsed", "0.5"),
        ]);
        let warnings = std::sync::Mutex::new(Vec::new());
        let fallbacks = vec![
            dir.path().join("missing").display().to_string(),
            fb.display().to_string(),
        ];
        let opened = open_first_reachable(
            &primary,
            &fallbacks,
            &options,
            &RepoOptions::default(),
            b"pw",
            &|m| warnings.lock().expect("lock").push(m.to_string()),
        )
        .expect("fallback opens");
        assert_eq!(opened.fallback_used.as_deref(), Some(fallbacks[1].as_str()));
        assert_eq!(opened.skipped.len(), 2);
        let w = warnings.lock().expect("lock").join("\n");
        assert!(w.contains(&primary) && w.contains("unreachable"), "{w}");
        assert!(w.contains("USING FALLBACK REPOSITORY"), "{w}");
    }

    #[test]
    fn other_errors_do_not_fall_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let primary = dir.path().join("primary");
        let fb = dir.path().join("fallback");
        init(&primary);
        init(&fb);
        let fallbacks = vec![fb.display().to_string()];
        let quiet = |_: &str| {};
        // Wrong password on the primary: an error, not a fallback.
        let e = open_first_reachable(
            &primary.display().to_string(),
            &fallbacks,
            &[],
            &RepoOptions::default(),
            b"wrong",
            &quiet,
        )
        .err()
        .expect("wrong password");
        assert!(!is_unreachable(&e));
        assert_eq!(crate::exit::code_for(&e), crate::exit::WRONG_PASSWORD);
        // A reachable primary is used as is.
        let ok = open_first_reachable(
            &primary.display().to_string(),
            &fallbacks,
            &[],
            &RepoOptions::default(),
            b"pw",
            &quiet,
        )
        .expect("primary");
        assert!(ok.fallback_used.is_none());
        // Everything unreachable: the primary's error.
        let down = format!("s3:http://127.0.0.1:{}/b/p", closed_port());
        let opts = kv(&[
            ("s3.access_key_id", "k"),
            ("s3.secret_access_key", "s"),
            ("retry.max_elapsed", "0.3"),
        ]);
        let e = open_first_reachable(
            &down,
            std::slice::from_ref(&down),
            &opts,
            &RepoOptions::default(),
            b"pw",
            &quiet,
        )
        .err()
        .expect("all down");
        assert!(is_unreachable(&e));
        assert!(crate::exit::one_line(&e).contains("127.0.0.1"), "{e:#}");
    }
}
