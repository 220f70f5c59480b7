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
