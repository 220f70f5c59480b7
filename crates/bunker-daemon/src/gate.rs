//! The repository gate: which jobs may use a repository at the same time.
//!
//! Backups, checks and copies share a repository; prune (and an item's
//! retention, which prunes) needs it alone. The repository's own locks would
//! make the second job fail at once ("repository is locked"); the gate makes
//! it wait instead, or not start. Writers are preferred: while an exclusive
//! user waits, no new shared user gets in, so a prune is not starved by a
//! stream of backups.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use bunker_engine::CancelToken;

use crate::job::Access;

#[derive(Debug, Default, Clone, Copy)]
struct RepoState {
    readers: usize,
    writer: bool,
    waiting_writers: usize,
}

/// Shared/exclusive access to repositories, by name.
#[derive(Debug, Default)]
pub struct RepoGate {
    state: Mutex<HashMap<String, RepoState>>,
    changed: Condvar,
}

/// Access held through the gate; released when dropped.
#[derive(Debug)]
pub struct GateGuard {
    gate: Arc<RepoGate>,
    held: Vec<(String, Access)>,
}

impl GateGuard {
    /// The repositories held, and how.
    pub fn held(&self) -> &[(String, Access)] {
        &self.held
    }
}

impl Drop for GateGuard {
    fn drop(&mut self) {
        let mut st = self.gate.lock();
        for (repo, access) in &self.held {
            let s = st.entry(repo.clone()).or_default();
            match access {
                Access::Shared => s.readers = s.readers.saturating_sub(1),
                Access::Exclusive => s.writer = false,
            }
        }
        drop(st);
        self.gate.changed.notify_all();
    }
}

fn free(s: &RepoState, access: Access) -> bool {
    match access {
        Access::Shared => !s.writer && s.waiting_writers == 0,
        Access::Exclusive => !s.writer && s.readers == 0,
    }
}

impl RepoGate {
    /// A gate with nothing held.
    pub fn new() -> Arc<RepoGate> {
        Arc::new(RepoGate::default())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, RepoState>> {
        // A panic while holding this short lock leaves the counts as they
        // were; keep going with them.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `wants` could be taken now.
    pub fn available(&self, wants: &[(String, Access)]) -> bool {
        let st = self.lock();
        wants
            .iter()
            .all(|(r, a)| free(&st.get(r).copied().unwrap_or_default(), *a))
    }

    /// Take all of `wants` now, or nothing.
    pub fn try_acquire(self: &Arc<Self>, wants: &[(String, Access)]) -> Option<GateGuard> {
        let mut st = self.lock();
        if !wants
            .iter()
            .all(|(r, a)| free(&st.get(r).copied().unwrap_or_default(), *a))
        {
            return None;
        }
        for (r, a) in wants {
            let s = st.entry(r.clone()).or_default();
            match a {
                Access::Shared => s.readers += 1,
                Access::Exclusive => s.writer = true,
            }
        }
        Some(GateGuard {
            gate: self.clone(),
            held: wants.to_vec(),
        })
    }

    /// Wait for `repo` alone; `None` when `cancel` fires first. While
    /// waiting, no new shared user is let in.
    pub fn exclusive(self: &Arc<Self>, repo: &str, cancel: &CancelToken) -> Option<GateGuard> {
        let mut st = self.lock();
        st.entry(repo.to_string()).or_default().waiting_writers += 1;
        let got = loop {
            let s = st.entry(repo.to_string()).or_default();
            if !s.writer && s.readers == 0 {
                s.writer = true;
                break true;
            }
            if cancel.is_cancelled() {
                break false;
            }
            // Woken by every release; the timeout only notices `cancel`.
            st = self
                .changed
                .wait_timeout(st, Duration::from_millis(250))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        };
        let s = st.entry(repo.to_string()).or_default();
        s.waiting_writers = s.waiting_writers.saturating_sub(1);
        drop(st);
        self.changed.notify_all();
        got.then(|| GateGuard {
            gate: self.clone(),
            held: vec![(repo.to_string(), Access::Exclusive)],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(r: &str) -> (String, Access) {
        (r.to_string(), Access::Shared)
    }
    fn ex(r: &str) -> (String, Access) {
        (r.to_string(), Access::Exclusive)
    }

    #[test]
    fn shared_users_share_and_exclusive_waits_for_them() {
        let g = RepoGate::new();
        let a = g.try_acquire(&[sh("r")]).expect("first reader");
        let b = g.try_acquire(&[sh("r"), sh("s")]).expect("second reader");
        assert!(g.try_acquire(&[ex("r")]).is_none());
        assert!(g.try_acquire(&[ex("s")]).is_none());
        drop(b);
        assert!(g.available(&[ex("s")]));
        let w = {
            let g = g.clone();
            std::thread::spawn(move || g.exclusive("r", &CancelToken::new()).is_some())
        };
        // The writer is waiting: no new reader gets in (poll with a deadline).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while g.available(&[sh("r")]) && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert!(g.try_acquire(&[sh("r")]).is_none(), "writer preferred");
        drop(a);
        assert!(
            w.join().expect("thread"),
            "writer got it after the reader left"
        );
        assert!(g.try_acquire(&[sh("r")]).is_some(), "released on drop");
    }

    #[test]
    fn waiting_for_exclusive_access_stops_when_cancelled() {
        let g = RepoGate::new();
        let _r = g.try_acquire(&[sh("r")]).expect("reader");
        let c = CancelToken::new();
        c.cancel();
        assert!(g.exclusive("r", &c).is_none());
        assert!(g.available(&[sh("r")]), "no writer left waiting");
    }
}
