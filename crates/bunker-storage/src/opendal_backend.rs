//! Backend for S3 and any other OpenDAL service, driven by an owned tokio runtime.

use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use opendal::layers::{ConcurrentLimitLayer, TimeoutLayer};
use opendal::{Operator, Scheme};

use crate::error::{ErrorKind, StorageError};
use crate::file_type::{FileInfo, FileType};
use crate::location::S3Location;
use crate::opendal_error::map_err;
use crate::options::Options;
use crate::s3;
use crate::sftp::{self, SftpLocation};
use crate::sftp_preflight::Preflight;
use crate::storage_class;
use crate::Storage;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Directories `create()` makes on filesystem-like services (restic layout).
const LAYOUT_DIRS: [&str; 4] = ["keys/", "snapshots/", "index/", "locks/"];

/// A repository on an OpenDAL service (S3, sftp, fs, memory, azblob, gcs, webdav...).
///
/// Every call blocks on an internal multi-threaded tokio runtime; calling from inside
/// another runtime is supported (the call is moved to a scoped helper thread).
///
/// `write` is a single PUT (atomic on object stores; the `fs` service is given an
/// `atomic_write_dir` so it writes a temp file and renames; on `sftp` and `webdav`
/// bunker writes `.bunker-tmp-*` beside the target and renames it, atomically with
/// OpenSSH's `posix-rename` extension, with one WebDAV `MOVE` on WebDAV servers).
/// `fs`, `sftp` and `webdav` get restic's directory layout on `create`. `write_new` first checks
/// that the name is free, then writes with `If-None-Match: *` where the service
/// supports conditional writes. On services that accept but ignore that header (or
/// with `s3.conditional-write=false`), two writers racing between the check and the
/// write may both succeed and the later one wins.
pub struct OpendalStorage {
    rt: Option<tokio::runtime::Runtime>,
    op: Operator,
    /// Operator used for pack files (differs when packs get their own storage class).
    pack_op: Operator,
    label: String,
    conditional: AtomicBool,
    fs_like: bool,
    /// Write to a temporary name and rename (services whose writes are not atomic).
    write_via_rename: bool,
    /// SFTP: one direct ssh connection check before the first operation.
    preflight: Option<Preflight>,
    /// The memory service panics on ranges past the end; check sizes first there.
    range_precheck: bool,
}

impl std::fmt::Debug for OpendalStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpendalStorage")
            .field("location", &self.label)
            .field("scheme", &self.op.info().scheme())
            .finish()
    }
}

impl Drop for OpendalStorage {
    fn drop(&mut self) {
        let Some(rt) = self.rt.take() else { return };
        if tokio::runtime::Handle::try_current().is_ok() {
            // Dropping a runtime blocks; that panics inside async contexts, so detach.
            rt.shutdown_background();
            return;
        }
        if self.op.info().scheme() == Scheme::Sftp {
            // Each SFTP connection owns an ssh control master that outlives the process
            // unless its session is closed: drop the connection pools, then let the
            // runtime drop the session tasks (which tells every master to exit).
            if let Ok(placeholder) = Operator::via_iter(Scheme::Memory, []) {
                drop(std::mem::replace(&mut self.op, placeholder.clone()));
                drop(std::mem::replace(&mut self.pack_op, placeholder));
            }
            rt.shutdown_timeout(Duration::from_secs(10));
        } else {
            rt.shutdown_background();
        }
    }
}

fn new_runtime(label: &str) -> Result<tokio::runtime::Runtime, StorageError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bunker-storage-io")
        .enable_all()
        .build()
        .map_err(|e| StorageError::from_io(&e, label, ""))
}

fn build_op(
    scheme: Scheme,
    cfg: Vec<(String, String)>,
    label: &str,
    o: &Options,
) -> Result<Operator, StorageError> {
    let op = Operator::via_iter(scheme, cfg).map_err(|e| map_err(e, label, ""))?;
    let timeout = o.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let op = op.layer(
        TimeoutLayer::new()
            .with_timeout(timeout)
            .with_io_timeout(timeout),
    );
    Ok(match o.connections {
        Some(n) => op.layer(ConcurrentLimitLayer::new(n)),
        None => op,
    })
}

