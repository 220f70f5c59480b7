//! Disaster-recovery runbooks: named scenarios with an RTO, an RPO and
//! ordered steps, under `runbooks:` in the policy (or in a file it names:
//! `runbooks: ./runbooks.yaml`).
//!
//! ```yaml
//! runbooks:
//!   site-lost:
//!     rto: 30m
//!     rpo: 1h
//!     steps:
//!       - restore: { item: web, snapshot: latest, target: /srv/web }
//!       - pg_restore: { item: db, target: latest, data_dir: /var/lib/postgresql/15/main }
//!       - wait_for: { sql: "select count(*) > 0 from orders", timeout: 5m }
//!       - confirm: "switch DNS to this site?"
//!       - command: { run: "systemctl start web", timeout: 2m }
//!       - notify: "site restored"
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde_yaml::Value;

use crate::locate::Seg;
use crate::parse::{index, key, Ctx};

/// A named recovery scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Runbook {
    /// Its name (the key under `runbooks`).
    pub name: String,
    /// What it is for.
    pub description: Option<String>,
    /// Recovery time objective: the whole runbook must finish within it.
    pub rto: Option<Duration>,
    /// Recovery point objective: the data restored must be at most this old.
    pub rpo: Option<Duration>,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

/// One step of a runbook.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// A label (`name:`), default `N: KIND`.
    pub name: String,
    /// What it does.
    pub action: Action,
}

/// Which point a PostgreSQL restore recovers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgTarget {
    /// The end of the archived WAL.
    Latest,
    /// A time (`2024-05-01 10:00:00+00`).
    Time(String),
    /// A transaction id.
    Xid(u64),
    /// A named restore point.
    Name(String),
}

/// What a `wait_for` step waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A TCP connection to `HOST:PORT`; `postgres` means the PostgreSQL
    /// server of the runbook (the sandbox server in a drill).
    Tcp(String),
    /// An HTTP GET answering 2xx.
    Http(String),
    /// An SQL query answering a true value (`t`, `1`, `true`, or any row
    /// for a query that is not a boolean) on the runbook's PostgreSQL
    /// server.
    Sql {
        /// The query.
        query: String,
        /// The database (default `postgres`).
        database: Option<String>,
    },
}

/// What a step does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Restore a snapshot of an item into a directory.
    Restore {
        /// The item.
        item: String,
        /// A snapshot id or `latest` (default).
        snapshot: Option<String>,
        /// Instead of a snapshot: the newest at or before this time.
        time: Option<String>,
        /// The directory restored into (replaced: its old content is kept
        /// aside until the runbook succeeds).
        target: PathBuf,
    },
    /// Restore a PostgreSQL base backup and configure recovery.
    PgRestore {
        /// The item (kind postgres, mode physical).
        item: String,
        /// The recovery target.
        target: PgTarget,
        /// The data directory restored into (replaced like `restore`).
        data_dir: PathBuf,
        /// Start the server and wait for recovery to end (a drill always does,
        /// in its sandbox).
        start: bool,
    },
    /// A shell command; it fails the step when it exits non-zero.
    Command {
        /// The command (`sh -c`).
        run: String,
        /// Time limit (default 10m).
        timeout: Duration,
    },
    /// Poll until a probe succeeds.
    WaitFor {
        /// What to poll.
        probe: Probe,
        /// How long to wait at most (default 5m).
        timeout: Duration,
    },
    /// A manual gate: a person says yes (or `--yes`).
    Confirm {
        /// The question.
        message: String,
    },
    /// Tell people.
    Notify {
        /// The message.
        message: String,
    },
}

impl Action {
    /// The policy-file spelling of the step kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Restore { .. } => "restore",
            Action::PgRestore { .. } => "pg_restore",
            Action::Command { .. } => "command",
            Action::WaitFor { .. } => "wait_for",
            Action::Confirm { .. } => "confirm",
            Action::Notify { .. } => "notify",
        }
    }

    /// Whether executing it for real replaces data (asked before unless `--yes`).
    pub fn is_destructive(&self) -> bool {
        matches!(
            self,
            Action::Restore { .. } | Action::PgRestore { .. } | Action::Command { .. }
        )
    }
}

const KINDS: &[&str] = &[
    "restore",
    "pg_restore",
    "command",
    "wait_for",
    "confirm",
    "notify",
];
const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(600);
const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(300);

