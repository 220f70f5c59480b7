//! restic-compatible exclusion rules for the backup walker.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::SourceError;
use crate::filter::PatternList;
use crate::meta::{FileKind, FsMeta};

/// Tag file name and signature of the Cache Directory Tagging Standard.
pub const CACHEDIR_TAG: &str = "CACHEDIR.TAG:Signature: 8a477f597d28d172789f06886806bc55";

/// Options mirroring restic's `backup` exclusion flags.
#[derive(Debug, Clone, Default)]
pub struct ExcludeOptions {
    /// `--exclude PAT` (repeatable).
    pub excludes: Vec<String>,
    /// `--iexclude PAT`: case-insensitive.
    pub iexcludes: Vec<String>,
    /// `--exclude-file F`: one pattern per line.
    pub exclude_files: Vec<PathBuf>,
    /// `--iexclude-file F`.
    pub iexclude_files: Vec<PathBuf>,
    /// `--exclude-caches`.
    pub exclude_caches: bool,
    /// `--exclude-if-present NAME[:HEADER]` (repeatable).
    pub exclude_if_present: Vec<String>,
    /// `--one-file-system`; needs `roots`.
    pub one_file_system: bool,
    /// Backup roots (used by `one_file_system`).
    pub roots: Vec<PathBuf>,
    /// `--exclude-larger-than SIZE` (suffixes b, k, m, g, t; binary units).
    pub exclude_larger_than: Option<String>,
}

#[derive(Debug)]
struct TagRule {
    name: Vec<u8>,
    header: Vec<u8>,
}

/// Decides whether a path is excluded from a backup.
#[derive(Debug)]
pub struct Excluder {
    patterns: PatternList,
    ipatterns: PatternList,
    max_size: Option<u64>,
    tags: Vec<TagRule>,
    /// Directory -> excluded by a tag file (per rule index).
    tag_cache: Mutex<HashMap<(usize, PathBuf), bool>>,
    /// Cleaned absolute root -> device id.
    devices: Option<HashMap<PathBuf, u64>>,
}

/// Parse a size like restic's `ParseBytes`: optional suffix b/k/m/g/t
/// (case-insensitive, powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, SourceError> {
    let err = |reason| SourceError::InvalidSize {
        value: s.to_string(),
        reason,
    };
    let last = s.chars().last().ok_or_else(|| err("empty size"))?;
    let (num, unit): (&str, u64) = match last.to_ascii_lowercase() {
        'b' => (&s[..s.len() - 1], 1),
        'k' => (&s[..s.len() - 1], 1 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        't' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let n: i64 = num.parse().map_err(|_| err("not a number"))?;
    let n = u64::try_from(n).map_err(|_| err("negative size"))?;
    n.checked_mul(unit)
        .filter(|v| *v <= i64::MAX as u64)
        .ok_or_else(|| err("size out of range"))
}

/// Expand `$VAR` and `${VAR}` like Go's `os.Expand`; `$$` yields `$`.
pub fn expand_vars(line: &str, getenv: &dyn Fn(&str) -> Option<String>) -> String {
    let b = line.as_bytes();
    let mut out = String::with_capacity(line.len());
    let mut last = 0;
    let mut j = 0;
    let special = |c: u8| b"*#$@!?-".contains(&c) || c.is_ascii_digit();
    while j < b.len() {
        if b[j] == b'$' && j + 1 < b.len() {
            out.push_str(&line[last..j]);
            let rest = &line[j + 1..];
            let rb = rest.as_bytes();
            let (name, width): (&str, usize) = if rb[0] == b'{' {
                if rb.len() > 2 && special(rb[1]) && rb[2] == b'}' {
                    (&rest[1..2], 3)
                } else {
                    match rb.iter().skip(1).position(|&c| c == b'}') {
                        Some(0) => ("", 2),
                        Some(p) => (&rest[1..p + 1], p + 2),
                        None => ("", 1),
                    }
                }
            } else if special(rb[0]) {
                (&rest[..1], 1)
            } else {
                let n = rb
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                    .count();
                (&rest[..n], n)
            };
            if (name.is_empty() && width == 0) || name == "$" {
                out.push('$');
            } else if !name.is_empty() {
                out.push_str(&getenv(name).unwrap_or_default());
            }
            j += width;
            last = j + 1;
        }
        j += 1;
    }
    out.push_str(&line[last.min(line.len())..]);
    out
}

/// Decode a pattern file: UTF-8 (optional BOM) or UTF-16 with BOM.
fn decode_text(data: &[u8]) -> String {
    if let Some(rest) = data.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        return String::from_utf8_lossy(rest).into_owned();
    }
    let utf16 = |le: bool, rest: &[u8]| {
        let units: Vec<u16> = rest
            .chunks_exact(2)
            .map(|c| {
                if le {
                    u16::from_le_bytes([c[0], c[1]])
                } else {
                    u16::from_be_bytes([c[0], c[1]])
                }
            })
            .collect();
        String::from_utf16_lossy(&units)
    };
    if let Some(rest) = data.strip_prefix(&[0xFF, 0xFE]) {
        return utf16(true, rest);
    }
    if let Some(rest) = data.strip_prefix(&[0xFE, 0xFF]) {
        return utf16(false, rest);
    }
    String::from_utf8_lossy(data).into_owned()
}

