//! [`AlertState`]: job results in, notices out, with "alert once, notify
//! recovery" semantics.
//!
//! A failing item that keeps failing on every run produces one
//! [`EventKind::Failure`] notice for the whole incident, and one
//! [`EventKind::Recovery`] notice when it succeeds again. The state is small
//! and serialisable so the daemon keeps it across restarts (otherwise a
//! restart during an incident would alert again, or lose the recovery).

use crate::notice::{human, Notice};
use bunker_policy::{EventKind, Priority};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// The alert state of every item and repository seen so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertState {
    /// Per item name.
    #[serde(default)]
    items: BTreeMap<String, ItemAlert>,
    /// Repository checks, per repository name.
    #[serde(default)]
    checks: BTreeMap<String, Streak>,
}

/// One item's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct ItemAlert {
    /// The current streak of failed runs (none when the last run succeeded).
    #[serde(default)]
    runs: Streak,
    /// Since when the RPO is breached (none = within its RPO).
    #[serde(default)]
    rpo_breached_since: Option<DateTime<Utc>>,
    /// The current streak of failed restore drills.
    #[serde(default)]
    drills: Streak,
}

/// A streak of failures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Streak {
    /// Failures in a row.
    #[serde(default)]
    failures: u32,
    /// When the first of them happened.
    #[serde(default)]
    since: Option<DateTime<Utc>>,
}

impl Streak {
    /// Records a result; returns the streak that ended (on success after
    /// failures) or `true` for "this is the first failure".
    fn record(&mut self, failed: bool, time: DateTime<Utc>) -> Outcome {
        if failed {
            self.failures = self.failures.saturating_add(1);
            if self.failures == 1 {
                self.since = Some(time);
                Outcome::FirstFailure
            } else {
                Outcome::StillFailing
            }
        } else if self.failures > 0 {
            let ended = std::mem::take(self);
            Outcome::Recovered(ended)
        } else {
            Outcome::StillOk
        }
    }
}

enum Outcome {
    FirstFailure,
    StillFailing,
    Recovered(Streak),
    StillOk,
}

fn streak_text(s: &Streak) -> String {
    let runs = if s.failures == 1 {
        "1 failed run".to_string()
    } else {
        format!("{} failed runs", s.failures)
    };
    match s.since {
        Some(t) => format!("{runs} since {}", t.format("%Y-%m-%d %H:%M:%S UTC")),
        None => runs,
    }
}

impl AlertState {
    /// An empty state (nothing failing, nothing breached).
    pub fn new() -> AlertState {
        AlertState::default()
    }

    /// Records the end of a backup run of `item` (`error` = `None` for
    /// success). Returns a [`EventKind::Success`] notice for every success,
    /// plus a [`EventKind::Recovery`] notice for the first success after
    /// failures; a [`EventKind::Failure`] notice only for the first failure
    /// of a streak.
    pub fn run_finished(
        &mut self,
        item: &str,
        priority: Priority,
        error: Option<&str>,
        time: DateTime<Utc>,
    ) -> Vec<Notice> {
        let state = self.items.entry(item.to_string()).or_default();
        match (state.runs.record(error.is_some(), time), error) {
            (Outcome::FirstFailure, Some(e)) => vec![Notice::failure(item, priority, e, time)],
            (Outcome::StillFailing, _) => Vec::new(),
            (Outcome::Recovered(ended), _) => vec![
                Notice::success(item, priority, time),
                Notice::new(
                    EventKind::Recovery,
                    format!("bunker: backup of {item} recovered"),
                    format!(
                        "The backup of item \"{item}\" succeeded again after {}.",
                        streak_text(&ended)
                    ),
                    time,
                )
                .with_item(item)
                .with_priority(priority),
            ],
            _ => vec![Notice::success(item, priority, time)],
        }
    }

    /// Records the RPO state of `item`: `age` is the age of its newest good
    /// snapshot (or archived WAL), `None` when there is none. Returns an
    /// [`EventKind::RpoBreach`] notice when a breach starts and an
    /// [`EventKind::RpoRecovered`] notice when it clears; nothing otherwise.
    pub fn rpo(
        &mut self,
        item: &str,
        priority: Priority,
        breached: bool,
        age: Option<Duration>,
        rpo: Duration,
        time: DateTime<Utc>,
    ) -> Vec<Notice> {
        let state = self.items.entry(item.to_string()).or_default();
        let age_text = match age {
            Some(a) => format!("the newest good backup is {} old", human(a)),
            None => "there is no good backup yet".to_string(),
        };
        match (breached, state.rpo_breached_since) {
            (true, None) => {
                state.rpo_breached_since = Some(time);
                vec![Notice::new(
                    EventKind::RpoBreach,
                    format!("bunker: {item} breaches its RPO of {}", human(rpo)),
                    format!(
                        "Item \"{item}\" breaches its recovery point objective of {}: {age_text}.",
                        human(rpo)
                    ),
                    time,
                )
                .with_item(item)
                .with_priority(priority)]
            }
            (false, Some(since)) => {
                state.rpo_breached_since = None;
                let lasted = (time - since).to_std().unwrap_or_default();
                vec![Notice::new(
                    EventKind::RpoRecovered,
                    format!("bunker: {item} is within its RPO again"),
                    format!(
                        "Item \"{item}\" is within its recovery point objective of {} again ({age_text}); the breach lasted {}.",
                        human(rpo),
                        human(lasted)
                    ),
                    time,
                )
                .with_item(item)
                .with_priority(priority)]
            }
            _ => Vec::new(),
        }
    }

