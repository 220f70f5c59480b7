//! `mysql dump` (mariadb-dump streamed into a snapshot) and `mysql
//! restore-dump` (streamed back into `mariadb`).

use std::process::Stdio;

use anyhow::{bail, Context, Result};
use bunker_engine::sources::mysql::dump as dump_databases;
use bunker_repo::mysql::TAG_DUMP;
use bunker_repo::pg::{open_stream, stream_content};
use bunker_repo::snapshots::{self, SnapshotFilter};
use clap::Args;

use super::ConnArgs;
use crate::cli::GlobalOpts;
use crate::commands::pg::{flat_tags, parse_timeout};
use crate::exit::Status;
use crate::progress::Reporter;
use crate::{output, repo};

/// Dump databases with mariadb-dump into a snapshot (no temporary files)
#[derive(Args, Debug)]
#[command(
    long_about = "Stream `mariadb-dump --single-transaction --routines --events --triggers` \
into a snapshot: one database into /<database>.sql (without CREATE DATABASE, so it can be \
restored under another name), several or all (the default) into /all-databases.sql. Tags: \
mysql-dump and mysql-db=<database> (mysql-db=* for all). InnoDB tables are dumped from one \
consistent snapshot without locking; other engines are not consistent.",
    after_long_help = super::help::DUMP_EXAMPLES
)]
pub struct DumpArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Database to dump (repeatable; default: all)
    #[arg(long = "dbname", short = 'd', value_name = "NAME")]
    pub dbnames: Vec<String>,
    /// Host name recorded in the snapshot
    #[arg(long)]
    pub host: Option<String>,
    /// Extra tags (comma-separated, repeatable)
    #[arg(long = "tag", value_name = "TAG[,TAG]")]
    pub tags: Vec<String>,
    /// Stop mariadb-dump if it runs longer than this (90m, 6h); no snapshot is left
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub timeout: Option<std::time::Duration>,
}

pub fn dump(g: &GlobalOpts, args: DumpArgs) -> Result<Status> {
    let conn = args.conn.conn(args.timeout);
    let r = repo::open(g)?;
    let reporter = Reporter::new(g, "files", "dump");
    let (file, s) = dump_databases(
        &r,
        &conn,
        &args.dbnames,
        &flat_tags(&args.tags),
        args.host.clone(),
        &reporter,
    )?;
    reporter.finish();
    output::dump_stored(g, &file, &s)?;
    Ok(Status::Success)
}

/// Restore a mariadb-dump snapshot through the mariadb client
#[derive(Args, Debug)]
#[command(
    long_about = "Stream a dump snapshot into `mariadb`. A one-database dump goes into \
--dbname (default: its own name), which is created and must not exist unless --force (then \
it is dropped first); an all-databases dump is replayed as it is (it creates its databases).",
    after_long_help = super::help::RESTORE_DUMP_EXAMPLES
)]
pub struct RestoreDumpArgs {
    /// Dump snapshot (default: the latest dump, of --from-db if given)
    pub snapshot: Option<String>,
    /// Pick the latest dump of this database
    #[arg(long, value_name = "NAME")]
    pub from_db: Option<String>,
    /// Database to restore a one-database dump into
    #[arg(long = "dbname", short = 'd', value_name = "NAME")]
    pub dbname: Option<String>,
    /// Drop the database first if it exists
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

fn ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

pub fn restore_dump(g: &GlobalOpts, args: RestoreDumpArgs) -> Result<Status> {
    let conn = args.conn.conn(None);
    let r = repo::open(g)?;
    let _lock = repo::lock_read(&r)?;
    r.load_index().context("loading the index")?;
    let mut tags = vec![TAG_DUMP.to_string()];
    if let Some(db) = &args.from_db {
        tags.push(format!("mysql-db={db}"));
    }
    let filter = SnapshotFilter {
        tags: vec![tags],
        ..Default::default()
    };
    let snap = snapshots::find(&r, args.snapshot.as_deref().unwrap_or("latest"), &filter)?;
    let (name, content) = stream_content(&r, &snap, None)?;
    let Some(stem) = name.strip_suffix(".sql") else {
        bail!(
            "snapshot {} holds {name}, not a mariadb-dump",
            snap.id.short()
        );
    };
    let single = stem != bunker_engine::sources::mysql::ALL_DATABASES_FILE.trim_end_matches(".sql");
    let mut client = conn.command("mariadb");
    let target = if single {
        let db = args.dbname.clone().unwrap_or_else(|| stem.to_string());
        let exists = conn.query(&format!(
            "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{}'",
            db.replace('\\', "\\\\").replace('\'', "''")
        ))?;
        if exists.trim() != "0" {
            if !args.force {
                bail!("database {db} exists; give --force to drop and replace it");
            }
            conn.query(&format!("DROP DATABASE {}", ident(&db)))?;
        }
        conn.query(&format!("CREATE DATABASE {}", ident(&db)))?;
        client.arg(format!("--database={db}"));
        Some(db)
    } else {
        if args.dbname.is_some() {
            bail!("{name} holds several databases; it is restored as it is, without --dbname");
        }
        None
    };
    let mut child = client
        .arg("--binary-mode")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("starting mariadb")?;
    let mut stdin = child.stdin.take().context("mariadb has no stdin")?;
    let copied = std::io::copy(&mut open_stream(&r, &content), &mut stdin);
    drop(stdin);
    let status = child.wait().context("waiting for mariadb")?;
    let bytes = copied.context("feeding the dump to mariadb")?;
    if !status.success() {
        bail!("mariadb failed ({status}) while restoring {name}");
    }
    let into = target.as_deref().unwrap_or("the server");
    if g.json {
        output::json_line(
            &serde_json::json!({ "dump": name, "bytes": bytes, "database": target }),
        )?;
    } else if !g.quiet {
        println!("restored {name} ({}) into {into}", output::bytes(bytes));
    }
    Ok(Status::Success)
}
