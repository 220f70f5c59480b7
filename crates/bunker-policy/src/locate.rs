//! Source positions for YAML nodes.
//!
//! `serde_yaml` gives exact values but no positions. This module scans the
//! (already known to be valid) YAML text once and records, for every node
//! path such as `items[2].schedule`, where its key and its value start. It
//! understands block mappings and sequences, flow collections, quoted and
//! plain scalars, block scalars, comments, anchors and tags. It never
//! decides values: a path it cannot find falls back to its nearest ancestor.

use std::collections::BTreeMap;

/// One step in a node path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// A node path from the document root.
pub(crate) type NodePath = Vec<Seg>;

/// A 1-based line/column position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

#[derive(Debug, Clone, Copy, Default)]
struct Span {
    key: Option<Pos>,
    value: Option<Pos>,
}

/// Positions of the nodes of one document.
#[derive(Debug, Clone, Default)]
pub(crate) struct Positions {
    map: BTreeMap<NodePath, Span>,
}

impl Positions {
    /// Scans `text` and records node positions.
    pub(crate) fn scan(text: &str) -> Positions {
        let mut s = Scanner {
            chars: text.chars().collect(),
            i: 0,
            line: 1,
            col: 1,
            out: Positions::default(),
        };
        s.skip_blank();
        if s.starts_with("---") {
            s.skip_to_eol();
        }
        s.node(&Vec::new(), -1, true);
        s.out
    }

    /// Position of the value at `path`, or of its nearest known ancestor.
    pub(crate) fn value(&self, path: &[Seg]) -> Pos {
        for len in (0..=path.len()).rev() {
            if let Some(span) = self.map.get(&path[..len]) {
                if let Some(p) = span.value.or(span.key) {
                    return p;
                }
            }
        }
        Pos::default()
    }

    /// Position of the key of the mapping entry at `path` (falls back to
    /// the value position).
    pub(crate) fn key(&self, path: &[Seg]) -> Pos {
        match self.map.get(path).and_then(|s| s.key) {
            Some(p) => p,
            None => self.value(path),
        }
    }

    fn set_key(&mut self, path: &[Seg], p: Pos) {
        self.map
            .entry(path.to_vec())
            .or_default()
            .key
            .get_or_insert(p);
    }

    fn set_value(&mut self, path: &[Seg], p: Pos) {
        self.map
            .entry(path.to_vec())
            .or_default()
            .value
            .get_or_insert(p);
    }
}

struct Scanner {
    chars: Vec<char>,
    i: usize,
    line: usize,
    col: usize,
    out: Positions,
}

fn child(path: &[Seg], seg: Seg) -> NodePath {
    let mut p = path.to_vec();
    p.push(seg);
    p
}

