//! The `items` section.

use super::{index, key, Ctx};
use crate::locate::{NodePath, Seg};
use crate::model::{
    CommandConfig, FilesSource, Hooks, Item, ItemKind, PostgresConfig, PostgresMode, Priority,
    Retention, Role, Secret, Source, SqliteConfig,
};
use crate::policy::Policy;
use crate::schedule::{Schedule, ScheduleError};
use bunker_repo::retention::{KeepDuration, UNLIMITED};
use serde_yaml::{Mapping, Value};
use std::path::PathBuf;

const ITEM_KEYS: &[&str] = &[
    "name",
    "kind",
    "paths",
    "excludes",
    "schedule",
    "retention",
    "priority",
    "rpo",
    "targets",
    "tags",
    "hooks",
    "postgres",
    "sqlite",
    "command",
    "mysql",
    "rto",
    "drill",
];

const RETENTION_COUNTS: &[&str] = &[
    "keep_last",
    "keep_hourly",
    "keep_daily",
    "keep_weekly",
    "keep_monthly",
    "keep_yearly",
];

const RETENTION_WITHIN: &[&str] = &[
    "keep_within",
    "keep_within_hourly",
    "keep_within_daily",
    "keep_within_weekly",
    "keep_within_monthly",
    "keep_within_yearly",
];

const HOOK_KEYS: &[&str] = &["before", "after", "on_failure", "timeout"];
const POSTGRES_KEYS: &[&str] = &[
    "host",
    "port",
    "user",
    "database",
    "dsn",
    "password_env",
    "mode",
    "pitr",
    "full_on_start",
    "timeout",
];
const SQLITE_KEYS: &[&str] = &["path"];
const COMMAND_KEYS: &[&str] = &["command", "stdin_filename", "timeout"];

/// An item as parsed, its source not yet checked against its kind.
struct ItemDraft {
    name: String,
    source: SourceDraft,
    schedule: Option<Schedule>,
    retention: Option<Retention>,
    priority: Priority,
    rpo: Option<std::time::Duration>,
    targets: Vec<String>,
    tags: Vec<String>,
    hooks: Hooks,
    rto: Option<std::time::Duration>,
    drill: Option<crate::drill::DrillConfig>,
}

impl ItemDraft {
    /// The item, or `None` (after diagnostics) if its source cannot be
    /// built; see [`SourceDraft::into_source`].
    fn build(self, cx: &mut Ctx<'_>, path: &[Seg]) -> Option<Item> {
        let label = format!("item \"{}\"", self.name);
        let source = self.source.into_source(cx, path, &label)?;
        Some(Item {
            name: self.name,
            source,
            schedule: self.schedule,
            retention: self.retention,
            priority: self.priority,
            rpo: self.rpo,
            targets: self.targets,
            tags: self.tags,
            hooks: self.hooks,
            rto: self.rto,
            drill: self.drill,
        })
    }
}

/// An item's source settings as written, before they are checked against
/// its kind: any combination can appear in a policy file.
struct SourceDraft {
    /// `files` unless a valid `kind:` says otherwise (an invalid one is
    /// reported and the item is checked as a files item).
    kind: ItemKind,
    paths: Vec<PathBuf>,
    excludes: Vec<String>,
    postgres: Option<PostgresConfig>,
    sqlite: Option<SqliteConfig>,
    command: Option<CommandConfig>,
    mysql: Option<crate::mysql::MysqlConfig>,
}

