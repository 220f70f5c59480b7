//! `status` as the engine derives it: its state must mean "something needs
//! a person" and nothing else (issue 25 items 5 and 6).

use std::path::{Path, PathBuf};

use bunker_engine::events::{Event, EventSink};
use bunker_engine::execute::{run_item, Outcome, RunOptions};
use bunker_engine::plan::DueReason;
use bunker_engine::pool::{PoolOptions, RepoPool};
use bunker_engine::status::{item_status, RpoState};
use bunker_policy::Policy;
use bunker_repo::progress::{NoProgress, Progress};
use bunker_repo::RepoOptions;
use chrono::Utc;

struct Quiet;

impl EventSink for Quiet {
    fn event(&self, _: &Event<'_>) {}
    fn progress(&self) -> &dyn Progress {
        &NoProgress
    }
}

fn setup() -> tempfile::TempDir {
    std::env::set_var("BUNKER_TEST_KDF_N", "1024");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("pw"), "status-test\n").expect("pw");
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("a"), "a").expect("write");
    dir
}

fn policy(dir: &Path, item: &str) -> Policy {
    let d = dir.display();
    let text = format!(
        "repositories:\n  main:\n    location: {d}/repo\n    password_file: {d}/pw\n\
         items:\n{item}"
    );
    Policy::from_str(&text, "status-test.yaml").expect("policy")
}

fn pool<'p>(policy: &'p Policy, sink: &'p dyn EventSink) -> RepoPool<'p> {
    let options = PoolOptions {
        create: true,
        repo_options: RepoOptions::default(),
        ..PoolOptions::default()
    };
    RepoPool::new(policy, options, sink)
}

/// Issue 25 item 5: a failure stayed in `status` (and in its exit status
/// through the operator's eyes) after a later run had succeeded.
#[test]
fn a_failure_fixed_by_a_later_run_is_no_longer_shown() {
    let dir = setup();
    let src = dir.path().join("src");
    let gate = dir.path().join("gate");
    let p = policy(
        dir.path(),
        &format!(
            "  - name: docs\n    paths: [{}]\n    hooks:\n      before: [\"test -e {}\"]\n",
            src.display(),
            gate.display()
        ),
    );
    let sink = Quiet;
    let mut pool = pool(&p, &sink);
    let item = p.item("docs").expect("item");
    let opts = RunOptions::default();
    // First a good run, then a failing one: the failure is current.
    std::fs::write(&gate, "").expect("gate");
    let ok = run_item(&mut pool, item, DueReason::Requested, &opts, &sink);
    assert_eq!(ok[0].outcome, Outcome::Ok, "{ok:?}");
    std::fs::remove_file(&gate).expect("gate");
    let failed = run_item(&mut pool, item, DueReason::Requested, &opts, &sink);
    assert!(failed[0].is_failed(), "{failed:?}");
    let st = item_status(&mut pool, item, Utc::now());
    let f = st[0].last_failure.as_ref().expect("the failure is current");
    assert!(f.error.contains("before hook"), "{f:?}");
    // A later successful run fixes it: no failure shown, nothing to look at.
    std::fs::write(&gate, "").expect("gate");
    let ok = run_item(&mut pool, item, DueReason::Requested, &opts, &sink);
    assert_eq!(ok[0].outcome, Outcome::Ok, "{ok:?}");
    let st = item_status(&mut pool, item, Utc::now());
    assert_eq!(st[0].last_failure, None, "{st:?}");
    assert_eq!(st[0].state, RpoState::Ok);
    assert!(!st[0].needs_attention(), "{st:?}");
    let json = serde_json::to_value(&st[0]).expect("json");
    assert!(json["last_failure"].is_null(), "{json}");
}

/// Issue 25 item 6: a backup that left out unreadable files was shown as
/// OK by `status`.
#[test]
fn a_snapshot_with_unreadable_files_is_incomplete_until_a_complete_one_follows() {
    let dir = setup();
    let src = dir.path().join("src");
    let missing: PathBuf = dir.path().join("gone");
    let p = policy(
        dir.path(),
        &format!(
            "  - name: docs\n    paths: [{}, {}]\n",
            src.display(),
            missing.display()
        ),
    );
    let sink = Quiet;
    let mut pool = pool(&p, &sink);
    let item = p.item("docs").expect("item");
    let opts = RunOptions::default();
    let runs = run_item(&mut pool, item, DueReason::Requested, &opts, &sink);
    let Outcome::Warning { unreadable } = &runs[0].outcome else {
        panic!("expected unreadable files: {runs:?}");
    };
    assert_eq!(unreadable.len(), 1, "{unreadable:?}");
    let st = item_status(&mut pool, item, Utc::now());
    assert_eq!(st[0].state, RpoState::Incomplete, "{st:?}");
    assert!(st[0].needs_attention());
    assert_eq!(st[0].unreadable.len(), 1);
    assert_eq!(st[0].unreadable[0].path, missing.display().to_string());
    assert!(!st[0].unreadable[0].error.is_empty());
    let json = serde_json::to_value(&st[0]).expect("json");
    assert_eq!(json["state"], "INCOMPLETE", "{json}");
    assert_eq!(
        json["unreadable"][0]["path"],
        missing.display().to_string(),
        "{json}"
    );
    // The file appears; the next snapshot is complete and so is the target.
    std::fs::write(&missing, "back").expect("write");
    let runs = run_item(&mut pool, item, DueReason::Requested, &opts, &sink);
    assert_eq!(runs[0].outcome, Outcome::Ok, "{runs:?}");
    let st = item_status(&mut pool, item, Utc::now());
    assert_eq!(st[0].state, RpoState::Ok, "{st:?}");
    assert!(st[0].unreadable.is_empty());
    assert!(!st[0].needs_attention());
}
