//! The steps of a runbook run: where each restores (a sandbox in a drill,
//! in place with a safety copy when executing), the PostgreSQL servers
//! started, the environment of commands, and the clean-up at the end.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bunker_policy::runbook::{Action, PgTarget};
use bunker_policy::{Item, PasswordSource};
use bunker_repo::lock::RepoLock;
use bunker_repo::pg::base::{self, BaseBackup};
use bunker_repo::pg::restore::{self as pgrestore, RecoveryTarget};
use bunker_repo::pg::wal_archive;
use bunker_repo::progress::NoProgress;
use bunker_repo::restore::{self, RestoreOptions};
use bunker_repo::snapshots::{self, SnapshotEntry};
use bunker_repo::Repository;
use bunker_sources::postgres::server;
use chrono::{DateTime, FixedOffset};

use super::rollback::SafetyCopies;
use super::{item_of, item_repo, probe, Mode, RunOptions};
use crate::error::{Context, EngineError, Result};
use crate::pool::RepoPool;
use crate::retention::item_filter;

/// What a finished step reports.
pub(crate) struct Done {
    pub detail: String,
    pub snapshot: Option<String>,
    pub data_time: Option<DateTime<FixedOffset>>,
}

impl Done {
    fn said(detail: String) -> Done {
        Done {
            detail,
            snapshot: None,
            data_time: None,
        }
    }
}

/// A PostgreSQL server started by the run.
pub(crate) struct Server {
    pub bin: PathBuf,
    pub data_dir: PathBuf,
    /// Socket directory (a drill) or host.
    pub host: String,
    pub port: u16,
}

/// The state of one run.
pub(crate) struct State {
    mode: Mode,
    pub(super) sandbox: Option<PathBuf>,
    keep: bool,
    safety: SafetyCopies,
    servers: Vec<Server>,
    /// Environment of commands: the mode, the sandbox, restored directories.
    pub(super) env: Vec<(String, String)>,
}

impl State {
    pub fn new(opts: &RunOptions<'_>) -> Result<State> {
        let mut env = vec![(
            "BUNKER_RUNBOOK_MODE".to_string(),
            opts.mode.as_str().to_string(),
        )];
        let sandbox = match opts.mode {
            Mode::Execute => None,
            Mode::Drill => {
                let root = opts.sandbox_root.clone().unwrap_or_else(std::env::temp_dir);
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.subsec_nanos())
                    .unwrap_or(0);
                let dir = root.join(format!("bunker-runbook-{}-{nanos:08x}", std::process::id()));
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating the sandbox {}", dir.display()))?;
                env.push(("BUNKER_RUNBOOK_SANDBOX".into(), dir.display().to_string()));
                Some(dir)
            }
        };
        Ok(State {
            mode: opts.mode,
            sandbox,
            keep: opts.keep_sandbox,
            safety: SafetyCopies::default(),
            servers: Vec::new(),
            env,
        })
    }

    /// Where step `n` restores: a sandbox directory in a drill, else
    /// `target` after its content was set aside.
    fn destination(&mut self, n: usize, what: &str, target: &Path) -> Result<PathBuf> {
        match &self.sandbox {
            Some(s) => {
                let d = s.join(format!("step{n}-{what}"));
                std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
                Ok(d)
            }
            None => {
                self.safety.take(target)?;
                Ok(target.to_path_buf())
            }
        }
    }

    /// The server probes and commands talk to: the newest started.
    pub fn server(&self) -> Option<&Server> {
        self.servers.last()
    }

    /// End the run: stop drill servers (and, after a failure, every server
    /// started), then roll back or commit the safety copies, then remove a
    /// drill's sandbox unless kept. Returns what was rolled back.
    pub fn finish(&mut self, failed: bool, opts: &RunOptions<'_>) -> Vec<String> {
        if self.mode == Mode::Drill || failed {
            for s in self.servers.drain(..).rev() {
                if let Err(e) = stop_server(&s) {
                    (opts.progress)(&format!(
                        "cannot stop the PostgreSQL server in {}: {e}",
                        s.data_dir.display()
                    ));
                }
            }
        }
        let safety = std::mem::take(&mut self.safety);
        let mut rolled_back = Vec::new();
        if failed {
            let (done, problems) = safety.roll_back();
            for p in problems {
                (opts.progress)(&format!("ROLLBACK PROBLEM: {p}"));
            }
            for d in &done {
                (opts.progress)(&format!("rolled back: {d} has its old content again"));
            }
            rolled_back = done;
        } else {
            for p in safety.commit() {
                (opts.progress)(&p);
            }
        }
        if let Some(s) = &self.sandbox {
            if !self.keep {
                if let Err(e) = std::fs::remove_dir_all(s) {
                    (opts.progress)(&format!("cannot remove the sandbox {}: {e}", s.display()));
                }
            }
        }
        rolled_back
    }

    /// The sandbox when it is kept.
    pub fn sandbox_kept(&self) -> Option<PathBuf> {
        self.sandbox.clone().filter(|_| self.keep)
    }
}

