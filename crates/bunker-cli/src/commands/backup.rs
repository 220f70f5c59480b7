//! `bunker backup`: save files and directories (or stdin) as a new snapshot.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bunker_repo::backup::{self, BackupExtras, BackupOptions, BackupSummary};
use bunker_sources::files_from::{read_lists, ListFormat};
use bunker_sources::ExcludeOptions;
use chrono::{DateTime, FixedOffset};
use clap::Args;

use crate::cli::GlobalOpts;
use crate::exit::Status;
use crate::output;
use crate::progress::Reporter;
use crate::repo;

const LONG_ABOUT: &str = "\
Back up files and directories into a new snapshot. As with restic, the snapshot stores every \
path under its full absolute path, so `bunker backup ./docs` run in /home/a saves /home/a/docs.

Files that did not change since the parent snapshot (same type, size, modification time, \
change time and inode) are not read again. The parent is the newest snapshot of this host \
with the same paths, or the one given with --parent; --force reads everything.

Exclusion follows restic's rules: patterns are matched against absolute paths; a pattern \
without a leading `/` matches at any depth; `*` does not cross `/`, `**` does; a leading `!` \
re-includes. Files that cannot be read are reported and left out; the snapshot is still \
written and the exit status is 3.";

const EXAMPLES: &str = "\
EXAMPLES:
    bunker backup /home /etc --exclude-caches --exclude '*.o' --tag daily
    bunker backup ~/src --exclude-file ~/.bunker-excludes --one-file-system
    pg_dump mydb | bunker backup --stdin --stdin-filename mydb.sql
    bunker backup --dry-run -v /srv/data";

/// Create a snapshot of files and directories
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct BackupArgs {
    /// Files and directories to back up
    #[arg(value_name = "PATH", required_unless_present_any =
          ["stdin", "files_from", "files_from_verbatim", "files_from_raw"])]
    pub paths: Vec<PathBuf>,
    /// Back up the paths listed in FILE (`-` = stdin): one glob per line, `#` comments (repeatable)
    #[arg(long, value_name = "FILE")]
    pub files_from: Vec<PathBuf>,
    /// Back up the paths listed in FILE, one per line, taken literally (repeatable)
    #[arg(long, value_name = "FILE")]
    pub files_from_verbatim: Vec<PathBuf>,
    /// Back up the NUL-separated paths in FILE (e.g. from `find -print0`; repeatable)
    #[arg(long, value_name = "FILE")]
    pub files_from_raw: Vec<PathBuf>,
    /// Save no snapshot when nothing changed since the parent snapshot
    #[arg(long)]
    pub skip_if_unchanged: bool,
    /// Exclude paths matching PATTERN (repeatable)
    #[arg(short = 'e', long = "exclude", value_name = "PATTERN")]
    pub excludes: Vec<String>,
    /// Read exclude patterns from FILE, one per line (repeatable)
    #[arg(long = "exclude-file", value_name = "FILE")]
    pub exclude_files: Vec<PathBuf>,
    /// Like --exclude, but case-insensitive (repeatable)
    #[arg(long = "iexclude", value_name = "PATTERN")]
    pub iexcludes: Vec<String>,
    /// Like --exclude-file, but case-insensitive (repeatable)
    #[arg(long = "iexclude-file", value_name = "FILE")]
    pub iexclude_files: Vec<PathBuf>,
    /// Exclude directories containing a valid CACHEDIR.TAG (except the tag file)
    #[arg(long)]
    pub exclude_caches: bool,
    /// Exclude directories containing a file NAME[:HEADER] (repeatable)
    #[arg(long, value_name = "NAME[:HEADER]")]
    pub exclude_if_present: Vec<String>,
    /// Exclude files larger than SIZE (e.g. 500M, 2G)
    #[arg(long, value_name = "SIZE")]
    pub exclude_larger_than: Option<String>,
    /// Do not cross file-system boundaries below the given paths
    #[arg(short = 'x', long)]
    pub one_file_system: bool,
    /// Add TAG to the snapshot (repeatable; `a,b` adds both)
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Host name to record (default: this host)
    #[arg(long, short = 'H')]
    pub host: Option<String>,
    /// Snapshot time instead of now ("2006-01-02 15:04:05" local, or RFC 3339)
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub time: Option<DateTime<FixedOffset>>,
    /// Use this snapshot (id, prefix or `latest`) as the parent
    #[arg(long, value_name = "SNAPSHOT")]
    pub parent: Option<String>,
    /// Read all files, even unchanged ones (ignore any parent)
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Do not use the change time to detect changed files
    #[arg(long)]
    pub ignore_ctime: bool,
    /// Do not use the inode number to detect changed files
    #[arg(long)]
    pub ignore_inode: bool,
    /// Back up standard input as one file
    #[arg(long, conflicts_with = "paths")]
    pub stdin: bool,
    /// File name for --stdin
    #[arg(long, value_name = "NAME", default_value = "stdin", requires = "stdin")]
    pub stdin_filename: String,
    /// Do everything but write nothing to the repository
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Worker threads for reading and compressing (0 = one per core)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub read_concurrency: usize,
    /// Back up to LOCATION when the repository is unreachable (repeatable, tried in
    /// order; must be initialised, same password; exit status 4 when used)
    #[arg(long = "fallback-repo", value_name = "LOCATION")]
    pub fallback_repos: Vec<String>,
}

/// `--time`: restic's `2006-01-02 15:04:05` (local time) or RFC 3339.
pub fn parse_time(s: &str) -> Result<DateTime<FixedOffset>, String> {
    bunker_repo::find::parse_time(s).map_err(|e| e.to_string())
}

