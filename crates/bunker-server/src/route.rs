//! Mapping request paths onto repositories, file types and names.
//!
//! restic's REST protocol addresses `/{repo...}/config`, `/{repo...}/{type}/`
//! (listing) and `/{repo...}/{type}/{name}`; `POST /{repo...}/?create=true`
//! creates a repository. The repository path may be empty (the server root
//! is one repository) or several segments deep. Every segment is checked
//! here, before anything touches the disk: this is the only place request
//! text becomes a path, so path traversal is refused here or nowhere.

use bunker_storage::FileType;

/// The longest accepted object name (restic's are 64 hex characters).
pub const MAX_NAME_LEN: usize = 128;
/// The deepest accepted repository path.
pub const MAX_REPO_DEPTH: usize = 8;

/// What a request path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The repository itself (`/{repo}/`, for `POST ?create=true`).
    Repo,
    /// The repository's `config` file.
    Config,
    /// The listing of one file type (`/{repo}/{type}/`).
    List(FileType),
    /// One object (`/{repo}/{type}/{name}`).
    Object(FileType, String),
}

/// A parsed, validated request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Repository path segments below the served directory (may be empty).
    pub repo: Vec<String>,
    /// What inside the repository.
    pub target: Target,
}

impl Route {
    /// The repository path joined with `/` (empty for the root repository).
    pub fn repo_path(&self) -> String {
        self.repo.join("/")
    }
}

/// The URL type segment of a file type: one table, shared with the `rest:`
/// backend.
pub use bunker_storage::rest_type_segment as type_segment;

fn parse_type(seg: &str) -> Option<FileType> {
    FileType::ALL
        .into_iter()
        .find(|t| *t != FileType::Config && type_segment(*t) == seg)
}

/// Why a path was refused (the message goes back to the client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPath(pub String);

/// A safe path segment: ASCII letters, digits, `-`, `_`, `.`; not starting
/// with `.` (so neither `.`, `..` nor temp-file names); at most
/// [`MAX_NAME_LEN`] bytes.
pub fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Parses the path of a request (without the query). `create` is true for
/// `?create=true`, which names the repository itself.
pub fn parse(path: &str, create: bool) -> Result<Route, BadPath> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(BadPath("the path must start with /".into()));
    };
    if path.contains('%') {
        // Percent-encoding could hide `/` or `..`; no valid name needs it.
        return Err(BadPath("percent-encoded paths are not accepted".into()));
    }
    let mut segs: Vec<&str> = rest.split('/').collect();
    let trailing_slash = segs.last() == Some(&"");
    if trailing_slash {
        segs.pop();
    }
    if segs.iter().any(|s| !valid_segment(s)) {
        return Err(BadPath(format!(
            "invalid path {path:?}: segments must be letters, digits, '-', '_' or '.', not start with '.', at most {MAX_NAME_LEN} bytes"
        )));
    }
    let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let route = if create {
        Route {
            repo: owned(&segs),
            target: Target::Repo,
        }
    } else if !trailing_slash && segs.last() == Some(&"config") {
        Route {
            repo: owned(&segs[..segs.len() - 1]),
            target: Target::Config,
        }
    } else if trailing_slash && segs.last().and_then(|s| parse_type(s)).is_some() {
        let t = parse_type(segs[segs.len() - 1]).unwrap_or(FileType::Key);
        Route {
            repo: owned(&segs[..segs.len() - 1]),
            target: Target::List(t),
        }
    } else if !trailing_slash && segs.len() >= 2 && parse_type(segs[segs.len() - 2]).is_some() {
        let t = parse_type(segs[segs.len() - 2]).unwrap_or(FileType::Key);
        let name = segs[segs.len() - 1].to_string();
        if t.check_name(&name).is_err() {
            return Err(BadPath(format!("invalid {t} name {name:?}")));
        }
        Route {
            repo: owned(&segs[..segs.len() - 2]),
            target: Target::Object(t, name),
        }
    } else if trailing_slash || segs.is_empty() {
        Route {
            repo: owned(&segs),
            target: Target::Repo,
        }
    } else {
        return Err(BadPath(format!("{path:?} names no repository file")));
    };
    if route.repo.len() > MAX_REPO_DEPTH {
        return Err(BadPath(format!(
            "repository paths may be at most {MAX_REPO_DEPTH} segments deep"
        )));
    }
    if route
        .repo
        .iter()
        .any(|s| parse_type(s).is_some() || s == "config")
    {
        return Err(BadPath(format!(
            "{path:?}: a repository path may not contain a file type name"
        )));
    }
    Ok(route)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restic_paths_parse() {
        let r = parse("/config", false).unwrap();
        assert_eq!((r.repo.len(), r.target), (0, Target::Config));
        let r = parse("/alice/repo1/keys/", false).unwrap();
        assert_eq!(r.repo, vec!["alice", "repo1"]);
        assert_eq!(r.target, Target::List(FileType::Key));
        let r = parse("/alice/data/00ffab", false).unwrap();
        assert_eq!(r.repo_path(), "alice");
        assert_eq!(r.target, Target::Object(FileType::Pack, "00ffab".into()));
        let r = parse("/alice/?create=true", true);
        assert!(r.is_err(), "the query is not part of the path");
        let r = parse("/alice/", true).unwrap();
        assert_eq!(r.target, Target::Repo);
        let r = parse("/bunker-wal/000000010000000000000001", false).unwrap();
        assert_eq!(
            r.target,
            Target::Object(FileType::Wal, "000000010000000000000001".into())
        );
    }

    #[test]
    fn traversal_and_odd_names_are_refused() {
        for bad in [
            "/../etc/passwd",
            "/repo/../../x/config",
            "/repo/data/..",
            "/repo/data/.hidden",
            "/repo/keys/a%2F..%2Fb",
            "/repo/%2e%2e/config",
            "/repo//config",
            "/repo/keys/a\\b",
            "/repo/keys/a b",
            "relative/config",
            "/repo/data/x",
            "/repo/nothing",
            "/data/keys/abc",
        ] {
            assert!(parse(bad, false).is_err(), "{bad} should be refused");
        }
        let long = format!("/keys/{}", "a".repeat(MAX_NAME_LEN + 1));
        assert!(parse(&long, false).is_err());
        let deep = "/a".repeat(MAX_REPO_DEPTH + 1) + "/config";
        assert!(parse(&deep, false).is_err());
    }
}
