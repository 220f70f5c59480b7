//! The scheduler's rules, with a fake clock.

use std::sync::Arc;
use std::time::Duration;

use bunker_policy::{DaemonConfig, Priority, Schedule};
use chrono::{DateTime, Utc};

use crate::gate::RepoGate;
use crate::job::{Access, JobKind, JobSpec, Trigger};
use crate::scheduler::{RequestError, Scheduler, Start};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

fn h(n: i64) -> chrono::Duration {
    chrono::Duration::hours(n)
}

fn backup(item: &str, schedule: &str, repo: &str) -> JobSpec {
    JobSpec {
        id: format!("backup:{item}"),
        kind: JobKind::Backup { item: item.into() },
        schedule: Some(Schedule::parse(schedule).expect("schedule")),
        priority: Priority::Important,
        order: 0,
        resources: vec![(repo.into(), Access::Shared)],
    }
}

fn prune(repo: &str) -> JobSpec {
    JobSpec {
        id: format!("prune:{repo}"),
        kind: JobKind::Prune {
            repository: repo.into(),
        },
        schedule: Some(Schedule::parse("every 1d").expect("schedule")),
        priority: Priority::Important,
        order: 99,
        resources: vec![(repo.into(), Access::Exclusive)],
    }
}

fn cfg(max: usize) -> DaemonConfig {
    DaemonConfig {
        max_concurrent: max,
        ..Default::default()
    }
}

fn ids(v: &[Start]) -> Vec<&str> {
    v.iter().map(|s| s.spec.id.as_str()).collect()
}

#[test]
fn after_downtime_across_many_slots_a_job_catches_up_exactly_once() {
    let gate = RepoGate::new();
    let t0 = t("2026-01-01T10:00:00Z");
    for sched in ["every 1h", "0 * * * *"] {
        let mut s = Scheduler::new(&cfg(4), vec![backup("a", sched, "r")]);
        s.set_last("backup:a", Some(t0));
        // Down for five hours: five slots missed.
        let now = t0 + h(5) + chrono::Duration::minutes(7);
        let started = s.select(now, &gate);
        assert_eq!(ids(&started), ["backup:a"], "{sched}");
        assert_eq!(started[0].trigger, Trigger::Schedule);
        drop(started);
        // The run wrote a snapshot at `now`: nothing more is due until the next slot.
        s.finished("backup:a", Some(now));
        assert!(s.select(now, &gate).is_empty(), "{sched}: caught up once");
        assert!(s
            .select(now + chrono::Duration::minutes(50), &gate)
            .is_empty());
        let next = s.next_wake(now).expect("scheduled");
        assert!(next > now && next <= now + h(1), "{sched}: next {next}");
        assert_eq!(ids(&s.select(next, &gate)), ["backup:a"], "{sched}");
    }
}

#[test]
fn a_running_job_is_never_started_twice() {
    let gate = RepoGate::new();
    let mut s = Scheduler::new(&cfg(4), vec![backup("a", "every 1m", "r")]);
    let now = t("2026-01-01T10:00:00Z");
    let first = s.select(now, &gate);
    assert_eq!(ids(&first), ["backup:a"]);
    assert_eq!(first[0].trigger, Trigger::NeverRun);
    // Still running an hour later: due by its schedule, but not started again.
    assert!(s.select(now + h(1), &gate).is_empty());
    assert_eq!(
        s.request("backup:a", Trigger::Manual),
        Err(RequestError::Running("backup:a".into()))
    );
    assert!(s.next_wake(now + h(1)).is_none());
    s.finished("backup:a", Some(now));
    drop(first);
    assert_eq!(ids(&s.select(now + h(1), &gate)), ["backup:a"]);
}

