//! `command` steps: `sh -c` with the run's environment, a time limit, and
//! the last lines of its output in the report.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::steps::State;
use super::RunOptions;
use crate::error::{Context, EngineError, Result};

/// Run `run` with `sh -c`, the run's environment, at most `timeout`.
pub(crate) fn run(
    st: &State,
    run: &str,
    timeout: Duration,
    dir: Option<&Path>,
    opts: &RunOptions<'_>,
) -> Result<String> {
    let out_file = tempfile_in(st)?;
    let mut c = Command::new("sh");
    c.arg("-c").arg(run).stdin(Stdio::null());
    c.stdout(out_file.try_clone().context("command output")?);
    c.stderr(out_file.try_clone().context("command output")?);
    if let Some(d) = dir {
        c.current_dir(d);
    }
    for (k, v) in &st.env {
        c.env(k, v);
    }
    let mut child = c.spawn().with_context(|| format!("starting `{run}`"))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().context("waiting for the command")? {
            break Some(s);
        }
        if Instant::now() >= deadline || opts.cancel.is_cancelled() {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = read_tail(out_file);
    match status {
        None => Err(EngineError::Invalid(format!(
            "`{run}` did not finish within {}; it was stopped{text}",
            humantime::format_duration(timeout)
        ))),
        Some(s) if !s.success() => Err(EngineError::Invalid(format!("`{run}` failed ({s}){text}"))),
        Some(_) => Ok(format!("`{run}` succeeded{text}")),
    }
}

/// An unnamed temporary file for a command's output.
fn tempfile_in(st: &State) -> Result<std::fs::File> {
    let dir = st.sandbox.clone().unwrap_or_else(std::env::temp_dir);
    let path = dir.join(format!(
        ".bunker-runbook-out-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .context("creating a file for the command's output")?;
    let _ = std::fs::remove_file(&path);
    Ok(f)
}

/// `: <last lines of output>` or nothing.
fn read_tail(mut f: std::fs::File) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut s = String::new();
    let _ = f.seek(SeekFrom::Start(0));
    let _ = f.take(1 << 20).read_to_string(&mut s);
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
    if tail.is_empty() {
        String::new()
    } else {
        format!(": {tail}")
    }
}
