//! `bunker cache`: list and clean up the local cache directories.

use std::time::Duration;

use anyhow::{Context, Result};
use bunker_repo::cache;
use clap::Args;

use crate::cli::GlobalOpts;
use crate::exit::Status;
use crate::output::{self, Table};

const LONG_ABOUT: &str = "\
List the local cache directories (one per repository, below --cache-dir, \
BUNKER_CACHE_DIR or the user's cache directory) with their last use and size; with \
--cleanup remove those not used for --max-age days. Only directories named like a \
repository id are touched. Needs no repository.";

const EXAMPLES: &str = "\
EXAMPLES:
    bunker cache
    bunker cache --cleanup --max-age 7";

/// List or clean up local cache directories
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct CacheArgs {
    /// Remove cache directories not used for --max-age days
    #[arg(long)]
    pub cleanup: bool,
    /// Age in days after which a cache directory is old
    #[arg(long, value_name = "DAYS", default_value_t = 30)]
    pub max_age: u64,
    /// Do not compute the sizes of the cache directories
    #[arg(long)]
    pub no_size: bool,
}

pub fn run(g: &GlobalOpts, args: CacheArgs) -> Result<Status> {
    let root = g
        .cache_dir
        .clone()
        .or_else(bunker_repo::tree_cache::default_cache_root)
        .context("no cache directory: set --cache-dir, BUNKER_CACHE_DIR or HOME")?;
    let max_age = Duration::from_secs(args.max_age.saturating_mul(86400));
    if args.cleanup {
        let removed = cache::cleanup(&root, max_age)?;
        if g.json {
            output::json_line(&removed)?;
        } else if !g.quiet {
            for c in &removed {
                println!("removed {}", c.path.display());
            }
            println!("removed {} old cache director(ies)", removed.len());
        }
        return Ok(Status::Success);
    }
    let dirs = cache::list(&root, max_age, !args.no_size)?;
    if g.json {
        output::json_line(&dirs)?;
        return Ok(Status::Success);
    }
    let mut header = vec!["Repo ID", "Last Used", "Old"];
    if !args.no_size {
        header.push("Size");
    }
    let mut t = Table::new(&header);
    for c in &dirs {
        let used: chrono::DateTime<chrono::Local> = c.last_used.into();
        let mut row = vec![
            vec![c.repo_id.chars().take(10).collect()],
            vec![used.format("%Y-%m-%d %H:%M:%S").to_string()],
            vec![if c.old { "yes".into() } else { String::new() }],
        ];
        if let Some(size) = c.size {
            row.push(vec![output::bytes(size)]);
        }
        t.row(row);
    }
    print!("{}", t.render());
    println!("{} cache dirs in {}", dirs.len(), root.display());
    Ok(Status::Success)
}
