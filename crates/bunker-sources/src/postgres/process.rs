//! Running PostgreSQL's client programs (`pg_basebackup`, `pg_dump`,
//! `pg_dumpall`, `pg_restore`, `psql`) with connection settings, and reading
//! their output as a stream that fails if the program fails.

use std::ffi::OsString;
use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;

use super::PgError;
use crate::cancel::CancelToken;
use crate::watchdog::Watchdog;

/// How much of a program's standard error is kept for messages.
const STDERR_KEEP: usize = 64 * 1024;

/// Connection settings; unset fields fall back to the `PG*` environment.
#[derive(Clone, Default)]
pub struct PgConn {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub dbname: Option<String>,
    /// Directory of the PostgreSQL programs (default: found on `PATH`).
    pub bin_dir: Option<PathBuf>,
    /// Password handed to the programs as `PGPASSWORD` (never printed).
    pub password: Option<String>,
    /// Time limit for each streamed program (`pg_dump`, `pg_dumpall`,
    /// `pg_basebackup`): see [`PgConn::spawn_stream`].
    pub timeout: Option<Duration>,
    /// The job's cancellation: cancelling it stops every program started
    /// through this connection (they run in process groups of their own).
    pub cancel: Option<CancelToken>,
}

impl PartialEq for PgConn {
    /// Connection settings only; the cancellation token is not a setting.
    fn eq(&self, o: &Self) -> bool {
        (
            &self.host,
            self.port,
            &self.user,
            &self.dbname,
            &self.bin_dir,
        ) == (&o.host, o.port, &o.user, &o.dbname, &o.bin_dir)
            && (&self.password, self.timeout) == (&o.password, o.timeout)
    }
}

impl Eq for PgConn {}

impl std::fmt::Debug for PgConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConn")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("bin_dir", &self.bin_dir)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl PgConn {
    /// The path of a PostgreSQL program.
    pub fn program(&self, name: &str) -> PathBuf {
        match &self.bin_dir {
            Some(d) => d.join(name),
            None => PathBuf::from(name),
        }
    }

    /// A command for `program` with the connection settings in its environment.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new(self.program(program));
        if let Some(h) = &self.host {
            c.env("PGHOST", h);
        }
        if let Some(p) = self.port {
            c.env("PGPORT", p.to_string());
        }
        if let Some(u) = &self.user {
            c.env("PGUSER", u);
        }
        if let Some(d) = &self.dbname {
            c.env("PGDATABASE", d);
        }
        if let Some(p) = &self.password {
            c.env("PGPASSWORD", p);
        }
        c
    }

    /// Start `cmd` (built by [`PgConn::command`]) as a stream, under this
    /// connection's time limit when it has one (see [`ChildReader::spawn_limited`]).
    pub fn spawn_stream(&self, cmd: Command) -> Result<ChildReader, PgError> {
        ChildReader::spawn_watched(cmd, self.timeout, self.cancel.as_ref())
    }

    /// Run `psql -AtX -c sql` against `dbname` (or the default database) and
    /// return its trimmed output, under this connection's time limit when it
    /// has one (a server that accepts the connection but never answers would
    /// otherwise hang the caller).
    pub fn query(&self, dbname: Option<&str>, sql: &str) -> Result<String, PgError> {
        let mut c = self.command("psql");
        c.args(["-AtX", "-v", "ON_ERROR_STOP=1", "-c", sql]);
        if let Some(d) = dbname {
            c.args(["-d", d]);
        }
        let mut child = ChildReader::spawn_watched(c, self.timeout, self.cancel.as_ref())?;
        let mut out = Vec::new();
        let read = child.stdout.read_to_end(&mut out);
        child.finish_pg()?;
        read.map_err(|e| PgError::spawn("psql", e))?;
        Ok(String::from_utf8_lossy(&out).trim().to_string())
    }
}

/// The standard output of a running program. Reading returns its bytes;
/// at end of stream the program is waited for, and a non-zero exit turns
/// into an error (so a truncated stream is never mistaken for a whole one).
pub struct ChildReader {
    program: String,
    child: Child,
    stdout: ChildStdout,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_thread: Option<JoinHandle<()>>,
    watchdog: Option<Watchdog>,
    finished: bool,
}

