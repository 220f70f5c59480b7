//! Native SFTP backend (`sftp:` locations) on the `openssh` and
//! `openssh-sftp-client` crates, driven by an owned tokio runtime.
//!
//! Connections: up to `connections` (default 4, at most 8) ssh connections, each an
//! OpenSSH control master with one sftp channel, opened lazily: a new one only when
//! every open one is busy. Every connection pipelines its requests (large reads and
//! writes go out as up to 16 requests in flight), so one connection already serves
//! several operations at once. `connections=N` also caps the operations in flight.
//!
//! Durability: a file is written under a `.`-name beside its target, fsynced with
//! OpenSSH's `fsync@openssh.com` extension, closed and renamed into place with
//! `posix-rename@openssh.com` (`write`) or hard-linked with `hardlink@openssh.com`
//! (`write_new`, which fails if the name exists). SFTP cannot fsync a directory.
//!
//! Process lifetime: masters run with `ControlPersist` of a few seconds, so a master
//! exits shortly after its last channel closed, also when bunker is killed (the
//! channel ends with the pipes of the killed process). Dropping the storage closes
//! every channel and tells every master to exit.

use std::future::Future;
use std::io::SeekFrom;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use openssh::{ControlPersist, SessionBuilder};
use openssh_sftp_client::fs::Fs;
use openssh_sftp_client::metadata::MetaData;
use openssh_sftp_client::{Error as SftpError, Sftp, SftpOptions as ClientOptions};
use tokio::io::AsyncSeekExt;
use tokio::task::JoinSet;

use crate::error::{ErrorKind, StorageError};
use crate::file_type::{FileInfo, FileType};
use crate::options::Options;
use crate::sftp::{KnownHosts, SftpLocation};
use crate::sftp_error::{is_status, map_sftp, map_ssh};
use crate::sftp_preflight::Preflight;
use crate::Storage;

#[path = "sftp_dirs.rs"]
mod dirs;
#[path = "sftp_write.rs"]
mod write;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_CONNECTIONS: usize = 4;
const MAX_CONNECTIONS: usize = 8;
/// Seconds a control master stays up without any channel (`ControlPersist`).
const MASTER_IDLE_SECS: usize = 3;
/// `ServerAliveInterval`: a dead server is noticed after three unanswered probes.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// Bytes per read or write request (below OpenSSH's 255 KiB limit).
const CHUNK: u64 = 252 * 1024;
/// Requests one read or write keeps in flight.
const WINDOW: usize = 16;
const FILE_MODE: u16 = 0o600;
const DIR_MODE: u16 = 0o700;
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// One ssh connection (control master and sftp channel), opened on demand.
#[derive(Default)]
struct Slot {
    conn: Mutex<Option<Arc<Sftp>>>,
    connecting: tokio::sync::Mutex<()>,
    busy: AtomicUsize,
}

impl Slot {
    fn current(&self) -> Option<Arc<Sftp>> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn is_open(&self) -> bool {
        self.conn
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Forgets `sftp` if it is still this slot's connection (it failed).
    fn discard(&self, sftp: &Arc<Sftp>) {
        let mut cur = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if cur.as_ref().is_some_and(|c| Arc::ptr_eq(c, sftp)) {
            *cur = None;
        }
    }

    fn busy(&self) -> usize {
        self.busy.load(Ordering::Relaxed)
    }
}

/// A repository directory on an SFTP server, reached through the system `ssh`.
pub struct SftpStorage {
    rt: Option<tokio::runtime::Runtime>,
    label: String,
    root: String,
    host: String,
    builder: SessionBuilder,
    timeout: Duration,
    preflight: Preflight,
    slots: Vec<Slot>,
    limit: Option<tokio::sync::Semaphore>,
    warned_fsync: AtomicBool,
    warned_rename: AtomicBool,
}

impl std::fmt::Debug for SftpStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpStorage")
            .field("location", &self.label)
            .field("connections", &self.slots.len())
            .finish()
    }
}

