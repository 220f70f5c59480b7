//! Notification targets (`notifications:` in the policy).
//!
//! Each target has a name, one kind of delivery ([`NotifyKind`]: a webhook,
//! healthchecks-style ping URLs, or email over SMTP) and a [`NotifyFilter`]
//! saying which events it receives. Delivering is the `bunker-notify`
//! crate's; this module only holds the validated configuration.
//!
//! Secrets (the SMTP password, header values, tokens in URLs) never appear
//! in `Debug` or `Display`: URLs are shown through [`redact_url`].

use crate::model::{PasswordSource, Priority};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Per-attempt time limit when a target sets no `timeout`.
pub const DEFAULT_NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);
/// Total time for all attempts of one delivery when a target sets no `retry_for`.
pub const DEFAULT_NOTIFY_RETRY_FOR: Duration = Duration::from_secs(30);

/// One notification target of the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyTarget {
    /// Its name (the key under `notifications`).
    pub name: String,
    /// How notices are delivered.
    pub kind: NotifyKind,
    /// Which notices it receives.
    pub filter: NotifyFilter,
    /// Time limit of one delivery attempt (`timeout`, default 10s).
    pub timeout: Duration,
    /// Total time for one delivery including retries (`retry_for`, default
    /// 30s); no new attempt starts after it.
    pub retry_for: Duration,
    /// PEM file of extra CA certificates trusted for this target's HTTPS or
    /// SMTP TLS (`ca_file`; for receivers with a private CA), besides the
    /// built-in Mozilla roots. Resolved against the policy file's directory.
    pub ca_file: Option<PathBuf>,
}

impl NotifyTarget {
    /// A target with the default filter, timeout and retry window.
    pub fn new(name: impl Into<String>, kind: NotifyKind) -> NotifyTarget {
        NotifyTarget {
            name: name.into(),
            kind,
            filter: NotifyFilter::default(),
            timeout: DEFAULT_NOTIFY_TIMEOUT,
            retry_for: DEFAULT_NOTIFY_RETRY_FOR,
            ca_file: None,
        }
    }

    /// Whether this target receives `event` about `item` of `priority`
    /// (see [`NotifyFilter::matches`]).
    pub fn accepts(
        &self,
        event: EventKind,
        item: Option<&str>,
        priority: Option<Priority>,
    ) -> bool {
        self.filter.matches(&self.kind, event, item, priority)
    }
}

impl fmt::Display for NotifyTarget {
    /// One line, secrets redacted: `ops (webhook slack https://hooks.slack.com/services/***) events failure, recovery`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.kind)?;
        let events: Vec<&str> = self
            .filter
            .effective_events(&self.kind)
            .iter()
            .map(|e| e.as_str())
            .collect();
        write!(f, ", events {}", events.join(", "))?;
        if !self.filter.items.is_empty() {
            write!(f, ", items {}", self.filter.items.join(", "))?;
        }
        if !self.filter.priorities.is_empty() {
            let p: Vec<&str> = self.filter.priorities.iter().map(|p| p.as_str()).collect();
            write!(f, ", priorities {}", p.join(", "))?;
        }
        if let Some(ca) = &self.ca_file {
            write!(f, ", ca_file {}", ca.display())?;
        }
        Ok(())
    }
}

/// How a target delivers.
#[derive(Clone, PartialEq, Eq)]
pub enum NotifyKind {
    /// An HTTP POST to `url` (`webhook:`).
    Webhook {
        /// Where to POST.
        url: String,
        /// The payload shape.
        format: WebhookFormat,
        /// Extra request headers (values are secret: never printed).
        headers: BTreeMap<String, String>,
    },
    /// Healthchecks-style ping URLs per item (`healthchecks:`): `URL/start`,
    /// `URL` (success), `URL/fail`, `URL/log`.
    Healthchecks {
        /// The ping URL for every item; `{item}` is replaced by the item
        /// name (or, for repository events, the repository name).
        url: Option<String>,
        /// Ping URLs of single items (item name → URL), preferred over `url`.
        urls: BTreeMap<String, String>,
    },
    /// A plain-text email over SMTP (`email:`).
    Email(EmailConfig),
}

