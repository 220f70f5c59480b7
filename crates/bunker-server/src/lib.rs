//! `bunker serve`: restic's REST backend protocol (v1 and v2) over
//! repositories in a local directory, so `restic -r rest:...` and bunker's
//! own `rest:` backend can back up to a host that keeps its data safe from
//! the clients.
//!
//! * [`route`] turns request paths into (repository, file type, name) and is
//!   the single place where request text becomes a path (traversal refused);
//! * [`auth`] reads htpasswd files (bcrypt, `{SHA}`) and the roles file;
//! * [`access`] decides what a role may do, with `--append-only` and
//!   `--private-repos`;
//! * `handler` executes requests on [`bunker_storage::LocalStorage`], which
//!   writes through a temp file, fsync, rename and directory fsync;
//! * [`tls`] loads a rustls certificate and key; [`RequestLog`] appends one
//!   JSON line per request that changes something.
//!
//! The server never sees plaintext: it cannot check what a snapshot holds,
//! only which files appear and disappear. Its log records that, which is
//! what an audit on the storage host can honestly say.

#![warn(missing_docs)]

pub mod access;
pub mod auth;
mod handler;
mod log;
pub mod route;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

pub use access::{Access, Auth};
pub use auth::{Htpasswd, Role, Roles};
pub use log::RequestLog;

/// Default limit on one request body: restic's largest pack (128 MiB) plus slack.
pub const DEFAULT_MAX_REQUEST_BYTES: u64 = 160 << 20;
/// Default limit on concurrent connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// How long a client may take to send the request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A flag or a file it names is wrong.
    #[error("{0}")]
    Config(String),
    /// Binding or accepting failed.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
}

/// Everything `bunker serve` was asked for.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The directory holding the repositories.
    pub root: PathBuf,
    /// Who may do what.
    pub access: Access,
    /// TLS certificate and key (PEM files), or plain HTTP.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The largest accepted request body.
    pub max_request_bytes: u64,
    /// The most concurrent connections.
    pub max_connections: usize,
    /// Where to append the JSON log of changing requests.
    pub log: Option<PathBuf>,
}

/// A server ready to accept connections.
pub struct Server {
    listener: TcpListener,
    state: Arc<handler::State>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    max_connections: usize,
}

impl Server {
    /// Checks the configuration, loads the TLS files and binds `listen`
    /// (port 0 picks a free port; see [`Server::local_addr`]).
    pub async fn bind(listen: &str, config: ServeConfig) -> Result<Server, ServeError> {
        if !config.root.is_dir() {
            return Err(ServeError::Config(format!(
                "--path {}: not a directory (create it first)",
                config.root.display()
            )));
        }
        let tls = match &config.tls {
            Some((cert, key)) => Some(tls::acceptor(cert, key)?),
            None => None,
        };
        let log = match &config.log {
            Some(p) => Some(RequestLog::open(p)?),
            None => None,
        };
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| ServeError::Io(format!("cannot listen on {listen}"), e))?;
        let state = Arc::new(handler::State::new(&config, log));
        Ok(Server {
            listener,
            state,
            tls,
            max_connections: config.max_connections.max(1),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr, ServeError> {
        self.listener
            .local_addr()
            .map_err(|e| ServeError::Io("cannot read the bound address".into(), e))
    }

    /// Whether the server speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves until `shutdown` completes; requests in flight on accepted
    /// connections are left to finish on their tasks.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), ServeError> {
        let limit = Arc::new(tokio::sync::Semaphore::new(self.max_connections));
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                _ = &mut shutdown => return Ok(()),
                p = limit.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return Ok(()),
                },
            };
            let (stream, peer) = tokio::select! {
                _ = &mut shutdown => return Ok(()),
                r = self.listener.accept() => match r {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                },
            };
            let state = self.state.clone();
            let tls = self.tls.clone();
            tokio::spawn(async move {
                let _permit = permit;
                match tls {
                    Some(acceptor) => {
                        let handshake =
                            tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await;
                        match handshake {
                            Ok(Ok(s)) => serve_conn(TokioIo::new(s), state, peer).await,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed")
                            }
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    }
                    None => serve_conn(TokioIo::new(stream), state, peer).await,
                }
            });
        }
    }
}

async fn serve_conn<I>(io: I, state: Arc<handler::State>, peer: SocketAddr)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, std::convert::Infallible>(handler::handle(state, req, peer).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(io, svc);
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
