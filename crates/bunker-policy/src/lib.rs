//! bunker-policy: the `bunker.yaml` policy file, its validation, retention
//! rules and schedules. Pure: no repository access (it uses the repository
//! layer's keep-rule types only).
//!
//! * [`Policy::load`] parses a policy, substitutes `${VAR}` from the
//!   environment (`$${` escapes), and validates it, reporting *every*
//!   problem as a [`Diagnostic`] with `file:line:col`.
//! * [`Retention`] holds an item's keep rules as written; they convert to
//!   the repository layer's [`bunker_repo::retention::KeepPolicy`], which
//!   `forget` applies exactly as restic does.
//! * [`DrillConfig`] holds an item's restore drills (`drill:`, with `rto:`).
//! * [`NotifyTarget`]s (`notifications:`) say where notices go (webhook,
//!   healthchecks pings, email) and which events each receives.
//! * [`Schedule`] says when an item is due (`every 2h`, cron in local time,
//!   `on_change`).
//! * [`DaemonConfig`] (`daemon:`) says how `bunker daemon` runs the policy,
//!   with its maintenance jobs per repository ([`MaintenanceJob`]).
//!
//! * [`runbook`]: disaster-recovery runbooks (`runbooks:`).
//!
//! Secrets (passwords, option values whose key contains "secret",
//! "password", "key" or "token") are redacted in `Debug`/`Display`.

mod daemon;
mod drill;
mod env;
mod error;
mod locate;
mod model;
mod mysql;
mod notifications;
mod parse;
mod policy;
pub mod runbook;
mod schedule;
mod validate;

pub use daemon::{
    parse_read_data, DaemonConfig, MaintenanceJob, MaintenanceKind, RunAtStart,
    DEFAULT_MAX_CONCURRENT,
};
pub use drill::{CheckKind, DrillCheck, DrillConfig, DrillPick, DEFAULT_DRILL_TIMEOUT};
pub use error::{Diagnostic, PolicyError};
pub use locate::Pos;
pub use model::{
    is_secret_key, location_scheme, CommandConfig, FilesSource, Hooks, Item, ItemKind,
    PasswordError, PasswordSource, PostgresConfig, PostgresMode, Priority, RepositoryConfig,
    Retention, Role, Secret, Source, SqliteConfig,
};
pub use mysql::{BinlogConfig, MysqlConfig, MysqlMode};
pub use notifications::{
    redact_url, EmailConfig, EventKind, NotifyFilter, NotifyKind, NotifyTarget, SmtpTls,
    WebhookFormat, DEFAULT_NOTIFY_RETRY_FOR, DEFAULT_NOTIFY_TIMEOUT,
};
pub use policy::Policy;
pub use schedule::{parse_duration, Schedule, ScheduleError};
pub use validate::is_valid_item_name;

#[cfg(test)]
mod tests;
