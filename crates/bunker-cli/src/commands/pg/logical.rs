//! `pg dump` (pg_dump -Fc per database, pg_dumpall --globals-only, streamed
//! into snapshots) and `pg restore-dump` (back through pg_restore).

use std::io::Write;
use std::process::Stdio;

use anyhow::{bail, Context, Result};
use bunker_engine::sources::postgres::{all_databases, dump_database, dump_globals, TAG_DUMP};
use bunker_repo::pg::{open_stream, stream_content};
use bunker_repo::snapshots::{self, SnapshotFilter};
use bunker_sources::postgres::process::{ident_quote, restore_command};
use bunker_sources::postgres::PgConn;
use clap::Args;

use super::{flat_tags, ConnArgs};
use crate::cli::GlobalOpts;
use crate::exit::Status;
use crate::progress::Reporter;
use crate::{output, repo};

/// Dump databases with pg_dump -Fc into snapshots (no temporary files)
#[derive(Args, Debug)]
#[command(
    long_about = "Stream `pg_dump -Fc` of each database into a snapshot of its own holding \
/<database>.dump (tags pg-dump, pg-db=<database>), and `pg_dumpall --globals-only` into one \
holding /globals.sql (tag pg-globals). Without --dbname every database that accepts \
connections (except templates) is dumped, and the globals too.",
    after_long_help = super::help::DUMP_EXAMPLES
)]
pub struct DumpArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Database to dump (repeatable; default: all)
    #[arg(long = "dbname", short = 'd', value_name = "NAME")]
    pub dbnames: Vec<String>,
    /// Also dump roles and tablespaces (default when no --dbname is given)
    #[arg(long)]
    pub globals: bool,
    /// Host name recorded in the snapshots
    #[arg(long)]
    pub host: Option<String>,
    /// Extra tags (comma-separated, repeatable)
    #[arg(long = "tag", value_name = "TAG[,TAG]")]
    pub tags: Vec<String>,
    /// Stop each pg_dump or pg_dumpall (SIGTERM, SIGKILL 10 s later) that runs
    /// longer than this (90m, 6h); the dump then fails and leaves no snapshot
    #[arg(long, value_name = "DURATION", value_parser = super::parse_timeout)]
    pub timeout: Option<std::time::Duration>,
}

pub fn dump(g: &GlobalOpts, args: DumpArgs) -> Result<Status> {
    let conn = PgConn {
        timeout: args.timeout,
        ..args.conn.conn()
    };
    let tags = flat_tags(&args.tags);
    let (dbs, globals) = if args.dbnames.is_empty() {
        (all_databases(&conn)?, true)
    } else {
        (args.dbnames.clone(), args.globals)
    };
    let r = repo::open(g)?;
    let reporter = Reporter::new(g, "files", "dump");
    let mut results = Vec::new();
    for db in &dbs {
        let s = dump_database(&r, &conn, db, &tags, args.host.clone(), &reporter)?;
        results.push((format!("{db}.dump"), s));
    }
    if globals {
        let s = dump_globals(&r, &conn, &tags, args.host.clone(), &reporter)?;
        results.push(("globals.sql".to_string(), s));
    }
    reporter.finish();
    for (name, s) in &results {
        output::dump_stored(g, name, s)?;
    }
    Ok(Status::Success)
}

/// Restore a pg_dump snapshot into a database with pg_restore
#[derive(Args, Debug)]
#[command(after_long_help = super::help::RESTORE_DUMP_EXAMPLES)]
pub struct RestoreDumpArgs {
    /// Dump snapshot (default: the latest dump of --from-db)
    pub snapshot: Option<String>,
    /// Pick the latest dump of this database
    #[arg(long, value_name = "NAME")]
    pub from_db: Option<String>,
    /// Database to restore into (created; must not exist unless --force)
    #[arg(long = "dbname", short = 'd', value_name = "NAME")]
    pub dbname: String,
    /// Drop the database first if it exists
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

pub fn restore_dump(g: &GlobalOpts, args: RestoreDumpArgs) -> Result<Status> {
    let conn = args.conn.conn();
    let r = repo::open(g)?;
    let _lock = repo::lock_read(&r)?;
    r.load_index().context("loading the index")?;
    let mut tags = vec![TAG_DUMP.to_string()];
    if let Some(db) = &args.from_db {
        tags.push(format!("pg-db={db}"));
    }
    let filter = SnapshotFilter {
        tags: vec![tags],
        ..Default::default()
    };
    let spec = args.snapshot.as_deref().unwrap_or("latest");
    let snap = snapshots::find(&r, spec, &filter)?;
    let (name, content) = stream_content(&r, &snap, None)?;
    if !name.ends_with(".dump") {
        bail!("snapshot {} holds {name}, not a pg_dump", snap.id.short());
    }

    let exists = conn.query(
        Some("postgres"),
        &format!(
            "SELECT count(*) FROM pg_database WHERE datname = {}",
            sql_literal(&args.dbname)
        ),
    )?;
    if exists.trim() != "0" {
        if !args.force {
            bail!(
                "database {} exists; give --force to drop and replace it",
                args.dbname
            );
        }
        conn.query(
            Some("postgres"),
            &format!("DROP DATABASE {} WITH (FORCE)", ident_quote(&args.dbname)),
        )?;
    }
    conn.query(
        Some("postgres"),
        &format!("CREATE DATABASE {}", ident_quote(&args.dbname)),
    )?;
    let mut child = restore_command(&conn, &args.dbname)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("starting pg_restore")?;
    let mut stdin = child.stdin.take().context("pg_restore has no stdin")?;
    let copied = std::io::copy(&mut open_stream(&r, &content), &mut stdin);
    drop(stdin);
    let status = child.wait().context("waiting for pg_restore")?;
    let bytes = copied.context("feeding the dump to pg_restore")?;
    if !status.success() {
        bail!("pg_restore failed ({status})");
    }
    stdin_flush_note(g, &name, bytes, &args.dbname)?;
    Ok(Status::Success)
}

fn stdin_flush_note(g: &GlobalOpts, name: &str, bytes: u64, db: &str) -> Result<()> {
    if g.json {
        output::json_line(&serde_json::json!({ "dump": name, "bytes": bytes, "database": db }))?;
    } else if !g.quiet {
        println!(
            "restored {name} ({}) into database {db}",
            output::bytes(bytes)
        );
        std::io::stdout().flush().ok();
    }
    Ok(())
}
