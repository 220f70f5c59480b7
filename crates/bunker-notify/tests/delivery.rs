//! HTTP deliveries to real receivers on loopback: an HTTP server in the
//! test for webhooks and healthchecks pings, Python's for HTTPS.

mod support;

use bunker_notify::{AlertState, Notice, Notifier};
use bunker_policy::{EventKind, NotifyFilter, NotifyKind, NotifyTarget, Priority, WebhookFormat};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::certs;
use support::receiver::{dead_url, HttpsReceiver, Receiver};

fn webhook(name: &str, url: &str, format: WebhookFormat) -> NotifyTarget {
    let mut t = NotifyTarget::new(
        name,
        NotifyKind::Webhook {
            url: url.to_string(),
            format,
            headers: BTreeMap::new(),
        },
    );
    t.timeout = Duration::from_secs(5);
    t.retry_for = Duration::from_secs(5);
    t
}

fn failure(item: &str) -> Notice {
    Notice::failure(item, Priority::Critical, "disk full", chrono::Utc::now())
}

#[test]
fn every_webhook_format_arrives_in_its_shape() {
    let rx = Receiver::start();
    let targets: Vec<NotifyTarget> = [
        WebhookFormat::Json,
        WebhookFormat::Slack,
        WebhookFormat::Discord,
        WebhookFormat::Ntfy,
        WebhookFormat::Gotify,
    ]
    .into_iter()
    .map(|f| webhook(f.as_str(), &rx.url(&format!("/{}", f.as_str())), f))
    .collect();
    let n = Notifier::new(&targets).unwrap().with_host("testhost");
    let d = n.send(&failure("db"));
    assert_eq!(d.len(), 5);
    assert!(d.iter().all(|d| d.ok && d.attempts == 1), "{d:?}");
    let reqs = rx.wait_for(5);
    let by_path = |p: &str| reqs.iter().find(|r| r.path == p).expect(p).clone();

    let json = by_path("/json");
    assert_eq!(json.method, "POST");
    assert_eq!(json.header("content-type"), Some("application/json"));
    let v = json.json();
    assert_eq!(v["event"], "failure");
    assert_eq!(v["item"], "db");
    assert_eq!(v["priority"], "critical");
    assert_eq!(v["host"], "testhost");
    assert!(v["message"].as_str().unwrap().contains("disk full"));

    assert!(by_path("/slack").json()["text"]
        .as_str()
        .unwrap()
        .contains("disk full"));
    assert!(by_path("/discord").json()["content"]
        .as_str()
        .unwrap()
        .contains("backup of db failed"));
    let gotify = by_path("/gotify").json();
    assert_eq!(gotify["title"], "bunker: backup of db failed");
    assert_eq!(gotify["priority"], 8);

    let ntfy = by_path("/ntfy");
    assert!(ntfy.body.contains("disk full"));
    assert_eq!(ntfy.header("title"), Some("bunker: backup of db failed"));
    assert_eq!(ntfy.header("priority"), Some("5"));
    assert_eq!(ntfy.header("tags"), Some("rotating_light,bunker,failure"));
}

/// The daemon runs on an async runtime: a send from one of its threads must
/// work (the blocking HTTP client panics when used on such a thread, so the
/// notifier delivers on threads of its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn sending_from_an_async_runtime_thread_works() {
    let rx = Receiver::start();
    let n = Notifier::new(&[webhook("w", &rx.url("/h"), WebhookFormat::Json)]).unwrap();
    let d = n.send(&failure("db"));
    assert!(d[0].ok, "{d:?}");
    drop(n);
    assert_eq!(rx.wait_for(1).len(), 1);
}

#[test]
fn policy_headers_are_sent() {
    let rx = Receiver::start();
    let mut t = webhook("w", &rx.url("/h"), WebhookFormat::Json);
    if let NotifyKind::Webhook { headers, .. } = &mut t.kind {
        headers.insert("Authorization".into(), "Bearer s3cret".into());
    }
    let n = Notifier::new(&[t]).unwrap();
    assert!(n.send(&failure("db"))[0].ok);
    assert_eq!(
        rx.wait_for(1)[0].header("authorization"),
        Some("Bearer s3cret")
    );
}

#[test]
fn a_500_is_retried_until_it_succeeds() {
    let rx = Receiver::start_with(&[500, 503]);
    let n = Notifier::new(&[webhook("w", &rx.url("/h"), WebhookFormat::Json)]).unwrap();
    let d = n.send(&failure("db"));
    assert!(d[0].ok, "{d:?}");
    assert_eq!(d[0].attempts, 3);
    assert_eq!(rx.wait_for(3).len(), 3);
    assert_eq!(n.failed_total()["w"], 0);
}

#[test]
fn a_400_is_not_retried_and_is_counted() {
    let rx = Receiver::start_with(&[400]);
    let url = rx.url("/h?token=s3cret-token");
    let n = Notifier::new(&[webhook("w", &url, WebhookFormat::Json)]).unwrap();
    let d = n.send(&failure("db"));
    assert!(!d[0].ok);
    assert_eq!(d[0].attempts, 1);
    let err = d[0].error.clone().unwrap();
    assert!(err.contains("HTTP 400"), "{err}");
    assert!(err.contains("scripted status 400"), "{err}");
    assert!(!err.contains("s3cret"), "the token leaked: {err}");
    assert_eq!(n.failed_total()["w"], 1);
    // The second notice goes through (the script is exhausted): the counter stays.
    assert!(n.send(&failure("db"))[0].ok);
    assert_eq!(n.failed_total()["w"], 1);
    // A notifier rebuilt after a reload can keep counting up.
    let other = webhook("gone", &url, WebhookFormat::Json);
    let rebuilt = Notifier::new(&[webhook("w", &url, WebhookFormat::Json), other]).unwrap();
    rebuilt.add_failed_totals(&n.failed_total());
    assert_eq!(rebuilt.failed_total()["w"], 1);
    assert_eq!(rebuilt.failed_total()["gone"], 0);
}

