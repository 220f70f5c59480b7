//! Restore drills of an item (`drill:`) and its recovery time objective
//! (`rto:`): the typed settings and their parsing.
//!
//! ```yaml
//! rto: 30m
//! drill:
//!   schedule: "0 4 * * 0"          # when the daemon runs it (like an item's schedule)
//!   pick: random_in_window         # latest (default) | random | random_in_window
//!   sandbox: /var/tmp/bunker-drills # parent of the fresh sandbox (default: temp dir)
//!   timeout: 1h                    # deadline of every wait (server start-up, recovery, each check)
//!   pg_bin: /usr/lib/postgresql/15/bin
//!   checks:
//!     - "select count(*) > 0 from orders"              # SQL for postgres/sqlite items
//!     - { sql: "select max(id) from orders", expect: "42", database: shop }
//!     - { command: "test -s \"$BUNKER_DRILL_DIR/srv/app/index.html\"", timeout: 5m }
//! ```
//!
//! A check written as a plain string is a shell command for `files` and
//! `command` items and SQL for `postgres` and `sqlite` items; the mapping
//! forms name the kind. SQL checks are refused on items without a database.

use std::path::PathBuf;
use std::time::Duration;

use serde_yaml::{Mapping, Value};

use crate::locate::Seg;
use crate::model::ItemKind;
use crate::parse::{index, key, Ctx};
use crate::schedule::Schedule;

/// Which snapshot (or point in time) a drill restores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DrillPick {
    /// The newest snapshot (postgres physical: the newest base backup
    /// replayed to the end of the WAL archive).
    #[default]
    Latest,
    /// A snapshot chosen at random among the item's (postgres physical: a
    /// random base backup, recovered to its consistent point).
    Random,
    /// A random moment of the point-in-time recovery window (postgres
    /// physical items only).
    RandomInWindow,
}

impl DrillPick {
    /// The policy spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DrillPick::Latest => "latest",
            DrillPick::Random => "random",
            DrillPick::RandomInWindow => "random_in_window",
        }
    }

    /// Parses the policy spelling.
    pub fn parse(s: &str) -> Option<DrillPick> {
        match s {
            "latest" => Some(DrillPick::Latest),
            "random" => Some(DrillPick::Random),
            "random_in_window" => Some(DrillPick::RandomInWindow),
            _ => None,
        }
    }
}

/// What a check runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// `sh -c COMMAND`; passes when it exits 0.
    Command(String),
    /// A query; passes when it succeeds and its first value is true (not
    /// empty, NULL, `f`, `false` or `0`), or equals `expect` when given.
    Sql {
        /// The query.
        sql: String,
        /// The database (postgres; default: the item's `database`, else
        /// `postgres`).
        database: Option<String>,
        /// The exact text the first value must have.
        expect: Option<String>,
    },
}

/// One application check of a drill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillCheck {
    /// What it runs.
    pub kind: CheckKind,
    /// Its own time limit (default: the drill's `timeout`).
    pub timeout: Option<Duration>,
}

/// The `drill:` settings of an item.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DrillConfig {
    /// When the daemon runs the drill; `None` = only on demand.
    pub schedule: Option<Schedule>,
    /// What is restored.
    pub pick: DrillPick,
    /// The directory under which each drill's fresh sandbox is made
    /// (default: the system's temporary directory).
    pub sandbox: Option<PathBuf>,
    /// The application checks, in order.
    pub checks: Vec<DrillCheck>,
    /// Deadline of every wait of the drill (default [`DEFAULT_DRILL_TIMEOUT`]).
    pub timeout: Option<Duration>,
    /// Directory of PostgreSQL's server programs (default: searched as
    /// `pg restore --start` does).
    pub pg_bin: Option<PathBuf>,
}

/// The deadline of a drill's waits when the policy sets none.
pub const DEFAULT_DRILL_TIMEOUT: Duration = Duration::from_secs(3600);

const DRILL_KEYS: &[&str] = &["schedule", "pick", "sandbox", "checks", "timeout", "pg_bin"];
const CHECK_KEYS: &[&str] = &["command", "sql", "database", "expect", "timeout"];

