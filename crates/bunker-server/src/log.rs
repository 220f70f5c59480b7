//! The request log: one JSON line per request that changes something.
//!
//! The server holds only ciphertext, so the log says who added or removed
//! which file, when, from where and with what outcome; it cannot say what a
//! snapshot contains. Lines are appended (`O_APPEND`) and synced, so a
//! crash loses at most the line being written; protect the file itself with
//! `chattr +a` or ship it elsewhere if the storage host's root is in scope.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

use crate::ServeError;

/// An append-only JSON-lines log file.
#[derive(Debug)]
pub struct RequestLog {
    file: Mutex<File>,
}

/// One logged request.
#[derive(Debug, Serialize)]
pub struct Entry<'a> {
    /// RFC 3339 time.
    pub time: String,
    /// Client address.
    pub peer: String,
    /// Authenticated user (empty with `--no-auth`).
    pub user: &'a str,
    /// HTTP method.
    pub method: &'a str,
    /// Request path.
    pub path: &'a str,
    /// Response status.
    pub status: u16,
    /// Request body bytes.
    pub bytes: u64,
    /// Why a request was refused, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
}

impl RequestLog {
    /// Opens (creating, mode 0600) `path` for appending.
    pub fn open(path: &Path) -> Result<RequestLog, ServeError> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| ServeError::Io(format!("cannot open --log {}", path.display()), e))?;
        Ok(RequestLog {
            file: Mutex::new(file),
        })
    }

    /// Appends and syncs one entry; failures are reported to tracing, never to the client.
    pub fn append(&self, entry: &Entry<'_>) {
        let mut line = serde_json::to_vec(entry).unwrap_or_default();
        line.push(b'\n');
        let mut f = match self.file.lock() {
            Ok(f) => f,
            Err(p) => p.into_inner(),
        };
        if let Err(e) = f.write_all(&line).and_then(|_| f.sync_data()) {
            tracing::error!(error = %e, "cannot append to the request log");
        }
    }
}
