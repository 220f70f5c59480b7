//! Tests of the `notifications` section.

use crate::{
    EventKind, NotifyKind, PasswordSource, Policy, PolicyError, Priority, SmtpTls, WebhookFormat,
};
use std::time::Duration;

const BASE: &str = r#"
repositories:
  main: { location: /var/repo, password: pw }
items:
  - { name: db, paths: [/srv/db], priority: critical }
  - { name: app, paths: [/srv/app] }
"#;

fn parse(notifications: &str) -> Result<Policy, PolicyError> {
    let env = |n: &str| (n == "TOKEN").then(|| "s3cr3t-t0ken".to_string());
    Policy::parse_with(
        &format!("{BASE}notifications:\n{notifications}"),
        "bunker.yaml",
        None,
        &env,
    )
}

fn errors(notifications: &str) -> Vec<String> {
    match parse(notifications) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.diagnostics().iter().map(|d| d.to_string()).collect(),
    }
}

const ALL_KINDS: &str = r#"
  chat:
    webhook:
      url: https://hooks.example.com/services/${TOKEN}
      format: slack
      headers: { Authorization: "Bearer ${TOKEN}" }
    events: [failure, recovery, success]
    items: [db]
    priorities: [critical, important]
    timeout: 5s
    retry_for: 2m
    ca_file: /etc/bunker/private-ca.pem
  hc:
    healthchecks:
      url: https://hc-ping.com/${TOKEN}/{item}?create=1
      urls: { db: "https://hc-ping.com/0b3c7a2e-1111-2222-3333-444455556666" }
  mail:
    email:
      host: smtp.example.com
      user: bunker
      password: "${TOKEN}"
      from: "bunker <bunker@example.com>"
      to: ops@example.com
"#;

#[test]
fn every_target_kind_parses() {
    let p = parse(ALL_KINDS).expect("valid");
    assert_eq!(p.notifications.len(), 3);
    let chat = &p.notifications[0];
    assert_eq!(chat.name, "chat");
    match &chat.kind {
        NotifyKind::Webhook {
            url,
            format,
            headers,
        } => {
            assert_eq!(url, "https://hooks.example.com/services/s3cr3t-t0ken");
            assert_eq!(*format, WebhookFormat::Slack);
            assert_eq!(headers["Authorization"], "Bearer s3cr3t-t0ken");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        chat.filter.events,
        [EventKind::Failure, EventKind::Recovery, EventKind::Success]
    );
    assert_eq!(chat.filter.items, ["db"]);
    assert_eq!(
        chat.filter.priorities,
        [Priority::Critical, Priority::Important]
    );
    assert_eq!(chat.timeout, Duration::from_secs(5));
    assert_eq!(chat.retry_for, Duration::from_secs(120));
    assert_eq!(
        chat.ca_file.as_deref(),
        Some(std::path::Path::new("/etc/bunker/private-ca.pem"))
    );

    let hc = &p.notifications[1];
    assert!(
        matches!(&hc.kind, NotifyKind::Healthchecks { url: Some(u), urls }
        if u.ends_with("/{item}?create=1") && urls.contains_key("db"))
    );
    assert_eq!(
        hc.filter.effective_events(&hc.kind),
        EventKind::HEALTHCHECKS_DEFAULT
    );

    let NotifyKind::Email(mail) = &p.notifications[2].kind else {
        panic!("not email")
    };
    assert_eq!(mail.tls, SmtpTls::StartTls);
    assert_eq!(mail.port(), 587);
    assert_eq!(mail.to, ["ops@example.com"]);
    assert!(matches!(mail.password, Some(PasswordSource::Plain(_))));
}

#[test]
fn notification_secrets_are_redacted() {
    let p = parse(ALL_KINDS).expect("valid");
    for text in [format!("{p:?}"), p.to_string()] {
        assert!(!text.contains("s3cr3t"), "secret leaked: {text}");
        assert!(!text.contains("0b3c7a2e"), "ping UUID leaked: {text}");
    }
    let shown = p.to_string();
    assert!(
        shown.contains("chat (webhook slack https://hooks.example.com/services/***)"),
        "{shown}"
    );
    assert!(
        shown.contains("events failure, recovery, success"),
        "{shown}"
    );
    assert!(shown.contains("mail (email smtp.example.com:587 starttls to ops@example.com)"));
}

#[test]
fn unknown_keys_and_bad_values_are_reported_with_lines() {
    let errs = errors(
        r#"
  a:
    webhook: { url: "ftp://x/y", format: teams, colour: red }
    evnts: [failure]
  b:
    email: { host: h, from: nobody, to: [] }
  c:
    events: [failure, explosion]
    items: [nope]
    healthchecks: {}
"#,
    );
    let want = [
        "bunker.yaml:10:21: invalid URL for \"url\" in webhook of notification target \"a\": scheme \"ftp\" is not http or https",
        "bunker.yaml:10:42: invalid format \"teams\"",
        "bunker.yaml:10:49: unknown key \"colour\"",
        "bunker.yaml:11:5: unknown key \"evnts\" in notification target \"a\" (did you mean \"events\"?)",
        "bunker.yaml:13:29: invalid email address \"nobody\"",
        "bunker.yaml:13:41: \"to\" in email of notification target \"b\" names no recipient",
        "bunker.yaml:15:23: unknown event \"explosion\"",
        "bunker.yaml:16:13: notification target \"c\" names unknown item \"nope\"",
        "bunker.yaml:17:5: \"url\" or \"urls\" is required in healthchecks of notification target \"c\"",
    ];
    for w in want {
        assert!(
            errs.iter().any(|e| e.contains(w)),
            "missing {w:?} in:\n{}",
            errs.join("\n")
        );
    }
}

#[test]
fn a_target_needs_exactly_one_kind() {
    let errs = errors("  a: { events: [failure] }\n  b:\n    webhook: { url: http://h/x }\n    email: { host: h, from: a@b, to: c@d }\n");
    assert!(errs
        .iter()
        .any(|e| e.contains("notification target \"a\" has no kind")));
    assert!(errs
        .iter()
        .any(|e| e.contains("notification target \"b\" has 2 kinds (webhook, email)")));
}

#[test]
fn a_bad_url_is_not_repeated_in_the_error() {
    let errs = errors("  a:\n    webhook: { url: \"https://user:${TOKEN}@[bad\" }\n");
    assert!(errs.iter().any(|e| e.contains("invalid URL")), "{errs:?}");
    assert!(errs.iter().all(|e| !e.contains("s3cr3t")), "{errs:?}");
}

#[test]
fn an_email_password_needs_a_user() {
    let errs = errors("  m:\n    email: { host: h, password_env: X, from: a@b.c, to: d@e.f }\n");
    assert!(errs.iter().any(|e| e.contains("no \"user\"")), "{errs:?}");
}
