//! A test harness that runs a real WebDAV server, Apache httpd with `mod_dav` and
//! `mod_dav_fs`, on a free loopback port.
//!
//! [`DavServer::start`] writes a minimal `httpd.conf` into a temporary directory
//! (only the modules WebDAV needs: an MPM, `dav`, `dav_fs` and HTTP basic
//! authentication against an `htpasswd` file; a `DavLockDB` in the same directory)
//! and starts `apache2 -f CONF -DFOREGROUND`. The served tree is `<dir>/dav`; every
//! request needs the user [`USER`] with password [`PASSWORD`]. Requests are logged
//! (method, path, status, `Overwrite` header) for [`DavServer::requests`]. The
//! server is stopped and the directory deleted on drop.
//!
//! Uses only the standard library and `tempfile`, so other crates' tests can
//! include it with `#[path = ".../webdav_server/mod.rs"] mod webdav_server;`.
//!
//! The server binary is `$BUNKER_APACHE_BIN`, else `/usr/sbin/apache2` (Debian's
//! path) or `/usr/sbin/httpd`, with its modules in `$BUNKER_APACHE_MODULES`, else
//! `/usr/lib/apache2/modules` or `/usr/lib/httpd/modules`; `htpasswd` must be on
//! `PATH`. Without them, [`apache_or_skip`] prints a note and tests return early
//! (CI installs `apache2`).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The user every request authenticates as.
pub const USER: &str = "bunker";
/// That user's password.
pub const PASSWORD: &str = "webdav test password";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const MODULES: [(&str, &str); 8] = [
    ("mpm_event_module", "mod_mpm_event.so"),
    ("authn_core_module", "mod_authn_core.so"),
    ("authn_file_module", "mod_authn_file.so"),
    ("authz_core_module", "mod_authz_core.so"),
    ("authz_user_module", "mod_authz_user.so"),
    ("auth_basic_module", "mod_auth_basic.so"),
    ("dav_module", "mod_dav.so"),
    ("dav_fs_module", "mod_dav_fs.so"),
];

/// Apache's binary and module directory, if installed (with `htpasswd`).
#[derive(Debug, Clone)]
pub struct Apache {
    pub bin: PathBuf,
    pub modules: PathBuf,
}

fn first_existing(env: &str, candidates: &[&str], is: fn(&Path) -> bool) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        let p = PathBuf::from(p);
        return is(&p).then_some(p);
    }
    candidates.iter().map(PathBuf::from).find(|p| is(p))
}

/// Apache httpd with `mod_dav_fs`, if installed.
pub fn apache() -> Option<Apache> {
    let bin = first_existing(
        "BUNKER_APACHE_BIN",
        &["/usr/sbin/apache2", "/usr/sbin/httpd"],
        Path::is_file,
    )?;
    let modules = first_existing(
        "BUNKER_APACHE_MODULES",
        &["/usr/lib/apache2/modules", "/usr/lib/httpd/modules"],
        |p| MODULES.iter().all(|(_, f)| p.join(f).is_file()),
    )?;
    let htpasswd = Command::new("htpasswd")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    htpasswd.then_some(Apache { bin, modules })
}

/// Apache, or `None` after printing why `test` is skipped.
pub fn apache_or_skip(test: &str) -> Option<Apache> {
    let found = apache();
    if found.is_none() {
        eprintln!(
            "note: {test}: skipped, Apache httpd with mod_dav_fs is not installed \
             (apt-get install apache2, or set BUNKER_APACHE_BIN and BUNKER_APACHE_MODULES)"
        );
    }
    found
}

fn err(msg: String) -> std::io::Error {
    std::io::Error::other(msg)
}

/// A running Apache serving `<dir>/dav` over WebDAV with basic authentication.
#[derive(Debug)]
pub struct DavServer {
    dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
    log: PathBuf,
}

