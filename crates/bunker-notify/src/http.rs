//! Webhook and healthchecks deliveries over HTTP(S) (reqwest's blocking
//! client with rustls).
//!
//! Invariant relied on: these functions run on a plain thread, never on an
//! async runtime's thread — the blocking client builds and drops its own
//! runtime, which panics there. [`crate::Notifier`] runs every delivery on
//! a thread of its own to guarantee it.

use crate::error::NotifyError;
use crate::notice::Notice;
use crate::payload::payload;
use bunker_policy::{redact_url, EventKind, NotifyKind, NotifyTarget};
use std::time::Duration;

/// How much of an error response body is kept for the message.
const BODY_SNIPPET: usize = 200;

/// One HTTP delivery attempt of `notice` to a webhook or healthchecks
/// target, bounded by `timeout`.
pub(crate) fn send(
    t: &NotifyTarget,
    notice: &Notice,
    host: &str,
    ca: &[reqwest::Certificate],
    timeout: Duration,
) -> Result<(), NotifyError> {
    let (url, body, content_type, headers): (String, String, &str, Vec<(String, String)>) =
        match &t.kind {
            NotifyKind::Webhook {
                url,
                format,
                headers,
            } => {
                let p = payload(*format, notice, host);
                let mut h: Vec<(String, String)> = p
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect();
                // The policy's headers come last: they may override (an
                // ntfy `Priority`, say).
                h.extend(headers.iter().map(|(k, v)| (k.clone(), v.clone())));
                (url.clone(), p.body, p.content_type, h)
            }
            NotifyKind::Healthchecks { .. } => {
                let url = ping_url(t, notice)?;
                let body = format!("{}\n\n{}", notice.title, notice.message);
                (url, body, "text/plain; charset=utf-8", Vec::new())
            }
            NotifyKind::Email(_) => {
                return Err(NotifyError::Config {
                    target: t.name.clone(),
                    reason: "an email target cannot be sent over HTTP".into(),
                })
            }
        };
    post(&t.name, &url, body, content_type, &headers, ca, timeout)
}

/// The certificates of a PEM file (a `ca_file`), checked once when the
/// notifier is built.
pub(crate) fn load_ca(target: &str, pem: &[u8]) -> Result<Vec<reqwest::Certificate>, NotifyError> {
    match reqwest::Certificate::from_pem_bundle(pem) {
        Ok(certs) if !certs.is_empty() => Ok(certs),
        Ok(_) => Err(NotifyError::Config {
            target: target.to_string(),
            reason: "its ca_file holds no PEM certificate".into(),
        }),
        Err(e) => Err(NotifyError::Config {
            target: target.to_string(),
            reason: format!("its ca_file is not PEM certificates: {}", root_cause(&e)),
        }),
    }
}

/// Checks that every header name and value can be sent (values are not
/// repeated in the error: they may be tokens).
pub(crate) fn check_headers(
    target: &str,
    headers: &std::collections::BTreeMap<String, String>,
) -> Result<(), NotifyError> {
    for (k, v) in headers {
        let ok = reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_ok()
            && reqwest::header::HeaderValue::from_bytes(v.as_bytes()).is_ok();
        if !ok {
            return Err(NotifyError::Config {
                target: target.to_string(),
                reason: format!("header \"{k}\" has a name or value HTTP does not allow"),
            });
        }
    }
    Ok(())
}

