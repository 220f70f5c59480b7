//! Checking the binlog archive: every file from the oldest physical
//! backup's start file to the newest archived one must be present (binlog
//! sequence numbers have no holes), and which files a replay from a backup
//! needs.

use bunker_sources::mysql::BinlogName;
use serde::Serialize;

use super::physical::PhysicalBackup;

/// What `binlog-verify` found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BinlogReport {
    /// Archived binlog files.
    pub archived: usize,
    /// The oldest file a kept physical backup needs (its start file).
    pub needed_from: Option<String>,
    /// The newest archived file.
    pub newest: Option<String>,
    /// Files missing between `needed_from` (or the oldest archived file)
    /// and `newest`.
    pub missing: Vec<String>,
    /// Physical backups whose start file is not (yet) archived.
    pub backups_without_start: Vec<String>,
    /// Archived files of another base name than the newest backup's
    /// (another server, or a renamed `log_bin`): not checked.
    pub other_series: Vec<String>,
}

impl BinlogReport {
    /// Whether the archive has no gap.
    pub fn ok(&self) -> bool {
        self.missing.is_empty()
    }
}

/// Check `archived` (sorted, as [`super::binlog_archive::list`] returns)
/// against the physical `backups` (oldest first).
pub fn verify(archived: &[BinlogName], backups: &[PhysicalBackup]) -> BinlogReport {
    let mut r = BinlogReport {
        archived: archived.len(),
        ..Default::default()
    };
    let starts: Vec<BinlogName> = backups
        .iter()
        .filter_map(|b| BinlogName::parse(&b.pos.file).ok())
        .collect();
    // The series checked: the newest backup's, else the one with most files.
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for n in archived {
        *counts.entry(n.base.as_str()).or_default() += 1;
    }
    let busiest = counts
        .iter()
        .max_by_key(|(_, c)| **c)
        .map(|(b, _)| b.to_string());
    let Some(series) = starts.last().map(|n| n.base.clone()).or(busiest) else {
        return r;
    };
    let mine: Vec<&BinlogName> = archived.iter().filter(|n| n.base == series).collect();
    r.other_series = archived
        .iter()
        .filter(|n| n.base != series)
        .map(ToString::to_string)
        .collect();
    let oldest_start = starts.iter().filter(|n| n.base == series).min();
    let Some(newest) = mine.last() else {
        r.backups_without_start = backups.iter().map(|b| b.entry.id.short()).collect();
        return r;
    };
    r.newest = Some(newest.to_string());
    let from = oldest_start.map(|s| s.seq).unwrap_or(mine[0].seq);
    r.needed_from = Some(newest.with_seq(from));
    let have: std::collections::BTreeSet<u64> = mine.iter().map(|n| n.seq).collect();
    r.missing = (from..=newest.seq)
        .filter(|s| !have.contains(s))
        .map(|s| newest.with_seq(s))
        .collect();
    r.backups_without_start = backups
        .iter()
        .filter(|b| {
            BinlogName::parse(&b.pos.file)
                .map_or(true, |n| n.base == series && !have.contains(&n.seq))
        })
        .map(|b| b.entry.id.short())
        .collect();
    r
}

/// The archived files a replay from `start` (a backup's start file) reads,
/// in order, up to the newest archived file of its series; the first missing
/// file is an error naming it and the last file before it.
pub fn replay_files(archived: &[BinlogName], start: &str) -> Result<Vec<String>, String> {
    let s = BinlogName::parse(start).map_err(|e| e.to_string())?;
    let mine: std::collections::BTreeSet<u64> = archived
        .iter()
        .filter(|n| n.base == s.base && n.seq >= s.seq)
        .map(|n| n.seq)
        .collect();
    let Some(&last) = mine.iter().next_back() else {
        return Err(format!(
            "binlog {start}, where the backup's position lies, is not archived: push it \
             (bunker mysql binlog-push) or restore without a target"
        ));
    };
    let mut out = Vec::new();
    for seq in s.seq..=last {
        if !mine.contains(&seq) {
            return Err(format!(
                "binlog {} is missing from the archive (binlog-verify reports it); recovery \
                 can replay only up to the end of {}: give an earlier --target-position, or \
                 push the missing file",
                s.with_seq(seq),
                out.last().map(String::as_str).unwrap_or("the backup")
            ));
        }
        out.push(s.with_seq(seq));
    }
    Ok(out)
}

/// The archived files no physical backup needs: of each series, those
/// before the oldest start file of a backup of that series. A series no
/// backup starts in is left alone (it may belong to a server whose backups
/// are elsewhere), and nothing is prunable without backups.
pub fn prunable(archived: &[BinlogName], backups: &[PhysicalBackup]) -> Vec<String> {
    let mut oldest: std::collections::BTreeMap<String, u64> = Default::default();
    for n in backups
        .iter()
        .filter_map(|b| BinlogName::parse(&b.pos.file).ok())
    {
        let e = oldest.entry(n.base).or_insert(n.seq);
        *e = (*e).min(n.seq);
    }
    archived
        .iter()
        .filter(|n| oldest.get(&n.base).is_some_and(|&first| n.seq < first))
        .map(ToString::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<BinlogName> {
        v.iter().map(|n| BinlogName::parse(n).unwrap()).collect()
    }

    #[test]
    fn a_missing_file_is_a_gap_and_stops_a_replay_past_it() {
        let a = names(&[
            "binlog.000001",
            "binlog.000002",
            "binlog.000004",
            "old.000009",
        ]);
        let r = verify(&a, &[]);
        assert_eq!(r.missing, ["binlog.000003"]);
        assert_eq!(r.other_series, ["old.000009"]);
        assert_eq!(r.newest.as_deref(), Some("binlog.000004"));
        assert!(!r.ok());
        assert_eq!(
            replay_files(&a, "binlog.000004").unwrap(),
            ["binlog.000004"]
        );
        let e = replay_files(&a, "binlog.000001").unwrap_err();
        assert!(e.contains("binlog.000003 is missing"), "{e}");
        assert!(e.contains("end of binlog.000002"), "{e}");
        assert!(replay_files(&a, "binlog.000005").is_err());
        let full = names(&["binlog.000001", "binlog.000002"]);
        assert!(verify(&full, &[]).ok());
        assert!(prunable(&full, &[]).is_empty(), "nothing without backups");
    }
}
