//! Email deliveries to a real SMTP server (Debian's aiosmtpd) on loopback:
//! plain, with authentication, STARTTLS and SMTPS with a private CA.

mod support;

use bunker_notify::{Notice, Notifier};
use bunker_policy::{EmailConfig, NotifyKind, NotifyTarget, PasswordSource, Priority, SmtpTls};
use std::time::{Duration, Instant};
use support::certs;
use support::smtp::{self, Mode};

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

fn failure(item: &str) -> Notice {
    Notice::failure(item, Priority::Critical, "disk full", chrono::Utc::now())
}

#[test]
fn email_arrives_at_a_real_smtp_server_with_subject_and_body() {
    let Some(smtp) = smtp::start(Mode::Plain) else {
        return;
    };
    let n = Notifier::new(&[email(smtp.port, SmtpTls::None)])
        .unwrap()
        .with_host("testhost");
    let d = n.send(&failure("db"));
    assert!(d[0].ok, "{d:?}");
    let text = smtp.first_message();
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
    let Some(smtp) = smtp::start(Mode::Plain) else {
        return;
    };
    let n = Notifier::new(&[email(smtp.port, SmtpTls::StartTls)]).unwrap();
    let start = Instant::now();
    let d = n.send(&failure("db"));
    assert!(!d[0].ok);
    assert_eq!(d[0].attempts, 1, "a missing STARTTLS is not retried: {d:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
    let err = d[0].error.clone().unwrap();
    assert!(err.contains("SMTP 127.0.0.1:"), "{err}");
    assert_eq!(smtp.messages(), 0, "the message went out without TLS");
}

#[test]
fn smtp_authentication_uses_the_password_source_and_a_wrong_one_is_not_retried() {
    let Some(smtp) = smtp::start(Mode::Auth) else {
        return;
    };
    let pw = smtp.scratch().join("smtp-password");
    std::fs::write(&pw, "pw\n").unwrap();
    let mut t = email(smtp.port, SmtpTls::None);
    if let NotifyKind::Email(e) = &mut t.kind {
        e.user = Some("bunker".into());
        e.password = Some(PasswordSource::File(pw.clone()));
    }
    let n = Notifier::new(&[t]).unwrap();
    let d = n.send(&failure("db"));
    assert!(d[0].ok, "{d:?}");
    assert!(smtp
        .first_message()
        .contains("Subject: bunker: backup of db failed"));

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
    assert_eq!(smtp.messages(), 1);
}

#[test]
fn starttls_and_smtps_deliver_to_a_server_of_a_private_ca() {
    let Some(c) = certs::make() else { return };
    for (mode, tls) in [
        (
            Mode::StartTls {
                cert: &c.cert,
                key: &c.key,
            },
            SmtpTls::StartTls,
        ),
        (
            Mode::Smtps {
                cert: &c.cert,
                key: &c.key,
            },
            SmtpTls::Tls,
        ),
    ] {
        let Some(smtp) = smtp::start(mode) else {
            return;
        };
        // Without the CA the certificate is not trusted, and that is final.
        let untrusted = Notifier::new(&[email(smtp.port, tls)]).unwrap();
        let d = untrusted.send(&failure("db"));
        assert!(!d[0].ok, "{tls:?}: an untrusted certificate was accepted");
        assert_eq!(d[0].attempts, 1, "{tls:?}: {d:?}");
        assert_eq!(smtp.messages(), 0);

        let mut t = email(smtp.port, tls);
        t.ca_file = Some(c.ca.clone());
        let n = Notifier::new(&[t]).unwrap();
        let d = n.send(&failure("db"));
        assert!(d[0].ok, "{tls:?}: {d:?}");
        assert!(smtp.first_message().contains("disk full"));
    }
}

#[test]
fn a_ca_file_that_is_not_pem_is_refused_when_the_notifier_is_built() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("ca.pem");
    std::fs::write(&bad, "not a certificate").unwrap();
    let mut t = email(25, SmtpTls::StartTls);
    t.ca_file = Some(bad);
    let err = Notifier::new(&[t]).unwrap_err().to_string();
    assert!(err.contains("ca_file"), "{err}");
    let mut t = email(25, SmtpTls::StartTls);
    t.ca_file = Some(dir.path().join("missing.pem"));
    let err = Notifier::new(&[t]).unwrap_err().to_string();
    assert!(err.contains("cannot read its ca_file"), "{err}");
}
