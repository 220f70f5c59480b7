//! The engine without the binary: planning with a fake clock, execution on
//! local repositories, hooks, retention, records, fallbacks, and
//! cancellation of a running backup and a running prune.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bunker_engine::events::{Event, EventSink, FallbackEvent};
use bunker_engine::execute::{run_item, run_policy, FailureKind, Outcome, RunOptions};
use bunker_engine::plan::{plan, DueReason, Selection};
use bunker_engine::pool::{PoolOptions, RepoPool};
use bunker_engine::records::{self, RecordKind};
use bunker_engine::CancelToken;
use bunker_policy::Policy;
use bunker_repo::check::{check, CheckOptions};
use bunker_repo::progress::{NoProgress, Progress};
use bunker_repo::prune::PruneOptions;
use bunker_repo::{snapshots, RepoOptions, Repository};
use bunker_storage::FileType;
use chrono::{Duration, Utc};

/// Records events; its progress cancels `cancel` once `after` items were
/// reported done (or when `on` is reported as the current step).
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<String>>,
    progress: Canceller,
}

#[derive(Default)]
struct Canceller {
    cancel: Option<CancelToken>,
    after_items: Option<usize>,
    on_step: Option<&'static str>,
    items: AtomicUsize,
}

impl Progress for Canceller {
    fn add_items(&self, n: u64) {
        let done = self.items.fetch_add(n as usize, Ordering::SeqCst) + n as usize;
        if let (Some(c), Some(after)) = (&self.cancel, self.after_items) {
            if done >= after {
                c.cancel();
            }
        }
    }
    fn current(&self, what: &str) {
        if let (Some(c), Some(step)) = (&self.cancel, self.on_step) {
            if what == step {
                c.cancel();
            }
        }
    }
}

impl EventSink for Recorder {
    fn event(&self, e: &Event<'_>) {
        let line = match e {
            Event::RepositoryOpened(_) => return,
            Event::RepositoryCreated { name, .. } => format!("created {name}"),
            Event::Fallback(FallbackEvent::PrimaryUnreachable { primary, .. }) => {
                format!("unreachable {primary}")
            }
            Event::Fallback(FallbackEvent::UsingFallback { fallback, .. }) => {
                format!("using {fallback}")
            }
            Event::Fallback(FallbackEvent::FallbackUnusable { fallback, .. }) => {
                format!("unusable {fallback}")
            }
            Event::Warning(w) => format!("warning {w}"),
            Event::ItemStarted { item, reason } => format!("start {item} ({reason})"),
            Event::TargetFinished(r) => format!("finished {} at {}", r.item, r.target),
            Event::PgRestore(_) => return,
        };
        self.events.lock().unwrap().push(line);
    }
    fn progress(&self) -> &dyn Progress {
        &self.progress
    }
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        std::env::set_var("BUNKER_TEST_KDF_N", "1024");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("pw"), "engine-test\n").expect("pw");
        Fixture { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `n` files of different content under `src/`.
    fn source(&self, n: usize, round: u8) -> PathBuf {
        let src = self.path().join("src");
        std::fs::create_dir_all(&src).expect("mkdir");
        for i in 0..n {
            let body: Vec<u8> = (0..2048).map(|j| (i * 31 + j * 7) as u8 ^ round).collect();
            std::fs::write(src.join(format!("f{i:04}")), body).expect("write");
        }
        src
    }

    fn policy(&self, items: &str) -> Policy {
        let d = self.path().display();
        let text = format!(
            "repositories:\n  main:\n    location: {d}/repo\n    password_file: {d}/pw\n\
             items:\n{items}"
        );
        Policy::from_str(&text, "engine-test.yaml").expect("policy")
    }

    fn open(&self) -> Arc<Repository> {
        let s = bunker_storage::open(&self.path().join("repo").display().to_string(), &[])
            .expect("storage");
        let r = Repository::open(s, b"engine-test", RepoOptions::default()).expect("open");
        r.load_index().expect("index");
        r
    }
}

