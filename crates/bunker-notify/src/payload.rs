//! Webhook payload shapes, one per [`WebhookFormat`]. Pure functions, so
//! the shapes are tested without a network.

use crate::notice::Notice;
use bunker_policy::{EventKind, Priority, WebhookFormat};
use serde_json::{json, Value};

/// Version of the plain JSON document; bumped only on incompatible changes.
pub const JSON_PAYLOAD_VERSION: u32 = 1;

/// Discord rejects `content` longer than this.
const DISCORD_MAX: usize = 2000;

/// What to POST: the body, its content type and extra headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// The request body.
    pub body: String,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Headers the format needs (ntfy's `Title`, `Priority`, `Tags`).
    pub headers: Vec<(&'static str, String)>,
}

/// The payload of `notice` in `format`; `host` is the sending machine.
pub fn payload(format: WebhookFormat, notice: &Notice, host: &str) -> Payload {
    let json_body = |v: Value| Payload {
        body: v.to_string(),
        content_type: "application/json",
        headers: Vec::new(),
    };
    match format {
        WebhookFormat::Json => json_body(plain_json(notice, host)),
        WebhookFormat::Slack => json_body(json!({
            "text": format!("*{}*\n{}\n_{}_", notice.title, notice.message, footer(notice, host)),
        })),
        WebhookFormat::Discord => json_body(json!({
            "content": truncate(
                &format!("**{}**\n{}\n*{}*", notice.title, notice.message, footer(notice, host)),
                DISCORD_MAX,
            ),
        })),
        WebhookFormat::Gotify => json_body(json!({
            "title": notice.title,
            "message": format!("{}\n\n{}", notice.message, footer(notice, host)),
            "priority": gotify_priority(notice),
        })),
        WebhookFormat::Ntfy => Payload {
            body: format!("{}\n\n{}", notice.message, footer(notice, host)),
            content_type: "text/plain; charset=utf-8",
            headers: vec![
                ("Title", notice.title.clone()),
                ("Priority", ntfy_priority(notice).to_string()),
                ("Tags", ntfy_tags(notice)),
            ],
        },
    }
}

/// bunker's own JSON document (format `json`); see docs/notifications.md.
pub fn plain_json(notice: &Notice, host: &str) -> Value {
    json!({
        "version": JSON_PAYLOAD_VERSION,
        "event": notice.kind.as_str(),
        "title": notice.title,
        "message": notice.message,
        "item": notice.item,
        "repository": notice.target,
        "priority": notice.priority.map(|p| p.as_str()),
        "host": host,
        "time": notice.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    })
}

/// `host · time`, the last line of chat messages.
fn footer(notice: &Notice, host: &str) -> String {
    format!(
        "bunker on {host}, {}",
        notice.time.format("%Y-%m-%d %H:%M:%S UTC")
    )
}

/// At most `max` characters, with `…` when cut.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// ntfy priority 1 (min) to 5 (max): failures of critical items are 5,
/// other failures 4, good news 3, start/success 2.
fn ntfy_priority(notice: &Notice) -> u8 {
    match notice.kind {
        _ if notice.is_bad() && notice.priority == Some(Priority::Critical) => 5,
        _ if notice.is_bad() => 4,
        EventKind::Start | EventKind::Success => 2,
        _ => 3,
    }
}

/// ntfy tags: an emoji short code first (ntfy shows it), then the event.
fn ntfy_tags(notice: &Notice) -> String {
    let emoji = match notice.kind {
        EventKind::Failure | EventKind::CheckFailed | EventKind::DrillFailed => "rotating_light",
        EventKind::RpoBreach => "hourglass",
        EventKind::Recovery | EventKind::RpoRecovered | EventKind::Success => "white_check_mark",
        EventKind::Warning => "warning",
        EventKind::Start => "arrow_forward",
        EventKind::Test => "bell",
    };
    format!("{emoji},bunker,{}", notice.kind.as_str())
}

/// Gotify priority 0-10: failures 8 (alerting on phones), recoveries 5,
/// the rest 2.
fn gotify_priority(notice: &Notice) -> u8 {
    match notice.kind {
        _ if notice.is_bad() => 8,
        EventKind::Recovery | EventKind::RpoRecovered | EventKind::Warning | EventKind::Test => 5,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn failure() -> Notice {
        let t = chrono::Utc.with_ymd_and_hms(2026, 12, 1, 3, 0, 0).unwrap();
        Notice::failure("db", Priority::Critical, "disk full", t).with_target("main")
    }

    #[test]
    fn plain_json_document_has_every_field() {
        let v: Value =
            serde_json::from_str(&payload(WebhookFormat::Json, &failure(), "h1").body).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["event"], "failure");
        assert_eq!(v["item"], "db");
        assert_eq!(v["repository"], "main");
        assert_eq!(v["priority"], "critical");
        assert_eq!(v["host"], "h1");
        assert_eq!(v["time"], "2026-12-01T03:00:00Z");
        assert_eq!(v["title"], "bunker: backup of db failed");
        assert!(v["message"].as_str().unwrap().contains("disk full"));
    }

    #[test]
    fn chat_formats_use_their_field_names() {
        let slack: Value =
            serde_json::from_str(&payload(WebhookFormat::Slack, &failure(), "h").body).unwrap();
        assert!(slack["text"].as_str().unwrap().contains("disk full"));
        let discord: Value =
            serde_json::from_str(&payload(WebhookFormat::Discord, &failure(), "h").body).unwrap();
        assert!(discord["content"].as_str().unwrap().starts_with("**bunker"));
        let gotify: Value =
            serde_json::from_str(&payload(WebhookFormat::Gotify, &failure(), "h").body).unwrap();
        assert_eq!(gotify["title"], "bunker: backup of db failed");
        assert_eq!(gotify["priority"], 8);
    }

    #[test]
    fn ntfy_is_plain_text_with_headers() {
        let p = payload(WebhookFormat::Ntfy, &failure(), "h");
        assert!(p.content_type.starts_with("text/plain"));
        assert!(p.body.contains("disk full"));
        assert!(p.headers.contains(&("Priority", "5".to_string())));
        assert!(p
            .headers
            .contains(&("Title", "bunker: backup of db failed".to_string())));
        assert!(p
            .headers
            .contains(&("Tags", "rotating_light,bunker,failure".to_string())));
    }

    #[test]
    fn discord_content_is_cut_to_its_limit() {
        let mut n = failure();
        n.message = "x".repeat(5000);
        let v: Value =
            serde_json::from_str(&payload(WebhookFormat::Discord, &n, "h").body).unwrap();
        assert_eq!(v["content"].as_str().unwrap().chars().count(), DISCORD_MAX);
    }
}
