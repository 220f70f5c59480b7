//! The `notifications` section: named targets, each with exactly one of
//! `webhook:`, `healthchecks:` or `email:` and optional filters.

use super::{index, key, scalar_text, Ctx};
use crate::locate::{NodePath, Seg};
use crate::model::{PasswordSource, Secret};
use crate::notifications::{
    EmailConfig, EventKind, NotifyFilter, NotifyKind, NotifyTarget, SmtpTls, WebhookFormat,
    DEFAULT_NOTIFY_RETRY_FOR, DEFAULT_NOTIFY_TIMEOUT,
};
use crate::validate::is_valid_item_name;
use serde_yaml::{Mapping, Value};
use std::collections::BTreeMap;

const TARGET_KEYS: &[&str] = &[
    "webhook",
    "healthchecks",
    "email",
    "events",
    "items",
    "priorities",
    "timeout",
    "retry_for",
    "ca_file",
];
const KIND_KEYS: &[&str] = &["webhook", "healthchecks", "email"];
const WEBHOOK_KEYS: &[&str] = &["url", "format", "headers"];
const HEALTHCHECKS_KEYS: &[&str] = &["url", "urls"];
const EMAIL_KEYS: &[&str] = &[
    "host",
    "port",
    "tls",
    "user",
    "password_file",
    "password_env",
    "password_command",
    "password",
    "from",
    "to",
];
const PASSWORD_KEYS: &[&str] = &[
    "password_file",
    "password_env",
    "password_command",
    "password",
];

/// Parses `notifications:`; `items` are the policy's item names, for the
/// `items` filters.
pub(super) fn parse_notifications(
    cx: &mut Ctx<'_>,
    v: &Value,
    items: &[String],
) -> Vec<NotifyTarget> {
    let path: NodePath = vec![Seg::Key("notifications".into())];
    let mut out = Vec::new();
    let Some(m) = cx.mapping(v, &path, "notifications", "at top level") else {
        return out;
    };
    for (k, v) in m {
        let name = scalar_text(k).unwrap_or_default();
        let tpath = key(&path, &name);
        if !is_valid_item_name(&name) {
            cx.err_key(
                &tpath,
                format!("invalid notification target name \"{name}\""),
                Some("use letters, digits, \".\", \"_\" and \"-\"".into()),
            );
        }
        if let Some(t) = parse_target(cx, &name, v, &tpath, items) {
            out.push(t);
        }
    }
    out
}