fn new_pool<'p>(policy: &'p Policy, sink: &'p dyn EventSink, create: bool) -> RepoPool<'p> {
    let options = PoolOptions {
        create,
        repo_options: RepoOptions {
            pack_size: 64 * 1024,
            ..RepoOptions::default()
        },
        ..PoolOptions::default()
    };
    RepoPool::new(policy, options, sink)
}

fn assert_clean(repo: &Arc<Repository>) {
    let report = check(repo, &CheckOptions::default(), &NoProgress).expect("check runs");
    assert!(report.ok(), "check: {:?}", report.errors);
    let locks = repo.storage().list(FileType::Lock).expect("locks");
    assert!(locks.is_empty(), "locks left behind: {locks:?}");
}

#[test]
fn planning_follows_the_repository_and_the_given_clock() {
    let fx = Fixture::new();
    let src = fx.source(3, 0);
    let policy = fx.policy(&format!(
        "  - name: docs\n    paths: [{}]\n    schedule: every 1h\n  - name: manual\n    paths: [{}]\n",
        src.display(),
        src.display()
    ));
    let sink = Recorder::default();
    let mut pool = new_pool(&policy, &sink, true);
    let now = Utc::now();
    let p = plan(&policy, &mut pool, &Selection::Due, now, &sink).expect("plan");
    let reasons: Vec<_> = p
        .iter()
        .map(|p| (p.item.name.as_str(), p.reason.clone()))
        .collect();
    assert_eq!(
        reasons,
        vec![("docs", Some(DueReason::NeverRun)), ("manual", None)]
    );
    let runs = run_policy(
        &policy,
        &mut pool,
        &Selection::Due,
        now,
        &RunOptions::default(),
        &sink,
    )
    .expect("run");
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].outcome, Outcome::Ok);
    assert!(runs[0].repository_created);
    // Half an hour later nothing is due; two hours later the schedule fired.
    let later = plan(
        &policy,
        &mut pool,
        &Selection::Due,
        now + Duration::minutes(30),
        &sink,
    )
    .expect("plan");
    assert!(later.iter().all(|p| p.reason.is_none()), "{later:?}");
    let much_later = plan(
        &policy,
        &mut pool,
        &Selection::Due,
        now + Duration::hours(2),
        &sink,
    )
    .expect("plan");
    assert!(
        matches!(much_later[0].reason, Some(DueReason::ScheduleFired { .. })),
        "{much_later:?}"
    );
    // Requested items run whatever the clock says; unknown names are refused.
    let req = Selection::Items(vec!["manual".into()]);
    let p = plan(&policy, &mut pool, &req, now, &sink).expect("plan");
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].reason, Some(DueReason::Requested));
    let e = plan(
        &policy,
        &mut pool,
        &Selection::Items(vec!["nope".into()]),
        now,
        &sink,
    )
    .expect_err("unknown item");
    assert!(e.to_string().contains("no item \"nope\""), "{e}");
}

#[test]
fn a_run_backs_up_applies_retention_and_keeps_records() {
    let fx = Fixture::new();
    let src = fx.source(5, 0);
    let policy = fx.policy(&format!(
        "  - name: docs\n    paths: [{}]\n    retention:\n      keep_last: 1\n",
        src.display()
    ));
    let sink = Recorder::default();
    let mut pool = new_pool(&policy, &sink, true);
    let item = policy.item("docs").expect("item");
    let opts = RunOptions::default();
    let first = run_item(&mut pool, item, DueReason::Requested, &opts, &sink);
    assert_eq!(first[0].outcome, Outcome::Ok);
    assert_eq!(first[0].stats.files, 5);
    fx.source(5, 1);
    let second = run_item(&mut pool, item, DueReason::Requested, &opts, &sink);
    assert_eq!(second[0].outcome, Outcome::Ok, "{second:?}");
    assert_eq!(second[0].stats.forgotten, 1);
    let repo = fx.open();
    assert_eq!(snapshots::list(&repo).expect("list").len(), 1);
    let rec = records::latest(&repo, "docs", RecordKind::RunSuccess)
        .expect("records")
        .expect("a success record");
    assert_eq!(rec.body["forgotten"], 1);
    assert_clean(&repo);
    let events = sink.events.lock().unwrap().join("\n");
    assert!(events.contains("created main"), "{events}");
    assert!(events.contains("start docs (requested)"), "{events}");
}

