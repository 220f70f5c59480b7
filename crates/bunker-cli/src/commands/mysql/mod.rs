//! `bunker mysql`: MySQL / MariaDB physical backups (mariadb-backup),
//! binlog archiving, point-in-time restore and logical dumps.
//!
//! Submodules: [`physical`] (backup, restore), [`binlog`] (binlog-push,
//! binlog-verify, binlog-prune) and [`logical`] (dump, restore-dump). The work is the
//! engine's (`bunker_engine::sources::mysql`, `mysql_restore`) and the
//! repository layer's (`bunker_repo::mysql`).

use std::path::PathBuf;

use anyhow::Result;
use bunker_sources::mysql::MyConn;
use clap::{Args, Subcommand};

use crate::cli::GlobalOpts;
use crate::exit::Status;

pub mod binlog;
mod help;
pub mod logical;
pub mod physical;

const LONG_ABOUT: &str = "\
MySQL / MariaDB backups in the repository: hot physical backups streamed from mariadb-backup \
(`mysql backup`), closed binlog files archived beside them (`mysql binlog-push`, checked by \
`mysql binlog-verify`), point-in-time restore (`mysql restore --target-time`), and logical \
dumps through mariadb-dump (`mysql dump`, `mysql restore-dump`). See docs/mysql.md.";

/// MySQL / MariaDB: physical backups, binlog archive, point-in-time restore, dumps
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT)]
pub struct MysqlArgs {
    #[command(subcommand)]
    pub command: MysqlCommand,
}

#[derive(Subcommand, Debug)]
pub enum MysqlCommand {
    Backup(physical::BackupArgs),
    Restore(physical::RestoreArgs),
    BinlogPush(binlog::PushArgs),
    BinlogVerify(binlog::VerifyArgs),
    BinlogPrune(binlog::PruneArgs),
    Dump(logical::DumpArgs),
    RestoreDump(logical::RestoreDumpArgs),
}

pub fn run(g: &GlobalOpts, args: MysqlArgs) -> Result<Status> {
    match args.command {
        MysqlCommand::Backup(a) => physical::backup(g, a),
        MysqlCommand::Restore(a) => physical::restore(g, a),
        MysqlCommand::BinlogPush(a) => binlog::push(g, a),
        MysqlCommand::BinlogVerify(a) => binlog::verify(g, a),
        MysqlCommand::BinlogPrune(a) => binlog::prune(g, a),
        MysqlCommand::Dump(a) => logical::dump(g, a),
        MysqlCommand::RestoreDump(a) => logical::restore_dump(g, a),
    }
}

/// Connection options (unset ones fall back to the client programs' option
/// files and `MYSQL_*` environment).
#[derive(Args, Debug, Clone, Default)]
pub struct ConnArgs {
    /// Unix socket of the server
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Server host (TCP)
    #[arg(long = "db-host", value_name = "HOST")]
    pub db_host: Option<String>,
    /// Server port (TCP)
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Database user
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Environment variable holding the password (given to the programs as MYSQL_PWD)
    #[arg(long, value_name = "VAR")]
    pub password_env: Option<String>,
    /// Option file the client programs read first (--defaults-file)
    #[arg(long, value_name = "FILE")]
    pub defaults_file: Option<PathBuf>,
}

impl ConnArgs {
    pub fn conn(&self, timeout: Option<std::time::Duration>) -> MyConn {
        MyConn {
            defaults_file: self.defaults_file.clone(),
            socket: self.socket.clone(),
            host: self.db_host.clone(),
            port: self.port,
            user: self.user.clone(),
            password: self
                .password_env
                .as_ref()
                .and_then(|v| std::env::var(v).ok()),
            timeout,
            cancel: Some(crate::interrupt::token()),
        }
    }
}