    /// Records the end of a check of `repository`. Returns an
    /// [`EventKind::CheckFailed`] notice for the first failure of a streak
    /// and an [`EventKind::Recovery`] notice for the first success after it.
    pub fn check_finished(
        &mut self,
        repository: &str,
        error: Option<&str>,
        time: DateTime<Utc>,
    ) -> Vec<Notice> {
        let streak = self.checks.entry(repository.to_string()).or_default();
        match (streak.record(error.is_some(), time), error) {
            (Outcome::FirstFailure, Some(e)) => vec![Notice::new(
                EventKind::CheckFailed,
                format!("bunker: check of repository {repository} failed"),
                format!("The check of repository \"{repository}\" failed: {e}"),
                time,
            )
            .with_target(repository)],
            (Outcome::Recovered(ended), _) => vec![Notice::new(
                EventKind::Recovery,
                format!("bunker: check of repository {repository} passes again"),
                format!(
                    "The check of repository \"{repository}\" passes again after {}.",
                    streak_text(&ended)
                ),
                time,
            )
            .with_target(repository)],
            _ => Vec::new(),
        }
    }

    /// Records the end of a restore drill of `item` (`error` = `None`: it
    /// passed within the item's RTO). Returns a [`EventKind::DrillFailed`]
    /// notice for the first failure of a streak and a
    /// [`EventKind::Recovery`] notice for the first pass after failures.
    pub fn drill_finished(
        &mut self,
        item: &str,
        priority: Priority,
        error: Option<&str>,
        time: DateTime<Utc>,
    ) -> Vec<Notice> {
        let streak = &mut self.items.entry(item.to_string()).or_default().drills;
        match (streak.record(error.is_some(), time), error) {
            (Outcome::FirstFailure, Some(e)) => vec![Notice::new(
                EventKind::DrillFailed,
                format!("bunker: restore drill of {item} failed"),
                format!("The restore drill of \"{item}\" failed: {e}"),
                time,
            )
            .with_item(item)
            .with_priority(priority)],
            (Outcome::Recovered(ended), _) => vec![Notice::new(
                EventKind::Recovery,
                format!("bunker: restore drill of {item} passes again"),
                format!(
                    "The restore drill of \"{item}\" passes again after {}.",
                    streak_text(&ended)
                ),
                time,
            )
            .with_item(item)
            .with_priority(priority)],
            _ => Vec::new(),
        }
    }

    /// Whether `item` is in a streak of failed runs.
    pub fn is_failing(&self, item: &str) -> bool {
        self.items.get(item).is_some_and(|s| s.runs.failures > 0)
    }

    /// Whether `item`'s RPO is currently breached.
    pub fn is_rpo_breached(&self, item: &str) -> bool {
        self.items
            .get(item)
            .is_some_and(|s| s.rpo_breached_since.is_some())
    }