impl DavServer {
    pub fn start(apache: &Apache) -> std::io::Result<DavServer> {
        let dir = tempfile::Builder::new().prefix("bunker-dav").tempdir()?;
        let base = dir.path().canonicalize()?;
        std::fs::create_dir_all(base.join("dav"))?;
        std::fs::create_dir_all(base.join("run"))?;
        let out = Command::new("htpasswd")
            .args(["-b", "-c", "-B", "-C", "4"])
            .arg(base.join("htpasswd"))
            .args([USER, PASSWORD])
            .output()?;
        if !out.status.success() {
            return Err(err(format!(
                "htpasswd: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut conf = format!(
            "ServerRoot \"{b}\"\n\
             ServerName 127.0.0.1\n\
             Listen 127.0.0.1:{port}\n\
             PidFile \"{b}/run/httpd.pid\"\n\
             DefaultRuntimeDir \"{b}/run\"\n\
             ErrorLog \"{b}/error.log\"\n\
             LogLevel warn\n\
             Timeout 60\n\
             KeepAlive On\n",
            b = base.display()
        );
        for (name, file) in MODULES {
            let path = apache.modules.join(file);
            conf.push_str(&format!("LoadModule {name} \"{}\"\n", path.display()));
        }
        // Debian compiles mod_log_config in; other builds ship it as a module.
        let log_config = apache.modules.join("mod_log_config.so");
        if log_config.is_file() {
            conf.push_str(&format!(
                "<IfModule !log_config_module>\nLoadModule log_config_module \"{}\"\n</IfModule>\n",
                log_config.display()
            ));
        }
        conf.push_str(&format!(
            "LogFormat \"%m %U %>s overwrite=%{{Overwrite}}i dest=%{{Destination}}i\" requests\n\
             CustomLog \"{b}/access.log\" requests\n\
             DavLockDB \"{b}/run/davlock\"\n\
             DocumentRoot \"{b}/dav\"\n\
             <Directory \"{b}/dav\">\n\
             \x20 Dav On\n\
             \x20 AuthType Basic\n\
             \x20 AuthName bunker\n\
             \x20 AuthUserFile \"{b}/htpasswd\"\n\
             \x20 Require valid-user\n\
             </Directory>\n",
            b = base.display()
        ));
        let config = base.join("httpd.conf");
        std::fs::write(&config, conf)?;
        let log = base.join("error.log");
        let child = Command::new(&apache.bin)
            .arg("-f")
            .arg(&config)
            .arg("-DFOREGROUND")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(base.join("stderr.log"))?)
            .spawn()?;
        let mut server = DavServer {
            dir,
            port,
            child: Some(child),
            log,
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
                        "apache exited with {status}: {}",
                        self.log_tail()
                    )));
                }
            }
            if self.answers_http() {
                return Ok(());
            }
            if start.elapsed() > READY_TIMEOUT {
                return Err(err(format!("apache did not answer: {}", self.log_tail())));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn answers_http(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let req = "OPTIONS / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
        let mut head = [0u8; 5];
        s.write_all(req.as_bytes()).is_ok() && s.read_exact(&mut head).is_ok() && &head == b"HTTP/"
    }

    /// The temporary directory (absolute).
    pub fn dir(&self) -> PathBuf {
        self.dir
            .path()
            .canonicalize()
            .unwrap_or_else(|_| self.dir.path().to_path_buf())
    }

    /// The directory served at `/`.
    pub fn served(&self) -> PathBuf {
        self.dir().join("dav")
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `-o` options for `opendal:webdav` with the repository at `root` (e.g. `/r1`).
    pub fn options(&self, root: &str) -> Vec<(String, String)> {
        vec![
            ("endpoint".into(), self.endpoint()),
            ("root".into(), root.into()),
            ("username".into(), USER.into()),
            ("password".into(), PASSWORD.into()),
        ]
    }

    /// Every request so far, one line each: `METHOD PATH STATUS overwrite=HEADER
    /// dest=HEADER` (`-` for a missing header), e.g.
    /// `MOVE /r/keys/.bunker-tmp-1 201 overwrite=T dest=http://127.0.0.1:PORT/r/keys/ab`.
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir().join("access.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The end of the server's error log (and stderr), for failure messages.
    pub fn log_tail(&self) -> String {
        let mut text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.push_str(&std::fs::read_to_string(self.dir().join("stderr.log")).unwrap_or_default());
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Stops the server: SIGTERM (Apache then stops its worker processes), SIGKILL
    /// if it is still running after 10 s.
    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Drop for DavServer {
    fn drop(&mut self) {
        self.stop();
    }
}