/// Parse `runbooks:` (a mapping of runbooks).
pub(crate) fn parse_runbooks(cx: &mut Ctx<'_>, v: &Value, path: &[Seg]) -> Vec<Runbook> {
    let wher = "in runbooks";
    let Some(m) = cx.mapping(v, path, "runbooks", "at top level") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, body) in m {
        let Some(name) = crate::parse::scalar_text(k) else {
            continue;
        };
        let p = key(path, &name);
        let wher_rb = format!("in runbook \"{name}\"");
        let Some(bm) = cx.mapping(body, &p, &name, wher) else {
            cx.err(&p, format!("runbook \"{name}\" has no steps"), None);
            continue;
        };
        cx.check_keys(bm, &p, &["description", "rto", "rpo", "steps"], &wher_rb);
        let mut rb = Runbook {
            name: name.clone(),
            description: None,
            rto: None,
            rpo: None,
            steps: Vec::new(),
        };
        if let Some(d) = bm.get("description") {
            rb.description = cx.string(d, &key(&p, "description"), "description", &wher_rb);
        }
        if let Some(d) = bm.get("rto") {
            rb.rto = cx.duration(d, &key(&p, "rto"), "rto", &wher_rb);
        }
        if let Some(d) = bm.get("rpo") {
            rb.rpo = cx.duration(d, &key(&p, "rpo"), "rpo", &wher_rb);
        }
        match bm.get("steps") {
            Some(Value::Sequence(seq)) => {
                for (i, s) in seq.iter().enumerate() {
                    if let Some(step) = parse_step(cx, s, &index(&key(&p, "steps"), i), i + 1) {
                        rb.steps.push(step);
                    }
                }
            }
            _ => cx.err(
                &p,
                format!("runbook \"{name}\" needs a list of steps"),
                Some("steps: [ {restore: {item: NAME, target: DIR}}, ... ]".into()),
            ),
        }
        out.push(rb);
    }
    out
}

