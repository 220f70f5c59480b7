//! Sharing a local repository between users, e.g. `bunker run` as root
//! and `pg wal-push` as `postgres`.
//!
//! The model: the repository directory's group and group permission bits
//! are the policy. A repository directory that is private to its owner
//! (what `init` creates: 0700) keeps everything private: files 0600,
//! directories 0700, as restic does. When the repository directory grants
//! its group access, every file and directory bunker creates in it gets
//! that group and the same group bits: directories `0700 | (root & 0o070)`
//! (and the setgid bit when the root has it), files `0600 | (root & 0o060)`.
//! The mode is set with `fchmod`/`chmod` after creation, so a restrictive
//! umask (022) cannot take the group's write permission away, and the
//! group with `fchown`/`chown` (allowed to root and to members of the
//! group; when it is refused, the setgid bit of the directory, if set,
//! still gives new entries the group).
//!
//! Making a repository shared is a one-time step by its owner:
//! `chgrp -R GROUP REPO && chmod -R g+rwX REPO && find REPO -type d -exec chmod g+s {} +`.
//! A permission error names the user, the file, its owner and mode.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::{DIR_MODE, FILE_MODE};

/// How new files and directories are created in one repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sharing {
    /// The group new entries get (`None`: private repository).
    pub gid: Option<u32>,
    /// Mode of new files.
    pub file_mode: u32,
    /// Mode of new directories.
    pub dir_mode: u32,
}

impl Sharing {
    /// A private repository: 0600 files, 0700 directories, no group change.
    pub const PRIVATE: Sharing = Sharing {
        gid: None,
        file_mode: FILE_MODE,
        dir_mode: DIR_MODE,
    };

    /// The policy of the repository directory `root`; `None` when it
    /// cannot be read (it does not exist yet).
    pub fn of(root: &Path) -> Option<Sharing> {
        let m = fs::metadata(root).ok()?;
        let group = m.mode() & 0o070;
        if group == 0 {
            return Some(Sharing::PRIVATE);
        }
        Some(Sharing {
            gid: Some(m.gid()),
            file_mode: FILE_MODE | (group & 0o060),
            dir_mode: DIR_MODE | group | (m.mode() & 0o2000),
        })
    }

    /// Create a new file (`O_EXCL`) with this policy's mode and group.
    pub fn create_file(&self, path: &Path) -> io::Result<File> {
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(self.file_mode)
            .open(path)?;
        if let Some(gid) = self.gid {
            // The umask may have removed group bits; the group may differ.
            let m = f.metadata()?;
            if m.gid() != gid {
                let _ = rustix::fs::fchown(&f, None, Some(rustix::fs::Gid::from_raw(gid)));
            }
            if m.mode() & 0o7777 != self.file_mode {
                f.set_permissions(fs::Permissions::from_mode(self.file_mode))?;
            }
        }
        Ok(f)
    }

    /// Create one directory with this policy's mode and group.
    pub fn create_dir(&self, dir: &Path) -> io::Result<()> {
        fs::DirBuilder::new().mode(self.dir_mode).create(dir)?;
        if let Some(gid) = self.gid {
            let m = fs::symlink_metadata(dir)?;
            if m.gid() != gid {
                let _ = std::os::unix::fs::chown(dir, None, Some(gid));
            }
            // chmod after chown: a chown may clear the setgid bit.
            fs::set_permissions(dir, fs::Permissions::from_mode(self.dir_mode))?;
        }
        Ok(())
    }
}

/// A name from a `name:x:id:...` database file (`/etc/passwd`, `/etc/group`).
fn name_of(db: &str, id: u32) -> Option<String> {
    let text = fs::read_to_string(db).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let id_field = f.nth(1)?;
        (id_field.parse::<u32>().ok()? == id).then(|| name.to_string())
    })
}

fn user(uid: u32) -> String {
    name_of("/etc/passwd", uid).map_or_else(|| format!("uid {uid}"), |n| format!("{n} (uid {uid})"))
}

fn group(gid: u32) -> String {
    name_of("/etc/group", gid).unwrap_or_else(|| gid.to_string())
}

/// What to add to a permission error about `path`: who we are, and the
/// owner and mode of `path` (or of its nearest existing parent).
pub(super) fn denied_detail(path: &Path) -> String {
    let me = user(rustix::process::geteuid().as_raw());
    let mut p = path;
    let found = loop {
        match fs::symlink_metadata(p) {
            Ok(m) => break Some((p, m)),
            Err(_) => match p.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => p = parent,
                _ => break None,
            },
        }
    };
    match found {
        Some((p, m)) => {
            let owner = name_of("/etc/passwd", m.uid()).unwrap_or_else(|| m.uid().to_string());
            format!(
                "user {me} may not access {} (owner {owner}:{}, mode {:04o}); to share a \
                 repository between users give its directory their common group \
                 (chgrp -R GROUP REPO && chmod -R g+rwX REPO), see docs/storage.md",
                p.display(),
                group(m.gid()),
                m.mode() & 0o7777
            )
        }
        None => format!("user {me} may not access {}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_bits_of_the_repository_directory_are_the_policy() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("repo");
        fs::create_dir(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(Sharing::of(&root), Some(Sharing::PRIVATE));
        fs::set_permissions(&root, fs::Permissions::from_mode(0o2750)).unwrap();
        let s = Sharing::of(&root).unwrap();
        assert_eq!((s.file_mode, s.dir_mode), (0o640, 0o2750));
        // The umask does not narrow what the policy grants.
        fs::set_permissions(&root, fs::Permissions::from_mode(0o770)).unwrap();
        let s = Sharing::of(&root).unwrap();
        // (With the usual umask 022 the group's write bit is restored here.)
        let f = root.join("f");
        s.create_file(&f).unwrap();
        s.create_dir(&root.join("d")).unwrap();
        assert_eq!(fs::metadata(&f).unwrap().mode() & 0o7777, 0o660);
        assert_eq!(fs::metadata(root.join("d")).unwrap().mode() & 0o7777, 0o770);
        assert!(Sharing::of(&tmp.path().join("missing")).is_none());
        let d = denied_detail(&root.join("missing/file"));
        assert!(
            d.contains(&root.display().to_string()) && d.contains("0770"),
            "{d}"
        );
    }
}
