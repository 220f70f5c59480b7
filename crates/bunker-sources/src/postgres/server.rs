//! PostgreSQL's server programs (`pg_ctl`, `pg_controldata`, `postgres`)
//! for a data directory, and starting a restored cluster and waiting,
//! with a deadline and progress, until its recovery is over.
//!
//! The programs are looked for where `pg_ctl` itself finds its siblings,
//! and where distributions install them for the cluster's major version
//! (its `PG_VERSION` file): the directory of `pg_ctl` on `PATH` with
//! symlinks resolved (Debian's `/usr/bin` wrappers and hand-made symlink
//! directories point into the real one), that directory itself,
//! `pg_config --bindir`, `/usr/lib/postgresql/<v>/bin` (Debian, Ubuntu)
//! and `/usr/pgsql-<v>/bin` (RHEL). The first directory holding every
//! needed program wins; when none does, the error names the missing
//! program and where it was looked for, before anything is started.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use super::PgError;

/// The programs `pg restore --start` runs.
pub const SERVER_PROGRAMS: [&str; 3] = ["pg_ctl", "pg_controldata", "postgres"];

/// How often the wait reports that it is still waiting.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(30);

/// The cluster's major version (`15`), from its `PG_VERSION` file.
pub fn cluster_version(data_dir: &Path) -> Option<String> {
    let v = std::fs::read_to_string(data_dir.join("PG_VERSION")).ok()?;
    let v = v.trim();
    (!v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.')).then(|| v.to_string())
}

/// `name` as found on `PATH` (not resolved).
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// `pg_config --bindir`, when `pg_config` is on `PATH` and answers.
fn pg_config_bindir() -> Option<PathBuf> {
    let out = Command::new(on_path("pg_config")?)
        .arg("--bindir")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !s.is_empty()).then(|| PathBuf::from(s))
}

/// The directories searched for the server programs of `data_dir`, in
/// order (see the module documentation); only `explicit` when given.
pub fn candidate_dirs(data_dir: &Path, explicit: Option<&Path>) -> Vec<PathBuf> {
    if let Some(d) = explicit {
        return vec![d.to_path_buf()];
    }
    let mut dirs = Vec::new();
    if let Some(ctl) = on_path("pg_ctl") {
        if let Some(d) = std::fs::canonicalize(&ctl)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
        {
            dirs.push(d);
        }
        if let Some(d) = ctl.parent() {
            dirs.push(d.to_path_buf());
        }
    }
    if let Some(d) = pg_config_bindir() {
        dirs.push(d);
    }
    if let Some(v) = cluster_version(data_dir) {
        dirs.push(PathBuf::from(format!("/usr/lib/postgresql/{v}/bin")));
        dirs.push(PathBuf::from(format!("/usr/pgsql-{v}/bin")));
    }
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|d| seen.insert(d.clone()));
    dirs
}

/// The directory holding all of `programs` for `data_dir` (see the module
/// documentation), or [`PgError::ProgramMissing`] naming the first program
/// missing in the best candidate (the first that has `pg_ctl`).
pub fn find_server_bin(
    data_dir: &Path,
    explicit: Option<&Path>,
    programs: &[&str],
) -> Result<PathBuf, PgError> {
    let dirs = candidate_dirs(data_dir, explicit);
    let has = |d: &Path, p: &str| d.join(p).is_file();
    if let Some(d) = dirs.iter().find(|d| programs.iter().all(|p| has(d, p))) {
        return Ok(d.clone());
    }
    let best = dirs.iter().find(|d| has(d, "pg_ctl")).or(dirs.first());
    let program = best
        .and_then(|d| programs.iter().find(|p| !has(d, p)))
        .or(programs.first())
        .copied()
        .unwrap_or("pg_ctl")
        .to_string();
    Err(PgError::ProgramMissing {
        program,
        version: cluster_version(data_dir),
        searched: dirs,
    })
}

