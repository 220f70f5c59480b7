//! `bunker config check`, and what the policy-driven verbs share: finding
//! the policy file ([`PolicyArgs`]). Opening its repositories is the
//! engine's ([`bunker_engine::pool::RepoPool`]).

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use bunker_policy::{Policy, PolicyError};
use clap::{Args, Subcommand};
use serde::Serialize;

use crate::cli::GlobalOpts;
use crate::exit::Status;
use crate::output;

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

/// `--config F --item NAME`: read the repository of a policy item.
#[derive(Args, Debug, Clone)]
pub struct ItemArgs {
    /// Use this policy item's repository (its first target), password and
    /// snapshots (tag bunker:item=NAME) instead of -r
    #[arg(long = "item", value_name = "NAME")]
    pub item: Option<String>,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

const LONG_ABOUT: &str = "\
Work with the policy file (bunker.yaml). `config check` parses and validates it and prints \
every problem as FILE:LINE:COLUMN: MESSAGE, exiting 1 if there is any; a valid policy prints \
`policy OK: N items, M repositories` (and its notification targets, one per line, secrets \
shown as ***). Environment variables (${VAR}) are substituted as \
`bunker run` would, so a missing variable is reported too. Each repository's backend options \
are checked by the backend's own option parser (the one `run` uses), and a path of a files \
item that does not exist on this host is a warning. Nothing is contacted.";

const EXAMPLES: &str = "\
EXAMPLES:
    bunker config check
    bunker config check /etc/bunker/bunker.yaml
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
    /// The policy file (overrides --config)
    #[arg(value_name = "POLICY")]
    pub file: Option<PathBuf>,
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
    /// One line per notification target, secrets redacted.
    notifications: Vec<String>,
    diagnostics: Vec<JsonDiagnostic<'a>>,
    /// Paths that do not exist (the policy is still valid).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

pub fn run(g: &GlobalOpts, args: ConfigArgs) -> Result<Status> {
    let ConfigCommand::Check(mut args) = args.command;
    if args.file.is_some() {
        args.policy.config = args.file.take();
    }
    let path = args.policy.path();
    match Policy::load(&path) {
        Ok(p) => {
            let probs = bunker_engine::check::check_policy(&p);
            if g.json {
                output::json_line(&JsonCheck {
                    ok: probs.errors.is_empty(),
                    file: path.display().to_string(),
                    items: p.items.len(),
                    repositories: p.repositories.len(),
                    notifications: p.notifications.iter().map(|t| t.to_string()).collect(),
                    diagnostics: (probs.errors.iter())
                        .map(|m| JsonDiagnostic {
                            file: "",
                            line: 0,
                            column: 0,
                            message: m,
                            hint: None,
                            text: format!("{}: {m}", path.display()),
                        })
                        .collect(),
                    warnings: probs.warnings.clone(),
                })?;
            } else {
                for w in &probs.warnings {
                    eprintln!("warning: {w}");
                }
                for e in &probs.errors {
                    println!("{}: {e}", path.display());
                }
            }
            if !probs.errors.is_empty() {
                bail!(
                    "policy {} has {} problem(s)",
                    path.display(),
                    probs.errors.len()
                );
            }
            if !g.json {
                let targets = match p.notifications.len() {
                    0 => String::new(),
                    1 => ", 1 notification target".to_string(),
                    n => format!(", {n} notification targets"),
                };
                println!(
                    "policy OK: {} items, {} repositories{targets}",
                    p.items.len(),
                    p.repositories.len()
                );
                for t in &p.notifications {
                    println!("  notify {t}");
                }
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
                    notifications: Vec::new(),
                    warnings: Vec::new(),
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