fn parse_target(
    cx: &mut Ctx<'_>,
    name: &str,
    v: &Value,
    path: &[Seg],
    items: &[String],
) -> Option<NotifyTarget> {
    let wher = format!("in notification target \"{name}\"");
    let Some(m) = cx.mapping(v, path, name, "in \"notifications\"") else {
        if v.is_null() {
            cx.err_key(
                path,
                format!("notification target \"{name}\" has no settings"),
                Some("give it one of \"webhook\", \"healthchecks\" or \"email\"".into()),
            );
        }
        return None;
    };
    cx.check_keys(m, path, TARGET_KEYS, &wher);
    let present: Vec<&str> = KIND_KEYS
        .iter()
        .copied()
        .filter(|k| m.contains_key(*k))
        .collect();
    let kind = match present.as_slice() {
        [] => {
            cx.err_key(
                path,
                format!("notification target \"{name}\" has no kind"),
                Some("give it exactly one of \"webhook\", \"healthchecks\" or \"email\"".into()),
            );
            None
        }
        ["webhook"] => webhook(cx, &m["webhook"], &key(path, "webhook"), name),
        ["healthchecks"] => healthchecks(cx, &m["healthchecks"], &key(path, "healthchecks"), name),
        [_email] => email(cx, &m["email"], &key(path, "email"), name),
        [_, second, ..] => {
            cx.err_key(
                &key(path, second),
                format!(
                    "notification target \"{name}\" has {} kinds ({}); exactly one is allowed",
                    present.len(),
                    present.join(", ")
                ),
                None,
            );
            None
        }
    };

    let mut filter = NotifyFilter::default();
    if let Some(v) = m.get("events") {
        let p = key(path, "events");
        for (i, s) in list(cx, v, &p, "events", &wher) {
            match EventKind::parse(&s) {
                Some(e) => filter.events.push(e),
                None => {
                    let all: Vec<&str> = EventKind::ALL.iter().map(|e| e.as_str()).collect();
                    cx.err(
                        &i,
                        format!("unknown event \"{s}\" {wher}"),
                        Some(format!("expected one of {}", all.join(", "))),
                    );
                }
            }
        }
    }
    if let Some(v) = m.get("items") {
        let p = key(path, "items");
        for (i, s) in list(cx, v, &p, "items", &wher) {
            if !items.contains(&s) {
                cx.err(
                    &i,
                    format!("notification target \"{name}\" names unknown item \"{s}\""),
                    Some("list items defined under \"items\"".into()),
                );
            }
            filter.items.push(s);
        }
    }
    if let Some(v) = m.get("priorities") {
        let p = key(path, "priorities");
        for (i, s) in list(cx, v, &p, "priorities", &wher) {
            if let Some(pr) = cx.one_of(&s, &i, "priority", &wher, &super::choice::PRIORITIES) {
                filter.priorities.push(pr);
            }
        }
    }
    let timeout = m
        .get("timeout")
        .and_then(|v| cx.duration(v, &key(path, "timeout"), "timeout", &wher))
        .unwrap_or(DEFAULT_NOTIFY_TIMEOUT);
    let retry_for = m
        .get("retry_for")
        .and_then(|v| cx.duration(v, &key(path, "retry_for"), "retry_for", &wher))
        .unwrap_or(DEFAULT_NOTIFY_RETRY_FOR);
    let ca_file = m
        .get("ca_file")
        .and_then(|v| cx.string(v, &key(path, "ca_file"), "ca_file", &wher))
        .map(|s| cx.resolve(&s));
    Some(NotifyTarget {
        name: name.to_string(),
        kind: kind?,
        filter,
        timeout,
        retry_for,
        ca_file,
    })
}

/// The strings of a list (or a single string) with the path of each.
fn list(
    cx: &mut Ctx<'_>,
    v: &Value,
    path: &[Seg],
    field: &str,
    wher: &str,
) -> Vec<(NodePath, String)> {
    match v {
        Value::Sequence(seq) => seq
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                let p = index(path, i);
                cx.string(e, &p, field, wher).map(|s| (p, s))
            })
            .collect(),
        other => cx
            .string(other, path, field, wher)
            .map(|s| (path.to_vec(), s))
            .into_iter()
            .collect(),
    }
}

/// A required string under `field` of `m`.
fn required(
    cx: &mut Ctx<'_>,
    m: &Mapping,
    path: &[Seg],
    field: &str,
    wher: &str,
) -> Option<String> {
    match m.get(field) {
        Some(v) => cx.string(v, &key(path, field), field, wher),
        None => {
            cx.err_key(path, format!("\"{field}\" is required {wher}"), None);
            None
        }
    }
}

/// Checks that `url` is an absolute http(s) URL (`{item}` allowed).
fn check_url(cx: &mut Ctx<'_>, url: &str, path: &[Seg], field: &str, wher: &str) -> bool {
    let probe = url.replace("{item}", "item");
    let problem = match url::Url::parse(&probe) {
        Ok(u) if !matches!(u.scheme(), "http" | "https") => {
            Some(format!("scheme \"{}\" is not http or https", u.scheme()))
        }
        Ok(u) if u.host_str().is_none_or(str::is_empty) => Some("it has no host".to_string()),
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
    };
    match problem {
        None => true,
        Some(why) => {
            // The URL itself may carry a token: it is not repeated.
            cx.err(
                path,
                format!("invalid URL for \"{field}\" {wher}: {why}"),
                Some("expected http://HOST/PATH or https://HOST/PATH".into()),
            );
            false
        }
    }
}

