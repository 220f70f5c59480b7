//! restic-compatible path patterns (`internal/filter` semantics).
//!
//! A pattern is split into path components. A component is either literal,
//! a glob (`*`, `?`, `[...]`, `\` escapes, as Go's `filepath.Match`), or `**`
//! which matches any number of components. Absolute patterns (leading `/`)
//! are anchored at the root; relative ones may match at any depth. A leading
//! `!` negates: a matching path excluded by an earlier pattern is re-included.

use crate::error::SourceError;

/// One token of a glob component.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Byte(u8),
    AnyRune,
    Star,
    Class {
        negated: bool,
        ranges: Vec<(u32, u32)>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// Compared byte-wise (also the root marker `/`).
    Literal(Vec<u8>),
    Glob(Vec<Tok>),
    DoubleStar,
}

/// A parsed pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    original: String,
    parts: Vec<Part>,
    negated: bool,
}

static SINGLE_STAR: std::sync::OnceLock<Part> = std::sync::OnceLock::new();

fn single_star() -> &'static Part {
    SINGLE_STAR.get_or_init(|| Part::Glob(vec![Tok::Star]))
}

/// Decode one UTF-8 rune; invalid bytes yield U+FFFD with width 1 (as Go).
fn decode_rune(b: &[u8]) -> (u32, usize) {
    let end = b.len().min(4);
    let s = match std::str::from_utf8(&b[..end]) {
        Ok(s) => s,
        Err(e) if e.valid_up_to() > 0 => {
            std::str::from_utf8(&b[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => "",
    };
    match s.chars().next() {
        Some(c) => (c as u32, c.len_utf8()),
        None => (0xFFFD, 1),
    }
}

/// Lexically clean a path like Go's `filepath.Clean`.
pub(crate) fn clean(p: &[u8]) -> Vec<u8> {
    if p.is_empty() {
        return b".".to_vec();
    }
    let rooted = p[0] == b'/';
    let mut out: Vec<&[u8]> = Vec::new();
    for comp in p.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                if out.last().is_some_and(|l| *l != b"..") {
                    out.pop();
                } else if !rooted {
                    out.push(comp);
                }
            }
            _ => out.push(comp),
        }
    }
    let mut res = Vec::with_capacity(p.len());
    if rooted {
        res.push(b'/');
    }
    res.extend_from_slice(&out.join(&b'/'));
    if res.is_empty() {
        res.push(b'.');
    }
    res
}

/// Split a cleaned path into components; an absolute path starts with `/`.
pub(crate) fn split_path(p: &[u8]) -> Vec<&[u8]> {
    let mut parts: Vec<&[u8]> = p.split(|&b| b == b'/').collect();
    if parts.first().is_some_and(|f| f.is_empty()) {
        parts[0] = b"/";
    }
    parts
}

fn bad(pattern: &str, reason: &'static str) -> SourceError {
    SourceError::InvalidPattern {
        pattern: pattern.to_string(),
        reason,
    }
}

/// Parse one escaped rune of a character class (Go's `getEsc`).
fn class_rune(chunk: &[u8], orig: &str) -> Result<(u32, usize), SourceError> {
    let mut i = 0;
    match chunk.first() {
        None | Some(b'-') | Some(b']') => return Err(bad(orig, "malformed character class")),
        Some(b'\\') => i = 1,
        _ => {}
    }
    if i >= chunk.len() {
        return Err(bad(orig, "unterminated escape in class"));
    }
    let (r, n) = decode_rune(&chunk[i..]);
    if r == 0xFFFD && n == 1 {
        return Err(bad(orig, "invalid UTF-8 in character class"));
    }
    if i + n >= chunk.len() {
        return Err(bad(orig, "unterminated character class"));
    }
    Ok((r, i + n))
}

fn parse_glob(comp: &[u8], orig: &str) -> Result<Vec<Tok>, SourceError> {
    let mut toks = Vec::new();
    let mut i = 0;
    while i < comp.len() {
        match comp[i] {
            b'*' => {
                toks.push(Tok::Star);
                i += 1;
            }
            b'?' => {
                toks.push(Tok::AnyRune);
                i += 1;
            }
            b'\\' => {
                if i + 1 >= comp.len() {
                    return Err(bad(orig, "trailing backslash"));
                }
                let (_, n) = decode_rune(&comp[i + 1..]);
                toks.extend(comp[i + 1..i + 1 + n].iter().map(|&b| Tok::Byte(b)));
                i += 1 + n;
            }
            b'[' => {
                i += 1;
                let mut negated = false;
                if comp.get(i) == Some(&b'^') {
                    negated = true;
                    i += 1;
                }
                let mut ranges = Vec::new();
                loop {
                    if comp.get(i) == Some(&b']') && !ranges.is_empty() {
                        i += 1;
                        break;
                    }
                    let (lo, n) = class_rune(&comp[i..], orig)?;
                    i += n;
                    let mut hi = lo;
                    if comp.get(i) == Some(&b'-') {
                        let (h, n) = class_rune(&comp[i + 1..], orig)?;
                        hi = h;
                        i += 1 + n;
                    }
                    ranges.push((lo, hi));
                }
                toks.push(Tok::Class { negated, ranges });
            }
            b => {
                toks.push(Tok::Byte(b));
                i += 1;
            }
        }
    }
    Ok(toks)
}