impl std::fmt::Debug for ChildReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildReader")
            .field("program", &self.program)
            .finish_non_exhaustive()
    }
}

impl ChildReader {
    /// Start `cmd` with its standard output piped to this reader and its
    /// standard error collected.
    pub fn spawn(cmd: Command) -> Result<ChildReader, PgError> {
        ChildReader::spawn_limited(cmd, None)
    }

    /// Like [`ChildReader::spawn`]; with a `limit`, the program runs in a
    /// process group of its own, and past the limit the whole group is
    /// stopped (see [`Watchdog`]) and the stream ends with
    /// [`PgError::TimedOut`].
    pub fn spawn_limited(cmd: Command, limit: Option<Duration>) -> Result<ChildReader, PgError> {
        ChildReader::spawn_watched(cmd, limit, None)
    }

    /// Like [`ChildReader::spawn_limited`]; with a `cancel` token the
    /// program also runs in a process group of its own, which cancelling
    /// the token stops.
    pub fn spawn_watched(
        mut cmd: Command,
        limit: Option<Duration>,
        cancel: Option<&CancelToken>,
    ) -> Result<ChildReader, PgError> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        let watched = limit.is_some() || cancel.is_some();
        if watched {
            cmd.process_group(0);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| PgError::spawn(&program, e))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| PgError::spawn(&program, io::Error::other("no stdout pipe")))?;
        let mut err_pipe = child.stderr.take();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr.clone();
        let stderr_thread = std::thread::spawn(move || {
            let Some(pipe) = err_pipe.as_mut() else {
                return;
            };
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut s = sink.lock();
                s.extend_from_slice(&buf[..n]);
                if s.len() > STDERR_KEEP * 2 {
                    let cut = s.len() - STDERR_KEEP;
                    s.drain(..cut);
                }
            }
        });
        let watchdog = watched.then(|| Watchdog::start_with(child.id(), limit, cancel.cloned()));
        Ok(ChildReader {
            program,
            child,
            stdout,
            stderr,
            stderr_thread: Some(stderr_thread),
            watchdog,
            finished: false,
        })
    }

    /// What the program wrote to standard error so far (complete once the
    /// stream has ended).
    pub fn stderr_buffer(&self) -> Arc<Mutex<Vec<u8>>> {
        self.stderr.clone()
    }

    /// The collected standard error as text.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock()).into_owned()
    }

    /// Wait for the program once its output has ended; a non-zero exit is
    /// an error, and [`PgError::TimedOut`] when the time limit stopped it.
    fn finish_pg(&mut self) -> Result<(), PgError> {
        self.finished = true;
        let waited = match &mut self.watchdog {
            Some(wd) => wd
                .wait(&mut self.child)
                .map(|status| (status, wd.fired().then(|| wd.limit()))),
            None => self.child.wait().map(|status| (status, None)),
        };
        let (status, timed_out) = waited.map_err(|e| PgError::spawn(&self.program, e))?;
        if let Some(t) = self.stderr_thread.take() {
            let _ = t.join();
        }
        let cancelled = self.watchdog.as_ref().is_some_and(Watchdog::cancelled);
        if cancelled && !status.success() {
            return Err(PgError::Cancelled {
                program: self.program.clone(),
            });
        }
        if let (Some(limit), false) = (timed_out, status.success()) {
            return Err(PgError::TimedOut {
                program: self.program.clone(),
                limit: humantime::format_duration(limit).to_string(),
            });
        }
        if status.success() {
            Ok(())
        } else {
            Err(PgError::Failed {
                program: self.program.clone(),
                status: status.to_string(),
                stderr: self.stderr_text().trim().to_string(),
            })
        }
    }

    fn finish(&mut self) -> io::Result<()> {
        self.finish_pg().map_err(|e| match e {
            PgError::TimedOut { .. } => io::Error::new(io::ErrorKind::TimedOut, e.to_string()),
            PgError::Spawn { source, .. } => source,
            other => io::Error::other(other.to_string()),
        })
    }
}

