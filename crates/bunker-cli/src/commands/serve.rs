//! `bunker serve`: restic's REST backend protocol over a directory of
//! repositories ([`bunker_server`]). Parses flags, binds, prints the
//! address, serves until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bunker_server::{Access, Auth, Htpasswd, Roles, ServeConfig, Server};
use clap::Args;

use crate::cli::GlobalOpts;
use crate::exit::Status;

const LONG_ABOUT: &str = "\
Serve the repositories under --path over restic's REST backend protocol (v1 and v2), so \
`restic -r rest:http://HOST:PORT/REPO/` and `bunker -r rest:http://HOST:PORT/REPO/` back up \
to this host. Every repository is a directory below --path; `restic init` / `bunker init` \
create it. Writes are durable (temp file, fsync, rename, directory fsync); content-addressed \
files must match their SHA-256 name; an existing file is never overwritten with different \
content. --append-only lets users without a role in --roles only add files (and remove lock \
files): forget/prune through the server fail, so a compromised client cannot delete its \
backups. --roles FILE gives users `restore` (read), `backup` (read and append) or `admin` \
(everything, any repository) roles, one `USER ROLE` per line. --private-repos confines \
non-admin users to /USER/... . Authentication is HTTP Basic against an htpasswd file \
(`htpasswd -B` bcrypt entries); --no-auth serves anyone. With --tls-cert and --tls-key the \
server speaks HTTPS only. Each request that changes something is logged (and appended to \
--log FILE as a JSON line). The first line printed is `listening on URL`; --listen with port \
0 picks a free port. See docs/serve.md for deployment.";

const EXAMPLES: &str = "\
EXAMPLES:
    bunker serve --listen 0.0.0.0:8000 --path /srv/bunker --htpasswd /etc/bunker/htpasswd \\
        --append-only --roles /etc/bunker/roles --tls-cert cert.pem --tls-key key.pem
    bunker serve --listen 127.0.0.1:8000 --path /srv/bunker --no-auth
    htpasswd -B -c /etc/bunker/htpasswd host1      # create a user
    restic -r rest:https://host1:PASSWORD@backup.lan:8000/host1/ backup /etc";

/// Serve repositories over restic's REST protocol
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8000")]
    pub listen: String,
    /// Directory holding the repositories
    #[arg(long, value_name = "DIR")]
    pub path: PathBuf,
    /// Users without a role may only add files: no delete, no overwrite (locks excepted)
    #[arg(long)]
    pub append_only: bool,
    /// Non-admin users may only use repositories under /USER/
    #[arg(long)]
    pub private_repos: bool,
    /// htpasswd file of users (bcrypt or {SHA} entries)
    #[arg(long, value_name = "FILE", conflicts_with = "no_auth")]
    pub htpasswd: Option<PathBuf>,
    /// Serve without authentication (everyone is the anonymous user)
    #[arg(long)]
    pub no_auth: bool,
    /// Roles file: `USER restore|backup|admin` per line
    #[arg(long, value_name = "FILE")]
    pub roles: Option<PathBuf>,
    /// TLS certificate chain (PEM)
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM)
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Largest accepted request body in MiB
    #[arg(long, value_name = "MIB", default_value_t = bunker_server::DEFAULT_MAX_REQUEST_BYTES >> 20)]
    pub max_request_mib: u64,
    /// Most concurrent connections
    #[arg(long, value_name = "N", default_value_t = bunker_server::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Append a JSON line per changing request to FILE
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
}

pub fn run(_g: &GlobalOpts, args: ServeArgs) -> Result<Status> {
    let auth = match (&args.htpasswd, args.no_auth) {
        (Some(p), _) => Auth::Htpasswd(Arc::new(Htpasswd::load(p)?)),
        (None, true) => Auth::None,
        (None, false) => bail!(
            "bunker serve needs --htpasswd FILE (create one with `htpasswd -B -c FILE USER`) or --no-auth"
        ),
    };
    let roles = match &args.roles {
        Some(p) => Roles::load(p)?,
        None => Roles::default(),
    };
    let config = ServeConfig {
        root: args.path.clone(),
        access: Access {
            auth,
            roles,
            append_only: args.append_only,
            private_repos: args.private_repos,
        },
        tls: args.tls_cert.clone().zip(args.tls_key.clone()),
        max_request_bytes: args.max_request_mib.saturating_mul(1 << 20),
        max_connections: args.max_connections,
        log: args.log.clone(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the server runtime")?;
    let cancel = crate::interrupt::token();
    rt.block_on(async move {
        let server = Server::bind(&args.listen, config).await?;
        let addr = server.local_addr()?;
        let scheme = if server.is_tls() { "https" } else { "http" };
        println!("listening on {scheme}://{addr}/");
        tracing::info!(%addr, append_only = args.append_only, "bunker serve started");
        let stop = async move {
            // Signals set the token; poll it rather than install a second handler.
            while !cancel.is_cancelled() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        server.run(stop).await?;
        anyhow::Ok(())
    })?;
    Ok(Status::Success)
}
