//! The daemon's loop: start jobs when the scheduler says so, record what
//! they did (history, metrics, alerts), re-read the repositories now and
//! then, and sleep until the next due time or event — never busy polling.
//!
//! Lifecycle: SIGTERM/SIGINT stop scheduling, cancel the running jobs
//! through their tokens and wait up to `shutdown_grace` for them to stop
//! (they release their locks), then exit 0 (1 when a job did not stop in
//! time). SIGHUP reloads the policy; an invalid one is logged and the old
//! one kept. With `$NOTIFY_SOCKET` set, systemd is told READY, RELOADING
//! and STOPPING (`Type=notify`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bunker_engine::pool::PoolOptions;
use bunker_engine::CancelToken;
use bunker_policy::{Policy, PolicyError};
use chrono::Utc;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::alerts::Alerts;
use crate::gate::RepoGate;
use crate::history::{History, HistoryError};
use crate::job::{jobs_of, Trigger};
use crate::metrics::Metrics;
use crate::runner::{run_job, JobContext, JobReport};
use crate::scheduler::Scheduler;
use crate::state::{eval_rpo, Msg, Shared, Truth};
use crate::watch::Watchers;

/// The longest sleep: the wall clock is looked at again at least this
/// often (a jump of the clock is noticed within it).
pub const MAX_SLEEP: Duration = Duration::from_secs(60);
/// How often the repositories are re-read (besides after every run).
pub const REFRESH_EVERY: Duration = Duration::from_secs(300);

/// How to run the daemon.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// The policy file (re-read on SIGHUP).
    pub policy_path: PathBuf,
    /// Where HTTP listens.
    pub listen: SocketAddr,
    /// Where the history and alert state live (created if missing).
    pub state_dir: PathBuf,
    /// The bearer token HTTP clients must present.
    pub token: Option<String>,
    /// How repositories are opened (extra options, tunables).
    pub pool: PoolOptions,
}

/// Why the daemon did not start or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The policy is invalid (at start-up).
    #[error("policy {path} is not usable: {source}")]
    Policy {
        /// The file.
        path: String,
        /// The diagnostics.
        #[source]
        source: PolicyError,
    },
    /// The state directory or history could not be set up.
    #[error("state directory {path}: {source}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The history database failed.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// The HTTP address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The runtime or signal handlers could not be set up.
    #[error("cannot start: {0}")]
    Runtime(#[source] std::io::Error),
    /// Jobs were still running when the grace period ended.
    #[error("jobs still running after the shutdown grace period: {0} (their locks may remain; `bunker unlock` removes stale ones)")]
    Unfinished(String),
}

/// Tell systemd (`$NOTIFY_SOCKET`, `Type=notify`); nothing without it.
pub fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
    } else {
        sock.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = sent {
        tracing::debug!("sd_notify {state}: {e}");
    }
}