impl OpendalStorage {
    /// Opens an S3 repository. `o.s3` should already include environment credentials
    /// (see [`crate::options::S3Options::with_env`]).
    pub fn s3(loc: &S3Location, o: &Options) -> Result<Self, StorageError> {
        let label = loc.display();
        let rt = new_runtime(&label)?;
        let region = match &o.s3.region {
            Some(r) => r.clone(),
            None if loc.aws => rt
                .block_on(opendal::services::S3::detect_region(
                    &loc.endpoint,
                    &loc.bucket,
                ))
                .unwrap_or_else(|| s3::DEFAULT_REGION.to_string()),
            None => s3::DEFAULT_REGION.to_string(),
        };
        let (data_class, meta_class) = (o.s3.data_class(), o.s3.metadata_class());
        for w in storage_class::warnings(data_class, meta_class) {
            tracing::warn!(location = %label, "{w}");
        }
        let cfg = s3::service_config(loc, &o.s3, &region, meta_class);
        let op = build_op(Scheme::S3, cfg, &label, o)?;
        let pack_op = if data_class == meta_class {
            op.clone()
        } else {
            let cfg = s3::service_config(loc, &o.s3, &region, data_class);
            build_op(Scheme::S3, cfg, &label, o)?
        };
        let conditional = o.s3.conditional_write;
        Ok(Self::assemble(rt, op, pack_op, label, conditional))
    }

    /// Opens an `sftp:` repository through OpenDAL's sftp service (system `ssh`).
    /// Not used for `sftp:` locations any more ([`crate::SftpStorage`] fsyncs its
    /// writes and its ssh masters exit with the process); kept for comparison.
    pub fn sftp(loc: &SftpLocation, o: &Options) -> Result<Self, StorageError> {
        let label = loc.display();
        let cfg = sftp::service_config(loc, &o.sftp);
        let timeout = o.timeout.unwrap_or(DEFAULT_TIMEOUT);
        let preflight = Preflight::new(loc, &o.sftp, timeout, &label);
        let mut s = Self::configured(Scheme::Sftp, cfg, label, o)?;
        s.preflight = Some(preflight);
        Ok(s)
    }

    /// Opens any OpenDAL service by scheme name, configured by `o.service` pairs.
    /// For `fs`, an `atomic_write_dir` of `<root>/.bunker-tmp` is added unless given.
    pub fn service(scheme: &str, o: &Options) -> Result<Self, StorageError> {
        let mut label = format!("opendal:{scheme}");
        for (k, v) in &o.service {
            if matches!(
                k.as_str(),
                "root" | "bucket" | "container" | "endpoint" | "name"
            ) {
                label.push_str(&format!(" {k}={v}"));
            }
        }
        let parsed = Scheme::from_str(scheme).map_err(|e| map_err(e, &label, ""))?;
        if !Scheme::enabled().contains(&parsed) {
            let mut names: Vec<String> = Scheme::enabled().iter().map(|s| s.to_string()).collect();
            names.sort();
            return Err(StorageError::invalid(
                label,
                format!(
                    "OpenDAL service {scheme:?} is not built into bunker; available: {}",
                    names.join(", ")
                ),
            ));
        }
        let mut cfg = o.service.clone();
        if parsed == Scheme::Fs && !cfg.iter().any(|(k, _)| k == "atomic_write_dir") {
            if let Some((_, root)) = cfg.iter().find(|(k, _)| k == "root") {
                let dir = format!("{}/.bunker-tmp", root.trim_end_matches('/'));
                cfg.push(("atomic_write_dir".into(), dir));
            }
        }
        Self::configured(parsed, cfg, label, o)
    }

    fn configured(
        scheme: Scheme,
        cfg: Vec<(String, String)>,
        label: String,
        o: &Options,
    ) -> Result<Self, StorageError> {
        let rt = new_runtime(&label)?;
        let op = {
            let _guard = rt.enter();
            build_op(scheme, cfg, &label, o)?
        };
        Ok(Self::assemble(rt, op.clone(), op, label, true))
    }

    /// Wraps a ready operator (layers are the caller's business).
    pub fn from_operator(op: Operator, label: impl Into<String>) -> Result<Self, StorageError> {
        let label = label.into();
        let rt = new_runtime(&label)?;
        Ok(Self::assemble(rt, op.clone(), op, label, true))
    }

    fn assemble(
        rt: tokio::runtime::Runtime,
        op: Operator,
        pack_op: Operator,
        label: String,
        conditional: bool,
    ) -> Self {
        let info = op.info();
        let cap = info.full_capability();
        let fs_like = matches!(info.scheme(), Scheme::Fs | Scheme::Sftp | Scheme::Webdav);
        OpendalStorage {
            rt: Some(rt),
            op,
            pack_op,
            label,
            conditional: AtomicBool::new(conditional && cap.write_with_if_not_exists),
            fs_like,
            // A WebDAV PUT may be visible while it is written (many servers stream
            // into the target file); MOVE onto the target name is one request.
            write_via_rename: matches!(info.scheme(), Scheme::Sftp | Scheme::Webdav),
            preflight: None,
            range_precheck: info.scheme() == Scheme::Memory,
        }
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

    fn preflight(&self) -> Result<(), StorageError> {
        match &self.preflight {
            Some(p) => p.check(),
            None => Ok(()),
        }
    }

    fn path(&self, t: FileType, name: &str) -> Result<String, StorageError> {
        t.check_name(name).map_err(|mut e| {
            e.backend = self.label.clone();
            e
        })?;
        self.preflight()?;
        Ok(t.path(name))
    }

    fn op_for(&self, t: FileType) -> &Operator {
        if t == FileType::Pack {
            &self.pack_op
        } else {
            &self.op
        }
    }

    fn err(&self, e: opendal::Error, path: &str) -> StorageError {
        map_err(e, &self.label, path)
    }

    fn stat_path(&self, path: &str) -> Result<Option<u64>, StorageError> {
        match self.block_on(self.op.stat(path)) {
            Ok(m) if m.is_dir() => Err(StorageError::new(
                ErrorKind::Invalid,
                &self.label,
                path,
                "is a directory, not a file",
            )),
            Ok(m) => Ok(Some(m.content_length())),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err(e, path)),
        }
    }