fn webhook(cx: &mut Ctx<'_>, v: &Value, path: &[Seg], name: &str) -> Option<NotifyKind> {
    let wher = format!("in webhook of notification target \"{name}\"");
    let m = cx.mapping(v, path, "webhook", &wher)?;
    cx.check_keys(m, path, WEBHOOK_KEYS, &wher);
    let url = required(cx, m, path, "url", &wher);
    let url_ok = url
        .as_deref()
        .is_some_and(|u| check_url(cx, u, &key(path, "url"), "url", &wher));
    let mut format = WebhookFormat::Json;
    if let Some(v) = m.get("format") {
        let p = key(path, "format");
        if let Some(s) = cx.string(v, &p, "format", &wher) {
            match WebhookFormat::parse(&s) {
                Some(f) => format = f,
                None => {
                    let all: Vec<&str> = WebhookFormat::ALL.iter().map(|f| f.as_str()).collect();
                    cx.err(
                        &p,
                        format!("invalid format \"{s}\" {wher}"),
                        Some(format!("expected one of {}", all.join(", "))),
                    );
                }
            }
        }
    }
    let mut headers = BTreeMap::new();
    if let Some(v) = m.get("headers") {
        let p = key(path, "headers");
        if let Some(hm) = cx.mapping(v, &p, "headers", &wher) {
            for (k, v) in hm {
                let hk = scalar_text(k).unwrap_or_default();
                let valid_name = !hk.is_empty()
                    && hk
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b));
                if !valid_name {
                    cx.err_key(
                        &key(&p, &hk),
                        format!("invalid header name \"{hk}\" {wher}"),
                        None,
                    );
                    continue;
                }
                if let Some(s) = cx.string(v, &key(&p, &hk), &hk, &wher) {
                    if s.contains(['\r', '\n']) {
                        cx.err(
                            &key(&p, &hk),
                            format!("header \"{hk}\" {wher} contains a line break"),
                            None,
                        );
                    }
                    headers.insert(hk, s);
                }
            }
        }
    }
    if !url_ok {
        return None;
    }
    Some(NotifyKind::Webhook {
        url: url?,
        format,
        headers,
    })
}

fn healthchecks(cx: &mut Ctx<'_>, v: &Value, path: &[Seg], name: &str) -> Option<NotifyKind> {
    let wher = format!("in healthchecks of notification target \"{name}\"");
    let m = cx.mapping(v, path, "healthchecks", &wher)?;
    cx.check_keys(m, path, HEALTHCHECKS_KEYS, &wher);
    let mut ok = true;
    let url = match m.get("url") {
        Some(v) => {
            let p = key(path, "url");
            let u = cx.string(v, &p, "url", &wher);
            ok &= u
                .as_deref()
                .is_some_and(|u| check_url(cx, u, &p, "url", &wher));
            u
        }
        None => None,
    };
    let mut urls = BTreeMap::new();
    if let Some(v) = m.get("urls") {
        let p = key(path, "urls");
        if let Some(um) = cx.mapping(v, &p, "urls", &wher) {
            for (k, v) in um {
                let item = scalar_text(k).unwrap_or_default();
                let ip = key(&p, &item);
                if let Some(u) = cx.string(v, &ip, &item, &wher) {
                    ok &= check_url(cx, &u, &ip, &item, &wher);
                    urls.insert(item, u);
                }
            }
        }
    }
    if url.is_none() && urls.is_empty() && ok {
        cx.err_key(
            path,
            format!("\"url\" or \"urls\" is required {wher}"),
            Some("url: https://hc-ping.com/KEY/{item}, or urls: {ITEM: URL}".into()),
        );
        return None;
    }
    ok.then_some(NotifyKind::Healthchecks { url, urls })
}

