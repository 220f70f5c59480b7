//! The `rest:` backend: restic's REST protocol (v2), as spoken by
//! `bunker serve` and restic's rest-server.
//!
//! `GET/HEAD/POST/DELETE {base}{type}/{name}`, `{base}config`, listings with
//! `Accept: application/vnd.x.restic.rest.v2` (`[{"name","size"}]`) and
//! `POST {base}?create=true`. A POST is atomic and durable on the server
//! (the protocol's contract); `write_new` checks with HEAD first and relies
//! on `bunker serve` refusing to replace a file with different content, so
//! two writers racing on one name cannot both win there (restic's
//! rest-server outside append-only mode replaces files: the last one wins).
//! Bunker's own file types travel as `bunker-wal`, `bunker-reports` and
//! `bunker-audit`, which only `bunker serve` knows.

use std::time::Duration;

use bytes::Bytes;
use reqwest::{Method, StatusCode};

use crate::error::{ErrorKind, StorageError};
use crate::file_type::{FileInfo, FileType};
use crate::location::invalid;
use crate::options::Options;
use crate::runtime::block_on;
use crate::Storage;

const V2: &str = "application/vnd.x.restic.rest.v2";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Where a REST repository lives. The password never appears in `Debug`
/// or [`RestLocation::display`].
#[derive(Clone, PartialEq, Eq)]
pub struct RestLocation {
    /// `http(s)://host[:port]/path/`, without credentials, ending in `/`.
    pub url: String,
    /// HTTP Basic user, from the URL or `RESTIC_REST_USERNAME`.
    pub user: Option<String>,
    /// HTTP Basic password, from the URL or `RESTIC_REST_PASSWORD`.
    pub password: Option<String>,
}

impl std::fmt::Debug for RestLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestLocation")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

impl RestLocation {
    /// `rest:URL` as shown to users (user name kept, password never).
    pub fn display(&self) -> String {
        match &self.user {
            Some(u) => {
                let (scheme, rest) = self.url.split_once("://").unwrap_or(("http", &self.url));
                format!("rest:{scheme}://{u}@{rest}")
            }
            None => format!("rest:{}", self.url),
        }
    }

    /// The host (and port) of the server.
    pub fn host(&self) -> &str {
        let after = self
            .url
            .split_once("://")
            .map(|(_, r)| r)
            .unwrap_or(&self.url);
        after.split('/').next().unwrap_or(after)
    }
}

/// Parses the part after `rest:`. Credentials may be embedded
/// (`https://user:pass@host/`); percent-escapes in them are decoded.
pub(crate) fn parse(location: &str, rest: &str) -> Result<RestLocation, StorageError> {
    let (scheme, after) = if let Some(r) = rest.strip_prefix("https://") {
        ("https", r)
    } else if let Some(r) = rest.strip_prefix("http://") {
        ("http", r)
    } else {
        return Err(invalid(
            location,
            "rest: locations need an http:// or https:// URL",
        ));
    };
    let (authority, path) = after.split_once('/').unwrap_or((after, ""));
    let (creds, host) = match authority.rsplit_once('@') {
        Some((c, h)) => (Some(c), h),
        None => (None, authority),
    };
    if host.is_empty() || host.contains(['?', '#', ' ']) {
        return Err(invalid(location, "missing or malformed REST server host"));
    }
    if path.contains(['?', '#']) || path.split('/').any(|s| s == "." || s == "..") {
        return Err(invalid(
            location,
            "the REST path must not contain a query, fragment, . or ..",
        ));
    }
    let (mut user, mut password) = (None, None);
    if let Some(c) = creds {
        let (u, p) = c.split_once(':').unwrap_or((c, ""));
        user = Some(percent_decode(u));
        if !p.is_empty() {
            password = Some(percent_decode(p));
        }
    }
    if user.is_none() {
        user = std::env::var("RESTIC_REST_USERNAME")
            .ok()
            .filter(|s| !s.is_empty());
    }
    if password.is_none() {
        password = std::env::var("RESTIC_REST_PASSWORD")
            .ok()
            .filter(|s| !s.is_empty());
    }
    let path = path.trim_matches('/');
    let url = if path.is_empty() {
        format!("{scheme}://{host}/")
    } else {
        format!("{scheme}://{host}/{path}/")
    };
    Ok(RestLocation {
        url,
        user,
        password,
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The URL type segment of a file type, shared with `bunker serve`'s
/// routes. Bunker's own files (WAL segments, binlogs, run reports, audit
/// records) use `bunker-*` names that restic's rest-server does not know.
pub fn type_segment(t: FileType) -> &'static str {
    match t {
        FileType::Config => "config",
        FileType::Key => "keys",
        FileType::Snapshot => "snapshots",
        FileType::Index => "index",
        FileType::Pack => "data",
        FileType::Lock => "locks",
        FileType::Wal => "bunker-wal",
        FileType::Binlog => "bunker-binlog",
        FileType::Report => "bunker-reports",
        FileType::Audit => "bunker-audit",
    }
}

/// A repository on a REST server.
pub struct RestStorage {
    rt: Option<tokio::runtime::Runtime>,
    client: reqwest::Client,
    loc: RestLocation,
    label: String,
}

impl std::fmt::Debug for RestStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RestStorage({})", self.label)
    }
}

