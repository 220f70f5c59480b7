//! Golden output of `bunker run` and `bunker status`: the table, the JSON and
//! the exit codes, byte for byte after the parts that change from run to run
//! (snapshot ids, times, durations, sizes, temporary paths) are masked.
//!
//! The files under `tests/golden/` were recorded before the policy runner
//! moved into `bunker-engine`; they pin that the move changed nothing a user
//! or a script can see. Set `BUNKER_GOLDEN_UPDATE=1` to rewrite them after a
//! deliberate change of output.

mod policy_support;

use std::path::Path;
use std::process::Output;

use policy_support::Ctx;

/// A policy with one item of each outcome: ok (files, with retention), failed
/// (a before hook), failed (a command exiting non-zero), ok (a command) and
/// one without a schedule that is skipped unless requested.
fn policy(ctx: &Ctx) -> std::path::PathBuf {
    for d in ["docs", "skip"] {
        std::fs::create_dir_all(ctx.path().join(d)).expect("mkdir");
        std::fs::write(ctx.path().join(d).join("a.txt"), "alpha\n").expect("write");
        std::fs::write(ctx.path().join(d).join("b.txt"), "bravo\n").expect("write");
    }
    let p = ctx.path().join("bunker.yaml");
    std::fs::write(
        &p,
        r#"repositories:
  main:
    location: ./repo
    password_file: ./pw
items:
  - name: docs
    paths: [./docs]
    schedule: "every 1h"
    rpo: 1h
    retention:
      keep_last: 1
  - name: hooked
    paths: [./docs]
    schedule: "every 1h"
    priority: critical
    rpo: 1h
    hooks:
      before: ["exit 4"]
  - name: broken
    kind: command
    command:
      command: "echo partial; exit 9"
      stdin_filename: out.txt
    schedule: "every 1h"
    priority: low
  - name: listing
    kind: command
    command:
      command: "printf 'one\ntwo\n'"
      stdin_filename: listing.txt
    schedule: "every 1h"
    priority: low
  - name: manual
    paths: [./skip]
"#,
    )
    .expect("policy");
    p
}

/// Keys of JSON output whose values change from run to run.
const VOLATILE_KEYS: &[&str] = &[
    "snapshot",
    "newest",
    "time",
    "duration_seconds",
    "age_seconds",
    "data_added",
    "archive_age_seconds",
    "hostname",
];

/// Masks what differs between runs: JSON values of [`VOLATILE_KEYS`], and
/// in text, hex ids, numbers, times and sizes (runs of spaces and table
/// rules, whose widths follow the masked values, become one space and
/// `<RULE>`). The context's temporary
/// directory becomes `<DIR>`.
fn mask(text: &str, ctx: &Ctx) -> String {
    let dir = ctx.path().display().to_string();
    let text = text.replace(&dir, "<DIR>");
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if !line.is_empty() && line.chars().all(|c| c == '-') {
            // A table's rule: as wide as the (masked) columns.
            out.push_str("<RULE>");
        } else if line.starts_with('{') || line.starts_with('[') {
            out.push_str(&mask_json(line));
        } else {
            let words: Vec<String> = line.split_whitespace().map(mask_word).collect();
            out.push_str(&words.join(" "));
        }
        out.push('\n');
    }
    out
}

/// Replaces the value after each `"key":` of a volatile key with `"<X>"`.
fn mask_json(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    'outer: while !rest.is_empty() {
        for key in VOLATILE_KEYS {
            let pat = format!("\"{key}\":");
            if rest.starts_with(&pat) {
                out.push_str(&pat);
                rest = &rest[pat.len()..];
                // Skip one JSON value: a string, or everything up to , or }.
                let end = if rest.starts_with('"') {
                    let mut i = 1;
                    let b = rest.as_bytes();
                    while i < b.len() && b[i] != b'"' {
                        i += if b[i] == b'\\' { 2 } else { 1 };
                    }
                    (i + 1).min(b.len())
                } else if rest.starts_with("null") {
                    out.push_str("null");
                    rest = &rest[4..];
                    continue 'outer;
                } else {
                    rest.find([',', '}']).unwrap_or(rest.len())
                };
                out.push_str("\"<X>\"");
                rest = &rest[end..];
                continue 'outer;
            }
        }
        let ch = rest.chars().next().expect("non-empty");
        out.push(ch);
        rest = &rest[ch.len_utf8()..];
    }
    out
}

fn mask_word(w: &str) -> String {
    let core = w.trim_end_matches([',', ')', ';']);
    let tail = &w[core.len()..];
    let hex = core.len() >= 8 && core.chars().all(|c| c.is_ascii_hexdigit());
    let numeric = !core.is_empty()
        && core.chars().any(|c| c.is_ascii_digit())
        && core
            .trim_end_matches(['s', 'm', 'h'])
            .chars()
            .all(|c| c.is_ascii_digit() || ".:-".contains(c));
    if hex || numeric {
        return format!("<N>{tail}");
    }
    if ["B", "KiB", "MiB", "GiB"].contains(&core) {
        return format!("<U>{tail}");
    }
    w.to_string()
}

fn render(label: &str, out: &Output, ctx: &Ctx) -> String {
    // `data_added` and `files` of file items are deterministic for this tree;
    // so is the exit code.
    format!(
        "== {label}: exit {}\n-- stdout\n{}-- stderr\n{}",
        out.status.code().unwrap_or(-1),
        mask(&String::from_utf8_lossy(&out.stdout), ctx),
        mask(&String::from_utf8_lossy(&out.stderr), ctx),
    )
}

fn bunker(ctx: &Ctx, args: &[&str]) -> Output {
    let mut c = ctx.bare();
    c.args(args);
    c.output().expect("bunker runs")
}

fn check_golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("BUNKER_GOLDEN_UPDATE").is_some() {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("golden file {} missing: {e}", path.display()));
    if expected != actual {
        panic!(
            "output differs from {}\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        );
    }
}

#[test]
fn run_and_status_output_is_unchanged() {
    let ctx = Ctx::new();
    let p = policy(&ctx);
    let p = p.to_str().expect("utf-8 path");
    let mut all = String::new();
    all += &render("run (due)", &bunker(&ctx, &["run", p]), &ctx);
    all += &render(
        "run --json (nothing due)",
        &bunker(&ctx, &["run", "--json", p]),
        &ctx,
    );
    all += &render(
        "run --item docs --json",
        &bunker(&ctx, &["run", "--item", "docs", "--json", p]),
        &ctx,
    );
    all += &render(
        "run --dry-run --all",
        &bunker(&ctx, &["run", "--dry-run", "--all", p]),
        &ctx,
    );
    all += &render("status", &bunker(&ctx, &["status", p]), &ctx);
    all += &render(
        "status --json",
        &bunker(&ctx, &["status", "--json", p]),
        &ctx,
    );
    all += &render(
        "run --item nosuch",
        &bunker(&ctx, &["run", "--item", "nosuch", p]),
        &ctx,
    );
    check_golden("run_status.txt", &all);
}
