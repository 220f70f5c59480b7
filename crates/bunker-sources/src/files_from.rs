//! Backup targets read from files (restic's `--files-from`,
//! `--files-from-verbatim` and `--files-from-raw`).
//!
//! - [`ListFormat::Patterns`]: one entry per line; blank lines and lines
//!   starting with `#` are skipped, surrounding blanks trimmed, and each
//!   entry is expanded as a glob (`*`, `?`, `[...]` within one path
//!   component, as Go's `filepath.Glob`). A glob matching nothing is
//!   reported and skipped.
//! - [`ListFormat::Verbatim`]: one path per line, taken as is (only empty
//!   lines are skipped).
//! - [`ListFormat::Raw`]: paths separated by NUL bytes (`find -print0`), as is.
//!
//! The name `-` reads standard input. Text lists may end lines with `\r\n`.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::SourceError;
use crate::filter::Pattern;

/// How a list file is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListFormat {
    Patterns,
    Verbatim,
    Raw,
}

/// The paths a list names, plus the globs that matched nothing.
#[derive(Clone, Debug, Default)]
pub struct FileList {
    pub paths: Vec<PathBuf>,
    pub unmatched: Vec<String>,
}

fn read_all(file: &Path) -> Result<Vec<u8>, SourceError> {
    let mut data = Vec::new();
    if file == Path::new("-") {
        std::io::stdin()
            .read_to_end(&mut data)
            .map_err(|e| SourceError::io("read", file, e))?;
    } else {
        data = std::fs::read(file).map_err(|e| SourceError::io("read", file, e))?;
    }
    Ok(data)
}

/// Read one list file.
pub fn read_list(file: &Path, format: ListFormat) -> Result<FileList, SourceError> {
    parse_list(&read_all(file)?, format)
}

/// Read several list files, in order, into one list.
pub fn read_lists<'a>(
    lists: impl IntoIterator<Item = (&'a Path, ListFormat)>,
) -> Result<FileList, SourceError> {
    let mut out = FileList::default();
    for (file, format) in lists {
        let l = read_list(file, format)?;
        out.paths.extend(l.paths);
        out.unmatched.extend(l.unmatched);
    }
    Ok(out)
}

/// Parse the bytes of a list file.
pub fn parse_list(data: &[u8], format: ListFormat) -> Result<FileList, SourceError> {
    let mut out = FileList::default();
    if format == ListFormat::Raw {
        for name in data.split(|&b| b == 0).filter(|n| !n.is_empty()) {
            out.paths.push(PathBuf::from(OsStr::from_bytes(name)));
        }
        return Ok(out);
    }
    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if format == ListFormat::Verbatim {
            if !line.is_empty() {
                out.paths.push(PathBuf::from(OsStr::from_bytes(line)));
            }
            continue;
        }
        let line = line.trim_ascii();
        if line.is_empty() || line.starts_with(b"#") {
            continue;
        }
        let found = glob(line)?;
        if found.is_empty() {
            out.unmatched
                .push(String::from_utf8_lossy(line).into_owned());
        }
        out.paths.extend(found);
    }
    Ok(out)
}

fn has_meta(b: &[u8]) -> bool {
    b.iter().any(|c| b"*?[\\".contains(c))
}

/// Expand a glob like Go's `filepath.Glob`: existing paths only, sorted
/// within each directory; a pattern without wildcards names itself when it
/// exists.
pub fn glob(pattern: &[u8]) -> Result<Vec<PathBuf>, SourceError> {
    let path = Path::new(OsStr::from_bytes(pattern));
    if !has_meta(pattern) {
        return Ok(match std::fs::symlink_metadata(path) {
            Ok(_) => vec![path.to_path_buf()],
            Err(_) => Vec::new(),
        });
    }
    let absolute = pattern.starts_with(b"/");
    let mut current: Vec<PathBuf> = vec![if absolute {
        PathBuf::from("/")
    } else {
        PathBuf::new()
    }];
    let comps: Vec<&[u8]> = pattern
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .collect();
    for (i, comp) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        let mut next = Vec::new();
        if !has_meta(comp) {
            for base in &current {
                let p = base.join(OsStr::from_bytes(comp));
                let exists = if last {
                    std::fs::symlink_metadata(&p).is_ok()
                } else {
                    p.is_dir()
                };
                if exists {
                    next.push(p);
                }
            }
        } else {
            let text = String::from_utf8_lossy(comp);
            let pat = Pattern::parse(&text)?;
            for base in &current {
                let dir = if base.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    base.as_path()
                };
                let Ok(entries) = std::fs::read_dir(dir) else {
                    continue;
                };
                let mut names: Vec<Vec<u8>> = entries
                    .flatten()
                    .map(|e| e.file_name().as_bytes().to_vec())
                    .filter(|n| pat.matches(n))
                    .collect();
                names.sort();
                for n in names {
                    let p = base.join(OsStr::from_bytes(&n));
                    if last || p.is_dir() {
                        next.push(p);
                    }
                }
            }
        }
        current = next;
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_formats() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for f in ["a.txt", "b.txt", "c.log"] {
            std::fs::write(d.join(f), b"x").expect("write");
        }
        std::fs::create_dir(d.join("sub")).expect("mkdir");
        std::fs::write(d.join("sub/d.txt"), b"x").expect("write");
        let text = format!(
            "# comment\n\n  {0}/*.txt  \r\n{0}/s*/d.txt\n{0}/none*\n{0}/c.log\n",
            d.display()
        );
        let l = parse_list(text.as_bytes(), ListFormat::Patterns).expect("parse");
        assert_eq!(
            l.paths,
            vec![
                d.join("a.txt"),
                d.join("b.txt"),
                d.join("sub/d.txt"),
                d.join("c.log")
            ]
        );
        assert_eq!(l.unmatched, vec![format!("{}/none*", d.display())]);

        let v =
            parse_list(b" spaced name \n\n#not a comment\n", ListFormat::Verbatim).expect("parse");
        assert_eq!(
            v.paths,
            vec![
                PathBuf::from(" spaced name "),
                PathBuf::from("#not a comment")
            ]
        );
        let r = parse_list(b"a\nb\0c\0\0", ListFormat::Raw).expect("parse");
        assert_eq!(r.paths, vec![PathBuf::from("a\nb"), PathBuf::from("c")]);
    }
}
