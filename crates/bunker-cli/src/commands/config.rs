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

const LONG_ABOUT: &str = "\
Work with the policy file (bunker.yaml). `config check` parses and validates it and prints \
every problem as FILE:LINE:COLUMN: MESSAGE, exiting 1 if there is any; a valid policy prints \
`policy OK: N items, M repositories` (and its notification targets, one per line, secrets \
shown as ***). Environment variables (${VAR}) are substituted as \
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
    /// One line per notification target, secrets redacted.
    notifications: Vec<String>,
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
                    notifications: p.notifications.iter().map(|t| t.to_string()).collect(),
                    diagnostics: Vec::new(),
                })?;
            } else {
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