impl NotifyKind {
    /// The policy spelling of the kind: `webhook`, `healthchecks`, `email`.
    pub fn as_str(&self) -> &'static str {
        match self {
            NotifyKind::Webhook { .. } => "webhook",
            NotifyKind::Healthchecks { .. } => "healthchecks",
            NotifyKind::Email(_) => "email",
        }
    }
}

impl fmt::Debug for NotifyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotifyKind::Webhook {
                url,
                format,
                headers,
            } => {
                let headers: BTreeMap<&str, &str> =
                    headers.keys().map(|k| (k.as_str(), "***")).collect();
                f.debug_struct("Webhook")
                    .field("url", &redact_url(url))
                    .field("format", format)
                    .field("headers", &headers)
                    .finish()
            }
            NotifyKind::Healthchecks { url, urls } => {
                let urls: BTreeMap<&str, String> = urls
                    .iter()
                    .map(|(k, v)| (k.as_str(), redact_url(v)))
                    .collect();
                f.debug_struct("Healthchecks")
                    .field("url", &url.as_deref().map(redact_url))
                    .field("urls", &urls)
                    .finish()
            }
            NotifyKind::Email(e) => f.debug_tuple("Email").field(e).finish(),
        }
    }
}

impl fmt::Display for NotifyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotifyKind::Webhook { url, format, .. } => {
                write!(f, "webhook {} {}", format.as_str(), redact_url(url))
            }
            NotifyKind::Healthchecks { url, urls } => {
                f.write_str("healthchecks")?;
                if let Some(u) = url {
                    write!(f, " {}", redact_url(u))?;
                }
                if !urls.is_empty() {
                    let names: Vec<&str> = urls.keys().map(String::as_str).collect();
                    write!(f, " (own URLs for {})", names.join(", "))?;
                }
                Ok(())
            }
            NotifyKind::Email(e) => write!(
                f,
                "email {}:{} {} to {}",
                e.host,
                e.port(),
                e.tls.as_str(),
                e.to.join(", ")
            ),
        }
    }
}

/// The payload shape of a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// bunker's own JSON document (the default).
    #[default]
    Json,
    /// Slack incoming webhook: `{"text": ...}`.
    Slack,
    /// Discord webhook: `{"content": ...}`.
    Discord,
    /// ntfy: a plain-text body with `Title`, `Priority` and `Tags` headers.
    Ntfy,
    /// Gotify: `{"title", "message", "priority"}`.
    Gotify,
}

impl WebhookFormat {
    /// Every format, in documentation order.
    pub const ALL: [WebhookFormat; 5] = [
        WebhookFormat::Json,
        WebhookFormat::Slack,
        WebhookFormat::Discord,
        WebhookFormat::Ntfy,
        WebhookFormat::Gotify,
    ];

    /// The policy spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            WebhookFormat::Json => "json",
            WebhookFormat::Slack => "slack",
            WebhookFormat::Discord => "discord",
            WebhookFormat::Ntfy => "ntfy",
            WebhookFormat::Gotify => "gotify",
        }
    }

    /// Parses the policy spelling.
    pub fn parse(s: &str) -> Option<WebhookFormat> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

/// How an SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (required), port 587 by default.
    #[default]
    StartTls,
    /// TLS from the first byte (SMTPS), port 465 by default.
    Tls,
    /// No encryption, port 25 by default; only sensible on loopback.
    None,
}

impl SmtpTls {
    /// The policy spelling: `starttls`, `tls`, `none`.
    pub fn as_str(&self) -> &'static str {
        match self {
            SmtpTls::StartTls => "starttls",
            SmtpTls::Tls => "tls",
            SmtpTls::None => "none",
        }
    }

    /// The usual port for this mode.
    pub fn default_port(&self) -> u16 {
        match self {
            SmtpTls::StartTls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        }
    }
}

/// Settings of an `email:` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailConfig {
    /// SMTP server host name.
    pub host: String,
    /// SMTP port; `None` = the default of [`EmailConfig::tls`].
    pub port: Option<u16>,
    /// Connection security.
    pub tls: SmtpTls,
    /// User name for SMTP authentication (none = no authentication).
    pub user: Option<String>,
    /// Where the SMTP password comes from (`password_file`, `password_env`,
    /// `password_command`, `password`); never printed.
    pub password: Option<PasswordSource>,
    /// The sender address (`bunker <bunker@example.com>` or a bare address).
    pub from: String,
    /// Recipients (at least one).
    pub to: Vec<String>,
}

