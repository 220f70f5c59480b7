//! bunker-engine: runs a backup policy. The command line, the daemon, drills
//! and runbooks are thin shells over it.
//!
//! * [`pool`]: opening the policy's repositories with their password
//!   sources, options and fallbacks ([`pool::RepoPool`]); the one fallback
//!   rule ([`pool::open_first_reachable`]) and who may create repositories.
//! * [`plan`]: which items are due at a given time, with a typed
//!   [`plan::DueReason`]; the clock is passed in.
//! * [`execute`]: one item against its targets — hooks, backup or stream,
//!   retention, records — with a typed [`execute::Outcome`] and statistics
//!   per target ([`execute::TargetRun`]).
//! * [`hooks`], [`retention`], [`sources`]: the steps of an item run.
//! * [`status`]: RPO state per item and target, the last failure, the PITR
//!   window and the archiver's state.
//! * [`drill`]: restore drills into a sandbox with verification, checks
//!   and the measured RTO, stored as records; [`recover`]: every item
//!   back to one point in time (`recover --time`).
//! * [`records`]: typed records (run failures and successes, later drills
//!   and compliance reports) kept in the repository under `bunker/`.
//! * [`runbook`]: disaster-recovery runbooks: plan, drill, execute with rollback.
//! * [`compliance`]: the 3-2-1 report per item.
//! * [`audit`]: the audit records of runs and runbook steps.
//! * [`events`]: the engine never prints; it reports to an
//!   [`events::EventSink`].
//! * Cancellation: every job carries a [`CancelToken`]; operations stop at
//!   their next safe point, release their locks and leave the repository
//!   clean ([`EngineError::Cancelled`]).
//!
//! Errors are typed ([`EngineError`]); the lower layers' errors stay
//! reachable through `source()`.

#![warn(missing_docs)]
// The engine never prints: front ends render its events.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod audit;
pub mod compliance;
pub mod drill;
pub mod error;
pub mod events;
pub mod execute;
pub mod hooks;
pub mod plan;
pub mod pool;
pub mod records;
pub mod recover;
pub mod retention;
pub mod runbook;
pub mod sources;
pub mod status;

pub use bunker_sources::{CancelToken, Cancelled};
pub use error::{EngineError, Result};

#[cfg(test)]
pub(crate) mod testing {
    use std::time::{Duration, Instant};

    /// Whether the process `pid` is gone (or a zombie) within `deadline`.
    pub fn wait_gone(pid: &str, deadline: Duration) -> bool {
        let stat = format!("/proc/{pid}/stat");
        let alive = || {
            std::fs::read_to_string(&stat).is_ok_and(|s| {
                !s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            })
        };
        let t = Instant::now();
        while alive() && t.elapsed() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        !alive()
    }
}
