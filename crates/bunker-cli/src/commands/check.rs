//! `bunker check`: verify the repository's structure and, optionally, its data.

use anyhow::{bail, Context, Result};
use bunker_repo::check::{self, CheckOptions, CheckReport, ReadData};
use clap::Args;
use serde::Serialize;

use crate::cli::GlobalOpts;
use crate::exit::Status;
use crate::progress::Reporter;
use crate::{output, repo};

const LONG_ABOUT: &str = "\
Check the repository for errors, without changing it. The structure check loads every \
index file and snapshot, walks every tree, and verifies that every referenced blob is \
indexed, that every indexed pack exists and has the size the index implies.

--read-data also downloads every pack, checks its hash and decrypts and verifies every blob, \
and reads every archived WAL file (bunker/wal/) and verifies it (decrypt + content hash); \
--read-data-subset reads a part of the packs: `n/m` reads the n-th of m disjoint subsets \
(run 1/m .. m/m on successive days to cover everything), `P%` a random P percent. Damaged or \
missing packs are named, with the snapshots that depend on them. The exit status is 1 when \
errors were found.

A pack no index lists is a warning (prune removes it), unless it holds data a snapshot needs: \
then it is an error, and `bunker repair index` indexes it again. Temporary files left by \
interrupted writers (data/xx/.<id>.tmp-…) are reported as a warning; prune removes those not \
modified for an hour. Runs under a shared lock; on a read-only repository (or with --no-lock) \
without one.";

const EXAMPLES: &str = "\
EXAMPLES:
    bunker check
    bunker check --read-data
    bunker check --read-data-subset 2/7
    bunker check --read-data-subset 10% --json";

/// Check the repository for errors
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct CheckArgs {
    /// Read and verify all pack files
    #[arg(long, conflicts_with = "read_data_subset")]
    pub read_data: bool,
    /// Read and verify a subset of the packs: n/m or P%
    #[arg(long, value_name = "n/m|P%", value_parser = parse_subset)]
    pub read_data_subset: Option<ReadData>,
    /// Report indexed blobs no snapshot uses
    #[arg(long)]
    pub check_unused: bool,
}

/// `n/m` or `P%`.
pub fn parse_subset(s: &str) -> Result<ReadData, String> {
    let s = s.trim();
    let parsed = if let Some(p) = s.strip_suffix('%') {
        p.trim().parse::<f64>().ok().map(ReadData::Percent)
    } else if let Some((n, m)) = s.split_once('/') {
        match (n.trim().parse::<u32>(), m.trim().parse::<u32>()) {
            (Ok(n), Ok(m)) => Some(ReadData::Subset { n, m }),
            _ => None,
        }
    } else {
        None
    };
    let rd = parsed
        .ok_or_else(|| format!("{s:?}: expected n/m (e.g. 1/5) or a percentage (e.g. 10%)"))?;
    rd.validate().map_err(|e| e.to_string())?;
    Ok(rd)
}

#[derive(Serialize)]
struct JsonSummary<'a> {
    message_type: &'static str,
    ok: bool,
    #[serde(flatten)]
    report: &'a CheckReport,
}

fn text(report: &CheckReport) -> String {
    let mut out = format!(
        "checked {} snapshots, {} trees, {} blobs in {} packs",
        report.snapshots, report.trees, report.blobs, report.packs
    );
    if report.packs_read > 0 {
        out.push_str(&format!(
            "; read {} packs ({})",
            report.packs_read,
            output::bytes(report.bytes_read)
        ));
    }
    if report.wal_objects_read > 0 {
        out.push_str(&format!(
            "; read {} archived WAL files ({})",
            report.wal_objects_read,
            output::bytes(report.wal_bytes_read)
        ));
    }
    out.push('\n');
    for w in &report.damaged_wal {
        out.push_str(&format!("damaged WAL file: {w}\n"));
    }
    for p in &report.missing_packs {
        out.push_str(&format!("missing pack: {p}\n"));
    }
    for p in &report.damaged_packs {
        out.push_str(&format!("damaged pack: {p}\n"));
    }
    if !report.affected_snapshots.is_empty() {
        out.push_str("snapshots affected by lost data:\n");
        for s in &report.affected_snapshots {
            out.push_str(&format!("  {s}\n"));
        }
    }
    if report.ok() {
        out.push_str("no errors were found\n");
    }
    out
}

pub fn run(g: &GlobalOpts, args: CheckArgs) -> Result<Status> {
    let read_data = match (args.read_data, args.read_data_subset) {
        (true, _) => ReadData::All,
        (false, Some(rd)) => rd,
        (false, None) => ReadData::No,
    };
    let opts = CheckOptions {
        read_data,
        check_unused: args.check_unused,
    };
    let r = repo::open(g)?;
    let reporter = Reporter::new(g, "packs", "check").with_label("error");
    let report = check::check(&r, &opts, &reporter).context("check failed")?;
    reporter.finish();
    if g.json {
        output::json_line(&JsonSummary {
            message_type: "summary",
            ok: report.ok(),
            report: &report,
        })?;
    } else {
        for w in &report.warnings {
            eprintln!("warning: {w}");
        }
        if !g.quiet || !report.ok() {
            print!("{}", text(&report));
        }
    }
    if report.ok() {
        record_check(&r, &read_data);
        Ok(Status::Success)
    } else {
        bail!(
            "the repository has errors ({} error(s), {} damaged and {} missing pack(s))",
            report.errors.len(),
            report.damaged_packs.len(),
            report.missing_packs.len()
        )
    }
}

/// Record the successful check in the repository (for the 3-2-1 report);
/// a read-only repository cannot take it, which is no error of the check.
fn record_check(r: &bunker_repo::Repository, read_data: &ReadData) {
    use bunker_engine::records::{self, Record, RecordKind};
    let body = serde_json::json!({ "read_data": format!("{read_data:?}") });
    if let Err(e) = records::save(r, &Record::new(RecordKind::Check, "*", body)) {
        tracing::info!("the check could not be recorded in the repository: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_syntax() {
        assert_eq!(parse_subset("1/5"), Ok(ReadData::Subset { n: 1, m: 5 }));
        assert_eq!(parse_subset("10%"), Ok(ReadData::Percent(10.0)));
        assert_eq!(parse_subset(" 2.5% "), Ok(ReadData::Percent(2.5)));
        assert!(parse_subset("0/5").is_err());
        assert!(parse_subset("6/5").is_err());
        assert!(parse_subset("0%").is_err());
        assert!(parse_subset("101%").is_err());
        assert!(parse_subset("half").is_err());
    }
}
