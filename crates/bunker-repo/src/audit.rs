//! The audit log: who changed a repository or read data out of it, what,
//! when, which snapshots, and with what result.
//!
//! Each record is one object under `bunker/audit/` (restic ignores
//! `bunker/`), encrypted with the repository key like the other unpacked
//! files, written once and never modified. Records form a hash chain:
//!
//! * the object name is the record's sequence number, zero-padded
//!   ([`SEQ_WIDTH`] digits), so listing and sorting the names gives the order;
//! * each record carries its own `seq` and `prev`, the SHA-256 of the
//!   previous record's *stored* bytes (so a chain can be followed without
//!   trusting any decryption, and a damaged record still anchors the next).
//!
//! Invariant relied on by [`append`]: a name is taken at most once.
//! Appenders write with `write_new` (fails when the name exists) and read
//! their object back; when the name was taken (or, on a backend without
//! atomic create, overwritten by another appender) they retry with the next
//! sequence number, so concurrent appenders never fork the chain silently.
//!
//! [`verify`] detects a modified record (undecryptable, or the next record's
//! `prev` no longer matches it), a removed one (a gap in the numbers), a
//! reordered or renamed one (its `seq` differs from its name), and foreign
//! objects (names that are not sequence numbers: a fork or an intruder).
//! Removing the newest records (truncating the tail) leaves a valid shorter
//! chain: keep the head printed by `bunker audit verify` elsewhere to
//! detect that.

use bunker_format::unpacked;
use bunker_format::Id;
use bunker_storage::{ErrorKind, FileType};
use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use crate::error::{RepoError, Result};
use crate::Repository;

/// Digits of the zero-padded sequence number in an object name.
pub const SEQ_WIDTH: usize = 12;

/// The record format version.
pub const AUDIT_VERSION: u32 = 1;

/// How often [`append`] retries when its sequence number was taken.
const MAX_ATTEMPTS: usize = 50;

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It did what was asked.
    Success,
    /// It did part of it (files skipped, a step failed after others ran).
    Partial,
    /// It failed.
    Failure,
}

/// One audit record as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// [`AUDIT_VERSION`].
    pub version: u32,
    /// Position in the chain, from 1; equals the object name.
    pub seq: u64,
    /// SHA-256 (hex) of the previous record's stored bytes; empty for the first.
    pub prev: String,
    /// When the operation ended.
    pub time: DateTime<FixedOffset>,
    /// The user name (or uid) that ran it.
    pub user: String,
    /// The host it ran on.
    pub host: String,
    /// The process id.
    pub pid: u32,
    /// What ran: `backup`, `forget`, `restore`, `runbook execute`, …
    pub operation: String,
    /// Snapshots written, read or removed (full ids).
    #[serde(default)]
    pub snapshots: Vec<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// The error, when it did not succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Operation-specific details (item, target directory, counts, …).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

/// What to record; [`append`] adds who, when and the chain fields.
#[derive(Debug, Clone)]
pub struct Entry {
    /// What ran.
    pub operation: String,
    /// Snapshots written, read or removed.
    pub snapshots: Vec<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// The error, if any.
    pub error: Option<String>,
    /// Operation-specific details.
    pub details: serde_json::Value,
}

impl Entry {
    /// A successful `operation` touching no particular snapshot.
    pub fn new(operation: &str) -> Entry {
        Entry {
            operation: operation.to_string(),
            snapshots: Vec::new(),
            outcome: Outcome::Success,
            error: None,
            details: serde_json::Value::Null,
        }
    }

    /// With these snapshots.
    pub fn snapshots<I, S>(mut self, ids: I) -> Entry
    where
        I: IntoIterator<Item = S>,
        S: ToString,
    {
        self.snapshots = ids.into_iter().map(|s| s.to_string()).collect();
        self
    }

    /// With these details.
    pub fn details(mut self, details: serde_json::Value) -> Entry {
        self.details = details;
        self
    }

    /// With the result of the operation: failure with its one-line error.
    pub fn result<T, E: std::fmt::Display>(mut self, r: &std::result::Result<T, E>) -> Entry {
        if let Err(e) = r {
            self.outcome = Outcome::Failure;
            self.error = Some(e.to_string());
        }
        self
    }

