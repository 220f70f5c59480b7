//! Cancellation of one job: a flag that long operations poll at their safe
//! points, and the process groups of the programs the job started.
//!
//! A [`CancelToken`] belongs to a job (one `bunker` command, one daemon run),
//! never to the process: cancelling it stops only what that job started.
//! Clones share the same state. [`CancelToken::cancel`] sets the flag and
//! sends `SIGTERM` to every process group registered with the token (child
//! programs run in groups of their own, so they do not see a terminal's
//! Ctrl-C themselves); a group registered after the token was cancelled is
//! terminated at once. Operations that see the flag stop at their next safe
//! point and return [`Cancelled`]; they release their locks on the way out.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use rustix::process::{kill_process_group, Pid, Signal};

/// The error of an operation stopped by its [`CancelToken`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted")]
pub struct Cancelled;

#[derive(Default)]
struct Inner {
    cancelled: AtomicBool,
    /// Process groups started by this job and not yet reaped.
    groups: Mutex<Vec<Pid>>,
}

/// A job's cancellation flag; see the module documentation.
#[derive(Clone, Default)]
pub struct CancelToken {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelToken")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// Cancel the job: set the flag and `SIGTERM` its process groups.
    /// Idempotent.
    pub fn cancel(&self) {
        self.inner.cancelled.store(true, Ordering::SeqCst);
        for g in self.inner.groups.lock().iter() {
            let _ = kill_process_group(*g, Signal::TERM);
        }
    }

    /// Whether [`CancelToken::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::SeqCst)
    }

    /// `Err(Cancelled)` once cancelled; for `?` at safe points.
    pub fn check(&self) -> Result<(), Cancelled> {
        if self.is_cancelled() {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }

    /// Register a process group (a child started with `process_group(0)`
    /// and not yet reaped). Must be undone with [`CancelToken::remove_group`]
    /// before the child is reaped, so a reused id is never signalled.
    pub fn add_group(&self, pgid: Pid) {
        // The lock orders this against `cancel`: either cancel sees the
        // group in the list, or we see the flag here.
        let mut groups = self.inner.groups.lock();
        groups.push(pgid);
        if self.is_cancelled() {
            let _ = kill_process_group(pgid, Signal::TERM);
        }
    }

    /// Forget a process group registered with [`CancelToken::add_group`].
    pub fn remove_group(&self, pgid: Pid) {
        self.inner.groups.lock().retain(|g| *g != pgid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    fn clones_share_the_flag() {
        let t = CancelToken::new();
        let c = t.clone();
        assert!(c.check().is_ok());
        t.cancel();
        assert!(c.is_cancelled());
        assert_eq!(c.check(), Err(Cancelled));
    }

    #[test]
    fn cancel_terminates_registered_groups_and_late_ones() {
        for cancel_first in [false, true] {
            let t = CancelToken::new();
            let mut child = std::process::Command::new("sleep")
                .arg("60")
                .process_group(0)
                .spawn()
                .expect("sleep");
            let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid")).expect("pid");
            if cancel_first {
                t.cancel();
                t.add_group(pid);
            } else {
                t.add_group(pid);
                t.cancel();
            }
            let status = child.wait().expect("wait");
            t.remove_group(pid);
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(status.signal(), Some(libc::SIGTERM));
        }
    }
}