fn stop_server(s: &Server) -> Result<()> {
    let out = Command::new(s.bin.join("pg_ctl"))
        .arg("-D")
        .arg(&s.data_dir)
        .args(["-m", "fast", "-w", "stop"])
        .stdin(Stdio::null())
        .output()
        .context("running pg_ctl stop")?;
    if !out.status.success() {
        return Err(EngineError::Invalid(format!(
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// One line saying what a step does.
pub(crate) fn describe(a: &Action) -> String {
    match a {
        Action::Restore {
            item,
            snapshot,
            time,
            target,
        } => {
            let which = match (snapshot, time) {
                (_, Some(t)) => format!("the newest snapshot at or before {t}"),
                (Some(s), None) => format!("snapshot {s}"),
                (None, None) => "the latest snapshot".into(),
            };
            format!("restore {which} of {item} into {}", target.display())
        }
        Action::PgRestore {
            item,
            target,
            data_dir,
            start,
        } => format!(
            "restore {item} to {} into {}{}",
            match target {
                PgTarget::Latest => "the end of the archived WAL".to_string(),
                PgTarget::Time(t) => format!("time {t}"),
                PgTarget::Xid(x) => format!("transaction {x}"),
                PgTarget::Name(n) => format!("restore point {n}"),
            },
            data_dir.display(),
            if *start { ", then start it" } else { "" }
        ),
        Action::Command { run, timeout } => format!(
            "run `{run}` (at most {})",
            humantime::format_duration(*timeout)
        ),
        Action::WaitFor { probe, timeout } => format!(
            "wait for {} (at most {})",
            probe::describe(probe),
            humantime::format_duration(*timeout)
        ),
        Action::Confirm { message } => format!("ask: {message}"),
        Action::Notify { message } => format!("notify: {message}"),
    }
}

/// The snapshot of `item` a restore step names.
pub(crate) fn choose_snapshot(
    repo: &Repository,
    item: &Item,
    snapshot: Option<&str>,
    time: Option<&str>,
) -> Result<SnapshotEntry> {
    let filter = item_filter(item);
    if let Some(t) = time {
        let t = pgrestore::parse_target_time(t)?;
        return snapshots::filtered(repo, &filter, None)?
            .into_iter()
            .rfind(|e| e.snapshot.time <= t)
            .ok_or_else(|| {
                EngineError::Invalid(format!(
                    "no snapshot of item {} at or before {t}",
                    item.name
                ))
            });
    }
    Ok(snapshots::find(
        repo,
        snapshot.unwrap_or("latest"),
        &filter,
    )?)
}

fn recovery_target(t: &PgTarget) -> Result<RecoveryTarget> {
    Ok(match t {
        PgTarget::Latest => RecoveryTarget::Latest,
        PgTarget::Time(s) => RecoveryTarget::Time {
            time: pgrestore::parse_target_time(s)?,
            text: s.clone(),
        },
        PgTarget::Xid(x) => RecoveryTarget::Xid(*x),
        PgTarget::Name(n) => RecoveryTarget::Name(n.clone()),
    })
}

/// The base backup of `item` a pg_restore step would use.
pub(crate) fn choose_base_backup(
    repo: &Repository,
    item: &Item,
    target: &PgTarget,
) -> Result<BaseBackup> {
    let all = base::list_base_backups(repo)?;
    let tag = item.tag();
    let mine: Vec<BaseBackup> = if all.iter().any(|b| b.entry.snapshot.tags.contains(&tag)) {
        all.into_iter()
            .filter(|b| b.entry.snapshot.tags.contains(&tag))
            .collect()
    } else {
        all
    };
    let sys = mine.last().and_then(|b| b.info.system_id);
    let same: Vec<BaseBackup> = mine
        .into_iter()
        .filter(|b| b.info.system_id == sys)
        .collect();
    Ok(pgrestore::choose(&same, &recovery_target(target)?)?.clone())
}

/// The archived WAL from `start` on: `N file(s), FIRST .. LAST`.
pub(crate) fn wal_range(repo: &Repository, start: &str) -> Option<String> {
    let names: Vec<String> = wal_archive::list(repo)
        .ok()?
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| !n.ends_with(".history") && n.as_str() >= start)
        .collect();
    match (names.first(), names.last()) {
        (Some(a), Some(b)) => Some(format!("{} file(s), {a} .. {b}", names.len())),
        _ => Some("none archived".into()),
    }
}

/// `<bunker> -r LOCATION [-o k=v] <password option> pg wal-fetch %f %p`.
fn restore_command(pool: &RepoPool<'_>, repo_name: &str, exe: &Path) -> Result<String> {
    use bunker_sources::postgres::process::shell_quote;
    let cfg = pool.policy().repositories.get(repo_name).ok_or_else(|| {
        EngineError::Invalid(format!("repository {repo_name} is not in the policy"))
    })?;
    let mut words: Vec<std::ffi::OsString> =
        vec![exe.into(), "-r".into(), cfg.location.clone().into()];
    for (k, v) in &cfg.options {
        words.push("-o".into());
        words.push(format!("{k}={v}").into());
    }
    match &cfg.password {
        PasswordSource::File(p) => {
            words.push("--password-file".into());
            words.push(std::path::absolute(p).unwrap_or_else(|_| p.clone()).into());
        }
        PasswordSource::Command(c) => {
            words.push("--password-command".into());
            words.push(c.into());
        }
        PasswordSource::Env(name) => {
            words.push("--password-command".into());
            words.push(format!("printenv {name}").into());
        }
        PasswordSource::Plain(_) => {
            return Err(EngineError::Invalid(format!(
                "repository {repo_name} has an inline password, which is not written into PostgreSQL's \
                 restore_command: give it a password_file or password_command"
            )))
        }
    }
    let mut s: Vec<String> = words.iter().map(shell_quote).collect();
    s.extend(["pg".into(), "wal-fetch".into(), "%f".into(), "%p".into()]);
    Ok(s.join(" "))
}

fn free_loopback_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr().context("finding a free port")?.port())
}

/// Run one step.
pub(crate) fn run_step(
    pool: &mut RepoPool<'_>,
    st: &mut State,
    n: usize,
    action: &Action,
    opts: &RunOptions<'_>,
) -> Result<Done> {
    if opts.mode == Mode::Execute && action.is_destructive() && !opts.yes {
        let q = format!("step {n}: {} — go ahead?", describe(action));
        if !(opts.ask)(&q) {
            return Err(EngineError::Invalid(format!("step {n} was not confirmed")));
        }
    }
    match action {
        Action::Restore {
            item,
            snapshot,
            time,
            target,
        } => {
            let item = item_of(pool, item)?;
            let o = item_repo(pool, item)?;
            let _lock = RepoLock::acquire_read(&o.repo)?;
            o.repo.load_index()?;
            let e = choose_snapshot(&o.repo, item, snapshot.as_deref(), time.as_deref())?;
            let dest = st.destination(n, &item.name, target)?;
            let sub_path = item
                .files()
                .filter(|f| f.paths.len() == 1)
                .map(|f| f.paths[0].display().to_string());
            let ropts = RestoreOptions {
                target: dest.clone(),
                sub_path,
                ..Default::default()
            };
            let sum = restore::restore(&o.repo, &e, &ropts, &NoProgress)?;
            if !sum.errors.is_empty() {
                return Err(EngineError::Invalid(format!(
                    "{} file(s) could not be restored, the first: {}: {}",
                    sum.errors.len(),
                    sum.errors[0].0,
                    sum.errors[0].1
                )));
            }
            st.env.push((
                format!("BUNKER_RUNBOOK_STEP{n}_DIR"),
                dest.display().to_string(),
            ));
            Ok(Done {
                detail: format!(
                    "restored snapshot {} ({} files, {} bytes) into {}",
                    e.id.short(),
                    sum.files,
                    sum.bytes,
                    dest.display()
                ),
                snapshot: Some(e.id.to_string()),
                data_time: Some(e.snapshot.time),
            })
        }
        Action::PgRestore {
            item,
            target,
            data_dir,
            start,
        } => pg_restore(pool, st, n, item, target, data_dir, *start, opts),
        Action::Command { run, timeout } => {
            let dir = crate::execute::policy_dir(pool.policy());
            super::command::run(st, run, *timeout, dir.as_deref(), opts).map(Done::said)
        }
        Action::WaitFor { probe, timeout } => {
            probe::wait(st, probe, *timeout, &opts.cancel).map(Done::said)
        }
        Action::Confirm { message } => match opts.mode {
            Mode::Drill => Ok(Done::said("a drill passes confirmations".into())),
            Mode::Execute if opts.yes => Ok(Done::said("passed by --yes".into())),
            Mode::Execute => {
                if (opts.ask)(message) {
                    Ok(Done::said("confirmed".into()))
                } else {
                    Err(EngineError::Invalid(format!("not confirmed: {message}")))
                }
            }
        },
        Action::Notify { message } => notify(pool.policy(), message, opts),
    }
}

#[allow(clippy::too_many_arguments)]
fn pg_restore(
    pool: &mut RepoPool<'_>,
    st: &mut State,
    n: usize,
    item: &str,
    target: &PgTarget,
    data_dir: &Path,
    start: bool,
    opts: &RunOptions<'_>,
) -> Result<Done> {
    let item = item_of(pool, item)?;
    let o = item_repo(pool, item)?;
    let command = restore_command(pool, &o.name, &opts.bunker_exe)?;
    if opts.mode == Mode::Execute {
        if let Some(pid) = running_postmaster(data_dir) {
            return Err(EngineError::Invalid(format!(
                "PostgreSQL (pid {pid}) is running in {}: stop it first (a command step before this one)",
                data_dir.display()
            )));
        }
    }
    let rt = recovery_target(target)?;
    let (backup, entries) = {
        let _lock = RepoLock::acquire_read(&o.repo)?;
        o.repo.load_index()?;
        let b = choose_base_backup(&o.repo, item, target)?;
        let dest = st.destination(n, &item.name, data_dir)?;
        let entries = pgrestore::unpack(&o.repo, &b, &dest)?;
        (b, (entries, dest))
    };
    let (entries, dest) = entries;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("setting the mode of {}", dest.display()))?;
    let mut extra = Vec::new();
    let drill = opts.mode == Mode::Drill;
    let port = if drill {
        let port = free_loopback_port()?;
        extra.push(("port".to_string(), port.to_string()));
        extra.push(("listen_addresses".to_string(), "127.0.0.1".to_string()));
        extra.push((
            "unix_socket_directories".to_string(),
            dest.display().to_string(),
        ));
        extra.push(("archive_mode".to_string(), "off".to_string()));
        Some(port)
    } else {
        None
    };
    let settings = pgrestore::recovery_settings(&rt, &command, "promote", &extra);
    pgrestore::write_recovery_config(&dest, &settings)?;
    let mut detail = format!(
        "restored base backup {} ({entries} entries) into {}",
        backup.entry.id.short(),
        dest.display()
    );
    if drill || start {
        let bin = server::find_server_bin(&dest, None, &server::SERVER_PROGRAMS)?;
        let log = dest.join("bunker-recovery.log");
        let mut progress = |line: &str| (opts.progress)(line);
        let timeout = Duration::from_secs(3600);
        let res = server::start_and_wait_promoted(&bin, &dest, &log, timeout, &mut progress);
        let (host, port) = match port {
            Some(p) => (dest.display().to_string(), p),
            None => {
                let pg = item.postgres();
                (
                    pg.and_then(|p| p.host.clone())
                        .unwrap_or_else(|| "localhost".into()),
                    pg.and_then(|p| p.port).unwrap_or(5432),
                )
            }
        };
        // Registered before the result is checked: a server that started
        // and then failed to finish recovery is still stopped at the end.
        st.servers.push(Server {
            bin,
            data_dir: dest.clone(),
            host: host.clone(),
            port,
        });
        res.map_err(|e| EngineError::failed("waiting for PostgreSQL recovery", e))?;
        st.env.push(("PGHOST".into(), host.clone()));
        st.env.push(("PGPORT".into(), port.to_string()));
        st.env.push(("BUNKER_RUNBOOK_PGHOST".into(), host));
        st.env
            .push(("BUNKER_RUNBOOK_PGPORT".into(), port.to_string()));
        detail.push_str(&format!("; recovery finished, server on port {port}"));
    }
    st.env.push((
        format!("BUNKER_RUNBOOK_STEP{n}_DIR"),
        dest.display().to_string(),
    ));
    Ok(Done {
        detail,
        snapshot: Some(backup.entry.id.to_string()),
        data_time: Some(match &rt {
            RecoveryTarget::Time { time, .. } => *time,
            _ => backup.end_time,
        }),
    })
}

/// The pid of a live postmaster of `data_dir` (a stale `postmaster.pid`
/// left by a crash does not count).
fn running_postmaster(data_dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let pid: u32 = text.lines().next()?.trim().parse().ok()?;
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

/// A `notify` step: the message goes to every notification target of the
/// policy (their event filters do not apply: a runbook step says what it
/// says), marked as a drill in drill mode. A failed delivery fails the
/// step, so an execute that cannot reach anybody stops and says so.
fn notify(policy: &bunker_policy::Policy, message: &str, opts: &RunOptions<'_>) -> Result<Done> {
    let text = match opts.mode {
        Mode::Drill => format!("[drill] {message}"),
        Mode::Execute => message.to_string(),
    };
    (opts.progress)(&format!("NOTIFY: {text}"));
    if policy.notifications.is_empty() {
        tracing::warn!(target: "bunker::runbook", "NOTIFY (no notification targets in the policy): {text}");
        return Ok(Done::said(format!(
            "no notification targets; logged: {text}"
        )));
    }
    let notifier = bunker_notify::Notifier::new(&policy.notifications)
        .map_err(|e| EngineError::Invalid(format!("notify step: {e}")))?;
    let notice = bunker_notify::Notice::new(
        bunker_policy::EventKind::Warning,
        "bunker runbook",
        text.clone(),
        chrono::Utc::now(),
    );
    let failed: Vec<String> = notifier
        .send_all(&notice)
        .into_iter()
        .filter(|d| !d.ok)
        .map(|d| format!("{}: {}", d.target, d.error.unwrap_or_default()))
        .collect();
    if failed.is_empty() {
        Ok(Done::said(format!(
            "notified {} target(s): {text}",
            notifier.target_names().len()
        )))
    } else {
        Err(EngineError::Invalid(format!(
            "notify step: delivery failed ({})",
            failed.join("; ")
        )))
    }
}
