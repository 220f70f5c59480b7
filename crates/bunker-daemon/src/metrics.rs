//! The Prometheus series, kept up to date by the daemon and rendered in the
//! text exposition format for `GET /metrics`.
//!
//! Naming follows Prometheus' conventions: base units (`_seconds`,
//! `_bytes`), counters end in `_total`, times are `…_timestamp_seconds`
//! (the last success time, not "time since"). Every item's series exist
//! from start-up — `runs_total` at 0 for every result, timestamps at 0 for
//! "never" — so "never succeeded" is visible and alert rules need no
//! `absent()`. Labels are the policy's names only (no snapshot ids: the
//! cardinality stays that of the policy).

use std::collections::BTreeMap;
use std::fmt::Write;

use bunker_policy::Policy;
use chrono::{DateTime, Utc};

use crate::runner::{JobRun, RunResult};

/// One item at one target.
#[derive(Debug, Clone, Default)]
struct TargetSeries {
    last_success: f64,
    last_run: f64,
    runs: BTreeMap<&'static str, u64>,
    duration: f64,
    added: f64,
}

#[derive(Debug, Clone, Default)]
struct ItemSeries {
    targets: BTreeMap<String, TargetSeries>,
    rpo: Option<f64>,
    breached: bool,
    physical: bool,
    wal_archived: f64,
    /// The item has a `drill` section.
    drilled: bool,
    drill_last_success: f64,
    drill_rto: Option<f64>,
    rto_target: Option<f64>,
}

/// The daemon's metrics.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    items: BTreeMap<String, ItemSeries>,
    check_success: BTreeMap<String, f64>,
    repo_size: BTreeMap<String, u64>,
    maintenance_runs: BTreeMap<(String, String, &'static str), u64>,
    notifications_failed: BTreeMap<String, u64>,
    running: usize,
    version: String,
    /// The 3-2-1 report's series: name → item → value.
    compliance: BTreeMap<&'static str, BTreeMap<String, f64>>,
}

fn ts(t: Option<DateTime<Utc>>) -> f64 {
    t.map_or(0.0, |t| t.timestamp_millis() as f64 / 1000.0)
}

