//! Opening repositories: a policy's named repositories with their password
//! sources, options and fallbacks ([`RepoPool`]), and the one fallback rule
//! every caller shares ([`open_first_reachable`]).
//!
//! **Fallbacks.** When a repository has fallbacks, opening it first checks
//! quickly (retries bounded by [`PROBE_BUDGET`]) whether it answers. Only
//! unreachability — a retryable storage error: connection refused, time-outs,
//! 5xx — is a reason to fall back; a wrong password, a missing repository,
//! bad credentials or options are returned at once. Fallbacks are tried in
//! order, each probed the same way except the last, which gets the full
//! retry budget (nothing is left to try after it).
//!
//! **Creating repositories.** A repository is created only when the caller
//! asks for it (`create`): `bunker run` does, for every repository the policy
//! declares — targets and their fallbacks alike, since the policy names them
//! and a fallback is needed exactly when the primary is down. `status`,
//! `config check --connect`, `forget --item` and `backup --fallback-repo`
//! never create one: a missing repository is an error there.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bunker_format::keyfile::KdfParams;
use bunker_policy::{PasswordSource, Policy, RepositoryConfig};
use bunker_repo::{RepoError, RepoOptions, Repository};
use bunker_storage::{FileType, Location};

use crate::error::{Context, EngineError, Result};
use crate::events::{Event, EventSink, FallbackEvent};

/// How long opening a repository that has fallbacks may keep retrying
/// before it counts as unreachable.
pub const PROBE_BUDGET: Duration = Duration::from_secs(20);

/// Options for `location`: S3-only (`s3.*`) and SFTP-only (`sftp.*`) keys are
/// dropped for other locations, so one option list can serve an S3 or SFTP
/// primary and a local fallback.
pub fn options_for(location: &str, options: &[(String, String)]) -> Vec<(String, String)> {
    let loc = bunker_storage::parse_location(location);
    let is_s3 = matches!(loc, Ok(Location::S3(_)));
    let is_sftp = matches!(loc, Ok(Location::Sftp(_)));
    options
        .iter()
        .filter(|(k, _)| is_s3 || !k.starts_with("s3."))
        .filter(|(k, _)| is_sftp || !k.starts_with("sftp."))
        .cloned()
        .collect()
}

/// Where a candidate's password comes from.
#[derive(Debug, Clone)]
pub enum CandidatePassword {
    /// Already known (the command line's password).
    Known(Vec<u8>),
    /// A policy repository's source, resolved when the repository is opened.
    Source(PasswordSource),
}

/// One repository [`open_first_reachable`] may open.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// How events and results name it: the policy name, or the location.
    pub name: String,
    /// How error messages name it (`"name" at location`, or the location).
    pub label: String,
    /// Its location.
    pub location: String,
    /// Backend options (filtered with [`options_for`] when opened).
    pub options: Vec<(String, String)>,
    /// Its password.
    pub password: CandidatePassword,
}

impl Candidate {
    /// A repository of the policy, with `extra` options (the command line's
    /// `-o`) after its own.
    pub fn from_policy(cfg: &RepositoryConfig, extra: &[(String, String)]) -> Candidate {
        let mut options: Vec<(String, String)> = cfg
            .options
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        options.extend(extra.iter().cloned());
        Candidate {
            name: cfg.name.clone(),
            label: format!("{:?} at {}", cfg.name, cfg.location),
            location: cfg.location.clone(),
            options,
            password: CandidatePassword::Source(cfg.password.clone()),
        }
    }

    /// A repository given by its location (the command line's `-r`).
    pub fn from_location(location: &str, options: &[(String, String)], password: &[u8]) -> Self {
        Candidate {
            name: location.to_string(),
            label: location.to_string(),
            location: location.to_string(),
            options: options.to_vec(),
            password: CandidatePassword::Known(password.to_vec()),
        }
    }

    fn password(&self) -> Result<Vec<u8>> {
        match &self.password {
            CandidatePassword::Known(p) => Ok(p.clone()),
            CandidatePassword::Source(src) => {
                let secret = src
                    .resolve()
                    .with_context(|| format!("password of repository {:?}", self.name))?;
                let pw = secret.expose().as_bytes().to_vec();
                if pw.is_empty() {
                    return Err(EngineError::Invalid(format!(
                        "password of repository {:?} is empty",
                        self.name
                    )));
                }
                Ok(pw)
            }
        }
    }

