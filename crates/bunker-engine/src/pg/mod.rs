//! PostgreSQL operations on a repository that the front ends (the CLI's
//! `pg` verbs, drills, runbooks, `recover --time`) share: point-in-time
//! restore ([`restore()`]), the bunker command lines the server runs
//! ([`command`]) and the WAL archive's verification and clean-up ([`wal`]).

pub mod command;
mod restore;
pub mod wal;

pub use command::{wal_fetch_command, PasswordArg};
pub use restore::{
    keep_newest_cluster, preflight, restore, start_and_wait, PgRestoreOutcome, PgRestoreRequest,
    PgRestoreStep, StartServer,
};
