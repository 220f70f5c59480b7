//! PostgreSQL 15 clusters for the end-to-end tests: created with `initdb`
//! as the `postgres` user in a temporary directory, listening on a free
//! loopback port, stopped (immediate) when dropped. Tests call
//! [`pg_available`] first and skip with a note when not root or PostgreSQL
//! is missing.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs PostgreSQL 15's programs.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The path of one of PostgreSQL's programs.
pub fn pg_program(name: &str) -> String {
    format!("{PG_BIN}/{name}")
}

/// Run a command that must succeed; its standard output.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `program` run as the `postgres` user.
pub fn as_postgres(program: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--", program]);
    c
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("local addr").port()
}

/// `psql -qAtX` on 127.0.0.1 as `postgres`, connected to `db`.
pub fn psql_command(port: u16, db: &str) -> Command {
    let mut c = Command::new(pg_program("psql"));
    c.args([
        "-h",
        "127.0.0.1",
        "-U",
        "postgres",
        "-qAtX",
        "-v",
        "ON_ERROR_STOP=1",
    ])
    .arg("-p")
    .arg(port.to_string())
    .args(["-d", db]);
    c
}

/// `sql` run through [`psql_command`]; the trimmed output.
pub fn psql(port: u16, db: &str, sql: &str) -> String {
    run(psql_command(port, db).args(["-c", sql]))
        .trim()
        .to_string()
}

/// Whether the PostgreSQL tests can run (root, PostgreSQL 15 installed);
/// prints a note when not.
pub fn pg_available() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let pg = Path::new(&pg_program("initdb")).exists();
    if !root || !pg {
        eprintln!("note: skipping the PostgreSQL test (needs root and PostgreSQL 15 in {PG_BIN})");
    }
    root && pg
}

pub fn chown_postgres(p: &Path) {
    run(Command::new("chown").arg("-R").arg("postgres:").arg(p));
}

/// Hand the test's directory `dir` to `postgres`: mode 0755, owned by
/// `postgres` with everything in it.
pub fn give_to_postgres(dir: &Path) {
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    chown_postgres(dir);
}

/// The bunker under test.
pub fn bunker_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_bunker"))
}

/// `bunker` as the postgres user (PostgreSQL's programs on PATH, warnings
/// only) with the repository `repo` and the password file `pw`.
pub fn bunker_pg(repo: &Path, pw: &Path) -> Command {
    let mut c = as_postgres("env");
    c.arg(format!("PATH={PG_BIN}:/usr/bin:/bin"))
        .arg("BUNKER_LOG=warn")
        .arg(bunker_exe())
        .arg("-r")
        .arg(repo)
        .arg("--password-file")
        .arg(pw);
    c
}

/// A cluster run by the `postgres` user; stopped on drop.
pub struct Cluster {
    pub data: PathBuf,
    pub port: u16,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_postgres(&pg_program("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Cluster {
    /// `initdb` a new cluster in `data` (trust authentication, user
    /// `postgres`) listening on a free port on 127.0.0.1 with its socket in
    /// the parent directory; `extra_conf` is appended to postgresql.conf.
    /// The parent directory must be writable by `postgres`.
    pub fn init(data: PathBuf, extra_conf: &str) -> Cluster {
        let cluster = Cluster {
            port: free_port(),
            data,
        };
        run(as_postgres(&pg_program("initdb"))
            .arg("-D")
            .arg(&cluster.data)
            .args(["-A", "trust", "-U", "postgres"]));
        cluster.append_conf(&format!(
            "listen_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n{extra_conf}",
            cluster.socket_dir().display()
        ));
        cluster
    }

    /// [`Cluster::init`] with WAL archiving into `repo` by the bunker under
    /// test (`pg wal-push`, password file `pw`), then `extra_conf`; not
    /// started.
    pub fn archiving(data: PathBuf, repo: &Path, pw: &Path, extra_conf: &str) -> Cluster {
        let archive_command = format!(
            "{} -r {} --password-file {} pg wal-push %p",
            bunker_exe().display(),
            repo.display(),
            pw.display()
        );
        Cluster::init(
            data,
            &format!(
                "archive_mode = on\narchive_command = '{archive_command}'\nwal_level = replica\n{extra_conf}"
            ),
        )
    }

    /// A streaming standby of `primary` in `data`: `pg_basebackup -R` (WAL
    /// streamed), then its own port and `hot_standby = on`.
    pub fn standby_of(primary: &Cluster, data: PathBuf) -> Cluster {
        let standby = Cluster {
            port: free_port(),
            data,
        };
        run(as_postgres(&pg_program("pg_basebackup"))
            .args(["-h", "127.0.0.1", "-U", "postgres", "-X", "stream"])
            .args(["-c", "fast", "-R", "-p", &primary.port.to_string(), "-D"])
            .arg(&standby.data));
        standby.append_conf("hot_standby = on\n");
        standby
    }

    fn socket_dir(&self) -> PathBuf {
        self.data
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/tmp"))
    }

    /// Append settings to postgresql.conf (the port always comes last).
    pub fn append_conf(&self, text: &str) {
        let path = self.data.join("postgresql.conf");
        let mut conf = std::fs::read_to_string(&path).expect("postgresql.conf");
        conf.push_str(&format!("\n{text}\nport = {}\n", self.port));
        std::fs::write(&path, conf).expect("write postgresql.conf");
    }

    /// `pg_ctl start -w`, logging to `<data>.log`.
    pub fn start(&self) {
        let mut log = self.data.clone().into_os_string();
        log.push(".log");
        run(as_postgres(&pg_program("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(log)
            .args(["-w", "start"]));
    }

    /// `psql` against the `postgres` database.
    pub fn sql(&self, sql: &str) -> String {
        psql(self.port, "postgres", sql)
    }

    /// Switch to a new WAL segment and wait until the archiver has archived
    /// the one just closed.
    pub fn switch_wal_and_wait_archived(&self, timeout: Duration) {
        let last = self.sql("SELECT pg_walfile_name(pg_switch_wal())");
        let deadline = Instant::now() + timeout;
        while self.sql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") < last {
            assert!(
                Instant::now() < deadline,
                "archiving did not reach {last}; see {}.log",
                self.data.display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
