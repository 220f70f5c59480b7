//! The 3-2-1 report: per item, how many copies exist within the RPO, on
//! how many distinct media, whether one is offsite, whether one is
//! immutable, when the repositories were last checked and how the last
//! restore drill went against the item's RTO.
//!
//! The rule applied ([`evaluate`]): an item is compliant when it has at
//! least [`MIN_COPIES`] copies (the source counts as one; each repository
//! holding a snapshot of the item within its RPO is another), on at least
//! [`MIN_MEDIA`] distinct media, at least one of them in a repository of
//! role `offsite`, and its last drill (when one was recorded) passed.
//!
//! A *medium* is a kind of storage at a place: a local disk (the host and
//! the file system's device number, so two directories on one disk are one
//! medium), an object store (its endpoint), an SFTP server (its host) or
//! another OpenDAL service (its scheme). Immutability is not detected yet:
//! local disks and SFTP servers are reported `none`, object stores
//! `unknown` (object lock may or may not be configured).

use std::collections::BTreeSet;
use std::path::Path;

use bunker_policy::{Item, Policy, Priority, Role};
use chrono::{DateTime, FixedOffset, Utc};
use serde::Serialize;

use crate::pool::RepoPool;
use crate::records::{self, Record, RecordKind};
use crate::status::{item_status, RpoState};

/// Copies needed (the source counts as one).
pub const MIN_COPIES: usize = 3;
/// Distinct media needed.
pub const MIN_MEDIA: usize = 2;

/// One copy of an item: its source or a repository.
#[derive(Debug, Clone, Serialize)]
pub struct Copy {
    /// `source`, or the repository's policy name.
    pub name: String,
    /// `source`, `primary` or `offsite`.
    pub role: &'static str,
    /// The medium (see the module documentation).
    pub medium: String,
    /// Whether it counts: the source always, a repository when it holds a
    /// snapshot of the item within the RPO.
    pub counts: bool,
    /// The newest snapshot's time in a repository.
    pub newest: Option<DateTime<FixedOffset>>,
    /// `none` (the backend cannot keep objects immutable), `unknown`.
    pub immutable: &'static str,
    /// Why a repository could not be read.
    pub error: Option<String>,
}

/// The last restore drill of an item, as recorded by `bunker drill`.
#[derive(Debug, Clone, Serialize)]
pub struct DrillSummary {
    /// When it ran.
    pub time: DateTime<FixedOffset>,
    /// Whether it passed (checks passed and the RTO was met).
    pub ok: bool,
    /// The measured recovery time, in seconds.
    pub rto_seconds: Option<f64>,
    /// The item's objective, in seconds, when the drill recorded it.
    pub rto_target_seconds: Option<f64>,
}

impl DrillSummary {
    /// Reads a drill record (a [`crate::drill::DrillReport`] as `bunker drill`
    /// stores it). A body that is not a drill report counts as a failed
    /// drill: a record nobody can read proves nothing.
    pub fn from_record(r: &Record) -> DrillSummary {
        match serde_json::from_value::<crate::drill::DrillReport>(r.body.clone()) {
            Ok(d) => DrillSummary {
                time: r.time,
                ok: d.is_ok(),
                rto_seconds: Some(d.rto_measured_seconds),
                rto_target_seconds: d.rto_target_seconds.map(|t| t as f64),
            },
            Err(_) => DrillSummary {
                time: r.time,
                ok: false,
                rto_seconds: None,
                rto_target_seconds: None,
            },
        }
    }
}

/// One item's compliance.
#[derive(Debug, Clone, Serialize)]
pub struct ItemCompliance {
    /// The item.
    pub item: String,
    /// Its priority (`critical` items decide the exit status).
    pub priority: &'static str,
    /// Its RPO in seconds.
    pub rpo_seconds: Option<u64>,
    /// Copies that count.
    pub copies: usize,
    /// Distinct media among the copies that count.
    pub media: usize,
    /// A copy that counts is in an offsite repository.
    pub offsite: bool,
    /// `none`, `unknown` (no repository known to keep objects immutable).
    pub immutable: &'static str,
    /// The newest recorded `check` of any of its repositories.
    pub last_check: Option<DateTime<FixedOffset>>,
    /// The last drill.
    pub last_drill: Option<DrillSummary>,
    /// Every copy considered.
    pub copy_list: Vec<Copy>,
    /// What is missing, one line each; empty when compliant.
    pub problems: Vec<String>,
    /// Whether it meets the rule.
    pub compliant: bool,
}