impl Read for ChildReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.finished {
            return Ok(0);
        }
        let n = self.stdout.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.finish()?;
        }
        Ok(n)
    }
}

impl Drop for ChildReader {
    fn drop(&mut self) {
        if !self.finished {
            // Abandoned mid-stream (the backup failed): do not leave the
            // program (or, in a group of its own, anything it started) behind.
            match &mut self.watchdog {
                Some(wd) => wd.kill_group(),
                None => {
                    let _ = self.child.kill();
                }
            }
            let _ = self.child.wait();
        }
    }
}

/// `pg_basebackup` writing a tar of the whole cluster to standard output,
/// without WAL (the archive provides it), with a fast checkpoint and
/// verbose output (its end point is read from standard error).
pub fn basebackup_command(conn: &PgConn, label: &str) -> Command {
    let mut c = conn.command("pg_basebackup");
    c.args(["-D", "-", "-F", "t", "-X", "none", "-c", "fast", "-v"]);
    c.arg("-l").arg(label);
    c
}

/// `pg_dump -Fc` of one database to standard output.
pub fn dump_command(conn: &PgConn, dbname: &str) -> Command {
    let mut c = conn.command("pg_dump");
    c.args(["-F", "c"]);
    c.arg("-d").arg(dbname);
    c
}

/// `pg_dumpall --globals-only` (roles, tablespaces) to standard output.
pub fn globals_command(conn: &PgConn) -> Command {
    let mut c = conn.command("pg_dumpall");
    c.arg("--globals-only");
    c
}

/// `pg_restore` reading a custom-format dump from standard input into `dbname`.
pub fn restore_command(conn: &PgConn, dbname: &str) -> Command {
    let mut c = conn.command("pg_restore");
    c.args(["--no-owner", "--exit-on-error"]);
    c.arg("-d").arg(dbname);
    c
}

