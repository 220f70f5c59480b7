//! bunker-repo: repository operations on top of the format and storage layers.
//!
//! A [`Repository`] is an opened, unlocked-for-reading restic repository: its
//! storage, master key, config and the in-memory master index. Operations are
//! modules of their own: [`backup`], [`restore`], [`check`], [`keys`],
//! [`snapshots`] (listing and filtering), [`lock`] (shared/exclusive locks with
//! refresh and stale-lock reclaiming), [`copy`] (snapshots between
//! repositories), [`pg`] (PostgreSQL WAL archive, base backups and
//! point-in-time restore; dump streams and SQLite copies). New blobs go through the [`packer`] ([`packer::BlobSaver`]),
//! which compresses and encrypts on the caller's thread, fills pack files per
//! blob type, uploads full packs on background threads and writes index files
//! only after their packs are durable.
//!
//! [`audit`] is the hash-chained audit log under `bunker/audit/`.
//!
//! [`repair`] rebuilds the index and rewrites snapshots after data loss;
//! [`leftovers`] finds and removes temporary files of killed writers.
//!
//! Write order is packs, then index, then snapshot; deletion is the reverse
//! (see docs/design.md).

pub mod audit;
pub mod backup;
pub mod cache;
pub mod cat;
pub mod check;
pub mod copy;
pub mod diff;
pub mod dump;
pub mod error;
pub mod find;
pub mod forget;
pub mod index;
pub mod keys;
pub mod leftovers;
pub mod list;
pub mod lock;
pub mod mount;
pub mod mysql;
pub mod packer;
pub mod pg;
pub mod progress;
pub mod prune;
pub mod recover;
mod repacker;
pub mod repair;
pub mod repository;
pub mod restore;
pub mod retention;
pub mod rewrite;
pub mod snapshots;
pub mod stats;
pub mod tag;
pub mod tree_cache;
pub mod walk;

pub use error::RepoError;
pub use repository::{RepoOptions, Repository};