impl EmailConfig {
    /// The port to connect to.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or_else(|| self.tls.default_port())
    }
}

/// Something that happened, which a notice is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A job started.
    Start,
    /// A job succeeded.
    Success,
    /// A job failed (once per streak of failures).
    Failure,
    /// The first success after failures.
    Recovery,
    /// The newest good snapshot became older than the item's `rpo`.
    RpoBreach,
    /// An RPO breach cleared.
    RpoRecovered,
    /// A repository check failed (once per streak).
    CheckFailed,
    /// A restore drill failed or exceeded the item's `rto` (once per streak).
    DrillFailed,
    /// Something worth knowing that is not a failure.
    Warning,
    /// A test message (`bunker notify test`); every target accepts it.
    Test,
}

impl EventKind {
    /// Every event, in documentation order.
    pub const ALL: [EventKind; 10] = [
        EventKind::Start,
        EventKind::Success,
        EventKind::Failure,
        EventKind::Recovery,
        EventKind::RpoBreach,
        EventKind::RpoRecovered,
        EventKind::CheckFailed,
        EventKind::DrillFailed,
        EventKind::Warning,
        EventKind::Test,
    ];

    /// What a target receives when its `events` list is empty.
    pub const DEFAULT: [EventKind; 6] = [
        EventKind::Failure,
        EventKind::Recovery,
        EventKind::RpoBreach,
        EventKind::RpoRecovered,
        EventKind::CheckFailed,
        EventKind::DrillFailed,
    ];

    /// What a healthchecks target receives when its `events` list is empty.
    pub const HEALTHCHECKS_DEFAULT: [EventKind; 3] =
        [EventKind::Start, EventKind::Success, EventKind::Failure];

    /// The policy spelling (snake case).
    pub fn as_str(&self) -> &'static str {
        match self {
            EventKind::Start => "start",
            EventKind::Success => "success",
            EventKind::Failure => "failure",
            EventKind::Recovery => "recovery",
            EventKind::RpoBreach => "rpo_breach",
            EventKind::RpoRecovered => "rpo_recovered",
            EventKind::CheckFailed => "check_failed",
            EventKind::DrillFailed => "drill_failed",
            EventKind::Warning => "warning",
            EventKind::Test => "test",
        }
    }

    /// Parses the policy spelling.
    pub fn parse(s: &str) -> Option<EventKind> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which notices a target receives. Every non-empty list must match.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NotifyFilter {
    /// Events; empty = [`EventKind::DEFAULT`] (healthchecks targets:
    /// [`EventKind::HEALTHCHECKS_DEFAULT`]).
    pub events: Vec<EventKind>,
    /// Item names; empty = every item. Notices about no item (repository
    /// checks, tests) pass.
    pub items: Vec<String>,
    /// Item priorities; empty = every priority. Notices without a priority
    /// pass.
    pub priorities: Vec<Priority>,
}

impl NotifyFilter {
    /// The events this filter lets through for a target of `kind`.
    pub fn effective_events(&self, kind: &NotifyKind) -> Vec<EventKind> {
        if !self.events.is_empty() {
            self.events.clone()
        } else if matches!(kind, NotifyKind::Healthchecks { .. }) {
            EventKind::HEALTHCHECKS_DEFAULT.to_vec()
        } else {
            EventKind::DEFAULT.to_vec()
        }
    }

    /// Whether a notice passes: [`EventKind::Test`] always does; otherwise
    /// the event must be among [`NotifyFilter::effective_events`], the
    /// item (if any) among `items` and the priority (if any) among
    /// `priorities`, each list only when non-empty.
    pub fn matches(
        &self,
        kind: &NotifyKind,
        event: EventKind,
        item: Option<&str>,
        priority: Option<Priority>,
    ) -> bool {
        if event == EventKind::Test {
            return true;
        }
        if !self.effective_events(kind).contains(&event) {
            return false;
        }
        if let Some(item) = item {
            if !self.items.is_empty() && !self.items.iter().any(|i| i == item) {
                return false;
            }
        }
        if let Some(p) = priority {
            if !self.priorities.is_empty() && !self.priorities.contains(&p) {
                return false;
            }
        }
        true
    }
}