impl Scanner {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }

    fn peek_at(&self, k: usize) -> Option<char> {
        self.chars.get(self.i + k).copied()
    }

    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.col,
        }
    }

    fn bump(&mut self) {
        if let Some(c) = self.peek() {
            self.i += 1;
            if c == '\n' {
                self.line += 1;
                self.col = 1;
            } else {
                self.col += 1;
            }
        }
    }

    fn starts_with(&self, s: &str) -> bool {
        s.chars()
            .enumerate()
            .all(|(k, c)| self.peek_at(k) == Some(c))
    }

    fn skip_to_eol(&mut self) {
        while let Some(c) = self.peek() {
            if c == '\n' {
                break;
            }
            self.bump();
        }
    }

    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.bump();
        }
    }

    /// Skips spaces, comments and line breaks.
    fn skip_blank(&mut self) {
        loop {
            match self.peek() {
                Some(' ' | '\t' | '\n' | '\r') => self.bump(),
                Some('#') => self.skip_to_eol(),
                _ => break,
            }
        }
    }

    /// True if only spaces or a comment remain on this line.
    fn rest_of_line_empty(&self) -> bool {
        let mut k = self.i;
        while let Some(&c) = self.chars.get(k) {
            match c {
                ' ' | '\t' | '\r' => k += 1,
                '#' | '\n' => return true,
                _ => return false,
            }
        }
        true
    }

    fn is_blank_at(&self, k: usize) -> bool {
        matches!(self.peek_at(k), None | Some(' ' | '\t' | '\n' | '\r'))
    }

    fn skip_properties(&mut self) {
        while matches!(self.peek(), Some('&' | '!')) {
            while !self.is_blank_at(0) {
                self.bump();
            }
            self.skip_spaces();
            if self.rest_of_line_empty() {
                self.skip_blank();
            }
        }
    }

    /// Parses one node whose content must start in a column greater than
    /// `parent` (or equal, for a block sequence that is a mapping value).
    fn node(&mut self, path: &[Seg], parent: isize, seq_at_parent: bool) {
        self.skip_blank();
        let Some(_) = self.peek() else { return };
        let col = self.col as isize;
        if col < parent || (col == parent && !(seq_at_parent && self.is_seq_entry())) {
            return;
        }
        self.out.set_value(path, self.pos());
        self.skip_properties();
        let col = self.col as isize;
        match self.peek() {
            Some('-') if self.is_seq_entry() => self.block_seq(path, col),
            Some('{' | '[') => self.flow(path),
            Some('|' | '>') => self.block_scalar(parent),
            Some('*') => self.skip_to_eol(),
            Some(_) => {
                if self.key_ahead() {
                    self.block_map(path, col);
                } else {
                    self.scalar_block_context(parent);
                }
            }
            None => {}
        }
    }

    fn is_seq_entry(&self) -> bool {
        self.peek() == Some('-') && self.is_blank_at(1)
    }

    /// Whether a `key:` starts at the cursor on this line.
    fn key_ahead(&self) -> bool {
        let mut k = self.i;
        match self.chars.get(k) {
            Some(&q @ ('"' | '\'')) => {
                k += 1;
                while let Some(&c) = self.chars.get(k) {
                    if c == '\\' && q == '"' {
                        k += 2;
                        continue;
                    }
                    k += 1;
                    if c == q {
                        if q == '\'' && self.chars.get(k) == Some(&'\'') {
                            k += 1;
                            continue;
                        }
                        break;
                    }
                }
                while matches!(self.chars.get(k), Some(' ' | '\t')) {
                    k += 1;
                }
                self.chars.get(k) == Some(&':')
            }
            _ => {
                while let Some(&c) = self.chars.get(k) {
                    match c {
                        '\n' => return false,
                        '#' if k > 0 && matches!(self.chars.get(k - 1), Some(' ' | '\t')) => {
                            return false
                        }
                        ':' if matches!(
                            self.chars.get(k + 1),
                            None | Some(' ' | '\t' | '\n' | '\r')
                        ) =>
                        {
                            return true
                        }
                        _ => k += 1,
                    }
                }
                false
            }
        }
    }

    /// Reads a block-context key and the following colon.
    fn read_key(&mut self) -> String {
        let mut key = String::new();
        match self.peek() {
            Some(q @ ('"' | '\'')) => {
                self.bump();
                while let Some(c) = self.peek() {
                    self.bump();
                    if c == '\\' && q == '"' {
                        if let Some(e) = self.peek() {
                            key.push(e);
                            self.bump();
                        }
                        continue;
                    }
                    if c == q {
                        if q == '\'' && self.peek() == Some('\'') {
                            key.push('\'');
                            self.bump();
                            continue;
                        }
                        break;
                    }
                    key.push(c);
                }
                self.skip_spaces();
                if self.peek() == Some(':') {
                    self.bump();
                }
            }
            _ => {
                while let Some(c) = self.peek() {
                    if c == ':' && self.is_blank_at(1) {
                        self.bump();
                        break;
                    }
                    if c == '\n' {
                        break;
                    }
                    key.push(c);
                    self.bump();
                }
            }
        }
        key.trim().to_string()
    }

    fn block_map(&mut self, path: &[Seg], indent: isize) {
        loop {
            let start = self.i;
            let key_pos = self.pos();
            let key = self.read_key();
            let p = child(path, Seg::Key(key));
            self.out.set_key(&p, key_pos);
            self.skip_spaces();
            if self.rest_of_line_empty() {
                self.node(&p, indent, true);
            } else {
                self.node(&p, indent, false);
            }
            self.skip_blank();
            if self.peek().is_none() || self.col as isize != indent || self.i == start {
                return;
            }
            if !self.key_ahead() {
                return;
            }
        }
    }

    fn block_seq(&mut self, path: &[Seg], indent: isize) {
        let mut n = 0;
        loop {
            let start = self.i;
            self.bump(); // '-'
            let p = child(path, Seg::Index(n));
            self.skip_spaces();
            self.node(&p, indent, false);
            n += 1;
            self.skip_blank();
            if self.col as isize != indent || !self.is_seq_entry() || self.i == start {
                return;
            }
        }
    }

    fn block_scalar(&mut self, parent: isize) {
        self.skip_to_eol();
        loop {
            // Look at the next line's indentation.
            let mut k = self.i + 1;
            let mut ind = 1isize;
            while self.chars.get(k) == Some(&' ') {
                k += 1;
                ind += 1;
            }
            let blank = matches!(self.chars.get(k), None | Some('\n' | '\r'));
            if self.peek().is_none() || (!blank && ind <= parent) {
                return;
            }
            if self.chars.get(k).is_none() {
                return;
            }
            self.bump(); // newline
            self.skip_to_eol();
        }
    }

    fn skip_quoted(&mut self) {
        let Some(q) = self.peek() else { return };
        self.bump();
        while let Some(c) = self.peek() {
            self.bump();
            if c == '\\' && q == '"' {
                self.bump();
                continue;
            }
            if c == q {
                if q == '\'' && self.peek() == Some('\'') {
                    self.bump();
                    continue;
                }
                return;
            }
        }
    }

    fn scalar_block_context(&mut self, parent: isize) {
        if matches!(self.peek(), Some('"' | '\'')) {
            self.skip_quoted();
            return;
        }
        self.skip_to_eol();
        // Continuation lines of a multi-line plain scalar are indented more
        // than the parent node.
        loop {
            let mut k = self.i + 1;
            let mut ind = 1isize;
            while self.chars.get(k) == Some(&' ') {
                k += 1;
                ind += 1;
            }
            match self.chars.get(k) {
                None | Some('\n' | '\r' | '#') => return,
                Some(_) if ind > parent && parent >= 0 => {
                    self.bump();
                    self.skip_to_eol();
                }
                Some(_) => return,
            }
        }
    }

    fn flow(&mut self, path: &[Seg]) {
        let Some(open) = self.peek() else { return };
        let close = if open == '{' { '}' } else { ']' };
        self.bump();
        let mut n = 0;
        loop {
            self.skip_blank();
            match self.peek() {
                None => return,
                Some(c) if c == close => {
                    self.bump();
                    return;
                }
                Some(',') => {
                    self.bump();
                    continue;
                }
                _ => {}
            }
            let start = self.i;
            if open == '{' {
                let key_pos = self.pos();
                let key = self.flow_scalar_text();
                let p = child(path, Seg::Key(key));
                self.out.set_key(&p, key_pos);
                self.skip_blank();
                if self.peek() == Some(':') {
                    self.bump();
                    self.skip_blank();
                    self.flow_value(&p);
                } else {
                    self.out.set_value(&p, key_pos);
                }
            } else {
                let p = child(path, Seg::Index(n));
                n += 1;
                self.flow_value(&p);
            }
            if self.i == start {
                self.bump();
            }
        }
    }

    fn flow_value(&mut self, path: &[Seg]) {
        self.out.set_value(path, self.pos());
        self.skip_properties();
        match self.peek() {
            Some('{' | '[') => self.flow(path),
            _ => {
                self.flow_scalar_text();
            }
        }
    }

    /// Reads a scalar inside a flow collection and returns its text.
    fn flow_scalar_text(&mut self) -> String {
        if matches!(self.peek(), Some('"' | '\'')) {
            let start = self.i;
            self.skip_quoted();
            let end = self.i;
            let raw: String = self.chars[start..end].iter().collect();
            return raw.trim_matches(|c| c == '"' || c == '\'').to_string();
        }
        let mut s = String::new();
        while let Some(c) = self.peek() {
            if matches!(c, ',' | '}' | ']' | '\n') || (c == ':' && self.is_blank_at(1)) {
                break;
            }
            s.push(c);
            self.bump();
        }
        s.trim().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Seg {
        Seg::Key(s.to_string())
    }

    fn at(line: usize, column: usize) -> Pos {
        Pos { line, column }
    }

    const DOC: &str = "\
# comment
exclude_patterns: [\"*.tmp\", '**/x']
repositories:
  local:
    location: ./var/repo   # trailing
    options: { connections: \"4\", secret_key: abc }
items:
  - name: app
    paths:
      - /srv/app
    schedule: every 2h
    note: |
      some text
      more: text
    retention: {keep_last: 3,
       keep_daily: 7}
  -
    name: db
    hooks:
      before: [a, b]
";

    #[test]
    fn finds_block_and_flow_positions() {
        let p = Positions::scan(DOC);
        assert_eq!(p.key(&[k("repositories")]), at(3, 1));
        assert_eq!(
            p.value(&[k("repositories"), k("local"), k("location")]),
            at(5, 15)
        );
        assert_eq!(
            p.value(&[
                k("repositories"),
                k("local"),
                k("options"),
                k("connections")
            ]),
            at(6, 29)
        );
        assert_eq!(
            p.key(&[k("repositories"), k("local"), k("options"), k("secret_key")]),
            at(6, 34)
        );
        assert_eq!(p.value(&[k("exclude_patterns"), Seg::Index(1)]), at(2, 29));
        assert_eq!(p.value(&[k("items"), Seg::Index(0)]), at(8, 5));
        assert_eq!(
            p.key(&[k("items"), Seg::Index(0), k("schedule")]),
            at(11, 5)
        );
        assert_eq!(
            p.value(&[k("items"), Seg::Index(0), k("paths"), Seg::Index(0)]),
            at(10, 9)
        );
        assert_eq!(
            p.key(&[k("items"), Seg::Index(0), k("retention")]),
            at(15, 5)
        );
        assert_eq!(
            p.key(&[k("items"), Seg::Index(0), k("retention"), k("keep_daily")]),
            at(16, 8)
        );
        assert_eq!(p.key(&[k("items"), Seg::Index(1), k("name")]), at(18, 5));
        assert_eq!(
            p.value(&[
                k("items"),
                Seg::Index(1),
                k("hooks"),
                k("before"),
                Seg::Index(1)
            ]),
            at(20, 19)
        );
        // the block scalar's content is not mistaken for a key
        assert!(!p
            .map
            .contains_key(&vec![k("items"), Seg::Index(0), k("note"), k("more")]));
    }

    #[test]
    fn unknown_paths_fall_back_to_ancestors() {
        let p = Positions::scan(DOC);
        assert_eq!(
            p.value(&[k("items"), Seg::Index(0), k("nope"), k("deeper")]),
            at(8, 5)
        );
        assert_eq!(p.value(&[k("missing")]), at(2, 1));
        assert_eq!(Positions::scan("").value(&[k("x")]), Pos::default());
    }

    #[test]
    fn sequence_at_same_indent_as_key_and_quoted_keys() {
        let doc = "items:\n- name: a\n  \"tags\": [x]\n- name: b\n";
        let p = Positions::scan(doc);
        assert_eq!(p.value(&[k("items"), Seg::Index(1)]), at(4, 3));
        assert_eq!(p.key(&[k("items"), Seg::Index(0), k("tags")]), at(3, 3));
    }

    #[test]
    fn never_panics_on_garbage() {
        for doc in [
            "",
            "-",
            ":",
            "{",
            "[a, {b: ",
            "a: 'x",
            "a:\n  - |\n",
            "&x\n",
            "a: b: c",
        ] {
            let _ = Positions::scan(doc);
        }
    }
}
