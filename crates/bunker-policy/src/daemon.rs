//! The `daemon:` section: how `bunker daemon` runs the policy (concurrency,
//! jitter, start-up runs, change debounce, shutdown grace, run history) and
//! the maintenance jobs it runs per repository (`check`, `prune`, `copy`).
//!
//! ```yaml
//! daemon:
//!   max_concurrent: 2          # jobs running at once (default 2)
//!   jitter: 30s                # spread scheduled starts by up to this much
//!   run_at_start: [db]         # or `true` for every item
//!   debounce: 10s              # on_change: quiet time before a run
//!   shutdown_grace: 30s        # SIGTERM: how long running jobs get to stop
//!   history_keep: 90d          # run history: drop rows older than this
//!   history_max_runs: 10000    # ... and beyond this many rows
//!   jobs:
//!     - kind: check
//!       repository: local
//!       schedule: "0 2 * * 6"  # Saturdays 02:00
//!       read_data_subset: 10%  # or 1/4, or `all`
//!     - kind: prune
//!       repository: local
//!       schedule: "@weekly"
//!     - kind: copy
//!       repository: local
//!       to: offsite
//!       schedule: "@daily"
//!       items: [db]            # default: every item backed up to `local`
//! ```
//!
//! A policy without the section gets [`DaemonConfig::default`]; `bunker run`
//! ignores it.

use std::time::Duration;

use bunker_repo::check::ReadData;
use serde_yaml::{Mapping, Value};

use crate::locate::{NodePath, Seg};
use crate::parse::{index, key, Ctx};
use crate::policy::Policy;
use crate::schedule::Schedule;

/// Default of [`DaemonConfig::max_concurrent`].
pub const DEFAULT_MAX_CONCURRENT: usize = 2;

/// How `bunker daemon` runs the policy.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    /// At most this many jobs (backups and maintenance) run at once.
    pub max_concurrent: usize,
    /// Scheduled starts are delayed by a fixed pseudo-random part of this
    /// (per job and slot), so that many hosts do not start at once.
    pub jitter: Option<Duration>,
    /// Items run once when the daemon starts, due or not.
    pub run_at_start: RunAtStart,
    /// `on_change` items run once the source has been quiet this long (and
    /// at the latest ten times this long after the first change).
    pub debounce: Duration,
    /// On SIGTERM, running jobs are cancelled and get this long to stop.
    pub shutdown_grace: Duration,
    /// Run history rows older than this are dropped.
    pub history_keep: Duration,
    /// At most this many run history rows are kept.
    pub history_max_runs: usize,
    /// Maintenance jobs.
    pub jobs: Vec<MaintenanceJob>,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            jitter: None,
            run_at_start: RunAtStart::None,
            debounce: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(30),
            history_keep: Duration::from_secs(90 * 86400),
            history_max_runs: 10_000,
            jobs: Vec::new(),
        }
    }
}

/// Which items run when the daemon starts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RunAtStart {
    /// None beyond those that are due (the default).
    #[default]
    None,
    /// Every item.
    All,
    /// These items.
    Items(Vec<String>),
}

impl RunAtStart {
    /// Whether `item` runs at start-up.
    pub fn includes(&self, item: &str) -> bool {
        match self {
            RunAtStart::None => false,
            RunAtStart::All => true,
            RunAtStart::Items(v) => v.iter().any(|i| i == item),
        }
    }
}

/// A maintenance job of one repository.
#[derive(Debug, Clone, PartialEq)]
pub struct MaintenanceJob {
    /// What it does.
    pub kind: MaintenanceKind,
    /// The repository it works on (the source of a copy).
    pub repository: String,
    /// When it runs.
    pub schedule: Schedule,
}

/// What a maintenance job does.
#[derive(Debug, Clone, PartialEq)]
pub enum MaintenanceKind {
    /// `check`, reading this much of the data.
    Check {
        /// `read_data_subset` (default: structure only).
        read_data: ReadData,
    },
    /// Every item's retention in the repository, then one `prune`.
    Prune,
    /// `copy` the items' snapshots to another repository.
    Copy {
        /// The destination repository.
        to: String,
        /// Only these items (default: every item with the source as a target).
        items: Vec<String>,
    },
}

