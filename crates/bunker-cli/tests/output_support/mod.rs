#![allow(dead_code)]
//! Output helpers shared by the CLI tests: run a command and insist that it
//! succeeded, show an output in a failure message, read the last JSON line.

use std::process::{Command, Output};

/// Exit status, stdout and stderr of `out`, for an assertion message.
pub fn show(out: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Run `cmd` and fail the test, showing its output, unless it succeeded.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(out.status.success(), "{cmd:?} failed: {}", show(&out));
    out
}

/// The last line of stdout that is a JSON object or array (progress and
/// messages may come before it).
pub fn json_last(out: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{') || l.starts_with('['))
        .unwrap_or("{}");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON {line:?}: {e}"))
}