/// The report over a policy.
#[derive(Debug, Clone, Serialize)]
pub struct ComplianceReport {
    /// When it was made.
    pub time: DateTime<FixedOffset>,
    /// Per item, in priority order.
    pub items: Vec<ItemCompliance>,
}

impl ComplianceReport {
    /// Critical items that are not compliant.
    pub fn critical_failures(&self) -> Vec<&ItemCompliance> {
        self.items
            .iter()
            .filter(|i| i.priority == Priority::Critical.as_str() && !i.compliant)
            .collect()
    }

    /// Gauges for a metrics exporter: `(metric, item, value)`, e.g.
    /// `("bunker_compliance_copies", "db", 3.0)`; `bunker_compliance_ok` is
    /// 1 for a compliant item.
    pub fn metrics(&self) -> Vec<(&'static str, &str, f64)> {
        let mut out = Vec::new();
        for i in &self.items {
            let item = i.item.as_str();
            out.push((
                "bunker_compliance_ok",
                item,
                f64::from(u8::from(i.compliant)),
            ));
            out.push(("bunker_compliance_copies", item, i.copies as f64));
            out.push(("bunker_compliance_media", item, i.media as f64));
            out.push((
                "bunker_compliance_offsite",
                item,
                f64::from(u8::from(i.offsite)),
            ));
        }
        out
    }
}

/// The medium of a repository location and whether it can be immutable.
pub fn medium_of(location: &str) -> (String, &'static str) {
    match bunker_storage::parse_location(location) {
        Ok(bunker_storage::Location::Local(p)) => (local_medium(&p), "none"),
        Ok(bunker_storage::Location::S3(s)) => (format!("object store {}", s.endpoint), "unknown"),
        Ok(bunker_storage::Location::Sftp(s)) => (format!("sftp {}", s.host), "none"),
        // Whether the server is append-only is not visible from here.
        Ok(bunker_storage::Location::Rest(r)) => (format!("rest server {}", r.host()), "unknown"),
        Ok(bunker_storage::Location::Opendal { scheme }) => {
            (format!("opendal {scheme}"), "unknown")
        }
        Err(_) => (format!("unknown {location}"), "unknown"),
    }
}

fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// A local disk: this host and the device of the nearest existing parent.
fn local_medium(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let dev = path
        .ancestors()
        .find_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.dev());
    match dev {
        Some(d) => format!(
            "local disk {} (device {}:{})",
            hostname(),
            libc_major(d),
            libc_minor(d)
        ),
        None => format!("local disk {}", hostname()),
    }
}

fn libc_major(dev: u64) -> u64 {
    ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff)
}

fn libc_minor(dev: u64) -> u64 {
    ((dev >> 12) & 0xffff_ff00) | (dev & 0xff)
}

/// The source's medium: the disk of its first path (files, sqlite), else
/// the database server's host.
fn source_medium(item: &Item) -> String {
    use bunker_policy::Source;
    match &item.source {
        Source::Files(f) => f
            .paths
            .first()
            .map(|p| local_medium(p))
            .unwrap_or_else(|| format!("local disk {}", hostname())),
        Source::Sqlite(s) => local_medium(&s.path),
        Source::Postgres(pg) => match pg.host.as_deref() {
            Some(h) if !h.starts_with('/') && h != "localhost" && h != "127.0.0.1" => {
                format!("database server {h}")
            }
            _ => format!("database server {}", hostname()),
        },
        Source::Mysql(my) => match my.host.as_deref() {
            Some(h) if h != "localhost" && h != "127.0.0.1" => format!("database server {h}"),
            _ => format!("database server {}", hostname()),
        },
        Source::Command(_) => format!("command output on {}", hostname()),
    }
}

