//! [`Notifier`]: delivers notices to the policy's targets, with retries,
//! a deadline per delivery and per-target failure counters.

use crate::error::NotifyError;
use crate::notice::Notice;
use crate::{email, http};
use bunker_policy::{EventKind, NotifyKind, NotifyTarget};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The first pause between attempts; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest pause between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// Attempts shorter than this are not started: too little time is left.
const MIN_ATTEMPT: Duration = Duration::from_millis(100);

/// The outcome of delivering one notice to one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The target's name.
    pub target: String,
    /// Whether the receiver accepted it.
    pub ok: bool,
    /// How many attempts were made (0 when none could be, e.g. a bad secret).
    pub attempts: u32,
    /// Why the last attempt failed (no secrets), when `ok` is false.
    pub error: Option<String>,
}

/// One target, ready to deliver.
struct Target {
    cfg: NotifyTarget,
    /// The extra CA certificates of `ca_file`, for HTTPS.
    ca: Vec<reqwest::Certificate>,
    /// The parsed email settings of an email target.
    mail: Option<email::Mailer>,
    failed: AtomicU64,
}

/// Delivers [`Notice`]s to notification targets. `Send + Sync`: share it
/// (e.g. in an `Arc`) between the threads that report events.
///
/// Every call blocks until its deliveries end, at most about the longest
/// `retry_for` (plus one `timeout`) of the targets involved: targets are
/// served in parallel, each on a thread of its own. That also makes it safe
/// to call from an async runtime's thread, though it blocks that thread
/// (prefer `spawn_blocking` or a thread of your own).
pub struct Notifier {
    targets: Vec<Target>,
    host: String,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("targets", &self.target_names())
            .finish()
    }
}

impl Notifier {
    /// Prepares delivery to `targets` (checks what the policy parser could
    /// not, such as email addresses in full).
    pub fn new(targets: &[NotifyTarget]) -> Result<Notifier, NotifyError> {
        let mut out = Vec::with_capacity(targets.len());
        for cfg in targets {
            let pem = match &cfg.ca_file {
                Some(path) => Some(std::fs::read(path).map_err(|e| NotifyError::Config {
                    target: cfg.name.clone(),
                    reason: format!("cannot read its ca_file {}: {e}", path.display()),
                })?),
                None => None,
            };
            // Checked for every kind (it must hold certificates); kept for HTTP.
            let ca = match &pem {
                Some(pem) => http::load_ca(&cfg.name, pem)?,
                None => Vec::new(),
            };
            let mail = match &cfg.kind {
                NotifyKind::Email(e) => Some(email::Mailer::new(&cfg.name, e, pem)?),
                NotifyKind::Webhook { headers, .. } => {
                    http::check_headers(&cfg.name, headers)?;
                    None
                }
                NotifyKind::Healthchecks { .. } => None,
            };
            out.push(Target {
                cfg: cfg.clone(),
                ca,
                mail,
                failed: AtomicU64::new(0),
            });
        }
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        Ok(Notifier { targets: out, host })
    }

    /// Sets the host name shown in messages (default: this machine's).
    pub fn with_host(mut self, host: impl Into<String>) -> Notifier {
        self.host = host.into();
        self
    }

    /// Delivers `notice` to every target whose filter accepts it, in
    /// parallel, each with retries within its `retry_for`. Never fails as a
    /// whole: each failed delivery is logged, counted and returned.
    pub fn send(&self, notice: &Notice) -> Vec<Delivery> {
        let chosen: Vec<&Target> = self
            .targets
            .iter()
            .filter(|t| {
                t.cfg
                    .accepts(notice.kind, notice.item.as_deref(), notice.priority)
            })
            .filter(|t| applies(t, notice))
            .collect();
        self.deliver_all(&chosen, notice)
    }

    /// Delivers `notice` to the target named `target`, whatever its filter
    /// says (for `bunker notify test TARGET`). `Err` only when there is no
    /// such target; a failed delivery is an `Ok` [`Delivery`] with
    /// `ok == false`.
    pub fn send_to(&self, target: &str, notice: &Notice) -> Result<Delivery, NotifyError> {
        let t = self
            .targets
            .iter()
            .find(|t| t.cfg.name == target)
            .ok_or_else(|| NotifyError::UnknownTarget {
                name: target.to_string(),
                known: self.target_names(),
            })?;
        // One target in, one delivery out.
        let out = self.deliver_all(&[t], notice);
        Ok(out.into_iter().next().unwrap_or_else(|| Delivery {
            target: target.to_string(),
            ok: false,
            attempts: 0,
            error: Some("no delivery was made".into()),
        }))
    }

    /// Delivers `notice` to every target, whatever their filters say (for
    /// `bunker notify test`), in parallel. A target the notice does not
    /// apply to (a healthchecks target without a URL for it) is a failed
    /// delivery here.
    pub fn send_all(&self, notice: &Notice) -> Vec<Delivery> {
        let all: Vec<&Target> = self.targets.iter().collect();
        self.deliver_all(&all, notice)
    }