/// A connection lent to one operation; counts as busy until dropped.
struct Lease<'a> {
    sftp: Arc<Sftp>,
    slot: &'a Slot,
    _permit: Option<tokio::sync::SemaphorePermit<'a>>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.slot.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One operation on `path` (repository-relative, for messages) over a lease.
struct Op<'a> {
    s: &'a SftpStorage,
    lease: Lease<'a>,
    path: &'a str,
}

impl Op<'_> {
    fn sftp(&self) -> &Sftp {
        &self.lease.sftp
    }

    fn fs(&self) -> Fs {
        self.lease.sftp.fs()
    }

    /// False once the connection failed (further requests would fail too).
    fn usable(&self) -> bool {
        let cur = self.lease.slot.current();
        cur.is_some_and(|c| Arc::ptr_eq(&c, &self.lease.sftp))
    }

    /// Classifies a failure; a connection that failed (not just the request) is
    /// not lent out again.
    fn check<T>(&self, res: Result<T, SftpError>) -> Result<T, StorageError> {
        res.map_err(|e| {
            if !is_status(&e) {
                self.lease.slot.discard(&self.lease.sftp);
            }
            map_sftp(&e, &self.s.label, self.path)
        })
    }

    /// One request with the per-request timeout.
    async fn req<T>(
        &self,
        fut: impl Future<Output = Result<T, SftpError>>,
    ) -> Result<T, StorageError> {
        let res = tokio::time::timeout(self.s.timeout, fut).await;
        self.check(res.unwrap_or_else(|_| Err(timed_out(self.s.timeout))))
    }

    fn err(&self, kind: ErrorKind, message: impl Into<String>) -> StorageError {
        StorageError::new(kind, &self.s.label, self.path, message)
    }
}

fn timed_out(t: Duration) -> SftpError {
    SftpError::IOError(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer within {} s", t.as_secs_f64()),
    ))
}

/// `(offset, length)` of the requests covering `length` bytes at `offset`.
fn chunks(offset: u64, length: u64) -> Vec<(u64, u64)> {
    let end = offset + length;
    (0..length.div_ceil(CHUNK))
        .map(|i| {
            let o = offset + i * CHUNK;
            (o, CHUNK.min(end - o))
        })
        .collect()
}

fn is_dir(m: &MetaData) -> bool {
    m.file_type().is_some_and(|t| t.is_dir())
}

impl SftpStorage {
    /// Opens an `sftp:` repository. Nothing is connected until the first operation,
    /// which runs the preflight check (`ssh -s HOST sftp`) for clear errors first.
    pub fn open(loc: &SftpLocation, o: &Options) -> Result<Self, StorageError> {
        let label = loc.display();
        if loc.host.starts_with('-') {
            return Err(StorageError::invalid(
                label,
                "the host must not start with '-'",
            ));
        }
        let timeout = o.timeout.unwrap_or(DEFAULT_TIMEOUT);
        let mut b = SessionBuilder::default();
        b.known_hosts_check(match o.sftp.known_hosts {
            KnownHosts::Strict => openssh::KnownHosts::Strict,
            KnownHosts::Add => openssh::KnownHosts::Add,
            KnownHosts::Accept => openssh::KnownHosts::Accept,
        })
        .connect_timeout(timeout.max(Duration::from_secs(1)))
        .server_alive_interval(KEEPALIVE)
        .control_persist(ControlPersist::IdleFor(
            NonZeroUsize::new(MASTER_IDLE_SECS).unwrap_or(NonZeroUsize::MIN),
        ));
        if let Some(user) = &loc.user {
            b.user(user.clone());
        }
        if let Some(port) = loc.port {
            b.port(port);
        }
        if let Some(key) = &o.sftp.key {
            b.keyfile(key);
        }
        let n = o
            .connections
            .unwrap_or(DEFAULT_CONNECTIONS)
            .clamp(1, MAX_CONNECTIONS);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("bunker-sftp-io")
            .enable_all()
            .build()
            .map_err(|e| StorageError::from_io(&e, &label, ""))?;
        Ok(SftpStorage {
            rt: Some(rt),
            preflight: Preflight::new(loc, &o.sftp, timeout, &label),
            label,
            root: loc.path.clone(),
            host: loc.host.clone(),
            builder: b,
            timeout,
            slots: (0..n).map(|_| Slot::default()).collect(),
            limit: o.connections.map(tokio::sync::Semaphore::new),
            warned_fsync: AtomicBool::new(false),
            warned_rename: AtomicBool::new(false),
        })
    }