impl SourceDraft {
    /// The source of an item of this kind, reporting settings that do not
    /// belong to the kind and a missing section; `None` (the item is left
    /// out of the model) when the kind's own settings are missing or had
    /// errors.
    fn into_source(self, cx: &mut Ctx<'_>, path: &[Seg], label: &str) -> Option<Source> {
        let kind = self.kind;
        if kind != ItemKind::Files && !self.paths.is_empty() {
            cx.err_key_once(
                &key(path, "paths"),
                format!("\"paths\" in {label} only applies to files items"),
                None,
            );
        }
        let sections = [
            ("postgres", ItemKind::Postgres, self.postgres.is_some()),
            ("sqlite", ItemKind::Sqlite, self.sqlite.is_some()),
            ("command", ItemKind::Command, self.command.is_some()),
            ("mysql", ItemKind::Mysql, self.mysql.is_some()),
        ];
        for (name, section_kind, present) in sections {
            if present && kind != section_kind {
                cx.err_key_once(
                    &key(path, name),
                    format!("\"{name}\" settings in {label} of kind {}", kind.as_str()),
                    Some(format!("set \"kind: {name}\" or remove them")),
                );
            }
            if !present && kind == section_kind {
                cx.err_key_once(
                    &key(path, name),
                    format!("{label} of kind {name} needs a \"{name}\" section"),
                    None,
                );
            }
        }
        match kind {
            ItemKind::Files => Some(Source::Files(FilesSource {
                paths: self.paths,
                excludes: self.excludes,
            })),
            ItemKind::Postgres => self.postgres.map(Source::Postgres),
            ItemKind::Sqlite => self.sqlite.map(Source::Sqlite),
            ItemKind::Command => self.command.map(Source::Command),
            ItemKind::Mysql => self.mysql.map(Source::Mysql),
        }
    }
}

/// The items and, for each, its index in the YAML list. An item whose
/// source cannot be built is left out after its diagnostics.
pub(super) fn parse_items(cx: &mut Ctx<'_>, v: &Value, policy: &Policy) -> (Vec<Item>, Vec<usize>) {
    let path: NodePath = vec![Seg::Key("items".into())];
    let seq = match v {
        Value::Sequence(s) => s,
        Value::Null => return (Vec::new(), Vec::new()),
        other => {
            cx.wrong_type(&path, "items", "at top level", "a list of items", other);
            return (Vec::new(), Vec::new());
        }
    };
    let primaries: Vec<String> = policy
        .repositories
        .values()
        .filter(|r| r.role == Role::Primary)
        .map(|r| r.name.clone())
        .collect();
    let mut out = Vec::new();
    let mut idx = Vec::new();
    for (i, v) in seq.iter().enumerate() {
        let ipath = index(&path, i);
        let Some(m) = cx.mapping(v, &ipath, &format!("items[{i}]"), "at top level") else {
            if v.is_null() {
                cx.err(&ipath, format!("item #{} is empty", i + 1), None);
            }
            continue;
        };
        let Some(mut item) = parse_item(cx, m, &ipath, i, &primaries) else {
            continue;
        };
        if let Source::Files(files) = &mut item.source {
            files
                .excludes
                .extend(policy.exclude_patterns.iter().cloned());
        }
        out.push(item);
        idx.push(i);
    }
    (out, idx)
}