/// Run `program` (a path) with `args`; its standard output, or an error
/// carrying its standard error.
fn run(program: &Path, args: &[&std::ffi::OsStr]) -> Result<String, PgError> {
    let name = program.to_string_lossy().into_owned();
    let out = Command::new(program)
        .args(args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| PgError::spawn(&name, e))?;
    if !out.status.success() {
        return Err(PgError::Failed {
            program: name,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The control file's "Database cluster state" (`in production`,
/// `in archive recovery`, ...), read with `pg_controldata`.
pub fn cluster_state(bin: &Path, data_dir: &Path) -> Result<String, PgError> {
    let out = run(
        &bin.join("pg_controldata"),
        &["-D".as_ref(), data_dir.as_os_str()],
    )?;
    Ok(out
        .lines()
        .find_map(|l| l.strip_prefix("Database cluster state:"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default())
}

/// Whether `pg_ctl status` says a server runs on `data_dir`.
fn is_running(bin: &Path, data_dir: &Path) -> Result<bool, PgError> {
    let program = bin.join("pg_ctl");
    let status = Command::new(&program)
        .arg("-D")
        .arg(data_dir)
        .arg("status")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| PgError::spawn(&program.to_string_lossy(), e))?;
    Ok(status.success())
}

/// The last `n` lines of a file (for messages).
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Errors of [`start_and_wait_promoted`].
#[derive(Debug, thiserror::Error)]
pub enum RecoveryWaitError {
    #[error(transparent)]
    Program(#[from] PgError),
    #[error("PostgreSQL stopped before recovery finished (log {log}):\n{tail}")]
    Stopped { log: PathBuf, tail: String },
    #[error(
        "recovery did not finish within {limit}; the server is still running (state: {state}; see {log})"
    )]
    TimedOut {
        limit: String,
        state: String,
        log: PathBuf,
    },
}

/// Start the cluster in `data_dir` with `pg_ctl` from `bin` (logging to
/// `log`) and wait until its recovery is over: `recovery.signal` removed
/// and the control file "in production" (what `pg_ctl promote -w` checks).
/// Fails when the server stops, a program fails, or `timeout` passes.
/// `progress` gets a line at the start and every [`PROGRESS_EVERY`]: what
/// is awaited, the cluster state, the deadline and the log's last line.
pub fn start_and_wait_promoted(
    bin: &Path,
    data_dir: &Path,
    log: &Path,
    timeout: Duration,
    progress: &mut dyn FnMut(&str),
) -> Result<(), RecoveryWaitError> {
    run(
        &bin.join("pg_ctl"),
        &[
            "-D".as_ref(),
            data_dir.as_os_str(),
            "-l".as_ref(),
            log.as_os_str(),
            "-W".as_ref(),
            "start".as_ref(),
        ],
    )?;
    let started = Instant::now();
    let deadline_wall = humantime::format_rfc3339_seconds(SystemTime::now() + timeout);
    let limit = humantime::format_duration(timeout).to_string();
    progress(&format!(
        "waiting for recovery to reach its target and the server to be promoted \
         (deadline {deadline_wall}, in {limit}; log {})",
        log.display()
    ));
    let signal = data_dir.join("recovery.signal");
    let mut next_report = started + PROGRESS_EVERY;
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let state = cluster_state(bin, data_dir)?;
        if !signal.exists() && state == "in production" {
            return Ok(());
        }
        if !is_running(bin, data_dir)? {
            return Err(RecoveryWaitError::Stopped {
                log: log.to_path_buf(),
                tail: tail(log, 8),
            });
        }
        let now = Instant::now();
        if now >= started + timeout {
            return Err(RecoveryWaitError::TimedOut {
                limit,
                state,
                log: log.to_path_buf(),
            });
        }
        if now >= next_report {
            next_report = now + PROGRESS_EVERY;
            let waited = Duration::from_secs(now.duration_since(started).as_secs());
            progress(&format!(
                "still waiting for recovery ({} so far, state: {state}, deadline {deadline_wall}): {}",
                humantime::format_duration(waited),
                tail(log, 1)
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_program_is_named_with_the_places_searched() {
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::write(bin.join("pg_ctl"), b"").unwrap();
        let data = tmp.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("PG_VERSION"), b"15\n").unwrap();
        assert_eq!(cluster_version(&data).as_deref(), Some("15"));
        let e = find_server_bin(&data, Some(&bin), &SERVER_PROGRAMS).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(&e, PgError::ProgramMissing { program, .. } if program == "pg_controldata"),
            "{msg}"
        );
        assert!(msg.contains(&bin.display().to_string()), "{msg}");
        std::fs::write(bin.join("pg_controldata"), b"").unwrap();
        std::fs::write(bin.join("postgres"), b"").unwrap();
        assert_eq!(
            find_server_bin(&data, Some(&bin), &SERVER_PROGRAMS).unwrap(),
            bin
        );
    }
}