fn parse_step(cx: &mut Ctx<'_>, v: &Value, p: &[Seg], n: usize) -> Option<Step> {
    let wher = format!("in step {n}");
    let m = cx.mapping(v, p, "step", &wher)?;
    let mut allowed = KINDS.to_vec();
    allowed.push("name");
    cx.check_keys(m, p, &allowed, &wher);
    let kinds: Vec<&str> = KINDS
        .iter()
        .copied()
        .filter(|k| m.contains_key(*k))
        .collect();
    let [kind] = kinds[..] else {
        cx.err(
            p,
            format!("step {n} needs exactly one of {}", KINDS.join(", ")),
            None,
        );
        return None;
    };
    let body = &m[kind];
    let bp = key(p, kind);
    let field = |cx: &mut Ctx<'_>, f: &str| -> Option<String> {
        let m = body.as_mapping()?;
        let v = m.get(f)?;
        cx.string(v, &key(&bp, f), f, &wher)
    };
    let timeout = |cx: &mut Ctx<'_>, default: Duration| -> Duration {
        body.as_mapping()
            .and_then(|m| m.get("timeout"))
            .and_then(|v| cx.duration(v, &key(&bp, "timeout"), "timeout", &wher))
            .unwrap_or(default)
    };
    let keys = |cx: &mut Ctx<'_>, allowed: &[&str]| {
        if let Some(m) = body.as_mapping() {
            cx.check_keys(m, &bp, allowed, &wher);
        }
    };
    let need = |cx: &mut Ctx<'_>, f: &str, got: Option<String>| -> Option<String> {
        if got.is_none() {
            cx.err(&bp, format!("{kind} step {n} needs \"{f}\""), None);
        }
        got
    };
    let action = match kind {
        "restore" => {
            keys(cx, &["item", "snapshot", "time", "target"]);
            let item = field(cx, "item");
            let target = field(cx, "target");
            let (item, target) = (need(cx, "item", item)?, need(cx, "target", target)?);
            let snapshot = field(cx, "snapshot");
            let time = field(cx, "time");
            if snapshot.is_some() && time.is_some() {
                cx.err(
                    &bp,
                    format!("restore step {n}: give snapshot or time, not both"),
                    None,
                );
            }
            Action::Restore {
                item,
                snapshot,
                time,
                target: cx.resolve(&target),
            }
        }
        "pg_restore" => {
            keys(cx, &["item", "target", "data_dir", "start"]);
            let item = field(cx, "item");
            let dir = field(cx, "data_dir");
            let (item, dir) = (need(cx, "item", item)?, need(cx, "data_dir", dir)?);
            let target = parse_pg_target(cx, body, &bp, &wher)?;
            let start = body
                .as_mapping()
                .and_then(|m| m.get("start"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            Action::PgRestore {
                item,
                target,
                data_dir: cx.resolve(&dir),
                start,
            }
        }
        "command" => {
            let run = match body {
                Value::Mapping(_) => {
                    keys(cx, &["run", "timeout"]);
                    let r = field(cx, "run");
                    need(cx, "run", r)?
                }
                other => cx.string(other, &bp, "command", &wher)?,
            };
            Action::Command {
                run,
                timeout: timeout(cx, DEFAULT_COMMAND_TIMEOUT),
            }
        }
        "wait_for" => {
            keys(cx, &["tcp", "http", "sql", "database", "timeout"]);
            let probe = if let Some(a) = field(cx, "tcp") {
                Probe::Tcp(a)
            } else if let Some(u) = field(cx, "http") {
                Probe::Http(u)
            } else if let Some(q) = field(cx, "sql") {
                Probe::Sql {
                    query: q,
                    database: field(cx, "database"),
                }
            } else {
                cx.err(
                    &bp,
                    format!("wait_for step {n} needs tcp, http or sql"),
                    None,
                );
                return None;
            };
            Action::WaitFor {
                probe,
                timeout: timeout(cx, DEFAULT_WAIT_TIMEOUT),
            }
        }
        "confirm" | "notify" => {
            let message = match body {
                Value::Mapping(_) => {
                    keys(cx, &["message"]);
                    let m = field(cx, "message");
                    need(cx, "message", m)?
                }
                other => cx.string(other, &bp, kind, &wher)?,
            };
            if kind == "confirm" {
                Action::Confirm { message }
            } else {
                Action::Notify { message }
            }
        }
        _ => return None,
    };
    let name = m
        .get("name")
        .and_then(|v| cx.string(v, &key(p, "name"), "name", &wher))
        .unwrap_or_else(|| format!("{n}: {kind}"));
    Some(Step { name, action })
}

fn parse_pg_target(cx: &mut Ctx<'_>, body: &Value, bp: &[Seg], wher: &str) -> Option<PgTarget> {
    let Some(v) = body.as_mapping().and_then(|m| m.get("target")) else {
        return Some(PgTarget::Latest);
    };
    let tp = key(bp, "target");
    match v {
        Value::Mapping(m) => {
            cx.check_keys(m, &tp, &["time", "xid", "name"], wher);
            if let Some(t) = m.get("time") {
                return cx
                    .string(t, &key(&tp, "time"), "time", wher)
                    .map(PgTarget::Time);
            }
            if let Some(x) = m.get("xid") {
                let x = cx.int(x, &key(&tp, "xid"), "xid", wher)?;
                return Some(PgTarget::Xid(x.max(0) as u64));
            }
            if let Some(n) = m.get("name") {
                return cx
                    .string(n, &key(&tp, "name"), "name", wher)
                    .map(PgTarget::Name);
            }
            Some(PgTarget::Latest)
        }
        other => {
            let s = cx.string(other, &tp, "target", wher)?;
            Some(if s == "latest" {
                PgTarget::Latest
            } else {
                PgTarget::Time(s)
            })
        }
    }
}

/// Check the items the steps name (after the items are parsed).
pub(crate) fn check_items(
    cx: &mut Ctx<'_>,
    runbooks: &[Runbook],
    items: &[crate::Item],
    path: &[Seg],
) {
    for rb in runbooks {
        for step in &rb.steps {
            let (item, physical) = match &step.action {
                Action::Restore { item, .. } => (item, false),
                Action::PgRestore { item, .. } => (item, true),
                _ => continue,
            };
            let p = key(path, &rb.name);
            match items.iter().find(|i| &i.name == item) {
                None => cx.err(
                    &p,
                    format!(
                        "runbook \"{}\", step \"{}\": no item \"{item}\" in the policy",
                        rb.name, step.name
                    ),
                    None,
                ),
                Some(i) if physical && i.physical().is_none() => cx.err(
                    &p,
                    format!(
                        "runbook \"{}\", step \"{}\": pg_restore needs an item of kind postgres, mode physical; \"{item}\" is not one",
                        rb.name, step.name
                    ),
                    Some("use a restore step for other items".into()),
                ),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Policy;

    const BASE: &str = "repositories:\n  r: {location: /r, password: x}\nitems:\n  - name: web\n    paths: [/srv]\n  - name: db\n    kind: postgres\n    postgres: {mode: physical}\n";

    fn parse(runbooks: &str) -> Result<Policy, String> {
        Policy::parse_with(
            &format!("{BASE}{runbooks}"),
            "p.yaml",
            Some(std::path::Path::new("/etc/bunker")),
            &|_| None,
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn every_step_kind_parses_in_order() {
        let p = parse(
            "runbooks:\n  dr:\n    rto: 30m\n    rpo: 1h\n    steps:\n\
             \x20     - restore: {item: web, time: '2024-05-01 10:00', target: ./web}\n\
             \x20     - pg_restore: {item: db, target: {xid: 42}, data_dir: /pg, start: true}\n\
             \x20     - wait_for: {sql: select 1, database: app, timeout: 1m}\n\
             \x20     - name: gate\n        confirm: go?\n\
             \x20     - command: {run: systemctl start web, timeout: 2m}\n\
             \x20     - notify: done\n",
        )
        .expect("valid");
        let rb = &p.runbooks[0];
        assert_eq!(rb.rto, Some(Duration::from_secs(1800)));
        let kinds: Vec<&str> = rb.steps.iter().map(|s| s.action.kind()).collect();
        assert_eq!(
            kinds,
            [
                "restore",
                "pg_restore",
                "wait_for",
                "confirm",
                "command",
                "notify"
            ]
        );
        assert_eq!(rb.steps[3].name, "gate");
        assert_eq!(rb.steps[0].name, "1: restore");
        assert!(matches!(
            &rb.steps[0].action,
            Action::Restore { target, .. } if target == &PathBuf::from("/etc/bunker/web")
        ));
        assert!(matches!(
            &rb.steps[1].action,
            Action::PgRestore {
                target: PgTarget::Xid(42),
                start: true,
                ..
            }
        ));
        assert!(matches!(
            &rb.steps[2].action,
            Action::WaitFor { probe: Probe::Sql { database: Some(d), .. }, timeout }
                if d == "app" && *timeout == Duration::from_secs(60)
        ));
    }

    #[test]
    fn wrong_items_and_steps_are_named_with_their_place() {
        let e = parse(
            "runbooks:\n  dr:\n    steps:\n\
             \x20     - restore: {item: nope, target: /x}\n\
             \x20     - pg_restore: {item: web, data_dir: /pg}\n\
             \x20     - restore: {item: web, target: /x}\n        command: true\n\
             \x20     - wait_for: {timeout: 1m}\n",
        )
        .expect_err("invalid");
        assert!(e.contains("no item \"nope\""), "{e}");
        assert!(
            e.contains("pg_restore needs an item of kind postgres"),
            "{e}"
        );
        assert!(e.contains("step 3 needs exactly one of"), "{e}");
        assert!(e.contains("wait_for step 4 needs tcp, http or sql"), "{e}");
        assert!(e.contains("p.yaml:"), "{e}");
    }

    #[test]
    fn runbooks_can_live_in_a_file_of_their_own() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("rb.yaml"),
            "runbooks:\n  dr:\n    steps:\n      - notify: hello\n",
        )
        .unwrap();
        let p = Policy::parse_with(
            &format!("{BASE}runbooks: ./rb.yaml\n"),
            "p.yaml",
            Some(d.path()),
            &|_| None,
        )
        .expect("valid");
        assert_eq!(p.runbooks[0].name, "dr");
        std::fs::write(d.path().join("rb.yaml"), "dr:\n  steps:\n    - bogus: 1\n").unwrap();
        let e = Policy::parse_with(
            &format!("{BASE}runbooks: ./rb.yaml\n"),
            "p.yaml",
            Some(d.path()),
            &|_| None,
        )
        .expect_err("invalid")
        .to_string();
        assert!(e.contains("rb.yaml:3"), "{e}");
    }
}