fn parse_item(
    cx: &mut Ctx<'_>,
    m: &Mapping,
    path: &[Seg],
    i: usize,
    primaries: &[String],
) -> Option<Item> {
    let name = match m.get("name") {
        Some(v) => cx.string(
            v,
            &key(path, "name"),
            "name",
            &format!("in item #{}", i + 1),
        ),
        None => {
            cx.err(path, format!("item #{} has no \"name\"", i + 1), None);
            None
        }
    };
    let wher = match &name {
        Some(n) => format!("in item \"{n}\""),
        None => format!("in item #{}", i + 1),
    };
    cx.check_keys(m, path, ITEM_KEYS, &wher);

    let mut item = ItemDraft {
        name: name.unwrap_or_default(),
        source: SourceDraft {
            kind: ItemKind::Files,
            paths: Vec::new(),
            excludes: Vec::new(),
            postgres: None,
            sqlite: None,
            command: None,
            mysql: None,
        },
        schedule: None,
        retention: None,
        priority: Priority::default(),
        rpo: None,
        targets: primaries.to_vec(),
        tags: Vec::new(),
        hooks: Hooks::default(),
        rto: None,
        drill: None,
    };

    if let Some(v) = m.get("kind") {
        let choices = [
            ("files", ItemKind::Files),
            ("postgres", ItemKind::Postgres),
            ("mysql", ItemKind::Mysql),
            ("sqlite", ItemKind::Sqlite),
            ("command", ItemKind::Command),
        ];
        if let Some(k) = cx.choice(v, &key(path, "kind"), "kind", &wher, &choices) {
            item.source.kind = k;
        }
    }
    if let Some(v) = m.get("paths") {
        item.source.paths = cx
            .strings(v, &key(path, "paths"), "paths", &wher)
            .iter()
            .map(|p| cx.resolve(p))
            .collect();
    }
    if let Some(v) = m.get("excludes") {
        item.source.excludes = cx.strings(v, &key(path, "excludes"), "excludes", &wher);
    }
    if let Some(v) = m.get("schedule") {
        item.schedule = schedule(cx, v, &key(path, "schedule"), &wher);
    }
    if let Some(v) = m.get("retention") {
        item.retention = retention(cx, v, &key(path, "retention"), &item.name);
    }
    if let Some(v) = m.get("priority") {
        let p = key(path, "priority");
        if let Some(pr) = cx.choice(v, &p, "priority", &wher, &super::choice::PRIORITIES) {
            item.priority = pr;
        }
    }
    if let Some(v) = m.get("rpo") {
        item.rpo = cx.duration(v, &key(path, "rpo"), "rpo", &wher);
    }
    if let Some(v) = m.get("targets") {
        item.targets = cx.strings(v, &key(path, "targets"), "targets", &wher);
    }
    if let Some(v) = m.get("tags") {
        item.tags = cx.strings(v, &key(path, "tags"), "tags", &wher);
    }
    if let Some(v) = m.get("hooks") {
        item.hooks = hooks(cx, v, &key(path, "hooks"), &item.name);
    }
    if let Some(v) = m.get("postgres") {
        item.source.postgres = postgres(cx, v, &key(path, "postgres"), &item.name);
    }
    if let Some(v) = m.get("mysql") {
        item.source.mysql = super::mysql::mysql(cx, v, &key(path, "mysql"), &item.name);
    }
    if let Some(v) = m.get("sqlite") {
        let p = key(path, "sqlite");
        let w = format!("in sqlite settings of item \"{}\"", item.name);
        if let Some(sm) = cx.mapping(v, &p, "sqlite", &wher) {
            cx.check_keys(sm, &p, SQLITE_KEYS, &w);
            match sm.get("path") {
                Some(v) => {
                    if let Some(s) = cx.string(v, &key(&p, "path"), "path", &w) {
                        item.source.sqlite = Some(SqliteConfig {
                            path: cx.resolve(&s),
                        });
                    }
                }
                None => cx.err_key(&p, format!("\"path\" is required {w}"), None),
            }
        }
    }
    if let Some(v) = m.get("command") {
        let p = key(path, "command");
        let w = format!("in command settings of item \"{}\"", item.name);
        if let Some(cm) = cx.mapping(v, &p, "command", &wher) {
            cx.check_keys(cm, &p, COMMAND_KEYS, &w);
            let stdin_filename = match cm.get("stdin_filename") {
                Some(v) => cx.string(v, &key(&p, "stdin_filename"), "stdin_filename", &w),
                None => Some("stdin".to_string()),
            };
            let timeout = cm
                .get("timeout")
                .and_then(|v| cx.duration(v, &key(&p, "timeout"), "timeout", &w));
            match cm.get("command") {
                Some(v) => {
                    if let Some(command) = cx.string(v, &key(&p, "command"), "command", &w) {
                        item.source.command = Some(CommandConfig {
                            command,
                            stdin_filename: stdin_filename.unwrap_or_else(|| "stdin".into()),
                            timeout,
                        });
                    }
                }
                None => cx.err_key(&p, format!("\"command\" is required {w}"), None),
            }
        }
    }
    if let Some(v) = m.get("rto") {
        item.rto = cx.duration(v, &key(path, "rto"), "rto", &wher);
    }
    if let Some(v) = m.get("drill") {
        let physical = item.source.kind == ItemKind::Postgres
            && item
                .source
                .postgres
                .as_ref()
                .is_some_and(|p| p.mode == PostgresMode::Physical);
        item.drill = crate::drill::parse_drill(
            cx,
            v,
            &key(path, "drill"),
            &item.name,
            item.source.kind,
            physical,
        );
    }
    item.build(cx, path)
}

