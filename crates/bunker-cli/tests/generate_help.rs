//! `generate` writes completions that load in bash and manual pages for
//! every command; `--help` lists a command's own options before the global
//! ones and ends with examples.

mod common;

use std::process::Command;

use common::Env;

#[test]
fn bash_completion_loads_without_errors_and_completes_verbs() {
    let env = Env::new();
    let file = env.path("bunker.bash");
    env.bare()
        .arg("generate")
        .arg("--bash-completion")
        .arg(&file)
        .assert()
        .success();
    // Load it, then ask the completion function for verbs starting with "re".
    let script = format!(
        "set -e; source {}; COMP_WORDS=(bunker re); COMP_CWORD=1; COMP_LINE='bunker re'; \
         COMP_POINT=9; _bunker bunker re bunker; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        file.display()
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &script])
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "bash could not load the completion: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for verb in ["restore", "rewrite", "recover"] {
        assert!(
            stdout.lines().any(|l| l == verb),
            "{verb} not completed: {stdout}"
        );
    }
}

#[test]
fn zsh_and_fish_completions_and_man_pages_are_written() {
    let env = Env::new();
    let man = env.path("man");
    let out = env
        .bare()
        .args(["generate", "--zsh-completion", "-", "--fish-completion"])
        .arg(env.path("bunker.fish"))
        .arg("--man")
        .arg(&man)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("#compdef bunker"));
    let fish = std::fs::read_to_string(env.path("bunker.fish")).expect("fish file");
    assert!(fish.contains("complete -c bunker"));
    for page in [
        "bunker.1",
        "bunker-backup.1",
        "bunker-key-add.1",
        "bunker-find.1",
    ] {
        let text =
            std::fs::read_to_string(man.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page} is not a manual page");
    }
    let nothing = env.bare().arg("generate").output().expect("run");
    assert!(!nothing.status.success(), "no output chosen is an error");
}

#[test]
fn help_lists_own_options_then_global_options_then_examples() {
    let env = Env::new();
    for verb in ["backup", "find", "snapshots"] {
        let out = env.bare().args([verb, "--help"]).output().expect("run");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let pos = |s: &str| {
            text.find(s)
                .unwrap_or_else(|| panic!("{verb} --help lacks {s:?}:\n{text}"))
        };
        let (own, global, examples) = (
            pos("\nOptions:"),
            pos("\nGlobal options:"),
            pos("EXAMPLES:"),
        );
        assert!(
            own < global && global < examples,
            "{verb}: wrong order:\n{text}"
        );
        assert!(
            pos("--repo") > global,
            "{verb}: --repo is not a global option"
        );
        assert!(pos("--host") < global, "{verb}: own options come first");
    }
}
