//! A one-time connection check for SFTP repositories.
//!
//! OpenDAL's sftp service opens ssh connections through a pool that retries a
//! failing connection until its own 30-second deadline and then reports only
//! "connection request: timeout", hiding whether the host key was refused, the
//! key was rejected or nothing listened; the `openssh` crate (used directly by
//! [`crate::SftpStorage`]) keeps only the master's log. Before the first operation
//! either SFTP backend runs the
//! same `ssh` client with the same options once (`ssh -s HOST sftp` with standard
//! input closed, so the server's sftp subsystem starts and ends at once) and turns
//! its diagnostics into a classified [`StorageError`].

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crate::error::{ErrorKind, StorageError};
use crate::sftp::{KnownHosts, SftpLocation, SftpOptions};

/// Runs the check once per storage; failures are re-checked on the next call.
#[derive(Debug)]
pub(crate) struct Preflight {
    label: String,
    args: Vec<String>,
    done: Mutex<bool>,
}

impl Preflight {
    pub(crate) fn new(loc: &SftpLocation, o: &SftpOptions, timeout: Duration, label: &str) -> Self {
        let strict = match o.known_hosts {
            KnownHosts::Strict => "yes",
            KnownHosts::Add => "accept-new",
            KnownHosts::Accept => "no",
        };
        let mut args: Vec<String> = vec![
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            format!("StrictHostKeyChecking={strict}"),
            "-o".into(),
            format!("ConnectTimeout={}", timeout.as_secs().max(1)),
        ];
        if let Some(port) = loc.port {
            args.extend(["-p".into(), port.to_string()]);
        }
        if let Some(user) = &loc.user {
            args.extend(["-l".into(), user.clone()]);
        }
        if let Some(key) = &o.key {
            args.extend([
                "-o".into(),
                "IdentitiesOnly=yes".into(),
                "-i".into(),
                key.clone(),
            ]);
        }
        args.extend(["-s".into(), "--".into(), loc.host.clone(), "sftp".into()]);
        Preflight {
            label: label.to_string(),
            args,
            done: Mutex::new(false),
        }
    }

    /// Connects once (per storage, until it succeeds).
    pub(crate) fn check(&self) -> Result<(), StorageError> {
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        if *done {
            return Ok(());
        }
        let out = Command::new("ssh")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| {
                StorageError::new(
                    ErrorKind::Invalid,
                    &self.label,
                    "",
                    format!("cannot run the ssh client (is OpenSSH installed?): {e}"),
                )
            })?;
        if out.status.success() {
            *done = true;
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(classify(&self.label, stderr.trim()))
    }
}

/// Classifies the diagnostics of a failed `ssh` run.
pub(crate) fn classify(label: &str, stderr: &str) -> StorageError {
    let lower = stderr.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| lower.contains(n));
    let (kind, advice) = if has(&[
        "host key verification failed",
        "remote host identification has changed",
        "host key is known",
    ]) {
        (
            ErrorKind::Unauthenticated,
            "the server's host key is unknown or changed: verify it and add it to \
             ~/.ssh/known_hosts (e.g. by connecting once with ssh), or use -o sftp.known_hosts=add",
        )
    } else if has(&["permission denied", "too many authentication failures"]) {
        (
            ErrorKind::Unauthenticated,
            "the server refused the login: check the user and -o sftp.key=PATH",
        )
    } else if has(&["timed out", "timeout"]) {
        (ErrorKind::Timeout, "")
    } else if has(&[
        "connection refused",
        "connection reset",
        "connection closed",
        "no route to host",
        "network is unreachable",
        "could not resolve hostname",
        "kex_exchange_identification",
        "broken pipe",
    ]) {
        (ErrorKind::Unavailable, "")
    } else if has(&["subsystem request failed"]) {
        (
            ErrorKind::Invalid,
            "the server does not offer the sftp subsystem",
        )
    } else {
        (ErrorKind::Other, "")
    };
    let detail = if stderr.is_empty() {
        "ssh failed without a message".to_string()
    } else {
        stderr.lines().collect::<Vec<_>>().join("; ")
    };
    let message = if advice.is_empty() {
        format!("ssh: {detail}")
    } else {
        format!("ssh: {detail}; {advice}")
    };
    StorageError::new(kind, label, "", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_diagnostics_are_classified() {
        let cases = [
            ("No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.\nHost key verification failed.", ErrorKind::Unauthenticated),
            ("bk@nas: Permission denied (publickey).", ErrorKind::Unauthenticated),
            ("ssh: connect to host 127.0.0.1 port 1: Connection refused", ErrorKind::Unavailable),
            ("ssh: connect to host 10.1.1.1 port 22: Connection timed out", ErrorKind::Timeout),
            ("ssh: Could not resolve hostname nas: Name or service not known", ErrorKind::Unavailable),
            ("subsystem request failed on channel 0", ErrorKind::Invalid),
            ("something odd", ErrorKind::Other),
        ];
        for (stderr, kind) in cases {
            let e = classify("sftp:nas:/r", stderr);
            assert_eq!(e.kind, kind, "{stderr}");
            assert!(e.to_string().contains("sftp:nas:/r"), "{e}");
        }
    }

    #[test]
    fn arguments_mirror_the_location_and_options() {
        let loc = SftpLocation {
            user: Some("bk".into()),
            host: "nas".into(),
            port: Some(2222),
            path: "/r".into(),
        };
        let o = SftpOptions {
            key: Some("/k".into()),
            known_hosts: KnownHosts::Add,
        };
        let p = Preflight::new(&loc, &o, Duration::from_secs(7), "sftp:nas");
        let a = p.args.join(" ");
        assert!(a.contains("StrictHostKeyChecking=accept-new"), "{a}");
        assert!(a.contains("ConnectTimeout=7") && a.contains("-p 2222") && a.contains("-l bk"));
        assert!(a.contains("-i /k") && a.ends_with("-s -- nas sftp"), "{a}");
    }
}
