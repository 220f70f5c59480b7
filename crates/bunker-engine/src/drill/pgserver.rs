//! Temporary PostgreSQL servers for drills, `recover --time --start` and
//! runbook drills (their port and private settings):
//! finding the server programs, running them as the cluster's owner, a
//! private configuration (a free loopback port, the unix socket in a
//! directory of the sandbox, `trust` on that socket only, no archiving, no
//! replication), waiting with a deadline until recovery ended, and a guard
//! that always stops the server.
//!
//! PostgreSQL refuses to run as root: when bunker runs as root, the data
//! directory is given to the `postgres` user ([`SERVER_USER`]) and every
//! server program runs as that user (`runuser`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bunker_sources::postgres::server;
use bunker_sources::CancelToken;

use super::checks::{run_program, RunError};
use crate::error::{Context, EngineError, Result};

/// The user server programs run as when bunker runs as root.
pub const SERVER_USER: &str = "postgres";

/// How often a wait polls the server.
const POLL: Duration = Duration::from_millis(300);

/// What PostgreSQL logs when a time target lies after the last archived commit.
pub const TARGET_NOT_REACHED: &str = "recovery ended before configured recovery target was reached";

/// Runs PostgreSQL's programs, as [`SERVER_USER`] when bunker is root.
#[derive(Debug, Clone)]
pub struct Runner {
    /// The directory of the programs.
    pub bin: PathBuf,
    /// `Some(user)` when programs run through `runuser -u user --`.
    pub user: Option<String>,
}

impl Runner {
    /// Programs of `bin`, as [`SERVER_USER`] when running as root.
    pub fn new(bin: PathBuf) -> Runner {
        let root = rustix::process::geteuid().is_root();
        Runner {
            bin,
            user: root.then(|| SERVER_USER.to_string()),
        }
    }

