//! Executing one REST request on the repository directory.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bunker_storage::{ErrorKind, FileType, LocalStorage, Storage, StorageError};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use sha2::Digest;

use crate::access::{Access, Auth, Op};
use crate::auth::{parse_basic, Role};
use crate::log::{Entry, RequestLog};
use crate::route::{self, Route, Target};
use crate::ServeConfig;

const V2: &str = "application/vnd.x.restic.rest.v2";
const V1: &str = "application/vnd.x.restic.rest.v1";

/// Shared server state.
pub(crate) struct State {
    root: PathBuf,
    access: Access,
    max_body: u64,
    log: Option<RequestLog>,
    /// Salted digests of credentials already verified (bcrypt is slow on purpose).
    verified: Mutex<HashSet<[u8; 32]>>,
    salt: [u8; 16],
}

impl State {
    pub(crate) fn new(config: &ServeConfig, log: Option<RequestLog>) -> State {
        State {
            root: config.root.clone(),
            access: config.access.clone(),
            max_body: config.max_request_bytes,
            log,
            verified: Mutex::new(HashSet::new()),
            salt: rand_salt(),
        }
    }

    fn authenticate(&self, req: &Request<Incoming>) -> Option<String> {
        let Auth::Htpasswd(file) = &self.access.auth else {
            return Some(String::new());
        };
        let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
        let (user, pass) = parse_basic(value)?;
        let mut h = sha2::Sha256::new();
        h.update(self.salt);
        h.update(user.as_bytes());
        h.update([0]);
        h.update(pass.as_bytes());
        let key: [u8; 32] = h.finalize().into();
        if self
            .verified
            .lock()
            .map(|s| s.contains(&key))
            .unwrap_or(false)
        {
            return Some(user);
        }
        if file.verify(&user, &pass) {
            if let Ok(mut s) = self.verified.lock() {
                s.insert(key);
            }
            Some(user)
        } else {
            None
        }
    }

    fn storage(&self, route: &Route) -> LocalStorage {
        let mut dir = self.root.clone();
        for seg in &route.repo {
            dir.push(seg);
        }
        LocalStorage::new(dir)
    }
}

fn rand_salt() -> [u8; 16] {
    let mut s = [0u8; 16];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut h = sha2::Sha256::new();
    h.update(now.to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    s.copy_from_slice(&h.finalize()[..16]);
    s
}

type Resp = Response<Full<Bytes>>;

fn text(status: StatusCode, msg: impl Into<String>) -> Resp {
    let mut msg = msg.into();
    msg.push('\n');
    let mut r = Response::new(Full::new(Bytes::from(msg)));
    *r.status_mut() = status;
    r
}

/// Handles one request; never fails (errors become responses).
pub(crate) async fn handle(state: Arc<State>, req: Request<Incoming>, peer: SocketAddr) -> Resp {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let changing = matches!(method, Method::POST | Method::DELETE);
    let (resp, user, bytes, why) = dispatch(&state, req).await;
    if changing || resp.status() == StatusCode::FORBIDDEN {
        tracing::info!(%peer, user, %method, path, status = resp.status().as_u16(), bytes, "request");
        if let Some(log) = &state.log {
            log.append(&Entry {
                time: chrono::Utc::now().to_rfc3339(),
                peer: peer.to_string(),
                user: &user,
                method: method.as_str(),
                path: &path,
                status: resp.status().as_u16(),
                bytes,
                error: why.as_deref(),
            });
        }
    } else {
        tracing::debug!(%peer, user, %method, path, status = resp.status().as_u16(), "request");
    }
    resp
}

async fn dispatch(
    state: &Arc<State>,
    req: Request<Incoming>,
) -> (Resp, String, u64, Option<String>) {
    let create = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "create=true"));
    let Some(user) = state.authenticate(&req) else {
        let mut r = text(
            StatusCode::UNAUTHORIZED,
            "authentication required: wrong or missing user/password",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"bunker\""),
        );
        return (r, String::new(), 0, Some("unauthenticated".into()));
    };
    let route = match route::parse(req.uri().path(), create) {
        Ok(r) => r,
        Err(e) => return (text(StatusCode::BAD_REQUEST, &e.0), user, 0, Some(e.0)),
    };
    let role = state.access.role_of(&user);
    let op = match (req.method(), &route.target) {
        (&Method::GET | &Method::HEAD, _) => Op::Read,
        (&Method::POST, Target::Repo) if create => Op::Create,
        (&Method::POST, Target::Config | Target::Object(..)) => Op::Write,
        (&Method::DELETE, Target::Config | Target::Object(..)) => Op::Delete,
        _ => {
            let msg = format!("{} is not supported on {}", req.method(), req.uri().path());
            return (
                text(StatusCode::METHOD_NOT_ALLOWED, &msg),
                user,
                0,
                Some(msg),
            );
        }
    };
    if let Err(msg) = state.access.check(&user, role, op, &route) {
        return (text(StatusCode::FORBIDDEN, &msg), user, 0, Some(msg));
    }
    let accept_v2 = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(V2));
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let head = req.method() == Method::HEAD;
    let body = if op == Op::Write {
        match read_body(req, state.max_body).await {
            Ok(b) => b,
            Err(r) => return (r, user, 0, Some("request body refused".into())),
        }
    } else {
        Bytes::new()
    };
    let n = body.len() as u64;
    let st = state.clone();
    let route2 = route.clone();
    let res = tokio::task::spawn_blocking(move || {
        execute(
            &st,
            &route2,
            op,
            role,
            head,
            accept_v2,
            range.as_deref(),
            body,
        )
    })
    .await;
    let resp = match res {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => error_response(&e),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("request task failed: {e}"),
        ),
    };
    let why = (!resp.status().is_success()).then(|| format!("status {}", resp.status()));
    (resp, user, n, why)
}