/// Escapes a label value (backslash, double quote, line feed).
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Series for every item, target and repository of `policy`, at their
    /// initial values; values of series that remain are kept (a reload).
    pub fn sync_policy(&mut self, policy: &Policy) {
        self.version = env!("CARGO_PKG_VERSION").to_string();
        let mut items = BTreeMap::new();
        for item in &policy.items {
            let mut s = self.items.remove(&item.name).unwrap_or_default();
            s.rpo = item.rpo.map(|d| d.as_secs_f64());
            s.physical = item.physical().is_some();
            s.drilled = item.drill.is_some();
            s.rto_target = item.rto.map(|d| d.as_secs_f64());
            let mut targets = BTreeMap::new();
            for t in &item.targets {
                let mut ts = s.targets.remove(t).unwrap_or_default();
                for r in RunResult::ALL {
                    ts.runs.entry(r.as_str()).or_insert(0);
                }
                targets.insert(t.clone(), ts);
            }
            s.targets = targets;
            items.insert(item.name.clone(), s);
        }
        self.items = items;
        self.check_success
            .retain(|r, _| policy.repositories.contains_key(r));
        for r in policy.repositories.keys() {
            self.check_success.entry(r.clone()).or_insert(0.0);
        }
        self.repo_size
            .retain(|r, _| policy.repositories.contains_key(r));
        let mut jobs: Vec<(String, String)> = policy
            .daemon
            .jobs
            .iter()
            .map(|j| (j.kind.as_str().to_string(), j.repository.clone()))
            .collect();
        for item in &policy.items {
            if item.drill.as_ref().is_some_and(|d| d.schedule.is_some()) {
                if let Some(t) = item.targets.first() {
                    jobs.push(("drill".to_string(), t.clone()));
                }
            }
        }
        self.maintenance_runs
            .retain(|(k, r, _), _| jobs.iter().any(|(jk, jr)| jk == k && jr == r));
        for (k, r) in jobs {
            for res in RunResult::ALL {
                self.maintenance_runs
                    .entry((k.clone(), r.clone(), res.as_str()))
                    .or_insert(0);
            }
        }
    }

    /// The newest snapshot of `item` at `target` (the repository's truth):
    /// the last success time.
    pub fn set_newest(&mut self, item: &str, target: &str, newest: Option<DateTime<Utc>>) {
        if let Some(t) = self
            .items
            .get_mut(item)
            .and_then(|i| i.targets.get_mut(target))
        {
            t.last_success = t.last_success.max(ts(newest));
        }
    }

    /// The last run of `item` at `target` known from the history.
    pub fn set_last_run(&mut self, item: &str, target: &str, at: Option<DateTime<Utc>>) {
        if let Some(t) = self
            .items
            .get_mut(item)
            .and_then(|i| i.targets.get_mut(target))
        {
            t.last_run = t.last_run.max(ts(at));
        }
    }

    /// The last successful check of `repository`.
    pub fn set_check_success(&mut self, repository: &str, at: Option<DateTime<Utc>>) {
        if let Some(v) = self.check_success.get_mut(repository) {
            *v = v.max(ts(at));
        }
    }

    /// A repository's size.
    pub fn set_repository_size(&mut self, repository: &str, bytes: u64) {
        self.repo_size.insert(repository.to_string(), bytes);
    }

    /// An item's RPO state.
    pub fn set_rpo(&mut self, item: &str, breached: bool) {
        if let Some(i) = self.items.get_mut(item) {
            i.breached = breached;
        }
    }

    /// The newest archived WAL of a physical postgres item.
    pub fn set_wal_archived(&mut self, item: &str, at: Option<DateTime<Utc>>) {
        if let Some(i) = self.items.get_mut(item) {
            i.wal_archived = i.wal_archived.max(ts(at));
        }
    }

    /// A passed drill of `item` (started at `at`, measured RTO `rto`
    /// seconds); an older one than known changes nothing.
    pub fn set_drill_passed(&mut self, item: &str, at: DateTime<Utc>, rto: f64) {
        if let Some(i) = self.items.get_mut(item) {
            let t = ts(Some(at));
            if t >= i.drill_last_success {
                i.drill_last_success = t;
                i.drill_rto = Some(rto);
            }
        }
    }

    /// The 3-2-1 report as last evaluated (replaces the previous one).
    pub fn set_compliance(&mut self, series: &[(&'static str, String, f64)]) {
        self.compliance.clear();
        for (name, item, v) in series {
            self.compliance
                .entry(name)
                .or_default()
                .insert(item.clone(), *v);
        }
    }

    /// Failed deliveries per notification target (a running total).
    pub fn set_notifications_failed(&mut self, totals: BTreeMap<String, u64>) {
        for (k, v) in totals {
            self.notifications_failed.insert(k, v);
        }
    }

    /// Declares a notification target (its counter starts at 0).
    pub fn declare_notification_target(&mut self, name: &str) {
        self.notifications_failed
            .entry(name.to_string())
            .or_insert(0);
    }

    /// How many jobs run now.
    pub fn set_running(&mut self, n: usize) {
        self.running = n;
    }

    /// A finished run. A backup that failed before reaching any target
    /// (target `-`) counts at every target of its item.
    pub fn record(&mut self, run: &JobRun) {
        let result = run.result.as_str();
        let backup_item = run.item.as_ref().filter(|_| run.kind == "backup");
        let Some(item) = backup_item else {
            let key = (run.kind.clone(), run.target.clone(), result);
            // Copies are counted by their source repository.
            let repo = if run.kind == "drill" {
                run.target.clone()
            } else {
                run.job
                    .split_once(':')
                    .map(|(_, r)| r.split("->").next().unwrap_or(r).to_string())
                    .unwrap_or_default()
            };
            *self
                .maintenance_runs
                .entry((key.0, repo, key.2))
                .or_insert(0) += 1;
            if run.kind == "check" && run.result.succeeded() {
                self.set_check_success(&run.target, Some(run.started));
            }
            if let (true, true, Some(item), Some(rto)) = (
                run.kind == "drill",
                run.result.succeeded(),
                run.item.as_deref(),
                run.stats["rto_measured_seconds"].as_f64(),
            ) {
                self.set_drill_passed(item, run.started, rto);
            }
            return;
        };
        let Some(series) = self.items.get_mut(item) else {
            return;
        };
        let targets: Vec<String> = if series.targets.contains_key(&run.target) {
            vec![run.target.clone()]
        } else {
            series.targets.keys().cloned().collect()
        };
        for t in targets {
            let Some(s) = series.targets.get_mut(&t) else {
                continue;
            };
            *s.runs.entry(result).or_insert(0) += 1;
            s.last_run = ts(Some(run.finished));
            if run.result.succeeded() {
                s.last_success = s.last_success.max(ts(Some(run.started)));
                s.duration = run.stats["duration_seconds"].as_f64().unwrap_or(0.0);
                s.added = run.stats["data_added"].as_f64().unwrap_or(0.0);
            }
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let head = |o: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        let per_target = |o: &mut String, f: &dyn Fn(&TargetSeries) -> f64, name: &str| {
            for (item, s) in &self.items {
                for (t, v) in &s.targets {
                    let _ = writeln!(
                        o,
                        "{name}{{item=\"{}\",target=\"{}\"}} {}",
                        esc(item),
                        esc(t),
                        f(v)
                    );
                }
            }
        };
        head(
            &mut o,
            "bunker_backup_last_success_timestamp_seconds",
            "gauge",
            "Time of the newest successful backup of the item at the target (0: never).",
        );
        per_target(
            &mut o,
            &|s| s.last_success,
            "bunker_backup_last_success_timestamp_seconds",
        );
        head(&mut o, "bunker_backup_last_run_timestamp_seconds", "gauge",
            "Time the last backup run of the item at the target ended, whatever its result (0: never).");
        per_target(
            &mut o,
            &|s| s.last_run,
            "bunker_backup_last_run_timestamp_seconds",
        );
        head(
            &mut o,
            "bunker_backup_runs_total",
            "counter",
            "Backup runs of the item at the target since the daemon started, by result.",
        );
        for (item, s) in &self.items {
            for (t, v) in &s.targets {
                for (r, n) in &v.runs {
                    let _ = writeln!(
                        o,
                        "bunker_backup_runs_total{{item=\"{}\",target=\"{}\",result=\"{r}\"}} {n}",
                        esc(item),
                        esc(t)
                    );
                }
            }
        }
        head(
            &mut o,
            "bunker_backup_duration_seconds",
            "gauge",
            "Duration of the last successful backup of the item at the target.",
        );
        per_target(&mut o, &|s| s.duration, "bunker_backup_duration_seconds");
        head(
            &mut o,
            "bunker_backup_added_bytes",
            "gauge",
            "Bytes the last successful backup of the item added to the target.",
        );
        per_target(&mut o, &|s| s.added, "bunker_backup_added_bytes");
        head(
            &mut o,
            "bunker_item_rpo_seconds",
            "gauge",
            "The item's recovery point objective (items with an rpo).",
        );
        for (item, s) in &self.items {
            if let Some(rpo) = s.rpo {
                let _ = writeln!(o, "bunker_item_rpo_seconds{{item=\"{}\"}} {rpo}", esc(item));
            }
        }
        head(&mut o, "bunker_item_rpo_breached", "gauge",
            "1 when the item's newest recovery point (snapshot, or archived WAL for PITR) is older than its rpo.");
        for (item, s) in &self.items {
            if s.rpo.is_some() {
                let _ = writeln!(
                    o,
                    "bunker_item_rpo_breached{{item=\"{}\"}} {}",
                    esc(item),
                    u8::from(s.breached)
                );
            }
        }
        head(
            &mut o,
            "bunker_wal_last_archived_timestamp_seconds",
            "gauge",
            "Time the server last archived a WAL segment (postgres physical items; 0: unknown).",
        );
        for (item, s) in &self.items {
            if s.physical {
                let _ = writeln!(
                    o,
                    "bunker_wal_last_archived_timestamp_seconds{{item=\"{}\"}} {}",
                    esc(item),
                    s.wal_archived
                );
            }
        }
        head(
            &mut o,
            "bunker_drill_last_success_timestamp_seconds",
            "gauge",
            "Start of the newest restore drill of the item that passed within its rto (items with a drill; 0: never).",
        );
        for (item, s) in &self.items {
            if s.drilled {
                let _ = writeln!(
                    o,
                    "bunker_drill_last_success_timestamp_seconds{{item=\"{}\"}} {}",
                    esc(item),
                    s.drill_last_success
                );
            }
        }
        head(
            &mut o,
            "bunker_drill_rto_seconds",
            "gauge",
            "Recovery time measured by the newest passed restore drill of the item.",
        );
        for (item, s) in &self.items {
            if let Some(v) = s.drill_rto {
                let _ = writeln!(o, "bunker_drill_rto_seconds{{item=\"{}\"}} {v}", esc(item));
            }
        }
        head(
            &mut o,
            "bunker_item_rto_target_seconds",
            "gauge",
            "The item's recovery time objective (items with an rto).",
        );
        for (item, s) in &self.items {
            if let Some(v) = s.rto_target {
                let _ = writeln!(
                    o,
                    "bunker_item_rto_target_seconds{{item=\"{}\"}} {v}",
                    esc(item)
                );
            }
        }
        for (name, items) in &self.compliance {
            let help = match *name {
                "bunker_compliance_ok" => "1 when the item meets 3-2-1 (bunker report compliance).",
                "bunker_compliance_copies" => {
                    "Copies of the item within its RPO, the source included."
                }
                "bunker_compliance_media" => "Distinct media holding those copies.",
                "bunker_compliance_offsite" => {
                    "1 when an offsite repository holds a copy within the RPO."
                }
                _ => "The 3-2-1 report (bunker report compliance).",
            };
            head(&mut o, name, "gauge", help);
            for (item, v) in items {
                let _ = writeln!(o, "{name}{{item=\"{}\"}} {v}", esc(item));
            }
        }
        head(
            &mut o,
            "bunker_check_last_success_timestamp_seconds",
            "gauge",
            "Time of the last successful check of the repository (0: never).",
        );
        for (r, v) in &self.check_success {
            let _ = writeln!(
                o,
                "bunker_check_last_success_timestamp_seconds{{repository=\"{}\"}} {v}",
                esc(r)
            );
        }
        head(
            &mut o,
            "bunker_repository_size_bytes",
            "gauge",
            "Bytes stored in the repository (packs, indexes, snapshots), when known.",
        );
        for (r, v) in &self.repo_size {
            let _ = writeln!(
                o,
                "bunker_repository_size_bytes{{repository=\"{}\"}} {v}",
                esc(r)
            );
        }
        head(&mut o, "bunker_maintenance_runs_total", "counter",
            "Maintenance job runs (check, prune, copy, drill) of the repository since the daemon started, by result.");
        for ((k, r, res), n) in &self.maintenance_runs {
            let _ = writeln!(
                o,
                "bunker_maintenance_runs_total{{kind=\"{k}\",repository=\"{}\",result=\"{res}\"}} {n}",
                esc(r)
            );
        }
        head(
            &mut o,
            "bunker_notifications_failed_total",
            "counter",
            "Notification deliveries that failed after their retries, by target.",
        );
        for (t, n) in &self.notifications_failed {
            let _ = writeln!(
                o,
                "bunker_notifications_failed_total{{target=\"{}\"}} {n}",
                esc(t)
            );
        }
        head(&mut o, "bunker_jobs_running", "gauge", "Jobs running now.");
        let _ = writeln!(o, "bunker_jobs_running {}", self.running);
        head(
            &mut o,
            "bunker_build_info",
            "gauge",
            "The bunker version, always 1.",
        );
        let _ = writeln!(
            o,
            "bunker_build_info{{version=\"{}\"}} 1",
            esc(&self.version)
        );
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "repositories:\n  local: {location: /r, password: x}\nitems:\n  - {name: a, paths: [/d], rpo: 1h}\n  - {name: b, paths: [/e]}\ndaemon:\n  jobs:\n    - {kind: check, repository: local, schedule: every 1d}\n";

    #[test]
    fn every_item_series_exists_from_the_start_and_counts_runs() {
        let p = Policy::from_str(POLICY, "p.yaml").expect("policy");
        let mut m = Metrics::default();
        m.sync_policy(&p);
        let text = m.render();
        for want in [
            "bunker_backup_runs_total{item=\"a\",target=\"local\",result=\"success\"} 0",
            "bunker_backup_runs_total{item=\"b\",target=\"local\",result=\"failed\"} 0",
            "bunker_backup_last_success_timestamp_seconds{item=\"b\",target=\"local\"} 0",
            "bunker_item_rpo_seconds{item=\"a\"} 3600",
            "bunker_item_rpo_breached{item=\"a\"} 0",
            "bunker_check_last_success_timestamp_seconds{repository=\"local\"} 0",
            "bunker_maintenance_runs_total{kind=\"check\",repository=\"local\",result=\"success\"} 0",
            "bunker_build_info{version=",
        ] {
            assert!(text.contains(want), "{want} missing:\n{text}");
        }
        assert!(!text.contains("rpo_seconds{item=\"b\"}"), "b has no rpo");
        let now = Utc::now();
        m.record(&JobRun {
            job: "backup:a".into(),
            kind: "backup".into(),
            item: Some("a".into()),
            target: "-".into(),
            trigger: "schedule".into(),
            started: now,
            finished: now,
            result: RunResult::Failed,
            stats: serde_json::json!({}),
            error: Some("before hook failed".into()),
        });
        let text = m.render();
        assert!(
            text.contains(
                "bunker_backup_runs_total{item=\"a\",target=\"local\",result=\"failed\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains(
            "bunker_backup_last_success_timestamp_seconds{item=\"a\",target=\"local\"} 0"
        ));
    }
}