pub(crate) fn schedule(cx: &mut Ctx<'_>, v: &Value, path: &[Seg], wher: &str) -> Option<Schedule> {
    let (text, p) = match v {
        Value::Mapping(m) => {
            cx.check_keys(
                m,
                path,
                &["every", "cron"],
                &format!(
                    "in schedule of {}",
                    wher.strip_prefix("in ").unwrap_or(wher)
                ),
            );
            if m.len() != 1 {
                cx.err(
                    path,
                    format!("\"schedule\" {wher} needs exactly one of \"every\" or \"cron\""),
                    None,
                );
                return None;
            }
            if let Some(e) = m.get("every") {
                let p = key(path, "every");
                let d = cx.duration(e, &p, "every", wher)?;
                return Some(Schedule::Every(d));
            }
            let p = key(path, "cron");
            let c = m.get("cron")?;
            (cx.string(c, &p, "cron", wher)?, p)
        }
        other => (cx.string(other, path, "schedule", wher)?, path.to_vec()),
    };
    match Schedule::parse(&text) {
        Ok(s) => Some(s),
        Err(ScheduleError::Duration(d)) => {
            cx.err(
                &p,
                format!("invalid duration \"{d}\" for \"schedule\" {wher}"),
                Some("expected a duration like \"90m\", \"24h\", \"30d\" or \"1w\"".into()),
            );
            None
        }
        Err(ScheduleError::Cron { expr, reason }) => {
            cx.err(
                &p,
                format!("invalid cron expression \"{expr}\" for \"schedule\" {wher}: {reason}"),
                Some("use \"every <duration>\", \"on_change\" or a cron expression like \"0 3 * * *\"".into()),
            );
            None
        }
    }
}

fn retention(cx: &mut Ctx<'_>, v: &Value, path: &[Seg], item: &str) -> Option<Retention> {
    let wher = format!("in retention of item \"{item}\"");
    let m = cx.mapping(v, path, "retention", &format!("in item \"{item}\""))?;
    let mut allowed: Vec<&str> = RETENTION_COUNTS.to_vec();
    allowed.extend_from_slice(RETENTION_WITHIN);
    allowed.extend_from_slice(&["keep_tags", "retention_days"]);
    cx.check_keys(m, path, &allowed, &wher);
    let mut r = Retention::default();

    for (i, field) in RETENTION_COUNTS.iter().enumerate() {
        let Some(v) = m.get(*field) else { continue };
        let p = key(path, field);
        let n = if v.as_str() == Some("unlimited") {
            Some(i64::from(UNLIMITED))
        } else {
            cx.int(v, &p, field, &wher)
        };
        let Some(n) = n else { continue };
        if n < i64::from(UNLIMITED) {
            cx.err(
                &p,
                format!("negative value {n} for \"{field}\" {wher}"),
                Some("use 0 to disable the rule or -1 (\"unlimited\") to keep all".into()),
            );
            continue;
        }
        let Ok(n) = i32::try_from(n) else {
            cx.err(
                &p,
                format!("value {n} for \"{field}\" {wher} is too large"),
                None,
            );
            continue;
        };
        let slot = match i {
            0 => &mut r.keep_last,
            1 => &mut r.keep_hourly,
            2 => &mut r.keep_daily,
            3 => &mut r.keep_weekly,
            4 => &mut r.keep_monthly,
            _ => &mut r.keep_yearly,
        };
        *slot = n;
    }

    for (i, field) in RETENTION_WITHIN.iter().enumerate() {
        let Some(v) = m.get(*field) else { continue };
        let p = key(path, field);
        let Some(s) = cx.string(v, &p, field, &wher) else {
            continue;
        };
        let d = match KeepDuration::parse_policy(&s) {
            Ok(d) if d.years < 0 || d.months < 0 || d.days < 0 || d.hours < 0 => {
                cx.err(
                    &p,
                    format!("negative duration \"{s}\" for \"{field}\" {wher}"),
                    None,
                );
                continue;
            }
            Ok(d) => d,
            Err(e) => {
                cx.err(
                    &p,
                    format!("invalid duration \"{s}\" for \"{field}\" {wher}: {e}"),
                    Some("expected e.g. \"30d\", \"2w\", \"6mo\", \"1y\", \"48h\"".into()),
                );
                continue;
            }
        };
        let slot = match i {
            0 => &mut r.keep_within,
            1 => &mut r.keep_within_hourly,
            2 => &mut r.keep_within_daily,
            3 => &mut r.keep_within_weekly,
            4 => &mut r.keep_within_monthly,
            _ => &mut r.keep_within_yearly,
        };
        *slot = Some(d);
    }

    if let Some(v) = m.get("keep_tags") {
        let p = key(path, "keep_tags");
        match v {
            Value::Sequence(seq) => {
                for (i, e) in seq.iter().enumerate() {
                    let ep = index(&p, i);
                    let list = match e {
                        Value::Sequence(_) => cx.strings(e, &ep, "keep_tags", &wher),
                        other => cx
                            .string(other, &ep, "keep_tags", &wher)
                            .map(|s| s.split(',').map(|t| t.trim().to_string()).collect())
                            .unwrap_or_default(),
                    };
                    if !list.is_empty() {
                        r.keep_tags.push(list);
                    }
                }
            }
            other => {
                cx.wrong_type(&p, "keep_tags", &wher, "a list of tag lists", other);
            }
        }
    }

    if let Some(v) = m.get("retention_days") {
        let p = key(path, "retention_days");
        if let Some(n) = cx.int(v, &p, "retention_days", &wher) {
            match u32::try_from(n) {
                Ok(n) => r.retention_days = Some(n),
                Err(_) => cx.err(
                    &p,
                    format!("invalid value {n} for \"retention_days\" {wher}"),
                    Some("expected a number of days >= 0".into()),
                ),
            }
        }
    }
    Some(r)
}

