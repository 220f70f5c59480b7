//! bunker-daemon: `bunker daemon` runs a policy on schedule. It is a shell
//! over the engine (`bunker-engine`): planning, running items, status and
//! records are the engine's; this crate decides *when* and *how many at
//! once*, remembers what happened and tells others.
//!
//! * [`job`]: what runs — an item's backup or a repository's maintenance
//!   (`check`, `prune`, `copy`) — and which repositories each needs.
//! * [`scheduler`]: which jobs start now and when to wake next (pure, the
//!   clock is passed in); [`gate`]: shared/exclusive use of repositories.
//! * [`runner`]: one job on its own thread with its own cancellation token,
//!   through the engine.
//! * [`history`]: every job's run in a local SQLite database (also read by
//!   `bunker history` without the daemon).
//! * [`metrics`]: the Prometheus series; [`http`]: `/metrics`, health and
//!   the JSON API.
//! * [`alerts`]: the one place job and RPO events leave the daemon for
//!   notifications.
//! * [`watch`]: file-system changes for `on_change` items.
//! * [`state`]: what the loop and the HTTP handlers share, and the
//!   repositories' truth (newest snapshots, archived WAL) as last read.
//! * [`daemon`]: the loop tying them together, signals and reloads.

#![warn(missing_docs)]

pub mod alerts;
pub mod daemon;
pub mod gate;
pub mod history;
pub mod http;
pub mod job;
pub mod metrics;
pub mod runner;
pub mod scheduler;
pub mod state;
pub mod watch;

pub use daemon::{run, DaemonError, DaemonOptions};

#[cfg(test)]
mod scheduler_tests;