    /// With an explicit outcome (and error text).
    pub fn outcome(mut self, outcome: Outcome, error: Option<String>) -> Entry {
        self.outcome = outcome;
        self.error = error;
        self
    }
}

/// Where a record was appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Its sequence number.
    pub seq: u64,
    /// SHA-256 (hex) of its stored bytes: the new head of the chain.
    pub hash: String,
}

fn object_name(seq: u64) -> String {
    format!("{seq:0width$}", width = SEQ_WIDTH)
}

/// The sequence number of an object name, if it is one.
pub fn parse_name(name: &str) -> Option<u64> {
    (name.len() == SEQ_WIDTH && name.bytes().all(|b| b.is_ascii_digit()))
        .then(|| name.parse().ok())
        .flatten()
}

fn who() -> (String, String, u32) {
    let user = uzers::get_current_username()
        .map(|u| u.to_string_lossy().into_owned())
        .unwrap_or_else(|| format!("uid {}", uzers::get_current_uid()));
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    (user, host, std::process::id())
}

/// The newest record's sequence number and stored-bytes hash, if any.
fn head(repo: &Repository) -> Result<Option<(u64, String)>> {
    let newest = repo
        .storage()
        .list(FileType::Audit)?
        .into_iter()
        .filter_map(|f| parse_name(&f.name))
        .max();
    match newest {
        None => Ok(None),
        Some(seq) => {
            let bytes = repo.storage().read(FileType::Audit, &object_name(seq))?;
            Ok(Some((seq, Id::hash(&bytes).to_hex())))
        }
    }
}

/// Append `entry` to the audit log of `repo`, chained to the newest record.
/// Retries with the next number when another appender took this one.
pub fn append(repo: &Repository, entry: &Entry) -> Result<Appended> {
    let (user, host, pid) = who();
    for _ in 0..MAX_ATTEMPTS {
        let (seq, prev) = match head(repo)? {
            Some((seq, hash)) => (seq + 1, hash),
            None => (1, String::new()),
        };
        let record = AuditRecord {
            version: AUDIT_VERSION,
            seq,
            prev,
            time: chrono::Local::now().fixed_offset(),
            user: user.clone(),
            host: host.clone(),
            pid,
            operation: entry.operation.clone(),
            snapshots: entry.snapshots.clone(),
            outcome: entry.outcome,
            error: entry.error.clone(),
            details: entry.details.clone(),
        };
        let json = serde_json::to_vec(&record)
            .map_err(|e| RepoError::Invalid(format!("encoding an audit record: {e}")))?;
        let bytes = unpacked::encode(repo.key(), &json, repo.unpacked_compression());
        let name = object_name(seq);
        match repo
            .storage()
            .write_new(FileType::Audit, &name, bytes.clone().into())
        {
            Ok(()) => {}
            Err(e) if e.kind == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e.into()),
        }
        // A backend without atomic create may have let another appender
        // overwrite this name: then ours is gone and we retry.
        if repo.storage().read(FileType::Audit, &name)? == bytes {
            return Ok(Appended {
                seq,
                hash: Id::hash(&bytes).to_hex(),
            });
        }
    }
    Err(RepoError::Invalid(format!(
        "could not append to the audit log: {MAX_ATTEMPTS} sequence numbers in a row were taken by other writers"
    )))
}

/// A stored record with the hash of its stored bytes.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    /// The record.
    #[serde(flatten)]
    pub record: AuditRecord,
    /// SHA-256 (hex) of its stored bytes.
    pub hash: String,
}

/// What is wrong with the chain at one place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The record cannot be decrypted or parsed: damaged or modified.
    Unreadable,
    /// The next record does not chain to this one: it was modified or replaced.
    Modified,
    /// A sequence number is missing: the record was removed.
    Missing,
    /// The record's own number differs from its name: records were renamed
    /// or reordered.
    Reordered,
    /// An object whose name is not a sequence number (a fork or an intruder).
    Foreign,
}

/// One problem found by [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// What kind.
    pub kind: ProblemKind,
    /// The sequence number concerned (0 for a foreign object).
    pub seq: u64,
    /// One line saying what is wrong.
    pub message: String,
}

