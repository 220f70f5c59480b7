//! Throw-away MariaDB servers for the end-to-end tests: a data directory
//! made by `mariadb-install-db` in a temporary directory, `mariadbd` with
//! its socket there, no TCP, binary logging on, killed when dropped. Tests
//! call [`mariadb_available`] first and skip with a note when the programs
//! are missing.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs the server.
pub const MARIADBD: &str = "/usr/sbin/mariadbd";

fn on_path(p: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {p}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether the MariaDB tests can run; prints a note when not.
pub fn mariadb_available() -> bool {
    let ok = Path::new(MARIADBD).exists()
        && [
            "mariadb-install-db",
            "mariadb",
            "mariadb-dump",
            "mariadb-backup",
            "mbstream",
            "mariadb-binlog",
        ]
        .iter()
        .all(|p| on_path(p));
    if !ok {
        eprintln!("note: skipping the MariaDB test (needs the mariadb-server and mariadb-backup packages)");
    }
    ok
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A running server; killed on drop.
pub struct Server {
    pub data: PathBuf,
    pub socket: PathBuf,
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// A new server with its data directory `dir/data` and socket `dir/s`.
    pub fn start(dir: &Path) -> Server {
        let data = dir.join("data");
        let user = if is_root() {
            "root".to_string()
        } else {
            std::env::var("USER").unwrap_or_default()
        };
        let out = Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--user={user}"))
            .args(["--auth-root-authentication-method=socket", "--skip-test-db"])
            .output()
            .expect("mariadb-install-db");
        assert!(
            out.status.success(),
            "mariadb-install-db: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Server::run(data, dir.join("s"))
    }

    /// Start `mariadbd` on an existing data directory.
    pub fn run(data: PathBuf, socket: PathBuf) -> Server {
        let user = if is_root() {
            "root".to_string()
        } else {
            std::env::var("USER").unwrap_or_default()
        };
        let child = Command::new(MARIADBD)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--log-bin={}", data.join("binlog").display()))
            .arg(format!("--log-error={}", data.join("err.log").display()))
            .arg(format!("--pid-file={}", data.join("pid").display()))
            .arg(format!("--user={user}"))
            .args([
                "--server-id=1",
                "--skip-networking",
                "--innodb-buffer-pool-size=32M",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd");
        let mut s = Server {
            data,
            socket,
            child,
        };
        let t = Instant::now();
        loop {
            if s.socket.exists() && s.try_sql("SELECT 1").is_some() {
                break;
            }
            if let Ok(Some(st)) = s.child.try_wait() {
                panic!(
                    "mariadbd exited ({st}): {}",
                    std::fs::read_to_string(s.data.join("err.log")).unwrap_or_default()
                );
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "mariadbd did not come up within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    }

    /// `--socket=…` for the bunker commands.
    pub fn socket_arg(&self) -> String {
        format!("--socket={}", self.socket.display())
    }

    fn try_sql(&self, sql: &str) -> Option<String> {
        let out = Command::new("mariadb")
            .arg(self.socket_arg())
            .args(["-u", "root", "-N", "-B", "-e", sql])
            .stdin(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Run `sql`; its tab-separated output, trimmed. Panics on failure.
    pub fn sql(&self, sql: &str) -> String {
        let out = Command::new("mariadb")
            .arg(self.socket_arg())
            .args(["-u", "root", "-N", "-B", "-e", sql])
            .stdin(Stdio::null())
            .output()
            .expect("mariadb");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The server's binlog index file.
    pub fn binlog_index(&self) -> PathBuf {
        self.data.join("binlog.index")
    }
}
