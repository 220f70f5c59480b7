//! Directories of the native SFTP backend: layout creation, listings, parents.

use futures_core::Stream;
use openssh_sftp_client::fs::{DirEntry, Fs};
use openssh_sftp_client::metadata::Permissions;
use openssh_sftp_client::Error as SftpError;

use super::{is_dir, Op, SftpStorage, DIR_MODE};
use crate::error::{ErrorKind, StorageError};
use crate::file_type::{FileInfo, FileType};
use crate::sftp_error::is_status;

/// Reads a whole directory listing.
async fn read_dir(mut fs: Fs, path: String) -> Result<Vec<DirEntry>, SftpError> {
    let dir = fs.open_dir(&path).await?;
    let mut entries = std::pin::pin!(dir.read_dir());
    let mut out = Vec::new();
    while let Some(e) = std::future::poll_fn(|cx| entries.as_mut().poll_next(cx)).await {
        out.push(e?);
    }
    Ok(out)
}

impl SftpStorage {
    pub(super) fn missing_root(&self, op: &Op<'_>) -> StorageError {
        op.err(
            ErrorKind::NotFound,
            format!("repository directory {} does not exist", self.root),
        )
    }

    /// Creates `dir` (mode 0700) unless it is already a directory.
    pub(super) async fn mkdir(&self, op: &Op<'_>, dir: &str) -> Result<(), StorageError> {
        let mut fs = op.fs();
        let perms = Permissions::from(DIR_MODE);
        let made = op
            .req(fs.dir_builder().permissions(perms).create(dir))
            .await;
        match made {
            Err(e) if !e.is_retryable() => match op.req(fs.metadata(dir)).await {
                Ok(m) if is_dir(&m) => Ok(()),
                _ => Err(e),
            },
            res => res,
        }
    }

    /// Creates the directories of `rel_dir` below an existing repository root.
    pub(super) async fn make_parents(
        &self,
        op: &Op<'_>,
        rel_dir: &str,
    ) -> Result<(), StorageError> {
        if self.stat_dir(op, "").await?.is_none() {
            return Err(self.missing_root(op));
        }
        let mut cur = String::new();
        for part in rel_dir.split('/').filter(|p| !p.is_empty()) {
            cur = if cur.is_empty() {
                part.to_string()
            } else {
                format!("{cur}/{part}")
            };
            self.mkdir(op, &self.full(&cur)).await?;
        }
        Ok(())
    }

