//! restic's JSON `summary` message of a backup.

use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use super::BackupSummary;

/// The last line of `backup --json`, field for field as restic prints it.
#[derive(Debug, Serialize)]
pub struct SummaryMessage<'a> {
    pub message_type: &'static str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unmodified: u64,
    pub dirs_new: u64,
    pub dirs_changed: u64,
    pub dirs_unmodified: u64,
    pub data_blobs: u64,
    pub tree_blobs: u64,
    pub data_added: u64,
    pub data_added_packed: u64,
    pub total_files_processed: u64,
    pub total_bytes_processed: u64,
    pub total_duration: f64,
    pub backup_start: &'a DateTime<FixedOffset>,
    pub backup_end: &'a DateTime<FixedOffset>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// No snapshot saved: nothing changed since the parent (`--skip-if-unchanged`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub skipped_unchanged: bool,
    pub error_count: usize,
    /// The fallback repository used, if any (set by the caller).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_used: Option<String>,
}

impl BackupSummary {
    /// The summary as restic's JSON message.
    pub fn message(&self) -> SummaryMessage<'_> {
        let elapsed = (self.backup_end - self.backup_start)
            .to_std()
            .unwrap_or_default();
        SummaryMessage {
            message_type: "summary",
            dry_run: self.dry_run,
            files_new: self.files_new,
            files_changed: self.files_changed,
            files_unmodified: self.files_unmodified,
            dirs_new: self.dirs_new,
            dirs_changed: self.dirs_changed,
            dirs_unmodified: self.dirs_unmodified,
            data_blobs: self.data_blobs,
            tree_blobs: self.tree_blobs,
            data_added: self.data_added,
            data_added_packed: self.data_added_packed,
            total_files_processed: self.total_files_processed,
            total_bytes_processed: self.total_bytes_processed,
            total_duration: elapsed.as_secs_f64(),
            backup_start: &self.backup_start,
            backup_end: &self.backup_end,
            snapshot_id: self.snapshot_id.map(|id| id.to_string()),
            skipped_unchanged: self.skipped_unchanged,
            error_count: self.errors.len(),
            fallback_used: None,
        }
    }
}