#[test]
fn critical_items_go_first_and_at_most_max_concurrent_run() {
    let gate = RepoGate::new();
    let mut low = backup("low", "every 1h", "r1");
    low.priority = Priority::Low;
    low.order = 0;
    let mut imp = backup("imp", "every 1h", "r2");
    imp.order = 1;
    let mut crit = backup("crit", "every 1h", "r3");
    crit.priority = Priority::Critical;
    crit.order = 2;
    let mut s = Scheduler::new(&cfg(2), vec![low, imp, crit]);
    let now = t("2026-01-01T10:00:00Z");
    let started = s.select(now, &gate);
    assert_eq!(ids(&started), ["backup:crit", "backup:imp"]);
    assert!(s.select(now, &gate).is_empty(), "limit reached");
    assert_eq!(s.running(), 2);
    s.finished("backup:crit", Some(now));
    assert_eq!(ids(&s.select(now, &gate)), ["backup:low"]);
}

#[test]
fn different_items_run_in_parallel_on_one_repository() {
    let gate = RepoGate::new();
    let mut b = backup("b", "every 1h", "r");
    b.order = 1;
    let mut s = Scheduler::new(&cfg(4), vec![backup("a", "every 1h", "r"), b]);
    let started = s.select(t("2026-01-01T10:00:00Z"), &gate);
    assert_eq!(ids(&started), ["backup:a", "backup:b"]);
}

#[test]
fn prune_never_overlaps_backups_to_its_repository() {
    let gate = RepoGate::new();
    let now = t("2026-01-01T10:00:00Z");
    let mut b = backup("b", "every 1h", "r");
    b.order = 1;
    let mut c = backup("c", "every 1h", "other");
    c.order = 2;
    let mut s = Scheduler::new(
        &cfg(8),
        vec![backup("a", "every 1h", "r"), b, c, prune("r")],
    );
    s.set_last("backup:b", Some(now));
    s.set_last("backup:c", Some(now));
    s.set_last("prune:r", Some(now - h(23) - chrono::Duration::minutes(30)));
    // Only `a` is due at first: it takes r shared.
    let a = s.select(now - h(1), &gate);
    assert_eq!(ids(&a), ["backup:a"]);
    // Later prune, b (on r) and c (elsewhere) are due: prune waits for a,
    // and keeps b off r meanwhile; c runs.
    let later = now + h(1);
    let second = s.select(later, &gate);
    assert_eq!(ids(&second), ["backup:c"]);
    // a finishes: prune gets r alone, b still waits.
    s.finished("backup:a", Some(later));
    drop(a);
    let third = s.select(later, &gate);
    assert_eq!(ids(&third), ["prune:r"]);
    assert!(s.select(later, &gate).is_empty(), "b waits for prune");
    s.finished("prune:r", Some(later));
    drop(third);
    assert_eq!(ids(&s.select(later, &gate)), ["backup:b"]);
}

#[test]
fn a_wall_clock_jump_neither_fires_everything_twice_nor_skips_everything() {
    let gate = RepoGate::new();
    let now = t("2026-01-01T10:00:00Z");
    // Backward by a day: the last run lies "in the future". The job is due
    // one interval from now, not a day and an interval from now.
    let mut s = Scheduler::new(&cfg(4), vec![backup("a", "every 1h", "r")]);
    s.set_last("backup:a", Some(now + h(24)));
    assert!(s.select(now, &gate).is_empty(), "not fired by the jump");
    assert_eq!(s.next_wake(now), Some(now + h(1)));
    // The repository says the same after a refresh: still due then.
    s.set_last("backup:a", Some(now + h(24)));
    assert!(s
        .select(now + chrono::Duration::minutes(30), &gate)
        .is_empty());
    assert_eq!(
        ids(&s.select(now + h(1), &gate)),
        ["backup:a"],
        "not skipped"
    );
    // Forward by thirty days: each job runs once, then follows its schedule.
    let mut b = backup("b", "every 1h", "r");
    b.order = 1;
    let mut s = Scheduler::new(&cfg(4), vec![backup("a", "every 1h", "r"), b]);
    s.set_last("backup:a", Some(now));
    s.set_last("backup:b", Some(now));
    let jumped = now + h(24 * 30);
    let started = s.select(jumped, &gate);
    assert_eq!(ids(&started), ["backup:a", "backup:b"]);
    s.finished("backup:a", Some(jumped));
    s.finished("backup:b", Some(jumped));
    assert!(s
        .select(jumped + chrono::Duration::minutes(59), &gate)
        .is_empty());
}

