//! The write path of the native SFTP backend: temporary file, fsync, rename or link.

use std::io::SeekFrom;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use openssh_sftp_client::file::File;
use openssh_sftp_client::fs::Statvfs;
use openssh_sftp_client::metadata::Permissions;
use tokio::io::AsyncSeekExt;

use super::{chunks, Op, SftpStorage, FILE_MODE};
use crate::error::{ErrorKind, StorageError};

/// `SSH_FXE_STATVFS_ST_RDONLY` in the `flag` of a `statvfs@openssh.com` reply.
const ST_RDONLY: u64 = 0x1;

/// Why a write of `need` bytes failed, judged from the file system's statistics.
fn full_or_read_only(v: &Statvfs, need: u64) -> Option<(ErrorKind, String)> {
    let free = v.bavail.saturating_mul(v.frsize);
    if v.flag & ST_RDONLY != 0 {
        Some((
            ErrorKind::PermissionDenied,
            "the server's file system is read-only".into(),
        ))
    } else if free < need.max(1) || (v.files > 0 && v.favail == 0) {
        Some((
            ErrorKind::NoSpace,
            format!(
                "the server's file system is full ({free} bytes, {} inodes free)",
                v.favail
            ),
        ))
    } else {
        None
    }
}

impl SftpStorage {
    /// Writes `data` under a temporary name beside `rel`, fsyncs and closes it, then
    /// renames it into place (or, `exclusive`, links it unless the name is taken).
    pub(super) async fn write_async(
        &self,
        rel: &str,
        data: Bytes,
        exclusive: bool,
    ) -> Result<(), StorageError> {
        let op = self.op(rel).await?;
        let full = self.full(rel);
        if exclusive && self.stat_full(&op, &full).await?.is_some() {
            return Err(op.err(ErrorKind::AlreadyExists, "file already exists"));
        }
        let (rel_dir, base) = rel.rsplit_once('/').unwrap_or(("", rel));
        let tmp = self.full(&format!(
            "{rel_dir}{}.{base}.tmp-{:016x}",
            if rel_dir.is_empty() { "" } else { "/" },
            rand::random::<u64>()
        ));
        let create = || async {
            let mut o = op.sftp().options();
            op.req(o.write(true).create_new(true).open(&tmp)).await
        };
        let file = match create().await {
            Err(e) if e.kind == ErrorKind::NotFound => {
                self.make_parents(&op, rel_dir).await?;
                create().await?
            }
            res => res?,
        };
        let need = data.len() as u64;
        let mut res = self.fill(&op, file, data).await;
        if res.is_ok() {
            res = self.publish(&op, &tmp, &full, exclusive).await;
        }
        match res {
            Err(e) if op.usable() => {
                // Best effort: a leftover temporary file is ignored by `list`.
                let _ = op.req(op.fs().remove_file(&tmp)).await;
                let dir = full.rsplit_once('/').map_or("/", |(d, _)| d);
                Err(self.explain(&op, dir, need, e).await)
            }
            res => res,
        }
    }

    /// OpenSSH's server reports ENOSPC and EROFS as a bare "Failure": where the
    /// server offers `statvfs@openssh.com`, tell a full or read-only file system.
    async fn explain(
        &self,
        op: &Op<'_>,
        dir: &str,
        need: u64,
        mut e: StorageError,
    ) -> StorageError {
        if e.kind != ErrorKind::Other || !op.sftp().support_statvfs() {
            return e;
        }
        let Ok(v) = op.req(op.fs().statvfs(dir)).await else {
            return e;
        };
        if let Some((kind, why)) = full_or_read_only(&v, need) {
            e.kind = kind;
            e.message = format!("{}; {why}", e.message);
        }
        e
    }

    /// Sets the mode, writes all bytes (pipelined), fsyncs and closes.
    pub(super) async fn fill(
        &self,
        op: &Op<'_>,
        mut file: File,
        data: Bytes,
    ) -> Result<(), StorageError> {
        let mut pf = file.clone();
        let perms = async move {
            match op
                .req(pf.set_permissions(Permissions::from(FILE_MODE)))
                .await
            {
                // Some servers refuse chmod; the server's default mode is kept then.
                Err(e) if !e.is_retryable() => {
                    tracing::debug!(location = %self.label, "cannot set file mode: {e}");
                    Ok(())
                }
                res => res,
            }
        };
        let futs = chunks(0, data.len() as u64)
            .into_iter()
            .map(|(o, n)| {
                let mut f = file.clone();
                let part = data.slice(o as usize..(o + n) as usize);
                async move {
                    f.seek(SeekFrom::Start(o)).await?;
                    f.write_all_zero_copy(&mut [part]).await
                }
            })
            .collect();
        let writes = async { op.check(self.pipelined(futs).await) };
        tokio::try_join!(perms, writes)?;
        if op.sftp().support_fsync() {
            op.req(file.sync_all()).await?;
        } else if !self.warned_fsync.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                location = %self.label,
                "the SFTP server lacks the fsync@openssh.com extension: writes are not fsynced on this server, a server crash may lose recently written files"
            );
        }
        op.req(file.close()).await
    }

    pub(super) async fn publish(
        &self,
        op: &Op<'_>,
        tmp: &str,
        full: &str,
        exclusive: bool,
    ) -> Result<(), StorageError> {
        let taken = || op.err(ErrorKind::AlreadyExists, "file already exists");
        let mut fs = op.fs();
        if exclusive && op.sftp().support_hardlink() {
            // link(2) on the server fails if the name exists: atomic create-new.
            return match op.req(fs.hard_link(tmp, full)).await {
                Ok(()) => {
                    let _ = op.req(fs.remove_file(tmp)).await;
                    Ok(())
                }
                Err(e) if !e.is_retryable() && self.stat_full(op, full).await?.is_some() => {
                    Err(taken())
                }
                Err(e) => Err(e),
            };
        }
        if exclusive {
            // Check then rename: two writers racing in between may both succeed.
            if self.stat_full(op, full).await?.is_some() {
                return Err(taken());
            }
        } else if !op.sftp().support_posix_rename() {
            // Plain SFTP rename refuses to replace an existing name.
            if !self.warned_rename.swap(true, Ordering::Relaxed) {
                tracing::warn!(location = %self.label, "the SFTP server lacks posix-rename@openssh.com: replacing a file removes it first");
            }
            match op.req(fs.remove_file(full)).await {
                Err(e) if e.kind != ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        op.req(fs.rename(tmp, full)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_read_only_file_systems_are_recognised() {
        let fs = |flag, bavail, files, favail| Statvfs {
            bsize: 4096,
            frsize: 4096,
            blocks: 1000,
            bfree: bavail,
            bavail,
            files,
            ffree: favail,
            favail,
            fsid: 1,
            flag,
            namemax: 255,
        };
        let kind = |v: &Statvfs, need| full_or_read_only(v, need).map(|(k, _)| k);
        assert_eq!(kind(&fs(0, 100, 10, 5), 4096), None);
        assert_eq!(kind(&fs(0, 1, 10, 5), 8192), Some(ErrorKind::NoSpace));
        assert_eq!(kind(&fs(0, 0, 10, 5), 0), Some(ErrorKind::NoSpace));
        assert_eq!(kind(&fs(0, 100, 10, 0), 1), Some(ErrorKind::NoSpace));
        // File systems without inode counts (btrfs) report zero files.
        assert_eq!(kind(&fs(0, 100, 0, 0), 1), None);
        assert_eq!(
            kind(&fs(ST_RDONLY, 100, 10, 5), 1),
            Some(ErrorKind::PermissionDenied)
        );
    }
}
