//! SFTP repositories: restic's `sftp:` location syntax, the `sftp.*` options, and
//! their translation into OpenDAL `sftp` service configuration (used only by
//! [`crate::OpendalStorage::sftp`]; `sftp:` locations open [`crate::SftpStorage`]).
//!
//! Both backends drive the system `ssh` binary (through the `openssh` crate, one
//! control master per connection), so host keys, ports, identities and jump hosts
//! follow the user's OpenSSH configuration (`~/.ssh/config`, `~/.ssh/known_hosts`).
//! Host keys are checked strictly unless the `sftp.known_hosts` option says
//! otherwise.

use crate::error::StorageError;

/// A parsed `sftp:` location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftpLocation {
    /// Login user; `None` lets ssh choose (config or current user).
    pub user: Option<String>,
    /// Host name, ssh config alias or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port; `None` lets ssh choose (config or 22).
    pub port: Option<u16>,
    /// Absolute directory of the repository on the server, without a trailing slash.
    pub path: String,
}

impl SftpLocation {
    /// `sftp:[USER@]HOST:PATH`, or `sftp://[USER@]HOST:PORT/PATH` with a port.
    pub fn display(&self) -> String {
        let user = self
            .user
            .as_deref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.port {
            Some(port) => format!("sftp://{user}{host}:{port}/{}", self.path),
            None => format!("sftp:{user}{host}:{}", self.path),
        }
    }

    /// The `ssh://[USER@]HOST[:PORT]` endpoint OpenDAL's sftp service expects.
    pub fn endpoint(&self) -> String {
        let user = self
            .user
            .as_deref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        match self.port {
            Some(port) => format!("ssh://{user}{}:{port}", self.host),
            None => format!("ssh://{user}{}", self.host),
        }
    }
}

/// How ssh treats unknown or changed host keys (`sftp.known_hosts=...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KnownHosts {
    /// Only hosts already in `known_hosts` are accepted (the default).
    #[default]
    Strict,
    /// Unknown hosts are added on first use; changed keys are refused.
    Add,
    /// Any host key is accepted: no protection against man-in-the-middle attacks.
    Accept,
}

impl KnownHosts {
    /// Parses `strict`, `add` or `accept`.
    pub fn parse(key: &str, v: &str) -> Result<Self, StorageError> {
        match v.trim().to_ascii_lowercase().as_str() {
            "strict" | "yes" => Ok(KnownHosts::Strict),
            "add" | "accept-new" => Ok(KnownHosts::Add),
            "accept" | "no" => Ok(KnownHosts::Accept),
            _ => Err(StorageError::invalid(
                "options",
                format!("option {key}: {v:?} is not one of strict, add, accept"),
            )),
        }
    }

    /// The value of OpenDAL's `known_hosts_strategy`.
    pub fn as_str(&self) -> &'static str {
        match self {
            KnownHosts::Strict => "strict",
            KnownHosts::Add => "add",
            KnownHosts::Accept => "accept",
        }
    }
}

/// SFTP settings (`sftp.*` options).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SftpOptions {
    /// Private key file to log in with (`sftp.key=PATH`); else ssh's defaults and agent.
    pub key: Option<String>,
    /// Host key policy (`sftp.known_hosts=strict|add|accept`).
    pub known_hosts: KnownHosts,
}

/// Options the `sftp:` backend accepts in addition to the common ones.
pub const SFTP_KEYS: &[&str] = &["sftp.key", "sftp.known_hosts"];

fn invalid(location: &str, why: &str) -> StorageError {
    crate::location::invalid(location, why)
}

/// Parses what follows `sftp:`: `[USER@]HOST:/ABS/PATH` (restic's short form) or
/// `//[USER@]HOST[:PORT]//ABS/PATH` (restic's URL form; `[::1]` for IPv6).
///
/// Paths relative to the login directory are rejected: the repository root is
/// resolved from `/`.
pub(crate) fn parse(location: &str, rest: &str) -> Result<SftpLocation, StorageError> {
    let (authority, path) = if let Some(url) = rest.strip_prefix("//") {
        let (authority, path) = url.split_once('/').unwrap_or((url, ""));
        // In the URL form the path after HOST[:PORT]/ is relative unless it starts with '/'.
        (authority, path)
    } else {
        let (authority, path) = split_short(rest)
            .ok_or_else(|| invalid(location, "expected sftp:[USER@]HOST:/PATH"))?;
        if authority.contains('[') {
            return Err(invalid(
                location,
                "use the URL form sftp://[USER@][ADDR]:PORT//PATH for IPv6 addresses",
            ));
        }
        (authority, path)
    };
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if user.is_some_and(|u| u.is_empty() || u.contains([':', '/', ' '])) {
        return Err(invalid(location, "invalid user name"));
    }
    let (host, port) = split_host_port(location, hostport, rest.starts_with("//"))?;
    if host.is_empty() || host.contains(['/', ' ', '@']) {
        return Err(invalid(location, "missing or invalid host"));
    }
    if !path.starts_with('/') {
        return Err(invalid(
            location,
            "the repository path must be absolute (sftp:HOST:/srv/repo, or sftp://HOST:PORT//srv/repo)",
        ));
    }
    let path = path.trim_end_matches('/');
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(invalid(
            location,
            "the path must not contain . or .. segments",
        ));
    }
    Ok(SftpLocation {
        user: user.map(str::to_string),
        host: host.to_string(),
        port,
        path: if path.is_empty() {
            "/".into()
        } else {
            path.into()
        },
    })
}