/// Run the daemon until SIGTERM/SIGINT.
pub fn run(opts: DaemonOptions) -> Result<(), DaemonError> {
    let policy = load_policy(&opts.policy_path)?;
    std::fs::create_dir_all(&opts.state_dir).map_err(|source| DaemonError::StateDir {
        path: opts.state_dir.clone(),
        source,
    })?;
    let history = History::open(&opts.state_dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    rt.block_on(run_async(opts, policy, history))
}

fn load_policy(path: &std::path::Path) -> Result<Policy, DaemonError> {
    Policy::load(path).map_err(|source| DaemonError::Policy {
        path: path.display().to_string(),
        source,
    })
}

struct Daemon {
    shared: Arc<Shared>,
    gate: Arc<RepoGate>,
    running: HashMap<String, CancelToken>,
    alerts: Alerts,
    history: History,
    refreshing: bool,
    /// The next refresh first creates missing repositories (a reload).
    create_pending: bool,
    last_refresh: tokio::time::Instant,
    watchers: Watchers,
}

async fn run_async(
    opts: DaemonOptions,
    policy: Policy,
    history: History,
) -> Result<(), DaemonError> {
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|source| DaemonError::Listen {
            addr: opts.listen,
            source,
        })?;
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Runtime)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Runtime)?;
    let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Runtime)?;
    let (tx, mut rx) = mpsc::channel(1024);
    let mut metrics = Metrics::default();
    metrics.sync_policy(&policy);
    let alerts = Alerts::load(&opts.state_dir, &policy);
    if let Some(n) = alerts.notifier() {
        for t in n.target_names() {
            metrics.declare_notification_target(&t);
        }
    }
    let scheduler = Scheduler::new(&policy.daemon, jobs_of(&policy));
    let policy = Arc::new(policy);
    let shared = Arc::new(Shared {
        policy: RwLock::new(policy.clone()),
        policy_path: opts.policy_path.clone(),
        scheduler: Mutex::new(scheduler),
        metrics: Mutex::new(metrics),
        truth: Mutex::new(Truth::default()),
        state_dir: opts.state_dir.clone(),
        pool: opts.pool.clone(),
        tx: tx.clone(),
        ready: Default::default(),
        stopping: Default::default(),
        stop_serving: tokio::sync::Notify::new(),
        started: Utc::now(),
        token: opts.token.clone(),
    });
    let server = {
        let app = crate::http::router(shared.clone());
        let stop = shared.clone();
        tokio::spawn(async move {
            let r = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.stop_serving.notified().await })
                .await;
            if let Err(e) = r {
                tracing::error!("HTTP server: {e}");
            }
        })
    };
    tracing::info!(
        "bunker daemon {} listening on http://{}; policy {}; state in {}",
        env!("CARGO_PKG_VERSION"),
        opts.listen,
        opts.policy_path.display(),
        opts.state_dir.display()
    );
    let mut d = Daemon {
        shared: shared.clone(),
        gate: RepoGate::new(),
        running: HashMap::new(),
        alerts,
        history,
        refreshing: false,
        create_pending: false,
        last_refresh: tokio::time::Instant::now(),
        watchers: Watchers::new(&policy, tx.clone()),
    };
    // The first reading of the repositories, before anything is scheduled.
    let truth = {
        let (p, pool) = (policy.clone(), opts.pool.clone());
        tokio::task::spawn_blocking(move || Truth::read(&p, &pool, true))
            .await
            .unwrap_or_default()
    };
    d.apply_truth(truth);
    d.seed_from_history();
    {
        let mut s = shared.scheduler();
        for item in &policy.items {
            if policy.daemon.run_at_start.includes(&item.name) {
                let _ = s.request(&format!("backup:{}", item.name), Trigger::Start);
            }
        }
    }
    shared.ready.store(true, Ordering::SeqCst);
    sd_notify("READY=1");
    loop {
        let now = Utc::now();
        d.evaluate_rpo(now);
        d.start_due(now);
        d.maybe_refresh();
        let sleep = d.sleep_for(now);
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            Some(msg) = rx.recv() => d.handle(msg),
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => d.reload(),
        }
    }
    let result = d.shutdown(&mut rx).await;
    // Serve until the jobs stopped (/readyz says 503 meanwhile).
    shared.stop_serving.notify_one();
    let _ = server.await;
    result
}

impl Daemon {
    fn apply_truth(&mut self, truth: Truth) {
        let policy = self.shared.policy();
        {
            let mut m = self.shared.metrics();
            for (item, targets) in &truth.newest {
                for (t, n) in targets {
                    m.set_newest(item, t, *n);
                }
            }
            for (item, w) in &truth.wal {
                m.set_wal_archived(item, *w);
            }
            m.set_compliance(&truth.compliance);
            for (item, d) in &truth.drills {
                if let Some((at, rto)) = d {
                    m.set_drill_passed(item, *at, *rto);
                }
            }
        }
        {
            let mut s = self.shared.scheduler();
            for item in &policy.items {
                if let Some(n) = truth.newest.get(&item.name) {
                    let id = format!("backup:{}", item.name);
                    if !s.is_running(&id) {
                        s.set_last(&id, crate::runner::oldest_newest(n));
                    }
                }
            }
        }
        *self.shared.truth() = truth;
        self.last_refresh = tokio::time::Instant::now();
    }

    /// Maintenance jobs leave no snapshot: their last success and the
    /// metrics' last runs come from the history.
    fn seed_from_history(&mut self) {
        let policy = self.shared.policy();
        let mut s = self.shared.scheduler();
        let mut m = self.shared.metrics();
        let ids: Vec<String> = s.specs().map(|j| j.id.clone()).collect();
        for id in ids.iter().filter(|i| !i.starts_with("backup:")) {
            if let Ok(last) = self.history.last_success(id, None) {
                s.set_last(id, last);
            }
        }
        for r in policy.repositories.keys() {
            if let Ok(t) = self.history.last_success(&format!("check:{r}"), Some(r)) {
                m.set_check_success(r, t);
            }
        }
        for item in &policy.items {
            for t in &item.targets {
                if let Ok(at) = self.history.last_run(&format!("backup:{}", item.name), t) {
                    m.set_last_run(&item.name, t, at);
                }
            }
        }
    }

    fn evaluate_rpo(&mut self, now: chrono::DateTime<Utc>) {
        let policy = self.shared.policy();
        let truth = self.shared.truth().clone();
        for item in &policy.items {
            let Some(rpo) = item.rpo else { continue };
            let e = eval_rpo(truth.recovery_point(&item.name), rpo, now);
            self.shared.metrics().set_rpo(&item.name, e.breached);
            self.alerts
                .rpo(&item.name, item.priority, e.breached, e.age, rpo, now);
        }
    }