/// Parses the `drill:` mapping of item `item` of kind `kind` (`physical`:
/// a postgres item in physical mode).
pub(crate) fn parse_drill(
    cx: &mut Ctx<'_>,
    v: &Value,
    path: &[Seg],
    item: &str,
    kind: ItemKind,
    physical: bool,
) -> Option<DrillConfig> {
    let wher = format!("in drill of item \"{item}\"");
    let m = cx.mapping(v, path, "drill", &format!("in item \"{item}\""))?;
    cx.check_keys(m, path, DRILL_KEYS, &wher);
    let mut d = DrillConfig::default();
    if let Some(v) = m.get("schedule") {
        d.schedule = crate::parse::items::schedule(cx, v, &key(path, "schedule"), &wher);
    }
    if let Some(v) = m.get("pick") {
        let p = key(path, "pick");
        if let Some(s) = cx.string(v, &p, "pick", &wher) {
            match DrillPick::parse(&s) {
                Some(DrillPick::RandomInWindow) if !physical => cx.err(
                    &p,
                    format!("\"pick: random_in_window\" {wher} needs a postgres item in physical mode"),
                    Some("only base backups with archived WAL have a recovery window; use \"latest\" or \"random\"".into()),
                ),
                Some(pick) => d.pick = pick,
                None => cx.err(
                    &p,
                    format!("invalid pick \"{s}\" {wher}"),
                    Some("expected \"latest\", \"random\" or \"random_in_window\"".into()),
                ),
            }
        }
    }
    if let Some(v) = m.get("sandbox") {
        d.sandbox = cx
            .string(v, &key(path, "sandbox"), "sandbox", &wher)
            .map(|s| cx.resolve(&s));
    }
    if let Some(v) = m.get("pg_bin") {
        d.pg_bin = cx
            .string(v, &key(path, "pg_bin"), "pg_bin", &wher)
            .map(|s| cx.resolve(&s));
    }
    if let Some(v) = m.get("timeout") {
        d.timeout = cx.duration(v, &key(path, "timeout"), "timeout", &wher);
    }
    if let Some(v) = m.get("checks") {
        d.checks = checks(cx, v, &key(path, "checks"), &wher, kind);
    }
    Some(d)
}

/// Whether items of `kind` have a database to run SQL against.
fn has_sql(kind: ItemKind) -> bool {
    matches!(kind, ItemKind::Postgres | ItemKind::Sqlite)
}

