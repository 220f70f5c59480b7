//! `bunker stats`: sizes and counts of snapshots (restic's four counting modes).

use anyhow::{Context, Result};
use bunker_repo::snapshots;
use bunker_repo::stats::{self, StatsMode};
use clap::Args;

use super::FilterArgs;
use crate::cli::GlobalOpts;
use crate::exit::Status;
use crate::{output, repo};

const LONG_ABOUT: &str = "\
Walk snapshots and report sizes, counted in one of restic's modes:

  restore-size       (default) the size of the files as restored; hard links count once
  files-by-contents  each distinct file content counts once, over all snapshots
  blobs-per-file     the data blobs of each distinct file content
  raw-data           the blobs the snapshots use, at their stored (compressed, encrypted)
                     size, with compression statistics

Without SNAPSHOT every snapshot matching --host/--tag/--path is counted; `latest` is the \
newest of those. The numbers equal those of `restic stats` on the same repository. --json \
prints restic's object (`total_size`, `total_file_count`, `snapshots_count`, ...).";

const EXAMPLES: &str = "\
EXAMPLES:
    bunker stats latest
    bunker stats --mode raw-data
    bunker stats --mode files-by-contents --host db1 --json";

/// Show sizes and counts of snapshots
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct StatsArgs {
    /// Snapshots to count (ids, prefixes or `latest`; default: all matching the filter)
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// Counting mode: restore-size, files-by-contents, blobs-per-file or raw-data
    #[arg(long, default_value = "restore-size", value_parser = parse_mode)]
    pub mode: StatsMode,
    #[command(flatten)]
    pub filter: FilterArgs,
}

fn parse_mode(s: &str) -> Result<StatsMode, String> {
    s.parse().map_err(|e: bunker_repo::RepoError| e.to_string())
}

pub fn run(g: &GlobalOpts, args: StatsArgs) -> Result<Status> {
    let r = repo::open(g)?;
    let _lock = repo::lock(&r, false)?;
    r.load_index().context("loading the index")?;
    let snaps = snapshots::select(&r, &args.snapshots, &args.filter.filter())?;
    let st = stats::stats(&r, &snaps, args.mode)?;
    if g.json {
        output::json_line(&st)?;
        return Ok(Status::Success);
    }
    println!("Stats in {} mode:", args.mode.as_str());
    println!("     Snapshots processed:  {}", st.snapshots_count);
    if st.total_blob_count > 0 {
        println!("        Total Blob Count:  {}", st.total_blob_count);
    }
    if st.total_file_count > 0 {
        println!("        Total File Count:  {}", st.total_file_count);
    }
    if st.total_uncompressed_size > 0 {
        println!(
            " Total Uncompressed Size:  {}",
            output::bytes(st.total_uncompressed_size)
        );
    }
    println!(
        "              Total Size:  {}",
        output::bytes(st.total_size)
    );
    if st.compression_progress > 0.0 {
        println!("    Compression Progress:  {:.2}%", st.compression_progress);
    }
    if st.compression_ratio > 0.0 {
        println!("       Compression Ratio:  {:.2}x", st.compression_ratio);
    }
    if st.compression_space_saving > 0.0 {
        println!(
            "Compression Space Saving:  {:.2}%",
            st.compression_space_saving
        );
    }
    Ok(Status::Success)
}
