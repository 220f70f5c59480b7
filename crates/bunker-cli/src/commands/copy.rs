//! `bunker copy`: copy snapshots from another repository into this one.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use bunker_repo::copy::{self, CopyOptions, CopySummary};
use bunker_repo::Repository;
use clap::Args;
use serde::Serialize;

use crate::cli::GlobalOpts;
use crate::commands::FilterArgs;
use crate::exit::Status;
use crate::progress::Reporter;
use crate::{output, password, repo};

const LONG_ABOUT: &str = "\
Copy snapshots from the repository given with --from-repo into the current repository \
(-r/--repo). The two repositories may have different passwords, keys and chunker \
parameters: blobs are copied by id and re-encrypted with the destination's key, data is \
not re-chunked (as with restic copy), so data the destination chunked itself is not \
deduplicated against copied data.

Only blobs the destination lacks are transferred. Snapshots are written after all their \
data and index files, so an interrupted copy leaves no broken snapshot and running the \
same command again resumes. Snapshots already copied (same original id and the same \
time, tree, host, user, paths, tags and excludes) are skipped.

A copied snapshot keeps its time, host, user, paths, tags and excludes; `original` is set \
to the source snapshot id, and `program_version` records `copied by bunker VERSION from \
repository ID8`. Without SNAPSHOT arguments every snapshot matching --host/--tag/--path \
is copied.

The source password comes from --from-password-command, else --from-password-file, else \
BUNKER_FROM_PASSWORD, else a prompt on a terminal. Backend options for the source are \
given with --from-option (the global -o options apply to the destination).";

const EXAMPLES: &str = "\
EXAMPLES:
    Copy everything from a local repository to S3:
        bunker -r s3:https://s3.example.com/backups/host1 copy \\
            --from-repo /srv/backup --from-password-file /etc/bunker/local.pw

    Heal the primary after a backup went to a fallback:
        bunker -r s3:http://garage.lan:3900/bunker/main copy --from-repo /var/backup/fallback

    Copy only the newest snapshot with tag db:
        bunker copy --from-repo /srv/old --tag db latest";

/// Copy snapshots from another repository
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct CopyArgs {
    /// Snapshots to copy (ids, prefixes or `latest`; default: all matching the filters)
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// Source repository location
    #[arg(long, env = "BUNKER_FROM_REPOSITORY", value_name = "LOCATION")]
    pub from_repo: String,
    /// Read the source password from the first line of FILE
    #[arg(long, env = "BUNKER_FROM_PASSWORD_FILE", value_name = "FILE")]
    pub from_password_file: Option<PathBuf>,
    /// Run COMMAND with `sh -c` and use its output as the source password
    #[arg(long, env = "BUNKER_FROM_PASSWORD_COMMAND", value_name = "COMMAND")]
    pub from_password_command: Option<String>,
    /// Backend option for the source repository (repeatable)
    #[arg(long = "from-option", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub from_options: Vec<(String, String)>,
    #[command(flatten)]
    pub filter: FilterArgs,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not key=value")),
    }
}

/// Environment variable holding the source repository's password.
pub const FROM_PASSWORD_ENV: &str = "BUNKER_FROM_PASSWORD";

fn from_password(args: &CopyArgs) -> Result<Vec<u8>> {
    match (&args.from_password_command, &args.from_password_file) {
        (Some(_), Some(_)) => {
            bail!("--from-password-command and --from-password-file are mutually exclusive")
        }
        (Some(cmd), None) => return password::run_command(cmd),
        (None, Some(file)) => return password::read_file(file),
        (None, None) => {}
    }
    if let Some(pw) = std::env::var_os(FROM_PASSWORD_ENV).filter(|v| !v.is_empty()) {
        use std::os::unix::ffi::OsStrExt;
        return Ok(pw.as_bytes().to_vec());
    }
    if std::io::stdin().is_terminal() {
        let pw = rpassword::prompt_password("enter password for source repository: ")
            .context("reading password from the terminal")?;
        if !pw.is_empty() {
            return Ok(pw.into_bytes());
        }
    }
    bail!(
        "no password for the source repository: use --from-password-file, \
         --from-password-command or BUNKER_FROM_PASSWORD"
    )
}

#[derive(Serialize)]
struct JsonPair {
    source: String,
    destination: String,
}

#[derive(Serialize)]
struct JsonSummary {
    message_type: &'static str,
    source_repository: String,
    copied: Vec<JsonPair>,
    skipped: Vec<JsonPair>,
    trees_copied: u64,
    data_blobs_copied: u64,
    blobs_present: u64,
    bytes_copied: u64,
    bytes_stored: u64,
    bytes_read: u64,
    packs: u64,
}