    fn block_on<F>(&self, fut: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        let Some(rt) = self.rt.as_ref() else {
            unreachable!("runtime is only taken in drop")
        };
        crate::runtime::block_on(rt, fut)
    }

    /// The server path of a repository-relative path.
    fn full(&self, rel: &str) -> String {
        match (self.root.trim_end_matches('/'), rel) {
            (root, "") => format!("{root}/").replace("//", "/"),
            (root, rel) => format!("{root}/{rel}"),
        }
    }

    /// Validates `name` and runs the preflight check; returns the relative path.
    fn rel(&self, t: FileType, name: &str) -> Result<String, StorageError> {
        t.check_name(name).map_err(|mut e| {
            e.backend = self.label.clone();
            e
        })?;
        self.preflight.check()?;
        Ok(t.path(name))
    }

    /// The least busy open connection; a new one only when all open ones are busy.
    fn pick(&self) -> &Slot {
        let open = self.slots.iter().filter(|s| s.is_open());
        let best = open.min_by_key(|s| s.busy());
        if let Some(b) = best.filter(|b| b.busy() == 0) {
            return b;
        }
        self.slots
            .iter()
            .find(|s| !s.is_open() && s.busy() == 0)
            .or(best)
            .unwrap_or_else(|| {
                let all = self.slots.iter();
                all.min_by_key(|s| s.busy()).unwrap_or(&self.slots[0])
            })
    }

    async fn op<'a>(&'a self, path: &'a str) -> Result<Op<'a>, StorageError> {
        let permit = match &self.limit {
            Some(sem) => Some(sem.acquire().await.map_err(|_| {
                StorageError::new(ErrorKind::Other, &self.label, path, "storage closed")
            })?),
            None => None,
        };
        let slot = self.pick();
        slot.busy.fetch_add(1, Ordering::Relaxed);
        let sftp = match slot.current() {
            Some(s) => s,
            None => {
                let _connecting = slot.connecting.lock().await;
                match slot.current() {
                    Some(s) => s,
                    None => match self.connect().await {
                        Ok(s) => {
                            let s = Arc::new(s);
                            *slot.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(s.clone());
                            s
                        }
                        Err(e) => {
                            slot.busy.fetch_sub(1, Ordering::Relaxed);
                            return Err(e);
                        }
                    },
                }
            }
        };
        let lease = Lease {
            sftp,
            slot,
            _permit: permit,
        };
        Ok(Op {
            s: self,
            lease,
            path,
        })
    }

    async fn connect(&self) -> Result<Sftp, StorageError> {
        let session = self
            .builder
            .connect(&self.host)
            .await
            .map_err(|e| map_ssh(&e, &self.label))?;
        match tokio::time::timeout(
            self.timeout,
            Sftp::from_session(session, ClientOptions::new()),
        )
        .await
        {
            Ok(Ok(sftp)) => Ok(sftp),
            Ok(Err(e)) => Err(map_sftp(&e, &self.label, "")),
            Err(_) => Err(map_sftp(&timed_out(self.timeout), &self.label, "")),
        }
    }

