//! Email deliveries over SMTP (lettre, rustls): one plain-text message per
//! notice, a new connection per attempt.

use crate::error::NotifyError;
use crate::notice::Notice;
use bunker_policy::{EmailConfig, SmtpTls};
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};
use std::time::Duration;

/// The prepared settings of one email target: addresses parsed once.
pub(crate) struct Mailer {
    target: String,
    cfg: EmailConfig,
    /// Extra trusted CA certificates (PEM) from the target's `ca_file`.
    ca: Option<Vec<u8>>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl Mailer {
    /// Checks and prepares `cfg` of target `target`: every address must
    /// parse.
    pub(crate) fn new(
        target: &str,
        cfg: &EmailConfig,
        ca: Option<Vec<u8>>,
    ) -> Result<Mailer, NotifyError> {
        let parse = |field: &str, s: &str| {
            s.parse::<Mailbox>().map_err(|e| NotifyError::Config {
                target: target.to_string(),
                reason: format!("invalid address \"{s}\" for \"{field}\": {e}"),
            })
        };
        let from = parse("from", &cfg.from)?;
        let to = cfg
            .to
            .iter()
            .map(|s| parse("to", s))
            .collect::<Result<Vec<_>, _>>()?;
        if to.is_empty() {
            return Err(NotifyError::Config {
                target: target.to_string(),
                reason: "\"to\" names no recipient".into(),
            });
        }
        if let Some(pem) = &ca {
            Certificate::from_pem(pem).map_err(|e| NotifyError::Config {
                target: target.to_string(),
                reason: format!("its ca_file is not PEM certificates: {}", describe(&e)),
            })?;
        }
        Ok(Mailer {
            target: target.to_string(),
            cfg: cfg.clone(),
            ca,
            from,
            to,
        })
    }

    fn server(&self) -> String {
        format!("{}:{}", self.cfg.host, self.cfg.port())
    }

    /// The message for `notice`: subject = title, a plain-text body.
    fn message(&self, notice: &Notice, host: &str) -> Result<Message, NotifyError> {
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(notice.title.clone())
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            b = b.to(to.clone());
        }
        b.body(body(notice, host)).map_err(|e| NotifyError::Config {
            target: self.target.clone(),
            reason: format!("cannot build the message: {e}"),
        })
    }

    /// One delivery attempt, bounded by `timeout` per SMTP step.
    pub(crate) fn send(
        &self,
        notice: &Notice,
        host: &str,
        timeout: Duration,
    ) -> Result<(), NotifyError> {
        let message = self.message(notice, host)?;
        let smtp_err = |e: lettre::transport::smtp::Error| NotifyError::Smtp {
            server: self.server(),
            transient: is_transient(&e),
            reason: describe(&e),
        };
        let tls_params = || {
            let mut b = TlsParameters::builder(self.cfg.host.clone());
            if let Some(pem) = &self.ca {
                // Parsed successfully in `new`.
                if let Ok(c) = Certificate::from_pem(pem) {
                    b = b.add_root_certificate(c);
                }
            }
            b.build().map_err(|e| NotifyError::Config {
                target: self.target.clone(),
                reason: format!("cannot set up TLS for {}: {}", self.cfg.host, describe(&e)),
            })
        };
        let tls = match self.cfg.tls {
            SmtpTls::StartTls => Tls::Required(tls_params()?),
            SmtpTls::Tls => Tls::Wrapper(tls_params()?),
            SmtpTls::None => Tls::None,
        };
        let mut b = SmtpTransport::builder_dangerous(self.cfg.host.clone())
            .port(self.cfg.port())
            .tls(tls)
            .timeout(Some(timeout));
        if let Some(user) = &self.cfg.user {
            let password = match &self.cfg.password {
                Some(p) => p
                    .resolve()
                    .map_err(|e| NotifyError::Config {
                        target: self.target.clone(),
                        reason: format!("cannot read the SMTP password: {e}"),
                    })?
                    .expose()
                    .to_string(),
                None => String::new(),
            };
            b = b.credentials(Credentials::new(user.clone(), password));
        }
        b.build().send(&message).map(|_| ()).map_err(smtp_err)
    }
}

/// Whether another attempt could help: temporary (4xx) answers, time-outs
/// and network failures, but not permanent answers, TLS failures (an
/// untrusted certificate, a server without STARTTLS) or client errors.
fn is_transient(e: &lettre::transport::smtp::Error) -> bool {
    if e.is_permanent() || e.is_client() || e.is_tls() || e.is_response() {
        false
    } else if e.is_transient() || e.is_timeout() {
        true
    } else {
        !crate::http::is_invalid_data(e)
    }
}

/// The text of a lettre error with its causes (no credentials are in it).
fn describe(e: &lettre::transport::smtp::Error) -> String {
    let mut s = e.to_string();
    let mut cur: &dyn std::error::Error = e;
    while let Some(next) = cur.source() {
        let t = next.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = next;
    }
    s
}

/// The plain-text body: the message, then one line per known fact.
pub(crate) fn body(notice: &Notice, host: &str) -> String {
    let mut out = format!("{}\n\n", notice.message);
    out.push_str(&format!("Event:      {}\n", notice.kind.as_str()));
    if let Some(i) = &notice.item {
        out.push_str(&format!("Item:       {i}\n"));
    }
    if let Some(r) = &notice.target {
        out.push_str(&format!("Repository: {r}\n"));
    }
    if let Some(p) = notice.priority {
        out.push_str(&format!("Priority:   {}\n", p.as_str()));
    }
    out.push_str(&format!("Host:       {host}\n"));
    out.push_str(&format!(
        "Time:       {}\n",
        notice.time.format("%Y-%m-%d %H:%M:%S UTC")
    ));
    out.push_str("\n-- \nSent by bunker.\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(from: &str, to: &[&str]) -> EmailConfig {
        EmailConfig {
            host: "localhost".into(),
            port: Some(2525),
            tls: SmtpTls::None,
            user: None,
            password: None,
            from: from.into(),
            to: to.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn addresses_are_checked_when_prepared() {
        assert!(Mailer::new(
            "m",
            &cfg("bunker <b@example.com>", &["ops@example.com"]),
            None
        )
        .is_ok());
        let err = Mailer::new("m", &cfg("b@example.com", &["not an address"]), None)
            .err()
            .unwrap();
        assert!(err.to_string().contains("\"to\""), "{err}");
        assert!(Mailer::new("m", &cfg("b@example.com", &[]), None).is_err());
    }

    #[test]
    fn body_lists_the_facts() {
        let n = Notice::start("db").with_target("main");
        let b = body(&n, "h1");
        assert!(b.contains("Item:       db\n"));
        assert!(b.contains("Repository: main\n"));
        assert!(b.contains("Host:       h1\n"));
    }
}
