//! What a base backup tells about itself: `backup_label`, the WAL range of
//! `backup_manifest`, the system identifier in `global/pg_control` and the
//! end point `pg_basebackup -v` prints.

use super::wal::Lsn;
use super::PgError;

/// The fields of a `backup_label` file that matter for recovery.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackupLabel {
    pub start_lsn: Lsn,
    /// The WAL file named in `START WAL LOCATION`.
    pub start_wal_file: String,
    pub checkpoint_lsn: Lsn,
    /// `primary` or `standby`.
    pub backup_from: String,
    pub start_time: String,
    pub label: String,
    pub start_timeline: u32,
}

/// Parse a `backup_label` file (`KEY: value` lines).
pub fn parse_backup_label(text: &str) -> Result<BackupLabel, PgError> {
    let mut out = BackupLabel::default();
    let mut have_start = false;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(": ") else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "START WAL LOCATION" => {
                // "0/2000028 (file 000000010000000000000002)"
                let (lsn, rest) = value.split_once(' ').unwrap_or((value, ""));
                out.start_lsn = lsn.parse()?;
                out.start_wal_file = rest
                    .trim()
                    .trim_start_matches("(file ")
                    .trim_end_matches(')')
                    .to_string();
                have_start = true;
            }
            "CHECKPOINT LOCATION" => out.checkpoint_lsn = value.parse()?,
            "BACKUP FROM" => out.backup_from = value.to_string(),
            "START TIME" => out.start_time = value.to_string(),
            "LABEL" => out.label = value.to_string(),
            "START TIMELINE" => {
                out.start_timeline = value.parse().map_err(|_| PgError::Parse {
                    what: "START TIMELINE",
                    value: value.to_string(),
                })?
            }
            _ => {}
        }
    }
    if !have_start {
        return Err(PgError::Parse {
            what: "backup_label (no START WAL LOCATION)",
            value: text.chars().take(200).collect(),
        });
    }
    if out.start_timeline == 0 {
        // Labels before PostgreSQL 11 have no START TIMELINE: take it from the file name.
        out.start_timeline = out
            .start_wal_file
            .get(0..8)
            .and_then(|t| u32::from_str_radix(t, 16).ok())
            .unwrap_or(1);
    }
    Ok(out)
}

/// One entry of a manifest's `WAL-Ranges`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalRange {
    pub timeline: u32,
    pub start: Lsn,
    pub end: Lsn,
}

/// The `WAL-Ranges` of a `backup_manifest` (JSON).
pub fn parse_manifest_wal_ranges(json: &[u8]) -> Result<Vec<WalRange>, PgError> {
    let v: serde_json::Value = serde_json::from_slice(json).map_err(|e| PgError::Parse {
        what: "backup_manifest",
        value: e.to_string(),
    })?;
    let mut out = Vec::new();
    for r in v
        .get("WAL-Ranges")
        .and_then(|r| r.as_array())
        .map(|a| a.as_slice())
        .unwrap_or(&[])
    {
        let bad = || PgError::Parse {
            what: "backup_manifest WAL range",
            value: r.to_string(),
        };
        let timeline = r
            .get("Timeline")
            .and_then(|t| t.as_u64())
            .and_then(|t| u32::try_from(t).ok())
            .ok_or_else(bad)?;
        let start = r
            .get("Start-LSN")
            .and_then(|s| s.as_str())
            .ok_or_else(bad)?
            .parse()?;
        let end = r
            .get("End-LSN")
            .and_then(|s| s.as_str())
            .ok_or_else(bad)?
            .parse()?;
        out.push(WalRange {
            timeline,
            start,
            end,
        });
    }
    Ok(out)
}

/// The database system identifier: the first field of `pg_control`
/// (a 64-bit integer in the server's byte order; we assume it is ours).
pub fn system_identifier(pg_control: &[u8]) -> Option<u64> {
    let first: [u8; 8] = pg_control.get(0..8)?.try_into().ok()?;
    Some(u64::from_ne_bytes(first))
}

/// `write-ahead log end point: X/Y` from `pg_basebackup -v` output.
pub fn end_point_from_log(stderr: &str) -> Option<Lsn> {
    stderr.lines().find_map(|l| {
        let (_, rest) = l.split_once("write-ahead log end point: ")?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LABEL: &str = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)
CHECKPOINT LOCATION: 0/2000060
BACKUP METHOD: streamed
BACKUP FROM: primary
START TIME: 2024-05-01 10:00:00 UTC
LABEL: pg_basebackup base backup
START TIMELINE: 1
";

    #[test]
    fn label_fields() {
        let l = parse_backup_label(LABEL).unwrap();
        assert_eq!(l.start_lsn, "0/2000028".parse().unwrap());
        assert_eq!(l.start_wal_file, "000000010000000000000002");
        assert_eq!(l.checkpoint_lsn, "0/2000060".parse().unwrap());
        assert_eq!(l.backup_from, "primary");
        assert_eq!(l.start_timeline, 1);
        assert_eq!(l.label, "pg_basebackup base backup");
        let old = LABEL
            .replace("START TIMELINE: 1\n", "")
            .replace("00000001000", "00000003000");
        assert_eq!(parse_backup_label(&old).unwrap().start_timeline, 3);
        assert!(parse_backup_label("LABEL: x\n").is_err());
        assert!(parse_backup_label("START WAL LOCATION: zz (file x)\n").is_err());
    }

    #[test]
    fn manifest_ranges() {
        let m = br#"{ "PostgreSQL-Backup-Manifest-Version": 1,
"Files": [],
"WAL-Ranges": [
{ "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000138" }
] }"#;
        let r = parse_manifest_wal_ranges(m).unwrap();
        assert_eq!(
            r,
            vec![WalRange {
                timeline: 1,
                start: "0/2000028".parse().unwrap(),
                end: "0/2000138".parse().unwrap()
            }]
        );
        assert!(parse_manifest_wal_ranges(b"not json").is_err());
        assert!(parse_manifest_wal_ranges(br#"{"WAL-Ranges":[{"Timeline":1}]}"#).is_err());
    }

    #[test]
    fn system_id_and_end_point() {
        let mut ctl = 7_312_345_678_901_234_567u64.to_ne_bytes().to_vec();
        ctl.extend_from_slice(&[0; 100]);
        assert_eq!(system_identifier(&ctl), Some(7_312_345_678_901_234_567));
        assert_eq!(system_identifier(&[1, 2]), None);
        let log = "pg_basebackup: initiating base backup\npg_basebackup: write-ahead log end point: 0/5000100\npg_basebackup: base backup completed\n";
        assert_eq!(end_point_from_log(log), Some("0/5000100".parse().unwrap()));
        assert_eq!(end_point_from_log("nothing"), None);
    }
}
