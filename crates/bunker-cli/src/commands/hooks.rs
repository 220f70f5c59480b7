//! Running an item's hook commands (`sh -c`, with a time limit that stops the
//! hook and everything it started, see [`Watchdog`]).

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bunker_sources::watchdog::Watchdog;

/// Time limit for a hook when the policy sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Run `commands` in order with `sh -c`; the first failure (non-zero exit,
/// signal or timeout) stops and is returned. Hook output goes to standard
/// error so that `--json` output stays clean. `env` is added to the
/// environment.
pub fn run_hooks(
    kind: &str,
    commands: &[String],
    timeout: Option<Duration>,
    env: &[(&str, String)],
) -> Result<()> {
    let limit = timeout.unwrap_or(DEFAULT_TIMEOUT);
    for cmd in commands {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::io::stderr()))
            .stderr(Stdio::inherit())
            .env("BUNKER_HOOK", kind);
        for (k, v) in env {
            c.env(k, v);
        }
        // A group of its own: past the limit the hook and everything it
        // started are stopped together.
        c.process_group(0);
        let mut child = c
            .spawn()
            .with_context(|| format!("{kind} hook {cmd:?} could not be started"))?;
        let mut watchdog = Watchdog::start(child.id(), limit);
        let status = watchdog
            .wait(&mut child)
            .with_context(|| format!("waiting for {kind} hook {cmd:?}"))?;
        if watchdog.fired() {
            bail!(
                "{kind} hook {cmd:?} timed out after {}",
                humantime::format_duration(limit)
            );
        }
        if !status.success() {
            bail!("{kind} hook {cmd:?} failed ({status})");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_succeed_fail_and_time_out() {
        run_hooks("before", &["true".into(), "exit 0".into()], None, &[]).expect("ok");
        let e =
            run_hooks("before", &["true".into(), "exit 7".into()], None, &[]).expect_err("fails");
        assert!(e.to_string().contains("exit 7"), "{e}");
        let t = std::time::Instant::now();
        let e = run_hooks(
            "after",
            &["sleep 5".into()],
            Some(Duration::from_millis(200)),
            &[],
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
        let e = run_hooks("before", &[cmd], Some(Duration::from_millis(300)), &[])
            .expect_err("times out");
        assert!(e.to_string().contains("timed out after 300ms"), "{e}");
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        let stat = format!("/proc/{}/stat", pid.trim());
        let t = std::time::Instant::now();
        let alive = || {
            std::fs::read_to_string(&stat).is_ok_and(|s| {
                !s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            })
        };
        while alive() && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(), "the hook's background sleep survived");
    }

    #[test]
    fn hooks_see_their_environment() {
        run_hooks(
            "before",
            &["test \"$BUNKER_ITEM\" = web && test \"$BUNKER_HOOK\" = before".into()],
            None,
            &[("BUNKER_ITEM", "web".into())],
        )
        .expect("env visible");
    }
}
