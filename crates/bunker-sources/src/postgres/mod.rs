//! PostgreSQL, the source side: WAL file names and positions ([`wal`]),
//! what a base backup says about itself ([`label`]), watching a tar stream
//! for those files ([`tarscan`]) and running the client programs
//! ([`process`]). The repository side (WAL archive, base-backup snapshots,
//! restore selection) lives in `bunker_repo::pg`.

pub mod label;
pub mod process;
pub mod server;
pub mod tarscan;
pub mod wal;

pub use label::{
    end_point_from_log, parse_backup_label, parse_manifest_wal_ranges, system_identifier,
    BackupLabel, WalRange,
};
pub use process::{ChildReader, PgConn};
pub use tarscan::TarScan;
pub use wal::{parse_history, HistoryEntry, Lsn, Segment, WalFileName, DEFAULT_SEGMENT_SIZE};

/// Errors of the PostgreSQL source helpers.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("invalid {what}: {value:?}")]
    Parse { what: &'static str, value: String },
    #[error("cannot run {program}: {source} (is PostgreSQL's client installed and on PATH?)")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} failed ({status}){}", colon_then(.stderr))]
    Failed {
        program: String,
        status: String,
        stderr: String,
    },
    #[error("{program} did not finish within {limit} and was stopped")]
    TimedOut { program: String, limit: String },
    #[error("{program} was stopped: interrupted")]
    Cancelled { program: String },
    #[error(
        "PostgreSQL's {program} not found (looked in {}); install the server package{} or give --pg-bin DIR",
        list_dirs(.searched),
        .version.as_ref().map(|v| format!(" of PostgreSQL {v}")).unwrap_or_default()
    )]
    ProgramMissing {
        program: String,
        /// The cluster's major version, when known.
        version: Option<String>,
        searched: Vec<std::path::PathBuf>,
    },
}

/// `": text"`, or nothing for an empty text (a program that said nothing).
fn colon_then(text: &str) -> String {
    if text.trim().is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

fn list_dirs(dirs: &[std::path::PathBuf]) -> String {
    if dirs.is_empty() {
        return "no directory: nothing on PATH, no PG_VERSION".to_string();
    }
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl PgError {
    pub(crate) fn spawn(program: &str, source: std::io::Error) -> PgError {
        PgError::Spawn {
            program: program.to_string(),
            source,
        }
    }

    /// Whether retrying may help (a failed program might, e.g. a dropped connection).
    pub fn is_retryable(&self) -> bool {
        matches!(self, PgError::Failed { .. })
    }
}