impl Drop for RestStorage {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

#[derive(serde::Deserialize)]
struct ListEntry {
    name: String,
    size: u64,
}

impl RestStorage {
    /// Builds the client (`timeout`, `connections`, `rest.cacert` options).
    pub fn open(loc: &RestLocation, opts: &Options) -> Result<RestStorage, StorageError> {
        let label = loc.display();
        let mut builder = reqwest::Client::builder()
            .timeout(opts.timeout.unwrap_or(DEFAULT_TIMEOUT))
            .connect_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(opts.connections.unwrap_or(5));
        if let Some(ca) = &opts.rest_cacert {
            let pem = std::fs::read(ca).map_err(|e| {
                StorageError::invalid(&label, format!("rest.cacert {}: {e}", ca.display()))
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                StorageError::invalid(&label, format!("rest.cacert {}: {e}", ca.display()))
            })?;
            builder = builder.add_root_certificate(cert);
        }
        let client = builder
            .build()
            .map_err(|e| StorageError::invalid(&label, format!("HTTP client: {e}")))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("bunker-rest-io")
            .enable_all()
            .build()
            .map_err(|e| StorageError::from_io(&e, &label, ""))?;
        Ok(RestStorage {
            rt: Some(rt),
            client,
            loc: loc.clone(),
            label,
        })
    }

    fn url(&self, t: FileType, name: &str) -> String {
        match t {
            FileType::Config => format!("{}config", self.loc.url),
            _ => format!("{}{}/{}", self.loc.url, type_segment(t), name),
        }
    }

    fn rel(t: FileType, name: &str) -> String {
        t.path(name)
    }

    fn check(&self, t: FileType, name: &str) -> Result<(), StorageError> {
        t.check_name(name).map_err(|mut e| {
            e.backend = self.label.clone();
            e
        })
    }

    /// Sends one request and returns status, headers and body; transport
    /// failures are classified, HTTP errors are left to the caller.
    fn send(
        &self,
        method: Method,
        url: &str,
        rel: &str,
        body: Option<Bytes>,
        headers: &[(&str, String)],
    ) -> Result<(StatusCode, reqwest::header::HeaderMap, Bytes), StorageError> {
        let mut req = self.client.request(method, url);
        if let Some(u) = &self.loc.user {
            req = req.basic_auth(u, self.loc.password.as_deref());
        }
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/octet-stream")
                .body(b);
        }
        let rt = self.rt.as_ref().ok_or_else(|| {
            StorageError::new(ErrorKind::Other, &self.label, rel, "storage already closed")
        })?;
        let fut = async move {
            let resp = req.send().await?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let bytes = resp.bytes().await?;
            Ok::<_, reqwest::Error>((status, headers, bytes))
        };
        block_on(rt, fut).map_err(|e| self.transport(&e, rel))
    }

