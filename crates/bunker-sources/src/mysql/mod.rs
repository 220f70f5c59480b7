//! MySQL / MariaDB, the source side: connection settings and the client
//! programs (`mariadb`, `mariadb-dump`, `mariadb-backup`, `mariadb-binlog`,
//! `mbstream`) run as streams ([`MyConn`]), binlog file names
//! ([`BinlogName`]) and positions ([`BinlogPos`]), and a throw-away server
//! on a private socket for replaying binlogs into a restored data directory
//! ([`server`]). The repository side lives in `bunker_repo::mysql`.

pub mod server;

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::cancel::CancelToken;
use crate::postgres::{ChildReader, PgError};

/// Errors of the MySQL source helpers.
#[derive(Debug, thiserror::Error)]
pub enum MyError {
    /// A text did not parse.
    #[error("invalid {what}: {value:?}")]
    Parse {
        /// What was being read.
        what: &'static str,
        /// The text.
        value: String,
    },
    /// A program failed, could not be started or was stopped.
    #[error("{0}")]
    Program(String),
    /// The throw-away server did not come up or go down.
    #[error("{0}")]
    Server(String),
}

impl MyError {
    /// Whether retrying may help (a failed program might, e.g. a dropped connection).
    pub fn is_retryable(&self) -> bool {
        matches!(self, MyError::Program(_))
    }
}

impl From<PgError> for MyError {
    fn from(e: PgError) -> MyError {
        // The shared child-process runner speaks of PostgreSQL when a
        // program is missing; say what to install here instead.
        match e {
            PgError::Spawn { program, source } => MyError::Program(format!(
                "cannot run {program}: {source} (install the mariadb-client / mariadb-backup \
                 packages, or put the programs on PATH)"
            )),
            other => MyError::Program(other.to_string()),
        }
    }
}

/// Connection settings; unset fields fall back to the client programs'
/// own defaults (option files, `MYSQL_*` environment).
#[derive(Clone, Default)]
pub struct MyConn {
    /// An option file read first (`--defaults-file`), e.g. with a password.
    pub defaults_file: Option<PathBuf>,
    /// Unix socket of the server.
    pub socket: Option<PathBuf>,
    /// Host name (TCP).
    pub host: Option<String>,
    /// Port (TCP).
    pub port: Option<u16>,
    /// User name.
    pub user: Option<String>,
    /// Password handed to the programs as `MYSQL_PWD` (never printed, never
    /// on a command line).
    pub password: Option<String>,
    /// Time limit of each streamed program.
    pub timeout: Option<Duration>,
    /// Cancelling it stops every program started through this connection.
    pub cancel: Option<CancelToken>,
}

impl fmt::Debug for MyConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MyConn")
            .field("defaults_file", &self.defaults_file)
            .field("socket", &self.socket)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl MyConn {
    /// A command for a client `program` with the connection options.
    /// `--defaults-file` must be the first option, so it comes first.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        if let Some(f) = &self.defaults_file {
            c.arg(format!("--defaults-file={}", f.display()));
        }
        if let Some(s) = &self.socket {
            c.arg(format!("--socket={}", s.display()));
        }
        if let Some(h) = &self.host {
            c.arg(format!("--host={h}"));
        }
        if let Some(p) = self.port {
            c.arg(format!("--port={p}"));
        }
        if let Some(u) = &self.user {
            c.arg(format!("--user={u}"));
        }
        if let Some(p) = &self.password {
            c.env("MYSQL_PWD", p);
        }
        c
    }

    /// Start `cmd` as a stream under this connection's time limit and
    /// cancellation; the stream fails at its end if the program failed.
    pub fn spawn_stream(&self, cmd: Command) -> Result<ChildReader, MyError> {
        Ok(ChildReader::spawn_watched(
            cmd,
            self.timeout,
            self.cancel.as_ref(),
        )?)
    }

    /// Run `sql` through `mariadb -N -B` and return its trimmed output
    /// (tab-separated rows), under the connection's time limit.
    pub fn query(&self, sql: &str) -> Result<String, MyError> {
        let mut c = self.command("mariadb");
        c.args(["-N", "-B", "--connect-timeout=10", "-e", sql]);
        let limit = self.timeout.or(Some(Duration::from_secs(600)));
        let mut child = ChildReader::spawn_watched(c, limit, self.cancel.as_ref())?;
        let mut out = Vec::new();
        child
            .read_to_end(&mut out)
            .map_err(|e| MyError::Program(format!("mariadb: {e}")))?;
        Ok(String::from_utf8_lossy(&out).trim().to_string())
    }
}

