//! Debian's aiosmtpd (for /usr/bin/python3) as a real SMTP server on a free
//! loopback port, storing what it receives in a maildir.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PYTHON: &str = "/usr/bin/python3";

/// An aiosmtpd that requires `AUTH` as user "bunker", password "pw" (over
/// plain text: loopback only). Arguments: port, maildir.
const AUTH_SERVER: &str = r#"
import sys
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from aiosmtpd.handlers import Mailbox
def auth(server, session, envelope, mechanism, data):
    ok = data.login == b"bunker" and data.password == b"pw"
    return AuthResult(success=ok, handled=False)
c = Controller(Mailbox(sys.argv[2]), hostname="127.0.0.1", port=int(sys.argv[1]),
               authenticator=auth, auth_require_tls=False, auth_required=True)
c.start()
sys.stdin.read()
c.stop()
"#;

/// How the server is set up.
pub enum Mode<'a> {
    /// Plain SMTP, no STARTTLS, no authentication.
    Plain,
    /// Plain SMTP requiring authentication (user "bunker", password "pw").
    Auth,
    /// STARTTLS offered and required, with this certificate and key.
    StartTls { cert: &'a Path, key: &'a Path },
    /// SMTPS (TLS from the first byte) with this certificate and key.
    Smtps { cert: &'a Path, key: &'a Path },
}

/// A running server; stopped when dropped.
pub struct Smtp {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a server, or returns `None` with a note when aiosmtpd is missing.
pub fn start(mode: Mode<'_>) -> Option<Smtp> {
    let has = Command::new(PYTHON)
        .args(["-c", "import aiosmtpd"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        eprintln!(
            "skipping: aiosmtpd for {PYTHON} is not installed (Debian package python3-aiosmtpd)"
        );
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("mail");
    let mut cmd = Command::new(PYTHON);
    let cli = |cmd: &mut Command| {
        cmd.args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"));
    };
    match mode {
        Mode::Auth => {
            // stdin stays open (piped) while the server should run.
            cmd.args(["-c", AUTH_SERVER])
                .arg(port.to_string())
                .arg(&maildir)
                .stdin(Stdio::piped());
        }
        Mode::Plain => cli(&mut cmd),
        Mode::StartTls { cert, key } => {
            cli(&mut cmd);
            cmd.arg("--tlscert").arg(cert).arg("--tlskey").arg(key);
        }
        Mode::Smtps { cert, key } => {
            cli(&mut cmd);
            cmd.arg("--smtpscert").arg(cert).arg("--smtpskey").arg(key);
        }
    }
    if !matches!(mode, Mode::Auth) {
        cmd.args(["-c", "aiosmtpd.handlers.Mailbox"]).arg(&maildir);
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start aiosmtpd");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "aiosmtpd did not listen on port {port} within 20s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(Smtp { child, port, dir })
}

impl Smtp {
    fn new_dir(&self) -> PathBuf {
        self.dir.path().join("mail/new")
    }

    /// The text of the first message received, waiting up to 10 s for it.
    pub fn first_message(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let files: Vec<_> = std::fs::read_dir(self.new_dir())
                .map(|r| r.flatten().collect())
                .unwrap_or_default();
            if let Some(f) = files.first() {
                return std::fs::read_to_string(f.path()).unwrap();
            }
            assert!(Instant::now() < deadline, "no message in the maildir");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The texts of every message received, waiting up to 10 s for at
    /// least `n` of them.
    pub fn all_messages_after(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let texts: Vec<String> = std::fs::read_dir(self.new_dir())
                .map(|r| r.flatten().collect::<Vec<_>>())
                .unwrap_or_default()
                .iter()
                .filter_map(|f| std::fs::read_to_string(f.path()).ok())
                .collect();
            if texts.len() >= n || Instant::now() >= deadline {
                return texts;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How many messages were received.
    pub fn messages(&self) -> usize {
        std::fs::read_dir(self.new_dir()).map_or(0, |r| r.count())
    }

    /// A directory for the test's own files, removed with the server.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }
}
