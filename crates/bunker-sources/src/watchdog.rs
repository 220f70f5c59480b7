//! A time limit for a child process and everything it started.
//!
//! The child runs in a process group of its own (`process_group(0)`), so a
//! shell pipeline (`pg_dump … | gzip`) is stopped as a whole: past the limit
//! the group gets `SIGTERM`, and `SIGKILL` after [`GRACE`] if it is still
//! there. The group id is the child's pid, which cannot be reused before the
//! child is reaped; so the owner must [`Watchdog::stop`] the watchdog after
//! the child has exited but *before* reaping it (see `waitid(WNOWAIT)`).
//!
//! A watchdog may also serve a job's [`CancelToken`]: its group is
//! registered with the token, so cancelling the job stops the program (in a
//! group of its own it no longer receives the terminal's Ctrl-C itself).

use std::io;
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, Sender};

use crate::cancel::CancelToken;
use rustix::process::{kill_process_group, waitid, Pid, Signal, WaitId, WaitIdOptions};

/// Time between `SIGTERM` and `SIGKILL`.
pub const GRACE: Duration = Duration::from_secs(10);

/// Watches one process group; see the module documentation.
pub struct Watchdog {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
    fired: Arc<AtomicBool>,
    group: Option<Pid>,
    limit: Duration,
    cancel: Option<CancelToken>,
}

impl Watchdog {
    /// Start watching the process group `pgid` (a child started with
    /// `process_group(0)`, not yet reaped).
    pub fn start(pgid: u32, limit: Duration) -> Watchdog {
        Watchdog::start_with(pgid, Some(limit), None)
    }

    /// Like [`Watchdog::start`], with no limit when `limit` is `None`, and
    /// registering the group with `cancel` so cancelling the job stops it.
    pub fn start_with(pgid: u32, limit: Option<Duration>, cancel: Option<CancelToken>) -> Watchdog {
        let group = i32::try_from(pgid).ok().and_then(Pid::from_raw);
        if let (Some(g), Some(c)) = (group, &cancel) {
            c.add_group(g);
        }
        // Without a limit there is no timer thread: only the token stops it.
        let timed = limit.and(group);
        let limit = limit.unwrap_or(Duration::MAX);
        let fired = Arc::new(AtomicBool::new(false));
        let (tx, rx) = crossbeam_channel::bounded::<()>(0);
        let flag = fired.clone();
        let thread = timed.and_then(|g| {
            std::thread::Builder::new()
                .name("bunker-watchdog".into())
                .spawn(move || {
                    if rx.recv_timeout(limit) != Err(RecvTimeoutError::Timeout) {
                        return; // stopped in time
                    }
                    flag.store(true, Ordering::SeqCst);
                    let _ = kill_process_group(g, Signal::TERM);
                    if rx.recv_timeout(GRACE) == Err(RecvTimeoutError::Timeout) {
                        let _ = kill_process_group(g, Signal::KILL);
                    }
                })
                .ok()
        });
        Watchdog {
            stop: Some(tx),
            thread,
            fired,
            group,
            limit,
            cancel,
        }
    }

    /// Whether the limit passed and the group was told to stop.
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }

    /// Whether the job's cancellation token (if any) was cancelled.
    pub fn cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(CancelToken::is_cancelled)
    }

    /// The time limit.
    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// Wait for `child` (the group's leader) to exit, stop watching, then
    /// reap it. The exit is awaited without reaping (`waitid(WNOWAIT)`):
    /// until the watchdog has stopped it may still signal the group, whose
    /// id is the child's own only until the child is reaped.
    pub fn wait(&mut self, child: &mut Child) -> io::Result<ExitStatus> {
        if let Some(pid) = i32::try_from(child.id()).ok().and_then(Pid::from_raw) {
            loop {
                match waitid(
                    WaitId::Pid(pid),
                    WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
                ) {
                    Err(e) if e == rustix::io::Errno::INTR => continue,
                    Err(e) => return Err(e.into()),
                    Ok(_) => break,
                }
            }
        }
        self.stop();
        child.wait()
    }

    /// Stop watching; call before the child is reaped. After a timeout the
    /// rest of the group is killed now (the child itself has exited, but
    /// what it started may still run).
    pub fn stop(&mut self) {
        self.halt();
        if self.fired() {
            self.kill_group();
        }
    }

    /// `SIGKILL` the whole group (an abandoned stream) and stop watching;
    /// call before the child is reaped.
    pub fn kill_group(&mut self) {
        self.halt();
        if let Some(g) = self.group.take() {
            let _ = kill_process_group(g, Signal::KILL);
        }
    }

    /// End the timer thread and leave the registry (before the child is
    /// reaped, so nothing ever signals a reused group id).
    fn halt(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let (Some(g), Some(c)) = (self.group, &self.cancel) {
            c.remove_group(g);
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.halt();
    }
}
