//! bunker-policy: the `bunker.yaml` policy file, its validation, retention
//! rules and schedules. Pure: no repository access.
//!
//! * [`Policy::load`] parses a policy, substitutes `${VAR}` from the
//!   environment (`$${` escapes), and validates it, reporting *every*
//!   problem as a [`Diagnostic`] with `file:line:col`.
//! * [`retention::apply`] decides which snapshots `forget` keeps, exactly as
//!   restic 0.14's `forget` does (plus `-1` = unlimited from later restic).
//! * [`Schedule`] says when an item is due (`every 2h`, cron in local time,
//!   `on_change`).
//!
//! Secrets (passwords, option values whose key contains "secret",
//! "password", "key" or "token") are redacted in `Debug`/`Display`.

mod env;
mod error;
mod locate;
mod model;
mod parse;
mod policy;
pub mod retention;
mod schedule;
mod validate;

pub use error::{Diagnostic, PolicyError};
pub use locate::Pos;
pub use model::{
    is_secret_key, location_scheme, CommandConfig, Hooks, Item, ItemKind, PasswordError,
    PasswordSource, PostgresConfig, PostgresMode, Priority, RepositoryConfig, Retention, Role,
    Secret, SqliteConfig,
};
pub use policy::Policy;
pub use schedule::{parse_duration, Schedule, ScheduleError};
pub use validate::is_valid_item_name;

#[cfg(test)]
mod tests;
