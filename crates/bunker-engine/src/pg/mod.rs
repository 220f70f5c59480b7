//! PostgreSQL operations on a repository that the front ends (the CLI's
//! `pg` verbs, drills, runbooks) share: point-in-time restore
//! ([`restore()`]).

mod restore;

pub use restore::{
    preflight, restore, wal_fetch_command, PasswordArg, PgRestoreOutcome, PgRestoreRequest,
    PgRestoreStep, StartServer,
};
