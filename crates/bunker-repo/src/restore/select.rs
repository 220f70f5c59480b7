//! Which snapshot nodes a restore selects (restic `restore --include/--exclude`).
//!
//! Patterns are matched against the path in the snapshot (`/home/a/b`, or
//! relative to the restored sub-directory). An exclude pattern that matches
//! a directory drops it and everything below. An include pattern selects
//! the matching node and everything below it; directories that do not match
//! are still descended into when a child may match (restic's `childMatch`),
//! and the restore creates the parents of included nodes. `--iinclude` /
//! `--iexclude` compare lower-cased paths and patterns. restic refuses to
//! combine includes and excludes; we allow it (selected = included and not
//! excluded).

use bunker_sources::{Pattern, PatternList};

use crate::error::{RepoError, Result};

/// Compiled include/exclude rules.
#[derive(Debug, Default)]
pub struct Selector {
    include: PatternList,
    include_raw: Vec<String>,
    iinclude: PatternList,
    iinclude_raw: Vec<String>,
    exclude: PatternList,
    iexclude: PatternList,
}

fn parse(patterns: &[String], lower: bool) -> Result<(PatternList, Vec<String>)> {
    let raw: Vec<String> = patterns
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| if lower { p.to_lowercase() } else { p.clone() })
        .collect();
    let list = PatternList::parse(&raw).map_err(|e| RepoError::Invalid(e.to_string()))?;
    Ok((list, raw))
}

/// Lower-case a path for case-insensitive matching (ASCII-only when not UTF-8).
fn lower(path: &[u8]) -> Vec<u8> {
    match std::str::from_utf8(path) {
        Ok(s) => s.to_lowercase().into_bytes(),
        Err(_) => path.to_ascii_lowercase(),
    }
}

fn components(path: &[u8]) -> Vec<&[u8]> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect()
}

/// restic's `childMatch`: could a path below `path` match `pattern`?
fn child_may_match(pattern: &str, path: &[u8]) -> bool {
    if pattern.starts_with('!') {
        return false;
    }
    if !pattern.starts_with('/') {
        // A relative pattern may match at any depth.
        return true;
    }
    let pat: Vec<&str> = pattern
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let strs = components(path);
    let mut n = strs.len();
    if let Some(pos) = pat.iter().position(|c| *c == "**") {
        n = n.min(pos);
    }
    let l = n.min(pat.len());
    if l == 0 {
        return true;
    }
    let sub_pat = format!("/{}", pat[..l].join("/"));
    let mut sub_path = Vec::new();
    for c in &strs[..l] {
        sub_path.push(b'/');
        sub_path.extend_from_slice(c);
    }
    match Pattern::parse(&sub_pat) {
        Ok(p) => p.matches(&sub_path),
        Err(_) => true,
    }
}

impl Selector {
    pub fn new(
        include: &[String],
        iinclude: &[String],
        exclude: &[String],
        iexclude: &[String],
    ) -> Result<Selector> {
        let (include, include_raw) = parse(include, false)?;
        let (iinclude, iinclude_raw) = parse(iinclude, true)?;
        let (exclude, _) = parse(exclude, false)?;
        let (iexclude, _) = parse(iexclude, true)?;
        Ok(Selector {
            include,
            include_raw,
            iinclude,
            iinclude_raw,
            exclude,
            iexclude,
        })
    }

    fn has_includes(&self) -> bool {
        !self.include.is_empty() || !self.iinclude.is_empty()
    }

    /// `(selected, descend)`: whether to restore the node at `path`, and
    /// (for directories) whether any node below it may be selected.
    pub fn select(&self, path: &[u8], is_dir: bool) -> (bool, bool) {
        let lowered = if self.iexclude.is_empty() && self.iinclude.is_empty() {
            Vec::new()
        } else {
            lower(path)
        };
        let excluded = self.exclude.matches(path)
            || (!self.iexclude.is_empty() && self.iexclude.matches(&lowered));
        if excluded {
            return (false, false);
        }
        if !self.has_includes() {
            return (true, is_dir);
        }
        let included = self.include.matches(path)
            || (!self.iinclude.is_empty() && self.iinclude.matches(&lowered));
        if included {
            return (true, is_dir);
        }
        let child = is_dir
            && (self.include_raw.iter().any(|p| child_may_match(p, path))
                || self
                    .iinclude_raw
                    .iter()
                    .any(|p| child_may_match(p, &lowered)));
        (false, child)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn no_patterns_selects_everything() {
        let sel = Selector::default();
        assert_eq!(sel.select(b"/a", true), (true, true));
        assert_eq!(sel.select(b"/a/b", false), (true, false));
    }

    #[test]
    fn excludes_drop_subtrees() {
        let sel = Selector::new(&[], &[], &s(&["*.log", "/home/a/cache"]), &[]).unwrap();
        assert_eq!(sel.select(b"/x/y.log", false), (false, false));
        assert_eq!(sel.select(b"/home/a/cache", true), (false, false));
        assert_eq!(sel.select(b"/home/a/cache/x", false), (false, false));
        assert_eq!(sel.select(b"/home/a/keep", true), (true, true));
    }

    #[test]
    fn includes_descend_to_matches() {
        let sel = Selector::new(&s(&["/home/a/docs"]), &[], &[], &[]).unwrap();
        assert_eq!(sel.select(b"/home", true), (false, true));
        assert_eq!(sel.select(b"/home/a", true), (false, true));
        assert_eq!(sel.select(b"/home/b", true), (false, false));
        assert_eq!(sel.select(b"/home/a/docs", true), (true, true));
        assert_eq!(sel.select(b"/home/a/docs/x.txt", false), (true, false));
        assert_eq!(sel.select(b"/home/a/other.txt", false), (false, false));
        let rel = Selector::new(&s(&["*.txt"]), &[], &[], &[]).unwrap();
        assert_eq!(rel.select(b"/deep/dir", true), (false, true));
        assert_eq!(rel.select(b"/deep/dir/f.txt", false), (true, false));
        assert_eq!(rel.select(b"/deep/dir/f.bin", false), (false, false));
    }

    #[test]
    fn double_star_and_case_insensitive() {
        let sel = Selector::new(&s(&["/home/**/x"]), &[], &[], &[]).unwrap();
        assert_eq!(sel.select(b"/home/q/r", true), (false, true));
        assert_eq!(sel.select(b"/etc", true), (false, false));
        let sel = Selector::new(&[], &s(&["/HOME/A"]), &[], &s(&["*.JPG"])).unwrap();
        assert_eq!(sel.select(b"/home/a/B.jpg", false), (false, false));
        assert_eq!(sel.select(b"/Home/A/b.txt", false), (true, false));
        assert_eq!(sel.select(b"/Home", true), (false, true));
    }
}
