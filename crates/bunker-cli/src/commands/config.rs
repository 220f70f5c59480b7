//! `bunker config check`, and what the policy-driven verbs share: finding
//! the policy file and opening (or creating) its repositories, with fallbacks.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use bunker_format::keyfile::KdfParams;
use bunker_policy::{Policy, PolicyError, RepositoryConfig};
use bunker_repo::{RepoError, Repository};
use clap::{Args, Subcommand};
use serde::Serialize;

use crate::cli::GlobalOpts;
use crate::exit::Status;
use crate::{output, repo};

/// Environment variable naming the policy file.
pub const CONFIG_ENV: &str = "BUNKER_CONFIG";
/// The policy file used when neither `--config` nor `BUNKER_CONFIG` is given.
pub const DEFAULT_CONFIG: &str = "bunker.yaml";

/// Where the policy file is.
#[derive(Args, Debug, Clone)]
pub struct PolicyArgs {
    /// The policy file (default: $BUNKER_CONFIG, else ./bunker.yaml)
    #[arg(long = "config", env = CONFIG_ENV, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl PolicyArgs {
    pub fn path(&self) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))
    }

    /// Load and validate the policy; diagnostics become one error.
    pub fn load(&self) -> Result<Policy> {
        let path = self.path();
        Policy::load(&path).with_context(|| format!("policy {} is not usable", path.display()))
    }
}

const LONG_ABOUT: &str = "\
Work with the policy file (bunker.yaml). `config check` parses and validates it and prints \
every problem as FILE:LINE:COLUMN: MESSAGE, exiting 1 if there is any; a valid policy prints \
`policy OK: N items, M repositories`. Environment variables (${VAR}) are substituted as \
`bunker run` would, so a missing variable is reported too. Nothing is contacted.";

const EXAMPLES: &str = "\
EXAMPLES:
    bunker config check
    bunker config check --config /etc/bunker/bunker.yaml
    BUNKER_CONFIG=site.yaml bunker config check --json";

/// Check the policy file
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate the policy file and print every problem
    #[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
    Check(CheckArgs),
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
}

#[derive(Serialize)]
struct JsonDiagnostic<'a> {
    file: &'a str,
    line: usize,
    column: usize,
    message: &'a str,
    hint: Option<&'a str>,
    text: String,
}

#[derive(Serialize)]
struct JsonCheck<'a> {
    ok: bool,
    file: String,
    items: usize,
    repositories: usize,
    diagnostics: Vec<JsonDiagnostic<'a>>,
}

pub fn run(g: &GlobalOpts, args: ConfigArgs) -> Result<Status> {
    let ConfigCommand::Check(args) = args.command;
    let path = args.policy.path();
    match Policy::load(&path) {
        Ok(p) => {
            if g.json {
                output::json_line(&JsonCheck {
                    ok: true,
                    file: path.display().to_string(),
                    items: p.items.len(),
                    repositories: p.repositories.len(),
                    diagnostics: Vec::new(),
                })?;
            } else {
                println!(
                    "policy OK: {} items, {} repositories",
                    p.items.len(),
                    p.repositories.len()
                );
            }
            Ok(Status::Success)
        }
        Err(PolicyError::Invalid(diags)) => {
            if g.json {
                output::json_line(&JsonCheck {
                    ok: false,
                    file: path.display().to_string(),
                    items: 0,
                    repositories: 0,
                    diagnostics: diags
                        .iter()
                        .map(|d| JsonDiagnostic {
                            file: &d.file,
                            line: d.line,
                            column: d.column,
                            message: &d.message,
                            hint: d.hint.as_deref(),
                            text: d.to_string(),
                        })
                        .collect(),
                })?;
            } else {
                for d in &diags {
                    println!("{d}");
                }
            }
            bail!("policy {} has {} problem(s)", path.display(), diags.len())
        }
        Err(e) => Err(anyhow!(e)),
    }
}

