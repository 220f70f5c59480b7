//! Restoring over entries that exist in the target already: restic's
//! `--overwrite` modes and `--delete`.
//!
//! restic 0.17's modes are kept with their names. bunker differs in two
//! points: without `--overwrite` existing entries are left alone and
//! reported (restic's default is `always`), and a file that differs is
//! written in full to a temporary name and renamed over the old one
//! (restic rewrites only the differing parts in place), so an interrupted
//! or failed restore leaves either the old file or the new one.

use std::collections::HashSet;
use std::io::Read;
use std::str::FromStr;

use bunker_format::node::Node;
use bunker_format::{BlobId, Id};
use bunker_sources::{EntryStat, TargetDir};

use crate::index::IndexEntry;

/// What to do with an existing file, symlink or special file (restic's
/// `restore --overwrite` values).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Overwrite {
    /// Leave existing entries alone and report them (bunker's default).
    #[default]
    Never,
    /// Check every existing file against the snapshot and rewrite it when
    /// its size or content differs (restic's default).
    Always,
    /// Like `Always`, but a file whose size and modification time match the
    /// snapshot's is taken as unchanged without reading it.
    IfChanged,
    /// Replace an existing entry only when the snapshot's modification time
    /// is newer than the existing one's (then like `Always`).
    IfNewer,
}

impl Overwrite {
    /// The names `--overwrite` accepts.
    pub const NAMES: [&'static str; 4] = ["always", "if-changed", "if-newer", "never"];

    /// Whether existing entries may be replaced at all.
    pub fn replaces(self) -> bool {
        self != Overwrite::Never
    }
}

impl FromStr for Overwrite {
    type Err = String;
    fn from_str(s: &str) -> Result<Overwrite, String> {
        Ok(match s {
            "always" => Overwrite::Always,
            "if-changed" => Overwrite::IfChanged,
            "if-newer" => Overwrite::IfNewer,
            "never" => Overwrite::Never,
            _ => {
                return Err(format!(
                    "unknown overwrite mode {s:?} (expected one of {})",
                    Overwrite::NAMES.join(", ")
                ))
            }
        })
    }
}

/// What to do with a regular file of the snapshot.
#[derive(Debug, PartialEq, Eq)]
pub enum FileAction {
    /// Nothing there: create it.
    Create,
    /// Something different there: write the file and replace it.
    Replace,
    /// The file there has the snapshot's content: only apply the metadata.
    Unchanged,
    /// Left alone: an existing entry and no `--overwrite` (or `never`).
    SkipExisting,
    /// Left alone: the existing entry is as new or newer (`if-newer`).
    KeepNewer,
}

fn node_mtime(node: &Node) -> (i64, u32) {
    (node.mtime.timestamp(), node.mtime.timestamp_subsec_nanos())
}

/// Decide for the regular file `node` (contents `blobs`, `size` bytes) at
/// `rel`, given what is there (`existing`).
pub fn file_action(
    t: &TargetDir,
    rel: &[&[u8]],
    existing: Option<EntryStat>,
    node: &Node,
    blobs: &[(BlobId, IndexEntry, u64)],
    size: u64,
    mode: Overwrite,
) -> FileAction {
    let Some(st) = existing else {
        return FileAction::Create;
    };
    match mode {
        Overwrite::Never => return FileAction::SkipExisting,
        Overwrite::IfNewer if node_mtime(node) <= st.mtime => return FileAction::KeepNewer,
        Overwrite::IfChanged if st.is_file && st.size == size && st.mtime == node_mtime(node) => {
            return FileAction::Unchanged
        }
        _ => {}
    }
    if st.is_file && st.size == size && same_content(t, rel, blobs) {
        FileAction::Unchanged
    } else {
        FileAction::Replace
    }
}

/// Whether the file at `rel` holds exactly `blobs` (read in order; any
/// read error counts as different, and the file is then rewritten).
fn same_content(t: &TargetDir, rel: &[&[u8]], blobs: &[(BlobId, IndexEntry, u64)]) -> bool {
    let Ok(mut f) = t.open_read(rel) else {
        return false;
    };
    let mut buf = Vec::new();
    for (id, entry, _) in blobs {
        buf.resize(entry.plain_len() as usize, 0);
        if f.read_exact(&mut buf).is_err() || Id::hash(&buf) != id.id() {
            return false;
        }
    }
    // Nothing after the last blob (the size was compared, but the file may
    // have grown since).
    matches!(f.read(&mut [0u8; 1]), Ok(0))
}

/// The strict ancestors of the snapshot's backed-up paths, as paths of the
/// restored tree (`/home` and `/home/alice` for `/home/alice/docs`), seen
/// from `sub_path` when only a sub-directory is restored. Such directories
/// are only containers: when they exist in the target already, their
/// metadata is left as it is (restoring into `/` must not reset the times
/// and modes of `/home` or `/var`).
pub fn container_dirs(paths: &[String], sub_path: Option<&str>) -> HashSet<Vec<u8>> {
    let sub: Vec<&str> = sub_path
        .unwrap_or("")
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let mut out = HashSet::new();
    for p in paths {
        let comps: Vec<&str> = p
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        if comps.len() <= sub.len() || comps[..sub.len()] != sub[..] {
            continue;
        }
        let rest = &comps[sub.len()..];
        for n in 1..rest.len() {
            let mut a = Vec::new();
            for c in &rest[..n] {
                a.push(b'/');
                a.extend_from_slice(c.as_bytes());
            }
            out.insert(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overwrite_names_parse_as_restic_spells_them() {
        for n in Overwrite::NAMES {
            n.parse::<Overwrite>().unwrap();
        }
        assert_eq!("if-changed".parse(), Ok(Overwrite::IfChanged));
        assert!("ifchanged".parse::<Overwrite>().is_err());
    }

    #[test]
    fn container_dirs_are_strict_ancestors_of_backed_up_paths() {
        let paths = vec!["/home/alice/docs".to_string(), "/etc".to_string()];
        let c = container_dirs(&paths, None);
        let mut v: Vec<_> = c.into_iter().collect();
        v.sort();
        assert_eq!(v, vec![b"/home".to_vec(), b"/home/alice".to_vec()]);
        let c = container_dirs(&paths, Some("/home"));
        assert_eq!(c.into_iter().collect::<Vec<_>>(), vec![b"/alice".to_vec()]);
        assert!(container_dirs(&paths, Some("/home/alice/docs")).is_empty());
    }
}
