//! Parsing tests on whole documents.

use super::*;
use bunker_repo::retention;
use std::path::PathBuf;
use std::time::Duration;

const FULL: &str = r#"
exclude_patterns: ["*.tmp", "**/node_modules"]
repositories:
  local:
    location: ./var/repo
    password_file: ./secrets/pw
    options: { connections: "4", s3_secret_key: "${SECRET}" }
    role: primary
    fallbacks: [local2]
  local2:
    location: s3:https://s3.example.invalid/bucket
    password: "hunter2-${SECRET}"
    role: offsite
items:
  - name: app-files
    kind: files
    paths: [/srv/app]
    excludes: ["*.log"]
    schedule: "every 2h"
    retention: { keep_last: 35, keep_hourly: 0, keep_daily: 7, keep_weekly: 8, keep_monthly: 12, keep_yearly: 2, keep_within: 30d, retention_days: 365 }
    priority: critical
    rpo: 24h
    targets: [local]
    tags: [web]
    hooks: { before: ["pg_isready"], after: [echo done], on_failure: [alert], timeout: 5m }
  - name: db
    kind: postgres
    postgres: { host: db.internal, port: 5432, user: backup, mode: physical }
    schedule: { every: 6h }
    retention:
      keep_daily: unlimited
  - name: cfg
    kind: sqlite
    sqlite: { path: ./state.db }
    schedule: "0 3 * * *"
"#;

fn env(name: &str) -> Option<String> {
    (name == "SECRET").then(|| "s3cr3t".to_string())
}

fn parse(text: &str) -> Result<Policy, PolicyError> {
    Policy::parse_with(text, "bunker.yaml", None, &env)
}

#[test]
fn parses_the_full_example() {
    let p = parse(FULL).expect("valid policy");
    assert_eq!(p.repositories.len(), 2);
    let local = &p.repositories["local"];
    assert_eq!(local.location, "./var/repo");
    assert_eq!(
        local.password,
        PasswordSource::File(PathBuf::from("./secrets/pw"))
    );
    assert_eq!(local.options["connections"], "4");
    assert_eq!(local.options["s3_secret_key"], "s3cr3t");
    assert_eq!(local.fallbacks, vec!["local2".to_string()]);
    assert_eq!(p.repositories["local2"].role, Role::Offsite);
    assert_eq!(
        p.repositories["local2"].password,
        PasswordSource::Plain(Secret::new("hunter2-s3cr3t"))
    );

    let app = p.item("app-files").expect("item");
    assert_eq!(app.kind(), ItemKind::Files);
    assert_eq!(
        app.files().expect("files").excludes,
        vec!["*.log", "*.tmp", "**/node_modules"]
    );
    assert_eq!(
        app.schedule,
        Some(Schedule::Every(Duration::from_secs(7200)))
    );
    assert_eq!(app.priority, Priority::Critical);
    assert_eq!(app.rpo, Some(Duration::from_secs(24 * 3600)));
    assert_eq!(app.hooks.timeout, Some(Duration::from_secs(300)));
    assert_eq!(app.hooks.after, vec!["echo done".to_string()]);
    assert_eq!(app.tag(), "bunker:item=app-files");
    assert_eq!(
        app.snapshot_tags(),
        vec!["bunker:item=app-files".to_string(), "web".to_string()]
    );
    let r = app.retention.as_ref().expect("retention");
    assert_eq!((r.keep_last, r.keep_daily, r.keep_yearly), (35, 7, 2));
    // retention_days 365 is longer than keep_within 30d and wins
    assert_eq!(
        r.keep_policy().within,
        Some(retention::KeepDuration::days(365))
    );

    let db = p.item("db").expect("item");
    let pg = db.postgres().expect("postgres settings");
    assert_eq!((pg.port, pg.mode), (Some(5432), PostgresMode::Physical));
    assert_eq!(
        db.retention.as_ref().map(|r| r.keep_daily),
        Some(retention::UNLIMITED)
    );
    // targets default to all primary repositories
    assert_eq!(db.targets, vec!["local".to_string()]);
    assert!(db.files().is_none());
    let cfg = p.item("cfg").expect("item");
    assert!(matches!(cfg.schedule, Some(Schedule::Cron(_))));
    assert_eq!(
        match &cfg.source {
            Source::Sqlite(s) => Some(s.path.clone()),
            _ => None,
        },
        Some(PathBuf::from("./state.db"))
    );

    let order: Vec<&str> = p
        .items_by_priority()
        .iter()
        .map(|i| i.name.as_str())
        .collect();
    assert_eq!(order, vec!["app-files", "db", "cfg"]);
    assert!(p.validate().is_ok());
}