fn checks(
    cx: &mut Ctx<'_>,
    v: &Value,
    path: &[Seg],
    wher: &str,
    kind: ItemKind,
) -> Vec<DrillCheck> {
    let seq = match v {
        Value::Null => return Vec::new(),
        Value::Sequence(s) => s,
        _ => {
            cx.err(
                path,
                format!("\"checks\" {wher} must be a list"),
                Some("e.g. checks: [\"select count(*) > 0 from orders\"]".into()),
            );
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (i, e) in seq.iter().enumerate() {
        let p = index(path, i);
        let check = match e {
            Value::Mapping(m) => check_mapping(cx, m, &p, wher, kind),
            other => cx.string(other, &p, "checks", wher).map(|s| DrillCheck {
                kind: if has_sql(kind) {
                    CheckKind::Sql {
                        sql: s,
                        database: None,
                        expect: None,
                    }
                } else {
                    CheckKind::Command(s)
                },
                timeout: None,
            }),
        };
        out.extend(check);
    }
    out
}

fn check_mapping(
    cx: &mut Ctx<'_>,
    m: &Mapping,
    path: &[Seg],
    wher: &str,
    kind: ItemKind,
) -> Option<DrillCheck> {
    let w = format!("in a check {}", wher.strip_prefix("in ").unwrap_or(wher));
    cx.check_keys(m, path, CHECK_KEYS, &w);
    let text =
        |cx: &mut Ctx<'_>, k: &str| m.get(k).and_then(|v| cx.string(v, &key(path, k), k, &w));
    let timeout = m
        .get("timeout")
        .and_then(|v| cx.duration(v, &key(path, "timeout"), "timeout", &w));
    let command = text(cx, "command");
    let sql = text(cx, "sql");
    let database = text(cx, "database");
    let expect = text(cx, "expect");
    let kind = match (command, sql) {
        (Some(c), None) => {
            if database.is_some() || expect.is_some() {
                cx.err(
                    path,
                    format!("\"database\" and \"expect\" {w} belong to \"sql\" checks"),
                    None,
                );
            }
            CheckKind::Command(c)
        }
        (None, Some(sql)) => {
            if !has_sql(kind) {
                cx.err(
                    &key(path, "sql"),
                    format!("an \"sql\" check {wher} of kind {}", kind.as_str()),
                    Some("SQL checks need a postgres or sqlite item; use \"command\"".into()),
                );
                return None;
            }
            CheckKind::Sql {
                sql,
                database,
                expect,
            }
        }
        _ => {
            cx.err(
                path,
                format!("a check {wher} needs exactly one of \"command\" or \"sql\""),
                None,
            );
            return None;
        }
    };
    Some(DrillCheck { kind, timeout })
}

#[cfg(test)]
mod tests {
    use crate::{CheckKind, DrillPick, Policy, PolicyError};
    use std::time::Duration;

    fn parse(items: &str) -> Result<Policy, PolicyError> {
        let text =
            format!("repositories:\n  r:\n    location: /r\n    password: x\nitems:\n{items}");
        Policy::parse_with(&text, "bunker.yaml", None, &|_| None)
    }

    #[test]
    fn drill_and_rto_parse() {
        let p = parse(
            r#"  - name: db
    kind: postgres
    postgres: { mode: physical, pitr: 7d }
    retention: { keep_daily: 7 }
    rto: 30m
    drill:
      schedule: "every 7d"
      pick: random_in_window
      sandbox: /var/tmp/drills
      timeout: 20m
      checks:
        - "select count(*) > 0 from orders"
        - { sql: "select 1", database: shop, expect: "1", timeout: 1m }
        - { command: "true" }
  - name: app
    paths: [/srv/app]
    drill: { checks: ["test -d \"$BUNKER_DRILL_DIR/srv\""] }
"#,
        )
        .expect("valid");
        let db = p.item("db").unwrap();
        assert_eq!(db.rto, Some(Duration::from_secs(1800)));
        let d = db.drill.as_ref().unwrap();
        assert_eq!(d.pick, DrillPick::RandomInWindow);
        assert_eq!(d.timeout, Some(Duration::from_secs(1200)));
        assert_eq!(d.checks.len(), 3);
        assert!(
            matches!(&d.checks[0].kind, CheckKind::Sql { sql, .. } if sql.starts_with("select count"))
        );
        assert!(
            matches!(&d.checks[1].kind, CheckKind::Sql { database: Some(db), expect: Some(e), .. } if db == "shop" && e == "1")
        );
        assert_eq!(d.checks[1].timeout, Some(Duration::from_secs(60)));
        assert!(matches!(&d.checks[2].kind, CheckKind::Command(c) if c == "true"));
        let app = p.item("app").unwrap();
        assert!(matches!(
            &app.drill.as_ref().unwrap().checks[0].kind,
            CheckKind::Command(_)
        ));
        assert_eq!(app.drill.as_ref().unwrap().pick, DrillPick::Latest);
    }

    #[test]
    fn drill_mistakes_are_reported_with_their_lines() {
        let e = parse(
            r#"  - name: app
    paths: [/srv/app]
    rto: soon
    drill:
      pick: random_in_window
      checks:
        - { sql: "select 1" }
        - { command: "x", sql: "y" }
      shedule: "every 1d"
"#,
        )
        .unwrap_err();
        let d = e.diagnostics();
        let at = |line: usize, text: &str| {
            assert!(
                d.iter().any(|x| x.line == line && x.message.contains(text)),
                "no diagnostic at line {line} containing {text:?}: {d:#?}"
            )
        };
        at(8, "invalid duration \"soon\" for \"rto\"");
        at(10, "needs a postgres item in physical mode");
        at(12, "an \"sql\" check");
        at(13, "exactly one of \"command\" or \"sql\"");
        at(14, "unknown key \"shedule\"");
    }
}