/// The repositories holding copies of `item`: its targets, then every
/// offsite repository of the policy (copies made with `bunker copy`).
fn repositories_of<'a>(policy: &'a Policy, item: &'a Item) -> Vec<&'a str> {
    let mut names: Vec<&str> = item.targets.iter().map(String::as_str).collect();
    for r in policy.repositories.values() {
        if r.role == Role::Offsite && !names.contains(&r.name.as_str()) {
            names.push(&r.name);
        }
    }
    names
}

/// The compliance of every item of the pool's policy at `now`.
pub fn evaluate(pool: &mut RepoPool<'_>, now: DateTime<Utc>) -> ComplianceReport {
    let policy = pool.policy();
    let mut items = Vec::new();
    for item in policy.items_by_priority() {
        let mut wide = item.clone();
        wide.targets = repositories_of(policy, item)
            .into_iter()
            .map(str::to_string)
            .collect();
        let rows = item_status(pool, &wide, now);
        let mut copy_list = vec![Copy {
            name: "source".into(),
            role: "source",
            medium: source_medium(item),
            counts: true,
            newest: None,
            immutable: "none",
            error: None,
        }];
        let mut last_check: Option<DateTime<FixedOffset>> = None;
        let mut last_drill: Option<Record> = None;
        for row in rows {
            let Some(cfg) = policy.repositories.get(&row.target) else {
                continue;
            };
            let (medium, immutable) = medium_of(&cfg.location);
            if let Ok(o) = pool.get(&row.target) {
                if let Ok(all) = records::list(&o.repo) {
                    for s in all {
                        let r = s.record;
                        if r.kind == RecordKind::Check && last_check.is_none_or(|t| r.time > t) {
                            last_check = Some(r.time);
                        }
                        if r.kind == RecordKind::Drill
                            && r.item == item.name
                            && last_drill.as_ref().is_none_or(|d| r.time > d.time)
                        {
                            last_drill = Some(r);
                        }
                    }
                }
            }
            copy_list.push(Copy {
                name: row.target.clone(),
                role: match cfg.role {
                    Role::Primary => "primary",
                    Role::Offsite => "offsite",
                },
                medium,
                counts: matches!(row.state, RpoState::Ok | RpoState::Incomplete)
                    && row.error.is_none(),
                newest: row.newest,
                immutable,
                error: row.error,
            });
        }
        items.push(judge(item, copy_list, last_check, last_drill.as_ref()));
    }
    ComplianceReport {
        time: now.with_timezone(&chrono::Local).fixed_offset(),
        items,
    }
}

/// Apply the rule to the copies of one item.
pub fn judge(
    item: &Item,
    copy_list: Vec<Copy>,
    last_check: Option<DateTime<FixedOffset>>,
    last_drill: Option<&Record>,
) -> ItemCompliance {
    let counting: Vec<&Copy> = copy_list.iter().filter(|c| c.counts).collect();
    let copies = counting.len();
    let media = counting
        .iter()
        .map(|c| c.medium.as_str())
        .collect::<BTreeSet<_>>()
        .len();
    let offsite = counting.iter().any(|c| c.role == "offsite");
    let immutable = if counting.iter().any(|c| c.immutable == "unknown") {
        "unknown"
    } else {
        "none"
    };
    let last_drill = last_drill.map(DrillSummary::from_record);
    let mut problems = Vec::new();
    if copies < MIN_COPIES {
        problems.push(format!(
            "{copies} cop{} within the RPO, {MIN_COPIES} needed (the source counts as one)",
            if copies == 1 { "y" } else { "ies" }
        ));
    }
    if media < MIN_MEDIA {
        problems.push(format!(
            "{media} distinct medi{}, {MIN_MEDIA} needed",
            if media == 1 { "um" } else { "a" }
        ));
    }
    if !offsite {
        problems.push("no offsite copy within the RPO (a repository with role: offsite)".into());
    }
    if let Some(d) = &last_drill {
        if !d.ok {
            problems.push("the last restore drill failed or exceeded the RTO".into());
        }
    }
    ItemCompliance {
        item: item.name.clone(),
        priority: item.priority.as_str(),
        rpo_seconds: item.rpo.map(|d| d.as_secs()),
        copies,
        media,
        offsite,
        immutable,
        last_check,
        last_drill,
        copy_list,
        compliant: problems.is_empty(),
        problems,
    }
}