#[test]
fn secrets_are_redacted() {
    let p = parse(FULL).expect("valid policy");
    let debug = format!("{p:?}");
    let display = p.to_string();
    for text in [&debug, &display] {
        assert!(!text.contains("s3cr3t"), "secret leaked: {text}");
        assert!(!text.contains("hunter2"), "password leaked: {text}");
    }
    assert!(debug.contains("connections"));
    assert!(display.contains("-o connections=4"));
    assert!(display.contains("-o s3_secret_key=***"));
    assert_eq!(format!("{}", Secret::new("x")), "***");
    assert!(is_secret_key("AccessKeyId") && is_secret_key("api_TOKEN") && !is_secret_key("region"));
}

#[test]
fn load_resolves_paths_against_the_policy_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sub = dir.path().join("conf");
    std::fs::create_dir(&sub).expect("mkdir");
    let file = sub.join("bunker.yaml");
    std::fs::write(
        &file,
        "repositories:\n  r:\n    location: ../repo\n    password_file: ./pw\nitems:\n  - name: a\n    paths: [./data, /abs]\n",
    )
    .expect("write");
    std::fs::write(sub.join("pw"), "pass\nignored\n").expect("write");
    let p = Policy::load(&file).expect("valid");
    assert_eq!(
        p.repositories["r"].location,
        dir.path().join("repo").to_string_lossy()
    );
    assert_eq!(
        p.repositories["r"].local_path(),
        Some(dir.path().join("repo"))
    );
    assert_eq!(
        p.items[0].files().expect("files").paths,
        vec![sub.join("data"), PathBuf::from("/abs")]
    );
    let pw = p.repositories["r"]
        .password
        .resolve()
        .expect("password file readable");
    assert_eq!(pw.expose(), "pass");
    assert_eq!(p.source_path.as_deref(), Some(file.as_path()));

    let missing = Policy::load(dir.path().join("nope.yaml"));
    assert!(matches!(missing, Err(PolicyError::Io { .. })));
}

#[test]
fn dollar_escape_and_numbers_from_env() {
    let text = "repositories:\n  r: { location: /r, password_env: PW }\nitems:\n  - name: a\n    paths: [\"/x/$${HOME}\"]\n    retention: { keep_last: \"${N}\" }\n";
    let env = |n: &str| (n == "N").then(|| "3".to_string());
    let p = Policy::parse_with(text, "b.yaml", None, &env).expect("valid");
    assert_eq!(
        p.items[0].files().expect("files").paths,
        vec![PathBuf::from("/x/${HOME}")]
    );
    assert_eq!(p.items[0].retention.as_ref().map(|r| r.keep_last), Some(3));
}

#[test]
fn every_problem_is_listed_in_position_order() {
    let text = "repositories:\n  r: { location: /r, password_env: PW, colour: red }\nitems:\n  - name: a\n    paths: [/x]\n    rpo: soon\n    priority: urgent\n  - name: a\n    paths: [/y]\n";
    let err = parse(text).expect_err("invalid");
    let lines: Vec<String> = err.diagnostics().iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        vec![
            "bunker.yaml:2:40: unknown key \"colour\" in repository \"r\"",
            "bunker.yaml:6:10: invalid duration \"soon\" for \"rpo\" in item \"a\" (expected a duration like \"90m\", \"24h\", \"30d\" or \"1w\")",
            "bunker.yaml:7:15: invalid priority \"urgent\" in item \"a\" (expected \"critical\", \"important\" or \"low\")",
            "bunker.yaml:8:11: duplicate item name \"a\" (first defined at line 4)",
        ]
    );
    assert!(!err.is_retryable());
    assert_eq!(err.to_string(), lines.join("\n"));
}