async fn read_body(req: Request<Incoming>, max: u64) -> Result<Bytes, Resp> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_big = || {
        text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than the server's limit of {max} bytes"),
        )
    };
    if declared.is_some_and(|n| n > max) {
        return Err(too_big());
    }
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_big()),
        Err(e) => Err(text(
            StatusCode::BAD_REQUEST,
            format!("reading the request body: {e}"),
        )),
    }
}

/// Errors of the operation, mapped to statuses restic understands.
enum Fail {
    Storage(StorageError),
    Status(StatusCode, String),
}

impl From<StorageError> for Fail {
    fn from(e: StorageError) -> Self {
        Fail::Storage(e)
    }
}

fn error_response(e: &Fail) -> Resp {
    match e {
        Fail::Status(s, m) => text(*s, m.clone()),
        Fail::Storage(e) => {
            let status = match e.kind {
                ErrorKind::NotFound => StatusCode::NOT_FOUND,
                ErrorKind::AlreadyExists => StatusCode::FORBIDDEN,
                ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
                ErrorKind::NoSpace => StatusCode::INSUFFICIENT_STORAGE,
                ErrorKind::Invalid => StatusCode::BAD_REQUEST,
                ErrorKind::Timeout | ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            if status.is_server_error() {
                tracing::error!(error = %e, "storage error");
            }
            // The message names the repository-relative path, not the server's directory.
            text(status, format!("{}: {}", e.path, e.kind))
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn execute(
    state: &State,
    route: &Route,
    op: Op,
    role: Role,
    head: bool,
    v2: bool,
    range: Option<&str>,
    body: Bytes,
) -> Result<Resp, Fail> {
    let storage = state.storage(route);
    let (t, name) = match &route.target {
        Target::Config => (FileType::Config, String::new()),
        Target::Object(t, n) => (*t, n.clone()),
        Target::List(t) => return list(&storage, *t, v2),
        Target::Repo => {
            if op != Op::Create {
                return Err(Fail::Status(StatusCode::NOT_FOUND, "not a file".into()));
            }
            storage.create()?;
            return Ok(text(StatusCode::OK, "created"));
        }
    };
    match op {
        Op::Read if head => match storage.stat(t, &name)? {
            Some(size) => {
                let mut r = Response::new(Full::new(Bytes::new()));
                r.headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
                Ok(r)
            }
            None => Err(Fail::Status(StatusCode::NOT_FOUND, "not found".into())),
        },
        Op::Read => read(&storage, t, &name, range),
        Op::Write => write(&storage, t, &name, body, role),
        Op::Delete => {
            storage.remove(t, &name)?;
            Ok(text(StatusCode::OK, "deleted"))
        }
        Op::Create => Err(Fail::Status(
            StatusCode::BAD_REQUEST,
            "create=true needs a repository path".into(),
        )),
    }
}

fn list(storage: &LocalStorage, t: FileType, v2: bool) -> Result<Resp, Fail> {
    let files = storage.list(t)?;
    let (json, ctype) = if v2 {
        let v: Vec<_> = files
            .iter()
            .map(|f| serde_json::json!({"name": f.name, "size": f.size}))
            .collect();
        (serde_json::to_vec(&v), V2)
    } else {
        let v: Vec<_> = files.iter().map(|f| f.name.as_str()).collect();
        (serde_json::to_vec(&v), V1)
    };
    let json = json.map_err(|e| Fail::Status(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let mut r = Response::new(Full::new(Bytes::from(json)));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    Ok(r)
}

/// Parses `bytes=START-END` or `bytes=START-` (one range; restic sends no other).
fn parse_range(s: &str, size: u64) -> Option<(u64, u64)> {
    let spec = s.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let start: u64 = a.trim().parse().ok()?;
    let end: u64 = if b.trim().is_empty() {
        size.checked_sub(1)?
    } else {
        b.trim().parse::<u64>().ok()?.min(size.checked_sub(1)?)
    };
    if start > end {
        return None;
    }
    Some((start, end - start + 1))
}

fn read(
    storage: &LocalStorage,
    t: FileType,
    name: &str,
    range: Option<&str>,
) -> Result<Resp, Fail> {
    let Some(range) = range else {
        let data = storage.read(t, name)?;
        return Ok(Response::new(Full::new(data)));
    };
    let size = storage
        .stat(t, name)?
        .ok_or_else(|| Fail::Status(StatusCode::NOT_FOUND, "not found".into()))?;
    let Some((off, len)) = parse_range(range, size) else {
        return Err(Fail::Status(
            StatusCode::RANGE_NOT_SATISFIABLE,
            format!("range {range:?} not satisfiable for {size} bytes"),
        ));
    };
    let data = storage.read_range(t, name, off, len)?;
    let mut r = Response::new(Full::new(data));
    *r.status_mut() = StatusCode::PARTIAL_CONTENT;
    if let Ok(v) = HeaderValue::from_str(&format!("bytes {off}-{}/{size}", off + len - 1)) {
        r.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    Ok(r)
}

/// Content-addressed restic files are named by the SHA-256 of their content.
fn content_addressed(t: FileType, name: &str) -> bool {
    matches!(
        t,
        FileType::Key | FileType::Snapshot | FileType::Index | FileType::Pack | FileType::Lock
    ) && name.len() == 64
        && name.bytes().all(|b| b.is_ascii_hexdigit())
}

fn write(
    storage: &LocalStorage,
    t: FileType,
    name: &str,
    body: Bytes,
    role: Role,
) -> Result<Resp, Fail> {
    if content_addressed(t, name) {
        let got = hex::encode(sha2::Sha256::digest(&body));
        if !got.eq_ignore_ascii_case(name) {
            return Err(Fail::Status(
                StatusCode::BAD_REQUEST,
                format!("content does not match its name (SHA-256 {got}); upload corrupted?"),
            ));
        }
    }
    // write_new links the synced temp file into place only if the name is free,
    // so an existing file is never replaced here.
    match storage.write_new(t, name, body.clone()) {
        Ok(()) => Ok(text(StatusCode::OK, "stored")),
        Err(e) if e.kind == ErrorKind::AlreadyExists => {
            let existing = storage.read(t, name)?;
            if existing == body {
                return Ok(text(StatusCode::OK, "already stored (identical)"));
            }
            let bunker_own = matches!(t, FileType::Wal | FileType::Report | FileType::Audit);
            if bunker_own && role == Role::Admin {
                storage.write(t, name, body)?;
                return Ok(text(StatusCode::OK, "replaced"));
            }
            Err(Fail::Status(
                StatusCode::FORBIDDEN,
                format!(
                    "{} exists with different content; the server never overwrites it",
                    t.path(name)
                ),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 10)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 10)));
        assert_eq!(parse_range("bytes=90-200", 100), Some((90, 10)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-1", 100), None);
        assert_eq!(parse_range("lines=1-2", 100), None);
        assert_eq!(parse_range("bytes=0-0", 0), None);
    }
}
