//! Email deliveries over SMTP.

use crate::error::NotifyError;
use crate::notice::Notice;
use bunker_policy::EmailConfig;
use std::time::Duration;

/// The prepared settings of one email target.
pub(crate) struct Mailer {
    target: String,
}

impl Mailer {
    /// Checks and prepares `cfg` of target `target`.
    pub(crate) fn new(target: &str, _cfg: &EmailConfig) -> Result<Mailer, NotifyError> {
        Ok(Mailer {
            target: target.to_string(),
        })
    }

    /// One delivery attempt.
    pub(crate) fn send(
        &self,
        _notice: &Notice,
        _host: &str,
        _timeout: Duration,
    ) -> Result<(), NotifyError> {
        Err(NotifyError::Config {
            target: self.target.clone(),
            reason: "not implemented yet".into(),
        })
    }
}
