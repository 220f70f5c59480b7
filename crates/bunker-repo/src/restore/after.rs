//! The restore's work besides creating entries: deleting what is not in
//! the snapshot (`delete`) and making hard links once the files they link
//! to are complete.

use std::collections::HashSet;

use bunker_sources::TargetDir;

use super::{parts, Rel, Restorer, MAX_LISTED_SKIPS, TEMP_PREFIX};

impl Restorer<'_> {
    /// Count (and list) a deleted entry.
    pub(super) fn note_deleted(&mut self, display: String) {
        self.summary.deleted += 1;
        if self.summary.deleted_paths.len() < MAX_LISTED_SKIPS {
            self.summary.deleted_paths.push(display);
        }
    }

    /// `delete`: remove the entries of the target directory `rel` (the
    /// snapshot's directory `path`) whose names are not in `names` and that
    /// the include/exclude patterns select (restic 0.17: excluded entries
    /// stay). The temporary files of this restore are never touched.
    /// Errors are reported only for directories the restore created or
    /// merged (`report`); elsewhere there was nothing to restore.
    pub(super) fn delete_unexpected(
        &mut self,
        rel: &Rel,
        path: &[u8],
        names: &HashSet<Vec<u8>>,
        report: bool,
    ) {
        let Some(t) = self.target else { return };
        let entries = match t.list_dir(&parts(rel)) {
            Ok(e) => e,
            Err(e) => {
                if report {
                    let display = String::from_utf8_lossy(path).into_owned();
                    self.error(display, format!("cannot list for --delete: {e}"));
                }
                return;
            }
        };
        let own_temp = format!("{TEMP_PREFIX}{}-", std::process::id());
        for name in entries {
            if names.contains(&name) || name.starts_with(own_temp.as_bytes()) {
                continue;
            }
            let mut child = path.to_vec();
            if !child.ends_with(b"/") {
                child.push(b'/');
            }
            child.extend_from_slice(&name);
            if !self.selector.select(&child, false).0 {
                continue;
            }
            let display = String::from_utf8_lossy(&child).into_owned();
            if !self.opts.dry_run {
                let mut r = rel.clone();
                r.push(name);
                if let Err(e) = t.remove_all(&parts(&r)) {
                    self.error(display, format!("cannot delete: {e}"));
                    continue;
                }
            }
            self.progress.current(&display);
            self.note_deleted(display);
        }
    }

    /// Make the hard links queued during the walk (the files they link to
    /// are complete now); a link to a file that could not be restored is
    /// an error, never a link to whatever is at that path.
    pub(super) fn make_pending_links(&mut self) {
        for (first, rel, display) in std::mem::take(&mut self.pending_links) {
            if self.failed.contains(&first) {
                let msg = format!(
                    "hard link not made: {} could not be restored",
                    String::from_utf8_lossy(&first.join(&b'/'))
                );
                self.error(display, msg);
                continue;
            }
            if self.opts.dry_run {
                self.summary.hardlinks += 1;
                continue;
            }
            let link = |t: &TargetDir, p: &[&[u8]]| t.hardlink(&parts(&first), p);
            if self.create_leaf(&rel, &display, &link) {
                self.summary.hardlinks += 1;
            }
        }
    }
}
