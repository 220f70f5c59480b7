//! A throw-away `mariadbd` on a restored data directory: private Unix
//! socket, no TCP, no grant checks, no binlog of its own. Used to replay
//! archived binlogs after a physical restore; stopped (and waited for) when
//! dropped.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{MyConn, MyError};

/// Directories searched for `mariadbd` after `PATH`.
const SERVER_DIRS: &[&str] = &["/usr/sbin", "/usr/libexec", "/usr/local/mysql/bin"];

/// Find the server program (`mariadbd`, else `mysqld`).
pub fn find_server() -> Result<PathBuf, MyError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .chain(SERVER_DIRS.iter().map(PathBuf::from))
        .collect();
    for name in ["mariadbd", "mysqld"] {
        if let Some(p) = dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
            return Ok(p);
        }
    }
    Err(MyError::Server(format!(
        "mariadbd not found on PATH or in {}: install mariadb-server to replay binlogs",
        SERVER_DIRS.join(", ")
    )))
}

/// A running throw-away server; see the module documentation.
pub struct TempServer {
    child: Option<Child>,
    socket: PathBuf,
    log: PathBuf,
}

impl TempServer {
    /// Start the server on `datadir`, with its socket, pid file and error
    /// log in `run_dir` (which must exist and be short enough for a socket
    /// path), and wait for it to answer, for at most `limit`. As root the
    /// server runs as the owner of `datadir`.
    pub fn start(datadir: &Path, run_dir: &Path, limit: Duration) -> Result<TempServer, MyError> {
        let program = find_server()?;
        let socket = run_dir.join("mysqld.sock");
        let log = run_dir.join("mysqld.err");
        let mut c = Command::new(&program);
        c.arg("--no-defaults")
            .arg(format!("--datadir={}", datadir.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!(
                "--pid-file={}",
                run_dir.join("mysqld.pid").display()
            ))
            .arg(format!("--log-error={}", log.display()))
            .args(["--skip-networking", "--skip-grant-tables", "--skip-log-bin"])
            .args(["--innodb-buffer-pool-size=64M", "--skip-slave-start"]);
        if rustix::process::geteuid().is_root() {
            let uid = std::fs::metadata(datadir)
                .map_err(|e| MyError::Server(format!("{}: {e}", datadir.display())))?
                .uid();
            let user = uzers::get_user_by_uid(uid)
                .map(|u| u.name().to_string_lossy().into_owned())
                .unwrap_or_else(|| "root".to_string());
            c.arg(format!("--user={user}"));
        }
        let child = c
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| MyError::Server(format!("cannot run {}: {e}", program.display())))?;
        let mut server = TempServer {
            child: Some(child),
            socket,
            log,
        };
        server.wait_ready(limit)?;
        Ok(server)
    }

    /// Connection settings for the server (its socket, as root).
    pub fn conn(&self) -> MyConn {
        MyConn {
            socket: Some(self.socket.clone()),
            user: Some("root".to_string()),
            ..Default::default()
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), MyError> {
        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(MyError::Server(format!(
                        "the restored server exited ({status}) while starting:\n{}",
                        self.log_tail()
                    )));
                }
            }
            if self.socket.exists() && self.conn().query("SELECT 1").is_ok() {
                return Ok(());
            }
            if started.elapsed() > limit {
                return Err(MyError::Server(format!(
                    "the restored server did not accept connections on {} within {}:\n{}",
                    self.socket.display(),
                    humantime::format_duration(limit),
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Shut the server down cleanly and wait for it, for at most `limit`
    /// (then it is killed and this is an error).
    pub fn stop(mut self, limit: Duration) -> Result<(), MyError> {
        self.stop_inner(limit)
    }

    fn stop_inner(&mut self, limit: Duration) -> Result<(), MyError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // The child is ours and not yet waited for, so its pid is still its own.
        if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let started = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return Ok(()),
                Ok(None) if started.elapsed() < limit => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(MyError::Server(format!(
                        "the restored server did not shut down within {} and was killed",
                        humantime::format_duration(limit)
                    )));
                }
            }
        }
    }
}

impl Drop for TempServer {
    fn drop(&mut self) {
        let _ = self.stop_inner(Duration::from_secs(60));
    }
}
