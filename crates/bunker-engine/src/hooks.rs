//! Running an item's hook commands (`sh -c`, with a time limit that stops the
//! hook and everything it started, see [`Watchdog`]).

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use bunker_sources::watchdog::Watchdog;
use bunker_sources::CancelToken;

/// Time limit for a hook when the policy sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// When a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    /// Before the backup; a failure skips the item.
    Before,
    /// After a successful backup.
    After,
    /// After a failed one.
    OnFailure,
}

impl HookKind {
    /// The policy spelling, also the value of `BUNKER_HOOK`.
    pub fn as_str(self) -> &'static str {
        match self {
            HookKind::Before => "before",
            HookKind::After => "after",
            HookKind::OnFailure => "on_failure",
        }
    }
}

impl std::fmt::Display for HookKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a hook failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// `sh` could not be started.
    #[error("{kind} hook {command:?} could not be started")]
    Spawn {
        /// When it ran.
        kind: HookKind,
        /// The command.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Waiting for it failed.
    #[error("waiting for {kind} hook {command:?}")]
    Wait {
        /// When it ran.
        kind: HookKind,
        /// The command.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It ran past its time limit and was stopped.
    #[error("{kind} hook {command:?} timed out after {limit}")]
    TimedOut {
        /// When it ran.
        kind: HookKind,
        /// The command.
        command: String,
        /// The limit, human readable.
        limit: String,
    },
    /// It exited non-zero or was killed.
    #[error("{kind} hook {command:?} failed ({status})")]
    Failed {
        /// When it ran.
        kind: HookKind,
        /// The command.
        command: String,
        /// Its exit status.
        status: String,
    },
    /// The job was cancelled while it ran.
    #[error("{kind} hook {command:?} was stopped: interrupted")]
    Cancelled {
        /// When it ran.
        kind: HookKind,
        /// The command.
        command: String,
    },
}

/// Run `commands` in order with `sh -c`; the first failure (non-zero exit,
/// signal, time-out or cancellation) stops and is returned. Hook output goes
/// to standard error so that `--json` output stays clean. `env` is added to
/// the environment, with `BUNKER_HOOK` set to `kind`. Hooks run in `dir`
/// (the policy file's directory, against which every relative path of the
/// policy is resolved) when given, else in the current directory.
pub fn run_hooks(
    kind: HookKind,
    commands: &[String],
    timeout: Option<Duration>,
    env: &[(&str, String)],
    dir: Option<&Path>,
    cancel: &CancelToken,
) -> Result<(), HookError> {
    let limit = timeout.unwrap_or(DEFAULT_TIMEOUT);
    for cmd in commands {
        if cancel.is_cancelled() {
            return Err(HookError::Cancelled {
                kind,
                command: cmd.clone(),
            });
        }
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::io::stderr()))
            .stderr(Stdio::inherit())
            .env("BUNKER_HOOK", kind.as_str());
        for (k, v) in env {
            c.env(k, v);
        }
        if let Some(dir) = dir {
            c.current_dir(dir);
        }
        // A group of its own: past the limit (or on cancellation) the hook
        // and everything it started are stopped together.
        c.process_group(0);
        let mut child = c.spawn().map_err(|source| HookError::Spawn {
            kind,
            command: cmd.clone(),
            source,
        })?;
        let mut watchdog = Watchdog::start_with(child.id(), Some(limit), Some(cancel.clone()));
        let status = watchdog
            .wait(&mut child)
            .map_err(|source| HookError::Wait {
                kind,
                command: cmd.clone(),
                source,
            })?;
        if watchdog.fired() {
            return Err(HookError::TimedOut {
                kind,
                command: cmd.clone(),
                limit: humantime::format_duration(limit).to_string(),
            });
        }
        if !status.success() && watchdog.cancelled() {
            return Err(HookError::Cancelled {
                kind,
                command: cmd.clone(),
            });
        }
        if !status.success() {
            return Err(HookError::Failed {
                kind,
                command: cmd.clone(),
                status: status.to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(kind: HookKind, cmds: &[&str], t: Option<Duration>) -> Result<(), HookError> {
        let cmds: Vec<String> = cmds.iter().map(|s| s.to_string()).collect();
        run_hooks(kind, &cmds, t, &[], None, &CancelToken::new())
    }

    #[test]
    fn hooks_succeed_fail_and_time_out() {
        run(HookKind::Before, &["true", "exit 0"], None).expect("ok");
        let e = run(HookKind::Before, &["true", "exit 7"], None).expect_err("fails");
        assert!(e.to_string().contains("exit 7"), "{e}");
        let t = std::time::Instant::now();
        let e = run(
            HookKind::After,
            &["sleep 5"],
            Some(Duration::from_millis(200)),
        )
        .expect_err("times out");
        assert!(e.to_string().contains("timed out"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(4));
    }

    /// Regression: on timeout only the shell was killed; what it had
    /// started in the background ran on.
    #[test]
    fn a_timed_out_hook_takes_what_it_started_along() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let cmd = format!("sleep 60 & echo $! > {}; wait", pidfile.display());
        let e = run(HookKind::Before, &[&cmd], Some(Duration::from_millis(300)))
            .expect_err("times out");
        assert!(e.to_string().contains("timed out after 300ms"), "{e}");
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        assert!(
            crate::testing::wait_gone(pid.trim(), Duration::from_secs(10)),
            "the hook's background sleep survived"
        );
    }

    #[test]
    fn cancelling_the_job_stops_a_running_hook() {
        let cancel = CancelToken::new();
        let c = cancel.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            c.cancel();
        });
        let started = std::time::Instant::now();
        let e = run_hooks(
            HookKind::Before,
            &["sleep 30".to_string()],
            None,
            &[],
            None,
            &cancel,
        )
        .expect_err("cancelled");
        t.join().unwrap();
        assert!(matches!(e, HookError::Cancelled { .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(20));
    }

    #[test]
    fn hooks_see_their_environment() {
        run_hooks(
            HookKind::Before,
            &["test \"$BUNKER_ITEM\" = web && test \"$BUNKER_HOOK\" = before".into()],
            None,
            &[("BUNKER_ITEM", "web".into())],
            None,
            &CancelToken::new(),
        )
        .expect("env visible");
    }
}
