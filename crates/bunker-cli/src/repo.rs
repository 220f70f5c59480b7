//! Opening the repository named by the global options, and locking it.

use std::sync::Arc;

use anyhow::{Context, Result};
use bunker_engine::pool::{open_first_reachable, Candidate, Opened, PoolOptions};
use bunker_repo::lock::RepoLock;
use bunker_repo::snapshots::SnapshotFilter;
use bunker_repo::{RepoOptions, Repository};
use bunker_storage::DynStorage;

use crate::cli::GlobalOpts;
use crate::commands::config::ItemArgs;
use crate::events::{StderrSink, Wording};
use crate::exit::LockFailed;

/// Engine tunables from `--compression`, `--pack-size`, `-o connections=N` and
/// `-o index.flush_interval=DURATION`.
pub fn repo_options(g: &GlobalOpts) -> Result<RepoOptions> {
    let mut o = RepoOptions {
        cache_dir: cache_dir(g),
        no_lock: g.no_lock,
        ..RepoOptions::default()
    };
    if let Some(c) = g.compression {
        o.compression = c;
    }
    if let Some(mib) = g.pack_size {
        o.pack_size = mib * 1024 * 1024;
    }
    for (k, v) in &g.options {
        if k == "connections" {
            o.connections = v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .with_context(|| format!("option connections={v}: expected a positive number"))?;
        }
        if k == "index.flush_interval" {
            o.index_flush_interval = bunker_storage::parse_duration_option(k, v)?;
        }
    }
    Ok(o)
}

/// The tree-pack cache root: none for local repositories (their packs are
/// local already) or with `--no-cache`; else `--cache-dir`/`BUNKER_CACHE_DIR`,
/// else the user's cache directory.
fn cache_dir(g: &GlobalOpts) -> Option<std::path::PathBuf> {
    let local = matches!(
        g.repo.as_deref().map(bunker_storage::parse_location),
        None | Some(Ok(bunker_storage::Location::Local(_)))
    );
    if g.no_cache || local {
        return None;
    }
    g.cache_dir
        .clone()
        .or_else(bunker_repo::tree_cache::default_cache_root)
}

/// The repository location; an error when none is given.
pub fn location(g: &GlobalOpts) -> Result<&str> {
    g.repo
        .as_deref()
        .filter(|r| !r.is_empty())
        .context("no repository given: use -r/--repo or set BUNKER_REPOSITORY")
}

/// The storage stack for the repository location.
pub fn storage(g: &GlobalOpts) -> Result<DynStorage> {
    let loc = location(g)?;
    bunker_storage::open(loc, &g.options).with_context(|| format!("opening repository {loc}"))
}

/// Open the repository (password from the usual sources). The index is not loaded.
pub fn open(g: &GlobalOpts) -> Result<Arc<Repository>> {
    let storage = storage(g)?;
    let options = repo_options(g)?;
    let password = crate::password::for_open(g)?;
    let repo = Repository::open(storage, &password, options)?;
    crate::interrupt::register(&repo);
    tracing::info!("opened repository {}", repo.storage().location());
    Ok(repo)
}

/// The `-r` given on the command line (not `BUNKER_REPOSITORY`, which
/// serves the commands that take a repository and is ignored by the rest).
pub fn given_repo(g: &GlobalOpts) -> Option<&str> {
    let from_env = std::env::var("BUNKER_REPOSITORY").ok();
    g.repo
        .as_deref()
        .filter(|r| from_env.as_deref() != Some(*r))
}

/// Open the `-r` repository, or with `--item` the item's repository from
/// the policy (the engine's [`bunker_engine::pool::open_item`]); the item's
/// tag restricts `filter`. The index is not loaded.
pub fn open_for(
    g: &GlobalOpts,
    item: &ItemArgs,
    filter: &mut SnapshotFilter,
) -> Result<Arc<Repository>> {
    let Some(name) = &item.item else {
        return open(g);
    };
    if let Some(r) = given_repo(g) {
        anyhow::bail!("give either -r {r} or --item {name}, not both");
    }
    let policy = item.policy.load()?;
    let sink = StderrSink::POLICY;
    let it = bunker_engine::pool::open_item(&policy, name, pool_options(g, false)?, &sink)?;
    bunker_engine::pool::restrict_to_tag(filter, &it.tag);
    Ok(it.opened.repo.clone())
}

/// The options of a pool of the policy's repositories: the `-o` options
/// and repository flags of `g`; `create` lets missing repositories be
/// created (`run`).
pub fn pool_options(g: &GlobalOpts, create: bool) -> Result<PoolOptions> {
    Ok(PoolOptions {
        extra_options: g.options.clone(),
        repo_options: repo_options(g)?,
        create,
    })
}

/// Open the repository and load its index.
pub fn open_with_index(g: &GlobalOpts) -> Result<Arc<Repository>> {
    let repo = open(g)?;
    repo.load_index().context("loading the index")?;
    Ok(repo)
}

/// Open the `-r` repository for writing a backup, or the first reachable of
/// `fallbacks` when it is unreachable (the engine's one fallback rule; the
/// fallbacks must exist). Warnings go to standard error.
pub fn open_for_backup(g: &GlobalOpts, fallbacks: &[String]) -> Result<Opened> {
    let primary = location(g)?;
    let repo_options = repo_options(g)?;
    let password = crate::password::for_open(g)?;
    let candidate = |loc: &str| Candidate::from_location(loc, &g.options, &password);
    let fallbacks: Vec<Candidate> = fallbacks.iter().map(|f| candidate(f)).collect();
    let sink = StderrSink {
        wording: Wording::Location,
    };
    Ok(open_first_reachable(
        &candidate(primary),
        &fallbacks,
        &repo_options,
        false,
        &sink,
    )?)
}

/// Take a shared or exclusive lock (exit status 11 on failure).
pub fn lock(repo: &Arc<Repository>, exclusive: bool) -> Result<RepoLock> {
    RepoLock::acquire(repo, exclusive).context(LockFailed)
}

/// The lock of a command that only reads: none with `--no-lock`, nor (after
/// a warning) when the storage refuses writes; else a shared lock.
pub fn lock_read(repo: &Arc<Repository>) -> Result<Option<RepoLock>> {
    RepoLock::acquire_read(repo).context(LockFailed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bunker_format::compression::Compression;
    use clap::Parser;

    fn global(args: &[&str]) -> GlobalOpts {
        let mut v = vec!["bunker"];
        v.extend_from_slice(args);
        v.push("unlock");
        crate::cli::Cli::try_parse_from(v).expect("parses").global
    }

    #[test]
    fn options_map_to_engine_tunables() {
        let g = global(&[
            "--pack-size",
            "8",
            "--compression",
            "off",
            "-o",
            "connections=3",
            "-o",
            "index.flush_interval=2.5",
        ]);
        let o = repo_options(&g).expect("valid");
        assert_eq!(
            o.index_flush_interval,
            std::time::Duration::from_millis(2500)
        );
        assert_eq!(o.pack_size, 8 * 1024 * 1024);
        assert_eq!(o.compression, Compression::Off);
        assert_eq!(o.connections, 3);
        let g = global(&["-o", "connections=none"]);
        assert!(repo_options(&g).is_err());
    }

    #[test]
    fn missing_location_is_a_clear_error() {
        let mut g = global(&[]);
        g.repo = None;
        let e = location(&g).expect_err("no repo");
        assert!(e.to_string().contains("BUNKER_REPOSITORY"));
    }
}
