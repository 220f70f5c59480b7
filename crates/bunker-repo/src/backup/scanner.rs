//! The scanner: a cheap walk of the backup targets that only counts files
//! and bytes, so the front end can show totals and an ETA. It runs on its
//! own thread beside the archiver and never delays it; it stops early when
//! asked to.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bunker_sources::{lstat_meta, read_dir_sorted, Excluder};

use crate::progress::Progress;

/// How often intermediate totals are reported.
const REPORT_EVERY: Duration = Duration::from_millis(250);

/// Files and bytes found below the targets.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScanTotals {
    pub files: u64,
    pub bytes: u64,
}

struct Scan<'a> {
    excluder: Option<&'a Excluder>,
    stop: &'a AtomicBool,
    progress: &'a dyn Progress,
    totals: ScanTotals,
    last_report: Instant,
}

/// Count the regular files (and their sizes) below `targets`, reporting
/// through `progress.set_total`. Returns `None` when stopped early.
pub fn scan(
    targets: &[PathBuf],
    excluder: Option<&Excluder>,
    stop: &AtomicBool,
    progress: &dyn Progress,
) -> Option<ScanTotals> {
    let mut s = Scan {
        excluder,
        stop,
        progress,
        totals: ScanTotals::default(),
        last_report: Instant::now(),
    };
    for t in targets {
        s.visit(t, true);
    }
    if stop.load(Ordering::Relaxed) {
        return None;
    }
    progress.set_total(s.totals.files, s.totals.bytes);
    Some(s.totals)
}

impl Scan<'_> {
    fn visit(&mut self, path: &Path, explicit: bool) {
        if self.stop.load(Ordering::Relaxed) {
            return;
        }
        if !explicit && self.excluder.is_some_and(|e| e.excluded_by_name(path)) {
            return;
        }
        let Ok(md) = std::fs::symlink_metadata(path) else {
            return;
        };
        if !explicit {
            if let Some(ex) = self.excluder {
                // The full metadata is only needed by the excluder.
                match lstat_meta(path, false) {
                    Ok(meta) if ex.excluded(path, &meta) => return,
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        }
        if md.is_file() {
            self.totals.files += 1;
            self.totals.bytes += md.size();
            if self.last_report.elapsed() >= REPORT_EVERY {
                self.last_report = Instant::now();
                self.progress
                    .set_total(self.totals.files, self.totals.bytes);
            }
        } else if md.is_dir() {
            let Ok(names) = read_dir_sorted(path) else {
                return;
            };
            for name in names {
                self.visit(&path.join(name), false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;

    #[test]
    fn counts_files_and_bytes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/one"), vec![0u8; 10]).unwrap();
        std::fs::write(dir.path().join("a/b/two"), vec![0u8; 32]).unwrap();
        std::fs::write(dir.path().join("skip.tmp"), vec![0u8; 1000]).unwrap();
        std::os::unix::fs::symlink("a/one", dir.path().join("link")).unwrap();
        let stop = AtomicBool::new(false);
        let got = scan(&[dir.path().to_path_buf()], None, &stop, &NoProgress).unwrap();
        assert_eq!(
            got,
            ScanTotals {
                files: 3,
                bytes: 1042
            }
        );

        let ex = Excluder::new(&bunker_sources::ExcludeOptions {
            excludes: vec!["*.tmp".into()],
            ..Default::default()
        })
        .unwrap();
        let got = scan(&[dir.path().to_path_buf()], Some(&ex), &stop, &NoProgress).unwrap();
        assert_eq!(
            got,
            ScanTotals {
                files: 2,
                bytes: 42
            }
        );

        stop.store(true, Ordering::Relaxed);
        assert_eq!(
            scan(&[dir.path().to_path_buf()], None, &stop, &NoProgress),
            None
        );
    }
}
