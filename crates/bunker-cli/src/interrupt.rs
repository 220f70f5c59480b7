//! SIGINT and SIGTERM: cancel the command's job, let it stop at its next
//! safe point (releasing its locks), exit 130.
//!
//! One [`CancelToken`] serves the whole command ([`token`]); the engine and
//! the repository operations poll it, and cancelling it stops the child
//! programs the command started (they run in process groups of their own, so
//! a terminal's Ctrl-C does not reach them). A background thread waits for
//! either signal (through tokio's signal driver, so no unsafe code is
//! needed). Operations that have no safe points of their own get
//! [`GRACE`] to finish; after that the thread removes the lock files this
//! process wrote in the repositories it opened ([`register`]) and exits 130,
//! as before: whatever was uploaded so far is unreferenced and removed by a
//! later `prune`, as with restic.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use bunker_engine::CancelToken;
use bunker_repo::Repository;

/// How long a cancelled command may take to stop by itself.
pub const GRACE: Duration = Duration::from_secs(5);

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// Whether the signal was SIGTERM (a service manager's stop) rather than SIGINT.
static TERMINATED: AtomicBool = AtomicBool::new(false);
static TOKEN: OnceLock<CancelToken> = OnceLock::new();
/// Weak, so repositories (and their storage connections, e.g. ssh sessions) are
/// still dropped and closed when their commands finish.
static REPOS: Mutex<Vec<Weak<Repository>>> = Mutex::new(Vec::new());

/// The command's cancellation token.
pub fn token() -> CancelToken {
    TOKEN.get_or_init(CancelToken::new).clone()
}

/// Whether SIGINT or SIGTERM was received.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Whether the signal received was SIGTERM.
pub fn terminated() -> bool {
    TERMINATED.load(Ordering::SeqCst)
}

/// Remember a repository whose locks must be released if the command does
/// not stop within [`GRACE`].
pub fn register(repo: &Arc<Repository>) {
    crate::audit_trail::opened(repo);
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
    use tokio::signal::unix::{signal, SignalKind};
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::debug!("no signal handler: {e}");
            return;
        }
    };
    // Register the handlers before returning, so an early signal is not lost.
    let signals = rt.block_on(async {
        Ok::<_, std::io::Error>((
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        ))
    });
    let (mut int, mut term) = match signals {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!("no signal handler: {e}");
            return;
        }
    };
    let token = token();
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let terminated = rt.block_on(async {
                tokio::select! {
                    _ = int.recv() => false,
                    _ = term.recv() => true,
                }
            });
            TERMINATED.store(terminated, Ordering::SeqCst);
            INTERRUPTED.store(true, Ordering::SeqCst);
            eprintln!("bunker: interrupted, releasing locks");
            token.cancel();
            // The main thread exits 130 once the job has stopped; this is
            // the deadline for operations without safe points.
            std::thread::sleep(GRACE);
            release_locks();
            std::process::exit(i32::from(crate::exit::INTERRUPTED));
        });
    if let Err(e) = spawned {
        tracing::debug!("no signal handler thread: {e}");
    }
}
