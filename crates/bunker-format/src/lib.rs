//! bunker-format: the restic repository format (version 2), pure and free of I/O.
//!
//! Everything that defines bytes on the wire lives here: typed ids, the
//! AES-256-CTR + Poly1305-AES crypto, key files (scrypt), the content-defined
//! chunker (Rabin fingerprints over a repository polynomial), pack files and
//! their headers, index files, trees and nodes (Go-compatible JSON), snapshots,
//! locks, the repository config and the "unpacked" file encoding (compressed
//! JSON). Nothing in this crate touches a file system or a network: the repository
//! layer feeds it bytes and stores what it returns.
//!
//! The constants in this crate are frozen by the restic format: changing one
//! makes repositories unreadable by restic, rustic or older bunker versions.

pub mod chunker;
pub mod compression;
pub mod config;
pub mod crypto;
pub mod error;
pub mod gojson;
pub mod gotime;
pub mod id;
pub mod index;
pub mod keyfile;
pub mod lock;
pub mod node;
pub mod pack;
pub mod snapshot;
pub mod unpacked;

pub use error::FormatError;
pub use id::{BlobId, BlobType, Id, IndexId, KeyId, LockId, PackId, SnapshotId, TreeId};
