//! Broken policies and the exact diagnostics they produce.

use bunker_policy::Policy;

/// (file under tests/policies, expected diagnostic lines)
const CASES: &[(&str, &[&str])] = &[
    (
        "typo_key.yaml",
        &[r#"8:5: unknown key "shedule" in item "app" (did you mean "schedule"?)"#],
    ),
    (
        "bad_duration.yaml",
        &[
            r#"8:10: invalid duration "24 hourz" for "rpo" in item "app" (expected a duration like "90m", "24h", "30d" or "1w")"#,
            r#"10:16: invalid duration "soon" for "timeout" in hooks of item "app" (expected a duration like "90m", "24h", "30d" or "1w")"#,
            r#"15:16: invalid duration "0s" for "timeout" in command settings of item "dump" (expected a duration like "90m", "24h", "30d" or "1w")"#,
            r#"20:16: invalid duration "later" for "timeout" in command settings of item "dump2" (expected a duration like "90m", "24h", "30d" or "1w")"#,
        ],
    ),
    (
        "bad_cron.yaml",
        &[
            r#"8:15: invalid cron expression "61 3 * * *" for "schedule" in item "app": Component error: Number out of bounds. (use "every <duration>", "on_change" or a cron expression like "0 3 * * *")"#,
            r#"11:15: invalid cron expression "0 3 * *" for "schedule" in item "other": expected 5 or 6 fields, found 4 (use "every <duration>", "on_change" or a cron expression like "0 3 * * *")"#,
        ],
    ),
    (
        "unknown_target.yaml",
        &[
            r#"8:22: unknown target "locl" in item "app" (did you mean "local"?)"#,
            r#"8:28: unknown target "offsite" in item "app" (known repositories: local)"#,
        ],
    ),
    (
        "duplicate_item.yaml",
        &[r#"10:11: duplicate item name "app" (first defined at line 6)"#],
    ),
    (
        "fallback_cycle.yaml",
        &[
            r#"5:16: fallback cycle: a -> b -> c -> a (a repository cannot fall back to itself, directly or indirectly)"#,
            r#"13:20: unknown fallback "d" in repository "c" (known repositories: a, b, c)"#,
        ],
    ),
    (
        "missing_paths.yaml",
        &[
            r#"6:5: item "app" of kind files has no paths (add "paths: [/some/dir]")"#,
            r#"9:5: item "dump" of kind sqlite needs a "sqlite" section"#,
        ],
    ),
    (
        "two_passwords.yaml",
        &[
            r#"5:5: repository "local" has 2 password sources (password_file, password_env); exactly one is allowed"#,
            r#"6:3: repository "remote" has no password source (set exactly one of password_file, password_env, password_command, password)"#,
        ],
    ),
    (
        "bad_priority.yaml",
        &[
            r#"8:15: invalid priority "urgent" in item "app" (expected "critical", "important" or "low")"#,
        ],
    ),
    (
        "missing_env.yaml",
        &[
            r#"3:15: environment variable "BUNKER_TEST_SURELY_UNSET_ROOT" is not set (used by "location" in repository "local") (set it, or write "$${" for a literal "${")"#,
            r#"7:28: environment variable "BUNKER_TEST_SURELY_UNSET_DIR" is not set (used by "paths" in item "app") (set it, or write "$${" for a literal "${")"#,
        ],
    ),
    (
        "negative_keep.yaml",
        &[
            r#"10:19: negative value -3 for "keep_daily" in retention of item "app" (use 0 to disable the rule or -1 ("unlimited") to keep all)"#,
            r#"11:20: invalid duration "90m" for "keep_within" in retention of item "app": unit "m" is ambiguous here; write "mo" for months (expected e.g. "30d", "2w", "6mo", "1y", "48h")"#,
        ],
    ),
    (
        "wrong_type.yaml",
        &[
            r#"7:12: wrong type for "paths" in item "app": expected a list of strings, found a mapping"#,
            r#"9:18: wrong type for "keep_last" in retention of item "app": expected a whole number, found a string"#,
            r#"10:17: wrong type for "tags" in item "app": expected a string, found a list"#,
        ],
    ),
    (
        "empty_retention.yaml",
        &[
            r#"8:5: retention of item "app" keeps nothing (set at least one keep_* rule or retention_days)"#,
        ],
    ),
    (
        "bad_item_name.yaml",
        &[
            r#"5:11: invalid role "backup" in repository "local" (expected "primary" or "offsite")"#,
            r#"7:11: invalid item name "my app" (use only letters, digits, '.', '_' and '-')"#,
            r#"9:11: invalid kind "tarball" in item "my app" (expected "files", "postgres", "mysql", "sqlite" or "command")"#,
        ],
    ),
    (
        "invalid_yaml.yaml",
        &[r#"4:4: invalid YAML: did not find expected key, while parsing a block mapping"#],
    ),
];

#[test]
fn broken_policies_report_exact_diagnostics() {
    let mut failures = Vec::new();
    for (file, expected) in CASES {
        let path = format!("tests/policies/{file}");
        let got: Vec<String> = match Policy::load(&path) {
            Ok(_) => vec!["<valid>".to_string()],
            Err(e) => e.to_string().lines().map(String::from).collect(),
        };
        let want: Vec<String> = expected.iter().map(|l| format!("{path}:{l}")).collect();
        if got != want {
            failures.push(format!(
                "{file}:\n  got:\n    {}\n  want:\n    {}",
                got.join("\n    "),
                want.join("\n    ")
            ));
        }
    }
    let mut listed: Vec<&str> = CASES.iter().map(|(f, _)| *f).collect();
    listed.sort_unstable();
    let mut on_disk: Vec<String> = std::fs::read_dir("tests/policies")
        .expect("policies dir")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    on_disk.sort();
    for f in &on_disk {
        if !listed.contains(&f.as_str()) {
            let got = match Policy::load(format!("tests/policies/{f}")) {
                Ok(_) => "<valid>".to_string(),
                Err(e) => e.to_string(),
            };
            failures.push(format!("{f} has no expectation; it reports:\n{got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(CASES.len() >= 12, "at least 12 broken policies");
}

/// The shipped examples must stay valid.
#[test]
fn examples_are_valid() {
    for name in ["quickstart", "webapp", "ml-platform", "postgres-pitr"] {
        let path = format!("../../examples/{name}.yaml");
        let policy = Policy::load(&path).unwrap_or_else(|e| panic!("{path}:\n{e}"));
        assert!(!policy.items.is_empty(), "{path} has items");
        for item in &policy.items {
            assert!(
                item.schedule.is_some(),
                "{path}: {} has a schedule",
                item.name
            );
            assert!(
                item.retention.is_some(),
                "{path}: {} has retention",
                item.name
            );
        }
    }
    let q = Policy::load("../../examples/quickstart.yaml").expect("valid");
    assert_eq!(
        q.items[0].files().expect("files item").paths,
        vec![std::path::PathBuf::from("../../examples/data")]
    );
    assert_eq!(
        q.repositories["local"].location,
        "../../var/quickstart-repo"
    );
    let pw = q.repositories["local"]
        .password
        .resolve()
        .expect("password file");
    assert_eq!(pw.expose(), "correct horse battery staple");
}