/// A URL as it may be shown: user info and query values replaced by `***`,
/// and every path segment that could be a token (one containing a digit,
/// or longer than 20 characters) too. Text that is not a URL is shown as
/// `***` whole.
///
/// `https://u:pw@hooks.slack.com/services/T0/B0/XyZ?token=a` →
/// `https://***@hooks.slack.com/services/***/***/***?token=***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "***".to_string();
    };
    let (rest, fragment) = match rest.split_once('#') {
        Some((r, _)) => (r, true),
        None => (rest, false),
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let host = match authority.rsplit_once('@') {
        Some((_, h)) => format!("***@{h}"),
        None => authority.to_string(),
    };
    let mut out = format!("{scheme}://{host}");
    for seg in path.split('/').skip(1) {
        out.push('/');
        let secretive = seg.len() > 20 || seg.chars().any(|c| c.is_ascii_digit());
        out.push_str(if secretive && seg != "{item}" {
            "***"
        } else {
            seg
        });
    }
    if let Some(q) = query {
        out.push('?');
        let parts: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) => format!("{k}=***"),
                None => "***".to_string(),
            })
            .collect();
        out.push_str(&parts.join("&"));
    }
    if fragment {
        out.push_str("#***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_url_hides_userinfo_query_and_token_segments() {
        assert_eq!(
            redact_url("https://u:pw@hooks.slack.com/services/T0/B0/XyZ?token=a&x"),
            "https://***@hooks.slack.com/services/***/***/XyZ?token=***&***"
        );
        assert_eq!(
            redact_url("https://hc-ping.com/0b3c7a2e-1111-2222-3333-444455556666/start"),
            "https://hc-ping.com/***/start"
        );
        assert_eq!(
            redact_url("http://127.0.0.1:8080/hook/{item}"),
            "http://127.0.0.1:8080/hook/{item}"
        );
        assert_eq!(redact_url("not a url with secret"), "***");
    }

    #[test]
    fn default_filters_follow_the_kind() {
        let web = NotifyKind::Webhook {
            url: "http://h/x".into(),
            format: WebhookFormat::Json,
            headers: BTreeMap::new(),
        };
        let hc = NotifyKind::Healthchecks {
            url: Some("http://h/{item}".into()),
            urls: BTreeMap::new(),
        };
        let f = NotifyFilter::default();
        assert!(f.matches(&web, EventKind::Failure, Some("a"), None));
        assert!(!f.matches(&web, EventKind::Success, Some("a"), None));
        assert!(!f.matches(&web, EventKind::Start, Some("a"), None));
        assert!(f.matches(&hc, EventKind::Start, Some("a"), None));
        assert!(f.matches(&hc, EventKind::Success, Some("a"), None));
        assert!(!f.matches(&hc, EventKind::RpoBreach, Some("a"), None));
        assert!(f.matches(&web, EventKind::Test, None, None));
    }

    #[test]
    fn item_and_priority_lists_narrow_the_filter() {
        let web = NotifyKind::Webhook {
            url: "http://h/x".into(),
            format: WebhookFormat::Json,
            headers: BTreeMap::new(),
        };
        let f = NotifyFilter {
            events: vec![EventKind::Failure],
            items: vec!["db".into()],
            priorities: vec![Priority::Critical],
        };
        assert!(f.matches(
            &web,
            EventKind::Failure,
            Some("db"),
            Some(Priority::Critical)
        ));
        assert!(!f.matches(
            &web,
            EventKind::Failure,
            Some("app"),
            Some(Priority::Critical)
        ));
        assert!(!f.matches(&web, EventKind::Failure, Some("db"), Some(Priority::Low)));
        assert!(!f.matches(
            &web,
            EventKind::Recovery,
            Some("db"),
            Some(Priority::Critical)
        ));
        // Repository events carry no item and no priority.
        let f = NotifyFilter {
            events: vec![EventKind::CheckFailed],
            ..f
        };
        assert!(f.matches(&web, EventKind::CheckFailed, None, None));
    }

    #[test]
    fn event_kinds_serialise_in_snake_case() {
        assert_eq!(
            serde_yaml::to_string(&EventKind::RpoBreach).unwrap().trim(),
            "rpo_breach"
        );
        for e in EventKind::ALL {
            assert_eq!(EventKind::parse(e.as_str()), Some(e));
            let json: String = serde_yaml::to_string(&e).unwrap();
            assert_eq!(json.trim(), e.as_str());
        }
    }
}
