//! The [`Policy`] type: loading and presenting a policy file.

use crate::error::{Diagnostic, PolicyError};
use crate::locate::{NodePath, Positions};
use crate::model::{Item, RepositoryConfig};
use crate::notifications::NotifyTarget;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a policy came from, for positions in later diagnostics.
#[derive(Clone, Default)]
pub(crate) struct Origin {
    pub(crate) file: String,
    pub(crate) positions: Positions,
    pub(crate) errored: BTreeSet<NodePath>,
    /// For each item, its index in the YAML `items` list.
    pub(crate) item_index: Vec<usize>,
}

/// A validated backup policy (`bunker.yaml`).
///
/// Relative local paths (repository locations, password files, item paths,
/// sqlite paths) are resolved against the policy file's directory by
/// [`Policy::load`]; [`Policy::from_str`] leaves them as written.
#[derive(Clone, Default)]
pub struct Policy {
    /// Repositories by name.
    pub repositories: BTreeMap<String, RepositoryConfig>,
    /// Items in file order.
    pub items: Vec<Item>,
    /// Global excludes (already appended to every files item's `excludes`).
    pub exclude_patterns: Vec<String>,
    /// Disaster-recovery runbooks (`runbooks:`), in file order.
    pub runbooks: Vec<crate::runbook::Runbook>,
    /// Notification targets (`notifications:`), in file order.
    pub notifications: Vec<NotifyTarget>,
    /// How `bunker daemon` runs the policy (`daemon:`), with its
    /// maintenance jobs.
    pub daemon: crate::daemon::DaemonConfig,
    /// The file the policy was loaded from.
    pub source_path: Option<PathBuf>,
    pub(crate) origin: Origin,
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Policy {
    /// Reads, parses and validates a policy file.
    pub fn load(path: impl AsRef<Path>) -> Result<Policy, PolicyError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        crate::parse::parse_policy(
            &text,
            &path.display().to_string(),
            Some(base),
            &process_env,
            Some(path.to_path_buf()),
        )
        .map_err(PolicyError::Invalid)
    }

    /// Parses and validates policy text; `source_name` is used in messages.
    /// `${VAR}` is looked up in the process environment.
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(text: &str, source_name: &str) -> Result<Policy, PolicyError> {
        Self::parse_with(text, source_name, None, &process_env)
    }

    /// Like [`Policy::from_str`] with an explicit base directory for
    /// relative paths and an explicit environment lookup.
    pub fn parse_with(
        text: &str,
        source_name: &str,
        base_dir: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Policy, PolicyError> {
        crate::parse::parse_policy(text, source_name, base_dir, env, None)
            .map_err(PolicyError::Invalid)
    }

    /// Re-checks cross references and rules (run automatically by `load`);
    /// useful after changing a policy in code.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let mut d = self.check();
        if d.is_empty() {
            Ok(())
        } else {
            d.sort_by_key(|d: &Diagnostic| (d.line == 0, d.line, d.column));
            Err(PolicyError::Invalid(d))
        }
    }

    /// The item with this name.
    pub fn item(&self, name: &str) -> Option<&Item> {
        self.items.iter().find(|i| i.name == name)
    }

    /// Items ordered by priority (critical first), then file order.
    pub fn items_by_priority(&self) -> Vec<&Item> {
        let mut v: Vec<&Item> = self.items.iter().collect();
        v.sort_by_key(|i| std::cmp::Reverse(i.priority));
        v
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("repositories", &self.repositories)
            .field("items", &self.items)
            .field("exclude_patterns", &self.exclude_patterns)
            .field("runbooks", &self.runbooks)
            .field("notifications", &self.notifications)
            .field("source_path", &self.source_path)
            .finish()
    }
}

impl fmt::Display for Policy {
    /// A short human summary; secrets are never shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "repositories:")?;
        for r in self.repositories.values() {
            writeln!(f, "  {r}")?;
        }
        writeln!(f, "items:")?;
        for i in &self.items {
            write!(
                f,
                "  {} ({}, {})",
                i.name,
                i.kind().as_str(),
                i.priority.as_str()
            )?;
            if let Some(s) = &i.schedule {
                write!(f, ", {s}")?;
            }
            if let Some(rpo) = i.rpo {
                write!(f, ", rpo {}", humantime::format_duration(rpo))?;
            }
            writeln!(f, " -> {}", i.targets.join(", "))?;
        }
        if !self.notifications.is_empty() {
            writeln!(f, "notifications:")?;
            for t in &self.notifications {
                writeln!(f, "  {t}")?;
            }
        }
        Ok(())
    }
}