/// Splits `[USER@]HOST:PATH` at the first `:` after any `user@`.
fn split_short(rest: &str) -> Option<(&str, &str)> {
    let host_start = rest.find('@').map_or(0, |i| i + 1);
    let colon = rest.get(host_start..)?.find(':')? + host_start;
    Some((&rest[..colon], &rest[colon + 1..]))
}

fn split_host_port<'a>(
    location: &str,
    s: &'a str,
    url_form: bool,
) -> Result<(&'a str, Option<u16>), StorageError> {
    let bad_port = || invalid(location, "the port must be a number from 1 to 65535");
    let parse_port = |p: &str| match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(bad_port()),
        Ok(n) => Ok(n),
    };
    if let Some(v6) = s.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| invalid(location, "unclosed [ in host"))?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((host, Some(parse_port(p)?))),
            None if after.is_empty() => Ok((host, None)),
            None => Err(invalid(location, "unexpected text after ]")),
        };
    }
    match s.rsplit_once(':') {
        Some((host, p)) if url_form => Ok((host, Some(parse_port(p)?))),
        Some(_) => Err(invalid(location, "invalid host")),
        None => Ok((s, None)),
    }
}

/// OpenDAL `sftp` service configuration for `loc`.
pub(crate) fn service_config(loc: &SftpLocation, o: &SftpOptions) -> Vec<(String, String)> {
    let mut cfg = vec![
        ("endpoint".to_string(), loc.endpoint()),
        ("root".to_string(), loc.path.clone()),
        (
            "known_hosts_strategy".to_string(),
            o.known_hosts.as_str().to_string(),
        ),
    ];
    if let Some(key) = &o.key {
        cfg.push(("key".into(), key.clone()));
    }
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(user: Option<&str>, host: &str, port: Option<u16>, path: &str) -> SftpLocation {
        SftpLocation {
            user: user.map(str::to_string),
            host: host.into(),
            port,
            path: path.into(),
        }
    }

    #[test]
    fn restic_forms_parse() {
        let cases = [
            (
                "user@host:/srv/repo",
                loc(Some("user"), "host", None, "/srv/repo"),
            ),
            ("host:/srv/repo/", loc(None, "host", None, "/srv/repo")),
            ("backup-box:/", loc(None, "backup-box", None, "/")),
            (
                "//user@host:2222//srv/repo",
                loc(Some("user"), "host", Some(2222), "/srv/repo"),
            ),
            (
                "//user@[::1]:2222//srv/repo",
                loc(Some("user"), "::1", Some(2222), "/srv/repo"),
            ),
            ("//host//srv/r", loc(None, "host", None, "/srv/r")),
        ];
        for (input, want) in cases {
            let got = parse("x", input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(got, want, "{input}");
        }
    }

    #[test]
    fn bad_forms_are_rejected() {
        for input in [
            "",
            "host",
            "user@host:relative/repo",
            "//host/relative",
            "//host:0//x",
            "//host:port//x",
            "//[::1//x",
            "@host:/x",
            ":/x",
            "host:/a/../b",
            "[::1]:/x",
        ] {
            let e = parse("x", input).expect_err(input);
            assert_eq!(e.kind, crate::ErrorKind::Invalid, "{input}");
        }
    }

    #[test]
    fn endpoint_display_and_config() {
        let l = loc(Some("bk"), "127.0.0.1", Some(2022), "/srv/r");
        assert_eq!(l.endpoint(), "ssh://bk@127.0.0.1:2022");
        assert_eq!(l.display(), "sftp://bk@127.0.0.1:2022//srv/r");
        assert_eq!(
            parse("x", l.display().trim_start_matches("sftp:")).expect("reparse"),
            l
        );
        let short = loc(None, "nas", None, "/r");
        assert_eq!(short.display(), "sftp:nas:/r");
        assert_eq!(short.endpoint(), "ssh://nas");
        let cfg = service_config(
            &l,
            &SftpOptions {
                key: Some("/k".into()),
                known_hosts: KnownHosts::Strict,
            },
        );
        let get = |k: &str| {
            cfg.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("endpoint"), Some("ssh://bk@127.0.0.1:2022"));
        assert_eq!(get("root"), Some("/srv/r"));
        assert_eq!(get("key"), Some("/k"));
        assert_eq!(get("known_hosts_strategy"), Some("strict"));
        assert_eq!(KnownHosts::parse("k", "ADD").expect("add"), KnownHosts::Add);
        assert!(KnownHosts::parse("k", "maybe").is_err());
    }
}
