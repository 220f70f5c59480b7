//! SIGINT handling: set a flag, stop time-limited commands, release this
//! process's repository locks, exit 130.
//!
//! A background thread waits for the signal (through tokio's signal driver, so
//! no unsafe code is needed). Engine operations cannot be cancelled midway, so
//! on the signal we remove every lock file this process wrote in the
//! repositories we opened and exit; whatever was uploaded so far is
//! unreferenced and removed by a later `prune`, as with restic.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bunker_repo::Repository;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// Weak, so repositories (and their storage connections, e.g. ssh sessions) are
/// still dropped and closed when their commands finish.
static REPOS: Mutex<Vec<Weak<Repository>>> = Mutex::new(Vec::new());

/// Whether SIGINT was received.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Remember a repository whose locks must be released on interrupt.
pub fn register(repo: &Arc<Repository>) {
    if let Ok(mut v) = REPOS.lock() {
        v.retain(|w| w.strong_count() > 0);
        v.push(Arc::downgrade(repo));
    }
}

/// Remove lock files written by this process (same PID and host) in every
/// registered repository. Best effort.
pub fn release_locks() {
    let repos: Vec<Arc<Repository>> = match REPOS.lock() {
        Ok(v) => v.iter().filter_map(Weak::upgrade).collect(),
        Err(_) => return,
    };
    let pid = std::process::id();
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    for repo in repos {
        let Ok(locks) = bunker_repo::lock::list_locks(&repo) else {
            continue;
        };
        for (name, lock) in locks {
            if lock.is_some_and(|l| l.pid == i64::from(pid) && l.hostname == host) {
                let _ = repo.storage().remove(bunker_storage::FileType::Lock, &name);
            }
        }
    }
}

/// Start the signal-watching thread.
pub fn install() {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::debug!("no SIGINT handler: {e}");
            return;
        }
    };
    // Register the handler before returning, so an early Ctrl-C is not lost.
    let signal = rt.block_on(async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
    });
    let mut signal = match signal {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!("no SIGINT handler: {e}");
            return;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("sigint".into())
        .spawn(move || {
            rt.block_on(signal.recv());
            INTERRUPTED.store(true, Ordering::SeqCst);
            eprintln!("bunker: interrupted, releasing locks");
            // Commands with a time limit run in process groups of their own
            // and did not see the terminal's Ctrl-C.
            bunker_sources::watchdog::terminate_all();
            release_locks();
            std::process::exit(i32::from(crate::exit::INTERRUPTED));
        });
    if let Err(e) = spawned {
        tracing::debug!("no SIGINT handler thread: {e}");
    }
}
