//! `bunker mount`: a real FUSE mount shows restic's layout, reads back every
//! file of a snapshot byte for byte, shows new snapshots, and unmounts on
//! SIGTERM and SIGINT. Skipped (with a note) where FUSE is not available.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{tree_contents, Env};

fn fuse_available() -> Result<(), String> {
    if !Path::new("/dev/fuse").exists() {
        return Err("/dev/fuse is absent".into());
    }
    let has = |p: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {p}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !has("fusermount3") && !has("fusermount") {
        return Err("fusermount3 is not installed (apt-get install fuse3)".into());
    }
    Ok(())
}

fn mounted(mp: &Path) -> bool {
    std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(&*mp.to_string_lossy()))
}

/// Wait until `cond` holds, at most `secs` seconds.
fn wait_for(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Mounted {
    child: Child,
    mp: PathBuf,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if mounted(&self.mp) {
            let _ = Command::new("fusermount").arg("-u").arg(&self.mp).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn mount_reads_every_file_back_and_unmounts_on_sigterm_and_sigint() {
    if let Err(why) = fuse_available() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let env = Env::init();
    let src = env.make_source();
    std::fs::write(src.join("sub/link-target"), b"x").expect("write");
    std::os::unix::fs::symlink("link-target", src.join("sub/link")).expect("symlink");
    env.bunker().arg("backup").arg(&src).assert().success();
    let mp = env.path("mnt");
    std::fs::create_dir(&mp).expect("mkdir");
    let mut m = mount(&env, &mp);
    let latest = mp.join("snapshots/latest");

    // restic's layout.
    for top in ["snapshots", "ids", "hosts", "tags"] {
        assert!(mp.join(top).is_dir(), "{top}/ missing");
    }
    let host = std::fs::read_dir(mp.join("hosts"))
        .expect("hosts")
        .next()
        .expect("a host")
        .expect("entry")
        .path();
    assert!(host.join("latest").exists());
    assert_eq!(std::fs::read_dir(mp.join("ids")).expect("ids").count(), 1);

    // Every file of the snapshot, byte for byte.
    let inside = latest.join(src.strip_prefix("/").expect("absolute"));
    assert_eq!(tree_contents(&inside), tree_contents(&src));
    assert_eq!(
        std::fs::read_link(inside.join("sub/link")).expect("symlink"),
        PathBuf::from("link-target")
    );
    assert!(
        std::fs::write(inside.join("a.txt"), b"no").is_err(),
        "read-only"
    );

    // A snapshot saved while mounted appears.
    env.bunker()
        .args(["backup", "--tag", "later"])
        .arg(&src)
        .assert()
        .success();
    wait_for(30, "the new snapshot", || {
        mp.join("tags/later/latest").exists()
    });

    // SIGTERM unmounts and ends the command.
    let status = signal(&mut m, "TERM");
    assert!(status.success(), "exit status {status}");
    assert!(!mounted(&mp), "still mounted after SIGTERM");

    // SIGINT (Ctrl-C) ends the command too, and the mount goes away with it.
    let mut m = mount(&env, &mp);
    let status = signal(&mut m, "INT");
    assert_eq!(status.code(), Some(130), "interrupted");
    wait_for(10, "the unmount after SIGINT", || !mounted(&mp));
}

/// Start `bunker mount` at `mp` and wait until the snapshots are visible.
fn mount(env: &Env, mp: &Path) -> Mounted {
    let child = Command::new(assert_cmd::cargo::cargo_bin("bunker"))
        .env_remove("BUNKER_PASSWORD_FILE")
        .env_remove("BUNKER_PASSWORD_COMMAND")
        .env("BUNKER_REPOSITORY", &env.repo)
        .env("BUNKER_PASSWORD", common::PASSWORD)
        .arg("mount")
        .arg(mp)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn bunker mount");
    let m = Mounted {
        child,
        mp: mp.to_path_buf(),
    };
    wait_for(60, "the mount", || mp.join("snapshots/latest").exists());
    m
}

/// Send SIG`name` to the mount command and wait (bounded) for it to exit.
fn signal(m: &mut Mounted, name: &str) -> std::process::ExitStatus {
    let pid = m.child.id().to_string();
    let sig = format!("-{name}");
    let sent = Command::new("kill").args([sig.as_str(), &pid]).status();
    assert!(sent.expect("kill").success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = m.child.try_wait().expect("wait") {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "bunker mount did not exit on SIG{name}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