    fn transport(&self, e: &reqwest::Error, rel: &str) -> StorageError {
        // reqwest's own message hides the cause ("error sending request"); add the chain.
        let mut message = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        let tls = message.contains("certificate") || message.contains("InvalidCertificate");
        let kind = if tls {
            // A certificate the client does not trust will not become trusted by retrying.
            ErrorKind::Invalid
        } else if e.is_timeout() {
            ErrorKind::Timeout
        } else if e.is_builder() {
            ErrorKind::Invalid
        } else {
            // Connect failures, resets and truncated bodies.
            ErrorKind::Unavailable
        };
        if tls {
            message.push_str(" (trust the server's CA with -o rest.cacert=FILE)");
        }
        // The URL in reqwest's message never carries the password (sent as a header).
        StorageError::new(kind, &self.label, rel, message)
    }

    fn http_error(&self, status: StatusCode, body: &[u8], rel: &str) -> StorageError {
        let kind = match status.as_u16() {
            401 => ErrorKind::Unauthenticated,
            403 => ErrorKind::PermissionDenied,
            404 => ErrorKind::NotFound,
            409 => ErrorKind::AlreadyExists,
            507 => ErrorKind::NoSpace,
            400 | 405 | 413 | 416 => ErrorKind::Invalid,
            408 | 429 | 500..=599 => ErrorKind::Unavailable,
            _ => ErrorKind::Other,
        };
        let detail = String::from_utf8_lossy(&body[..body.len().min(300)])
            .trim()
            .to_string();
        StorageError::new(kind, &self.label, rel, format!("HTTP {status}: {detail}"))
    }
}

impl Storage for RestStorage {
    fn location(&self) -> String {
        self.label.clone()
    }

    fn create(&self) -> Result<(), StorageError> {
        let url = format!("{}?create=true", self.loc.url);
        let (status, _, body) = self.send(Method::POST, &url, "", Some(Bytes::new()), &[])?;
        if status.is_success() {
            Ok(())
        } else {
            Err(self.http_error(status, &body, ""))
        }
    }

