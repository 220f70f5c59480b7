//! A `bunker daemon` started by a test: free port, state directory, log
//! file, a small HTTP client, polling with deadlines.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `bunker` with a clean environment and a fast KDF, in `dir`.
pub fn bunker(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("bunker").expect("bunker binary");
    for (k, _) in std::env::vars() {
        if k.starts_with("BUNKER_") || k.starts_with("RESTIC_") {
            c.env_remove(k);
        }
    }
    c.env("BUNKER_TEST_KDF_N", "1024").current_dir(dir);
    c
}

/// Poll `f` until it returns `Some`, at most `deadline`; panics saying
/// what was awaited.
pub fn wait_for<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An HTTP response: status and body.
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// One HTTP/1.1 request (Connection: close).
pub fn http(port: u16, method: &str, path: &str, token: Option<&str>) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok(Response { status, body })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The value of the series `name{labels}` in a metrics text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A running daemon; killed when dropped (unless it already stopped).
pub struct Daemon {
    pub child: Child,
    pub port: u16,
    pub dir: PathBuf,
    pub state: PathBuf,
    pub log: PathBuf,
    pub token: Option<String>,
}

impl Daemon {
    /// Start `bunker daemon policy.yaml` in `dir` and wait until ready.
    pub fn start(dir: &Path, extra: &[&str]) -> Daemon {
        let port = free_port();
        let state = dir.join("state");
        let log = dir.join(format!("daemon-{port}.log"));
        let child = bunker(dir)
            .args(["daemon", "policy.yaml", "--state-dir"])
            .arg(&state)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn daemon");
        let mut d = Daemon {
            child,
            port,
            dir: dir.to_path_buf(),
            state,
            log,
            token: None,
        };
        d.wait_ready();
        d
    }

    pub fn wait_ready(&mut self) {
        let port = self.port;
        let log = self.log.clone();
        let child = &mut self.child;
        wait_for("the daemon to be ready", Duration::from_secs(30), || {
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "daemon exited ({st}):\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            http(port, "GET", "/readyz", None)
                .ok()
                .filter(|r| r.status == 200)
        });
    }

    pub fn get(&self, path: &str) -> Response {
        http(self.port, "GET", path, self.token.as_deref()).expect("HTTP request")
    }

    pub fn json(&self, path: &str) -> serde_json::Value {
        let r = self.get(path);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        serde_json::from_str(&r.body).expect("JSON body")
    }

    pub fn metrics(&self) -> String {
        let r = self.get("/metrics");
        assert_eq!(r.status, 200, "/metrics: {}", r.body);
        r.body
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(st.success(), "kill -{sig}");
    }

    /// SIGTERM, then wait for the exit (with a deadline).
    pub fn stop(&mut self) -> ExitStatus {
        self.signal("TERM");
        let child = &mut self.child;
        wait_for("the daemon to exit", Duration::from_secs(60), || {
            child.try_wait().ok().flatten()
        })
    }

    /// Successful runs of `item` in the history (newest first).
    pub fn runs(&self, item: &str) -> Vec<serde_json::Value> {
        let v = self.json(&format!("/api/v1/runs?item={item}&limit=1000"));
        v["runs"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A test directory: password file, data, a local repository path.
pub fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("pw"), "daemon-test-password\n").expect("pw");
    std::fs::create_dir(dir.path().join("data")).expect("data");
    std::fs::write(dir.path().join("data/a.txt"), "alpha\n").expect("data");
    dir
}

/// `restic` on `repo` with the test password.
pub fn restic(dir: &Path, repo: &str) -> Command {
    let mut c = Command::new("restic");
    c.env("RESTIC_PASSWORD", "daemon-test-password")
        .env("RESTIC_CACHE_DIR", dir.join("restic-cache"))
        .arg("-r")
        .arg(dir.join(repo))
        .current_dir(dir);
    c
}

pub fn have(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A real HTTP receiver on loopback: records every request's method,
/// path and body, answers 200.
pub struct Receiver {
    pub port: u16,
    pub got: std::sync::Arc<std::sync::Mutex<Vec<(String, String, String)>>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let g = got.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let g = g.clone();
                std::thread::spawn(move || {
                    if let Some(req) = read_request(s) {
                        g.lock().expect("lock").push(req);
                    }
                });
            }
        });
        Receiver { port, got }
    }

    /// Requests whose path starts with `prefix` and whose body contains `text`.
    pub fn count(&self, prefix: &str, text: &str) -> usize {
        self.got
            .lock()
            .expect("lock")
            .iter()
            .filter(|(_, p, b)| p.starts_with(prefix) && b.contains(text))
            .count()
    }

    /// Requests to exactly `path`.
    pub fn count_path(&self, path: &str) -> usize {
        self.got
            .lock()
            .expect("lock")
            .iter()
            .filter(|(_, p, _)| p == path)
            .count()
    }
}

fn read_request(mut s: TcpStream) -> Option<(String, String, String)> {
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).into_owned();
    let mut first = head.lines().next()?.split_whitespace();
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    Some((method, path, body))
}