fn elapsed(s: &BackupSummary) -> Duration {
    (s.backup_end - s.backup_start).to_std().unwrap_or_default()
}

/// The human-readable summary, as restic prints it.
fn text_summary(s: &BackupSummary) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "Files:       {:>6} new, {:>6} changed, {:>6} unmodified\n",
        s.files_new, s.files_changed, s.files_unmodified
    ));
    out.push_str(&format!(
        "Dirs:        {:>6} new, {:>6} changed, {:>6} unmodified\n",
        s.dirs_new, s.dirs_changed, s.dirs_unmodified
    ));
    let verb = if s.dry_run { "Would add" } else { "Added" };
    out.push_str(&format!(
        "{verb} to the repository: {} ({} stored)\n\n",
        output::bytes(s.data_added),
        output::bytes(s.data_added_packed)
    ));
    out.push_str(&format!(
        "processed {} files, {} in {}\n",
        s.total_files_processed,
        output::bytes(s.total_bytes_processed),
        output::duration(elapsed(s))
    ));
    match s.snapshot_id {
        Some(id) => out.push_str(&format!("snapshot {} saved\n", id.short())),
        None if s.skipped_unchanged => {
            out.push_str("nothing changed since the parent snapshot: no snapshot saved\n")
        }
        None if s.dry_run => out.push_str("dry run: no snapshot saved\n"),
        None => {}
    }
    out
}

pub fn run(g: &GlobalOpts, args: BackupArgs) -> Result<Status> {
    if args.stdin && !args.paths.is_empty() {
        bail!("--stdin cannot be combined with paths");
    }
    let tags: Vec<String> = args
        .tags
        .iter()
        .flat_map(|t| t.split(','))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    let excludes = ExcludeOptions {
        excludes: args.excludes,
        iexcludes: args.iexcludes,
        exclude_files: args.exclude_files,
        iexclude_files: args.iexclude_files,
        exclude_caches: args.exclude_caches,
        exclude_if_present: args.exclude_if_present,
        one_file_system: args.one_file_system,
        roots: Vec::new(),
        exclude_larger_than: args.exclude_larger_than,
    };
    let lists = [
        (&args.files_from, ListFormat::Patterns),
        (&args.files_from_verbatim, ListFormat::Verbatim),
        (&args.files_from_raw, ListFormat::Raw),
    ];
    let listed = read_lists(
        lists
            .iter()
            .flat_map(|(files, f)| files.iter().map(move |p| (p.as_path(), *f))),
    )?;
    for glob in &listed.unmatched {
        eprintln!("warning: pattern {glob:?} does not match any files, skipping");
    }
    let mut paths = listed.paths;
    paths.extend(args.paths);
    if paths.is_empty() && !args.stdin {
        bail!("nothing to back up: the file lists name no existing files");
    }
    let stdin: Option<(Box<dyn std::io::Read + Send>, String)> = if args.stdin {
        Some((Box::new(StdinReader(std::io::stdin())), args.stdin_filename))
    } else {
        None
    };
    let mut opts = BackupOptions {
        paths,
        excludes,
        tags,
        host: args.host,
        time: args.time,
        parent: args.parent,
        force: args.force,
        ignore_ctime: args.ignore_ctime,
        ignore_inode: args.ignore_inode,
        stdin,
        dry_run: args.dry_run,
        read_concurrency: args.read_concurrency,
        warmer: None,
        cancel: Some(crate::interrupt::token()),
    };
    // The tree's metadata is read into the kernel's caches (and counted for
    // the progress totals) while the repository is opened.
    opts.warmer = backup::warm_up(&opts);
    let opened = repo::open_for_backup(g, &args.fallback_repos)?;
    let fallback_used = opened.fallback_for.is_some().then(|| opened.name.clone());
    let r = opened.repo;
    let reporter = Reporter::new(g, "files", "archival");
    let extras = BackupExtras {
        skip_if_unchanged: args.skip_if_unchanged,
    };
    let summary = backup::backup_with(&r, opts, extras, &reporter)
        .with_context(|| format!("backup to {} failed", opened.location))?;
    reporter.finish();
    crate::audit_trail::snapshots(summary.snapshot_id);
    if g.json {
        let mut json = summary.message();
        json.fallback_used = fallback_used.clone();
        output::json_line(&json)?;
    } else if !g.quiet {
        print!("{}", text_summary(&summary));
    }
    if let Some(fb) = &fallback_used {
        let why = opened
            .primary_error
            .as_ref()
            .map(|reason| format!(" ({reason})"))
            .unwrap_or_default();
        eprintln!(
            "bunker: WARNING: the snapshot was saved to the FALLBACK repository {fb}, not to {}{why}",
            repo::location(g)?
        );
    }
    if summary.errors.is_empty() {
        Ok(if fallback_used.is_some() {
            Status::Fallback
        } else {
            Status::Success
        })
    } else {
        if !g.json {
            eprintln!(
                "warning: {} item(s) could not be read and are missing from the snapshot",
                summary.errors.len()
            );
        }
        Ok(Status::Incomplete)
    }
}

/// Standard input whose read errors say so (the library reports a stream's
/// read error as it is, since its other streams name themselves, such as
/// "pg_basebackup failed …").
struct StdinReader(std::io::Stdin);

impl std::io::Read for StdinReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0
            .read(buf)
            .map_err(|e| std::io::Error::new(e.kind(), format!("reading standard input: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_formats() {
        let t = parse_time("2024-03-01T10:20:30+02:00").expect("rfc3339");
        assert_eq!(t.to_rfc3339(), "2024-03-01T10:20:30+02:00");
        assert!(parse_time("yesterday").is_err());
    }
}
