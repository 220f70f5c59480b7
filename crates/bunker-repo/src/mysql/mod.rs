//! MySQL / MariaDB in the repository.
//!
//! * [`binlog_archive`]: closed binlog files as encrypted, compressed
//!   objects under `bunker/binlog/<name>`, beside the restic layout, in the
//!   same object format as the WAL archive (never overwritten with
//!   different content);
//! * [`physical`]: `mariadb-backup --stream=xbstream` streamed into
//!   snapshots (`/backup.xbstream`) tagged with the binlog position they are
//!   consistent at;
//! * [`verify`]: gaps in the binlog archive and the recoverable window.
//!
//! Logical dumps are one-file stream snapshots ([`crate::pg::save_stream`]).

pub mod binlog_archive;
pub mod physical;
pub mod verify;

/// Tag of `mariadb-dump` snapshots (with `mysql-db=<database>` or
/// `mysql-db=*` for all databases).
pub const TAG_DUMP: &str = "mysql-dump";