#[test]
fn validate_works_on_policies_built_in_code() {
    let mut p = parse(FULL).expect("valid");
    p.items[0].targets.push("nowhere".into());
    let mut repo = p.repositories["local"].clone();
    repo.name = "x".into();
    repo.fallbacks = vec!["x".into()];
    p.repositories.insert("x".into(), repo);
    let err = p.validate().expect_err("invalid");
    let msgs: Vec<&str> = err
        .diagnostics()
        .iter()
        .map(|d| d.message.as_str())
        .collect();
    assert!(
        msgs.contains(&"unknown target \"nowhere\" in item \"app-files\""),
        "{msgs:?}"
    );
    assert!(msgs.contains(&"fallback cycle: x -> x"), "{msgs:?}");

    let empty = Policy::default();
    let err = empty.validate().expect_err("no repositories");
    assert_eq!(
        err.to_string(),
        "<policy>: no repositories defined (every policy needs at least one repository)"
    );
}

#[test]
fn syntax_errors_have_positions() {
    let err = parse("repositories:\n  r: [a, b\nitems: []\n").expect_err("bad yaml");
    let d = &err.diagnostics()[0];
    assert!(d.message.starts_with("invalid YAML: "), "{d}");
    assert!(d.line >= 2, "{d}");
    let err = parse("- a\n- b\n").expect_err("not a mapping");
    assert_eq!(
        err.to_string(),
        "bunker.yaml:1:1: the policy must be a mapping, found a list"
    );
}

#[test]
fn postgres_pitr_and_full_on_start() {
    let text = "repositories:\n  r: { location: /r, password_env: PW }\nitems:\n  - name: db\n    kind: postgres\n    postgres: { mode: physical, pitr: 7d, full_on_start: false, timeout: 6h }\n    schedule: \"@daily\"\n    retention: { keep_within_daily: 35d }\n  - name: db2\n    kind: postgres\n    postgres: { mode: physical }\n";
    let p = parse(text).expect("valid");
    let pg = p.items[0].postgres().expect("postgres");
    assert_eq!(pg.pitr, Some(Duration::from_secs(7 * 86400)));
    assert!(!pg.full_on_start);
    assert_eq!(pg.timeout, Some(Duration::from_secs(6 * 3600)));
    let pg2 = p.items[1].postgres().expect("postgres");
    assert_eq!(pg2.pitr, None);
    assert_eq!(pg2.timeout, None, "no time limit by default");
    assert!(pg2.full_on_start, "full_on_start defaults to true");

    let bad = "repositories:\n  r: { location: /r, password_env: PW }\nitems:\n  - name: a\n    kind: postgres\n    postgres: { mode: logical, pitr: 7d }\n    retention: { keep_last: 1 }\n  - name: b\n    kind: postgres\n    postgres: { mode: physical, pitr: 7d, full_on_start: maybe }\n  - name: c\n    kind: postgres\n    postgres: { mode: physical, pitr: soon, timeout: 0s }\n";
    let err = parse(bad).expect_err("invalid");
    let lines: Vec<String> = err.diagnostics().iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        vec![
            "bunker.yaml:6:32: \"pitr\" in item \"a\" needs \"mode: physical\" (point-in-time recovery is made of base backups and archived WAL)",
            "bunker.yaml:10:33: \"pitr\" in item \"b\" needs a \"retention\" for the base backups kept beyond the window (e.g. \"retention: { keep_daily: 35 }\", or \"keep_last: 1\" to keep only the window)",
            "bunker.yaml:10:58: wrong type for \"full_on_start\" in postgres settings of item \"b\": expected true or false, found a string",
            "bunker.yaml:13:39: invalid duration \"soon\" for \"pitr\" in postgres settings of item \"c\" (expected a duration like \"90m\", \"24h\", \"30d\" or \"1w\")",
            "bunker.yaml:13:54: invalid duration \"0s\" for \"timeout\" in postgres settings of item \"c\" (expected a duration like \"90m\", \"24h\", \"30d\" or \"1w\")",
        ],
    );
}