/// POSTs `body` to `url`; a status outside 2xx is an error.
fn post(
    target: &str,
    url: &str,
    body: String,
    content_type: &str,
    headers: &[(String, String)],
    ca: &[reqwest::Certificate],
    timeout: Duration,
) -> Result<(), NotifyError> {
    let shown = redact_url(url);
    let mut builder = reqwest::blocking::Client::builder();
    for c in ca {
        builder = builder.add_root_certificate(c.clone());
    }
    let client = builder
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("bunker/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| NotifyError::Config {
            target: target.to_string(),
            reason: format!("cannot set up an HTTP client: {}", root_cause(&e)),
        })?;
    let mut req = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body);
    for (k, v) in headers {
        let name = reqwest::header::HeaderName::from_bytes(k.as_bytes());
        let value = reqwest::header::HeaderValue::from_bytes(v.as_bytes());
        match (name, value) {
            (Ok(n), Ok(mut v)) => {
                v.set_sensitive(true);
                req = req.header(n, v);
            }
            // The value is not repeated: it may be a token.
            _ => {
                return Err(NotifyError::Config {
                    target: target.to_string(),
                    reason: format!("header \"{k}\" has a name or value HTTP does not allow"),
                })
            }
        }
    }
    let resp = req.send().map_err(|e| NotifyError::Transport {
        url: shown.clone(),
        reason: describe(&e, timeout),
        retryable: !is_invalid_data(&e),
    })?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let text = resp.text().unwrap_or_default();
    let mut body: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(BODY_SNIPPET)
        .collect();
    if text.len() > body.len() + 1 && body.chars().count() == BODY_SNIPPET {
        body.push('…');
    }
    Err(NotifyError::Http {
        url: shown,
        status: status.as_u16(),
        body,
    })
}

/// Whether an I/O error of kind `InvalidData` is among the causes: how
/// rustls reports a certificate it does not trust or a broken handshake,
/// which another attempt cannot fix.
pub(crate) fn is_invalid_data(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        match err.downcast_ref::<std::io::Error>() {
            Some(io) if io.kind() == std::io::ErrorKind::InvalidData => return true,
            // An I/O error's `source` skips the error it wraps (hyper wraps
            // rustls' InvalidData error in one of kind Other): look inside.
            Some(io) => {
                cur = match io.get_ref() {
                    Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
                    None => None,
                }
            }
            None => cur = err.source(),
        }
    }
    false
}

/// A reqwest error without its URL (which may carry a token).
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!(
            "no answer within {}",
            humantime::format_duration(Duration::from_millis(timeout.as_millis() as u64))
        );
    }
    let cause = root_cause(e);
    if e.is_connect() {
        format!("cannot connect: {cause}")
    } else {
        cause
    }
}