fn json_summary(from: &str, s: &CopySummary) -> JsonSummary {
    JsonSummary {
        message_type: "summary",
        source_repository: from.to_string(),
        copied: s
            .copied
            .iter()
            .map(|c| JsonPair {
                source: c.source.to_string(),
                destination: c.destination.to_string(),
            })
            .collect(),
        skipped: s
            .skipped
            .iter()
            .map(|c| JsonPair {
                source: c.source.to_string(),
                destination: c.existing.to_string(),
            })
            .collect(),
        trees_copied: s.trees_copied,
        data_blobs_copied: s.data_blobs_copied,
        blobs_present: s.blobs_present,
        bytes_copied: s.bytes_copied,
        bytes_stored: s.bytes_stored,
        bytes_read: s.bytes_read,
        packs: s.packs,
    }
}

fn text_summary(s: &CopySummary, verbose: bool) -> String {
    let mut out = String::new();
    if verbose {
        for k in &s.skipped {
            out.push_str(&format!(
                "skipping source snapshot {}, was already copied to snapshot {}\n",
                k.source.short(),
                k.existing.short()
            ));
        }
    }
    for c in &s.copied {
        out.push_str(&format!(
            "snapshot {} saved, copied from source snapshot {}\n",
            c.destination.short(),
            c.source.short()
        ));
    }
    out.push_str(&format!(
        "copied {} snapshot(s), {} already present; added {} ({} stored) in {} blobs\n",
        s.copied.len(),
        s.skipped.len(),
        output::bytes(s.bytes_copied),
        output::bytes(s.bytes_stored),
        s.trees_copied + s.data_blobs_copied
    ));
    out
}

fn open_source(g: &GlobalOpts, args: &CopyArgs) -> Result<std::sync::Arc<Repository>> {
    let storage = bunker_storage::open(&args.from_repo, &args.from_options)
        .with_context(|| format!("opening source repository {}", args.from_repo))?;
    let password = from_password(args)?;
    let src = Repository::open(storage, &password, repo::repo_options(g)?)
        .with_context(|| format!("opening source repository {}", args.from_repo))?;
    crate::interrupt::register(&src);
    Ok(src)
}

pub fn run(g: &GlobalOpts, args: CopyArgs) -> Result<Status> {
    let dst = repo::open(g)?;
    let src = open_source(g, &args)?;
    let opts = CopyOptions {
        filter: args.filter.filter(),
        snapshots: args.snapshots.clone(),
    };
    let reporter = Reporter::new(g, "snapshots", "copying");
    let summary = copy::copy(&src, &dst, &opts, &reporter).with_context(|| {
        format!(
            "copy from {} to {} failed (run it again to resume)",
            args.from_repo,
            dst.storage().location()
        )
    })?;
    reporter.finish();
    if g.json {
        output::json_line(&json_summary(&args.from_repo, &summary))?;
    } else if !g.quiet {
        print!("{}", text_summary(&summary, g.verbose > 0));
    }
    Ok(Status::Success)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn arguments_parse() {
        let cli = crate::cli::Cli::try_parse_from([
            "bunker",
            "copy",
            "--from-repo",
            "/src",
            "--from-password-file",
            "/pw",
            "--from-option",
            "timeout=5",
            "--tag",
            "a,b",
            "latest",
            "abc123",
        ])
        .expect("parses");
        let crate::commands::Command::Copy(a) = cli.command else {
            panic!("not copy");
        };
        assert_eq!(a.from_repo, "/src");
        assert_eq!(a.snapshots, ["latest", "abc123"]);
        assert_eq!(a.from_options, [("timeout".to_string(), "5".to_string())]);
        assert_eq!(
            a.filter.filter().tags,
            vec![vec!["a".to_string(), "b".to_string()]]
        );
    }

    #[test]
    fn password_sources_are_exclusive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("pw");
        std::fs::write(&f, "from file\n").expect("write");
        let mut a = CopyArgs {
            snapshots: vec![],
            from_repo: "/x".into(),
            from_password_file: Some(f),
            from_password_command: None,
            from_options: vec![],
            filter: FilterArgs::default(),
        };
        assert_eq!(from_password(&a).expect("file"), b"from file");
        a.from_password_command = Some("echo cmd".into());
        assert!(from_password(&a).is_err());
        a.from_password_file = None;
        assert_eq!(from_password(&a).expect("command"), b"cmd");
    }
}