    /// Open it (creating it when `create` and it does not exist); with
    /// `probe`, first find out quickly whether it answers at all.
    fn open(&self, repo_options: &RepoOptions, create: bool, probe: bool) -> Result<Opened> {
        let options = options_for(&self.location, &self.options);
        if probe {
            let mut probe_opts = options.clone();
            if !probe_opts.iter().any(|(k, _)| k == "retry.max_elapsed") {
                probe_opts.push((
                    "retry.max_elapsed".into(),
                    PROBE_BUDGET.as_secs().to_string(),
                ));
            }
            bunker_storage::open(&self.location, &probe_opts)
                .and_then(|s| s.stat(FileType::Config, ""))
                .with_context(|| format!("reaching repository {}", self.label))?;
        }
        let storage = bunker_storage::open(&self.location, &options)
            .with_context(|| format!("opening repository {}", self.label))?;
        let pw = self.password()?;
        let (repo, created) = match Repository::open(storage.clone(), &pw, repo_options.clone()) {
            Ok(r) => (r, false),
            Err(RepoError::NoRepository { .. }) if create => {
                let r = Repository::init(storage, &pw, repo_options.clone(), KdfParams::from_env())
                    .with_context(|| format!("creating repository {}", self.label))?;
                (r, true)
            }
            Err(e) => {
                return Err(EngineError::failed(
                    format!("opening repository {}", self.label),
                    e,
                ))
            }
        };
        Ok(Opened {
            repo,
            name: self.name.clone(),
            location: self.location.clone(),
            created,
            fallback_for: None,
            primary_error: None,
        })
    }
}

/// A repository, opened.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The repository (index not loaded).
    pub repo: Arc<Repository>,
    /// The name of the candidate actually used.
    pub name: String,
    /// Its location.
    pub location: String,
    /// It did not exist and was created now.
    pub created: bool,
    /// Set when this is a fallback: the name of the unreachable primary.
    pub fallback_for: Option<String>,
    /// Set when this is a fallback: why the primary was unreachable (one line).
    pub primary_error: Option<String>,
}

/// Opens `primary`, or the first usable of `fallbacks` when the primary is
/// unreachable (see the module documentation). Each step is reported to
/// `sink` as a [`FallbackEvent`]; when everything is unreachable, the
/// primary's error is returned.
pub fn open_first_reachable(
    primary: &Candidate,
    fallbacks: &[Candidate],
    repo_options: &RepoOptions,
    create: bool,
    sink: &dyn EventSink,
) -> Result<Opened> {
    let probe = !fallbacks.is_empty();
    let first_err = match primary.open(repo_options, create, probe) {
        Ok(o) => return Ok(announce(o, sink)),
        Err(e) if probe && e.is_retryable() => e,
        Err(e) => return Err(e),
    };
    let msg = first_err.one_line();
    sink.event(&Event::Fallback(FallbackEvent::PrimaryUnreachable {
        primary: &primary.name,
        error: &msg,
    }));
    for (i, fb) in fallbacks.iter().enumerate() {
        let last = i + 1 == fallbacks.len();
        match fb.open(repo_options, create, !last) {
            Ok(mut o) => {
                sink.event(&Event::Fallback(FallbackEvent::UsingFallback {
                    fallback: &fb.name,
                    primary: &primary.name,
                }));
                o.fallback_for = Some(primary.name.clone());
                o.primary_error = Some(msg.clone());
                return Ok(announce(o, sink));
            }
            Err(e) => {
                let why = e.one_line();
                sink.event(&Event::Fallback(FallbackEvent::FallbackUnusable {
                    fallback: &fb.name,
                    error: &why,
                }));
            }
        }
    }
    let names: Vec<&str> = fallbacks.iter().map(|f| f.name.as_str()).collect();
    Err(EngineError::failed(
        format!(
            "repository {:?} and all its fallbacks ({}) are unreachable",
            primary.name,
            names.join(", ")
        ),
        first_err,
    ))
}

fn announce(o: Opened, sink: &dyn EventSink) -> Opened {
    sink.event(&Event::RepositoryOpened(&o.repo));
    if o.created {
        sink.event(&Event::RepositoryCreated {
            name: &o.name,
            location: &o.repo.storage().location(),
        });
    }
    o
}

/// How a [`RepoPool`] opens repositories.
#[derive(Debug, Clone, Default)]
pub struct PoolOptions {
    /// Backend options added to every repository's own (the command line's `-o`).
    pub extra_options: Vec<(String, String)>,
    /// Engine tunables for every repository.
    pub repo_options: RepoOptions,
    /// Create repositories that do not exist yet (see the module documentation).
    pub create: bool,
}

/// The policy's repositories, each opened at most once per job (errors are
/// kept too, so an unreachable repository is not retried item after item).
pub struct RepoPool<'p> {
    policy: &'p Policy,
    options: PoolOptions,
    sink: &'p dyn EventSink,
    open: HashMap<String, std::result::Result<Arc<Opened>, Arc<EngineError>>>,
}

