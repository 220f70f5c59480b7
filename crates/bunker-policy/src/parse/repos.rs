//! The `repositories` section.

use super::{key, scalar_text, Ctx};
use crate::locate::{NodePath, Seg};
use crate::model::{location_scheme, PasswordSource, RepositoryConfig, Role, Secret};
use serde_yaml::Value;
use std::collections::BTreeMap;

const REPO_KEYS: &[&str] = &[
    "location",
    "password_file",
    "password_env",
    "password_command",
    "password",
    "options",
    "role",
    "fallbacks",
];

const PASSWORD_KEYS: &[&str] = &[
    "password_file",
    "password_env",
    "password_command",
    "password",
];

pub(super) fn parse_repositories(
    cx: &mut Ctx<'_>,
    v: &Value,
) -> BTreeMap<String, RepositoryConfig> {
    let path: NodePath = vec![Seg::Key("repositories".into())];
    let mut out = BTreeMap::new();
    let Some(m) = cx.mapping(v, &path, "repositories", "at top level") else {
        return out;
    };
    for (k, v) in m {
        let name = scalar_text(k).unwrap_or_default();
        if let Some(repo) = parse_repository(cx, &name, v, &key(&path, &name)) {
            out.insert(name, repo);
        }
    }
    out
}

fn parse_repository(
    cx: &mut Ctx<'_>,
    name: &str,
    v: &Value,
    path: &[Seg],
) -> Option<RepositoryConfig> {
    let wher = format!("in repository \"{name}\"");
    let Some(m) = cx.mapping(v, path, name, "in \"repositories\"") else {
        if v.is_null() {
            cx.err_key(path, format!("repository \"{name}\" has no settings"), None);
        }
        return Some(RepositoryConfig {
            name: name.to_string(),
            location: String::new(),
            password: PasswordSource::Plain(Secret::new("")),
            options: BTreeMap::new(),
            role: Role::Primary,
            fallbacks: Vec::new(),
        });
    };
    cx.check_keys(m, path, REPO_KEYS, &wher);

    let location = match m.get("location") {
        Some(v) => cx.string(v, &key(path, "location"), "location", &wher),
        None => {
            cx.err_key(
                path,
                format!("repository \"{name}\" has no \"location\""),
                None,
            );
            None
        }
    };
    let location = location.map(|l| {
        if location_scheme(&l).is_none() {
            cx.resolve(&l).to_string_lossy().into_owned()
        } else {
            l
        }
    });

    let present: Vec<&str> = PASSWORD_KEYS
        .iter()
        .copied()
        .filter(|k| m.contains_key(*k))
        .collect();
    let mut password = None;
    match present.as_slice() {
        [] => cx.err_key(
            path,
            format!("repository \"{name}\" has no password source"),
            Some(
                "set exactly one of password_file, password_env, password_command, password".into(),
            ),
        ),
        [one] => {
            let p = key(path, one);
            if let Some(v) = m.get(*one) {
                if let Some(s) = cx.string(v, &p, one, &wher) {
                    password = Some(match *one {
                        "password_file" => PasswordSource::File(cx.resolve(&s)),
                        "password_env" => PasswordSource::Env(s),
                        "password_command" => PasswordSource::Command(s),
                        _ => PasswordSource::Plain(Secret::new(s)),
                    });
                }
            }
        }
        [_, second, ..] => cx.err_key(
            &key(path, second),
            format!(
                "repository \"{name}\" has {} password sources ({}); exactly one is allowed",
                present.len(),
                present.join(", ")
            ),
            None,
        ),
    }

    let mut options = BTreeMap::new();
    if let Some(v) = m.get("options") {
        let opath = key(path, "options");
        let owher = format!("in options of repository \"{name}\"");
        if let Some(om) = cx.mapping(v, &opath, "options", &wher) {
            for (k, v) in om {
                let ok = scalar_text(k).unwrap_or_default();
                if let Some(s) = cx.string(v, &key(&opath, &ok), &ok, &owher) {
                    options.insert(ok, s);
                }
            }
        }
    }

    let role = m
        .get("role")
        .and_then(|v| {
            let choices = [("primary", Role::Primary), ("offsite", Role::Offsite)];
            cx.choice(v, &key(path, "role"), "role", &wher, &choices)
        })
        .unwrap_or(Role::Primary);

    let fallbacks = match m.get("fallbacks") {
        Some(v) => cx.strings(v, &key(path, "fallbacks"), "fallbacks", &wher),
        None => Vec::new(),
    };

    Some(RepositoryConfig {
        name: name.to_string(),
        // On error the policy is not returned; placeholders keep the name
        // known so items targeting it get no follow-up errors.
        location: location.unwrap_or_default(),
        password: password.unwrap_or_else(|| PasswordSource::Plain(Secret::new(""))),
        options,
        role,
        fallbacks,
    })
}
