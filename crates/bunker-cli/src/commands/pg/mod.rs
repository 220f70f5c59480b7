//! `bunker pg`: PostgreSQL WAL archiving, base backups, point-in-time
//! restore, archive verification and logical dumps.
//!
//! Submodules: [`wal`] (wal-push, wal-fetch, wal-verify, wal-prune,
//! archive-command),
//! [`physical`] (backup, restore) and [`logical`] (dump, restore-dump). The
//! backups themselves are the engine's (`bunker_engine::sources::postgres`),
//! shared with `bunker run`.

use std::path::PathBuf;

use anyhow::Result;
use bunker_sources::postgres::PgConn;
use clap::{Args, Subcommand};

use crate::cli::GlobalOpts;
use crate::exit::Status;

mod archive;
mod help;
pub mod logical;
pub mod physical;
pub mod wal;

const LONG_ABOUT: &str = "\
PostgreSQL point-in-time recovery and logical dumps in the repository.

WAL files are archived with `pg wal-push` (PostgreSQL's archive_command) and read back with \
`pg wal-fetch` (restore_command); base backups are streamed from pg_basebackup by `pg backup`; \
`pg restore` lays a base backup out and configures recovery to a target time, transaction, \
restore point or WAL position. See docs/postgres.md.";

/// PostgreSQL: WAL archive, base backups, point-in-time restore, dumps
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT)]
pub struct PgArgs {
    #[command(subcommand)]
    pub command: PgCommand,
}

#[derive(Subcommand, Debug)]
pub enum PgCommand {
    WalPush(wal::WalPushArgs),
    WalFetch(wal::WalFetchArgs),
    WalVerify(wal::WalVerifyArgs),
    WalPrune(wal::WalPruneArgs),
    ArchiveCommand(archive::ArchiveCommandArgs),
    Backup(physical::BackupArgs),
    Restore(physical::RestoreArgs),
    Dump(logical::DumpArgs),
    RestoreDump(logical::RestoreDumpArgs),
}

pub fn run(g: &GlobalOpts, args: PgArgs) -> Result<Status> {
    match args.command {
        PgCommand::WalPush(a) => wal::push(g, a),
        PgCommand::WalFetch(a) => wal::fetch(g, a),
        PgCommand::WalVerify(a) => wal::verify(g, a),
        PgCommand::WalPrune(a) => wal::prune(g, a),
        PgCommand::ArchiveCommand(a) => archive::archive_command(g, a),
        PgCommand::Backup(a) => physical::backup(g, a),
        PgCommand::Restore(a) => physical::restore(g, a),
        PgCommand::Dump(a) => logical::dump(g, a),
        PgCommand::RestoreDump(a) => logical::restore_dump(g, a),
    }
}

/// Connection options (unset ones fall back to the `PG*` environment).
#[derive(Args, Debug, Clone, Default)]
pub struct ConnArgs {
    /// Database server host or socket directory (PGHOST)
    #[arg(long = "pghost", value_name = "HOST")]
    pub pghost: Option<String>,
    /// Database server port (PGPORT)
    #[arg(long = "pgport", value_name = "PORT")]
    pub pgport: Option<u16>,
    /// Database user (PGUSER)
    #[arg(long = "pguser", value_name = "USER")]
    pub pguser: Option<String>,
    /// Directory of PostgreSQL's programs (default: found on PATH)
    #[arg(long = "pg-bin", value_name = "DIR")]
    pub pg_bin: Option<PathBuf>,
}

impl ConnArgs {
    pub fn conn(&self) -> PgConn {
        PgConn {
            host: self.pghost.clone(),
            port: self.pgport,
            user: self.pguser.clone(),
            dbname: None,
            bin_dir: self.pg_bin.clone(),
            password: None,
            timeout: None,
            cancel: Some(crate::interrupt::token()),
        }
    }
}

/// `--timeout`: a human duration (`90m`, `6h`, `2h30m`), zero rejected.
pub fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    bunker_policy::parse_duration(s)
        .map_err(|e| format!("{e} (expected a duration like \"90m\", \"6h\" or \"2h30m\")"))
}

/// `--timeout` of options that took seconds before: a plain number is
/// still seconds (`3600`), anything else a human duration (`1h`, `90m`).
pub fn parse_timeout_or_secs(s: &str) -> Result<std::time::Duration, String> {
    match s.trim().parse::<u64>() {
        Ok(0) => Err("duration must be greater than zero".to_string()),
        Ok(n) => Ok(std::time::Duration::from_secs(n)),
        Err(_) => parse_timeout(s),
    }
}

/// Comma-separated, repeatable `--tag` values as a flat list.
pub fn flat_tags(tags: &[String]) -> Vec<String> {
    tags.iter()
        .flat_map(|t| t.split(','))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}
