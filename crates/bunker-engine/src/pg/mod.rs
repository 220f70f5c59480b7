//! PostgreSQL operations on a repository that the front ends (the CLI's
//! `pg` verbs, drills, runbooks) share: point-in-time restore
//! ([`restore()`]) and the WAL archive's verification and clean-up
//! ([`wal`]).

mod restore;
pub mod wal;

pub use restore::{
    preflight, restore, wal_fetch_command, PasswordArg, PgRestoreOutcome, PgRestoreRequest,
    PgRestoreStep, StartServer,
};
