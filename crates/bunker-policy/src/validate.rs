//! Cross-reference and rule checks on a parsed [`Policy`].

use crate::error::{did_you_mean, Diagnostic};
use crate::locate::{NodePath, Seg};
use crate::model::Item;
use crate::policy::Policy;
use std::collections::{BTreeMap, BTreeSet};

fn k(s: &str) -> Seg {
    Seg::Key(s.to_string())
}

/// Whether `name` is a valid item name: `[A-Za-z0-9._-]+`.
pub fn is_valid_item_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

struct Checker<'a> {
    policy: &'a Policy,
    out: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn file(&self) -> String {
        if self.policy.origin.file.is_empty() {
            "<policy>".to_string()
        } else {
            self.policy.origin.file.clone()
        }
    }

    /// True if a problem at or below `path` was already reported.
    fn already(&self, path: &[Seg]) -> bool {
        self.policy
            .origin
            .errored
            .iter()
            .any(|e| e.starts_with(path))
    }

    fn report(&mut self, path: &[Seg], at_key: bool, message: String, hint: Option<String>) {
        if self.already(path) {
            return;
        }
        let pos = &self.policy.origin.positions;
        let p = if at_key {
            pos.key(path)
        } else {
            pos.value(path)
        };
        self.out.push(Diagnostic {
            file: self.file(),
            line: p.line,
            column: p.column,
            message,
            hint,
        });
    }

    fn item_path(&self, i: usize) -> NodePath {
        let yaml_index = self.policy.origin.item_index.get(i).copied().unwrap_or(i);
        vec![k("items"), Seg::Index(yaml_index)]
    }

    fn repo_hint(&self, name: &str) -> Option<String> {
        let names: Vec<&str> = self
            .policy
            .repositories
            .keys()
            .map(String::as_str)
            .collect();
        match did_you_mean(name, &names) {
            Some(s) => Some(format!("did you mean \"{s}\"?")),
            None if names.is_empty() => None,
            None => Some(format!("known repositories: {}", names.join(", "))),
        }
    }

    fn repositories(&mut self) {
        let p = self.policy;
        if p.repositories.is_empty() {
            self.report(
                &[k("repositories")],
                true,
                "no repositories defined".to_string(),
                Some("every policy needs at least one repository".to_string()),
            );
        }
        for (name, repo) in &p.repositories {
            let rpath = vec![k("repositories"), k(name)];
            if repo.location.is_empty() {
                let mut lp = rpath.clone();
                lp.push(k("location"));
                self.report(
                    &lp,
                    false,
                    format!("repository \"{name}\" has an empty location"),
                    None,
                );
            }
            for (i, fb) in repo.fallbacks.iter().enumerate() {
                if !p.repositories.contains_key(fb) {
                    let mut fp = rpath.clone();
                    fp.extend([k("fallbacks"), Seg::Index(i)]);
                    let hint = self.repo_hint(fb);
                    self.report(
                        &fp,
                        false,
                        format!("unknown fallback \"{fb}\" in repository \"{name}\""),
                        hint,
                    );
                }
            }
        }
        self.fallback_cycles();
    }

    fn fallback_cycles(&mut self) {
        let repos = &self.policy.repositories;
        let graph: BTreeMap<&str, Vec<&str>> = repos
            .iter()
            .map(|(n, r)| {
                let next = r
                    .fallbacks
                    .iter()
                    .map(String::as_str)
                    .filter(|f| repos.contains_key(*f))
                    .collect();
                (n.as_str(), next)
            })
            .collect();
        let mut seen_cycles: BTreeSet<Vec<&str>> = BTreeSet::new();
        for start in graph.keys() {
            // Iterative DFS keeping the current path.
            let mut stack: Vec<(&str, usize)> = vec![(start, 0)];
            let mut on_path: Vec<&str> = vec![start];
            while let Some((node, next_idx)) = stack.last().copied() {
                let succ = graph.get(node).map(Vec::as_slice).unwrap_or(&[]);
                if let Some(&s) = succ.get(next_idx) {
                    if let Some(top) = stack.last_mut() {
                        top.1 += 1;
                    }
                    if let Some(at) = on_path.iter().position(|n| *n == s) {
                        let mut cycle: Vec<&str> = on_path[at..].to_vec();
                        let min = cycle
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, n)| **n)
                            .map_or(0, |(i, _)| i);
                        cycle.rotate_left(min);
                        seen_cycles.insert(cycle);
                    } else if on_path.len() <= graph.len() {
                        stack.push((s, 0));
                        on_path.push(s);
                    }
                } else {
                    stack.pop();
                    on_path.pop();
                }
            }
        }
        for cycle in seen_cycles {
            let first = cycle[0];
            let mut shown: Vec<&str> = cycle.clone();
            shown.push(first);
            self.report(
                &[k("repositories"), k(first), k("fallbacks")],
                false,
                format!("fallback cycle: {}", shown.join(" -> ")),
                Some("a repository cannot fall back to itself, directly or indirectly".to_string()),
            );
        }
    }

    fn items(&mut self) {
        let p = self.policy;
        let mut first_seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, item) in p.items.iter().enumerate() {
            let ipath = self.item_path(i);
            let mut name_path = ipath.clone();
            name_path.push(k("name"));
            let label = format!("item \"{}\"", item.name);
            if !item.name.is_empty() && !is_valid_item_name(&item.name) {
                self.report(
                    &name_path,
                    false,
                    format!("invalid item name \"{}\"", item.name),
                    Some("use only letters, digits, '.', '_' and '-'".to_string()),
                );
            }
            if !item.name.is_empty() {
                if let Some(&first) = first_seen.get(item.name.as_str()) {
                    let mut fp = self.item_path(first);
                    fp.push(k("name"));
                    let line = p.origin.positions.value(&fp).line;
                    let hint = (line > 0).then(|| format!("first defined at line {line}"));
                    self.report(
                        &name_path,
                        false,
                        format!("duplicate item name \"{}\"", item.name),
                        hint,
                    );
                } else {
                    first_seen.insert(&item.name, i);
                }
            }

            let mut tpath = ipath.clone();
            tpath.push(k("targets"));
            if item.targets.is_empty() {
                self.report(
                    &tpath,
                    true,
                    format!("{label} has no targets"),
                    Some("list repository names under \"targets\"".to_string()),
                );
            }
            for (t, target) in item.targets.iter().enumerate() {
                if !p.repositories.contains_key(target) {
                    let mut ep = tpath.clone();
                    ep.push(Seg::Index(t));
                    let hint = self.repo_hint(target);
                    self.report(
                        &ep,
                        false,
                        format!("unknown target \"{target}\" in {label}"),
                        hint,
                    );
                }
            }

            self.kind_settings(item, &ipath, &label);

            if let Some(r) = &item.retention {
                let kp = r.keep_policy();
                if kp.is_empty() {
                    let mut rp = ipath.clone();
                    rp.push(k("retention"));
                    self.report(
                        &rp,
                        true,
                        format!("retention of {label} keeps nothing"),
                        Some("set at least one keep_* rule or retention_days".to_string()),
                    );
                }
            }
        }
    }

    /// Rules on an item's source settings. Settings of another kind and
    /// missing sections cannot be represented in an [`Item`]: the parser
    /// reports them.
    fn kind_settings(&mut self, item: &Item, ipath: &[Seg], label: &str) {
        let at = |key: &str| {
            let mut p = ipath.to_vec();
            p.push(k(key));
            p
        };
        if item.files().is_some_and(|f| f.paths.is_empty()) {
            self.report(
                &at("paths"),
                true,
                format!("{label} of kind files has no paths"),
                Some("add \"paths: [/some/dir]\"".to_string()),
            );
        }
        if let Some(pg) = item.postgres() {
            let mut pp = at("postgres");
            pp.push(k("pitr"));
            if pg.pitr.is_some() && item.physical().is_none() {
                self.report(
                    &pp,
                    true,
                    format!("\"pitr\" in {label} needs \"mode: physical\""),
                    Some("point-in-time recovery is made of base backups and archived WAL".into()),
                );
            } else if pg.pitr.is_some() && item.retention.is_none() {
                self.report(
                    &pp,
                    true,
                    format!("\"pitr\" in {label} needs a \"retention\" for the base backups kept beyond the window"),
                    Some("e.g. \"retention: { keep_daily: 35 }\", or \"keep_last: 1\" to keep only the window".into()),
                );
            }
        }
    }
}

impl Policy {
    /// All semantic problems (names, references, cycles, kinds, rules).
    pub(crate) fn check(&self) -> Vec<Diagnostic> {
        let mut c = Checker {
            policy: self,
            out: Vec::new(),
        };
        c.repositories();
        c.items();
        c.out
    }
}