    /// Forgets items and repositories no longer in the policy (after a
    /// reload), so the state does not grow without bound.
    pub fn retain(&mut self, items: &[&str], repositories: &[&str]) {
        self.items.retain(|k, _| items.contains(&k.as_str()));
        self.checks
            .retain(|k, _| repositories.contains(&k.as_str()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 3, min, 0).unwrap()
    }

    fn kinds(n: &[Notice]) -> Vec<EventKind> {
        n.iter().map(|n| n.kind).collect()
    }

    #[test]
    fn a_failure_streak_alerts_once_and_recovers_once() {
        let mut s = AlertState::new();
        let p = Priority::Critical;
        assert_eq!(
            kinds(&s.run_finished("db", p, None, t(0))),
            [EventKind::Success]
        );
        let first = s.run_finished("db", p, Some("disk full"), t(1));
        assert_eq!(kinds(&first), [EventKind::Failure]);
        assert!(first[0].message.contains("disk full"));
        assert_eq!(first[0].priority, Some(p));
        assert!(s.is_failing("db"));
        for m in 2..5 {
            assert!(s.run_finished("db", p, Some("disk full"), t(m)).is_empty());
        }
        let back = s.run_finished("db", p, None, t(5));
        assert_eq!(kinds(&back), [EventKind::Success, EventKind::Recovery]);
        assert!(
            back[1]
                .message
                .contains("4 failed runs since 2026-12-01 03:01:00 UTC"),
            "{}",
            back[1].message
        );
        assert!(!s.is_failing("db"));
        assert_eq!(
            kinds(&s.run_finished("db", p, None, t(6))),
            [EventKind::Success]
        );
        // A new incident alerts again.
        assert_eq!(
            kinds(&s.run_finished("db", p, Some("again"), t(7))),
            [EventKind::Failure]
        );
        // Other items are independent.
        assert_eq!(
            kinds(&s.run_finished("app", p, Some("x"), t(7))),
            [EventKind::Failure]
        );
    }

    #[test]
    fn an_rpo_breach_alerts_once_and_reports_when_it_clears() {
        let mut s = AlertState::new();
        let rpo = Duration::from_secs(3600);
        let p = Priority::Important;
        assert!(s
            .rpo("db", p, false, Some(Duration::from_secs(60)), rpo, t(0))
            .is_empty());
        let b = s.rpo("db", p, true, Some(Duration::from_secs(7200)), rpo, t(1));
        assert_eq!(kinds(&b), [EventKind::RpoBreach]);
        assert!(b[0].message.contains("2h old"), "{}", b[0].message);
        assert!(s.is_rpo_breached("db"));
        assert!(s.rpo("db", p, true, None, rpo, t(2)).is_empty());
        let r = s.rpo("db", p, false, Some(Duration::from_secs(5)), rpo, t(31));
        assert_eq!(kinds(&r), [EventKind::RpoRecovered]);
        assert!(r[0].message.contains("lasted 30m"), "{}", r[0].message);
        assert!(!s.is_rpo_breached("db"));
        let none = s.rpo("new", p, true, None, rpo, t(0));
        assert!(none[0].message.contains("no good backup yet"));
    }

    #[test]
    fn a_failing_check_alerts_once_per_streak() {
        let mut s = AlertState::new();
        assert!(s.check_finished("main", None, t(0)).is_empty());
        let f = s.check_finished("main", Some("pack abc is damaged"), t(1));
        assert_eq!(kinds(&f), [EventKind::CheckFailed]);
        assert_eq!(f[0].target.as_deref(), Some("main"));
        assert_eq!(f[0].item, None);
        assert!(s.check_finished("main", Some("still"), t(2)).is_empty());
        assert_eq!(
            kinds(&s.check_finished("main", None, t(3))),
            [EventKind::Recovery]
        );
        assert!(s.check_finished("main", None, t(4)).is_empty());
    }

    #[test]
    fn the_state_survives_a_serde_round_trip() {
        let mut s = AlertState::new();
        let p = Priority::Low;
        s.run_finished("db", p, Some("x"), t(0));
        s.rpo("db", p, true, None, Duration::from_secs(60), t(0));
        s.check_finished("main", Some("x"), t(0));
        let text = serde_json::to_string(&s).unwrap();
        let mut back: AlertState = serde_json::from_str(&text).unwrap();
        assert_eq!(back, s);
        // After a restart the incident is still known: no second alert.
        assert!(back.run_finished("db", p, Some("x"), t(1)).is_empty());
        assert!(back
            .rpo("db", p, true, None, Duration::from_secs(60), t(1))
            .is_empty());
        assert!(back.check_finished("main", Some("x"), t(1)).is_empty());
        // An empty or older document reads as the default.
        let empty: AlertState = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, AlertState::default());
    }

    #[test]
    fn a_failing_drill_alerts_once_and_its_pass_is_a_recovery() {
        let mut s = AlertState::new();
        let f = s.drill_finished("db", Priority::Critical, Some("check failed"), t(0));
        assert_eq!(kinds(&f), [EventKind::DrillFailed]);
        assert!(s
            .drill_finished("db", Priority::Critical, Some("again"), t(1))
            .is_empty());
        let ok = s.drill_finished("db", Priority::Critical, None, t(2));
        assert_eq!(kinds(&ok), [EventKind::Recovery]);
        assert!(s
            .drill_finished("db", Priority::Critical, None, t(3))
            .is_empty());
        // A drill streak is not a backup streak.
        assert!(!s.is_failing("db"));
    }

    #[test]
    fn retain_forgets_removed_items() {
        let mut s = AlertState::new();
        s.run_finished("gone", Priority::Low, Some("x"), t(0));
        s.run_finished("kept", Priority::Low, Some("x"), t(0));
        s.retain(&["kept"], &[]);
        assert!(!s.is_failing("gone"));
        assert!(s.is_failing("kept"));
    }
}
