//! A test harness that runs real Garage (S3-compatible object store) clusters.
//!
//! [`GarageCluster::start`] writes one `garage.toml` per node into a temporary
//! directory, binds every node to free loopback ports, starts the servers, joins
//! them into one cluster, applies a layout, creates a bucket and an access key,
//! and waits until the S3 API answers. Nodes can be stopped, killed and started
//! again; everything is killed and deleted on drop.
//!
//! Uses only the standard library and `tempfile`, so other crates' tests can
//! include it with `#[path = ".../garage_harness/mod.rs"] mod garage_harness;`.
//!
//! The binary is `$BUNKER_GARAGE_BIN`, else `garage` on `PATH`, else
//! `~/.cargo/bin/garage`. Without it, [`garage_or_skip`] prints a note and tests
//! return early (CI installs Garage).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Region configured in every test cluster.
pub const REGION: &str = "garage";
/// Bucket created by [`GarageCluster::start`].
pub const BUCKET: &str = "bunker-test";
const KEY_NAME: &str = "bunker-test-key";
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// The Garage binary, if installed.
pub fn garage_binary() -> Option<PathBuf> {
    let works = |p: &Path| {
        Command::new(p)
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if let Some(p) = std::env::var_os("BUNKER_GARAGE_BIN") {
        let p = PathBuf::from(p);
        return works(&p).then_some(p);
    }
    let on_path = PathBuf::from("garage");
    if works(&on_path) {
        return Some(on_path);
    }
    let home = std::env::var_os("HOME")?;
    let cargo = Path::new(&home).join(".cargo/bin/garage");
    works(&cargo).then_some(cargo)
}

/// The Garage binary, or `None` after printing why `test` is skipped.
pub fn garage_or_skip(test: &str) -> Option<PathBuf> {
    let bin = garage_binary();
    if bin.is_none() {
        eprintln!(
            "note: {test}: skipped, the `garage` binary is not installed \
             (cargo install --locked garage, or set BUNKER_GARAGE_BIN)"
        );
    }
    bin
}

/// One Garage server of a cluster.
#[derive(Debug)]
pub struct GarageNode {
    pub config: PathBuf,
    pub s3_port: u16,
    pub rpc_port: u16,
    pub admin_port: u16,
    /// `<node id>@127.0.0.1:<rpc port>`.
    pub address: String,
    log: PathBuf,
    child: Option<Child>,
}

impl GarageNode {
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }
}

/// A running Garage cluster with one bucket and one key allowed on it.
#[derive(Debug)]
pub struct GarageCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    pub nodes: Vec<GarageNode>,
    pub replication_factor: usize,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    // Hold all listeners until every port is chosen so no port repeats.
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<_>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

fn random_hex(bytes: usize) -> std::io::Result<String> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn err(msg: String) -> std::io::Error {
    std::io::Error::other(msg)
}