/// Parse the text of an exclude file: trimmed lines, blank lines and `#`
/// comments skipped, variables expanded.
pub fn parse_pattern_file(text: &str, getenv: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| expand_vars(l, getenv))
        .collect()
}

fn read_pattern_files(files: &[PathBuf]) -> Result<Vec<String>, SourceError> {
    let getenv = |k: &str| std::env::var(k).ok();
    let mut out = Vec::new();
    for f in files {
        let data = std::fs::read(f).map_err(|e| SourceError::io("read exclude file", f, e))?;
        out.extend(parse_pattern_file(&decode_text(&data), &getenv));
    }
    Ok(out)
}

fn lowercase_bytes(b: &[u8]) -> Vec<u8> {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_lowercase().into_bytes(),
        Err(_) => b.to_ascii_lowercase(),
    }
}

fn parent(path: &Path) -> PathBuf {
    path.parent()
        .map_or_else(|| path.to_path_buf(), Path::to_path_buf)
}

impl Excluder {
    /// Build from options; reads exclude files and stats the roots for
    /// `one_file_system`.
    pub fn new(opts: &ExcludeOptions) -> Result<Self, SourceError> {
        let mut excludes = opts.excludes.clone();
        excludes.extend(read_pattern_files(&opts.exclude_files)?);
        let mut iexcludes = opts.iexcludes.clone();
        iexcludes.extend(read_pattern_files(&opts.iexclude_files)?);
        let iexcludes: Vec<String> = iexcludes.iter().map(|p| p.to_lowercase()).collect();

        let max_size = opts
            .exclude_larger_than
            .as_deref()
            .map(parse_size)
            .transpose()?;

        let mut specs: Vec<&str> = opts.exclude_if_present.iter().map(String::as_str).collect();
        if opts.exclude_caches {
            specs.push(CACHEDIR_TAG);
        }
        let mut tags = Vec::new();
        for spec in specs {
            let (name, header) = spec.split_once(':').unwrap_or((spec, ""));
            if name.is_empty() {
                return Err(SourceError::InvalidOptions(format!(
                    "--exclude-if-present {spec:?}: no file name"
                )));
            }
            tags.push(TagRule {
                name: name.as_bytes().to_vec(),
                header: header.as_bytes().to_vec(),
            });
        }

        let devices = if opts.one_file_system {
            if opts.roots.is_empty() {
                return Err(SourceError::InvalidOptions(
                    "--one-file-system needs at least one root".into(),
                ));
            }
            let mut map = HashMap::new();
            for root in &opts.roots {
                let abs =
                    std::path::absolute(root).map_err(|e| SourceError::io("absolute", root, e))?;
                let abs = clean_path(&abs);
                let md = std::fs::symlink_metadata(&abs)
                    .map_err(|e| SourceError::io("lstat", &abs, e))?;
                map.insert(abs, std::os::unix::fs::MetadataExt::dev(&md));
            }
            Some(map)
        } else {
            None
        };

        Ok(Excluder {
            patterns: PatternList::parse(&excludes)?,
            ipatterns: PatternList::parse(&iexcludes)?,
            max_size,
            tags,
            tag_cache: Mutex::new(HashMap::new()),
            devices,
        })
    }