fn hooks(cx: &mut Ctx<'_>, v: &Value, path: &[Seg], item: &str) -> Hooks {
    let wher = format!("in hooks of item \"{item}\"");
    let mut h = Hooks::default();
    let Some(m) = cx.mapping(v, path, "hooks", &format!("in item \"{item}\"")) else {
        return h;
    };
    cx.check_keys(m, path, HOOK_KEYS, &wher);
    if let Some(v) = m.get("before") {
        h.before = cx.strings(v, &key(path, "before"), "before", &wher);
    }
    if let Some(v) = m.get("after") {
        h.after = cx.strings(v, &key(path, "after"), "after", &wher);
    }
    if let Some(v) = m.get("on_failure") {
        h.on_failure = cx.strings(v, &key(path, "on_failure"), "on_failure", &wher);
    }
    if let Some(v) = m.get("timeout") {
        h.timeout = cx.duration(v, &key(path, "timeout"), "timeout", &wher);
    }
    h
}

fn postgres(cx: &mut Ctx<'_>, v: &Value, path: &[Seg], item: &str) -> Option<PostgresConfig> {
    let wher = format!("in postgres settings of item \"{item}\"");
    let m = cx.mapping(v, path, "postgres", &format!("in item \"{item}\""))?;
    cx.check_keys(m, path, POSTGRES_KEYS, &wher);
    let mut pg = PostgresConfig::default();
    let text =
        |cx: &mut Ctx<'_>, k: &str| m.get(k).and_then(|v| cx.string(v, &key(path, k), k, &wher));
    pg.host = text(cx, "host");
    pg.user = text(cx, "user");
    pg.database = text(cx, "database");
    pg.dsn = text(cx, "dsn").map(Secret::new);
    pg.password_env = text(cx, "password_env");
    if let Some(mode) = text(cx, "mode") {
        let choices = [
            ("logical", PostgresMode::Logical),
            ("physical", PostgresMode::Physical),
        ];
        if let Some(md) = cx.one_of(&mode, &key(path, "mode"), "mode", &wher, &choices) {
            pg.mode = md;
        }
    }
    if let Some(v) = m.get("pitr") {
        pg.pitr = cx.duration(v, &key(path, "pitr"), "pitr", &wher);
    }
    if let Some(v) = m.get("timeout") {
        pg.timeout = cx.duration(v, &key(path, "timeout"), "timeout", &wher);
    }
    if let Some(v) = m.get("full_on_start") {
        match v {
            Value::Bool(b) => pg.full_on_start = *b,
            other => cx.wrong_type(
                &key(path, "full_on_start"),
                "full_on_start",
                &wher,
                "true or false",
                other,
            ),
        }
    }
    if let Some(v) = m.get("port") {
        let p = key(path, "port");
        if let Some(n) = cx.int(v, &p, "port", &wher) {
            match u16::try_from(n) {
                Ok(port) if port > 0 => pg.port = Some(port),
                _ => cx.err(
                    &p,
                    format!("invalid port {n} {wher}"),
                    Some("expected 1-65535".into()),
                ),
            }
        }
    }
    Some(pg)
}
