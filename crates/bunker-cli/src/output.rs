//! Output helpers: sizes, durations, times, tables and JSON lines.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, FixedOffset, Local};
use serde::Serialize;

/// Sizes as restic prints them: `1.234 MiB`, `512 B`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.3} {}", UNITS[unit])
}

/// Durations as restic prints them: `0:05`, `12:34`, `1:02:03`.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// The first `n` of `items`, comma-separated, then "and K more (-v lists
/// them all)" when some were left out.
pub fn first_n(items: &[&str], n: usize) -> String {
    let shown = items[..items.len().min(n)].join(", ");
    if items.len() > n {
        format!("{shown} and {} more (-v lists them all)", items.len() - n)
    } else {
        shown
    }
}

/// A snapshot time in the local zone, `2006-01-02 15:04:05`.
pub fn local_time(t: &DateTime<FixedOffset>) -> String {
    t.with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// Write one value as a line of compact JSON to stdout.
pub fn json_line<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value).context("writing JSON")?;
    writeln!(out).context("writing JSON")?;
    Ok(())
}

/// A plain text table: a header, rows whose cells may span several lines, a rule
/// above and below the rows (restic's layout).
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<Vec<String>>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Add a row; each cell is a list of lines (an empty list is an empty cell).
    pub fn row(&mut self, cells: Vec<Vec<String>>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let cols = self.header.len();
        let mut width: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(cols) {
                for line in cell {
                    width[i] = width[i].max(line.chars().count());
                }
            }
        }
        let fmt_line = |cells: &[&str]| -> String {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate() {
                if i + 1 == cells.len() {
                    s.push_str(c);
                } else {
                    s.push_str(&format!("{c:<w$}  ", w = width[i]));
                }
            }
            s.trim_end().to_string()
        };
        let header: Vec<&str> = self.header.iter().map(String::as_str).collect();
        let head = fmt_line(&header);
        let total: usize = width.iter().sum::<usize>() + 2 * cols.saturating_sub(1);
        let rule = "-".repeat(total.max(head.len()));
        let mut out = format!("{head}\n{rule}\n");
        for row in &self.rows {
            let height = row.iter().map(Vec::len).max().unwrap_or(0).max(1);
            for l in 0..height {
                let cells: Vec<&str> = (0..cols)
                    .map(|i| {
                        row.get(i)
                            .and_then(|c| c.get(l))
                            .map(String::as_str)
                            .unwrap_or("")
                    })
                    .collect();
                out.push_str(&fmt_line(&cells));
                out.push('\n');
            }
        }
        out.push_str(&rule);
        out.push('\n');
        out
    }
}

/// A dump stored as a snapshot (`pg dump`, `mysql dump`): one JSON line
/// with `--json`, else `FILE: snapshot ID (SIZE, ADDED new)`.
pub fn dump_stored(
    g: &crate::cli::GlobalOpts,
    file: &str,
    s: &bunker_repo::backup::BackupSummary,
) -> Result<()> {
    let id = s.snapshot_id.map(|i| i.to_string()).unwrap_or_default();
    if g.json {
        json_line(&serde_json::json!({
            "file": file, "snapshot_id": id,
            "bytes": s.total_bytes_processed, "data_added": s.data_added,
        }))?;
    } else if !g.quiet {
        println!(
            "{file}: snapshot {} ({}, {} new)",
            &id[..id.len().min(8)],
            bytes(s.total_bytes_processed),
            bytes(s.data_added)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_restic() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.000 KiB");
        assert_eq!(bytes(1536), "1.500 KiB");
        assert_eq!(bytes(5 * 1024 * 1024), "5.000 MiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.000 GiB");
        assert_eq!(bytes(u64::MAX), "16.000 EiB");
    }

    #[test]
    fn durations_like_restic() {
        assert_eq!(duration(Duration::from_secs(5)), "0:05");
        assert_eq!(duration(Duration::from_secs(754)), "12:34");
        assert_eq!(duration(Duration::from_secs(3723)), "1:02:03");
    }

    #[test]
    fn table_aligns_multiline_cells() {
        let mut t = Table::new(&["ID", "Paths"]);
        t.row(vec![vec!["abc".into()], vec!["/a".into(), "/b".into()]]);
        t.row(vec![vec!["abcdef".into()], vec![]]);
        let s = t.render();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "ID      Paths");
        assert!(lines[1].chars().all(|c| c == '-'));
        assert_eq!(lines[2], "abc     /a");
        assert_eq!(lines[3], "        /b");
        assert_eq!(lines[4], "abcdef");
        assert!(lines[5].chars().all(|c| c == '-'));
        assert_eq!(lines.len(), 6);
    }
}