    fn next_rpo_breach(&self, now: chrono::DateTime<Utc>) -> Option<chrono::DateTime<Utc>> {
        let policy = self.shared.policy();
        let truth = self.shared.truth();
        policy
            .items
            .iter()
            .filter_map(|i| Some(eval_rpo(truth.recovery_point(&i.name), i.rpo?, now)))
            .filter_map(|e| e.breach_at)
            .min()
    }

    fn start_due(&mut self, now: chrono::DateTime<Utc>) {
        if self.shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let starts = self.shared.scheduler().select(now, &self.gate);
        let policy = self.shared.policy();
        for start in starts {
            let id = start.spec.id.clone();
            let token = CancelToken::new();
            self.running.insert(id.clone(), token.clone());
            self.alerts.job_started(&start.spec);
            tracing::info!("starting {id} ({})", start.trigger.as_str());
            let cx = JobContext {
                policy: policy.clone(),
                pool: self.shared.pool.clone(),
                gate: self.gate.clone(),
            };
            let tx = self.shared.tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("job {id}"))
                .spawn(move || {
                    let job = std::panic::AssertUnwindSafe(|| {
                        run_job(&cx, start.spec, start.trigger, start.guard, &token)
                    });
                    let msg = match std::panic::catch_unwind(job) {
                        Ok(report) => Msg::Done(Box::new(report)),
                        Err(_) => Msg::Panicked(id),
                    };
                    let _ = tx.blocking_send(msg);
                });
            if let Err(e) = spawned {
                tracing::error!("cannot start a job thread: {e}");
            }
        }
        let n = self.shared.scheduler().running();
        self.shared.metrics().set_running(n);
    }

    fn maybe_refresh(&mut self) {
        if self.refreshing
            || self.shared.stopping.load(Ordering::SeqCst)
            || self.last_refresh.elapsed() < REFRESH_EVERY
        {
            return;
        }
        self.refreshing = true;
        let create = std::mem::take(&mut self.create_pending);
        let (p, pool, tx) = (
            self.shared.policy(),
            self.shared.pool.clone(),
            self.shared.tx.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let t = Truth::read(&p, &pool, create);
            let _ = tx.blocking_send(Msg::Refreshed(Box::new(t)));
        });
    }

    /// Until the next due job, RPO breach or refresh; at most [`MAX_SLEEP`].
    /// Jobs that are due but cannot start (limits, busy repositories) wait
    /// for a job to end, which is an event.
    fn sleep_for(&self, now: chrono::DateTime<Utc>) -> Duration {
        let next = [
            self.shared.scheduler().next_wake(now),
            self.next_rpo_breach(now),
        ]
        .into_iter()
        .flatten()
        .filter(|t| *t > now)
        .min();
        let mut d = next
            .and_then(|t| (t - now).to_std().ok())
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP);
        if !self.refreshing {
            d = d.min(REFRESH_EVERY.saturating_sub(self.last_refresh.elapsed()));
        }
        // Round up a little: waking just before a due time would loop.
        d + Duration::from_millis(5)
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Done(report) => self.finished(*report),
            Msg::Panicked(id) => {
                tracing::error!("job {id} panicked (a bug; please report it)");
                self.running.remove(&id);
                let mut s = self.shared.scheduler();
                let last = s
                    .states(Utc::now())
                    .into_iter()
                    .find(|j| j.id == id)
                    .and_then(|j| j.last);
                s.finished(&id, last);
            }
            Msg::RunNow(id, reply) => {
                let r = if self.shared.stopping.load(Ordering::SeqCst) {
                    Err(crate::scheduler::RequestError::Unknown(
                        "the daemon is stopping".into(),
                    ))
                } else {
                    self.shared.scheduler().request(&id, Trigger::Manual)
                };
                let _ = reply.send(r);
            }
            Msg::Changed(id, at) => self.shared.scheduler().changed(&id, at),
            Msg::Refreshed(t) => {
                self.refreshing = false;
                self.apply_truth(*t);
            }
        }
    }

    fn finished(&mut self, report: JobReport) {
        let id = report.spec.id.clone();
        self.running.remove(&id);
        let policy = self.shared.policy();
        for r in &report.runs {
            tracing::info!(
                "{} at {}: {}{}",
                r.job,
                r.target,
                r.result.as_str(),
                r.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            );
        }
        if let Err(e) = self.history.add(
            &report.runs,
            policy.daemon.history_keep,
            policy.daemon.history_max_runs,
        ) {
            tracing::error!("{e}");
        }
        {
            let mut m = self.shared.metrics();
            for r in &report.runs {
                m.record(r);
            }
            if let Some(item) = report.spec.kind.item() {
                for (t, n) in &report.newest {
                    m.set_newest(item, t, *n);
                }
            }
            for (repo, size) in &report.sizes {
                m.set_repository_size(repo, *size);
            }
        }
        if let Some(item) = report.spec.kind.item() {
            if !report.newest.is_empty() {
                self.shared
                    .truth()
                    .newest
                    .insert(item.to_string(), report.newest.clone());
            }
        }
        {
            let mut s = self.shared.scheduler();
            let previous = s
                .states(Utc::now())
                .into_iter()
                .find(|j| j.id == id)
                .and_then(|j| j.last);
            s.finished(&id, report.last(previous));
        }
        let priority = report
            .spec
            .kind
            .item()
            .and_then(|i| policy.item(i))
            .map(|i| i.priority)
            .unwrap_or_default();
        self.alerts.job_finished(&report, priority);
        if let Some(n) = self.alerts.notifier() {
            self.shared
                .metrics()
                .set_notifications_failed(n.failed_total());
        }
    }

    fn reload(&mut self) {
        sd_notify("RELOADING=1");
        let path = self.shared.policy_path.clone();
        match load_policy(&path) {
            Err(e) => {
                let detail = match &e {
                    DaemonError::Policy { source, .. } => source.to_string(),
                    other => other.to_string(),
                };
                tracing::error!(
                    "reloading {} failed; the running policy stays in force:\n{detail}",
                    path.display()
                );
            }
            Ok(p) => {
                self.shared.scheduler().reconfigure(&p.daemon, jobs_of(&p));
                {
                    let mut m = self.shared.metrics();
                    m.sync_policy(&p);
                }
                self.alerts.reconfigure(&p);
                if let Some(n) = self.alerts.notifier() {
                    let mut m = self.shared.metrics();
                    for t in n.target_names() {
                        m.declare_notification_target(&t);
                    }
                }
                self.watchers = Watchers::new(&p, self.shared.tx.clone());
                *self
                    .shared
                    .policy
                    .write()
                    .unwrap_or_else(|e| e.into_inner()) = Arc::new(p);
                self.seed_from_history();
                // Read the repositories again soon (new items, new targets).
                self.create_pending = true;
                self.last_refresh = tokio::time::Instant::now() - REFRESH_EVERY;
                tracing::info!("reloaded {}", path.display());
            }
        }
        sd_notify("READY=1");
    }

    async fn shutdown(&mut self, rx: &mut mpsc::Receiver<Msg>) -> Result<(), DaemonError> {
        sd_notify("STOPPING=1");
        self.shared.stopping.store(true, Ordering::SeqCst);
        let grace = self.shared.policy().daemon.shutdown_grace;
        tracing::info!(
            "stopping: cancelling {} running jobs (grace {})",
            self.running.len(),
            humantime::format_duration(grace)
        );
        for t in self.running.values() {
            t.cancel();
        }
        let deadline = tokio::time::Instant::now() + grace;
        while !self.running.is_empty() {
            tokio::select! {
                Some(msg) = rx.recv() => match msg {
                    Msg::Done(_) | Msg::Panicked(_) => self.handle(msg),
                    Msg::RunNow(_, reply) => {
                        let _ = reply.send(Err(crate::scheduler::RequestError::Unknown("the daemon is stopping".into())));
                    }
                    _ => {}
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        if self.running.is_empty() {
            tracing::info!("stopped");
            Ok(())
        } else {
            let mut names: Vec<&str> = self.running.keys().map(String::as_str).collect();
            names.sort_unstable();
            Err(DaemonError::Unfinished(names.join(", ")))
        }
    }
}

/// Where the daemon keeps its state when `--state-dir` is not given:
/// `$STATE_DIRECTORY` (systemd's `StateDirectory=`; the first of a
/// colon-separated list), `/var/lib/bunker` for root, else
/// `$XDG_STATE_HOME/bunker`, else `~/.local/state/bunker`.
pub fn default_state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("STATE_DIRECTORY").filter(|d| !d.is_empty()) {
        let first = d
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or("")
            .to_string();
        if !first.is_empty() {
            return PathBuf::from(first);
        }
    }
    if rustix_is_root() {
        return PathBuf::from("/var/lib/bunker");
    }
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(x).join("bunker");
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(h) => PathBuf::from(h).join(".local/state/bunker"),
        None => PathBuf::from("/var/lib/bunker"),
    }
}

fn rustix_is_root() -> bool {
    rustix::process::geteuid().is_root()
}
