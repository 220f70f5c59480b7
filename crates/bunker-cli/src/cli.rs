//! The root command line: global options and the manual-page texts of `bunker --help`.

use std::path::PathBuf;

use bunker_format::compression::Compression;
use clap::{ArgAction, Args, Parser};

use crate::commands::Command;

const ROOT_ABOUT: &str = "Deduplicated, encrypted backups in restic-format repositories";

const ROOT_LONG_ABOUT: &str = "\
bunker makes deduplicated, encrypted, compressed backups of files into a repository in \
the restic repository format (version 2). Repositories written by bunker can be read by \
restic and rustic, and bunker reads theirs.

A repository is a local directory or an object-store location (for example \
s3:https://host/bucket/prefix). Commands that work on one repository need it (-r/--repo or \
BUNKER_REPOSITORY) and its password (see ENVIRONMENT). `run`, `status` and `config` do not \
need -r: they read repositories and passwords from the policy file (--config FILE or \
BUNKER_CONFIG, else ./bunker.yaml; `run` and `status` also take it as an argument). `version`, \
`generate` and `cache` need nothing.

Human-readable output goes to standard output, warnings and errors to standard error. \
With --json every reporting command prints machine-readable JSON instead.";

const ROOT_AFTER_LONG_HELP: &str = "\
EXAMPLES:
    Create a repository and back up a directory:
        export BUNKER_REPOSITORY=/srv/backup
        export BUNKER_PASSWORD_FILE=~/.config/bunker/password
        bunker init
        bunker backup ~/work --exclude '*.tmp'

    List snapshots and restore the newest one:
        bunker snapshots
        bunker restore latest --target /tmp/restored

    Run a policy (no -r: the policy names the repositories) and check on it:
        bunker run --config /etc/bunker/bunker.yaml --due
        bunker status --config /etc/bunker/bunker.yaml

ENVIRONMENT:
    BUNKER_REPOSITORY         repository location (like -r/--repo)
    BUNKER_CONFIG             policy file of run, status, config and --item (like --config)
    BUNKER_PASSWORD_FILE      file whose first line is the password (like --password-file)
    BUNKER_PASSWORD           the password itself
    BUNKER_PASSWORD_COMMAND   shell command printing the password (like --password-command)
    BUNKER_COMPRESSION        compression: off, auto, max or a zstd level 1..22
    BUNKER_PACK_SIZE          target pack size in MiB (4..128)
    BUNKER_CACHE_DIR          local cache of tree packs for remote repositories (like
                              --cache-dir; default $XDG_CACHE_HOME/bunker or ~/.cache/bunker)
    BUNKER_LOG, RUST_LOG      log filter (tracing syntax, e.g. `debug` or `bunker_repo=trace`);
                              overrides -v/-q
    BUNKER_ARCHIVE_WAIT_LIMIT how long a base backup waits for the server to archive its WAL
                              before it fails (default 15m)
    BUNKER_TEST_KDF_N         testing only: scrypt cost N for new keys (never use in production)
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION
                              S3 credentials and region (or -o s3.access_key_id=... etc.)

    The password is taken from --password-command, else --password-file, else
    BUNKER_PASSWORD; if none is set and standard input is a terminal, it is asked for
    without echo (twice for `init`).

EXIT STATUS:
    0    success
    1    fatal error (including invalid arguments); nothing or not everything was done
    3    backup or restore completed, but some files could not be read, written or were
         skipped (the snapshot, or the restore, is incomplete); `status`: an item is
         LATE (its newest snapshot is older than its RPO) or a repository is unreadable;
         `drill`: the drill passed but took longer than the item's rto; `recover --time`:
         some item has no snapshot at or before the time (a failed drill is 1)
    4    backup completed on a fallback repository because the primary was unreachable
         (see --fallback-repo; 3 takes precedence when files were also skipped)
    10   the repository does not exist
    11   the repository could not be locked (another process holds a conflicting lock);
         a storage that refuses writes is exit 1 with its own message, and commands that
         only read then go on without a lock (with a warning; see --no-lock)
    12   wrong password
    130  interrupted (SIGINT); locks held by this process are released first";