    /// Writes `data` to `path` with the operator for `t`: one PUT, or a temporary
    /// file renamed into place where plain writes are not atomic.
    fn put(&self, t: FileType, path: &str, data: Bytes) -> Result<(), StorageError> {
        let op = self.op_for(t);
        if !self.write_via_rename {
            return self
                .block_on(op.write(path, data))
                .map(|_| ())
                .map_err(|e| self.err(e, path));
        }
        let (dir, _) = path.rsplit_once('/').unwrap_or(("", path));
        let tmp = format!(
            "{dir}{}.bunker-tmp-{:016x}",
            if dir.is_empty() { "" } else { "/" },
            rand::random::<u64>()
        );
        let res = self.block_on(async {
            op.write(&tmp, data).await?;
            op.rename(&tmp, path).await
        });
        if let Err(e) = res {
            // Best effort: a leftover temp file is ignored by `list` anyway.
            let _ = self.block_on(op.delete(&tmp));
            return Err(self.err(e, path));
        }
        Ok(())
    }

    fn already_exists(&self, path: &str) -> StorageError {
        StorageError::new(
            ErrorKind::AlreadyExists,
            &self.label,
            path,
            "file already exists",
        )
    }
}

impl Storage for OpendalStorage {
    fn location(&self) -> String {
        self.label.clone()
    }

    fn create(&self) -> Result<(), StorageError> {
        self.preflight()?;
        if self.fs_like {
            let mut dirs: Vec<String> = LAYOUT_DIRS.iter().map(|d| d.to_string()).collect();
            dirs.extend((0..=255u8).map(|i| format!("data/{i:02x}/")));
            for d in dirs {
                self.block_on(self.op.create_dir(&d))
                    .map_err(|e| self.err(e, &d))?;
            }
            Ok(())
        } else {
            // Object stores have no directories; verify the bucket is reachable instead.
            self.block_on(self.op.check()).map_err(|e| self.err(e, ""))
        }
    }

