//! The one place job and RPO events leave the daemon as notifications
//! (`bunker-notify`). [`AlertState`] decides what is news ("alert once,
//! notify recovery"); it is kept in `alerts.json` in the state directory so
//! a restart neither repeats nor forgets an open alert. Delivery blocks
//! (retries with backoff): it runs on a blocking thread, never on the
//! daemon's loop, and a failed delivery is counted, never raised.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bunker_notify::{AlertState, Notice, Notifier};
use bunker_policy::{Policy, Priority};
use chrono::{DateTime, Utc};

use crate::job::{JobKind, JobSpec};
use crate::runner::{JobReport, RunResult};

/// The alert state file's name in the state directory.
pub const FILE_NAME: &str = "alerts.json";

/// Notification state and delivery.
pub struct Alerts {
    notifier: Option<Arc<Notifier>>,
    state: AlertState,
    path: PathBuf,
}

fn notifier_for(policy: &Policy) -> Option<Arc<Notifier>> {
    if policy.notifications.is_empty() {
        return None;
    }
    match Notifier::new(&policy.notifications) {
        Ok(n) => Some(Arc::new(n)),
        Err(e) => {
            tracing::error!("notifications are off: {e}");
            None
        }
    }
}

impl Alerts {
    /// The state saved in `state_dir` (empty when there is none or it is
    /// unreadable), delivering to `policy`'s targets.
    pub fn load(state_dir: &Path, policy: &Policy) -> Alerts {
        let path = state_dir.join(FILE_NAME);
        let state = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                tracing::warn!(
                    "{} is unreadable ({e}); alert state starts empty",
                    path.display()
                );
                AlertState::new()
            }),
            Err(_) => AlertState::new(),
        };
        Alerts {
            notifier: notifier_for(policy),
            state,
            path,
        }
    }

    /// A reloaded policy: new targets; forget items and repositories that
    /// are gone.
    pub fn reconfigure(&mut self, policy: &Policy) {
        let earlier = self.notifier.as_ref().map(|n| n.failed_total());
        self.notifier = notifier_for(policy);
        // `bunker_notifications_failed_total` keeps counting up.
        if let (Some(n), Some(earlier)) = (&self.notifier, earlier) {
            n.add_failed_totals(&earlier);
        }
        let items: Vec<&str> = policy.items.iter().map(|i| i.name.as_str()).collect();
        let repos: Vec<&str> = policy.repositories.keys().map(String::as_str).collect();
        self.state.retain(&items, &repos);
        self.save();
    }

    /// The notifier (for its failure counters).
    pub fn notifier(&self) -> Option<&Arc<Notifier>> {
        self.notifier.as_ref()
    }

    fn save(&self) {
        let tmp = self.path.with_extension("json.tmp");
        let written = serde_json::to_vec_pretty(&self.state)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = written {
            tracing::warn!(
                "cannot save the alert state to {}: {e}",
                self.path.display()
            );
        }
    }

    /// Deliver `notices` on a blocking thread.
    fn send(&self, notices: Vec<Notice>) {
        let Some(n) = self.notifier.clone() else {
            return;
        };
        if notices.is_empty() {
            return;
        }
        let deliver = move || {
            for notice in &notices {
                for d in n.send(notice) {
                    if !d.ok {
                        tracing::warn!(
                            "notification to {} failed after {} attempts: {}",
                            d.target,
                            d.attempts,
                            d.error.as_deref().unwrap_or("?")
                        );
                    }
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn_blocking(deliver);
            }
            Err(_) => {
                std::thread::spawn(deliver);
            }
        }
    }

    /// A job started (healthchecks-style start pings for backups).
    pub fn job_started(&self, spec: &JobSpec) {
        if let JobKind::Backup { item } = &spec.kind {
            self.send(vec![Notice::start(item)]);
        }
    }

    /// A job finished.
    pub fn job_finished(&mut self, report: &JobReport, priority: Priority) {
        if report.runs.is_empty() {
            return;
        }
        let now = Utc::now();
        let errors: Vec<String> = report
            .runs
            .iter()
            .filter(|r| matches!(r.result, RunResult::Failed))
            .map(|r| match &r.error {
                Some(e) if r.target != "-" => format!("{}: {e}", r.target),
                Some(e) => e.clone(),
                None => "failed".into(),
            })
            .collect();
        // A shutdown's cancellation is not a failure to alert on.
        if report.runs.iter().all(|r| r.result == RunResult::Cancelled) {
            return;
        }
        let error = (!errors.is_empty()).then(|| errors.join("; "));
        let notices = match &report.spec.kind {
            JobKind::Backup { item } => {
                self.state
                    .run_finished(item, priority, error.as_deref(), now)
            }
            JobKind::Check { repository, .. } => {
                self.state.check_finished(repository, error.as_deref(), now)
            }
            JobKind::Drill { item } => {
                self.state
                    .drill_finished(item, priority, error.as_deref(), now)
            }
            JobKind::Prune { .. } | JobKind::Copy { .. } => match &error {
                Some(e) => vec![Notice::warning(
                    None,
                    &format!("{} failed: {e}", report.spec.id),
                    now,
                )],
                None => Vec::new(),
            },
        };
        self.save();
        self.send(notices);
    }

    /// An evaluation of `item`'s RPO (the state sends only changes).
    #[allow(clippy::too_many_arguments)]
    pub fn rpo(
        &mut self,
        item: &str,
        priority: Priority,
        breached: bool,
        age: Option<Duration>,
        rpo: Duration,
        now: DateTime<Utc>,
    ) {
        let was = self.state.is_rpo_breached(item);
        let notices = self.state.rpo(item, priority, breached, age, rpo, now);
        if was != breached {
            self.save();
        }
        self.send(notices);
    }
}