    /// A command running `program` of the bin directory.
    pub fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut c = match &self.user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        };
        c.env("LC_ALL", "C").env("TZ", "UTC").stdin(Stdio::null());
        c
    }

    /// Give `dir` (recursively) to the server's user, when it has one.
    pub fn own(&self, dir: &Path) -> Result<()> {
        let Some(u) = &self.user else { return Ok(()) };
        let out = Command::new("chown")
            .arg("-R")
            .arg(format!("{u}:"))
            .arg(dir)
            .stdin(Stdio::null())
            .output()
            .context("running chown")?;
        if !out.status.success() {
            return Err(EngineError::Invalid(format!(
                "cannot give {} to the {u} user (PostgreSQL does not run as root): {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }

    /// Whether `program` exists in the bin directory.
    pub fn has(&self, program: &str) -> bool {
        self.bin.join(program).is_file()
    }
}

/// The directory of PostgreSQL's `programs`: `explicit`, else where
/// `pg restore --start` looks for `data_dir`'s version, else the newest
/// `/usr/lib/postgresql/*/bin` or `/usr/pgsql-*/bin` holding them all.
pub fn find_bin(
    explicit: Option<&Path>,
    data_dir: Option<&Path>,
    programs: &[&str],
) -> Result<PathBuf> {
    let probe = data_dir.unwrap_or(Path::new("/nonexistent"));
    let first = server::find_server_bin(probe, explicit, programs);
    if first.is_ok() || explicit.is_some() {
        return first.context("finding PostgreSQL's programs (set drill.pg_bin)");
    }
    let mut dirs: Vec<(u32, PathBuf)> = Vec::new();
    for (root, prefix) in [("/usr/lib/postgresql", ""), ("/usr", "pgsql-")] {
        let Ok(rd) = std::fs::read_dir(root) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(v) = name
                .strip_prefix(prefix)
                .and_then(|v| v.parse::<u32>().ok())
            else {
                continue;
            };
            dirs.push((v, e.path().join("bin")));
        }
    }
    dirs.sort_by_key(|d| std::cmp::Reverse(d.0));
    dirs.into_iter()
        .map(|(_, d)| d)
        .find(|d| programs.iter().all(|p| d.join(p).is_file()))
        .map(Ok)
        .unwrap_or_else(|| first.context("finding PostgreSQL's programs (set drill.pg_bin)"))
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr().context("finding a free port")?.port())
}

/// Settings that keep a restored or new cluster private: `port` on
/// 127.0.0.1, the socket in `socket_dir`, no archiving, no replication,
/// logs to the server's standard error; with `hba` (a drill's sandbox),
/// connections only through that socket (see [`prepare_config`]).
pub fn private_settings(port: u16, socket_dir: &Path, hba: Option<&Path>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = [
        ("port", port.to_string()),
        ("listen_addresses", "127.0.0.1".to_string()),
        ("unix_socket_directories", socket_dir.display().to_string()),
        ("archive_mode", "off".to_string()),
        ("primary_conninfo", String::new()),
        ("logging_collector", "off".to_string()),
        ("log_destination", "stderr".to_string()),
        ("ssl", "off".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some(h) = hba {
        v.push(("hba_file".into(), h.display().to_string()));
    }
    v
}

/// Write the sandbox's `pg_hba.conf` (`local all all trust`: nothing else
/// may connect) and the configuration files a base backup of a cluster
/// configured elsewhere (Debian's /etc/postgresql) lacks.
pub fn prepare_config(data: &Path, hba: &Path) -> Result<()> {
    std::fs::write(hba, "local all all trust\n")
        .with_context(|| format!("writing {}", hba.display()))?;
    for f in ["postgresql.conf", "pg_ident.conf"] {
        let p = data.join(f);
        if !p.exists() {
            std::fs::write(&p, "").with_context(|| format!("writing {}", p.display()))?;
        }
    }
    Ok(())
}

/// A server started by bunker; stopped (immediate) when dropped unless
/// [`TempServer::detach`]ed.
pub struct TempServer {
    runner: Runner,
    /// The data directory.
    pub data: PathBuf,
    /// The server's log.
    pub log: PathBuf,
    /// Where its socket is.
    pub socket_dir: PathBuf,
    /// Its port.
    pub port: u16,
    running: bool,
}

impl TempServer {
    /// Start the cluster in `data` (`pg_ctl start`, not waiting); the
    /// configuration must already name `port` and `socket_dir`.
    pub fn start(
        runner: &Runner,
        data: &Path,
        log: &Path,
        socket_dir: &Path,
        port: u16,
    ) -> Result<TempServer> {
        let mut s = TempServer {
            runner: runner.clone(),
            data: data.to_path_buf(),
            log: log.to_path_buf(),
            socket_dir: socket_dir.to_path_buf(),
            port,
            running: false,
        };
        s.pg_ctl_start()?;
        Ok(s)
    }

    fn pg_ctl_start(&mut self) -> Result<()> {
        let mut c = self.runner.command("pg_ctl");
        c.arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-W", "start"]);
        let out = c.output().context("running pg_ctl start")?;
        if !out.status.success() {
            return Err(EngineError::Invalid(format!(
                "pg_ctl start failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        self.running = true;
        Ok(())
    }

    /// Leave the server running when dropped.
    pub fn detach(mut self) {
        self.running = false;
    }

    /// Stop the server now (immediate shutdown).
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        self.running = false;
        let _ = self
            .runner
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "-t", "60", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Whether the postmaster still runs.
    fn alive(&self) -> bool {
        self.runner
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("status")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The last `n` lines of the server log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Wait until the server accepts connections as one of `users` and is out of
    /// recovery (promoted), for at most `limit`. When it stops because a
    /// time target lies after the last archived commit
    /// ([`TARGET_NOT_REACHED`]) and `finish_at_end` is set, the target is
    /// dropped and the server started again to replay to the end of the
    /// archive; the result says whether the target was reached.
    pub fn wait_promoted(
        &mut self,
        users: &[String],
        limit: Duration,
        cancel: &CancelToken,
        finish_at_end: bool,
    ) -> Result<bool> {
        let deadline = Instant::now() + limit;
        let mut reached = true;
        loop {
            std::thread::sleep(POLL);
            if cancel.is_cancelled() {
                self.stop();
                return Err(EngineError::Cancelled);
            }
            let promoted = users.iter().any(|u| {
                self.query_quick(u, "template1", "SELECT pg_is_in_recovery()")
                    .is_ok_and(|v| v == "f")
            });
            if promoted {
                return Ok(reached);
            }
            if !self.alive() {
                self.running = false;
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                if finish_at_end && reached && log.contains(TARGET_NOT_REACHED) {
                    tracing::info!("no commit after the recovery target time is archived; replaying to the end of the archive");
                    append_setting(&self.data, "recovery_target_time", "")?;
                    reached = false;
                    self.pg_ctl_start()?;
                    continue;
                }
                return Err(EngineError::Invalid(format!(
                    "PostgreSQL stopped before recovery finished (log {}): {}",
                    self.log.display(),
                    self.log_tail(6)
                )));
            }
            if Instant::now() >= deadline {
                return Err(EngineError::Invalid(format!(
                    "the server did not finish recovery within {} (log {}): {}",
                    humantime::format_duration(limit),
                    self.log.display(),
                    self.log_tail(1)
                )));
            }
        }
    }

    /// `psql -AtX` through the socket as `user` on `db`: the trimmed output.
    pub fn query(
        &self,
        user: &str,
        db: &str,
        sql: &str,
        limit: Duration,
        cancel: &CancelToken,
    ) -> std::result::Result<String, RunError> {
        let mut c = self.runner.command("psql");
        c.arg("-h")
            .arg(&self.socket_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .args([
                "-U",
                user,
                "-d",
                db,
                "-AtX",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ]);
        run_program(c, limit, cancel).map(|(out, _)| out.trim().to_string())
    }

    /// [`TempServer::query`] with a short connect timeout, for polling.
    fn query_quick(&self, user: &str, db: &str, sql: &str) -> std::result::Result<String, String> {
        let out = self
            .runner
            .command("psql")
            .env("PGCONNECT_TIMEOUT", "5")
            .arg("-h")
            .arg(&self.socket_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", user, "-d", db, "-AtX", "-c", sql])
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// The bootstrap superuser's name, connecting as the first of
    /// `candidates` the server knows.
    pub fn superuser(&self, candidates: &[String]) -> Result<String> {
        let mut last = String::new();
        for u in candidates {
            for db in ["postgres", "template1"] {
                match self.query_quick(u, db, "SELECT rolname FROM pg_roles WHERE oid = 10") {
                    Ok(name) if !name.is_empty() => return Ok(name),
                    Ok(_) => {}
                    Err(e) => last = e,
                }
            }
        }
        Err(EngineError::Invalid(format!(
            "cannot connect to the restored server as any of {}: {last}",
            candidates.join(", ")
        )))
    }

    /// The command environment for checks run against this server.
    pub fn env(&self, user: &str, db: &str) -> Vec<(String, String)> {
        vec![
            ("PGHOST".into(), self.socket_dir.display().to_string()),
            ("PGPORT".into(), self.port.to_string()),
            ("PGUSER".into(), user.to_string()),
            ("PGDATABASE".into(), db.to_string()),
        ]
    }
}

impl Drop for TempServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Append `key = 'value'` to the cluster's `postgresql.auto.conf` (later
/// lines win).
pub fn append_setting(data: &Path, key: &str, value: &str) -> Result<()> {
    use std::io::Write;
    let p = data.join("postgresql.auto.conf");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&p)
        .with_context(|| format!("opening {}", p.display()))?;
    writeln!(
        f,
        "{key} = {}",
        bunker_sources::postgres::process::conf_quote(value)
    )
    .with_context(|| format!("writing {}", p.display()))
}

/// The newest commit time in a WAL segment file, from `pg_waldump`
/// (its records up to the first invalid one; a segment's end usually is).
pub fn last_commit_in_segment(
    runner: &Runner,
    file: &Path,
    cancel: &CancelToken,
) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    let mut c = runner.command("pg_waldump");
    c.args(["-r", "Transaction"]).arg(file);
    let out = match run_program(c, Duration::from_secs(120), cancel) {
        Ok((out, _)) => out,
        Err(RunError::Failed(msg)) => msg,
        Err(_) => return None,
    };
    out.lines()
        .filter_map(|l| l.split_once("desc: COMMIT ").map(|(_, t)| t))
        .filter_map(|t| {
            let t = t.split(';').next().unwrap_or(t).trim();
            bunker_repo::pg::restore::parse_target_time(t).ok()
        })
        .max()
}