/// `mariadb-dump` of the given databases (all when empty) with a
/// consistent InnoDB snapshot, routines, events and triggers. A single
/// database is dumped without `CREATE DATABASE`/`USE`, so it can be
/// restored under another name.
pub fn dump_command(conn: &MyConn, databases: &[String]) -> Command {
    let mut c = conn.command("mariadb-dump");
    c.args([
        "--single-transaction",
        "--routines",
        "--events",
        "--triggers",
        "--hex-blob",
    ]);
    if databases.is_empty() {
        c.arg("--all-databases");
    } else if databases.len() == 1 {
        c.arg("--").args(databases);
    } else {
        c.arg("--databases").args(databases);
    }
    c
}

/// `mariadb-backup --backup --stream=xbstream`; `work_dir` receives its
/// small bookkeeping files (`--target-dir`, `--extra-lsndir`:
/// `xtrabackup_checkpoints`, `xtrabackup_info`), never the data.
pub fn backup_command(conn: &MyConn, work_dir: &Path) -> Command {
    let mut c = conn.command("mariadb-backup");
    c.args(["--backup", "--stream=xbstream"]);
    c.arg(format!("--target-dir={}", work_dir.display()));
    c.arg(format!("--extra-lsndir={}", work_dir.display()));
    c
}

/// A binlog position: the file and offset of the next event, and the GTID
/// position (`domain-server-seq[,...]`, empty without GTIDs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BinlogPos {
    /// Binlog file name (`binlog.000003`).
    pub file: String,
    /// Offset of the next event in it.
    pub pos: u64,
    /// GTID of the last change (MariaDB: `gtid_binlog_pos` format).
    pub gtid: String,
}

impl BinlogPos {
    /// The position a backup log line or `xtrabackup_info` states:
    /// `filename 'binlog.000001', position '794', GTID of the last change '0-1-3'`
    /// (`mariadb-backup` prints it as "MySQL binlog position: …").
    pub fn from_backup_text(text: &str) -> Option<BinlogPos> {
        let line = text.lines().rev().find(|l| l.contains("filename '"))?;
        let quoted = |key: &str| -> Option<String> {
            let rest = &line[line.find(key)? + key.len()..];
            let rest = rest.strip_prefix('\'')?;
            Some(rest[..rest.find('\'')?].to_string())
        };
        let file = quoted("filename ")?;
        BinlogName::parse(&file).ok()?;
        Some(BinlogPos {
            file,
            pos: quoted("position ")?.parse().ok()?,
            gtid: quoted("GTID of the last change ").unwrap_or_default(),
        })
    }

    /// `<file>:<offset>` as given to `--target-position`.
    pub fn parse_file_pos(text: &str) -> Result<(String, u64), MyError> {
        let bad = || MyError::Parse {
            what: "binlog position (expected FILE:OFFSET, e.g. binlog.000004:1234)",
            value: text.to_string(),
        };
        let (f, p) = text.rsplit_once(':').ok_or_else(bad)?;
        BinlogName::parse(f).map_err(|_| bad())?;
        Ok((f.to_string(), p.parse().map_err(|_| bad())?))
    }
}

impl fmt::Display for BinlogPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)?;
        if !self.gtid.is_empty() {
            write!(f, " (GTID {})", self.gtid)?;
        }
        Ok(())
    }
}

/// A binlog file name: `<base>.<sequence number>` (`binlog.000042`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BinlogName {
    /// The base name (`log_bin_basename` without its directory).
    pub base: String,
    /// The sequence number.
    pub seq: u64,
    /// Digits of the sequence number as written (6 for the servers' names).
    pub width: usize,
}

impl BinlogName {
    /// Parse a file name; only `[A-Za-z0-9._-]` characters, not starting
    /// with `.`, ending in `.<digits>`.
    pub fn parse(name: &str) -> Result<BinlogName, MyError> {
        let bad = |why: &str| MyError::Parse {
            what: if why.is_empty() {
                "binlog file name"
            } else {
                "binlog file name (expected <base>.<number>, e.g. binlog.000042)"
            },
            value: name.to_string(),
        };
        if name.starts_with('.')
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(bad("chars"));
        }
        let (base, digits) = name.rsplit_once('.').ok_or_else(|| bad("dot"))?;
        if base.is_empty() || digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("digits"));
        }
        Ok(BinlogName {
            base: base.to_string(),
            seq: digits.parse().map_err(|_| bad("range"))?,
            width: digits.len(),
        })
    }

    /// The file name of the `seq`-th binlog of the same series.
    pub fn with_seq(&self, seq: u64) -> String {
        format!("{}.{:0w$}", self.base, seq, w = self.width)
    }
}