/// Quote a value for a `postgresql.conf` line (`'...'` with `'` doubled).
pub fn conf_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// Quote an SQL identifier (`"..."` with `"` doubled).
pub fn ident_quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quote one word for a POSIX shell command line.
pub fn shell_quote(word: &OsString) -> String {
    let s = word.to_string_lossy();
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-=:,+@%".contains(&b))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_reports_failure_at_end_of_stream() {
        let mut c = Command::new("sh");
        c.args(["-c", "printf hello; echo oops >&2; exit 3"]);
        let mut r = ChildReader::spawn(c).unwrap();
        let mut out = Vec::new();
        let e = r.read_to_end(&mut out).unwrap_err();
        assert_eq!(out, b"hello");
        assert!(e.to_string().contains("oops"), "{e}");
        assert!(r.stderr_text().contains("oops"));

        let mut c = Command::new("sh");
        c.args(["-c", "printf ok; echo note >&2"]);
        let mut r = ChildReader::spawn(c).unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"ok");
        assert_eq!(r.stderr_text().trim(), "note");
    }

    /// Whether process `pid` is gone (or a zombie waiting for init).
    fn gone(pid: &str) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(s) => s
                .rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z')),
        }
    }

    fn wait_gone(pid: &str) -> bool {
        let t = std::time::Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if gone(pid) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    #[test]
    fn a_time_limit_stops_the_whole_pipeline_and_fails_the_stream() {
        let mut c = Command::new("sh");
        // The background sleep holds standard output open: only stopping
        // the whole group ends the stream.
        c.args(["-c", "sleep 60 & echo $!; wait; printf never"]);
        let t = std::time::Instant::now();
        let mut r = ChildReader::spawn_limited(c, Some(Duration::from_millis(300))).unwrap();
        let mut out = Vec::new();
        let e = r.read_to_end(&mut out).unwrap_err();
        assert!(
            t.elapsed() < Duration::from_secs(8),
            "took {:?}",
            t.elapsed()
        );
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(e.to_string().contains("did not finish within 300ms"), "{e}");
        let out = String::from_utf8(out).unwrap();
        assert!(!out.contains("never"), "{out}");
        assert!(
            wait_gone(out.trim()),
            "the background sleep {} survived",
            out.trim()
        );
    }

    #[test]
    fn a_time_limit_does_not_delay_or_fail_a_quick_program() {
        let mut c = Command::new("sh");
        c.args(["-c", "printf ok"]);
        let t = std::time::Instant::now();
        let mut r = ChildReader::spawn_limited(c, Some(Duration::from_secs(60))).unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"ok");
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "took {:?}",
            t.elapsed()
        );
        // A failing program is still reported as failed, not as timed out.
        let mut c = Command::new("sh");
        c.args(["-c", "exit 4"]);
        let e = ChildReader::spawn_limited(c, Some(Duration::from_secs(60)))
            .unwrap()
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert!(e.to_string().contains("exit status: 4"), "{e}");
    }

    #[test]
    fn an_abandoned_limited_stream_takes_its_whole_group_down() {
        let mut c = Command::new("sh");
        c.args(["-c", "sleep 60 & echo $!; wait"]);
        let mut r = ChildReader::spawn_limited(c, Some(Duration::from_secs(600))).unwrap();
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while r.read(&mut b).unwrap() == 1 && b[0] != b'\n' {
            line.push(b[0]);
        }
        let pid = String::from_utf8(line).unwrap();
        assert!(!gone(&pid));
        drop(r);
        assert!(wait_gone(&pid), "the background sleep {pid} survived");
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let conn = PgConn {
            bin_dir: Some(PathBuf::from("/nonexistent-bin-dir")),
            ..Default::default()
        };
        let e = ChildReader::spawn(conn.command("pg_dump")).unwrap_err();
        assert!(matches!(e, PgError::Spawn { .. }), "{e}");
    }

    #[test]
    fn streams_run_under_the_connections_time_limit() {
        let conn = PgConn {
            timeout: Some(Duration::from_millis(300)),
            ..Default::default()
        };
        let mut c = Command::new("sh");
        c.args(["-c", "sleep 60"]);
        let mut r = conn.spawn_stream(c).unwrap();
        let e = r.read(&mut [0u8; 16]).unwrap_err();
        assert!(e.to_string().contains("did not finish within 300ms"), "{e}");
    }

    #[test]
    fn cancelling_the_job_stops_a_stream_and_says_so() {
        let cancel = CancelToken::new();
        let conn = PgConn {
            cancel: Some(cancel.clone()),
            ..Default::default()
        };
        let mut c = Command::new("sh");
        c.args(["-c", "sleep 60 & wait"]);
        let mut r = conn.spawn_stream(c).unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            cancel.cancel();
        });
        let started = std::time::Instant::now();
        let e = r.read(&mut [0u8; 16]).unwrap_err();
        t.join().unwrap();
        assert!(e.to_string().contains("interrupted"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(30));
    }

    #[test]
    fn connection_goes_to_the_environment() {
        let conn = PgConn {
            host: Some("/tmp/sock".into()),
            port: Some(5433),
            user: Some("u".into()),
            dbname: Some("d".into()),
            bin_dir: None,
            password: Some("secret".into()),
            timeout: None,
            cancel: None,
        };
        assert!(!format!("{conn:?}").contains("secret"));
        let c = conn.command("psql");
        let envs: Vec<_> = c
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect();
        assert!(envs.contains(&("PGPORT".into(), Some("5433".into()))));
        assert!(envs.contains(&("PGHOST".into(), Some("/tmp/sock".into()))));
        let b = basebackup_command(&conn, "x");
        let args: Vec<_> = b
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(args.windows(2).any(|w| w == ["-X", "none"]));
    }

    #[test]
    fn quoting() {
        assert_eq!(conf_quote("it's"), "'it''s'");
        assert_eq!(ident_quote("a\"b"), "\"a\"\"b\"");
        assert_eq!(
            shell_quote(&OsString::from("/usr/bin/bunker")),
            "/usr/bin/bunker"
        );
        assert_eq!(shell_quote(&OsString::from("a b'c")), "'a b'\\''c'");
        assert_eq!(shell_quote(&OsString::from("")), "''");
    }
}
