//! The bunker command lines a PostgreSQL server runs: `archive_command`
//! (`… pg wal-push %p`) and `restore_command` (`… pg wal-fetch %f %p`),
//! calling a bunker executable with a repository's location, its password
//! option and its `-o` options, every word shell-quoted. The one place
//! these lines are built: `pg archive-command`, `pg restore`, drills,
//! `recover --time` and runbooks all use it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use bunker_policy::{PasswordSource, RepositoryConfig};
use bunker_sources::postgres::process::shell_quote;

use crate::error::{EngineError, Result};

/// How `restore_command` finds the repository password.
#[derive(Debug, Clone)]
pub enum PasswordArg {
    /// `--password-file FILE` (made absolute).
    File(PathBuf),
    /// `--password-command COMMAND`.
    Command(String),
}

/// Who runs a command built for a policy repository (see
/// [`repository_args`]); it decides which passwords and options can be
/// written into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runner {
    /// A server the system runs (`archive_command`, drills, `recover
    /// --time`, `pg restore --item`): it has only what its configuration
    /// says, so a password from the environment, an inline one and secret
    /// options are refused.
    Server,
    /// A server a runbook restores: bunker starts it, so it inherits
    /// bunker's environment (a password from an environment variable is
    /// read with `printenv NAME`) and options are written as they are; an
    /// inline password is refused.
    Runbook,
}

/// What a command line names of a repository.
#[derive(Debug, Clone)]
pub struct RepositoryArgs {
    /// `-r LOCATION`.
    pub location: String,
    /// How the password is found.
    pub password: PasswordArg,
    /// `-o k=v` options.
    pub options: Vec<(String, String)>,
}

/// The location, password option and `-o` options of the policy
/// repository `cfg` for a command `runner` runs: a local location made
/// absolute (the server runs in its data directory).
pub fn repository_args(cfg: &RepositoryConfig, runner: Runner) -> Result<RepositoryArgs> {
    let location = match cfg.local_path() {
        Some(p) => std::path::absolute(&p)
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned(),
        None => cfg.location.clone(),
    };
    let password = match (&cfg.password, runner) {
        (PasswordSource::File(f), _) => PasswordArg::File(f.clone()),
        (PasswordSource::Command(c), _) => PasswordArg::Command(c.clone()),
        (PasswordSource::Env(v), Runner::Runbook) => PasswordArg::Command(format!("printenv {v}")),
        (PasswordSource::Env(v), Runner::Server) => {
            return Err(EngineError::Invalid(format!(
            "repository {:?} takes its password from ${v}, which the PostgreSQL server does not \
                 have: give it a password_file readable by the postgres user",
            cfg.name
        )))
        }
        (PasswordSource::Plain(_), Runner::Server) => {
            return Err(EngineError::Invalid(format!(
                "repository {:?} has its password inline; archive_command would expose it: \
                 use a password_file readable by the postgres user",
                cfg.name
            )))
        }
        (PasswordSource::Plain(_), Runner::Runbook) => {
            return Err(EngineError::Invalid(format!(
                "repository {} has an inline password, which is not written into PostgreSQL's \
                 restore_command: give it a password_file or password_command",
                cfg.name
            )))
        }
    };
    let mut options = Vec::new();
    for (k, v) in &cfg.options {
        if runner == Runner::Server && bunker_policy::is_secret_key(k) {
            return Err(EngineError::Invalid(format!(
                "repository {:?} has the secret option {k:?}; it is not written into \
                 postgresql.conf: give it to the server through the environment instead",
                cfg.name
            )));
        }
        options.push((k.clone(), v.clone()));
    }
    Ok(RepositoryArgs {
        location,
        password,
        options,
    })
}

/// `EXE -r LOCATION --password-file F|--password-command C [-o k=v]...`,
/// every word shell-quoted.
fn bunker_words(
    exe: &Path,
    location: &str,
    password: &PasswordArg,
    options: &[(String, String)],
) -> String {
    let mut words: Vec<OsString> = vec![exe.as_os_str().to_owned(), "-r".into(), location.into()];
    match password {
        PasswordArg::File(f) => {
            let abs = std::path::absolute(f).unwrap_or_else(|_| f.clone());
            words.push("--password-file".into());
            words.push(abs.into_os_string());
        }
        PasswordArg::Command(c) => {
            words.push("--password-command".into());
            words.push(c.into());
        }
    }
    for (k, v) in options {
        words.push("-o".into());
        words.push(format!("{k}={v}").into());
    }
    let words: Vec<String> = words.iter().map(shell_quote).collect();
    words.join(" ")
}

/// `restore_command` calling the bunker at `exe`: `EXE -r LOCATION
/// --password-file F [-o k=v]... pg wal-fetch %f %p`, every word
/// shell-quoted.
pub fn wal_fetch_command(
    exe: &Path,
    location: &str,
    password: &PasswordArg,
    options: &[(String, String)],
) -> String {
    let words = bunker_words(exe, location, password, options);
    format!("{words} pg wal-fetch %f %p")
}

/// `archive_command` calling the bunker at `exe`: `EXE -r LOCATION
/// --password-file F [-o k=v]... pg wal-push %p`, every word shell-quoted.
pub fn wal_push_command(
    exe: &Path,
    location: &str,
    password: &PasswordArg,
    options: &[(String, String)],
) -> String {
    let words = bunker_words(exe, location, password, options);
    format!("{words} pg wal-push %p")
}

/// `restore_command` for the policy repository `cfg` (see
/// [`repository_args`]).
pub fn repository_restore_command(
    cfg: &RepositoryConfig,
    exe: &Path,
    runner: Runner,
) -> Result<String> {
    let a = repository_args(cfg, runner)?;
    Ok(wal_fetch_command(exe, &a.location, &a.password, &a.options))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(yaml: &str) -> RepositoryConfig {
        let p = bunker_policy::Policy::from_str(
            &format!("repositories:\n  main: {{location: /srv/r, {yaml}}}\nitems: []\n"),
            "t.yaml",
        )
        .unwrap();
        p.repositories.get("main").unwrap().clone()
    }

    #[test]
    fn restore_command_quotes_every_word_and_ends_with_wal_fetch() {
        let c = wal_fetch_command(
            Path::new("/usr/bin/bunker"),
            "/srv/my repo",
            &PasswordArg::File("/etc/pw".into()),
            &[("sftp.command".into(), "ssh -p 2".into())],
        );
        assert_eq!(
            c,
            "/usr/bin/bunker -r '/srv/my repo' --password-file /etc/pw -o 'sftp.command=ssh -p 2' \
             pg wal-fetch %f %p"
        );
    }

    #[test]
    fn an_environment_password_is_read_by_printenv_only_for_a_runbook() {
        let cfg = repo("password_env: PW");
        let exe = Path::new("/b");
        assert_eq!(
            repository_restore_command(&cfg, exe, Runner::Runbook).unwrap(),
            "/b -r /srv/r --password-command 'printenv PW' pg wal-fetch %f %p"
        );
        let e = repository_restore_command(&cfg, exe, Runner::Server).unwrap_err();
        assert!(e.to_string().contains("$PW"), "{e}");
    }
}