#[test]
fn kind_and_section_mismatches() {
    let text = "repositories:\n  r: { location: /r, password_env: PW }\nitems:\n  - name: a\n    kind: postgres\n    paths: [/x]\n    postgres: { host: h }\n    sqlite: { path: ./s.db }\n  - name: b\n    paths: [/y]\n    command: { command: \"echo hi\" }\n    targets: [nowhere]\n  - name: c\n    kind: command\n  - name: d\n    kind: postgres\n    targets: [r]\n  - name: e\n    kind: sqlite\n    sqlite: { path: [x] }\n  - name: f\n    kind: sqlite\n    command: { stdin_filename: out }\n";
    let err = parse(text).expect_err("invalid");
    let lines: Vec<String> = err.diagnostics().iter().map(ToString::to_string).collect();
    // Items whose source cannot be built (c, d, e, f) are dropped after
    // their diagnostics; a and b keep theirs and are still cross-checked.
    assert_eq!(
        lines,
        vec![
            "bunker.yaml:6:5: \"paths\" in item \"a\" only applies to files items",
            "bunker.yaml:8:5: \"sqlite\" settings in item \"a\" of kind postgres (set \"kind: sqlite\" or remove them)",
            "bunker.yaml:11:5: \"command\" settings in item \"b\" of kind files (set \"kind: command\" or remove them)",
            "bunker.yaml:12:15: unknown target \"nowhere\" in item \"b\" (known repositories: r)",
            "bunker.yaml:13:5: item \"c\" of kind command needs a \"command\" section",
            "bunker.yaml:15:5: item \"d\" of kind postgres needs a \"postgres\" section",
            "bunker.yaml:20:21: wrong type for \"path\" in sqlite settings of item \"e\": expected a string, found a list",
            "bunker.yaml:21:5: item \"f\" of kind sqlite needs a \"sqlite\" section",
            "bunker.yaml:23:5: \"command\" is required in command settings of item \"f\"",
        ]
    );
}

#[test]
fn items_carry_their_source() {
    let text = "exclude_patterns: [\"*.tmp\"]\nrepositories:\n  r: { location: /r, password_env: PW }\nitems:\n  - name: f\n    paths: [/f]\n  - name: pg\n    kind: postgres\n    postgres: { mode: physical }\n  - name: lg\n    kind: postgres\n    postgres: { database: app }\n  - name: cmd\n    kind: command\n    command: { command: \"echo hi\" }\n";
    let p = parse(text).expect("valid");
    let kinds: Vec<ItemKind> = p.items.iter().map(Item::kind).collect();
    assert_eq!(
        kinds,
        [
            ItemKind::Files,
            ItemKind::Postgres,
            ItemKind::Postgres,
            ItemKind::Command
        ]
    );

    let f = &p.items[0];
    assert_eq!(
        f.files(),
        Some(&FilesSource {
            paths: vec![PathBuf::from("/f")],
            excludes: vec!["*.tmp".to_string()],
        })
    );
    assert!(f.postgres().is_none() && f.physical().is_none());

    let pg = &p.items[1];
    assert!(pg.files().is_none());
    assert!(pg.physical().is_some());
    assert_eq!(pg.physical(), pg.postgres());
    let lg = &p.items[2];
    assert_eq!(
        lg.postgres().map(|c| (c.mode, c.database.as_deref())),
        Some((PostgresMode::Logical, Some("app")))
    );
    assert!(lg.physical().is_none(), "logical mode is not physical");

    let cmd = &p.items[3];
    assert_eq!(cmd.source.kind(), ItemKind::Command);
    match &cmd.source {
        Source::Command(c) => {
            assert_eq!(
                (c.command.as_str(), c.stdin_filename.as_str()),
                ("echo hi", "stdin")
            );
        }
        other => panic!("not a command source: {other:?}"),
    }
    assert!(
        p.to_string().contains("  cmd (command, important) -> r\n"),
        "{p}"
    );

    // Rules a well-formed item can still break are checked by `validate`.
    let mut q = p.clone();
    q.items[0].source = Source::Files(FilesSource::default());
    if let Source::Postgres(c) = &mut q.items[2].source {
        c.pitr = Some(Duration::from_secs(3600));
    }
    if let Source::Postgres(c) = &mut q.items[1].source {
        c.pitr = Some(Duration::from_secs(3600));
    }
    let err = q.validate().expect_err("invalid");
    let msgs: Vec<&str> = err
        .diagnostics()
        .iter()
        .map(|d| d.message.as_str())
        .collect();
    assert_eq!(
        msgs,
        [
            "item \"f\" of kind files has no paths",
            "\"pitr\" in item \"pg\" needs a \"retention\" for the base backups kept beyond the window",
            "\"pitr\" in item \"lg\" needs \"mode: physical\"",
        ]
    );
}