/// Match one component against glob tokens (`*` and `?` never match `/`).
fn glob_match(toks: &[Tok], name: &[u8]) -> bool {
    let (mut ti, mut ni) = (0usize, 0usize);
    let mut backtrack: Option<(usize, usize)> = None;
    loop {
        if ti < toks.len() {
            let step = match &toks[ti] {
                Tok::Star => {
                    backtrack = Some((ti, ni));
                    ti += 1;
                    continue;
                }
                Tok::Byte(b) => (name.get(ni) == Some(b)).then_some(1),
                Tok::AnyRune => match name.get(ni) {
                    Some(b'/') | None => None,
                    Some(_) => Some(decode_rune(&name[ni..]).1),
                },
                Tok::Class { negated, ranges } => {
                    if ni >= name.len() {
                        None
                    } else {
                        let (r, n) = decode_rune(&name[ni..]);
                        let hit = ranges.iter().any(|&(lo, hi)| lo <= r && r <= hi);
                        (hit != *negated).then_some(n)
                    }
                }
            };
            if let Some(n) = step {
                ti += 1;
                ni += n;
                continue;
            }
        } else if ni == name.len() {
            return true;
        }
        // Mismatch: let the last star swallow one more byte, if it can.
        match backtrack {
            Some((sti, sni)) if sni < name.len() && name[sni] != b'/' => {
                backtrack = Some((sti, sni + 1));
                ti = sti + 1;
                ni = sni + 1;
            }
            _ => return false,
        }
    }
}

fn part_matches(part: &Part, s: &[u8]) -> bool {
    match part {
        Part::Literal(l) => l == s,
        Part::Glob(t) => glob_match(t, s),
        Part::DoubleStar => false,
    }
}

fn match_parts(parts: &[&Part], strs: &[&[u8]]) -> bool {
    if let Some(pos) = parts.iter().position(|p| matches!(p, Part::DoubleStar)) {
        // Expand `**` into 0, 1, 2, ... single-component wildcards.
        let max = strs.len() as isize - parts.len() as isize + 1;
        let mut i = 0isize;
        while i <= max {
            let mut expanded: Vec<&Part> = Vec::with_capacity(parts.len() + i as usize);
            expanded.extend_from_slice(&parts[..pos]);
            expanded.extend(std::iter::repeat_n(single_star(), i as usize));
            expanded.extend_from_slice(&parts[pos + 1..]);
            if match_parts(&expanded, strs) {
                return true;
            }
            i += 1;
        }
        return false;
    }
    if parts.is_empty() {
        return strs.is_empty();
    }
    if parts.len() > strs.len() {
        return false;
    }
    let mut min_off = 0;
    let mut max_off = strs.len() - parts.len();
    if matches!(parts[0], Part::Literal(l) if l == b"/") {
        max_off = 0;
    } else if strs[0] == b"/" {
        min_off = 1;
    }
    (min_off..=max_off).rev().any(|off| {
        parts
            .iter()
            .enumerate()
            .all(|(i, p)| part_matches(p, strs[off + i]))
    })
}

impl Pattern {
    /// Parse a pattern; `!` at the start negates it.
    pub fn parse(pattern: &str) -> Result<Pattern, SourceError> {
        let (negated, body) = match pattern.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        let cleaned = clean(body.as_bytes());
        let mut parts = Vec::new();
        for comp in split_path(&cleaned) {
            let simple = !comp.iter().any(|b| b"\\[]*?".contains(b));
            let part = if comp == b"**" || comp.is_empty() {
                Part::DoubleStar
            } else if simple {
                Part::Literal(comp.to_vec())
            } else {
                Part::Glob(parse_glob(comp, pattern)?)
            };
            parts.push(part);
        }
        Ok(Pattern {
            original: pattern.to_string(),
            parts,
            negated,
        })
    }

    /// The pattern as given.
    pub fn original(&self) -> &str {
        &self.original
    }

    /// Whether this is a `!` pattern.
    pub fn is_negated(&self) -> bool {
        self.negated
    }

    /// Whether `path` (raw bytes) matches, ignoring negation.
    pub fn matches(&self, path: &[u8]) -> bool {
        let cleaned = clean(path);
        let strs = split_path(&cleaned);
        let parts: Vec<&Part> = self.parts.iter().collect();
        match_parts(&parts, &strs)
    }
}

/// Ordered list of patterns with restic's negation semantics.
#[derive(Debug, Clone, Default)]
pub struct PatternList {
    patterns: Vec<Pattern>,
    has_negated: bool,
}

impl PatternList {
    /// Parse patterns; empty strings are skipped as restic does.
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<PatternList, SourceError> {
        let mut out = Vec::new();
        for p in patterns {
            let p = p.as_ref();
            if !p.is_empty() {
                out.push(Pattern::parse(p)?);
            }
        }
        let has_negated = out.iter().any(|p| p.negated);
        Ok(PatternList {
            patterns: out,
            has_negated,
        })
    }

    /// Number of patterns.
    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    /// Whether there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `path` is matched: later `!` patterns re-include paths matched
    /// by earlier patterns.
    pub fn matches(&self, path: &[u8]) -> bool {
        if self.patterns.is_empty() {
            return false;
        }
        let cleaned = clean(path);
        let strs = split_path(&cleaned);
        let mut matched = false;
        for pat in &self.patterns {
            let parts: Vec<&Part> = pat.parts.iter().collect();
            let m = match_parts(&parts, &strs);
            if pat.negated {
                matched = matched && !m;
            } else {
                matched = matched || m;
                if matched && !self.has_negated {
                    break;
                }
            }
        }
        matched
    }
}

#[cfg(test)]
#[path = "filter_tests.rs"]
mod tests;
