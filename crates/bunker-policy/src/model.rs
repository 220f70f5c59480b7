//! The typed policy model.

use crate::schedule::Schedule;
use bunker_repo::retention::{KeepDuration, KeepPolicy};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A secret string: `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret value; do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Whether an option key names a secret (its value is never printed).
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["secret", "password", "key", "token"]
        .iter()
        .any(|w| k.contains(w))
}

/// Where a repository password comes from (exactly one per repository).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// Read from a file (first line, trailing newline removed).
    File(PathBuf),
    /// Read from an environment variable.
    Env(String),
    /// The first line printed by a shell command.
    Command(String),
    /// Inline in the policy (discouraged).
    Plain(Secret),
}

/// Failure to obtain a password.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The password file could not be read.
    #[error("cannot read password file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The environment variable is not set.
    #[error("environment variable {0:?} is not set")]
    Env(String),
    /// The command could not run or failed.
    #[error("password command {command:?} failed: {reason}")]
    Command {
        /// The command.
        command: String,
        /// Why.
        reason: String,
    },
}

impl PasswordError {
    /// Transient failures (I/O interruptions) may succeed on retry.
    pub fn is_retryable(&self) -> bool {
        match self {
            PasswordError::File { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::TimedOut
            ),
            _ => false,
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

impl PasswordSource {
    /// Obtains the password (reads the file/variable or runs the command).
    pub fn resolve(&self) -> Result<Secret, PasswordError> {
        match self {
            PasswordSource::File(path) => std::fs::read_to_string(path)
                .map(|s| Secret::new(first_line(&s)))
                .map_err(|source| PasswordError::File {
                    path: path.clone(),
                    source,
                }),
            PasswordSource::Env(name) => std::env::var(name)
                .map(Secret::new)
                .map_err(|_| PasswordError::Env(name.clone())),
            PasswordSource::Command(cmd) => {
                let fail = |reason: String| PasswordError::Command {
                    command: cmd.clone(),
                    reason,
                };
                let out = std::process::Command::new("sh")
                    .arg("-c")
                    .arg(cmd)
                    .stdin(std::process::Stdio::null())
                    .output()
                    .map_err(|e| fail(e.to_string()))?;
                if !out.status.success() {
                    return Err(fail(format!("exit status {}", out.status)));
                }
                Ok(Secret::new(first_line(&String::from_utf8_lossy(
                    &out.stdout,
                ))))
            }
            PasswordSource::Plain(s) => Ok(s.clone()),
        }
    }
}

/// What a repository is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// The main repository.
    #[default]
    Primary,
    /// A copy kept elsewhere.
    Offsite,
}

/// One repository of the policy.
#[derive(Clone, PartialEq, Eq)]
pub struct RepositoryConfig {
    /// Its name (the key under `repositories`).
    pub name: String,
    /// Where it is: a local path (resolved against the policy file's
    /// directory), or `s3:...`, `opendal:<scheme>...`, etc.
    pub location: String,
    /// Where the password comes from.
    pub password: PasswordSource,
    /// Backend options (`-o key=value`).
    pub options: BTreeMap<String, String>,
    /// Primary or offsite.
    pub role: Role,
    /// Repository names tried, in order, when this one is unreachable.
    pub fallbacks: Vec<String>,
}

/// Whether a location string has a backend scheme (`s3:...`) rather than
/// being a local path. One-letter prefixes (Windows drives) are paths.
pub fn location_scheme(location: &str) -> Option<&str> {
    let (scheme, _) = location.split_once(':')?;
    let ok = scheme.len() > 1
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-');
    ok.then_some(scheme)
}

impl RepositoryConfig {
    /// The local directory of a local repository (`local:` prefix allowed).
    pub fn local_path(&self) -> Option<PathBuf> {
        match location_scheme(&self.location) {
            None => Some(PathBuf::from(&self.location)),
            Some("local") => Some(PathBuf::from(&self.location["local:".len()..])),
            Some(_) => None,
        }
    }
}

impl fmt::Debug for RepositoryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let options: BTreeMap<&str, &str> = self
            .options
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str(),
                    if is_secret_key(k) { "***" } else { v.as_str() },
                )
            })
            .collect();
        f.debug_struct("RepositoryConfig")
            .field("name", &self.name)
            .field("location", &self.location)
            .field("password", &self.password)
            .field("options", &options)
            .field("role", &self.role)
            .field("fallbacks", &self.fallbacks)
            .finish()
    }
}

impl fmt::Display for RepositoryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pw = match &self.password {
            PasswordSource::File(p) => format!("password_file {}", p.display()),
            PasswordSource::Env(v) => format!("password_env {v}"),
            PasswordSource::Command(_) => "password_command ***".to_string(),
            PasswordSource::Plain(_) => "password ***".to_string(),
        };
        write!(
            f,
            "{} ({:?}) at {}, {pw}",
            self.name, self.role, self.location
        )?;
        for (k, v) in &self.options {
            let v = if is_secret_key(k) { "***" } else { v.as_str() };
            write!(f, ", -o {k}={v}")?;
        }
        Ok(())
    }
}

/// The kind of an item's source ([`Source::kind`]), for display and for
/// the policy file's `kind:` spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ItemKind {
    /// Files and directories (the only kind executed today).
    #[default]
    Files,
    /// A PostgreSQL database.
    Postgres,
    /// A SQLite database file.
    Sqlite,
    /// A MySQL / MariaDB server.
    Mysql,
    /// The standard output of a command.
    Command,
}

impl ItemKind {
    /// The policy-file spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            ItemKind::Files => "files",
            ItemKind::Postgres => "postgres",
            ItemKind::Sqlite => "sqlite",
            ItemKind::Mysql => "mysql",
            ItemKind::Command => "command",
        }
    }
}

/// How urgent an item is; ordered `Critical > Important > Low`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Priority {
    /// Can wait.
    Low,
    /// The default.
    #[default]
    Important,
    /// Runs first.
    Critical,
}

impl Priority {
    /// The policy-file spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Important => "important",
            Priority::Critical => "critical",
        }
    }
}

/// Commands run around an item's backup.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hooks {
    /// Before the backup; a failure aborts it.
    pub before: Vec<String>,
    /// After a successful backup.
    pub after: Vec<String>,
    /// After a failed backup.
    pub on_failure: Vec<String>,
    /// Per-command time limit.
    pub timeout: Option<Duration>,
}

/// Retention as written in the policy file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Retention {
    /// `keep_last` (`-1` = unlimited).
    pub keep_last: i32,
    /// `keep_hourly`.
    pub keep_hourly: i32,
    /// `keep_daily`.
    pub keep_daily: i32,
    /// `keep_weekly`.
    pub keep_weekly: i32,
    /// `keep_monthly`.
    pub keep_monthly: i32,
    /// `keep_yearly`.
    pub keep_yearly: i32,
    /// `keep_within`.
    pub keep_within: Option<KeepDuration>,
    /// `keep_within_hourly`.
    pub keep_within_hourly: Option<KeepDuration>,
    /// `keep_within_daily`.
    pub keep_within_daily: Option<KeepDuration>,
    /// `keep_within_weekly`.
    pub keep_within_weekly: Option<KeepDuration>,
    /// `keep_within_monthly`.
    pub keep_within_monthly: Option<KeepDuration>,
    /// `keep_within_yearly`.
    pub keep_within_yearly: Option<KeepDuration>,
    /// `keep_tags`: lists of tags; a snapshot with all tags of one list is kept.
    pub keep_tags: Vec<Vec<String>>,
    /// `retention_days: N` = keep everything within N days.
    pub retention_days: Option<u32>,
}

impl Retention {
    /// The equivalent [`KeepPolicy`]. `retention_days` becomes `within`
    /// N days; if `keep_within` is also set, the longer of the two is used.
    pub fn keep_policy(&self) -> KeepPolicy {
        let days = self
            .retention_days
            .map(|d| KeepDuration::days(i32::try_from(d).unwrap_or(i32::MAX)));
        let within = match (self.keep_within, days) {
            (Some(a), Some(b)) => Some(if b.approx_hours() > a.approx_hours() {
                b
            } else {
                a
            }),
            (a, b) => a.or(b),
        };
        KeepPolicy {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
            within,
            within_hourly: self.keep_within_hourly,
            within_daily: self.keep_within_daily,
            within_weekly: self.keep_within_weekly,
            within_monthly: self.keep_within_monthly,
            within_yearly: self.keep_within_yearly,
            tags: self.keep_tags.clone(),
        }
    }
}

/// PostgreSQL dump mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PostgresMode {
    /// `pg_dump` (default).
    #[default]
    Logical,
    /// A base backup.
    Physical,
}

/// Settings of a `postgres` item (under its `postgres:` key).
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// Host name or socket directory.
    pub host: Option<String>,
    /// Port.
    pub port: Option<u16>,
    /// User name.
    pub user: Option<String>,
    /// Database name (all databases when absent, logical mode).
    pub database: Option<String>,
    /// A full connection string (may contain a password: redacted).
    pub dsn: Option<Secret>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// Logical or physical.
    pub mode: PostgresMode,
    /// Physical mode: every point in time of this last span must stay
    /// recoverable (`pitr: 7d`); retention then keeps the base backups and
    /// WAL that span needs beside what the `retention` rules keep.
    pub pitr: Option<Duration>,
    /// Physical mode: a base backup is due whenever the server restarted,
    /// or its timeline or system identifier changed, since the newest base
    /// backup in the repository (default true).
    pub full_on_start: bool,
    /// Time limit for each `pg_dump`, `pg_dumpall` or `pg_basebackup` run
    /// (`timeout: 6h`); past it the program is stopped and the item fails.
    pub timeout: Option<Duration>,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            host: None,
            port: None,
            user: None,
            database: None,
            dsn: None,
            password_env: None,
            mode: PostgresMode::default(),
            pitr: None,
            full_on_start: true,
            timeout: None,
        }
    }
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("database", &self.database)
            .field("dsn", &self.dsn)
            .field("password_env", &self.password_env)
            .field("mode", &self.mode)
            .field("pitr", &self.pitr)
            .field("full_on_start", &self.full_on_start)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Settings of a `sqlite` item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteConfig {
    /// The database file (resolved against the policy file's directory).
    pub path: PathBuf,
}

/// Settings of a `command` item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandConfig {
    /// Shell command whose standard output is backed up.
    pub command: String,
    /// File name the output is stored under (default `stdin`).
    pub stdin_filename: String,
    /// Time limit for the command (default none); past it the command and
    /// everything it started are stopped and the item fails.
    pub timeout: Option<Duration>,
}

/// Settings of a `files` item.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FilesSource {
    /// Paths, resolved against the policy file's directory.
    pub paths: Vec<PathBuf>,
    /// Item excludes followed by the global `exclude_patterns`.
    pub excludes: Vec<String>,
}

/// What an item backs up: one kind of source with its settings.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// Files and directories (`kind: files`, the default).
    Files(FilesSource),
    /// A PostgreSQL database (`kind: postgres` with a `postgres:` section).
    Postgres(PostgresConfig),
    /// A SQLite database file (`kind: sqlite` with a `sqlite:` section).
    Sqlite(SqliteConfig),
    /// A MySQL / MariaDB server (`kind: mysql` with a `mysql:` section).
    Mysql(crate::mysql::MysqlConfig),
    /// The standard output of a command (`kind: command` with a `command:`
    /// section).
    Command(CommandConfig),
}

impl Source {
    /// The kind of this source, as written in `kind:`.
    pub fn kind(&self) -> ItemKind {
        match self {
            Source::Files(_) => ItemKind::Files,
            Source::Postgres(_) => ItemKind::Postgres,
            Source::Sqlite(_) => ItemKind::Sqlite,
            Source::Mysql(_) => ItemKind::Mysql,
            Source::Command(_) => ItemKind::Command,
        }
    }
}

/// One thing to back up.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Unique name, `[A-Za-z0-9._-]+`.
    pub name: String,
    /// What is backed up, with the settings of that kind of source.
    pub source: Source,
    /// When to run; `None` = only on demand.
    pub schedule: Option<Schedule>,
    /// What to keep; `None` = never forget.
    pub retention: Option<Retention>,
    /// Urgency.
    pub priority: Priority,
    /// Recovery point objective: the longest acceptable age of the newest
    /// good snapshot.
    pub rpo: Option<Duration>,
    /// Repository names to back up to (default: all primary repositories).
    pub targets: Vec<String>,
    /// Extra snapshot tags.
    pub tags: Vec<String>,
    /// Hook commands.
    pub hooks: Hooks,
    /// Recovery time objective: the longest acceptable restore time, which
    /// drills measure.
    pub rto: Option<Duration>,
    /// Restore drills (`drill:`).
    pub drill: Option<crate::drill::DrillConfig>,
}

impl Item {
    /// What kind of source the item backs up.
    pub fn kind(&self) -> ItemKind {
        self.source.kind()
    }

    /// The settings of a `files` item; `None` for other kinds.
    pub fn files(&self) -> Option<&FilesSource> {
        match &self.source {
            Source::Files(f) => Some(f),
            _ => None,
        }
    }

    /// The settings of a `postgres` item (either mode); `None` for other
    /// kinds.
    pub fn postgres(&self) -> Option<&PostgresConfig> {
        match &self.source {
            Source::Postgres(pg) => Some(pg),
            _ => None,
        }
    }

    /// The settings of a `postgres` item in `mode: physical` (base backups
    /// and archived WAL); `None` otherwise.
    pub fn physical(&self) -> Option<&PostgresConfig> {
        self.postgres()
            .filter(|pg| pg.mode == PostgresMode::Physical)
    }

    /// The tag bunker puts on this item's snapshots: `bunker:item=<name>`.
    pub fn tag(&self) -> String {
        format!("bunker:item={}", self.name)
    }

    /// All tags for a new snapshot of this item: [`Item::tag`] then `tags`.
    pub fn snapshot_tags(&self) -> Vec<String> {
        let mut t = vec![self.tag()];
        t.extend(self.tags.iter().cloned());
        t
    }
}