    /// Failed deliveries so far, per target name (every target listed, from
    /// 0), for `bunker_notifications_failed_total{target}`.
    pub fn failed_total(&self) -> BTreeMap<String, u64> {
        self.targets
            .iter()
            .map(|t| (t.cfg.name.clone(), t.failed.load(Ordering::Relaxed)))
            .collect()
    }

    /// Adds earlier counts to the failure counters of the targets that have
    /// the same names, e.g. those of the notifier this one replaces after a
    /// policy reload, so `bunker_notifications_failed_total` keeps counting
    /// up. Names this notifier does not have are ignored.
    pub fn add_failed_totals(&self, earlier: &BTreeMap<String, u64>) {
        for t in &self.targets {
            if let Some(n) = earlier.get(&t.cfg.name) {
                t.failed.fetch_add(*n, Ordering::Relaxed);
            }
        }
    }

    /// The targets' names, in policy order.
    pub fn target_names(&self) -> Vec<String> {
        self.targets.iter().map(|t| t.cfg.name.clone()).collect()
    }

    /// Delivers to `targets` in parallel, each on a thread of its own.
    /// Invariant: deliveries never run on the caller's thread, which may
    /// belong to an async runtime (the HTTP client must not run there).
    fn deliver_all(&self, targets: &[&Target], notice: &Notice) -> Vec<Delivery> {
        let failed = |t: &Target, why: &str| {
            t.failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(target_name = %t.cfg.name, "notification not delivered: {why}");
            Delivery {
                target: t.cfg.name.clone(),
                ok: false,
                attempts: 0,
                error: Some(why.to_string()),
            }
        };
        std::thread::scope(|s| {
            let handles: Vec<_> = targets
                .iter()
                .map(|t| {
                    let h = std::thread::Builder::new()
                        .name(format!("notify-{}", t.cfg.name))
                        .spawn_scoped(s, || self.deliver(t, notice));
                    (t, h)
                })
                .collect();
            handles
                .into_iter()
                .map(|(t, h)| match h {
                    Ok(h) => h
                        .join()
                        .unwrap_or_else(|_| failed(t, "the delivery thread panicked")),
                    Err(e) => failed(t, &format!("cannot start a delivery thread: {e}")),
                })
                .collect()
        })
    }

    /// One delivery with retries. Invariant: returns within about
    /// `retry_for` plus one attempt's `timeout`, since no attempt starts
    /// after the deadline and each attempt is bounded by `timeout`.
    fn deliver(&self, t: &Target, notice: &Notice) -> Delivery {
        let start = Instant::now();
        let deadline = start + t.cfg.retry_for;
        let mut attempts = 0u32;
        let mut backoff = FIRST_BACKOFF;
        let result = loop {
            attempts += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            let timeout = t.cfg.timeout.min(left.max(MIN_ATTEMPT));
            let err = match self.attempt(t, notice, timeout) {
                Ok(()) => break Ok(()),
                Err(e) => e,
            };
            if !err.is_retryable() {
                break Err(err);
            }
            let now = Instant::now();
            if now + backoff + MIN_ATTEMPT > deadline {
                break Err(err);
            }
            tracing::debug!(target_name = %t.cfg.name, attempt = attempts, error = %err,
                "notification attempt failed; retrying in {:?}", backoff);
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        };
        match result {
            Ok(()) => {
                tracing::debug!(target_name = %t.cfg.name, event = %notice.kind, attempts, "notification delivered");
                Delivery {
                    target: t.cfg.name.clone(),
                    ok: true,
                    attempts,
                    error: None,
                }
            }
            Err(e) => {
                t.failed.fetch_add(1, Ordering::Relaxed);
                // A test's caller reports the failure itself (`notify test`):
                // it is logged, but not as a warning.
                if notice.kind == EventKind::Test {
                    tracing::info!(target_name = %t.cfg.name, event = %notice.kind, attempts,
                        elapsed = ?start.elapsed(), error = %e, "test notification not delivered");
                } else {
                    tracing::warn!(target_name = %t.cfg.name, event = %notice.kind, attempts,
                        elapsed = ?start.elapsed(), error = %e, "notification not delivered");
                }
                Delivery {
                    target: t.cfg.name.clone(),
                    ok: false,
                    attempts,
                    error: Some(e.detail()),
                }
            }
        }
    }

    fn attempt(&self, t: &Target, notice: &Notice, timeout: Duration) -> Result<(), NotifyError> {
        match (&t.cfg.kind, &t.mail) {
            (NotifyKind::Webhook { .. }, _) | (NotifyKind::Healthchecks { .. }, _) => {
                http::send(&t.cfg, notice, &self.host, &t.ca, timeout)
            }
            (NotifyKind::Email(_), Some(m)) => m.send(notice, &self.host, timeout),
            (NotifyKind::Email(_), None) => Err(NotifyError::Config {
                target: t.cfg.name.clone(),
                reason: "email settings were not prepared".into(),
            }),
        }
    }
}

/// Whether a notice can go to a target at all: a healthchecks target needs
/// a ping URL for the notice's item. Filtered-out notices are not failures.
fn applies(t: &Target, notice: &Notice) -> bool {
    match &t.cfg.kind {
        NotifyKind::Healthchecks { .. } => http::ping_url(&t.cfg, notice).is_ok(),
        _ => true,
    }
}