/// The innermost cause's text (e.g. "Connection refused (os error 111)").
/// reqwest's own text names the URL, which may carry a token: it is used
/// only when there is no cause, with the URL redacted.
fn root_cause(e: &reqwest::Error) -> String {
    let mut deepest: Option<&(dyn std::error::Error + 'static)> = None;
    let mut cur: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = cur.source() {
        deepest = Some(next);
        cur = next;
    }
    match deepest {
        Some(c) => c.to_string(),
        None => {
            let mut s = e.to_string();
            if let Some(u) = e.url() {
                s = s.replace(u.as_str(), &redact_url(u.as_str()));
            }
            s
        }
    }
}

/// The healthchecks ping URL for `notice`: the item's own URL from `urls`,
/// else `url` with `{item}` replaced; then `/start`, `/fail` or `/log`
/// appended by event (nothing for success), before any query string.
pub(crate) fn ping_url(t: &NotifyTarget, notice: &Notice) -> Result<String, NotifyError> {
    let NotifyKind::Healthchecks { url, urls } = &t.kind else {
        return Err(NotifyError::NotApplicable {
            target: t.name.clone(),
            reason: "not a healthchecks target".into(),
        });
    };
    let subject = notice.subject();
    let base = match (subject.and_then(|s| urls.get(s)), url) {
        (Some(own), _) => own.clone(),
        (None, Some(u)) if u.contains("{item}") => match subject {
            Some(s) => u.replace("{item}", &encode_segment(s)),
            None => {
                return Err(NotifyError::NotApplicable {
                    target: t.name.clone(),
                    reason: "its ping URL needs an item ({item}) and this notice is about none; \
                             name one (bunker notify test TARGET --item NAME)"
                        .into(),
                })
            }
        },
        (None, Some(u)) => u.clone(),
        (None, None) => {
            return Err(NotifyError::NotApplicable {
                target: t.name.clone(),
                reason: match subject {
                    Some(s) => format!("it has no ping URL for \"{s}\""),
                    None => "it has only per-item URLs and this notice is about no item; \
                             name one (bunker notify test TARGET --item NAME)"
                        .into(),
                },
            })
        }
    };
    let suffix = match notice.kind {
        EventKind::Start => "/start",
        EventKind::Success | EventKind::Recovery | EventKind::RpoRecovered => "",
        EventKind::Failure
        | EventKind::RpoBreach
        | EventKind::CheckFailed
        | EventKind::DrillFailed => "/fail",
        EventKind::Warning | EventKind::Test => "/log",
    };
    let (path, query) = match base.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (base.as_str(), None),
    };
    let mut out = format!("{}{suffix}", path.trim_end_matches('/'));
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

/// Percent-encodes what a path segment cannot hold (item names are
/// `[A-Za-z0-9._-]`, repository names may be anything).
fn encode_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bunker_policy::Priority;
    use std::collections::BTreeMap;

    fn hc(url: Option<&str>, urls: &[(&str, &str)]) -> NotifyTarget {
        NotifyTarget::new(
            "hc",
            NotifyKind::Healthchecks {
                url: url.map(str::to_string),
                urls: urls
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
            },
        )
    }

    #[test]
    fn ping_urls_follow_the_event_and_keep_the_query() {
        let t = hc(Some("https://hc.example/ping/KEY/{item}?create=1"), &[]);
        let now = chrono::Utc::now();
        let fail = Notice::failure("db", Priority::Low, "x", now);
        assert_eq!(
            ping_url(&t, &fail).unwrap(),
            "https://hc.example/ping/KEY/db/fail?create=1"
        );
        assert_eq!(
            ping_url(&t, &Notice::start("db")).unwrap(),
            "https://hc.example/ping/KEY/db/start?create=1"
        );
        let ok = Notice::success("db", Priority::Low, now);
        assert_eq!(
            ping_url(&t, &ok).unwrap(),
            "https://hc.example/ping/KEY/db?create=1"
        );
    }

    #[test]
    fn own_item_urls_win_and_missing_ones_are_not_applicable() {
        let t = hc(None, &[("db", "https://hc.example/uuid-1/")]);
        let now = chrono::Utc::now();
        let fail = Notice::failure("db", Priority::Low, "x", now);
        assert_eq!(
            ping_url(&t, &fail).unwrap(),
            "https://hc.example/uuid-1/fail"
        );
        let other = Notice::failure("app", Priority::Low, "x", now);
        assert!(matches!(
            ping_url(&t, &other),
            Err(NotifyError::NotApplicable { .. })
        ));
        let templ = hc(Some("https://hc.example/{item}"), &[]);
        assert!(ping_url(&templ, &Notice::test(None)).is_err());
        let fixed = hc(Some("https://hc.example/uuid"), &[]);
        assert_eq!(
            ping_url(&fixed, &Notice::test(None)).unwrap(),
            "https://hc.example/uuid/log"
        );
    }

    #[test]
    fn unsendable_headers_are_refused_without_their_value() {
        let mut h = BTreeMap::new();
        h.insert("X-Token".to_string(), "s3cret\u{7}".to_string());
        let err = check_headers("w", &h).unwrap_err().to_string();
        assert!(err.contains("X-Token") && !err.contains("s3cret"), "{err}");
        h.insert("X-Token".to_string(), "fine".to_string());
        assert!(check_headers("w", &h).is_ok());
    }

    #[test]
    fn repository_names_are_encoded_in_paths() {
        assert_eq!(encode_segment("a b/c"), "a%20b%2Fc");
        assert_eq!(encode_segment("db-1.x_y"), "db-1.x_y");
    }
}
