//! A test harness that runs a real OpenSSH server (`sshd`) on a free loopback port.
//!
//! [`SshServer::start`] generates a host key and a user key into a temporary
//! directory, authorises the user key for the current user, and starts
//! `sshd -D -e -f CONFIG` with the internal SFTP server. Host keys stay checked:
//! the harness writes a `known_hosts` file with the server's key and an `ssh`
//! wrapper (see [`SshServer::path_env`]) that runs the system `ssh` with an
//! `ssh_config` pointing at that file, since ssh reads `~/.ssh` from the password
//! database, not from `$HOME`. Servers started with `trusted = false` are left out
//! of `known_hosts`. The server is killed and the directory deleted on drop.
//!
//! Uses only the standard library and `tempfile`, so other crates' tests can
//! include it with `#[path = ".../sshd_harness/mod.rs"] mod sshd_harness;`.
//!
//! The SFTP subsystem is OpenSSH's `sftp-server` at log level VERBOSE, logging every
//! request (open, fsync, rename, hard link...) to a file read by [`SshServer::sftp_log`];
//! where no `sftp-server` binary is found, sshd's `internal-sftp` without that log.
//!
//! The server binary is `$BUNKER_SSHD_BIN`, else `/usr/sbin/sshd`; without it (or
//! without `ssh`/`ssh-keygen`), [`sshd_or_skip`] prints a note and tests return
//! early (CI installs `openssh-server`).

#![allow(dead_code)]

use std::ffi::OsString;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const READY_TIMEOUT: Duration = Duration::from_secs(30);

fn works(program: &Path, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// The `sshd` binary, if installed (with the `ssh` client and `ssh-keygen`).
pub fn sshd_binary() -> Option<PathBuf> {
    let sshd = std::env::var_os("BUNKER_SSHD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/sshd"));
    let ok =
        sshd.is_file() && works(Path::new("ssh"), "-V") && works(Path::new("ssh-keygen"), "-?");
    ok.then_some(sshd)
}

/// The `sshd` binary, or `None` after printing why `test` is skipped.
pub fn sshd_or_skip(test: &str) -> Option<PathBuf> {
    let bin = sshd_binary();
    if bin.is_none() {
        eprintln!(
            "note: {test}: skipped, OpenSSH is not installed \
             (apt-get install openssh-server openssh-client, or set BUNKER_SSHD_BIN)"
        );
    }
    bin
}

fn err(msg: String) -> std::io::Error {
    std::io::Error::other(msg)
}