    /// Whether [`Excluder::excluded`] can exclude more than
    /// [`Excluder::excluded_by_name`] does (size, tag file or device rules),
    /// so callers that have only an `lstat` know when full metadata is needed.
    pub fn needs_metadata(&self) -> bool {
        self.max_size.is_some() || !self.tags.is_empty() || self.devices.is_some()
    }

    /// Whether the path alone (no metadata) is excluded by a pattern.
    pub fn excluded_by_name(&self, path: &Path) -> bool {
        let raw = path.as_os_str().as_bytes();
        if self.patterns.matches(raw) {
            return true;
        }
        !self.ipatterns.is_empty() && self.ipatterns.matches(&lowercase_bytes(raw))
    }

    /// Whether `path` (absolute, as walked) with metadata `meta` is excluded.
    pub fn excluded(&self, path: &Path, meta: &FsMeta) -> bool {
        if self.excluded_by_name(path) {
            return true;
        }
        if let Some(max) = self.max_size {
            if meta.kind != FileKind::Dir && meta.size > max {
                return true;
            }
        }
        if !self.device_allowed(path, meta) {
            return true;
        }
        self.tags
            .iter()
            .enumerate()
            .any(|(i, rule)| self.excluded_by_tag(i, rule, path))
    }

    fn device_of_root(&self, path: &Path) -> Option<u64> {
        let devices = self.devices.as_ref()?;
        let mut dir = path;
        loop {
            if let Some(dev) = devices.get(dir) {
                return Some(*dev);
            }
            dir = dir.parent()?;
        }
    }

    fn device_allowed(&self, path: &Path, meta: &FsMeta) -> bool {
        if self.devices.is_none() {
            return true;
        }
        let path = clean_path(path);
        match self.device_of_root(&path) {
            None => true,
            Some(dev) if dev == meta.dev => true,
            Some(_) if meta.kind != FileKind::Dir => false,
            Some(_) => {
                // keep mount points: a directory whose parent is allowed
                let parent = parent(&path);
                match (
                    std::fs::symlink_metadata(&parent),
                    self.device_of_root(&parent),
                ) {
                    (Ok(md), Some(dev)) => std::os::unix::fs::MetadataExt::dev(&md) == dev,
                    _ => false,
                }
            }
        }
    }

    fn excluded_by_tag(&self, idx: usize, rule: &TagRule, path: &Path) -> bool {
        if path.file_name().map(|n| n.as_bytes()) == Some(&rule.name[..]) {
            return false; // the tag file itself stays
        }
        let dir = parent(path);
        let key = (idx, dir);
        if let Ok(cache) = self.tag_cache.lock() {
            if let Some(v) = cache.get(&key) {
                return *v;
            }
        }
        let rejected = dir_has_tag(&key.1, rule);
        if let Ok(mut cache) = self.tag_cache.lock() {
            cache.insert(key, rejected);
        }
        rejected
    }
}

fn clean_path(p: &Path) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(crate::filter::clean(
        p.as_os_str().as_bytes(),
    )))
}

fn dir_has_tag(dir: &Path, rule: &TagRule) -> bool {
    let tag = dir.join(std::ffi::OsStr::from_bytes(&rule.name));
    match std::fs::symlink_metadata(&tag) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
        Err(e) => {
            tracing::warn!(path = %tag.display(), error = %e, "cannot access exclusion tag file");
            return false;
        }
    }
    if rule.header.is_empty() {
        return true;
    }
    let mut buf = vec![0u8; rule.header.len()];
    let read = std::fs::File::open(&tag).and_then(|mut f| f.read_exact(&mut buf));
    match read {
        Ok(()) if buf == rule.header => true,
        Ok(()) => {
            tracing::warn!(path = %tag.display(), "invalid signature in exclusion tag file");
            false
        }
        Err(e) => {
            tracing::warn!(path = %tag.display(), error = %e, "cannot read exclusion tag file signature");
            false
        }
    }
}

#[cfg(test)]
#[path = "exclude_tests.rs"]
mod tests;
