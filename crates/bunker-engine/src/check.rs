//! What `config check` finds beyond the policy's own validation, with the
//! same code that later uses the policy: each repository's backend options
//! are parsed by the backend's option parser (the one `run` opens the
//! repository with), and the paths of files items are looked for.

use bunker_policy::{Policy, Source};

use crate::pool::options_for;

/// Problems of a valid-looking policy that would show only at run time.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PolicyProblems {
    /// Errors: `run` would fail (e.g. an option the backend rejects).
    pub errors: Vec<String>,
    /// Warnings: `run` works, but probably not as meant (a path that does
    /// not exist is backed up as an error of one file).
    pub warnings: Vec<String>,
}

/// Check `policy`'s repositories' locations and options against their
/// backends, and its files items' paths. Nothing is contacted.
pub fn check_policy(policy: &Policy) -> PolicyProblems {
    let mut out = PolicyProblems::default();
    let mut repos: Vec<_> = policy.repositories.values().collect();
    repos.sort_by(|a, b| a.name.cmp(&b.name));
    for cfg in repos {
        let options: Vec<(String, String)> = cfg
            .options
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let parsed = bunker_storage::parse_location(&cfg.location).and_then(|loc| {
            bunker_storage::Options::parse(&options_for(&cfg.location, &options), &loc)
        });
        if let Err(e) = parsed {
            out.errors
                .push(format!("repository {:?}: {}", cfg.name, e.message));
        }
    }
    for item in &policy.items {
        let Source::Files(files) = &item.source else {
            continue;
        };
        for p in &files.paths {
            if std::fs::symlink_metadata(p).is_err() {
                out.warnings.push(format!(
                    "item {:?}: path {} does not exist (on this host)",
                    item.name,
                    p.display()
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 25 item 8: `region:` (for `s3.region`) passed `config check`
    /// and failed at run time.
    #[test]
    fn an_option_the_backend_rejects_is_an_error_at_check_time() {
        let dir = tempfile::tempdir().expect("tmp");
        let text = format!(
            "repositories:\n  off:\n    location: s3:https://s3.example.com/b/p\n    \
             password_env: PW\n    options:\n      region: eu-central-1\n  ok:\n    \
             location: {}/r\n    password_env: PW\n    options:\n      s3.region: x\n\
             items:\n  - name: a\n    paths: [{}/missing]\n    targets: [off, ok]\n",
            dir.path().display(),
            dir.path().display()
        );
        let p = dir.path().join("p.yaml");
        std::fs::write(&p, text).expect("write");
        let policy = Policy::load(&p).expect("valid policy");
        let probs = check_policy(&policy);
        assert_eq!(probs.errors.len(), 1, "{probs:?}");
        assert!(
            probs.errors[0].contains("\"off\"") && probs.errors[0].contains("region"),
            "{probs:?}"
        );
        assert_eq!(probs.warnings.len(), 1, "{probs:?}");
        assert!(probs.warnings[0].contains("missing"), "{probs:?}");
    }
}