/// Options that apply to every command. They are listed under their own
/// heading, after each command's own options, in every `--help`.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Global options")]
pub struct GlobalOpts {
    /// Repository location: a directory, local:PATH, s3:URL or opendal:SCHEME
    #[arg(
        short = 'r',
        long = "repo",
        env = "BUNKER_REPOSITORY",
        global = true,
        value_name = "REPOSITORY"
    )]
    pub repo: Option<String>,

    /// Read the repository password from the first line of FILE
    #[arg(
        long,
        env = "BUNKER_PASSWORD_FILE",
        hide_env_values = true,
        global = true,
        value_name = "FILE"
    )]
    pub password_file: Option<PathBuf>,

    /// Run COMMAND with `sh -c` and use its standard output as the password
    #[arg(
        long,
        env = "BUNKER_PASSWORD_COMMAND",
        hide_env_values = true,
        global = true,
        value_name = "COMMAND"
    )]
    pub password_command: Option<String>,

    /// Print machine-readable JSON instead of human-readable text
    #[arg(long, global = true)]
    pub json: bool,

    /// Print only errors and warnings; no progress
    #[arg(short = 'q', long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// More log output (repeat for more: -v info, -vv debug, -vvv trace)
    #[arg(short = 'v', long, action = ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Do not show progress bars
    #[arg(long, global = true)]
    pub no_progress: bool,

    /// Compression of new data: off, auto, max or a zstd level 1..22
    #[arg(long, env = "BUNKER_COMPRESSION", global = true, value_name = "MODE", value_parser = parse_compression)]
    pub compression: Option<Compression>,

    /// Target size of new pack files in MiB (4..128, default 16)
    #[arg(long, env = "BUNKER_PACK_SIZE", global = true, value_name = "MIB",
          value_parser = clap::value_parser!(u64).range(4..=128))]
    pub pack_size: Option<u64>,

    /// Directory of the local tree-pack cache for remote repositories
    /// (default: $XDG_CACHE_HOME/bunker or ~/.cache/bunker)
    #[arg(long, env = "BUNKER_CACHE_DIR", global = true, value_name = "DIR")]
    pub cache_dir: Option<std::path::PathBuf>,

    /// Do not use the local tree-pack cache (every tree is read from the repository)
    #[arg(long, global = true)]
    pub no_cache: bool,

    /// Take no lock in commands that only read (snapshots, ls, restore, check, dump, diff,
    /// cat, key list); for read-only repositories. A concurrent prune may then make a
    /// read fail (never return wrong data)
    #[arg(long, global = true)]
    pub no_lock: bool,

    /// Backend option key=value (repeatable), e.g. -o connections=8 -o s3.region=garage
    #[arg(short = 'o', long = "option", global = true, value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub options: Vec<(String, String)>,
}

fn parse_compression(s: &str) -> Result<Compression, String> {
    s.parse::<Compression>().map_err(|e| e.to_string())
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not key=value")),
    }
}

/// `bunker`: the root command.
#[derive(Parser, Debug)]
#[command(
    name = "bunker",
    version,
    about = ROOT_ABOUT,
    long_about = ROOT_LONG_ABOUT,
    after_long_help = ROOT_AFTER_LONG_HELP,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,

    #[command(subcommand)]
    pub command: Command,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn key_value_options_parse() {
        assert_eq!(
            parse_key_value("connections=8"),
            Ok(("connections".to_string(), "8".to_string()))
        );
        assert_eq!(
            parse_key_value("s3.region=a=b"),
            Ok(("s3.region".to_string(), "a=b".to_string()))
        );
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_key_value("=x").is_err());
    }

    #[test]
    fn global_options_are_accepted_after_the_verb() {
        let cli = Cli::try_parse_from([
            "bunker",
            "snapshots",
            "-r",
            "repo",
            "--json",
            "-vv",
            "--pack-size",
            "32",
            "--compression",
            "max",
        ])
        .expect("valid command line");
        assert_eq!(cli.global.repo.as_deref(), Some("repo"));
        assert!(cli.global.json);
        assert_eq!(cli.global.verbose, 2);
        assert_eq!(cli.global.pack_size, Some(32));
        assert_eq!(cli.global.compression, Some(Compression::Max));
    }

    #[test]
    fn pack_size_out_of_range_is_rejected() {
        let r = Cli::try_parse_from(["bunker", "snapshots", "--pack-size", "2"]);
        assert!(r.is_err());
        let r = Cli::try_parse_from(["bunker", "snapshots", "--pack-size", "129"]);
        assert!(r.is_err());
    }
}
