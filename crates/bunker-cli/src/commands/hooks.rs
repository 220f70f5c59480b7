//! Running an item's hook commands (`sh -c`, with a time limit).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

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
        let mut child = c
            .spawn()
            .with_context(|| format!("{kind} hook {cmd:?} could not be started"))?;
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child
                .try_wait()
                .with_context(|| format!("waiting for {kind} hook {cmd:?}"))?
            {
                break s;
            }
            if start.elapsed() >= limit {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "{kind} hook {cmd:?} timed out after {}",
                    humantime::format_duration(limit)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
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
        let t = Instant::now();
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