    fn list(&self, t: FileType) -> Result<Vec<FileInfo>, StorageError> {
        if t == FileType::Config {
            return Ok(match self.stat(t, "")? {
                Some(size) => vec![FileInfo {
                    name: "config".into(),
                    size,
                }],
                None => Vec::new(),
            });
        }
        let url = format!("{}{}/", self.loc.url, type_segment(t));
        let rel = t.dir();
        let (status, headers, body) =
            self.send(Method::GET, &url, rel, None, &[("Accept", V2.to_string())])?;
        if status == StatusCode::NOT_FOUND && t >= FileType::Wal {
            // A server without bunker's types (restic's rest-server) holds none of them.
            return Ok(Vec::new());
        }
        if !status.is_success() {
            return Err(self.http_error(status, &body, rel));
        }
        let v2 = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains(V2));
        let bad = |e: serde_json::Error| {
            StorageError::new(
                ErrorKind::Invalid,
                &self.label,
                rel,
                format!("bad listing: {e}"),
            )
        };
        let mut out: Vec<FileInfo> = if v2 {
            serde_json::from_slice::<Vec<ListEntry>>(&body)
                .map_err(bad)?
                .into_iter()
                .map(|e| FileInfo {
                    name: e.name,
                    size: e.size,
                })
                .collect()
        } else {
            // A v1 server lists names only; ask for each size.
            let names: Vec<String> = serde_json::from_slice(&body).map_err(bad)?;
            let mut v = Vec::with_capacity(names.len());
            for name in names {
                if let Some(size) = self.stat(t, &name)? {
                    v.push(FileInfo { name, size });
                }
            }
            v
        };
        out.retain(|f| !f.name.starts_with('.') && t.check_name(&f.name).is_ok());
        Ok(out)
    }

    fn read(&self, t: FileType, name: &str) -> Result<Bytes, StorageError> {
        self.check(t, name)?;
        let rel = Self::rel(t, name);
        let (status, _, body) = self.send(Method::GET, &self.url(t, name), &rel, None, &[])?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(self.http_error(status, &body, &rel))
        }
    }

    fn read_range(
        &self,
        t: FileType,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Bytes, StorageError> {
        self.check(t, name)?;
        let rel = Self::rel(t, name);
        if length == 0 {
            return Ok(Bytes::new());
        }
        let range = format!("bytes={}-{}", offset, offset + length - 1);
        let (status, _, body) = self.send(
            Method::GET,
            &self.url(t, name),
            &rel,
            None,
            &[("Range", range)],
        )?;
        if !status.is_success() {
            return Err(self.http_error(status, &body, &rel));
        }
        // A server ignoring Range answers 200 with the whole file.
        let data = if status == StatusCode::OK {
            let start = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(body.len());
            body.slice(start..)
        } else {
            body
        };
        let want = usize::try_from(length).unwrap_or(usize::MAX);
        if data.len() < want {
            return Err(StorageError::new(
                ErrorKind::Invalid,
                &self.label,
                &rel,
                format!(
                    "short read: wanted {length} bytes at {offset}, got {}",
                    data.len()
                ),
            ));
        }
        Ok(data.slice(..want))
    }

    fn write(&self, t: FileType, name: &str, data: Bytes) -> Result<(), StorageError> {
        self.check(t, name)?;
        let rel = Self::rel(t, name);
        let (status, _, body) =
            self.send(Method::POST, &self.url(t, name), &rel, Some(data), &[])?;
        if status.is_success() {
            Ok(())
        } else {
            Err(self.http_error(status, &body, &rel))
        }
    }

    fn write_new(&self, t: FileType, name: &str, data: Bytes) -> Result<(), StorageError> {
        if self.stat(t, name)?.is_some() {
            return Err(StorageError::new(
                ErrorKind::AlreadyExists,
                &self.label,
                Self::rel(t, name),
                "file exists",
            ));
        }
        self.write(t, name, data)
    }

    fn remove(&self, t: FileType, name: &str) -> Result<(), StorageError> {
        self.check(t, name)?;
        let rel = Self::rel(t, name);
        let (status, _, body) = self.send(Method::DELETE, &self.url(t, name), &rel, None, &[])?;
        if status.is_success() {
            Ok(())
        } else {
            Err(self.http_error(status, &body, &rel))
        }
    }

    fn stat(&self, t: FileType, name: &str) -> Result<Option<u64>, StorageError> {
        self.check(t, name)?;
        let rel = Self::rel(t, name);
        let (status, headers, body) =
            self.send(Method::HEAD, &self.url(t, name), &rel, None, &[])?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(self.http_error(status, &body, &rel));
        }
        let size = headers
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                StorageError::new(
                    ErrorKind::Invalid,
                    &self.label,
                    &rel,
                    "HEAD without Content-Length",
                )
            })?;
        Ok(Some(size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_hide_passwords() {
        let l = parse("x", "https://bob:p%40ss@backup.lan:8000/bob/repo").unwrap();
        assert_eq!(l.url, "https://backup.lan:8000/bob/repo/");
        assert_eq!(l.user.as_deref(), Some("bob"));
        assert_eq!(l.password.as_deref(), Some("p@ss"));
        assert_eq!(l.display(), "rest:https://bob@backup.lan:8000/bob/repo/");
        assert_eq!(l.host(), "backup.lan:8000");
        assert!(!format!("{l:?}").contains("p@ss"));
        let l = parse("x", "http://127.0.0.1:9/").unwrap();
        assert_eq!(l.url, "http://127.0.0.1:9/");
        for bad in ["ftp://h/", "h:8000/", "http:///x", "http://h/a/../b"] {
            assert!(parse("x", bad).is_err(), "{bad}");
        }
    }
}