/// A policy repository, opened.
pub struct OpenedRepo {
    pub repo: Arc<Repository>,
    /// The policy name of the repository actually used (differs from the
    /// requested one when a fallback was taken).
    pub name: String,
    /// It did not exist and was created now.
    pub initialised: bool,
}

fn open_one(
    g: &GlobalOpts,
    cfg: &RepositoryConfig,
    create: bool,
    probe: bool,
) -> Result<OpenedRepo> {
    let mut opts: Vec<(String, String)> = cfg
        .options
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    opts.extend(g.options.iter().cloned());
    let opts = crate::fallback::options_for(&cfg.location, &opts);
    if probe {
        // Find out quickly (bounded retries) whether it answers at all.
        let mut probe_opts = opts.clone();
        if !probe_opts.iter().any(|(k, _)| k == "retry.max_elapsed") {
            probe_opts.push((
                "retry.max_elapsed".into(),
                crate::fallback::PROBE_BUDGET.as_secs().to_string(),
            ));
        }
        bunker_storage::open(&cfg.location, &probe_opts)
            .and_then(|s| s.stat(bunker_storage::FileType::Config, ""))
            .with_context(|| format!("reaching repository {:?} at {}", cfg.name, cfg.location))?;
    }
    let storage = bunker_storage::open(&cfg.location, &opts)
        .with_context(|| format!("opening repository {:?} at {}", cfg.name, cfg.location))?;
    let password = cfg
        .password
        .resolve()
        .with_context(|| format!("password of repository {:?}", cfg.name))?;
    let pw = password.expose().as_bytes();
    if pw.is_empty() {
        bail!("password of repository {:?} is empty", cfg.name);
    }
    let options = repo::repo_options(g)?;
    match Repository::open(storage.clone(), pw, options.clone()) {
        Ok(r) => {
            crate::interrupt::register(&r);
            Ok(OpenedRepo {
                repo: r,
                name: cfg.name.clone(),
                initialised: false,
            })
        }
        Err(RepoError::NoRepository { .. }) if create => {
            let r = Repository::init(storage, pw, options, KdfParams::from_env()).with_context(
                || format!("creating repository {:?} at {}", cfg.name, cfg.location),
            )?;
            crate::interrupt::register(&r);
            Ok(OpenedRepo {
                repo: r,
                name: cfg.name.clone(),
                initialised: true,
            })
        }
        Err(e) => Err(anyhow!(e).context(format!(
            "opening repository {:?} at {}",
            cfg.name, cfg.location
        ))),
    }
}

/// Open repository `name` of the policy (creating it when `create` and it
/// does not exist); when it is unreachable, try its fallbacks in order,
/// warning loudly on standard error.
pub fn open_policy_repo(
    g: &GlobalOpts,
    policy: &Policy,
    name: &str,
    create: bool,
) -> Result<OpenedRepo> {
    let cfg = policy
        .repositories
        .get(name)
        .with_context(|| format!("unknown repository {name:?}"))?;
    let probe = !cfg.fallbacks.is_empty();
    let first = match open_one(g, cfg, create, probe) {
        Ok(o) => return Ok(o),
        Err(e) => e,
    };
    // Only unreachability (retryable storage errors) is a reason to fall
    // back; a wrong password or bad options are not.
    if !probe || !crate::fallback::is_unreachable(&first) {
        return Err(first);
    }
    eprintln!(
        "WARNING: repository {name:?} is unreachable: {}",
        crate::exit::one_line(&first)
    );
    for fb in &cfg.fallbacks {
        let Some(fcfg) = policy.repositories.get(fb) else {
            continue;
        };
        match open_one(g, fcfg, create, true) {
            Ok(o) => {
                eprintln!("WARNING: using fallback repository {fb:?} instead of {name:?}");
                return Ok(o);
            }
            Err(e) => eprintln!(
                "WARNING: fallback repository {fb:?} is unreachable too: {}",
                crate::exit::one_line(&e)
            ),
        }
    }
    Err(first.context(format!(
        "repository {name:?} and all its fallbacks ({}) are unreachable",
        cfg.fallbacks.join(", ")
    )))
}