/// The result of [`verify`].
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// How many records were examined.
    pub records: usize,
    /// The newest record's sequence number and hash (the chain's head).
    pub head: Option<(u64, String)>,
    /// Everything wrong, in order.
    pub problems: Vec<Problem>,
}

impl Verification {
    /// Whether the chain is intact.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Stored records (sequence number, stored bytes) in order, and the names
/// that are not sequence numbers.
type Objects = (Vec<(u64, Vec<u8>)>, Vec<String>);

/// Read every stored record in order, and the foreign names.
fn read_all(repo: &Repository) -> Result<Objects> {
    let mut numbered = Vec::new();
    let mut foreign = Vec::new();
    for f in repo.storage().list(FileType::Audit)? {
        match parse_name(&f.name) {
            Some(seq) => numbered.push((seq, f.name)),
            None => foreign.push(f.name),
        }
    }
    numbered.sort();
    let mut out = Vec::with_capacity(numbered.len());
    for (seq, name) in numbered {
        out.push((seq, repo.storage().read(FileType::Audit, &name)?.to_vec()));
    }
    Ok((out, foreign))
}

fn decode(repo: &Repository, bytes: &[u8]) -> std::result::Result<AuditRecord, String> {
    let json = unpacked::decode(repo.key(), bytes).map_err(|e| e.to_string())?;
    serde_json::from_slice(&json).map_err(|e| e.to_string())
}

/// Every readable record, oldest first (unreadable ones are skipped with a
/// log line: `verify` names them).
pub fn list(repo: &Repository) -> Result<Vec<Listed>> {
    let (all, _) = read_all(repo)?;
    let mut out = Vec::with_capacity(all.len());
    for (seq, bytes) in all {
        match decode(repo, &bytes) {
            Ok(record) => out.push(Listed {
                record,
                hash: Id::hash(&bytes).to_hex(),
            }),
            Err(e) => tracing::warn!("audit record {seq} is unreadable ({e}); skipped"),
        }
    }
    Ok(out)
}

/// Check the whole chain (see the module documentation for what is found).
pub fn verify(repo: &Repository) -> Result<Verification> {
    let (all, foreign) = read_all(repo)?;
    let mut problems = Vec::new();
    for name in foreign {
        problems.push(Problem {
            kind: ProblemKind::Foreign,
            seq: 0,
            message: format!(
                "bunker/audit/{name} is not an audit record name (a forked or foreign object)"
            ),
        });
    }
    let mut expected_seq = 1u64;
    let mut prev_hash = String::new();
    for (seq, bytes) in &all {
        let seq = *seq;
        if seq > expected_seq {
            let what = if seq == expected_seq + 1 {
                format!("record {expected_seq} is missing (removed)")
            } else {
                format!("records {expected_seq}..{} are missing (removed)", seq - 1)
            };
            problems.push(Problem {
                kind: ProblemKind::Missing,
                seq: expected_seq,
                message: what,
            });
        }
        let hash = Id::hash(bytes).to_hex();
        match decode(repo, bytes) {
            Err(e) => problems.push(Problem {
                kind: ProblemKind::Unreadable,
                seq,
                message: format!("record {seq} is damaged or was modified: {e}"),
            }),
            Ok(r) => {
                if r.seq != seq {
                    problems.push(Problem {
                        kind: ProblemKind::Reordered,
                        seq,
                        message: format!(
                            "the object named {seq} holds record {}: records were renamed or reordered",
                            r.seq
                        ),
                    });
                } else if seq == expected_seq && r.prev != prev_hash {
                    let message = if seq == 1 {
                        "record 1 claims a predecessor: the start of the log was removed".into()
                    } else {
                        format!(
                            "record {seq} does not chain to record {}: record {} was modified or replaced",
                            seq - 1,
                            seq - 1
                        )
                    };
                    problems.push(Problem {
                        kind: ProblemKind::Modified,
                        seq: seq.saturating_sub(1).max(1),
                        message,
                    });
                }
            }
        }
        expected_seq = seq + 1;
        prev_hash = hash;
    }
    let head = all
        .last()
        .map(|(seq, bytes)| (*seq, Id::hash(bytes).to_hex()));
    Ok(Verification {
        records: all.len(),
        head,
        problems,
    })
}

#[cfg(test)]
#[path = "audit_tests.rs"]
mod tests;
