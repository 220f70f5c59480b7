//! Safety copies of what an in-place restore replaces.
//!
//! Before a step restores into a directory that has content, the directory
//! is renamed to a sibling `.NAME.bunker-safety-PID` (a rename: same file
//! system, nothing copied, nothing lost if the process dies — the copy is
//! still there, named) and an empty directory takes its place. On failure
//! of a later step, [`SafetyCopies::roll_back`] removes what was restored
//! and renames the copies back, newest first; on success
//! [`SafetyCopies::commit`] removes them.

use std::path::{Path, PathBuf};

use crate::error::{Context, Result};

/// One directory set aside.
#[derive(Debug)]
struct SafetyCopy {
    /// The directory restored into.
    original: PathBuf,
    /// Where its old content is (`None`: it did not exist or was empty).
    aside: Option<PathBuf>,
}

/// The safety copies of one runbook execution, in the order taken.
#[derive(Debug, Default)]
pub struct SafetyCopies {
    copies: Vec<SafetyCopy>,
}

fn aside_path(dir: &Path) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".into());
    dir.with_file_name(format!(".{name}.bunker-safety-{}", std::process::id()))
}

fn is_empty_dir(dir: &Path) -> std::io::Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut rd) => Ok(rd.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e),
    }
}

impl SafetyCopies {
    /// Set `dir`'s content aside and leave an empty `dir` (created if
    /// missing, with its parents).
    pub fn take(&mut self, dir: &Path) -> Result<()> {
        let empty = is_empty_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
        let aside = if empty {
            None
        } else {
            let to = aside_path(dir);
            if to.exists() {
                return Err(crate::EngineError::Invalid(format!(
                    "{} exists (a safety copy of an earlier run?): move it away first",
                    to.display()
                )));
            }
            std::fs::rename(dir, &to)
                .with_context(|| format!("moving {} aside to {}", dir.display(), to.display()))?;
            Some(to)
        };
        self.copies.push(SafetyCopy {
            original: dir.to_path_buf(),
            aside,
        });
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(())
    }

    /// Put every copy back, newest first; returns what was put back, and
    /// the problems (a copy that cannot be put back stays where it is,
    /// named).
    pub fn roll_back(self) -> (Vec<String>, Vec<String>) {
        let mut done = Vec::new();
        let mut problems = Vec::new();
        for c in self.copies.into_iter().rev() {
            if let Err(e) = remove_dir_if_exists(&c.original) {
                problems.push(format!(
                    "cannot remove the restored {}: {e}; its old content is in {}",
                    c.original.display(),
                    c.aside
                        .as_ref()
                        .map(|a| a.display().to_string())
                        .unwrap_or_else(|| "nowhere (it was empty)".into())
                ));
                continue;
            }
            match &c.aside {
                Some(a) => match std::fs::rename(a, &c.original) {
                    Ok(()) => done.push(c.original.display().to_string()),
                    Err(e) => problems.push(format!(
                        "cannot put {} back to {}: {e}",
                        a.display(),
                        c.original.display()
                    )),
                },
                None => {
                    let _ = std::fs::create_dir_all(&c.original);
                    done.push(c.original.display().to_string());
                }
            }
        }
        (done, problems)
    }

    /// Remove every copy (the runbook succeeded); returns the problems.
    pub fn commit(self) -> Vec<String> {
        let mut problems = Vec::new();
        for c in self.copies {
            if let Some(a) = c.aside {
                if let Err(e) = remove_dir_if_exists(&a) {
                    problems.push(format!(
                        "cannot remove the safety copy {}: {e}",
                        a.display()
                    ));
                }
            }
        }
        problems
    }
}

fn remove_dir_if_exists(p: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roll_back_puts_the_old_content_back_and_commit_removes_it() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("old"), b"old").unwrap();
        let mut s = SafetyCopies::default();
        s.take(&dir).unwrap();
        assert!(is_empty_dir(&dir).unwrap());
        std::fs::write(dir.join("new"), b"new").unwrap();
        let (done, problems) = s.roll_back();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(done.len(), 1);
        assert_eq!(std::fs::read(dir.join("old")).unwrap(), b"old");
        assert!(!dir.join("new").exists());

        let mut s = SafetyCopies::default();
        s.take(&dir).unwrap();
        std::fs::write(dir.join("new"), b"new").unwrap();
        assert!(s.commit().is_empty());
        assert!(dir.join("new").exists());
        assert!(!aside_path(&dir).exists());
    }
}