    fn list(&self, t: FileType) -> Result<Vec<FileInfo>, StorageError> {
        self.preflight()?;
        if t == FileType::Config {
            return Ok(self
                .stat_path("config")?
                .map(|size| FileInfo {
                    name: "config".into(),
                    size,
                })
                .into_iter()
                .collect());
        }
        let dir = format!("{}/", t.dir());
        let entries = match self
            .block_on(async { self.op.list_with(&dir).recursive(t == FileType::Pack).await })
        {
            Ok(v) => v,
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(self.err(e, &dir)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let path = entry.path();
            if entry.metadata().is_dir() || path.ends_with('/') {
                continue;
            }
            let name = path.rsplit('/').next().unwrap_or(path);
            if name.is_empty()
                || name.starts_with('.')
                || t.path(name) != path.trim_start_matches('/')
            {
                continue;
            }
            let mut size = entry.metadata().content_length();
            if size == 0 {
                // Some services (fs) do not report sizes when listing.
                match self.stat_path(path)? {
                    Some(s) => size = s,
                    None => continue,
                }
            }
            out.push(FileInfo {
                name: name.to_string(),
                size,
            });
        }
        out.sort();
        Ok(out)
    }

    fn read(&self, t: FileType, name: &str) -> Result<Bytes, StorageError> {
        let path = self.path(t, name)?;
        self.block_on(self.op.read(&path))
            .map(|b| b.to_bytes())
            .map_err(|e| self.err(e, &path))
    }

    fn read_range(
        &self,
        t: FileType,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Bytes, StorageError> {
        let path = self.path(t, name)?;
        let past_end = |size: u64| {
            StorageError::new(
                ErrorKind::Invalid,
                &self.label,
                &path,
                format!(
                    "short read: range {offset}+{length} extends past the end of the {size}-byte file (truncated or corrupt file?)"
                ),
            )
        };
        let Some(end) = offset.checked_add(length) else {
            return Err(past_end(u64::MAX));
        };
        if length == 0 || self.range_precheck {
            match self.stat_path(&path)? {
                None => {
                    return Err(StorageError::new(
                        ErrorKind::NotFound,
                        &self.label,
                        &path,
                        "file not found",
                    ))
                }
                Some(size) if size < end => return Err(past_end(size)),
                Some(_) if length == 0 => return Ok(Bytes::new()),
                Some(_) => {}
            }
        }
        let res = self.block_on(async { self.op.read_with(&path).range(offset..end).await });
        let data = match res {
            Ok(b) => b.to_bytes(),
            Err(e) if e.kind() == opendal::ErrorKind::RangeNotSatisfied => {
                let size = self.stat_path(&path)?.unwrap_or(0);
                return Err(past_end(size));
            }
            Err(e) => return Err(self.err(e, &path)),
        };
        if data.len() as u64 == length {
            return Ok(data);
        }
        match self.stat_path(&path)? {
            Some(size) if size < end => Err(past_end(size)),
            _ => Err(StorageError::new(
                ErrorKind::Unavailable,
                &self.label,
                &path,
                format!(
                    "short read: got {} of {length} bytes at offset {offset}",
                    data.len()
                ),
            )),
        }
    }

    fn write(&self, t: FileType, name: &str, data: Bytes) -> Result<(), StorageError> {
        let path = self.path(t, name)?;
        self.put(t, &path, data)
    }

    fn write_new(&self, t: FileType, name: &str, data: Bytes) -> Result<(), StorageError> {
        let path = self.path(t, name)?;
        if self.stat_path(&path)?.is_some() {
            return Err(self.already_exists(&path));
        }
        if self.conditional.load(Ordering::Relaxed) {
            let res = self.block_on(async {
                self.op_for(t)
                    .write_with(&path, data.clone())
                    .if_not_exists(true)
                    .await
            });
            match res {
                Ok(_) => return Ok(()),
                Err(e)
                    if matches!(
                        e.kind(),
                        opendal::ErrorKind::ConditionNotMatch | opendal::ErrorKind::AlreadyExists
                    ) =>
                {
                    return Err(self.already_exists(&path));
                }
                Err(e)
                    if e.kind() == opendal::ErrorKind::Unsupported
                        || e.to_string().contains("NotImplemented") =>
                {
                    tracing::warn!(location = %self.label, "conditional writes unsupported; falling back to check-then-write");
                    self.conditional.store(false, Ordering::Relaxed);
                }
                Err(e) => return Err(self.err(e, &path)),
            }
        }
        self.put(t, &path, data)
    }

    fn remove(&self, t: FileType, name: &str) -> Result<(), StorageError> {
        let path = self.path(t, name)?;
        // Object-store deletes are idempotent; the contract reports missing files.
        if self.stat_path(&path)?.is_none() {
            return Err(StorageError::new(
                ErrorKind::NotFound,
                &self.label,
                &path,
                "file not found",
            ));
        }
        self.block_on(self.op.delete(&path))
            .map_err(|e| self.err(e, &path))
    }

    fn stat(&self, t: FileType, name: &str) -> Result<Option<u64>, StorageError> {
        let path = self.path(t, name)?;
        self.stat_path(&path)
    }

    /// Only services written through a temporary name (`sftp`, `webdav`)
    /// can hold temporary files; object stores get one atomic PUT per file.
    fn list_temp(&self) -> Result<Vec<crate::TempFile>, StorageError> {
        if !self.write_via_rename {
            return Ok(Vec::new());
        }
        self.preflight()?;
        let dirs = crate::temp_dirs();
        let entries = match self.block_on(async { self.op.list_with("").recursive(true).await }) {
            Ok(v) => v,
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(self.err(e, "")),
        };
        let mut out = Vec::new();
        for entry in entries {
            let path = entry.path().trim_start_matches('/');
            let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
            if entry.metadata().is_dir()
                || !crate::is_temp_name(name)
                || !dirs.iter().any(|d| d == dir)
            {
                continue;
            }
            out.push(crate::TempFile {
                path: path.to_string(),
                size: entry.metadata().content_length(),
                modified: entry.metadata().last_modified().map(Into::into),
            });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    fn remove_temp(&self, path: &str) -> Result<(), StorageError> {
        crate::check_temp_path(&self.label, path)?;
        self.preflight()?;
        if self.stat_path(path)?.is_none() {
            return Err(StorageError::new(
                ErrorKind::NotFound,
                &self.label,
                path,
                "file not found",
            ));
        }
        self.block_on(self.op.delete(path))
            .map_err(|e| self.err(e, path))
    }
}

#[cfg(test)]
#[path = "opendal_backend_tests.rs"]
mod tests;