impl MaintenanceKind {
    /// `check`, `prune` or `copy`.
    pub fn as_str(&self) -> &'static str {
        match self {
            MaintenanceKind::Check { .. } => "check",
            MaintenanceKind::Prune => "prune",
            MaintenanceKind::Copy { .. } => "copy",
        }
    }
}

impl MaintenanceJob {
    /// A stable name: `check:REPO`, `prune:REPO`, `copy:REPO->TO`.
    pub fn name(&self) -> String {
        match &self.kind {
            MaintenanceKind::Copy { to, .. } => format!("copy:{}->{to}", self.repository),
            k => format!("{}:{}", k.as_str(), self.repository),
        }
    }
}

/// Parses `10%`, `2.5%`, `1/4` or `all` (restic's `--read-data-subset`).
pub fn parse_read_data(s: &str) -> Result<ReadData, String> {
    let t = s.trim();
    let rd = if t == "all" {
        ReadData::All
    } else if let Some(p) = t.strip_suffix('%') {
        ReadData::Percent(
            p.trim()
                .parse::<f64>()
                .map_err(|_| format!("{t:?} is not a percentage"))?,
        )
    } else if let Some((n, m)) = t.split_once('/') {
        let n = n.trim().parse().map_err(|_| format!("{t:?} is not n/m"))?;
        let m = m.trim().parse().map_err(|_| format!("{t:?} is not n/m"))?;
        ReadData::Subset { n, m }
    } else {
        return Err(format!("{t:?} is neither a percentage, n/m nor all"));
    };
    rd.validate().map_err(|e| e.to_string())?;
    Ok(rd)
}

const DAEMON_KEYS: &[&str] = &[
    "max_concurrent",
    "jitter",
    "run_at_start",
    "debounce",
    "shutdown_grace",
    "history_keep",
    "history_max_runs",
    "jobs",
];

const JOB_KEYS: &[&str] = &[
    "kind",
    "repository",
    "schedule",
    "read_data_subset",
    "to",
    "items",
];

/// Parses the `daemon:` section; `policy` has its repositories and items.
pub(crate) fn parse_daemon(cx: &mut Ctx<'_>, v: &Value, policy: &Policy) -> DaemonConfig {
    let path: NodePath = vec![Seg::Key("daemon".into())];
    let wher = "in \"daemon\"";
    let mut out = DaemonConfig::default();
    let Some(m) = cx.mapping(v, &path, "daemon", "at top level") else {
        return out;
    };
    cx.check_keys(m, &path, DAEMON_KEYS, wher);
    if let Some(v) = m.get("max_concurrent") {
        let p = key(&path, "max_concurrent");
        match cx.int(v, &p, "max_concurrent", wher) {
            Some(n) if n >= 1 => out.max_concurrent = usize::try_from(n).unwrap_or(usize::MAX),
            Some(n) => cx.err(
                &p,
                format!("\"max_concurrent\" must be at least 1, found {n}"),
                None,
            ),
            None => {}
        }
    }
    let dur = |cx: &mut Ctx<'_>, k: &str| {
        m.get(k)
            .and_then(|v| cx.duration(v, &key(&path, k), k, wher))
    };
    out.jitter = dur(cx, "jitter");
    if let Some(d) = dur(cx, "debounce") {
        out.debounce = d;
    }
    if let Some(d) = dur(cx, "shutdown_grace") {
        out.shutdown_grace = d;
    }
    if let Some(d) = dur(cx, "history_keep") {
        out.history_keep = d;
    }
    if let Some(v) = m.get("history_max_runs") {
        let p = key(&path, "history_max_runs");
        match cx.int(v, &p, "history_max_runs", wher) {
            Some(n) if n >= 1 => out.history_max_runs = usize::try_from(n).unwrap_or(usize::MAX),
            Some(n) => cx.err(
                &p,
                format!("\"history_max_runs\" must be at least 1, found {n}"),
                None,
            ),
            None => {}
        }
    }
    if let Some(v) = m.get("run_at_start") {
        let p = key(&path, "run_at_start");
        out.run_at_start = match v {
            Value::Bool(true) => RunAtStart::All,
            Value::Bool(false) | Value::Null => RunAtStart::None,
            other => {
                let names = cx.strings(other, &p, "run_at_start", wher);
                for (i, n) in names.iter().enumerate() {
                    known_item(cx, policy, n, &index(&p, i), "run_at_start");
                }
                RunAtStart::Items(names)
            }
        };
    }
    if let Some(v) = m.get("jobs") {
        let p = key(&path, "jobs");
        match v {
            Value::Sequence(seq) => {
                for (i, j) in seq.iter().enumerate() {
                    if let Some(job) = parse_job(cx, j, &index(&p, i), policy) {
                        if out.jobs.iter().any(|o| o.name() == job.name()) {
                            cx.err(
                                &index(&p, i),
                                format!("job {} is declared twice", job.name()),
                                None,
                            );
                        } else {
                            out.jobs.push(job);
                        }
                    }
                }
            }
            Value::Null => {}
            _ => cx.err(&p, "\"jobs\" in \"daemon\" must be a list".into(), None),
        }
    }
    out
}

