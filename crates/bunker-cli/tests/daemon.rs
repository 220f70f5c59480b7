//! `bunker daemon` end to end, through the binary, on local repositories:
//! scheduled runs against the repository's truth, history and metrics,
//! catch-up, SIGTERM mid-backup, SIGHUP with a broken policy, the API's
//! token, and a real Prometheus firing the RPO alert of the example rules.

mod daemon_support;
#[path = "../../bunker-notify/tests/support/smtp.rs"]
mod smtp;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use daemon_support::*;

const POLICY: &str = "\
repositories:
  local: {location: ./repo, password_file: pw}
items:
  - name: docs
    paths: [./data]
    schedule: every 2s
    rpo: 1h
  - name: broken
    paths: [./data]
    schedule: every 2s
    hooks:
      before: [\"exit 3\"]
";

fn write_policy(dir: &Path, text: &str) {
    std::fs::write(dir.join("policy.yaml"), text).expect("policy");
}

fn snapshot_times(dir: &Path, item: &str) -> Vec<String> {
    let out = bunker(dir)
        .env("BUNKER_REPOSITORY", dir.join("repo"))
        .env("BUNKER_PASSWORD_FILE", dir.join("pw"))
        .args([
            "snapshots",
            "--json",
            "--tag",
            &format!("bunker:item={item}"),
        ])
        .output()
        .expect("snapshots");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| s["time"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn successes(runs: &[serde_json::Value]) -> usize {
    runs.iter().filter(|r| r["result"] == "success").count()
}

#[test]
fn scheduled_runs_happen_and_history_and_metrics_agree_with_the_repository() {
    let dir = setup();
    write_policy(dir.path(), POLICY);
    let mut d = Daemon::start(dir.path(), &[]);
    wait_for(
        "three successful runs of docs",
        Duration::from_secs(60),
        || (successes(&d.runs("docs")) >= 3).then_some(()),
    );
    // Every item's series exist; the failing item counts as failed.
    let text = d.metrics();
    let failed = metric(
        &text,
        "bunker_backup_runs_total{item=\"broken\",target=\"local\",result=\"failed\"}",
    )
    .expect("broken's failed series");
    assert!(failed >= 1.0, "{text}");
    assert_eq!(
        metric(
            &text,
            "bunker_backup_last_success_timestamp_seconds{item=\"broken\",target=\"local\"}"
        ),
        Some(0.0),
        "never succeeded is visible"
    );
    assert_eq!(
        metric(&text, "bunker_item_rpo_breached{item=\"docs\"}"),
        Some(0.0)
    );
    // The 3-2-1 report, read before anything was scheduled: one local disk
    // and no offsite copy is not compliant.
    assert_eq!(
        metric(&text, "bunker_compliance_ok{item=\"docs\"}"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "bunker_compliance_offsite{item=\"docs\"}"),
        Some(0.0)
    );
    if have("promtool", "--version") {
        let mut p = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool");
        use std::io::Write;
        p.stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write");
        let out = p.wait_with_output().expect("promtool");
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "promtool check metrics: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!("note: promtool not installed; `promtool check metrics` skipped");
    }
    // Metrics and history agree (both move while jobs run: poll until a
    // consistent pair is seen).
    wait_for(
        "metrics and history to agree",
        Duration::from_secs(30),
        || {
            let before = successes(&d.runs("docs"));
            let m = metric(
                &d.metrics(),
                "bunker_backup_runs_total{item=\"docs\",target=\"local\",result=\"success\"}",
            )?;
            let after = successes(&d.runs("docs"));
            (before == after && m as usize == after).then_some(())
        },
    );
    let st = d.stop();
    assert!(st.success(), "exit status {st}:\n{}", d.log_text());
    // After the stop, the repository holds exactly one snapshot per
    // successful run in the history, and `bunker history` reads it
    // without the daemon.
    let out = bunker(dir.path())
        .args([
            "--json",
            "history",
            "--item",
            "docs",
            "--limit",
            "1000",
            "--state-dir",
        ])
        .arg(&d.state)
        .output()
        .expect("history");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(successes(&rows), snapshot_times(dir.path(), "docs").len());
    assert!(rows
        .iter()
        .all(|r| r["job"] == "backup:docs" && r["target"] == "local"));
}

#[test]
fn after_downtime_across_many_slots_the_daemon_catches_up_once() {
    let dir = setup();
    // The newest snapshot of the item is years old: every slot since was
    // missed.
    let out = bunker(dir.path())
        .env("BUNKER_REPOSITORY", dir.path().join("repo"))
        .env("BUNKER_PASSWORD_FILE", dir.path().join("pw"))
        .args(["init"])
        .output()
        .expect("init");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = bunker(dir.path())
        .env("BUNKER_REPOSITORY", dir.path().join("repo"))
        .env("BUNKER_PASSWORD_FILE", dir.path().join("pw"))
        .args([
            "backup",
            "data",
            "--tag",
            "bunker:item=docs",
            "--time",
            "2020-01-01 00:00:00",
        ])
        .output()
        .expect("backup");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    write_policy(
        dir.path(),
        "repositories:\n  local: {location: ./repo, password_file: pw}\nitems:\n  - name: docs\n    paths: [./data]\n    schedule: every 1h\n",
    );
    let mut d = Daemon::start(dir.path(), &[]);
    let runs = wait_for("the catch-up run", Duration::from_secs(60), || {
        let r = d.runs("docs");
        (!r.is_empty()).then_some(r)
    });
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["trigger"], "schedule");
    // Nothing else is due for an hour, and nothing else runs.
    let items = d.json("/api/v1/items");
    let next = items["items"][0]["next"].as_str().expect("next due time");
    let next = chrono::DateTime::parse_from_rfc3339(next).expect("time");
    assert!(
        next > chrono::Utc::now() + chrono::Duration::minutes(55),
        "next {next}"
    );
    let status = d.json("/api/v1/status");
    assert_eq!(status["running"].as_array().map(Vec::len), Some(0));
    assert_eq!(d.runs("docs").len(), 1);
    assert_eq!(snapshot_times(dir.path(), "docs").len(), 2);
    assert!(d.stop().success());
}

#[test]
fn sigterm_mid_backup_exits_0_leaving_a_clean_repository_without_locks() {
    if !have("restic", "version") {
        eprintln!("note: restic not installed; skipped");
        return;
    }
    let dir = setup();
    write_policy(
        dir.path(),
        "repositories:\n  local: {location: ./repo, password_file: pw}\nitems:\n  - name: slow\n    kind: command\n    command:\n      command: \"echo start; sleep 600; echo never\"\n    schedule: every 1h\ndaemon:\n  shutdown_grace: 20s\n",
    );
    let mut d = Daemon::start(dir.path(), &[]);
    // The backup holds its lock while the command runs.
    let locks = dir.path().join("repo/locks");
    wait_for(
        "the backup to hold its lock",
        Duration::from_secs(60),
        || {
            let n = std::fs::read_dir(&locks).map(|r| r.count()).unwrap_or(0);
            (n > 0).then_some(())
        },
    );
    let st = d.stop();
    assert!(st.success(), "exit status {st}:\n{}", d.log_text());
    let left: Vec<_> = std::fs::read_dir(&locks).expect("locks dir").collect();
    assert!(left.is_empty(), "locks left: {left:?}");
    let out = restic(dir.path(), "repo")
        .arg("check")
        .output()
        .expect("restic");
    assert!(
        out.status.success(),
        "restic check: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let h = bunker(dir.path())
        .args(["--json", "history", "--state-dir"])
        .arg(&d.state)
        .output()
        .expect("history");
    let text = String::from_utf8_lossy(&h.stdout);
    assert!(text.contains("\"result\":\"cancelled\""), "{text}");
}

#[test]
fn sighup_with_a_broken_policy_keeps_the_old_one_running_and_serving() {
    let dir = setup();
    write_policy(dir.path(), POLICY);
    let d = Daemon::start(dir.path(), &[]);
    wait_for("a run of docs", Duration::from_secs(60), || {
        (successes(&d.runs("docs")) >= 1).then_some(())
    });
    write_policy(
        dir.path(),
        "repositories:\n  local: {location: ./repo}\nitems: nope\n",
    );
    d.signal("HUP");
    wait_for(
        "the reload error in the log",
        Duration::from_secs(30),
        || {
            d.log_text()
                .contains("the running policy stays in force")
                .then_some(())
        },
    );
    assert_eq!(d.get("/healthz").status, 200);
    let n = successes(&d.runs("docs"));
    wait_for(
        "runs to go on with the old policy",
        Duration::from_secs(60),
        || (successes(&d.runs("docs")) > n).then_some(()),
    );
    assert!(d.metrics().contains("item=\"docs\""));
    // A fixed policy is taken: an item is added.
    write_policy(
        dir.path(),
        &format!("{POLICY}  - name: more\n    paths: [./data]\n"),
    );
    d.signal("HUP");
    wait_for("the new item's series", Duration::from_secs(30), || {
        d.metrics().contains("item=\"more\"").then_some(())
    });
}

#[test]
fn a_policy_error_at_start_up_exits_1_with_every_problem() {
    let dir = setup();
    write_policy(
        dir.path(),
        "repositories:\n  local: {location: ./repo, password_file: pw}\nitems:\n  - name: a\n    paths: [./data]\n    schedule: every often\ndaemon:\n  max_concurrent: 0\n",
    );
    let out = bunker(dir.path())
        .args([
            "daemon",
            "policy.yaml",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .output()
        .expect("daemon");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("every often") || err.contains("invalid duration"),
        "{err}"
    );
    assert!(err.contains("max_concurrent"), "{err}");
}

#[test]
fn a_non_loopback_address_needs_a_token_and_the_api_checks_it() {
    let dir = setup();
    write_policy(dir.path(), POLICY);
    let out = bunker(dir.path())
        .args(["daemon", "policy.yaml", "--listen", "0.0.0.0:0"])
        .output()
        .expect("daemon");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--token-file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(dir.path().join("token"), "s3cret-token\n").expect("token");
    let mut d = Daemon::start(dir.path(), &["--token-file", "token"]);
    assert_eq!(d.get("/healthz").status, 200, "health needs no token");
    assert_eq!(d.get("/metrics").status, 401);
    assert_eq!(
        http(d.port, "GET", "/metrics", Some("wrong"))
            .expect("http")
            .status,
        401
    );
    d.token = Some("s3cret-token".into());
    assert_eq!(d.get("/metrics").status, 200);
    // Run now: accepted; an unknown item is 404. No secret in any answer.
    let r = http(d.port, "POST", "/api/v1/items/docs/run", d.token.as_deref()).expect("http");
    assert!(
        r.status == 202 || r.status == 409,
        "{} {}",
        r.status,
        r.body
    );
    let r = http(d.port, "POST", "/api/v1/items/nope/run", d.token.as_deref()).expect("http");
    assert_eq!(r.status, 404);
    for path in [
        "/api/v1/status",
        "/api/v1/items",
        "/api/v1/runs",
        "/api/v1/snapshots?item=docs",
        "/metrics",
    ] {
        let body = d.get(path).body;
        assert!(
            !body.contains("s3cret-token") && !body.contains("daemon-test-password"),
            "{path}: {body}"
        );
    }
}

#[test]
fn example_alert_rules_pass_promtool() {
    if !have("promtool", "--version") {
        eprintln!("note: promtool not installed; skipped");
        return;
    }
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/prometheus");
    for args in [
        ["check", "rules", "alerts.yml"],
        ["check", "config", "prometheus.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&examples)
            .output()
            .expect("promtool");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_real_prometheus_scraping_the_daemon_fires_the_rpo_alert() {
    if !have("prometheus", "--version") {
        eprintln!("note: prometheus not installed; skipped");
        return;
    }
    let dir = setup();
    // No schedule and no snapshot: the item is past its RPO from the start.
    write_policy(
        dir.path(),
        "repositories:\n  local: {location: ./repo, password_file: pw}\nitems:\n  - name: late\n    paths: [./data]\n    rpo: 1h\n",
    );
    let d = Daemon::start(dir.path(), &[]);
    assert_eq!(
        metric(&d.metrics(), "bunker_item_rpo_breached{item=\"late\"}"),
        Some(1.0)
    );
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/prometheus/alerts.yml");
    let prom_port = free_port();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: bunker\n    static_configs:\n      - targets: [\"127.0.0.1:{}\"]\n",
            rules.display(),
            d.port
        ),
    )
    .expect("prometheus config");
    let mut prom = Command::new("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("prometheus.log")).expect("log"))
        .spawn()
        .expect("prometheus");
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(&mut prom);
    let firing = wait_for("BunkerRpoBreached to fire", Duration::from_secs(50), || {
        let r = http(prom_port, "GET", "/api/v1/alerts", None).ok()?;
        let v: serde_json::Value = serde_json::from_str(&r.body).ok()?;
        v["data"]["alerts"]
            .as_array()?
            .iter()
            .find(|a| {
                a["labels"]["alertname"] == "BunkerRpoBreached"
                    && a["labels"]["item"] == "late"
                    && a["state"] == "firing"
            })
            .cloned()
    });
    assert_eq!(firing["labels"]["severity"], "critical");
}

#[test]
fn notifications_alert_once_per_failure_streak_and_rpo_breach_then_recover() {
    let dir = setup();
    let rx = Receiver::start();
    // A real SMTP server too, when Debian's aiosmtpd is there (else a note).
    let mail = smtp::start(smtp::Mode::Plain);
    let mail_target = mail.as_ref().map_or(String::new(), |m| {
        format!(
            "  mail:\n    email: {{host: 127.0.0.1, port: {}, tls: none, from: bunker@example.com, to: ops@example.com}}\n    items: [flaky]\n",
            m.port
        )
    });
    write_policy(
        dir.path(),
        &format!(
            "repositories:\n  local: {{location: ./repo, password_file: pw}}\nitems:\n  - name: flaky\n    paths: [./data]\n    schedule: every 2s\n    hooks:\n      before: [\"test -f ok\"]\n  - name: late\n    paths: [./data]\n    rpo: 1h\nnotifications:\n  hook:\n    webhook: {{url: \"http://127.0.0.1:{p}/hook\"}}\n  hc:\n    healthchecks: {{url: \"http://127.0.0.1:{p}/hc/{{item}}\"}}\n{mail_target}",
            p = rx.port
        ),
    );
    let d = Daemon::start(dir.path(), &[]);
    let failed = |d: &Daemon| {
        d.runs("flaky")
            .iter()
            .filter(|r| r["result"] == "failed")
            .count()
    };
    wait_for(
        "three failed runs and a failure notice",
        Duration::from_secs(60),
        || (failed(&d) >= 3 && rx.count("/hook", "\"event\":\"failure\"") >= 1).then_some(()),
    );
    wait_for("the RPO breach notice", Duration::from_secs(30), || {
        (rx.count("/hook", "\"event\":\"rpo_breach\"") >= 1).then_some(())
    });
    assert_eq!(
        rx.count("/hook", "\"event\":\"failure\""),
        1,
        "one notice per streak"
    );
    assert_eq!(
        rx.count("/hook", "\"event\":\"rpo_breach\""),
        1,
        "one per breach"
    );
    assert!(rx.count_path("/hc/flaky/start") >= 3, "start pings");
    assert_eq!(rx.count_path("/hc/flaky/fail"), 1);
    // Fixed: the next run succeeds, one recovery notice.
    std::fs::write(dir.path().join("ok"), "").expect("fix");
    wait_for("the recovery notice", Duration::from_secs(60), || {
        (rx.count("/hook", "\"event\":\"recovery\"") >= 1).then_some(())
    });
    assert_eq!(rx.count("/hook", "\"event\":\"recovery\""), 1);
    wait_for("the success ping", Duration::from_secs(30), || {
        (rx.count_path("/hc/flaky") >= 1).then_some(())
    });
    if let Some(m) = &mail {
        // Exactly one failure mail for the streak and one recovery mail.
        let mails = m.all_messages_after(2);
        let with = |needle: &str| {
            (mails.iter())
                .filter(|t| {
                    t.split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                        .contains(needle)
                })
                .count()
        };
        assert_eq!(with("Event: failure"), 1, "{mails:?}");
        assert_eq!(with("Event: recovery"), 1, "{mails:?}");
        assert_eq!(mails.len(), 2, "{mails:?}");
    }
    let state = std::fs::read_to_string(d.state.join("alerts.json")).expect("alert state kept");
    assert!(state.contains("late"), "{state}");
    assert_eq!(
        metric(
            &d.metrics(),
            "bunker_notifications_failed_total{target=\"hook\"}"
        ),
        Some(0.0)
    );
}

#[test]
fn maintenance_jobs_check_prune_and_copy_run_on_schedule() {
    let dir = setup();
    std::fs::write(dir.path().join("pw2"), "offsite-password\n").expect("pw2");
    write_policy(
        dir.path(),
        "repositories:\n  local: {location: ./repo, password_file: pw}\n  offsite: {location: ./offsite, password_file: pw2, role: offsite}\nitems:\n  - name: docs\n    paths: [./data]\n    targets: [local]\n    schedule: every 2s\n    retention: {keep_last: 2}\ndaemon:\n  max_concurrent: 3\n  jobs:\n    - {kind: prune, repository: local, schedule: every 2s}\n    - {kind: copy, repository: local, to: offsite, schedule: every 2s}\n    - {kind: check, repository: offsite, schedule: every 2s, read_data_subset: all}\n",
    );
    let mut d = Daemon::start(dir.path(), &[]);
    let ok = |job: &str| {
        d.json(&format!(
            "/api/v1/runs?job={}&limit=1000",
            job.replace('>', "%3E")
        ))["runs"]
            .as_array()
            .map(|r| r.iter().filter(|r| r["result"] == "success").count())
            .unwrap_or(0)
    };
    wait_for(
        "two successful runs of every job",
        Duration::from_secs(90),
        || {
            let counts = [
                ok("backup:docs"),
                ok("prune:local"),
                ok("copy:local->offsite"),
                ok("check:offsite"),
            ];
            counts.iter().all(|n| *n >= 2).then_some(())
        },
    );
    let text = d.metrics();
    assert!(
        metric(
            &text,
            "bunker_check_last_success_timestamp_seconds{repository=\"offsite\"}"
        )
        .is_some_and(|t| t > 0.0),
        "{text}"
    );
    assert!(
        metric(&text, "bunker_repository_size_bytes{repository=\"local\"}")
            .is_some_and(|b| b > 0.0)
    );
    assert!(d.stop().success(), "{}", d.log_text());
    // Retention kept two snapshots; the copies reached the offsite repository.
    assert!(snapshot_times(dir.path(), "docs").len() <= 2);
    let out = bunker(dir.path())
        .env("BUNKER_REPOSITORY", dir.path().join("offsite"))
        .env("BUNKER_PASSWORD_FILE", dir.path().join("pw2"))
        .args(["snapshots", "--json", "--tag", "bunker:item=docs"])
        .output()
        .expect("snapshots");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(!v.as_array().expect("list").is_empty(), "nothing copied");
    if have("restic", "version") {
        for (repo, pw) in [
            ("repo", "daemon-test-password"),
            ("offsite", "offsite-password"),
        ] {
            let out = restic(dir.path(), repo)
                .env("RESTIC_PASSWORD", pw)
                .arg("check")
                .output()
                .expect("restic");
            assert!(
                out.status.success(),
                "restic check {repo}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn an_on_change_item_runs_after_its_source_changes() {
    let dir = setup();
    write_policy(
        dir.path(),
        "repositories:\n  local: {location: ./repo, password_file: pw}\nitems:\n  - name: watched\n    paths: [./data]\n    schedule: on_change\ndaemon:\n  debounce: 1s\n",
    );
    let d = Daemon::start(dir.path(), &[]);
    // Never backed up: it runs once at start; then it waits for a change.
    wait_for("the first run", Duration::from_secs(60), || {
        (successes(&d.runs("watched")) == 1).then_some(())
    });
    let items = d.json("/api/v1/items");
    assert!(
        items["items"][0]["next"].is_null(),
        "idle until a change: {items}"
    );
    std::fs::write(dir.path().join("data/new.txt"), "changed\n").expect("change");
    let runs = wait_for("the run after the change", Duration::from_secs(60), || {
        let r = d.runs("watched");
        (successes(&r) == 2).then_some(r)
    });
    assert_eq!(runs[0]["trigger"], "change");
}

/// Two jobs creating one new repository at once left two keys behind, and
/// every later open failed ("authentication failed").
#[test]
fn items_starting_together_create_their_new_repository_once() {
    let dir = setup();
    write_policy(
        dir.path(),
        "repositories:\n  local: {location: ./repo, password_file: pw}\nitems:\n  - {name: one, paths: [./data], schedule: every 2s}\n  - {name: two, paths: [./data], schedule: every 2s}\n  - {name: three, paths: [./data], schedule: every 2s}\ndaemon:\n  max_concurrent: 3\n",
    );
    let d = Daemon::start(dir.path(), &[]);
    for item in ["one", "two", "three"] {
        wait_for(
            &format!("two runs of {item}"),
            Duration::from_secs(60),
            || (successes(&d.runs(item)) >= 2).then_some(()),
        );
    }
    let all = d.json("/api/v1/runs?limit=1000");
    let failed: Vec<_> = all["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .filter(|r| r["result"] != "success")
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(
        std::fs::read_dir(dir.path().join("repo/keys"))
            .expect("keys")
            .count(),
        1
    );
}

#[test]
fn systemd_is_told_when_the_daemon_is_ready_and_stopping() {
    let dir = setup();
    write_policy(dir.path(), POLICY);
    let sock_path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let port = free_port();
    let mut child = bunker(dir.path())
        .env("NOTIFY_SOCKET", &sock_path)
        .args([
            "daemon",
            "policy.yaml",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--state-dir",
        ])
        .arg(dir.path().join("state"))
        .stderr(Stdio::null())
        .spawn()
        .expect("daemon");
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("a READY message within 30 s");
    assert_eq!(&buf[..n], b"READY=1");
    assert_eq!(
        http(port, "GET", "/readyz", None).expect("http").status,
        200
    );
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let n = sock.recv(&mut buf).expect("a STOPPING message");
    assert_eq!(&buf[..n], b"STOPPING=1");
    let status = wait_for("the daemon to exit", Duration::from_secs(60), || {
        child.try_wait().ok().flatten()
    });
    assert!(status.success());
}

#[test]
fn a_scheduled_drill_restores_the_item_and_is_recorded() {
    let dir = setup();
    write_policy(
        dir.path(),
        "repositories:\n  local: {location: ./repo, password_file: pw}\nitems:\n  - name: docs\n    paths: [./data]\n    schedule: every 1h\n    rto: 10m\n    drill:\n      schedule: every 2s\n      sandbox: ./sandboxes\n",
    );
    std::fs::create_dir(dir.path().join("sandboxes")).expect("sandboxes");
    let d = Daemon::start(dir.path(), &[]);
    let runs = wait_for("a passed drill", Duration::from_secs(90), || {
        let v = d.json("/api/v1/runs?job=drill:docs&limit=100");
        let runs = v["runs"].as_array().cloned().unwrap_or_default();
        runs.iter()
            .any(|r| r["result"] == "success")
            .then_some(runs)
    });
    let ok = runs
        .iter()
        .find(|r| r["result"] == "success")
        .expect("passed");
    assert!(
        ok["stats"]["rto_measured_seconds"].as_f64().is_some(),
        "{ok}"
    );
    let text = d.metrics();
    assert!(
        metric(
            &text,
            "bunker_maintenance_runs_total{kind=\"drill\",repository=\"local\",result=\"success\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    // The drill series: the newest passed drill, its measured RTO, the objective.
    assert!(
        metric(
            &text,
            "bunker_drill_last_success_timestamp_seconds{item=\"docs\"}"
        )
        .is_some_and(|t| t > 1.0e9),
        "{text}"
    );
    assert!(
        metric(&text, "bunker_drill_rto_seconds{item=\"docs\"}")
            .is_some_and(|v| (0.0..600.0).contains(&v)),
        "{text}"
    );
    assert_eq!(
        metric(&text, "bunker_item_rto_target_seconds{item=\"docs\"}"),
        Some(600.0)
    );
    // Backup metrics count backups only.
    assert_eq!(
        metric(
            &text,
            "bunker_backup_runs_total{item=\"docs\",target=\"local\",result=\"success\"}"
        ),
        Some(1.0)
    );
}
