//! `pg archive-command`: the postgresql.conf lines that archive a policy
//! item's WAL (the settings are the engine's
//! [`bunker_engine::sources::postgres::archive_settings`]).

use anyhow::{Context, Result};
use clap::Args;

use crate::cli::GlobalOpts;
use crate::commands::config::PolicyArgs;
use crate::exit::Status;
use crate::output;

/// Print the postgresql.conf archiving lines for a policy item
#[derive(Args, Debug)]
#[command(
    long_about = "Print the postgresql.conf lines that archive a postgres physical item's WAL \
continuously into its first target repository (archive_mode, archive_command, wal_level) and \
the restore_command that reads it back, calling this bunker with the repository's location, \
password file or command and options from the policy. A password from an environment \
variable or inline in the policy cannot be written there: use password_file.",
    after_long_help = super::help::ARCHIVE_EXAMPLES
)]
pub struct ArchiveCommandArgs {
    /// The policy item (kind postgres, mode physical)
    #[arg(long, value_name = "NAME")]
    pub item: String,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

pub fn archive_command(g: &GlobalOpts, args: ArchiveCommandArgs) -> Result<Status> {
    let p = args.policy.load()?;
    let exe = std::env::current_exe().context("finding the bunker executable")?;
    let a = bunker_engine::sources::postgres::archive_settings(&p, &args.item, &exe)?;
    // postgresql.conf quotes strings with '...', doubling inner quotes.
    let conf = |s: &str| format!("'{}'", s.replace('\'', "''"));
    if g.json {
        output::json_line(&a)?;
    } else {
        println!(
            "# postgresql.conf: archive item {} into repository {}",
            a.item, a.repository
        );
        println!("wal_level = replica");
        println!("archive_mode = on");
        println!("archive_command = {}", conf(&a.archive_command));
        println!(
            "archive_timeout = {}s   # archive at least this often when idle (below the rpo)",
            a.archive_timeout
        );
        println!("# for recovery (bunker pg restore writes this itself):");
        println!("restore_command = {}", conf(&a.restore_command));
        if a.more_targets {
            println!(
                "# note: only the first target ({}) receives WAL; the others get base backups only",
                a.repository
            );
        }
    }
    Ok(Status::Success)
}