    /// `Some(())` if the relative directory exists.
    pub(super) async fn stat_dir(
        &self,
        op: &Op<'_>,
        rel: &str,
    ) -> Result<Option<()>, StorageError> {
        match op.req(op.fs().metadata(self.full(rel))).await {
            Ok(m) if is_dir(&m) => Ok(Some(())),
            Ok(_) => Err(op.err(ErrorKind::Invalid, "is not a directory")),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(super) async fn create_async(&self) -> Result<(), StorageError> {
        let op = self.op("").await?;
        let mut cur = String::new();
        for part in self.root.split('/').filter(|p| !p.is_empty()) {
            cur = format!("{cur}/{part}");
            self.mkdir(&op, &cur).await?;
        }
        let mut dirs: Vec<String> = ["keys", "snapshots", "index", "locks", "data"]
            .iter()
            .map(|d| d.to_string())
            .collect();
        dirs.extend((0..=255u8).map(|i| format!("data/{i:02x}")));
        for d in &dirs[..5] {
            self.mkdir(&op, &self.full(d)).await?;
        }
        // The 256 pack directories in parallel; failures (mostly "exists") are
        // checked one by one afterwards.
        let futs = dirs[5..]
            .iter()
            .map(|d| {
                let (mut fs, path) = (op.fs(), self.full(d));
                async move {
                    let perms = Permissions::from(DIR_MODE);
                    let res = fs.dir_builder().permissions(perms).create(&path).await;
                    match res {
                        Err(e) if is_status(&e) => Ok(Some(path)),
                        Err(e) => Err(e),
                        Ok(()) => Ok(None),
                    }
                }
            })
            .collect();
        for failed in op.check(self.pipelined(futs).await)?.into_iter().flatten() {
            self.mkdir(&op, &failed).await?;
        }
        Ok(())
    }

    pub(super) async fn list_async(&self, t: FileType) -> Result<Vec<FileInfo>, StorageError> {
        let dir = t.dir();
        let op = self.op(dir).await?;
        if t == FileType::Config {
            let size = self.stat_full(&op, &self.full("config")).await?;
            let info = size.map(|size| FileInfo {
                name: "config".into(),
                size,
            });
            return Ok(info.into_iter().collect());
        }
        let top = match op.check(read_dir(op.fs(), self.full(dir)).await) {
            Ok(entries) => entries,
            Err(e) if e.kind == ErrorKind::NotFound => {
                return match self.stat_dir(&op, "").await? {
                    Some(()) => Ok(Vec::new()),
                    None => Err(self.missing_root(&op)),
                };
            }
            Err(e) => return Err(e),
        };
        let mut groups = vec![(String::new(), top)];
        if t == FileType::Pack {
            let subdirs: Vec<String> = groups[0]
                .1
                .iter()
                .filter(|e| e.file_type().is_none_or(|ft| ft.is_dir()))
                .filter_map(|e| e.filename().to_str().map(str::to_string))
                .filter(|n| !n.starts_with('.'))
                .collect();
            let futs = subdirs
                .iter()
                .map(|sub| {
                    let (fs, path) = (op.fs(), self.full(&format!("{dir}/{sub}")));
                    async move {
                        match read_dir(fs, path).await {
                            Err(e) if is_status(&e) => Ok(Vec::new()), // vanished or not a dir
                            res => res,
                        }
                    }
                })
                .collect();
            let listed = op.check(self.pipelined(futs).await)?;
            groups = subdirs.into_iter().zip(listed).collect();
        }
        let mut out = Vec::new();
        for (sub, entries) in groups {
            for e in entries {
                let Some(name) = e.filename().to_str() else {
                    continue;
                };
                // Servers that send no file type: anything but a directory.
                let is_file = e.file_type().is_none_or(|ft| ft.is_file());
                if name.starts_with('.') || !is_file {
                    continue;
                }
                // Packs must sit in the subdirectory their name selects.
                if t == FileType::Pack && t.path(name) != format!("{dir}/{sub}/{name}") {
                    continue;
                }
                let size = match e.metadata().len() {
                    Some(size) => size,
                    None => match self.stat_full(&op, &self.full(&t.path(name))).await? {
                        Some(size) => size,
                        None => continue,
                    },
                };
                out.push(FileInfo {
                    name: name.to_string(),
                    size,
                });
            }
        }
        out.sort();
        Ok(out)
    }

    /// Bunker's temporary files in the layout's directories, with sizes and
    /// modification times (see the `temp_files` module). Missing directories
    /// are skipped.
    pub(super) async fn list_temp_async(&self) -> Result<Vec<crate::TempFile>, StorageError> {
        let op = self.op("").await?;
        if self.stat_dir(&op, "").await?.is_none() {
            return Err(self.missing_root(&op));
        }
        let dirs = crate::temp_dirs();
        let futs = dirs
            .iter()
            .map(|d| {
                let (fs, path) = (op.fs(), self.full(d));
                async move {
                    match read_dir(fs, path).await {
                        Err(e) if is_status(&e) => Ok(Vec::new()), // missing or not a dir
                        res => res,
                    }
                }
            })
            .collect();
        let listed = op.check(self.pipelined(futs).await)?;
        let mut out = Vec::new();
        for (dir, entries) in dirs.iter().zip(listed) {
            for e in entries {
                let Some(name) = e.filename().to_str() else {
                    continue;
                };
                if !crate::is_temp_name(name) || e.file_type().is_some_and(|ft| ft.is_dir()) {
                    continue;
                }
                let meta = e.metadata();
                out.push(crate::TempFile {
                    path: crate::temp_files::join(dir, name),
                    size: meta.len().unwrap_or(0),
                    modified: meta
                        .modified()
                        .map(|t| std::time::UNIX_EPOCH + t.as_duration()),
                });
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }
}