impl<'p> RepoPool<'p> {
    /// An empty pool over `policy`'s repositories.
    pub fn new(policy: &'p Policy, options: PoolOptions, sink: &'p dyn EventSink) -> Self {
        RepoPool {
            policy,
            options,
            sink,
            open: HashMap::new(),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &'p Policy {
        self.policy
    }

    /// Repository `name` of the policy (or the fallback used instead).
    pub fn get(&mut self, name: &str) -> std::result::Result<Arc<Opened>, Arc<EngineError>> {
        if let Some(r) = self.open.get(name) {
            return r.clone();
        }
        let r = self.open_uncached(name).map(Arc::new).map_err(Arc::new);
        self.open.insert(name.to_string(), r.clone());
        r
    }

    fn open_uncached(&self, name: &str) -> Result<Opened> {
        let cfg = self
            .policy
            .repositories
            .get(name)
            .ok_or_else(|| EngineError::Invalid(format!("unknown repository {name:?}")))?;
        let extra = &self.options.extra_options;
        let primary = Candidate::from_policy(cfg, extra);
        let fallbacks: Vec<Candidate> = cfg
            .fallbacks
            .iter()
            .filter_map(|f| self.policy.repositories.get(f))
            .map(|f| Candidate::from_policy(f, extra))
            .collect();
        open_first_reachable(
            &primary,
            &fallbacks,
            &self.options.repo_options,
            self.options.create,
            self.sink,
        )
    }
}

/// A policy item's repository, opened for reading its snapshots.
#[derive(Debug, Clone)]
pub struct ItemRepository {
    /// The item's first target (or the fallback used instead).
    pub opened: Arc<Opened>,
    /// The item's tag (`bunker:item=NAME`): its snapshots carry it.
    pub tag: String,
}

/// Open the repository of policy item `item` — its first target, with that
/// repository's password source, options and fallbacks — for the commands
/// that read snapshots (`ls`, `restore`, `dump`, `diff`, `snapshots`,
/// `pg restore`). Nothing is created.
pub fn open_item(
    policy: &Policy,
    item: &str,
    options: PoolOptions,
    sink: &dyn EventSink,
) -> Result<ItemRepository> {
    let it = policy.item(item).ok_or_else(|| {
        let names: Vec<&str> = policy.items.iter().map(|i| i.name.as_str()).collect();
        EngineError::Invalid(format!(
            "no item {item:?} in the policy (items: {})",
            names.join(", ")
        ))
    })?;
    let target = it
        .targets
        .first()
        .ok_or_else(|| EngineError::Invalid(format!("item {item:?} has no target")))?;
    let mut pool = RepoPool::new(
        policy,
        PoolOptions {
            create: false,
            ..options
        },
        sink,
    );
    let opened = pool
        .get(target)
        .map_err(|e| Arc::try_unwrap(e).unwrap_or_else(|e| EngineError::Invalid(e.one_line())))?;
    Ok(ItemRepository {
        opened,
        tag: it.tag(),
    })
}

/// Whether `location` is one of the policy's repositories (the same text,
/// or the same local directory once both are made absolute).
pub fn names_location(policy: &Policy, location: &str) -> bool {
    let abs = |p: std::path::PathBuf| std::path::absolute(&p).unwrap_or(p);
    let given = bunker_storage::parse_location(location)
        .ok()
        .and_then(|l| match l {
            Location::Local(p) => Some(abs(p)),
            _ => None,
        });
    policy
        .repositories
        .values()
        .any(|c| c.location == location || (given.is_some() && c.local_path().map(abs) == given))
}

/// Restrict `filter` to the snapshots carrying `tag` (an item's): every
/// tag group must also have `tag` (no group: only `tag`).
pub fn restrict_to_tag(filter: &mut bunker_repo::snapshots::SnapshotFilter, tag: &str) {
    if filter.tags.is_empty() {
        filter.tags.push(Vec::new());
    }
    for group in &mut filter.tags {
        group.push(tag.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn s3_options_are_dropped_for_local_fallbacks() {
        let o = kv(&[("s3.region", "garage"), ("connections", "2")]);
        assert_eq!(options_for("/srv/x", &o), kv(&[("connections", "2")]));
        assert_eq!(options_for("s3:http://h:1/b/p", &o), o);
        let o = kv(&[("sftp.key", "/k"), ("timeout", "5")]);
        assert_eq!(options_for("sftp:nas:/srv/r", &o), o);
        assert_eq!(options_for("/srv/x", &o), kv(&[("timeout", "5")]));
    }
}
