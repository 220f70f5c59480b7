//! Webhook and healthchecks deliveries over HTTP(S).

use crate::error::NotifyError;
use crate::notice::Notice;
use bunker_policy::NotifyTarget;
use std::time::Duration;

/// One HTTP delivery attempt of `notice` to a webhook or healthchecks target.
pub(crate) fn send(
    t: &NotifyTarget,
    _notice: &Notice,
    _host: &str,
    _timeout: Duration,
) -> Result<(), NotifyError> {
    Err(NotifyError::Config {
        target: t.name.clone(),
        reason: "not implemented yet".into(),
    })
}

/// The ping URL of a healthchecks target for `notice`.
pub(crate) fn ping_url(t: &NotifyTarget, _notice: &Notice) -> Result<String, NotifyError> {
    Err(NotifyError::NotApplicable {
        target: t.name.clone(),
        reason: "not implemented yet".into(),
    })
}
