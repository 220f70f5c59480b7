//! `bunker daemon`: run the policy on schedule in the foreground, with a
//! run history, Prometheus metrics and a JSON API. The work is
//! `bunker-daemon`'s; this parses flags, sets up logging and checks that a
//! non-loopback address has a token.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use bunker_engine::pool::PoolOptions;
use clap::{Args, ValueEnum};

use super::config::PolicyArgs;
use crate::cli::GlobalOpts;
use crate::exit::Status;

const LONG_ABOUT: &str = "\
Run the policy in the foreground, as a service: every item by its `schedule` (cron in local \
time, `every`, `on_change` with a debounce), the maintenance jobs of the policy's `daemon:` \
section (check, prune, copy per repository), at most `daemon.max_concurrent` jobs at once, \
critical items first. Due-ness comes from the repositories (an item's newest snapshot), so a \
missed run is caught up once after downtime, never once per missed slot. Every run is kept in \
a SQLite history in the state directory (see `bunker history`). HTTP on --listen serves \
/metrics (Prometheus), /healthz, /readyz and a JSON API (/api/v1/status, /api/v1/items, \
/api/v1/runs?item=, /api/v1/snapshots?item=, POST /api/v1/items/NAME/run); an address other \
than loopback needs --token-file, and clients then send `Authorization: Bearer TOKEN`. \
Notifications go to the policy's `notifications:` targets. SIGTERM or SIGINT stops: running \
jobs are cancelled, release their locks within `daemon.shutdown_grace`, and the daemon exits \
0. SIGHUP reloads the policy; an invalid policy is logged and the running one kept. A policy \
error at start-up exits 1 with every problem listed. With $NOTIFY_SOCKET set (systemd \
Type=notify) readiness is reported. See docs/daemon.md.";

const EXAMPLES: &str = "\
EXAMPLES:
    bunker daemon
    bunker daemon /etc/bunker/bunker.yaml --log-format json
    bunker daemon --listen 0.0.0.0:9898 --token-file /etc/bunker/api-token
    curl -s localhost:9898/metrics | grep bunker_item_rpo_breached
    curl -s -X POST localhost:9898/api/v1/items/db/run";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line (for log collectors).
    Json,
}

/// Run the policy on schedule, serve metrics and an API
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct DaemonArgs {
    /// The policy file (overrides --config)
    #[arg(value_name = "POLICY")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Where HTTP listens
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9898")]
    pub listen: SocketAddr,
    /// Where the run history and alert state are kept (default: $STATE_DIRECTORY, /var/lib/bunker for root, else $XDG_STATE_HOME/bunker)
    #[arg(long, value_name = "DIR", env = "BUNKER_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// A file whose first line is the bearer token HTTP clients must send (required unless --listen is loopback)
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Log line format
    #[arg(long, value_enum, default_value = "text", value_name = "FORMAT")]
    pub log_format: LogFormat,
}

/// Logging for the daemon: `info` by default (a service's log is its
/// record), `BUNKER_LOG`/`RUST_LOG` or -q/-v override, text or JSON.
pub fn init_logging(g: &GlobalOpts, a: &DaemonArgs) {
    let default = if g.quiet {
        "error"
    } else {
        match g.verbose {
            0 | 1 => "info",
            2 => "debug",
            _ => "trace",
        }
    };
    let spec = ["BUNKER_LOG", "RUST_LOG"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|s| !s.trim().is_empty())
        .unwrap_or_else(|| default.to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(&spec)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false);
    let _ = match a.log_format {
        LogFormat::Json => fmt.json().try_init(),
        LogFormat::Text => fmt.try_init(),
    };
}

fn read_token(path: &PathBuf) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the token file {}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        bail!(
            "the token file {} is empty: write a long random token on its first line",
            path.display()
        );
    }
    Ok(token)
}

pub fn run(g: &GlobalOpts, mut args: DaemonArgs) -> Result<Status> {
    if args.file.is_some() {
        args.policy.config = args.file.take();
    }
    // Validate first: a policy error exits 1 with every diagnostic.
    args.policy.load()?;
    let token = args.token_file.as_ref().map(read_token).transpose()?;
    if token.is_none() && !args.listen.ip().is_loopback() {
        bail!(
            "listening on {} (not loopback) needs --token-file: the API can start backups and lists snapshots",
            args.listen
        );
    }
    let opts = bunker_daemon::DaemonOptions {
        policy_path: args.policy.path(),
        listen: args.listen,
        state_dir: args
            .state_dir
            .unwrap_or_else(bunker_daemon::daemon::default_state_dir),
        token,
        pool: PoolOptions {
            extra_options: g.options.clone(),
            repo_options: crate::repo::repo_options(g)?,
            create: true,
        },
    };
    bunker_daemon::run(opts)?;
    Ok(Status::Success)
}