fn known_item(cx: &mut Ctx<'_>, policy: &Policy, name: &str, p: &[Seg], field: &str) {
    if policy.item(name).is_none() {
        let known: Vec<&str> = policy.items.iter().map(|i| i.name.as_str()).collect();
        cx.err(
            p,
            format!("\"{field}\" names unknown item \"{name}\""),
            Some(format!("items: {}", known.join(", "))),
        );
    }
}

fn known_repo(cx: &mut Ctx<'_>, policy: &Policy, name: &str, p: &[Seg], field: &str) -> bool {
    if policy.repositories.contains_key(name) {
        return true;
    }
    let known: Vec<&str> = policy.repositories.keys().map(String::as_str).collect();
    cx.err(
        p,
        format!("\"{field}\" names unknown repository \"{name}\""),
        Some(format!("repositories: {}", known.join(", "))),
    );
    false
}

fn parse_job(cx: &mut Ctx<'_>, v: &Value, path: &[Seg], policy: &Policy) -> Option<MaintenanceJob> {
    let wher = "in a job of \"daemon\"";
    let m: &Mapping = match v {
        Value::Mapping(m) => m,
        _ => {
            cx.err(path, "a job of \"daemon\" must be a mapping".into(), None);
            return None;
        }
    };
    cx.check_keys(m, path, JOB_KEYS, wher);
    let field = |cx: &mut Ctx<'_>, k: &str| -> Option<String> {
        match m.get(k) {
            Some(v) => cx.string(v, &key(path, k), k, wher),
            None => None,
        }
    };
    let kind = field(cx, "kind");
    let repository = field(cx, "repository");
    let (Some(kind), Some(repository)) = (kind, repository) else {
        cx.err_key_once(
            path,
            "a job of \"daemon\" needs \"kind\" and \"repository\"".into(),
            None,
        );
        return None;
    };
    let repo_ok = known_repo(
        cx,
        policy,
        &repository,
        &key(path, "repository"),
        "repository",
    );
    let schedule = match m.get("schedule") {
        Some(s) => crate::parse::items::schedule(cx, s, &key(path, "schedule"), wher)?,
        None => {
            cx.err_key(path, format!("job \"{kind}\" needs a \"schedule\""), None);
            return None;
        }
    };
    if matches!(schedule, Schedule::OnChange) {
        cx.err(
            &key(path, "schedule"),
            "a maintenance job cannot run \"on_change\"".into(),
            Some("use \"every <duration>\" or a cron expression".into()),
        );
        return None;
    }
    let only = |cx: &mut Ctx<'_>, k: &str, kind: &str| {
        if m.contains_key(k) {
            cx.err_key(
                &key(path, k),
                format!("\"{k}\" does not apply to a {kind} job"),
                None,
            );
        }
    };
    let kind = match kind.as_str() {
        "check" => {
            only(cx, "to", "check");
            only(cx, "items", "check");
            let read_data = match field(cx, "read_data_subset") {
                None => ReadData::No,
                Some(s) => match parse_read_data(&s) {
                    Ok(r) => r,
                    Err(e) => {
                        cx.err(
                            &key(path, "read_data_subset"),
                            format!("invalid \"read_data_subset\": {e}"),
                            Some("write a percentage (10%), a subset (1/4) or all".into()),
                        );
                        return None;
                    }
                },
            };
            MaintenanceKind::Check { read_data }
        }
        "prune" => {
            for k in ["to", "items", "read_data_subset"] {
                only(cx, k, "prune");
            }
            MaintenanceKind::Prune
        }
        "copy" => {
            only(cx, "read_data_subset", "copy");
            let Some(to) = field(cx, "to") else {
                cx.err_key(
                    path,
                    "a copy job needs \"to\" (the destination)".into(),
                    None,
                );
                return None;
            };
            known_repo(cx, policy, &to, &key(path, "to"), "to");
            if to == repository {
                cx.err(
                    &key(path, "to"),
                    "a copy job copies to another repository".into(),
                    None,
                );
            }
            let items = match m.get("items") {
                Some(v) => {
                    let p = key(path, "items");
                    let names = cx.strings(v, &p, "items", wher);
                    for (i, n) in names.iter().enumerate() {
                        known_item(cx, policy, n, &index(&p, i), "items");
                    }
                    names
                }
                None => Vec::new(),
            };
            MaintenanceKind::Copy { to, items }
        }
        other => {
            cx.err(
                &key(path, "kind"),
                format!("unknown job kind \"{other}\""),
                Some("use check, prune or copy".into()),
            );
            return None;
        }
    };
    repo_ok.then_some(MaintenanceJob {
        kind,
        repository,
        schedule,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "repositories:\n  local: {location: /r, password: x}\n  off: {location: /o, password: x}\nitems:\n  - name: a\n    paths: [/d]\n";

    fn parse(daemon: &str) -> Result<Policy, String> {
        Policy::from_str(&format!("{BASE}{daemon}"), "p.yaml").map_err(|e| e.to_string())
    }

    #[test]
    fn a_policy_without_daemon_section_gets_the_defaults() {
        let p = parse("").expect("valid");
        assert_eq!(p.daemon, DaemonConfig::default());
    }

    #[test]
    fn daemon_keys_and_jobs_parse() {
        let p = parse(
            "daemon:\n  max_concurrent: 3\n  jitter: 30s\n  run_at_start: [a]\n  debounce: 2s\n  jobs:\n    - {kind: check, repository: local, schedule: \"0 2 * * 6\", read_data_subset: 10%}\n    - {kind: prune, repository: local, schedule: every 7d}\n    - {kind: copy, repository: local, to: off, schedule: \"@daily\", items: [a]}\n",
        )
        .expect("valid");
        let d = &p.daemon;
        assert_eq!(d.max_concurrent, 3);
        assert_eq!(d.jitter, Some(Duration::from_secs(30)));
        assert_eq!(d.run_at_start, RunAtStart::Items(vec!["a".into()]));
        assert_eq!(d.debounce, Duration::from_secs(2));
        let names: Vec<String> = d.jobs.iter().map(MaintenanceJob::name).collect();
        assert_eq!(names, ["check:local", "prune:local", "copy:local->off"]);
        assert_eq!(
            d.jobs[0].kind,
            MaintenanceKind::Check {
                read_data: ReadData::Percent(10.0)
            }
        );
    }

    #[test]
    fn daemon_section_errors_are_reported_with_positions() {
        let e = parse(
            "daemon:\n  max_concurrent: 0\n  run_at_start: [nope]\n  jobs:\n    - {kind: check, repository: gone, schedule: every 1d}\n    - {kind: copy, repository: local, schedule: every 1d}\n    - {kind: check, repository: local, schedule: on_change}\n    - {kind: check, repository: local, schedule: every 1d, read_data_subset: 0%}\n",
        )
        .expect_err("invalid");
        for want in [
            "p.yaml:8:",
            "\"max_concurrent\" must be at least 1",
            "unknown item \"nope\"",
            "unknown repository \"gone\"",
            "needs \"to\"",
            "cannot run \"on_change\"",
            "invalid \"read_data_subset\"",
        ] {
            assert!(e.contains(want), "{want:?} missing in {e}");
        }
    }

    #[test]
    fn read_data_subset_forms() {
        assert_eq!(parse_read_data("all"), Ok(ReadData::All));
        assert_eq!(parse_read_data("1/4"), Ok(ReadData::Subset { n: 1, m: 4 }));
        assert_eq!(parse_read_data(" 2.5% "), Ok(ReadData::Percent(2.5)));
        assert!(parse_read_data("5/4").is_err());
        assert!(parse_read_data("ten").is_err());
    }
}
