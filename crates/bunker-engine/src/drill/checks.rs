//! The checks of a drill: running programs with a deadline and the job's
//! cancellation, shell-command checks, and how an SQL check's answer is
//! judged.

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bunker_policy::{CheckKind, DrillCheck};
use bunker_sources::postgres::ChildReader;
use bunker_sources::CancelToken;
use serde::{Deserialize, Serialize};

/// At most this much of a check's output is kept in the report.
pub const MAX_OUTPUT: usize = 2000;

/// One check and its result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// `pg_amcheck`, `integrity_check`, or the check's command or SQL.
    pub name: String,
    /// It passed.
    pub ok: bool,
    /// It could not run for a reason that is not a failure of the data
    /// (e.g. `pg_amcheck` is not installed); `ok` is false.
    #[serde(default)]
    pub skipped: bool,
    /// Its answer (SQL) or the end of its output (commands), or why it failed.
    pub output: String,
    /// Wall time.
    pub seconds: f64,
}

impl CheckResult {
    /// A result measured from `start`.
    pub fn new(name: &str, ok: bool, output: String, start: Instant) -> CheckResult {
        CheckResult {
            name: name.to_string(),
            ok,
            skipped: false,
            output: tail(&output),
            seconds: start.elapsed().as_secs_f64(),
        }
    }
}

/// The last [`MAX_OUTPUT`] bytes of `s` (at a character boundary), trimmed.
pub fn tail(s: &str) -> String {
    let s = s.trim();
    let mut cut = s.len().saturating_sub(MAX_OUTPUT);
    while !s.is_char_boundary(cut) {
        cut += 1;
    }
    s[cut..].to_string()
}

/// How a program run ended, when not successfully.
#[derive(Debug)]
pub enum RunError {
    /// It could not be started.
    Spawn(String),
    /// It exited non-zero (or was killed); its standard error.
    Failed(String),
    /// It ran past its deadline and was stopped.
    TimedOut(Duration),
    /// The job was cancelled.
    Cancelled,
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Spawn(e) => write!(f, "cannot start: {e}"),
            RunError::Failed(e) => write!(f, "failed: {e}"),
            RunError::TimedOut(d) => write!(
                f,
                "did not finish within {} and was stopped",
                humantime::format_duration(*d)
            ),
            RunError::Cancelled => f.write_str("interrupted"),
        }
    }
}

impl std::error::Error for RunError {}

/// Run `cmd` to its end with a deadline and the job's cancellation (it runs
/// in a process group of its own, stopped with everything it started on
/// either); its standard output and error.
pub fn run_program(
    cmd: Command,
    limit: Duration,
    cancel: &CancelToken,
) -> Result<(String, String), RunError> {
    let mut child = ChildReader::spawn_watched(cmd, Some(limit), Some(cancel))
        .map_err(|e| RunError::Spawn(e.to_string()))?;
    let mut out = Vec::new();
    let read = child.read_to_end(&mut out);
    let stderr = child.stderr_text();
    match read {
        Ok(_) => Ok((String::from_utf8_lossy(&out).into_owned(), stderr)),
        Err(_) if cancel.is_cancelled() => Err(RunError::Cancelled),
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Err(RunError::TimedOut(limit)),
        Err(e) => {
            let mut msg = e.to_string();
            let so = String::from_utf8_lossy(&out);
            if !so.trim().is_empty() {
                msg = format!("{msg}; output: {}", so.trim());
            }
            Err(RunError::Failed(msg))
        }
    }
}

/// Run a shell-command check in `dir` with `env`.
pub fn run_command_check(
    command: &str,
    dir: &Path,
    env: &[(String, String)],
    limit: Duration,
    cancel: &CancelToken,
) -> CheckResult {
    let start = Instant::now();
    let mut c = Command::new("sh");
    c.arg("-c").arg(command).current_dir(dir);
    for (k, v) in env {
        c.env(k, v);
    }
    match run_program(c, limit, cancel) {
        Ok((out, err)) => CheckResult::new(command, true, format!("{out}{err}"), start),
        Err(e) => CheckResult::new(command, false, e.to_string(), start),
    }
}

/// Whether an SQL check's first value passes: equal to `expect` when given,
/// else not false (`f`, `false`, `0`, empty or NULL).
pub fn sql_value_passes(value: Option<&str>, expect: Option<&str>) -> bool {
    match (value, expect) {
        (None, _) => false,
        (Some(v), Some(e)) => v.trim() == e,
        (Some(v), None) => {
            let v = v.trim();
            !v.is_empty() && !["f", "false", "0"].contains(&v.to_ascii_lowercase().as_str())
        }
    }
}

/// The result of an SQL check whose query answered `answer` (its first
/// value, `None` without a row) or failed.
pub fn sql_result(
    check: &DrillCheck,
    answer: Result<Option<String>, String>,
    start: Instant,
) -> CheckResult {
    let CheckKind::Sql { sql, expect, .. } = &check.kind else {
        return CheckResult::new("?", false, "not an SQL check".into(), start);
    };
    match answer {
        Ok(v) => {
            let ok = sql_value_passes(v.as_deref(), expect.as_deref());
            let shown = match (&v, expect) {
                (None, _) => "no row".to_string(),
                (Some(v), Some(e)) if !ok => format!("{v:?}, expected {e:?}"),
                (Some(v), _) => v.clone(),
            };
            CheckResult::new(sql, ok, shown, start)
        }
        Err(e) => CheckResult::new(sql, false, e, start),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_answers_pass_when_true_or_expected() {
        assert!(sql_value_passes(Some("t"), None));
        assert!(sql_value_passes(Some("42"), None));
        assert!(!sql_value_passes(Some("f"), None));
        assert!(!sql_value_passes(Some("0"), None));
        assert!(!sql_value_passes(Some(""), None));
        assert!(!sql_value_passes(None, None));
        assert!(sql_value_passes(Some("42"), Some("42")));
        assert!(!sql_value_passes(Some("41"), Some("42")));
    }

    #[test]
    fn command_checks_pass_fail_and_time_out() {
        let d = tempfile::tempdir().unwrap();
        let c = CancelToken::new();
        let env = vec![("X".to_string(), "y".to_string())];
        let ok = run_command_check(
            "test \"$X\" = y && echo fine",
            d.path(),
            &env,
            Duration::from_secs(10),
            &c,
        );
        assert!(ok.ok, "{ok:?}");
        assert_eq!(ok.output, "fine");
        let bad = run_command_check(
            "echo nope >&2; exit 3",
            d.path(),
            &env,
            Duration::from_secs(10),
            &c,
        );
        assert!(!bad.ok);
        assert!(bad.output.contains("nope"), "{bad:?}");
        let slow = run_command_check("sleep 30", d.path(), &env, Duration::from_millis(300), &c);
        assert!(!slow.ok);
        assert!(slow.output.contains("did not finish"), "{slow:?}");
        assert!(slow.seconds < 20.0);
    }
}
