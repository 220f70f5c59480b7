//! `bunker config check` on the broken policies of bunker-policy (exit 1,
//! every diagnostic) and on the shipped examples (exit 0).

mod policy_support;

use std::path::{Path, PathBuf};

use policy_support::{stdout, Ctx};

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

#[test]
fn broken_policies_print_every_diagnostic_and_exit_1() {
    let ctx = Ctx::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bunker-policy/tests/policies");
    let all = files(&dir);
    assert!(
        all.len() >= 10,
        "broken policies not found in {}",
        dir.display()
    );
    for f in all {
        let expected: Vec<String> = match bunker_policy::Policy::load(&f) {
            Ok(_) => continue, // valid under this environment
            Err(e) => e.diagnostics().iter().map(|d| d.to_string()).collect(),
        };
        assert!(!expected.is_empty());
        let out = ctx
            .bare()
            .args(["config", "check", "--config"])
            .arg(&f)
            .output()
            .expect("spawn");
        assert_eq!(out.status.code(), Some(1), "{}", f.display());
        let text = stdout(&out);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines, expected, "{}", f.display());
        for l in &lines {
            // file:line:col: message
            let name = f.file_name().expect("name").to_string_lossy().into_owned();
            assert!(l.contains(&format!("{name}:")), "{l}");
        }
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("problem"), "{err}");
    }
}

#[test]
fn examples_are_valid() {
    let ctx = Ctx::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let all = files(&dir);
    assert!(!all.is_empty());
    for f in all {
        let p = bunker_policy::Policy::load(&f).expect("example loads");
        let out = ctx
            .bare()
            .args(["config", "check"])
            .env("BUNKER_CONFIG", &f)
            .output()
            .expect("spawn");
        assert_eq!(out.status.code(), Some(0), "{}: {:?}", f.display(), out);
        assert_eq!(
            stdout(&out).trim(),
            format!(
                "policy OK: {} items, {} repositories",
                p.items.len(),
                p.repositories.len()
            )
        );
    }
    // The default file name is ./bunker.yaml.
    let out = ctx
        .bare()
        .args(["config", "check"])
        .output()
        .expect("spawn");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bunker.yaml"));
}
