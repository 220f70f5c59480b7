//! bunker-sources: the file-system side of backup and restore, and SQLite.
//!
//! * [`meta`], [`walk`], [`exclude`] (with [`filter`]): reading metadata,
//!   listing directories in restic's tree order and restic-compatible
//!   exclusion rules for the backup walker.
//! * [`restore_fs`]: creating files, directories, links and special files
//!   inside a restore target without ever escaping it, applying metadata and
//!   writing sparse files.
//! * [`sqlite`]: consistent online copies of (WAL-mode) SQLite databases.
//! * [`postgres`]: WAL names and positions, base-backup labels, and running
//!   PostgreSQL's client programs as streams.
//! * [`mysql`]: MySQL / MariaDB binlog names and positions, the client
//!   programs as streams, and a throw-away server for binlog replay.
//! * [`watchdog`]: time limits for child processes (command items, hooks,
//!   and any stream started with a limit), stopping their whole group.
//! * [`cancel`]: a job's cancellation token, polled by long operations at
//!   their safe points; cancelling it also stops the job's child programs.
//!
//! The types here are plain structs; the repository layer converts them to
//! and from snapshot tree nodes.

pub mod cancel;
pub mod error;
pub mod exclude;
pub mod files_from;
pub mod filter;
pub mod meta;
pub mod mysql;
pub mod postgres;
pub mod restore_fs;
pub mod sparse;
pub mod sqlite;
pub mod walk;
pub mod watchdog;

pub use cancel::{CancelToken, Cancelled};
pub use error::{SourceError, SourceErrorKind};
pub use exclude::{parse_size, ExcludeOptions, Excluder};
pub use filter::{Pattern, PatternList};
pub use meta::{lstat_meta, lstat_meta_at, FileKind, FsMeta};
pub use restore_fs::{validate_name, EntryStat, RestoreMeta, RestoreStats, TargetDir, TEMP_PREFIX};
pub use sparse::{write_at, SparseWriter};
pub use sqlite::{backup_sqlite, SqliteBackupInfo};
pub use walk::{open_dir, read_dir_sorted, read_dir_typed, DirEntryName};
