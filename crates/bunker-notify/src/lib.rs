//! bunker-notify: tells people what happened to their backups.
//!
//! * A [`Notice`] is one message about one event ([`EventKind`]: failure,
//!   recovery, RPO breach, ...), independent of how it travels.
//! * [`AlertState`] turns job results into notices with "alert once, notify
//!   recovery" semantics: a streak of failures gives one failure notice and
//!   one recovery notice, an RPO breach one breach and one recovered notice.
//!   It is serialisable so the daemon keeps it across restarts.
//! * [`Notifier`] delivers notices to the policy's [`NotifyTarget`]s
//!   (`notifications:`): webhooks (plain JSON, Slack, Discord, ntfy,
//!   Gotify), healthchecks-style ping URLs per item, and email over SMTP.
//!   Each delivery retries with exponential backoff within the target's
//!   `retry_for`; a failed delivery is logged through `tracing`, counted per
//!   target ([`Notifier::failed_total`]) and returned, never raised.
//!
//! The crate is synchronous and `Send + Sync`; it depends on the policy
//! types only, not on the engine. Secrets (SMTP passwords, header values,
//! tokens in URLs) never appear in its errors, logs or `Debug` output.

#![warn(missing_docs)]

mod alert;
mod email;
mod error;
mod http;
mod notice;
mod notifier;
mod payload;

pub use alert::AlertState;
pub use bunker_policy::{EventKind, NotifyFilter, NotifyKind, NotifyTarget, Priority};
pub use error::NotifyError;
pub use notice::Notice;
pub use notifier::{Delivery, Notifier};
pub use payload::{payload, plain_json, Payload, JSON_PAYLOAD_VERSION};

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn notifier_is_send_and_sync() {
        assert_send_sync::<Notifier>();
        assert_send_sync::<AlertState>();
    }
}