#[test]
fn a_failing_before_hook_skips_the_item_and_records_why() {
    let fx = Fixture::new();
    let src = fx.source(1, 0);
    let marker = fx.path().join("on-failure");
    let policy = fx.policy(&format!(
        "  - name: docs\n    paths: [{}]\n    hooks:\n      before: [\"exit 4\"]\n      on_failure: [\"echo \\\"$BUNKER_ERROR\\\" > {}\"]\n",
        src.display(),
        marker.display()
    ));
    let sink = Recorder::default();
    let mut pool = new_pool(&policy, &sink, true);
    let item = policy.item("docs").expect("item");
    let runs = run_item(
        &mut pool,
        item,
        DueReason::Requested,
        &RunOptions::default(),
        &sink,
    );
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].target, "-");
    let Outcome::Failed { kind, message } = &runs[0].outcome else {
        panic!("{runs:?}");
    };
    assert_eq!(*kind, FailureKind::Hook);
    assert!(message.starts_with("skipped: before hook"), "{message}");
    let hook_saw = std::fs::read_to_string(&marker).expect("on_failure ran");
    assert!(hook_saw.contains("exit 4"), "{hook_saw}");
    let rec = records::latest(&fx.open(), "docs", RecordKind::RunFailure)
        .expect("records")
        .expect("a failure record");
    assert_eq!(rec.error(), Some(message.as_str()));
}

