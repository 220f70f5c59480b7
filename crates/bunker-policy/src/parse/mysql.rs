//! The `mysql:` section of an item.

use super::{key, Ctx};
use crate::locate::Seg;
use crate::mysql::{MysqlConfig, MysqlMode};
use serde_yaml::Value;

const MYSQL_KEYS: &[&str] = &[
    "socket",
    "host",
    "port",
    "user",
    "password_env",
    "defaults_file",
    "mode",
    "databases",
    "timeout",
    "binlog",
];
const BINLOG_KEYS: &[&str] = &["dir", "pitr"];

/// Parse an item's `mysql:` mapping; `None` after diagnostics when it is
/// not a mapping.
pub(crate) fn mysql(cx: &mut Ctx<'_>, v: &Value, path: &[Seg], item: &str) -> Option<MysqlConfig> {
    let wher = format!("in mysql settings of item \"{item}\"");
    let m = cx.mapping(v, path, "mysql", &format!("in item \"{item}\""))?;
    cx.check_keys(m, path, MYSQL_KEYS, &wher);
    let mut my = MysqlConfig::default();
    let text =
        |cx: &mut Ctx<'_>, k: &str| m.get(k).and_then(|v| cx.string(v, &key(path, k), k, &wher));
    my.socket = text(cx, "socket").map(|s| cx.resolve(&s));
    my.host = text(cx, "host");
    my.user = text(cx, "user");
    my.password_env = text(cx, "password_env");
    my.defaults_file = text(cx, "defaults_file").map(|s| cx.resolve(&s));
    if let Some(mode) = text(cx, "mode") {
        match mode.as_str() {
            "logical" => my.mode = MysqlMode::Logical,
            "physical" => my.mode = MysqlMode::Physical,
            other => cx.err(
                &key(path, "mode"),
                format!("invalid mode \"{other}\" {wher}"),
                Some("expected \"logical\" or \"physical\"".into()),
            ),
        }
    }
    if let Some(v) = m.get("databases") {
        my.databases = cx.strings(v, &key(path, "databases"), "databases", &wher);
    }
    if let Some(v) = m.get("timeout") {
        my.timeout = cx.duration(v, &key(path, "timeout"), "timeout", &wher);
    }
    if let Some(v) = m.get("port") {
        let p = key(path, "port");
        if let Some(n) = cx.int(v, &p, "port", &wher) {
            match u16::try_from(n) {
                Ok(port) if port > 0 => my.port = Some(port),
                _ => cx.err(
                    &p,
                    format!("invalid port {n} {wher}"),
                    Some("expected 1-65535".into()),
                ),
            }
        }
    }
    if let Some(v) = m.get("binlog") {
        let p = key(path, "binlog");
        let w = format!("in mysql.binlog settings of item \"{item}\"");
        if let Some(bm) = cx.mapping(v, &p, "binlog", &wher) {
            cx.check_keys(bm, &p, BINLOG_KEYS, &w);
            if let Some(v) = bm.get("dir") {
                my.binlog.dir = cx
                    .string(v, &key(&p, "dir"), "dir", &w)
                    .map(|s| cx.resolve(&s));
            }
            if let Some(v) = bm.get("pitr") {
                my.binlog.pitr = cx.duration(v, &key(&p, "pitr"), "pitr", &w);
            }
        }
        if my.mode != MysqlMode::Physical {
            cx.err_key(
                &p,
                format!("\"binlog\" {wher} only applies to mode: physical"),
                Some("set \"mode: physical\" or remove it".into()),
            );
        }
    }
    Some(my)
}
