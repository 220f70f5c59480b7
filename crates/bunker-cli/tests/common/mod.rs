//! Shared helpers of the end-to-end tests: a temporary repository and a
//! `bunker` command wired to it through the environment.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use assert_cmd::Command;

pub const PASSWORD: &str = "correct horse battery staple";

/// Environment variables of the parent that must not leak into tests.
const SCRUB: &[&str] = &[
    "BUNKER_REPOSITORY",
    "BUNKER_PASSWORD",
    "BUNKER_PASSWORD_FILE",
    "BUNKER_PASSWORD_COMMAND",
    "BUNKER_COMPRESSION",
    "BUNKER_PACK_SIZE",
    "BUNKER_LOG",
    "RUST_LOG",
    "BUNKER_FAULTS",
];

pub struct Env {
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
}

impl Env {
    /// A fresh temp dir; the repository path inside it is not created.
    pub fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("repo");
        Env { dir, repo }
    }

    /// A fresh temp dir with an initialised repository.
    pub fn init() -> Env {
        let env = Env::new();
        env.bunker().arg("init").assert().success();
        env
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `bunker` without repository or password.
    pub fn bare(&self) -> Command {
        let mut c = Command::cargo_bin("bunker").expect("binary");
        for v in SCRUB {
            c.env_remove(v);
        }
        c.env("BUNKER_TEST_KDF_N", "1024").write_stdin("");
        c
    }

    /// `bunker` with the repository and password set in the environment.
    pub fn bunker(&self) -> Command {
        let mut c = self.bare();
        c.env("BUNKER_REPOSITORY", &self.repo)
            .env("BUNKER_PASSWORD", PASSWORD);
        c
    }

    /// Run and parse stdout as one JSON value.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self
            .bunker()
            .arg("--json")
            .args(args)
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "bunker {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "bunker {args:?}: stdout is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Run and parse every stdout line as JSON.
    pub fn json_lines(&self, args: &[&str]) -> Vec<serde_json::Value> {
        let out = self
            .bunker()
            .arg("--json")
            .args(args)
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "bunker {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("line {l:?} is not JSON: {e}"))
            })
            .collect()
    }

    pub fn stdout(&self, args: &[&str]) -> String {
        let out = self.bunker().args(args).output().expect("run");
        assert!(
            out.status.success(),
            "bunker {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// A small source tree: `src/{a.txt, big.bin, sub/b.txt, empty/}`.
    pub fn make_source(&self) -> PathBuf {
        let src = self.path("src");
        std::fs::create_dir_all(src.join("sub")).expect("mkdir");
        std::fs::create_dir_all(src.join("empty")).expect("mkdir");
        std::fs::write(src.join("a.txt"), b"hello bunker\n").expect("write");
        std::fs::write(src.join("sub/b.txt"), b"second file\n").expect("write");
        let big: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(src.join("big.bin"), big).expect("write");
        src
    }

    /// The id of the newest snapshot.
    pub fn latest_id(&self) -> String {
        let v = self.json(&["snapshots"]);
        let arr = v.as_array().expect("array");
        arr.last().expect("a snapshot")["id"]
            .as_str()
            .expect("id")
            .to_string()
    }
}

/// Every file below `root` with its contents (relative path -> bytes).
pub fn tree_contents(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p
                .strip_prefix(root)
                .expect("below root")
                .to_string_lossy()
                .into_owned();
            let ft = e.file_type().expect("file type");
            if ft.is_dir() {
                out.insert(format!("{rel}/"), Vec::new());
                stack.push(p);
            } else if ft.is_file() {
                out.insert(rel, std::fs::read(&p).expect("read"));
            } else {
                out.insert(rel, b"<special>".to_vec());
            }
        }
    }
    out
}

/// Where a backed-up absolute path lands below a restore target.
pub fn under(target: &Path, abs: &Path) -> PathBuf {
    target.join(abs.strip_prefix("/").expect("absolute"))
}

/// `restic check` of the repository at `repo` (password [`PASSWORD`]),
/// which must pass; `false` when restic is not installed (nothing checked).
pub fn restic_check_clean(repo: &Path) -> bool {
    if std::process::Command::new("restic")
        .arg("version")
        .output()
        .is_err()
    {
        return false;
    }
    let out = std::process::Command::new("restic")
        .arg("-r")
        .arg(repo)
        .args(["check", "--no-cache"])
        .env("RESTIC_PASSWORD", PASSWORD)
        .output()
        .expect("restic");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|_| ()).is_ok()
        && std::process::Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false)
}

/// Wait for `child` to exit for at most `limit`; past it the child is
/// killed (so a hung process does not outlive the test) and `None` is
/// returned.
pub fn wait_at_most(
    child: &mut std::process::Child,
    limit: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return Some(status);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
