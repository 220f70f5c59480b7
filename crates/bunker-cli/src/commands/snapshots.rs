//! `bunker snapshots`: list snapshots.

use anyhow::{Context, Result};
use bunker_repo::snapshots::{self, GroupKey, Grouping, SnapshotEntry};
use clap::Args;

use super::config::ItemArgs;
use super::FilterArgs;
use crate::cli::GlobalOpts;
use crate::exit::Status;
use crate::output::{self, Table};
use crate::repo;

const LONG_ABOUT: &str = "\
List the snapshots in the repository, oldest first, as a table of ID, time (local), host, \
tags, paths and, when the snapshot records it, the size of the backed-up data.

--host, --tag and --path select snapshots; --latest N keeps only the newest N of each \
(host, paths) group. With --json the output is a JSON array of snapshot objects (restic's \
fields plus `id` and `short_id`).";

const EXAMPLES: &str = "\
EXAMPLES:
    bunker snapshots
    bunker snapshots --host db1 --tag daily --latest 3
    bunker snapshots --group-by host,tags
    bunker snapshots --json | jq '.[].short_id'";

/// List snapshots
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub item: ItemArgs,
    /// Only the newest N snapshots of each host and path set
    #[arg(long, value_name = "N")]
    pub latest: Option<usize>,
    /// One line per snapshot (tags and paths joined with commas)
    #[arg(short = 'c', long)]
    pub compact: bool,
    /// List snapshots in groups: any of host, paths, tags, comma-separated
    #[arg(short = 'g', long, value_name = "GROUPING", default_value = "",
          value_parser = parse_grouping)]
    pub group_by: Grouping,
}

fn parse_grouping(s: &str) -> Result<Grouping, String> {
    s.parse().map_err(|e: bunker_repo::RepoError| e.to_string())
}

/// restic's group header: `snapshots for (host [h], tags [a, b], paths [/x]):`.
fn group_header(key: &GroupKey) -> String {
    let mut parts = Vec::new();
    if !key.hostname.is_empty() {
        parts.push(format!("host [{}]", key.hostname));
    }
    if let Some(tags) = &key.tags {
        parts.push(format!("tags [{}]", tags.join(", ")));
    }
    if let Some(paths) = &key.paths {
        parts.push(format!("paths [{}]", paths.join(", ")));
    }
    if parts.is_empty() {
        "snapshots:".to_string()
    } else {
        format!("snapshots for ({}):", parts.join(", "))
    }
}

/// The JSON object of one snapshot: its fields plus ids.
pub fn snapshot_json(e: &SnapshotEntry) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(&e.snapshot).context("encoding snapshot")?;
    if let Some(obj) = v.as_object_mut() {
        obj.insert("id".into(), e.id.to_string().into());
        obj.insert("short_id".into(), e.id.short().into());
    }
    Ok(v)
}

fn table(entries: &[SnapshotEntry], compact: bool) -> Table {
    let with_size = entries.iter().any(|e| e.snapshot.summary.is_some());
    let mut header = vec!["ID", "Time", "Host", "Tags", "Paths"];
    if with_size {
        header.push("Size");
    }
    let mut t = Table::new(&header);
    for e in entries {
        let s = &e.snapshot;
        let (tags, paths) = if compact {
            (vec![s.tags.join(",")], vec![s.paths.join(",")])
        } else {
            (s.tags.clone(), s.paths.clone())
        };
        let mut row = vec![
            vec![e.id.short()],
            vec![output::local_time(&s.time)],
            vec![s.hostname.clone()],
            tags,
            paths,
        ];
        if with_size {
            row.push(
                s.summary
                    .as_ref()
                    .map(|sum| vec![output::bytes(sum.total_bytes_processed)])
                    .unwrap_or_default(),
            );
        }
        t.row(row);
    }
    t
}

pub fn run(g: &GlobalOpts, args: SnapshotsArgs) -> Result<Status> {
    let mut filter = args.filter.filter();
    let r = repo::open_for(g, &args.item, &mut filter)?;
    let _lock = repo::lock_read(&r)?;
    let list = snapshots::filtered(&r, &filter, args.latest).context("listing snapshots")?;
    if args.group_by != Grouping::default() {
        let groups = snapshots::group(list, args.group_by);
        if g.json {
            let mut values = Vec::new();
            for (key, members) in &groups {
                let snaps = members
                    .iter()
                    .map(snapshot_json)
                    .collect::<Result<Vec<_>>>()?;
                values.push(serde_json::json!({"group_key": key, "snapshots": snaps}));
            }
            output::json_line(&values)?;
            return Ok(Status::Success);
        }
        for (key, members) in &groups {
            println!("{}", group_header(key));
            print!("{}", table(members, args.compact).render());
            println!("{} snapshots\n", members.len());
        }
        return Ok(Status::Success);
    }
    if g.json {
        let values = list.iter().map(snapshot_json).collect::<Result<Vec<_>>>()?;
        output::json_line(&values)?;
        return Ok(Status::Success);
    }
    print!("{}", table(&list, args.compact).render());
    println!("{} snapshots", list.len());
    Ok(Status::Success)
}
