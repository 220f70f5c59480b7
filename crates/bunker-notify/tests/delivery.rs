//! Deliveries to real receivers on loopback: an HTTP server in the test for
//! webhooks and healthchecks pings, Debian's aiosmtpd for email.

mod support;

use bunker_notify::{AlertState, Notice, Notifier};
use bunker_policy::{
    EmailConfig, EventKind, NotifyFilter, NotifyKind, NotifyTarget, Priority, SmtpTls,
    WebhookFormat,
};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::receiver::{dead_url, Receiver};

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

/// aiosmtpd storing messages in a maildir, on a free loopback port.
struct Smtp {
    child: std::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An aiosmtpd that requires `AUTH` as user "bunker", password "pw" (over
/// plain text: loopback only).
const AUTH_SERVER: &str = r#"
import sys
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from aiosmtpd.handlers import Mailbox
def auth(server, session, envelope, mechanism, data):
    ok = data.login == b"bunker" and data.password == b"pw"
    return AuthResult(success=ok, handled=False)
c = Controller(Mailbox(sys.argv[2]), hostname="127.0.0.1", port=int(sys.argv[1]),
               authenticator=auth, auth_require_tls=False, auth_required=True)
c.start()
sys.stdin.read()
c.stop()
"#;

fn start_smtp() -> Option<Smtp> {
    start_smtp_with(false)
}

/// Starts aiosmtpd (with `auth`: requiring authentication) on a free
/// loopback port, or returns `None` with a note when it is not installed.
fn start_smtp_with(auth: bool) -> Option<Smtp> {
    let python = "/usr/bin/python3";
    let has = std::process::Command::new(python)
        .args(["-c", "import aiosmtpd"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        eprintln!(
            "skipping: aiosmtpd for {python} is not installed (Debian package python3-aiosmtpd)"
        );
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("mail");
    let mut cmd = std::process::Command::new(python);
    if auth {
        // stdin stays open (piped) while the server should run.
        cmd.args(["-c", AUTH_SERVER])
            .arg(port.to_string())
            .arg(&maildir)
            .stdin(std::process::Stdio::piped());
    } else {
        cmd.args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir);
    }
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start aiosmtpd");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "aiosmtpd did not listen on port {port} within 20s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(Smtp { child, port, dir })
}

/// The text of the first message in the server's maildir, waiting up to
/// 10 s for it.
fn first_message(smtp: &Smtp) -> String {
    let new = smtp.dir.path().join("mail/new");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let files: Vec<_> = std::fs::read_dir(&new)
            .map(|r| r.flatten().collect())
            .unwrap_or_default();
        if let Some(f) = files.first() {
            return std::fs::read_to_string(f.path()).unwrap();
        }
        assert!(Instant::now() < deadline, "no message in the maildir");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn messages(smtp: &Smtp) -> usize {
    std::fs::read_dir(smtp.dir.path().join("mail/new")).map_or(0, |r| r.count())
}

fn email(port: u16, tls: SmtpTls) -> NotifyTarget {
    let mut t = NotifyTarget::new(
        "mail",
        NotifyKind::Email(EmailConfig {
            host: "127.0.0.1".into(),
            port: Some(port),
            tls,
            user: None,
            password: None,
            from: "bunker <bunker@example.com>".into(),
            to: vec!["ops@example.com".into(), "oncall@example.com".into()],
        }),
    );
    t.retry_for = Duration::from_secs(5);
    t
}

#[test]
fn email_arrives_at_a_real_smtp_server_with_subject_and_body() {
    let Some(smtp) = start_smtp() else { return };
    let n = Notifier::new(&[email(smtp.port, SmtpTls::None)])
        .unwrap()
        .with_host("testhost");
    let d = n.send(&failure("db"));
    assert!(d[0].ok, "{d:?}");
    let text = first_message(&smtp);
    assert!(
        text.contains("Subject: bunker: backup of db failed"),
        "{text}"
    );
    assert!(text.contains("ops@example.com") && text.contains("oncall@example.com"));
    assert!(text.contains("disk full"), "{text}");
    assert!(text.contains("Host:       testhost"), "{text}");
}

#[test]
fn starttls_is_required_not_skipped_when_the_server_lacks_it() {
    let Some(smtp) = start_smtp() else { return };
    let n = Notifier::new(&[email(smtp.port, SmtpTls::StartTls)]).unwrap();
    let start = Instant::now();
    let d = n.send(&failure("db"));
    assert!(!d[0].ok);
    assert_eq!(d[0].attempts, 1, "a missing STARTTLS is not retried: {d:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
    let err = d[0].error.clone().unwrap();
    assert!(err.contains("SMTP 127.0.0.1:"), "{err}");
    assert_eq!(messages(&smtp), 0, "the message went out without TLS");
}

#[test]
fn smtp_authentication_uses_the_password_source_and_a_wrong_one_is_not_retried() {
    let Some(smtp) = start_smtp_with(true) else {
        return;
    };
    let pw = smtp.dir.path().join("smtp-password");
    std::fs::write(&pw, "pw\n").unwrap();
    let mut t = email(smtp.port, SmtpTls::None);
    if let NotifyKind::Email(e) = &mut t.kind {
        e.user = Some("bunker".into());
        e.password = Some(bunker_policy::PasswordSource::File(pw.clone()));
    }
    let n = Notifier::new(&[t.clone()]).unwrap();
    let d = n.send(&failure("db"));
    assert!(d[0].ok, "{d:?}");
    assert!(first_message(&smtp).contains("Subject: bunker: backup of db failed"));

    std::fs::write(&pw, "wrong-s3cret\n").unwrap();
    let d = n.send(&failure("db"));
    assert!(!d[0].ok);
    assert_eq!(d[0].attempts, 1, "a refused login is not retried: {d:?}");
    let err = d[0].error.clone().unwrap();
    assert!(err.contains("535"), "{err}");
    assert!(!err.contains("s3cret"), "the password leaked: {err}");

    // No user: the server refuses the mail (530), permanently.
    let anonymous = Notifier::new(&[email(smtp.port, SmtpTls::None)]).unwrap();
    let d = anonymous.send(&failure("db"));
    assert!(!d[0].ok && d[0].attempts == 1, "{d:?}");
    assert_eq!(messages(&smtp), 1);
}