#[test]
fn jitter_delays_a_slot_by_a_stable_amount_within_the_bound() {
    let gate = RepoGate::new();
    let c = DaemonConfig {
        jitter: Some(Duration::from_secs(600)),
        ..cfg(4)
    };
    let now = t("2026-01-01T10:00:00Z");
    let mut s = Scheduler::new(&c, vec![backup("a", "every 1h", "r")]);
    s.set_last("backup:a", Some(now));
    let slot = now + h(1);
    let at = s.next_wake(now).expect("due");
    assert!(
        at >= slot && at < slot + chrono::Duration::minutes(10),
        "{at}"
    );
    assert_eq!(
        s.next_wake(now + chrono::Duration::minutes(30)),
        Some(at),
        "stable"
    );
    if at > slot {
        assert!(s.select(slot, &gate).is_empty(), "not before its jitter");
    }
    assert_eq!(ids(&s.select(at, &gate)), ["backup:a"]);
}

#[test]
fn a_failed_run_is_retried_at_its_next_slot_not_in_a_loop() {
    let gate = RepoGate::new();
    let now = t("2026-01-01T10:00:00Z");
    let mut s = Scheduler::new(&cfg(4), vec![backup("a", "every 1h", "r")]);
    assert_eq!(ids(&s.select(now, &gate)), ["backup:a"]);
    // It failed: still no snapshot.
    s.finished("backup:a", None);
    assert!(s
        .select(now + chrono::Duration::minutes(1), &gate)
        .is_empty());
    assert_eq!(s.next_wake(now), Some(now + h(1)));
}

#[test]
fn on_change_runs_after_a_quiet_debounce_or_at_the_latest_after_ten() {
    let gate = RepoGate::new();
    let c = DaemonConfig {
        debounce: Duration::from_secs(10),
        ..cfg(4)
    };
    let now = t("2026-01-01T10:00:00Z");
    let mut s = Scheduler::new(&c, vec![backup("a", "on_change", "r")]);
    s.set_last("backup:a", Some(now - h(1)));
    assert_eq!(s.next_wake(now), None, "idle without changes");
    let sec = chrono::Duration::seconds;
    s.changed("backup:a", now);
    s.changed("backup:a", now + sec(5));
    assert_eq!(s.next_wake(now + sec(5)), Some(now + sec(15)));
    assert!(s.select(now + sec(14), &gate).is_empty());
    let started = s.select(now + sec(15), &gate);
    assert_eq!(started[0].trigger, Trigger::Change);
    s.finished("backup:a", Some(now + sec(15)));
    drop(started);
    // Changes that never stop: run at first + 10 × debounce.
    let base = now + sec(100);
    for i in 0..30 {
        s.changed("backup:a", base + sec(i * 5));
    }
    assert_eq!(s.next_wake(base + sec(145)), Some(base + sec(100)));
}

#[test]
fn a_reload_keeps_the_state_of_jobs_that_remain() {
    let gate = RepoGate::new();
    let now = t("2026-01-01T10:00:00Z");
    let mut s = Scheduler::new(&cfg(4), vec![backup("a", "every 1h", "r")]);
    let running = s.select(now, &gate);
    assert_eq!(running.len(), 1);
    let mut b = backup("b", "every 1h", "r");
    b.order = 1;
    s.reconfigure(&cfg(4), vec![backup("a", "every 2h", "r"), b]);
    assert!(s.is_running("backup:a"), "still running after reload");
    assert_eq!(ids(&s.select(now, &gate)), ["backup:b"]);
    let _ = Arc::strong_count(&gate);
}
