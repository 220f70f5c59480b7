//! YAML text → typed [`Policy`], collecting every problem with its position.

mod choice;
pub(crate) mod items;
mod mysql;
mod notify;
mod repos;

use crate::env::{substitute, SubstError};
use crate::error::{did_you_mean, Diagnostic};
use crate::locate::{NodePath, Pos, Positions, Seg};
use crate::policy::{Origin, Policy};
use crate::schedule::parse_duration;
use serde_yaml::{Mapping, Value};
use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// Parsing state: positions, environment, diagnostics.
pub(crate) struct Ctx<'a> {
    file: String,
    pos: Positions,
    env: &'a dyn Fn(&str) -> Option<String>,
    base_dir: Option<PathBuf>,
    diags: Vec<Diagnostic>,
    errored: BTreeSet<NodePath>,
}

pub(crate) fn key(path: &[Seg], k: &str) -> NodePath {
    let mut p = path.to_vec();
    p.push(Seg::Key(k.to_string()));
    p
}

pub(crate) fn index(path: &[Seg], i: usize) -> NodePath {
    let mut p = path.to_vec();
    p.push(Seg::Index(i));
    p
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Joins a relative path to `base` and removes `.`/`..` lexically.
pub(crate) fn resolve_path(base: Option<&Path>, p: &str) -> PathBuf {
    let path = Path::new(p);
    let joined = match base {
        Some(b) if path.is_relative() && !p.starts_with('~') => b.join(path),
        _ => return path.to_path_buf(),
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                let last_normal =
                    matches!(out.components().next_back(), Some(Component::Normal(_)));
                if last_normal {
                    out.pop();
                } else {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

impl<'a> Ctx<'a> {
    pub(crate) fn err_at(&mut self, p: Pos, message: String, hint: Option<String>) {
        self.diags.push(Diagnostic {
            file: self.file.clone(),
            line: p.line,
            column: p.column,
            message,
            hint,
        });
    }

    /// Reports a problem with the value at `path`.
    pub(crate) fn err(&mut self, path: &[Seg], message: String, hint: Option<String>) {
        let p = self.pos.value(path);
        self.errored.insert(path.to_vec());
        self.err_at(p, message, hint);
    }

    /// Reports a problem with the key of the entry at `path`.
    pub(crate) fn err_key(&mut self, path: &[Seg], message: String, hint: Option<String>) {
        let p = self.pos.key(path);
        self.errored.insert(path.to_vec());
        self.err_at(p, message, hint);
    }

    /// Reports a problem with the key of the entry at `path`, unless a
    /// problem at or below `path` was already reported (that one is the
    /// cause). Like the validator's reports, it does not mark
    /// `path` as errored.
    pub(crate) fn err_key_once(&mut self, path: &[Seg], message: String, hint: Option<String>) {
        if self.errored.iter().any(|e| e.starts_with(path)) {
            return;
        }
        let p = self.pos.key(path);
        self.err_at(p, message, hint);
    }

    fn wrong_type(&mut self, path: &[Seg], field: &str, wher: &str, expected: &str, v: &Value) {
        self.err(
            path,
            format!(
                "wrong type for \"{field}\" {wher}: expected {expected}, found {}",
                type_name(v)
            ),
            None,
        );
    }

    pub(crate) fn resolve(&self, p: &str) -> PathBuf {
        resolve_path(self.base_dir.as_deref(), p)
    }

    /// The mapping at `v`, or a wrong-type diagnostic. `null` counts as empty.
    pub(crate) fn mapping<'v>(
        &mut self,
        v: &'v Value,
        path: &[Seg],
        field: &str,
        wher: &str,
    ) -> Option<&'v Mapping> {
        match v {
            Value::Mapping(m) => Some(m),
            Value::Null => None,
            other => {
                self.wrong_type(path, field, wher, "a mapping", other);
                None
            }
        }
    }

    /// Reports unknown keys of `m`, suggesting close matches from `allowed`.
    pub(crate) fn check_keys(&mut self, m: &Mapping, path: &[Seg], allowed: &[&str], wher: &str) {
        for k in m.keys() {
            let name = match k {
                Value::String(s) => s.clone(),
                other => scalar_text(other).unwrap_or_else(|| type_name(other).to_string()),
            };
            if !allowed.contains(&name.as_str()) {
                let hint = did_you_mean(&name, allowed).map(|s| format!("did you mean \"{s}\"?"));
                self.err_key(
                    &key(path, &name),
                    format!("unknown key \"{name}\" {wher}"),
                    hint,
                );
            }
        }
    }

    fn subst(&mut self, s: &str, path: &[Seg], field: &str, wher: &str) -> Option<String> {
        if !s.contains('$') {
            return Some(s.to_string());
        }
        let env = self.env;
        match substitute(s, env) {
            Ok(v) => Some(v),
            Err(SubstError::Missing(name)) => {
                self.err(
                    path,
                    format!(
                        "environment variable \"{name}\" is not set (used by \"{field}\" {wher})"
                    ),
                    Some("set it, or write \"$${\" for a literal \"${\"".to_string()),
                );
                None
            }
            Err(SubstError::Malformed(text)) => {
                self.err(
                    path,
                    format!("malformed variable reference \"{text}\" in \"{field}\" {wher}"),
                    Some("use ${NAME} with letters, digits and _".to_string()),
                );
                None
            }
        }
    }

    /// A string value (numbers and booleans are taken as their text), with
    /// `${VAR}` substituted.
    pub(crate) fn string(
        &mut self,
        v: &Value,
        path: &[Seg],
        field: &str,
        wher: &str,
    ) -> Option<String> {
        match scalar_text(v) {
            Some(s) => self.subst(&s, path, field, wher),
            None => {
                self.wrong_type(path, field, wher, "a string", v);
                None
            }
        }
    }

    /// A list of strings; a single string is taken as a one-element list.
    pub(crate) fn strings(
        &mut self,
        v: &Value,
        path: &[Seg],
        field: &str,
        wher: &str,
    ) -> Vec<String> {
        match v {
            Value::Null => Vec::new(),
            Value::Sequence(seq) => {
                let mut out = Vec::new();
                for (i, e) in seq.iter().enumerate() {
                    let p = index(path, i);
                    match scalar_text(e) {
                        Some(s) => {
                            if let Some(s) = self.subst(&s, &p, field, wher) {
                                out.push(s);
                            }
                        }
                        None => self.wrong_type(&p, field, wher, "a string", e),
                    }
                }
                out
            }
            other => match scalar_text(other) {
                Some(s) => self.subst(&s, path, field, wher).into_iter().collect(),
                None => {
                    self.wrong_type(path, field, wher, "a list of strings", other);
                    Vec::new()
                }
            },
        }
    }

    /// An integer (a string is accepted when it comes from `${VAR}`).
    pub(crate) fn int(&mut self, v: &Value, path: &[Seg], field: &str, wher: &str) -> Option<i64> {
        match v {
            Value::Number(n) => match n.as_i64() {
                Some(i) => Some(i),
                None => {
                    self.err(
                        path,
                        format!("\"{field}\" {wher} must be a whole number, found {n}"),
                        None,
                    );
                    None
                }
            },
            Value::String(s) if s.contains("${") => {
                let text = self.subst(s, path, field, wher)?;
                match text.trim().parse::<i64>() {
                    Ok(i) => Some(i),
                    Err(_) => {
                        self.err(
                            path,
                            format!("\"{field}\" {wher} must be a whole number, found \"{text}\""),
                            None,
                        );
                        None
                    }
                }
            }
            other => {
                self.wrong_type(path, field, wher, "a whole number", other);
                None
            }
        }
    }

    /// A positive duration like `24h`.
    pub(crate) fn duration(
        &mut self,
        v: &Value,
        path: &[Seg],
        field: &str,
        wher: &str,
    ) -> Option<Duration> {
        let s = self.string(v, path, field, wher)?;
        match parse_duration(&s) {
            Ok(d) => Some(d),
            Err(_) => {
                self.err(
                    path,
                    format!("invalid duration \"{s}\" for \"{field}\" {wher}"),
                    Some(
                        "expected a duration like \"90m\", \"24h\", \"30d\" or \"1w\"".to_string(),
                    ),
                );
                None
            }
        }
    }
}

/// Removes every " at line N column M" from a YAML error message (the
/// position is reported separately).
fn strip_locations(msg: &str) -> String {
    let mut out = String::new();
    let mut rest = msg;
    while let Some(i) = rest.find(" at line ") {
        out.push_str(&rest[..i]);
        let after = &rest[i + " at line ".len()..];
        let skip_num = |s: &str| {
            s.trim_start_matches(|c: char| c.is_ascii_digit())
                .to_string()
        };
        let after_line = skip_num(after);
        match after_line.strip_prefix(" column ") {
            Some(col) if after_line.len() < after.len() => {
                let tail_len = skip_num(col).len();
                rest = &rest[rest.len() - tail_len..];
            }
            _ => {
                out.push_str(" at line ");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The text of a scalar (string, number, boolean), `None` otherwise.
pub(crate) fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

const TOP_KEYS: &[&str] = &[
    "exclude_patterns",
    "repositories",
    "items",
    "runbooks",
    "notifications",
    "daemon",
];

/// Parses and validates a policy document.
pub(crate) fn parse_policy(
    text: &str,
    file: &str,
    base_dir: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    source_path: Option<PathBuf>,
) -> Result<Policy, Vec<Diagnostic>> {
    let root: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let loc = e.location();
            let msg = strip_locations(&e.to_string());
            return Err(vec![Diagnostic {
                file: file.to_string(),
                line: loc.as_ref().map_or(0, |l| l.line()),
                column: loc.as_ref().map_or(0, |l| l.column()),
                message: format!("invalid YAML: {msg}"),
                hint: None,
            }]);
        }
    };
    let mut cx = Ctx {
        file: file.to_string(),
        pos: Positions::scan(text),
        env,
        base_dir: base_dir.map(Path::to_path_buf),
        diags: Vec::new(),
        errored: BTreeSet::new(),
    };
    let mut policy = Policy::default();
    let mut item_index = Vec::new();
    let root_path: NodePath = Vec::new();
    let wher = "at top level";
    match &root {
        Value::Mapping(m) => {
            cx.check_keys(m, &root_path, TOP_KEYS, wher);
            if let Some(v) = m.get("exclude_patterns") {
                policy.exclude_patterns = cx.strings(
                    v,
                    &key(&root_path, "exclude_patterns"),
                    "exclude_patterns",
                    wher,
                );
            }
            if let Some(v) = m.get("repositories") {
                policy.repositories = repos::parse_repositories(&mut cx, v);
            }
            if let Some(v) = m.get("items") {
                let (list, idx) = items::parse_items(&mut cx, v, &policy);
                policy.items = list;
                item_index = idx;
            }
            if let Some(v) = m.get("runbooks") {
                let p = key(&root_path, "runbooks");
                policy.runbooks = runbooks_at(&mut cx, v, &p);
                crate::runbook::check_items(&mut cx, &policy.runbooks, &policy.items, &p);
            }
            if let Some(v) = m.get("notifications") {
                let names: Vec<String> = policy.items.iter().map(|i| i.name.clone()).collect();
                policy.notifications = notify::parse_notifications(&mut cx, v, &names);
            }
            if let Some(v) = m.get("daemon") {
                policy.daemon = crate::daemon::parse_daemon(&mut cx, v, &policy);
            }
        }
        Value::Null => cx.err_at(
            Pos { line: 1, column: 1 },
            "the policy file is empty".to_string(),
            None,
        ),
        other => cx.err_at(
            Pos { line: 1, column: 1 },
            format!("the policy must be a mapping, found {}", type_name(other)),
            None,
        ),
    }
    policy.source_path = source_path;
    policy.origin = Origin {
        file: cx.file.clone(),
        positions: cx.pos.clone(),
        errored: cx.errored.clone(),
        item_index,
    };
    let mut diags = cx.diags;
    if root.is_mapping() {
        diags.extend(policy.check());
    }
    if diags.is_empty() {
        policy.origin.errored.clear();
        Ok(policy)
    } else {
        diags.sort_by_key(|d| (d.line == 0, d.line, d.column));
        Err(diags)
    }
}

/// `runbooks:` inline, or `runbooks: FILE` (relative to the policy file),
/// whose problems are reported at their place in that file.
fn runbooks_at(cx: &mut Ctx<'_>, v: &Value, path: &[Seg]) -> Vec<crate::runbook::Runbook> {
    let Value::String(name) = v else {
        return crate::runbook::parse_runbooks(cx, v, path);
    };
    let file = cx.resolve(name);
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) => {
            cx.err(
                path,
                format!("cannot read the runbooks file {}: {e}", file.display()),
                None,
            );
            return Vec::new();
        }
    };
    let doc: Value = match serde_yaml::from_str(&text) {
        Ok(d) => d,
        Err(e) => {
            cx.err(
                path,
                format!(
                    "the runbooks file {} is not valid YAML: {}",
                    file.display(),
                    strip_locations(&e.to_string())
                ),
                None,
            );
            return Vec::new();
        }
    };
    let mut sub = Ctx {
        file: file.display().to_string(),
        pos: Positions::scan(&text),
        env: cx.env,
        base_dir: file.parent().map(Path::to_path_buf),
        diags: Vec::new(),
        errored: BTreeSet::new(),
    };
    let (inner, at): (&Value, NodePath) = match doc.get("runbooks") {
        Some(r) => (r, key(&[], "runbooks")),
        None => (&doc, Vec::new()),
    };
    let out = crate::runbook::parse_runbooks(&mut sub, inner, &at);
    cx.diags.append(&mut sub.diags);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_relative_paths_lexically() {
        let b = Some(Path::new("examples"));
        assert_eq!(resolve_path(b, "./data"), PathBuf::from("examples/data"));
        assert_eq!(resolve_path(b, "../var/repo"), PathBuf::from("var/repo"));
        assert_eq!(resolve_path(b, "/abs"), PathBuf::from("/abs"));
        assert_eq!(resolve_path(Some(Path::new("")), "./x"), PathBuf::from("x"));
        assert_eq!(
            resolve_path(Some(Path::new("")), "../x"),
            PathBuf::from("../x")
        );
        assert_eq!(resolve_path(None, "./x"), PathBuf::from("./x"));
        assert_eq!(resolve_path(b, ".."), PathBuf::from("."));
    }

    #[test]
    fn strips_yaml_error_locations() {
        assert_eq!(
            strip_locations("did not find expected key at line 4 column 4, while parsing a block mapping at line 2 column 3"),
            "did not find expected key, while parsing a block mapping"
        );
        assert_eq!(strip_locations("odd at line x"), "odd at line x");
    }
}
