//! Repository file types and their place in the restic layout.

use crate::error::{ErrorKind, StorageError};

/// The kinds of files a repository holds.
///
/// Restic layout: `config`, `keys/<name>`, `snapshots/<name>`, `index/<name>`,
/// `data/<name[0..2]>/<name>`, `locks/<name>`. Bunker's own files live beside it
/// under `bunker/` so restic ignores them: `bunker/wal/<name>`, `bunker/reports/<name>`,
/// `bunker/audit/<name>`, `bunker/binlog/<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileType {
    /// The single `config` file; the name argument is ignored.
    Config,
    /// Key files (`keys/`).
    Key,
    /// Snapshot files (`snapshots/`).
    Snapshot,
    /// Index files (`index/`).
    Index,
    /// Pack files (`data/xx/`).
    Pack,
    /// Lock files (`locks/`).
    Lock,
    /// Bunker write-ahead log entries (`bunker/wal/`).
    Wal,
    /// Bunker run reports (`bunker/reports/`).
    Report,
    /// Bunker audit log records (`bunker/audit/`), written once each.
    Audit,
    /// Archived MySQL / MariaDB binlog files (`bunker/binlog/`).
    Binlog,
}

impl FileType {
    /// Every file type, in layout order.
    pub const ALL: [FileType; 10] = [
        FileType::Config,
        FileType::Key,
        FileType::Snapshot,
        FileType::Index,
        FileType::Pack,
        FileType::Lock,
        FileType::Wal,
        FileType::Report,
        FileType::Audit,
        FileType::Binlog,
    ];

    /// The directory of this type relative to the repository root (`""` for config).
    pub fn dir(&self) -> &'static str {
        match self {
            FileType::Config => "",
            FileType::Key => "keys",
            FileType::Snapshot => "snapshots",
            FileType::Index => "index",
            FileType::Pack => "data",
            FileType::Lock => "locks",
            FileType::Wal => "bunker/wal",
            FileType::Report => "bunker/reports",
            FileType::Audit => "bunker/audit",
            FileType::Binlog => "bunker/binlog",
        }
    }

    /// The path of a file relative to the repository root, with `/` separators.
    ///
    /// Packs go to `data/<first two chars>/<name>`. Names are expected to have been
    /// checked with [`FileType::check_name`]; a pack name shorter than two
    /// characters is placed directly under `data/` rather than panicking.
    pub fn path(&self, name: &str) -> String {
        match self {
            FileType::Config => "config".to_string(),
            FileType::Pack => match name.get(0..2) {
                Some(prefix) => format!("data/{prefix}/{name}"),
                None => format!("data/{name}"),
            },
            other => format!("{}/{}", other.dir(), name),
        }
    }

    /// Rejects names that could escape the layout or collide with temp files:
    /// empty, `.`-prefixed, containing `/`, `\` or NUL; packs also need two
    /// leading ASCII characters for their subdirectory. Config ignores the name.
    pub fn check_name(&self, name: &str) -> Result<(), StorageError> {
        if *self == FileType::Config {
            return Ok(());
        }
        let bad = if name.is_empty() {
            Some("empty name")
        } else if name.starts_with('.') {
            Some("names may not start with '.'")
        } else if name.contains(['/', '\\', '\0']) {
            Some("names may not contain '/', '\\' or NUL")
        } else if *self == FileType::Pack
            && !name.get(0..2).is_some_and(|p| p.is_ascii() && p.len() == 2)
        {
            Some("pack names need at least two leading ASCII characters")
        } else {
            None
        };
        match bad {
            Some(why) => Err(StorageError::new(
                ErrorKind::Invalid,
                "storage",
                format!("{}/{name}", self.dir()),
                format!("invalid file name: {why}"),
            )),
            None => Ok(()),
        }
    }
}

impl std::fmt::Display for FileType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            FileType::Config => "config",
            FileType::Key => "key",
            FileType::Snapshot => "snapshot",
            FileType::Index => "index",
            FileType::Pack => "pack",
            FileType::Lock => "lock",
            FileType::Wal => "wal",
            FileType::Report => "report",
            FileType::Audit => "audit",
            FileType::Binlog => "binlog",
        };
        f.write_str(s)
    }
}

/// A listed file: its bare name (not its path) and size in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileInfo {
    /// The file name as passed to `read`/`write` (for packs: without `data/xx/`).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_restic_layout() {
        let id = "ab12cd";
        assert_eq!(FileType::Config.path("ignored"), "config");
        assert_eq!(FileType::Key.path(id), "keys/ab12cd");
        assert_eq!(FileType::Snapshot.path(id), "snapshots/ab12cd");
        assert_eq!(FileType::Index.path(id), "index/ab12cd");
        assert_eq!(FileType::Pack.path(id), "data/ab/ab12cd");
        assert_eq!(FileType::Lock.path(id), "locks/ab12cd");
        assert_eq!(FileType::Wal.path(id), "bunker/wal/ab12cd");
        assert_eq!(FileType::Report.path(id), "bunker/reports/ab12cd");
        assert_eq!(FileType::Audit.path(id), "bunker/audit/ab12cd");
        assert_eq!(FileType::Binlog.path(id), "bunker/binlog/ab12cd");
        assert_eq!(FileType::Pack.path("a"), "data/a");
    }

    #[test]
    fn name_checks() {
        assert!(FileType::Pack.check_name("00ff").is_ok());
        assert!(FileType::Config.check_name("").is_ok());
        for bad in ["", ".tmp", "a/b", "..", "a\\b", "x\0"] {
            let e = FileType::Key.check_name(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Invalid, "{bad:?}");
        }
        assert!(FileType::Pack.check_name("a").is_err());
        assert!(FileType::Pack.check_name("é1").is_err());
        assert!(FileType::Key.check_name("a").is_ok());
    }

    #[test]
    fn all_is_complete_and_dirs_distinct() {
        let mut dirs: Vec<_> = FileType::ALL.iter().map(|t| t.dir()).collect();
        dirs.sort();
        dirs.dedup();
        assert_eq!(dirs.len(), FileType::ALL.len());
    }
}