fn describe(out: &Output) -> String {
    format!(
        "{}; stdout: {}; stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

/// Retries `f` until it returns `Ok` or `timeout` passes; returns the last error.
fn retry<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<T, String>,
) -> std::io::Result<T> {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if start.elapsed() > timeout => {
                return Err(err(format!(
                    "garage: {what}: gave up after {timeout:?}: {e}"
                )))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// Sends `GET path` to `127.0.0.1:port` and returns the HTTP status code.
fn http_status(port: u16, path: &str) -> Result<u16, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&head);
    text.get(9..12)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {text:?}"))
}

impl GarageCluster {
    /// A single-node cluster (replication factor 1).
    pub fn single(bin: &Path) -> std::io::Result<GarageCluster> {
        Self::start(bin, 1, 1)
    }

    /// `nodes` servers with the given replication factor (1..=nodes), each in a
    /// zone of its own.
    pub fn start(
        bin: &Path,
        nodes: usize,
        replication_factor: usize,
    ) -> std::io::Result<GarageCluster> {
        if nodes == 0 || replication_factor == 0 || replication_factor > nodes {
            return Err(err(format!(
                "garage: invalid cluster shape: {nodes} nodes, replication {replication_factor}"
            )));
        }
        let dir = tempfile::Builder::new().prefix("bunker-garage").tempdir()?;
        let secret = random_hex(32)?;
        let admin_token = random_hex(16)?;
        let ports = free_ports(nodes * 3)?;
        let mut cluster = GarageCluster {
            bin: bin.to_path_buf(),
            dir,
            nodes: Vec::new(),
            replication_factor,
            bucket: BUCKET.to_string(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
        };
        for i in 0..nodes {
            let (rpc, s3, admin) = (ports[3 * i], ports[3 * i + 1], ports[3 * i + 2]);
            let base = cluster.dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(base.join("meta"))?;
            std::fs::create_dir_all(base.join("data"))?;
            let config = base.join("garage.toml");
            std::fs::write(
                &config,
                format!(
                    "metadata_dir = \"{meta}\"\n\
                     data_dir = \"{data}\"\n\
                     db_engine = \"sqlite\"\n\
                     replication_factor = {replication_factor}\n\
                     rpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
                     rpc_public_addr = \"127.0.0.1:{rpc}\"\n\
                     rpc_secret = \"{secret}\"\n\n\
                     [s3_api]\n\
                     s3_region = \"{REGION}\"\n\
                     api_bind_addr = \"127.0.0.1:{s3}\"\n\
                     root_domain = \".s3.garage.localhost\"\n\n\
                     [admin]\n\
                     api_bind_addr = \"127.0.0.1:{admin}\"\n\
                     admin_token = \"{admin_token}\"\n",
                    meta = base.join("meta").display(),
                    data = base.join("data").display(),
                ),
            )?;
            cluster.nodes.push(GarageNode {
                config,
                s3_port: s3,
                rpc_port: rpc,
                admin_port: admin,
                address: String::new(),
                log: base.join("garage.log"),
                child: None,
            });
        }
        for i in 0..nodes {
            cluster.spawn(i)?;
        }
        for i in 0..nodes {
            let out = retry("node id", READY_TIMEOUT, || {
                let out = cluster.garage(i, &["node", "id", "-q"])?;
                let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if id.contains('@') {
                    Ok(id)
                } else {
                    Err(format!("unexpected node id {id:?}"))
                }
            })?;
            cluster.nodes[i].address = out;
        }
        for i in 1..nodes {
            let addr = cluster.nodes[i].address.clone();
            retry("node connect", READY_TIMEOUT, || {
                cluster.garage(0, &["node", "connect", &addr]).map(drop)
            })?;
        }
        for i in 0..nodes {
            let id = cluster.nodes[i]
                .address
                .split('@')
                .next()
                .unwrap_or_default()
                .to_string();
            let zone = format!("dc{}", i + 1);
            retry("layout assign", READY_TIMEOUT, || {
                cluster
                    .garage(0, &["layout", "assign", "-z", &zone, "-c", "1G", &id])
                    .map(drop)
            })?;
        }
        cluster.garage_ok(0, &["layout", "apply", "--version", "1"])?;
        retry("bucket create", READY_TIMEOUT, || {
            cluster.garage(0, &["bucket", "create", BUCKET]).map(drop)
        })?;
        let key = cluster.garage_ok(0, &["key", "create", KEY_NAME])?;
        let text = String::from_utf8_lossy(&key.stdout).to_string();
        let field = |label: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(label).map(|v| v.trim().to_string()))
                .filter(|v| !v.is_empty())
        };
        cluster.access_key_id =
            field("Key ID:").ok_or_else(|| err(format!("garage: no key id in {text:?}")))?;
        cluster.secret_access_key = field("Secret key:")
            .ok_or_else(|| err(format!("garage: no secret key in {text:?}")))?;
        cluster.garage_ok(
            0,
            &[
                "bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", KEY_NAME,
            ],
        )?;
        cluster.wait_healthy()?;
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) -> std::io::Result<()> {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)?;
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&node.config)
            .arg("server")
            .env("RUST_LOG", "garage=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        node.child = Some(child);
        Ok(())
    }

    /// Runs the garage CLI against node `i`; `Err` with the output on failure.
    pub fn garage(&self, i: usize, args: &[&str]) -> Result<Output, String> {
        let out = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.nodes[i].config)
            .args(args)
            .env("RUST_LOG", "error")
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(describe(&out))
        }
    }

    fn garage_ok(&self, i: usize, args: &[&str]) -> std::io::Result<Output> {
        self.garage(i, args)
            .map_err(|e| err(format!("garage {}: {e}", args.join(" "))))
    }

    /// Waits until every running node reports a healthy cluster and answers S3.
    pub fn wait_healthy(&mut self) -> std::io::Result<()> {
        let running: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_running())
            .collect();
        for i in running {
            let (admin, s3) = (self.nodes[i].admin_port, self.nodes[i].s3_port);
            // 503 while partitions lack quorum; 404 if this version has no such endpoint.
            retry("health", READY_TIMEOUT, || {
                match http_status(admin, "/health")? {
                    200 | 404 => Ok(()),
                    code => Err(format!("health answered {code}")),
                }
            })?;
            // Any HTTP answer (403 without credentials) means the S3 API is up.
            retry("s3 api", READY_TIMEOUT, || http_status(s3, "/").map(drop))?;
        }
        Ok(())
    }

    /// `http://127.0.0.1:PORT` of node `i`'s S3 API.
    pub fn endpoint_of(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].s3_port)
    }

    /// `http://127.0.0.1:PORT` of node 0's S3 API.
    /// A scratch directory that lives as long as the cluster (e.g. for caches).
    pub fn scratch_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn endpoint(&self) -> String {
        self.endpoint_of(0)
    }

    /// The repository location `s3:http://127.0.0.1:PORT/BUCKET/PREFIX` on node 0.
    pub fn location(&self, prefix: &str) -> String {
        format!("s3:{}/{}/{}", self.endpoint(), self.bucket, prefix)
    }

    /// `AWS_*` variables with the cluster's credentials and region.
    pub fn aws_env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), self.access_key_id.clone()),
            (
                "AWS_SECRET_ACCESS_KEY".into(),
                self.secret_access_key.clone(),
            ),
            ("AWS_DEFAULT_REGION".into(), REGION.into()),
        ]
    }

    /// The same credentials as `-o key=value` backend options.
    pub fn options(&self) -> Vec<(String, String)> {
        vec![
            ("s3.access_key_id".into(), self.access_key_id.clone()),
            (
                "s3.secret_access_key".into(),
                self.secret_access_key.clone(),
            ),
            ("s3.region".into(), REGION.into()),
        ]
    }

    /// Kills node `i` at once (SIGKILL) and waits for it to exit.
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops node `i` gracefully (SIGTERM), killing it after 10 seconds.
    pub fn stop_node(&mut self, i: usize) {
        let Some(mut c) = self.nodes[i].child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if matches!(c.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
    }

    /// Kills every node.
    pub fn kill_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill_node(i);
        }
    }

    /// Starts a stopped node again (same identity and data) and waits until the
    /// running nodes are healthy.
    pub fn start_node(&mut self, i: usize) -> std::io::Result<()> {
        if !self.nodes[i].is_running() {
            self.spawn(i)?;
        }
        self.wait_healthy()
    }

    /// Starts every stopped node again and waits until the cluster is healthy.
    pub fn start_all(&mut self) -> std::io::Result<()> {
        for i in 0..self.nodes.len() {
            if !self.nodes[i].is_running() {
                self.spawn(i)?;
            }
        }
        self.wait_healthy()
    }

    /// The last lines of node `i`'s log, for failure messages.
    pub fn log_tail(&self, i: usize) -> String {
        let text = std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for GarageCluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}