#[test]
fn records_keep_only_the_newest_per_item_and_kind() {
    let fx = Fixture::new();
    let src = fx.source(1, 0);
    let policy = fx.policy(&format!("  - name: docs\n    paths: [{}]\n", src.display()));
    let sink = Recorder::default();
    let mut pool = new_pool(&policy, &sink, true);
    let repo = pool.get("main").expect("open").repo.clone();
    for i in 0..records::KEEP_PER_ITEM_AND_KIND + 3 {
        records::save(
            &repo,
            &records::Record::run_failure("docs", &format!("e{i}")),
        )
        .expect("save");
        records::save(&repo, &records::Record::run_failure("other", "x")).expect("save");
    }
    let all = records::list(&repo).expect("list");
    let docs = all.iter().filter(|s| s.record.item == "docs").count();
    let other = all.iter().filter(|s| s.record.item == "other").count();
    assert_eq!(docs, records::KEEP_PER_ITEM_AND_KIND);
    assert_eq!(other, records::KEEP_PER_ITEM_AND_KIND);
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[test]
fn an_unreachable_primary_falls_back_and_other_errors_do_not() {
    let fx = Fixture::new();
    let src = fx.source(2, 0);
    let d = fx.path().display();
    let port = closed_port();
    let text = format!(
        "repositories:\n  main:\n    location: s3:http://127.0.0.1:{port}/bucket/p\n    password_file: {d}/pw\n\
         \x20   options:\n      s3.access_key_id: k\n      s3.secret_access_key: s\n      retry.max_elapsed: \"0.5\"\n\
         \x20   fallbacks: [spare]\n\
         \x20 spare:\n    location: {d}/spare\n    password_file: {d}/pw\n    role: offsite\n\
         items:\n  - name: docs\n    paths: [{}]\n    targets: [main]\n",
        src.display()
    );
    let policy = Policy::from_str(&text, "fallback.yaml").expect("policy");
    let sink = Recorder::default();
    let mut pool = new_pool(&policy, &sink, true);
    let item = policy.item("docs").expect("item");
    let runs = run_item(
        &mut pool,
        item,
        DueReason::Requested,
        &RunOptions::default(),
        &sink,
    );
    assert_eq!(runs[0].outcome, Outcome::Ok, "{runs:?}");
    assert_eq!(runs[0].target, "spare");
    let fb = runs[0].fallback.as_ref().expect("fallback");
    assert_eq!((fb.from.as_str(), fb.to.as_str()), ("main", "spare"));
    let events = sink.events.lock().unwrap().join("\n");
    assert!(
        events.contains("unreachable main") && events.contains("using spare"),
        "{events}"
    );

    // A wrong password on a reachable primary is an error, not a reason to fall back.
    std::fs::write(fx.path().join("pw2"), "wrong\n").expect("pw2");
    let text = format!(
        "repositories:\n  spare:\n    location: {d}/spare\n    password_file: {d}/pw2\n    fallbacks: [other]\n\
         \x20 other:\n    location: {d}/other\n    password_file: {d}/pw\n\
         items:\n  - name: docs\n    paths: [{}]\n    targets: [spare]\n",
        src.display()
    );
    let policy = Policy::from_str(&text, "wrong.yaml").expect("policy");
    let sink = Recorder::default();
    let mut pool = new_pool(&policy, &sink, true);
    let e = pool.get("spare").expect_err("wrong password");
    assert!(!e.is_retryable());
    assert!(e.one_line().contains("wrong password"), "{}", e.one_line());
    assert!(
        !fx.path().join("other").exists(),
        "a fallback was created for a wrong password"
    );
}

#[test]
fn cancelling_a_running_backup_leaves_a_clean_repository_with_its_uploads_indexed() {
    let fx = Fixture::new();
    let src = fx.source(400, 0);
    let policy = fx.policy(&format!("  - name: docs\n    paths: [{}]\n", src.display()));
    let cancel = CancelToken::new();
    let sink = Recorder {
        progress: Canceller {
            cancel: Some(cancel.clone()),
            after_items: Some(50),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut pool = new_pool(&policy, &sink, true);
    let item = policy.item("docs").expect("item");
    let opts = RunOptions {
        dry_run: false,
        cancel: cancel.clone(),
        ..Default::default()
    };
    let runs = run_item(&mut pool, item, DueReason::Requested, &opts, &sink);
    let Outcome::Failed { kind, .. } = &runs[0].outcome else {
        panic!("the backup was not cancelled: {runs:?}");
    };
    assert_eq!(*kind, FailureKind::Cancelled);
    let repo = fx.open();
    assert!(
        snapshots::list(&repo).expect("list").is_empty(),
        "a snapshot was written"
    );
    assert!(
        !repo
            .storage()
            .list(FileType::Index)
            .expect("index")
            .is_empty(),
        "the packs uploaded before the cancellation were not indexed"
    );
    assert_clean(&repo);
}

#[test]
fn cancelling_a_running_prune_leaves_a_clean_repository() {
    let fx = Fixture::new();
    let src = fx.source(60, 0);
    let policy = fx.policy(&format!(
        "  - name: docs\n    paths: [{}]\n    retention:\n      keep_last: 1\n",
        src.display()
    ));
    let item = policy.item("docs").expect("item");
    {
        let sink = Recorder::default();
        let mut pool = new_pool(&policy, &sink, true);
        let runs = run_item(
            &mut pool,
            item,
            DueReason::Requested,
            &RunOptions::default(),
            &sink,
        );
        assert_eq!(runs[0].outcome, Outcome::Ok);
    }
    // Half the files change: the first snapshot's packs become partly unused.
    for i in 0..30 {
        std::fs::write(src.join(format!("f{i:04}")), vec![i as u8; 3000]).expect("write");
    }
    let packs_before = fx
        .open()
        .storage()
        .list(FileType::Pack)
        .expect("packs")
        .len();
    let cancel = CancelToken::new();
    let sink = Recorder {
        progress: Canceller {
            cancel: Some(cancel.clone()),
            on_step: Some("repacking"),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut pool = new_pool(&policy, &sink, true);
    let opts = RunOptions {
        dry_run: false,
        cancel: cancel.clone(),
        ..Default::default()
    };
    let runs = run_item(&mut pool, item, DueReason::Requested, &opts, &sink);
    let Outcome::Failed { kind, message } = &runs[0].outcome else {
        panic!("the prune was not cancelled: {runs:?}");
    };
    assert_eq!(*kind, FailureKind::Cancelled, "{message}");
    assert!(message.starts_with("retention:"), "{message}");
    let repo = fx.open();
    assert_clean(&repo);
    // Nothing was deleted: the new backup's packs were added, none removed.
    let packs_after = repo.storage().list(FileType::Pack).expect("packs").len();
    assert!(
        packs_after >= packs_before,
        "{packs_before} -> {packs_after}"
    );
    // The next, uncancelled prune finishes the job.
    let report =
        bunker_repo::prune::prune(&repo, &PruneOptions::default(), &NoProgress).expect("prune");
    assert!(report.packs_repacked > 0, "{report:?}");
    assert_clean(&fx.open());
}

#[test]
fn when_everything_is_unreachable_the_primarys_error_is_returned() {
    use bunker_engine::pool::{open_first_reachable, Candidate};
    let down = format!("s3:http://127.0.0.1:{}/b/p", closed_port());
    let opts: Vec<(String, String)> = [
        ("s3.access_key_id", "k"),
        ("s3.secret_access_key", "s"),
        ("retry.max_elapsed", "0.3"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let c = Candidate::from_location(&down, &opts, b"pw");
    let sink = Recorder::default();
    let e = open_first_reachable(
        &c,
        std::slice::from_ref(&c),
        &RepoOptions::default(),
        false,
        &sink,
    )
    .expect_err("all down");
    assert!(e.is_retryable());
    let line = e.one_line();
    assert!(
        line.contains("127.0.0.1") && line.contains("all its fallbacks"),
        "{line}"
    );
    let events = sink.events.lock().unwrap().join("\n");
    assert!(
        events.contains("unreachable s3:") && events.contains("unusable s3:"),
        "{events}"
    );
}

/// Issue 25 item 9: `kind: command` items and hooks ran in the directory
/// bunker was started from, while every other relative path of the policy
/// is resolved against the policy file's directory.
#[test]
fn command_items_and_hooks_run_in_the_policy_files_directory() {
    let fx = Fixture::new();
    let conf = fx.path().join("conf");
    std::fs::create_dir_all(&conf).expect("mkdir");
    std::fs::write(conf.join("data.txt"), "relative to the policy\n").expect("data");
    let d = fx.path().display();
    let text = format!(
        "repositories:\n  main:\n    location: {d}/repo\n    password_file: {d}/pw\n\
         items:\n  - name: dump\n    kind: command\n    command:\n      command: cat data.txt\n\
         \x20     stdin_filename: data.txt\n\
         \x20   hooks:\n      before: [\"pwd > before-ran\"]\n      after: [\"pwd > after-ran\"]\n"
    );
    std::fs::write(conf.join("bunker.yaml"), text).expect("policy");
    let policy = Policy::load(conf.join("bunker.yaml")).expect("policy");
    let sink = Recorder::default();
    let mut pool = new_pool(&policy, &sink, true);
    // The test process's directory is not the policy's.
    assert_ne!(std::env::current_dir().expect("cwd"), conf);
    let runs = run_policy(
        &policy,
        &mut pool,
        &Selection::All,
        Utc::now(),
        &RunOptions::default(),
        &sink,
    )
    .expect("run");
    assert_eq!(runs[0].outcome, Outcome::Ok, "{runs:?}");
    assert!(runs[0].stats.data_added > 0, "{runs:?}");
    for marker in ["before-ran", "after-ran"] {
        let pwd = std::fs::read_to_string(conf.join(marker))
            .unwrap_or_else(|e| panic!("{marker} not written in the policy's directory: {e}"));
        assert_eq!(
            std::fs::canonicalize(pwd.trim()).expect("pwd"),
            std::fs::canonicalize(&conf).expect("conf")
        );
    }
}
