//! Users, passwords (htpasswd) and roles.
//!
//! The htpasswd file is what `htpasswd -B` (bcrypt, `$2y$`/`$2a$`/`$2b$`)
//! or `htpasswd -s` (`{SHA}`, accepted for rest-server compatibility but
//! weak) writes: `user:hash` lines. The roles file has `user role` lines
//! (`#` comments); roles are `restore`, `backup` and `admin`, see [`Role`].

use std::collections::HashMap;
use std::path::Path;

use base64::Engine;
use sha1::Digest;

use crate::ServeError;

/// What a user may do. Each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Read everything; create and remove lock files (restic locks the
    /// repository while it restores or checks). Nothing else is written.
    Restore,
    /// `restore` plus writing new files. Existing files are never
    /// overwritten or deleted (lock files excepted).
    Backup,
    /// Everything: delete (forget/prune), overwrite bunker's own files.
    Admin,
}

impl Role {
    /// Parses `restore`, `backup` or `admin`.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "restore" | "read" => Some(Role::Restore),
            "backup" | "append" => Some(Role::Backup),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// The role's name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Restore => "restore",
            Role::Backup => "backup",
            Role::Admin => "admin",
        }
    }
}

enum Hash {
    Bcrypt(String),
    Sha1(Vec<u8>),
}

/// The users of an htpasswd file.
pub struct Htpasswd {
    users: HashMap<String, Hash>,
}

impl std::fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Htpasswd({} users)", self.users.len())
    }
}

impl Htpasswd {
    /// Reads an htpasswd file. Unsupported hash formats (apr1 MD5, crypt)
    /// are an error naming the user and line, never silently skipped.
    pub fn load(path: &Path) -> Result<Htpasswd, ServeError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ServeError::Config(format!("cannot read htpasswd file {}: {e}", path.display()))
        })?;
        Htpasswd::parse(&text).map_err(|e| ServeError::Config(format!("{}: {e}", path.display())))
    }

    /// Parses htpasswd text.
    pub fn parse(text: &str) -> Result<Htpasswd, String> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err(format!("line {}: expected user:hash", i + 1));
            };
            let h =
                if hash.starts_with("$2y$") || hash.starts_with("$2a$") || hash.starts_with("$2b$")
                {
                    Hash::Bcrypt(hash.to_string())
                } else if let Some(b64) = hash.strip_prefix("{SHA}") {
                    let raw = base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .map_err(|_| format!("line {}: bad {{SHA}} hash for {user}", i + 1))?;
                    Hash::Sha1(raw)
                } else {
                    return Err(format!(
                    "line {}: user {user}: unsupported hash format (use `htpasswd -B` for bcrypt)",
                    i + 1
                ));
                };
            users.insert(user.to_string(), h);
        }
        Ok(Htpasswd { users })
    }

    /// True if `user` exists and `password` matches. Unknown users cost a
    /// bcrypt verification too, so timing does not reveal which names exist.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        match self.users.get(user) {
            Some(Hash::Bcrypt(h)) => bcrypt::verify(password, h).unwrap_or(false),
            Some(Hash::Sha1(want)) => {
                let got = sha1::Sha1::digest(password.as_bytes());
                constant_eq(got.as_slice(), want)
            }
            None => {
                static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
                let dummy = DUMMY.get_or_init(|| bcrypt::hash("-", 5).unwrap_or_default());
                let _ = bcrypt::verify(password, dummy);
                false
            }
        }
    }

    /// Whether the file names `user`.
    pub fn has_user(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Per-user roles from a roles file.
#[derive(Debug, Clone, Default)]
pub struct Roles {
    by_user: HashMap<String, Role>,
}

impl Roles {
    /// Reads a roles file: `USER ROLE` per line, `#` comments.
    pub fn load(path: &Path) -> Result<Roles, ServeError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ServeError::Config(format!("cannot read roles file {}: {e}", path.display()))
        })?;
        Roles::parse(&text).map_err(|e| ServeError::Config(format!("{}: {e}", path.display())))
    }

    /// Parses roles text.
    pub fn parse(text: &str) -> Result<Roles, String> {
        let mut by_user = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(user), Some(role), None) = (words.next(), words.next(), words.next()) else {
                return Err(format!("line {}: expected `USER ROLE`", i + 1));
            };
            let role = Role::parse(role).ok_or_else(|| {
                format!(
                    "line {}: unknown role {role:?} (restore, backup or admin)",
                    i + 1
                )
            })?;
            if by_user.insert(user.to_string(), role).is_some() {
                return Err(format!("line {}: {user} is listed twice", i + 1));
            }
        }
        Ok(Roles { by_user })
    }

    /// The role given to `user` in the file, if any.
    pub fn get(&self, user: &str) -> Option<Role> {
        self.by_user.get(user).copied()
    }

    /// The users the file names.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.by_user.keys().map(String::as_str)
    }
}

/// Decodes an `Authorization: Basic ...` header value into user and password.
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    let b64 = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcrypt_and_sha_entries_verify() {
        let h = bcrypt::hash("s3cret", 4)
            .unwrap()
            .replacen("$2b$", "$2y$", 1);
        let sha = base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(b"pw"));
        let file = Htpasswd::parse(&format!("# users\nalice:{h}\nbob:{{SHA}}{sha}\n")).unwrap();
        assert!(file.verify("alice", "s3cret"));
        assert!(!file.verify("alice", "wrong"));
        assert!(file.verify("bob", "pw"));
        assert!(!file.verify("bob", "pW"));
        assert!(!file.verify("carol", "s3cret"));
        assert!(Htpasswd::parse("eve:$apr1$xyz$abc").is_err());
        assert!(Htpasswd::parse("no-colon").is_err());
    }

    #[test]
    fn roles_file_parses_and_rejects_bad_lines() {
        let r = Roles::parse("alice backup\n# c\nroot admin # pruner\nbob restore\n").unwrap();
        assert_eq!(r.get("alice"), Some(Role::Backup));
        assert_eq!(r.get("root"), Some(Role::Admin));
        assert_eq!(r.get("bob"), Some(Role::Restore));
        assert_eq!(r.get("eve"), None);
        assert!(Roles::parse("alice superuser").is_err());
        assert!(Roles::parse("alice backup extra").is_err());
        assert!(Roles::parse("a backup\na admin").is_err());
    }

    #[test]
    fn basic_header_decodes() {
        let v = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("u:p:q")
        );
        assert_eq!(parse_basic(&v), Some(("u".into(), "p:q".into())));
        assert_eq!(parse_basic("Bearer x"), None);
    }
}