impl fmt::Display for BinlogName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.with_seq(self.seq))
    }
}

/// The closed binlog files a server's index file (`<base>.index`) lists:
/// every entry but the last (the one being written), as paths resolved
/// against the index file's directory.
pub fn closed_binlogs(index_file: &Path) -> Result<Vec<PathBuf>, MyError> {
    let text = std::fs::read_to_string(index_file).map_err(|e| {
        MyError::Program(format!(
            "reading binlog index {}: {e}",
            index_file.display()
        ))
    })?;
    let dir = index_file.parent().unwrap_or(Path::new("."));
    let mut files: Vec<PathBuf> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let p = Path::new(l);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                dir.join(p.file_name().unwrap_or(p.as_os_str()))
            }
        })
        .collect();
    files.pop();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_position_is_read_from_the_log_and_info_file() {
        let log = "[00] 2026-12-08 00:27:40 Streaming xtrabackup_binlog_info\n\
                   [00] 2026-12-08 00:27:40 MySQL binlog position: filename 'binlog.000001', position '794', GTID of the last change '0-1-3'\n\
                   [00] 2026-12-08 00:27:41 completed OK!\n";
        let p = BinlogPos::from_backup_text(log).unwrap();
        assert_eq!(p.file, "binlog.000001");
        assert_eq!(p.pos, 794);
        assert_eq!(p.gtid, "0-1-3");
        assert_eq!(p.to_string(), "binlog.000001:794 (GTID 0-1-3)");
        let info =
            "binlog_pos = filename 'mysql-bin.000012', position '4', GTID of the last change ''";
        let p = BinlogPos::from_backup_text(info).unwrap();
        assert_eq!(
            (p.file.as_str(), p.pos, p.gtid.as_str()),
            ("mysql-bin.000012", 4, "")
        );
        assert!(BinlogPos::from_backup_text("no position here").is_none());
        assert!(BinlogPos::from_backup_text("filename '../x', position '1'").is_none());
    }

    #[test]
    fn binlog_names_parse_strictly() {
        let n = BinlogName::parse("mysql-bin.000042").unwrap();
        assert_eq!((n.base.as_str(), n.seq, n.width), ("mysql-bin", 42, 6));
        assert_eq!(n.with_seq(43), "mysql-bin.000043");
        for bad in [
            "../binlog.000001",
            "binlog",
            ".000001",
            "binlog.",
            "binlog.00a1",
            "a/b.000001",
            ".x.000001",
        ] {
            assert!(BinlogName::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            BinlogPos::parse_file_pos("binlog.000004:1234").unwrap(),
            ("binlog.000004".to_string(), 1234)
        );
        assert!(BinlogPos::parse_file_pos("binlog.000004").is_err());
    }

    #[test]
    fn closed_binlogs_leave_out_the_open_one() {
        let d = tempfile::tempdir().unwrap();
        let idx = d.path().join("binlog.index");
        std::fs::write(&idx, "./binlog.000001\n./binlog.000002\n./binlog.000003\n").unwrap();
        let c = closed_binlogs(&idx).unwrap();
        assert_eq!(
            c,
            vec![
                d.path().join("binlog.000001"),
                d.path().join("binlog.000002")
            ]
        );
    }

    #[test]
    fn connection_options_come_first_and_the_password_stays_off_the_command_line() {
        let conn = MyConn {
            defaults_file: Some("/etc/my.cnf".into()),
            socket: Some("/run/mysqld/mysqld.sock".into()),
            user: Some("backup".into()),
            password: Some("secret".into()),
            ..Default::default()
        };
        assert!(!format!("{conn:?}").contains("secret"));
        let c = dump_command(&conn, &["app".to_string()]);
        let args: Vec<_> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args[0], "--defaults-file=/etc/my.cnf");
        assert!(args.contains(&"--single-transaction".to_string()));
        assert!(!args.iter().any(|a| a.contains("secret")));
        assert!(c.get_envs().any(|(k, v)| k == "MYSQL_PWD" && v.is_some()));
    }
}