    /// Runs `futs` with up to [`WINDOW`] in flight, each with the request timeout;
    /// results in order, or the first error.
    async fn pipelined<T, F>(&self, futs: Vec<F>) -> Result<Vec<T>, SftpError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, SftpError>> + Send + 'static,
    {
        let mut out: Vec<Option<T>> = (0..futs.len()).map(|_| None).collect();
        let mut pending = futs.into_iter().enumerate();
        let mut set = JoinSet::new();
        loop {
            while set.len() < WINDOW {
                let Some((i, f)) = pending.next() else { break };
                let t = self.timeout;
                set.spawn(async move { (i, tokio::time::timeout(t, f).await) });
            }
            match set.join_next().await {
                None => break,
                Some(Ok((i, Ok(Ok(v))))) => out[i] = Some(v),
                Some(Ok((_, Ok(Err(e))))) => return Err(e),
                Some(Ok((_, Err(_)))) => return Err(timed_out(self.timeout)),
                Some(Err(e)) => return Err(SftpError::TaskJoinError(e)),
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// The size of the file at `full`, `None` if missing.
    async fn stat_full(&self, op: &Op<'_>, full: &str) -> Result<Option<u64>, StorageError> {
        match op.req(op.fs().metadata(full)).await {
            Ok(m) if is_dir(&m) => Err(op.err(ErrorKind::Invalid, "is a directory, not a file")),
            Ok(m) => Ok(Some(m.len().unwrap_or(0))),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads the whole file (`range` `None`) or exactly `length` bytes at `offset`.
    async fn read_async(
        &self,
        rel: &str,
        range: Option<(u64, u64)>,
    ) -> Result<Bytes, StorageError> {
        let op = self.op(rel).await?;
        let mut file = op.req(op.sftp().open(self.full(rel))).await?;
        let size = op.req(file.metadata()).await?.len();
        let size =
            size.ok_or_else(|| op.err(ErrorKind::Other, "the server reports no file size"))?;
        let (offset, length) = range.unwrap_or((0, size));
        match offset.checked_add(length) {
            Some(end) if end <= size => {}
            _ => {
                return Err(op.err(
                    ErrorKind::Invalid,
                    format!(
                        "short read: range {offset}+{length} extends past the end of the {size}-byte file (truncated or corrupt file?)"
                    ),
                ))
            }
        }
        let futs = chunks(offset, length)
            .into_iter()
            .map(|(o, n)| {
                let mut f = file.clone();
                async move {
                    f.seek(SeekFrom::Start(o)).await?;
                    let n = usize::try_from(n).unwrap_or(usize::MAX);
                    f.read_all(n, BytesMut::new()).await
                }
            })
            .collect();
        let parts = op.check(self.pipelined(futs).await)?;
        let _ = op.req(file.close()).await;
        let mut out = BytesMut::with_capacity(usize::try_from(length).unwrap_or(0));
        for p in parts {
            out.extend_from_slice(&p);
        }
        Ok(out.freeze())
    }

    async fn remove_async(&self, rel: &str) -> Result<(), StorageError> {
        let op = self.op(rel).await?;
        op.req(op.fs().remove_file(self.full(rel))).await
    }

    async fn stat_async(&self, rel: &str) -> Result<Option<u64>, StorageError> {
        let op = self.op(rel).await?;
        self.stat_full(&op, &self.full(rel)).await
    }

    /// Closes every connection: the sftp channel ends, then its master is told to exit.
    async fn close_all(conns: Vec<Arc<Sftp>>) {
        let mut set = JoinSet::new();
        for c in conns {
            if let Ok(sftp) = Arc::try_unwrap(c) {
                set.spawn(async move {
                    // On timeout the session is dropped, which also runs `ssh -O exit`.
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sftp.close()).await;
                });
            }
        }
        while set.join_next().await.is_some() {}
    }
}

impl Drop for SftpStorage {
    fn drop(&mut self) {
        let conns: Vec<Arc<Sftp>> = self
            .slots
            .iter()
            .filter_map(|s| s.conn.lock().unwrap_or_else(|p| p.into_inner()).take())
            .collect();
        if !conns.is_empty() {
            self.block_on(Self::close_all(conns));
        }
        let Some(rt) = self.rt.take() else { return };
        if tokio::runtime::Handle::try_current().is_ok() {
            // Dropping a runtime blocks; that panics inside async contexts, so detach.
            rt.shutdown_background();
        } else {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

impl Storage for SftpStorage {
    fn location(&self) -> String {
        self.label.clone()
    }

    fn create(&self) -> Result<(), StorageError> {
        self.preflight.check()?;
        self.block_on(self.create_async())
    }

    fn list(&self, t: FileType) -> Result<Vec<FileInfo>, StorageError> {
        self.preflight.check()?;
        self.block_on(self.list_async(t))
    }

    fn read(&self, t: FileType, name: &str) -> Result<Bytes, StorageError> {
        let rel = self.rel(t, name)?;
        self.block_on(self.read_async(&rel, None))
    }

    fn read_range(
        &self,
        t: FileType,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Bytes, StorageError> {
        let rel = self.rel(t, name)?;
        self.block_on(self.read_async(&rel, Some((offset, length))))
    }

    fn write(&self, t: FileType, name: &str, data: Bytes) -> Result<(), StorageError> {
        let rel = self.rel(t, name)?;
        self.block_on(self.write_async(&rel, data, false))
    }

    fn write_new(&self, t: FileType, name: &str, data: Bytes) -> Result<(), StorageError> {
        let rel = self.rel(t, name)?;
        self.block_on(self.write_async(&rel, data, true))
    }

    fn remove(&self, t: FileType, name: &str) -> Result<(), StorageError> {
        let rel = self.rel(t, name)?;
        self.block_on(self.remove_async(&rel))
    }

    fn stat(&self, t: FileType, name: &str) -> Result<Option<u64>, StorageError> {
        let rel = self.rel(t, name)?;
        self.block_on(self.stat_async(&rel))
    }

    fn list_temp(&self) -> Result<Vec<crate::TempFile>, StorageError> {
        self.preflight.check()?;
        self.block_on(self.list_temp_async())
    }

    fn remove_temp(&self, path: &str) -> Result<(), StorageError> {
        crate::check_temp_path(&self.label, path)?;
        self.preflight.check()?;
        self.block_on(self.remove_async(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_cover_the_range_exactly() {
        assert!(chunks(5, 0).is_empty());
        assert_eq!(chunks(10, 100), vec![(10, 100)]);
        let c = chunks(7, 2 * CHUNK + 1);
        assert_eq!(c, vec![(7, CHUNK), (7 + CHUNK, CHUNK), (7 + 2 * CHUNK, 1)]);
    }

    #[test]
    fn paths_and_options() {
        let loc = |path: &str| SftpLocation {
            user: Some("bk".into()),
            host: "nas".into(),
            port: Some(2222),
            path: path.into(),
        };
        let o = Options {
            connections: Some(50),
            ..Options::default()
        };
        let s = SftpStorage::open(&loc("/srv/r"), &o).expect("open");
        assert_eq!(s.full("data/ab/ab01"), "/srv/r/data/ab/ab01");
        assert_eq!(s.full(""), "/srv/r/");
        assert_eq!(s.slots.len(), MAX_CONNECTIONS);
        assert_eq!(s.location(), "sftp://bk@nas:2222//srv/r");
        let top = SftpStorage::open(&loc("/"), &Options::default()).expect("open");
        assert_eq!(top.full("config"), "/config");
        assert_eq!(top.full(""), "/");
        assert_eq!(top.slots.len(), DEFAULT_CONNECTIONS);
        let mut bad = loc("/r");
        bad.host = "-oProxyCommand=x".into();
        let e = SftpStorage::open(&bad, &Options::default()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid);
        // Nothing connects before the first operation.
        assert!(s.slots.iter().all(|slot| !slot.is_open()));
    }
}