fn email(cx: &mut Ctx<'_>, v: &Value, path: &[Seg], name: &str) -> Option<NotifyKind> {
    let wher = format!("in email of notification target \"{name}\"");
    let m = cx.mapping(v, path, "email", &wher)?;
    cx.check_keys(m, path, EMAIL_KEYS, &wher);
    let host = required(cx, m, path, "host", &wher);
    let port = m.get("port").and_then(|v| {
        let p = key(path, "port");
        let n = cx.int(v, &p, "port", &wher)?;
        match u16::try_from(n) {
            Ok(port) if port > 0 => Some(port),
            _ => {
                cx.err(&p, format!("port {n} {wher} is out of range 1-65535"), None);
                None
            }
        }
    });
    let tls = m
        .get("tls")
        .and_then(|v| {
            let choices = [
                ("starttls", SmtpTls::StartTls),
                ("tls", SmtpTls::Tls),
                ("none", SmtpTls::None),
            ];
            cx.choice(v, &key(path, "tls"), "tls", &wher, &choices)
        })
        .unwrap_or(SmtpTls::StartTls);
    let user = m
        .get("user")
        .and_then(|v| cx.string(v, &key(path, "user"), "user", &wher));
    let present: Vec<&str> = PASSWORD_KEYS
        .iter()
        .copied()
        .filter(|k| m.contains_key(*k))
        .collect();
    let mut password = None;
    match present.as_slice() {
        [] => {}
        [one] => {
            let p = key(path, one);
            if let Some(s) = cx.string(&m[*one], &p, one, &wher) {
                password = Some(match *one {
                    "password_file" => PasswordSource::File(cx.resolve(&s)),
                    "password_env" => PasswordSource::Env(s),
                    "password_command" => PasswordSource::Command(s),
                    _ => PasswordSource::Plain(Secret::new(s)),
                });
            }
            if user.is_none() {
                cx.err_key(
                    &p,
                    format!("a password is set {wher} but no \"user\""),
                    Some("add user: NAME for SMTP authentication".into()),
                );
            }
        }
        [_, second, ..] => cx.err_key(
            &key(path, second),
            format!(
                "{} password sources {wher} ({}); at most one is allowed",
                present.len(),
                present.join(", ")
            ),
            None,
        ),
    }
    let from = required(cx, m, path, "from", &wher);
    if let Some(f) = &from {
        check_address(cx, f, &key(path, "from"), "from", &wher);
    }
    let mut to = Vec::new();
    match m.get("to") {
        Some(v) => {
            let p = key(path, "to");
            for (i, s) in list(cx, v, &p, "to", &wher) {
                check_address(cx, &s, &i, "to", &wher);
                to.push(s);
            }
            if matches!(v, Value::Sequence(s) if s.is_empty()) {
                cx.err(&p, format!("\"to\" {wher} names no recipient"), None);
            }
        }
        None => cx.err_key(path, format!("\"to\" is required {wher}"), None),
    }
    Some(NotifyKind::Email(EmailConfig {
        host: host?,
        port,
        tls,
        user,
        password,
        from: from?,
        to,
    }))
}

/// A light check of `addr` or `Name <addr>`; the SMTP client parses fully.
fn check_address(cx: &mut Ctx<'_>, s: &str, path: &[Seg], field: &str, wher: &str) {
    let addr = match (s.rfind('<'), s.ends_with('>')) {
        (Some(i), true) => &s[i + 1..s.len() - 1],
        _ => s.trim(),
    };
    let ok = matches!(addr.split_once('@'), Some((l, d)) if !l.is_empty() && !d.is_empty())
        && !addr.contains(char::is_whitespace);
    if !ok {
        cx.err(
            path,
            format!("invalid email address \"{s}\" for \"{field}\" {wher}"),
            Some("expected user@example.com or \"Name <user@example.com>\"".into()),
        );
    }
}

#[cfg(test)]
#[path = "notify_tests.rs"]
mod tests;