fn run(cmd: &mut Command) -> std::io::Result<String> {
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(err(format!(
            "{cmd:?}: {}; {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// OpenSSH's stand-alone `sftp-server`, where distributions put it.
fn sftp_server_binary() -> Option<PathBuf> {
    [
        "/usr/lib/openssh/sftp-server",
        "/usr/libexec/openssh/sftp-server",
        "/usr/libexec/sftp-server",
        "/usr/lib/ssh/sftp-server",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

fn keygen(path: &Path) -> std::io::Result<()> {
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "bunker-test", "-f"])
        .arg(path))
    .map(drop)
}

/// A running `sshd` that accepts the harness's user key for the current user.
#[derive(Debug)]
pub struct SshServer {
    dir: tempfile::TempDir,
    pub port: u16,
    /// The login name (the user running the tests).
    pub user: String,
    /// Private key file authorised on the server.
    pub user_key: PathBuf,
    child: Option<Child>,
    log: PathBuf,
    sftp_log: Option<PathBuf>,
}

impl SshServer {
    /// Starts a server; `trusted` adds its host key to the harness's `known_hosts`.
    pub fn start(sshd: &Path, trusted: bool) -> std::io::Result<SshServer> {
        let dir = tempfile::Builder::new().prefix("bunker-sshd").tempdir()?;
        let base = dir.path().canonicalize()?;
        let user = run(Command::new("id").arg("-un"))?;
        let host_key = base.join("host_key");
        let user_key = base.join("user_key");
        keygen(&host_key)?;
        keygen(&user_key)?;
        std::fs::copy(base.join("user_key.pub"), base.join("authorized_keys"))?;
        // Root's sshd insists on its privilege separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        // The sftp subsystem: sftp-server logging each request to a file.
        let sftp_log = base.join("sftp-server.log");
        let subsystem = match sftp_server_binary() {
            Some(bin) => {
                let wrapper = base.join("sftp-server-logged");
                std::fs::write(
                    &wrapper,
                    format!(
                        "#!/bin/sh\nexec '{}' -e -l VERBOSE \"$@\" 2>>'{}'\n",
                        bin.display(),
                        sftp_log.display()
                    ),
                )?;
                run(Command::new("chmod").arg("755").arg(&wrapper))?;
                wrapper.display().to_string()
            }
            None => "internal-sftp".to_string(),
        };
        let config = base.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\n\
                 ListenAddress 127.0.0.1\n\
                 HostKey {host}\n\
                 AuthorizedKeysFile {auth}\n\
                 PidFile none\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 PubkeyAuthentication yes\n\
                 PermitRootLogin prohibit-password\n\
                 UsePAM no\n\
                 StrictModes no\n\
                 MaxStartups 100\n\
                 MaxSessions 100\n\
                 LogLevel ERROR\n\
                 Subsystem sftp {subsystem}\n",
                host = host_key.display(),
                auth = base.join("authorized_keys").display(),
            ),
        )?;
        // The ssh wrapper: the system client, told where our known_hosts file is.
        let bin = base.join("bin");
        std::fs::create_dir_all(&bin)?;
        std::fs::create_dir_all(base.join("state"))?;
        let known_hosts = base.join("known_hosts");
        let host_pub = std::fs::read_to_string(base.join("host_key.pub"))?;
        let line = format!("[127.0.0.1]:{port} {}\n", host_pub.trim());
        std::fs::write(&known_hosts, if trusted { line } else { String::new() })?;
        std::fs::write(
            base.join("ssh_config"),
            format!(
                "Host *\n  UserKnownHostsFile {}\n  GlobalKnownHostsFile /dev/null\n",
                known_hosts.display()
            ),
        )?;
        let real_ssh = run(Command::new("sh").args(["-c", "command -v ssh"]))?;
        let wrapper = bin.join("ssh");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec '{real_ssh}' -F '{}' \"$@\"\n",
                base.join("ssh_config").display()
            ),
        )?;
        run(Command::new("chmod").arg("755").arg(&wrapper))?;

        let log = base.join("sshd.log");
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        let mut server = SshServer {
            dir,
            port,
            user,
            user_key,
            child: Some(child),
            log,
            sftp_log: (subsystem != "internal-sftp").then_some(sftp_log),
        };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&mut self) -> std::io::Result<()> {
        let start = Instant::now();
        loop {
            if let Some(c) = &mut self.child {
                if let Ok(Some(status)) = c.try_wait() {
                    return Err(err(format!(
                        "sshd exited with {status}: {}",
                        self.log_tail()
                    )));
                }
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut banner = [0u8; 4];
                if s.read_exact(&mut banner).is_ok() && &banner == b"SSH-" {
                    return Ok(());
                }
            }
            if start.elapsed() > READY_TIMEOUT {
                return Err(err(format!("sshd did not answer: {}", self.log_tail())));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The temporary directory (absolute); repositories can live under it.
    pub fn dir(&self) -> PathBuf {
        self.dir
            .path()
            .canonicalize()
            .unwrap_or_else(|_| self.dir.path().to_path_buf())
    }

    /// Directory for ssh control sockets (`XDG_STATE_HOME` of the client).
    pub fn state_dir(&self) -> PathBuf {
        self.dir().join("state")
    }

    /// `PATH` with the ssh wrapper first.
    pub fn path_env(&self) -> OsString {
        let mut paths = vec![self.dir().join("bin")];
        if let Some(old) = std::env::var_os("PATH") {
            paths.extend(std::env::split_paths(&old));
        }
        std::env::join_paths(paths).unwrap_or_default()
    }

    /// Environment for a client process: the wrapper on `PATH`, sockets in our dir.
    pub fn client_env(&self) -> Vec<(String, OsString)> {
        vec![
            ("PATH".into(), self.path_env()),
            ("XDG_STATE_HOME".into(), self.state_dir().into_os_string()),
        ]
    }

    /// `sftp://USER@127.0.0.1:PORT//ABSOLUTE/PATH`.
    pub fn location(&self, path: &Path) -> String {
        format!(
            "sftp://{}@127.0.0.1:{}/{}",
            self.user,
            self.port,
            path.display()
        )
    }

    /// `-o` options logging in with the harness's key.
    pub fn options(&self) -> Vec<(String, String)> {
        vec![("sftp.key".into(), self.user_key.display().to_string())]
    }

    /// The ssh processes (control masters and their clients) still running for
    /// this server's state dir once they have had up to 15 s to exit: a master exits
    /// asynchronously after its session is closed, later on a loaded machine.
    pub fn leftover_processes(&self) -> Vec<String> {
        self.leftover_processes_within(Duration::from_secs(15))
    }

    /// Like [`SshServer::leftover_processes`], waiting at most `limit`.
    pub fn leftover_processes_within(&self, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = self.ssh_processes();
            if left.is_empty() || Instant::now() >= deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Command lines of the processes using this server's state dir right now.
    pub fn ssh_processes(&self) -> Vec<String> {
        processes_mentioning(&self.state_dir().display().to_string())
            .into_iter()
            .map(|(_, cmd)| cmd)
            .collect()
    }

    /// Everything `sftp-server` logged so far (one line per request, e.g.
    /// `fsync "/path"`), or `None` when the server runs `internal-sftp` unlogged.
    pub fn sftp_log(&self) -> Option<String> {
        let path = self.sftp_log.as_ref()?;
        Some(std::fs::read_to_string(path).unwrap_or_default())
    }

    /// The end of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Stops the server (SIGKILL) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        self.stop();
        // Whatever a failed test left behind (control masters, their clients).
        for (pid, _) in processes_mentioning(&self.dir().display().to_string()) {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
}

/// `(pid, command line)` of every process whose command line contains `needle`.
fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(needle) && pid != std::process::id() {
            found.push((pid, cmd));
        }
    }
    found
}