#[test]
fn a_429_is_retried() {
    let rx = Receiver::start_with(&[429]);
    let n = Notifier::new(&[webhook("w", &rx.url("/h"), WebhookFormat::Json)]).unwrap();
    let d = n.send(&failure("db"));
    assert!(d[0].ok && d[0].attempts == 2, "{d:?}");
}

#[test]
fn a_dead_port_fails_within_the_deadline_and_names_the_reason() {
    let mut t = webhook(
        "dead",
        &format!("{}?token=s3cret", dead_url()),
        WebhookFormat::Json,
    );
    t.retry_for = Duration::from_secs(2);
    let n = Notifier::new(&[t]).unwrap();
    let start = Instant::now();
    let d = n.send(&failure("db"));
    let took = start.elapsed();
    assert!(!d[0].ok);
    assert!(d[0].attempts >= 2, "connection refused is retried: {d:?}");
    assert!(took < Duration::from_secs(4), "took {took:?}");
    let err = d[0].error.clone().unwrap();
    assert!(err.to_lowercase().contains("refused"), "{err}");
    assert!(!err.contains("s3cret"), "the token leaked: {err}");
    assert_eq!(n.failed_total()["dead"], 1);
}

#[test]
fn filters_choose_the_targets() {
    let rx = Receiver::start();
    let all = webhook("all", &rx.url("/all"), WebhookFormat::Json);
    let mut only_app = webhook("only-app", &rx.url("/app"), WebhookFormat::Json);
    only_app.filter = NotifyFilter {
        events: vec![EventKind::Failure, EventKind::Success],
        items: vec!["app".into()],
        priorities: vec![],
    };
    let n = Notifier::new(&[all, only_app]).unwrap();
    let d = n.send(&failure("db"));
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].target, "all");
    // Success is not in the default set.
    let ok = Notice::success("app", Priority::Low, chrono::Utc::now());
    let d = n.send(&ok);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].target, "only-app");
    // A test goes wherever it is sent.
    assert!(n.send_to("all", &Notice::test(Some("all"))).unwrap().ok);
    let paths: Vec<String> = rx.wait_for(3).into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/all", "/app", "/all"]);
    assert!(n.send_to("nope", &Notice::test(None)).is_err());
}

#[test]
fn healthchecks_pings_start_success_and_fail_paths() {
    let rx = Receiver::start();
    let mut t = NotifyTarget::new(
        "hc",
        NotifyKind::Healthchecks {
            url: Some(rx.url("/ping/KEY/{item}?create=1")),
            urls: [("db".to_string(), rx.url("/uuid-db"))].into(),
        },
    );
    t.retry_for = Duration::from_secs(5);
    let n = Notifier::new(&[t]).unwrap();
    let mut alerts = AlertState::default();
    let now = chrono::Utc::now();
    n.send(&Notice::start("app"));
    for notice in alerts.run_finished("app", Priority::Low, None, now) {
        n.send(&notice);
    }
    for notice in alerts.run_finished("db", Priority::Low, Some("boom"), now) {
        n.send(&notice);
    }
    let reqs = rx.wait_for(3);
    let paths: Vec<&str> = reqs.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/ping/KEY/app/start?create=1",
            "/ping/KEY/app?create=1",
            "/uuid-db/fail"
        ]
    );
    assert!(reqs[2].body.contains("boom"), "{}", reqs[2].body);
    // A notice for an item without a URL is not a failure: it is not sent.
    let only_map = NotifyTarget::new(
        "hc2",
        NotifyKind::Healthchecks {
            url: None,
            urls: [("db".to_string(), rx.url("/uuid-db"))].into(),
        },
    );
    let n = Notifier::new(&[only_map]).unwrap();
    assert!(n.send(&Notice::start("app")).is_empty());
    assert_eq!(n.failed_total()["hc2"], 0);
}

#[test]
fn https_to_a_receiver_of_a_private_ca_needs_its_ca_file() {
    let Some(c) = certs::make() else { return };
    let Some(rx) = HttpsReceiver::start(&c.cert, &c.key) else {
        return;
    };
    let url = format!("https://127.0.0.1:{}/hook", rx.port);
    let untrusted = Notifier::new(&[webhook("w", &url, WebhookFormat::Json)]).unwrap();
    let d = untrusted.send(&failure("db"));
    assert!(!d[0].ok, "an untrusted certificate was accepted");
    assert_eq!(d[0].attempts, 1, "a certificate failure is final: {d:?}");
    let err = d[0].error.clone().unwrap();
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    let mut t = webhook("w", &url, WebhookFormat::Json);
    t.ca_file = Some(c.ca.clone());
    let n = Notifier::new(&[t]).unwrap();
    let d = n.send(&failure("db"));
    assert!(d[0].ok, "{d:?}");
    let got = rx.wait_for(1);
    assert!(got[0].starts_with("/hook {"), "{got:?}");
    assert!(got[0].contains("disk full"), "{got:?}");
}