/// Store the report as a [`RecordKind::Compliance`] record (item `*`) in
/// every repository of the policy that can be opened; returns the names of
/// those it could not be stored in, with why.
pub fn save(pool: &mut RepoPool<'_>, report: &ComplianceReport) -> Vec<(String, String)> {
    let body = serde_json::to_value(report).unwrap_or(serde_json::Value::Null);
    let record = Record::new(RecordKind::Compliance, "*", body);
    let names: Vec<String> = pool.policy().repositories.keys().cloned().collect();
    let mut failed = Vec::new();
    for name in names {
        let res = match pool.get(&name) {
            Ok(o) => records::save(&o.repo, &record).map_err(|e| e.one_line()),
            Err(e) => Err(e.one_line()),
        };
        if let Err(e) = res {
            failed.push((name, e));
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item() -> Item {
        Policy::from_str(
            "repositories:\n  a: {location: /tmp/a, password: x}\nitems:\n  - name: web\n    paths: [/tmp]\n    priority: critical\n",
            "t",
        )
        .expect("policy")
        .items
        .remove(0)
    }

    fn copy(name: &str, role: &'static str, medium: &str, counts: bool) -> Copy {
        Copy {
            name: name.into(),
            role,
            medium: medium.into(),
            counts,
            newest: None,
            immutable: if medium.starts_with("object") {
                "unknown"
            } else {
                "none"
            },
            error: None,
        }
    }

    #[test]
    fn three_copies_two_media_one_offsite_is_compliant() {
        let c = judge(
            &item(),
            vec![
                copy("source", "source", "local disk h (device 8:1)", true),
                copy("a", "primary", "local disk h (device 8:17)", true),
                copy("s3", "offsite", "object store https://x", true),
            ],
            None,
            None,
        );
        assert!(c.compliant, "{:?}", c.problems);
        assert_eq!((c.copies, c.media, c.offsite), (3, 3, true));
        assert_eq!(c.immutable, "unknown");
    }

    #[test]
    fn late_copies_and_one_disk_are_named() {
        let c = judge(
            &item(),
            vec![
                copy("source", "source", "local disk h (device 8:1)", true),
                copy("a", "primary", "local disk h (device 8:1)", true),
                copy("off", "offsite", "sftp b", false),
            ],
            None,
            None,
        );
        assert!(!c.compliant);
        assert_eq!(c.problems.len(), 3, "{:?}", c.problems);
        assert!(c.problems[0].starts_with("2 copies"));
        assert!(c.problems[1].starts_with("1 distinct medium"));
        assert!(c.problems[2].contains("no offsite copy"));
    }

    /// A drill report's body as `bunker drill` stores it.
    fn drill_body(measured: f64, target: u64) -> serde_json::Value {
        serde_json::json!({
            "item": "web", "kind": "files", "repository": "local", "hostname": "h",
            "started": "2026-12-01T10:00:00+00:00", "pick": "latest",
            "snapshots": [], "snapshot_time": null, "status": "passed", "phases": [],
            "rto_measured_seconds": measured, "rto_target_seconds": target,
            "rto_exceeded": measured > target as f64, "sandbox": "/sandbox", "kept": false
        })
    }

    #[test]
    fn a_failed_drill_or_an_exceeded_rto_is_not_compliant() {
        let copies = || {
            vec![
                copy("source", "source", "d1", true),
                copy("a", "primary", "d2", true),
                copy("b", "offsite", "d3", true),
            ]
        };
        let slow = Record::new(RecordKind::Drill, "web", drill_body(90.0, 60));
        let c = judge(&item(), copies(), None, Some(&slow));
        assert!(!c.compliant);
        assert!(c.problems[0].contains("drill"));
        let fast = Record::new(RecordKind::Drill, "web", drill_body(30.0, 60));
        assert!(judge(&item(), copies(), None, Some(&fast)).compliant);
        let unreadable = Record::new(RecordKind::Drill, "web", serde_json::json!({"ok": true}));
        assert!(!judge(&item(), copies(), None, Some(&unreadable)).compliant);
    }
}
