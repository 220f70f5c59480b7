//! Where the repository password comes from.
//!
//! Order (as restic): `--password-command`, else `--password-file`, else
//! `BUNKER_PASSWORD`; otherwise a no-echo prompt when standard input is a
//! terminal, otherwise an error. Giving both a command and a file is an error.

use std::io::IsTerminal;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::cli::GlobalOpts;

pub const PASSWORD_ENV: &str = "BUNKER_PASSWORD";

const NO_PASSWORD: &str =
    "no password: set BUNKER_PASSWORD_FILE, BUNKER_PASSWORD or --password-command";

/// Strip one trailing line ending (`\n` or `\r\n`).
fn strip_newline(mut v: Vec<u8>) -> Vec<u8> {
    if v.last() == Some(&b'\n') {
        v.pop();
        if v.last() == Some(&b'\r') {
            v.pop();
        }
    }
    v
}

/// The first line of a password file.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading password file {}", path.display()))?;
    let first = match bytes.iter().position(|&b| b == b'\n') {
        Some(i) => bytes[..=i].to_vec(),
        None => bytes,
    };
    non_empty(
        strip_newline(first),
        &format!("password file {}", path.display()),
    )
}

/// Run `sh -c COMMAND`; its standard output minus the trailing newline.
pub fn run_command(command: &str) -> Result<Vec<u8>> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::inherit())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running password command {command:?}"))?;
    if !out.status.success() {
        bail!("password command {command:?} failed ({})", out.status);
    }
    non_empty(
        strip_newline(out.stdout),
        &format!("password command {command:?}"),
    )
}

fn non_empty(pw: Vec<u8>, source: &str) -> Result<Vec<u8>> {
    if pw.is_empty() {
        bail!("{source} gave an empty password");
    }
    Ok(pw)
}

/// The password from flags or environment, without prompting.
fn configured(g: &GlobalOpts, env: Option<Vec<u8>>) -> Result<Option<Vec<u8>>> {
    match (&g.password_command, &g.password_file) {
        (Some(_), Some(_)) => {
            bail!("--password-command and --password-file are mutually exclusive")
        }
        (Some(cmd), None) => Ok(Some(run_command(cmd)?)),
        (None, Some(file)) => Ok(Some(read_file(file)?)),
        (None, None) => match env {
            Some(pw) if pw.is_empty() => bail!(
                "{PASSWORD_ENV} is set but empty: an empty password is not allowed; set it to the repository password, or unset it and use BUNKER_PASSWORD_FILE or --password-command"
            ),
            env => Ok(env),
        },
    }
}

fn env_password() -> Option<Vec<u8>> {
    std::env::var_os(PASSWORD_ENV).map(|v| v.as_bytes().to_vec())
}

fn prompt(text: &str) -> Result<Vec<u8>> {
    let pw = rpassword::prompt_password(text).context("reading password from the terminal")?;
    non_empty(pw.into_bytes(), "the terminal")
}

fn prompt_twice(what: &str) -> Result<Vec<u8>> {
    let first = prompt(&format!("enter {what}: "))?;
    let second = prompt(&format!("enter {what} again: "))?;
    if first != second {
        bail!("passwords do not match");
    }
    Ok(first)
}

/// The password to open an existing repository.
pub fn for_open(g: &GlobalOpts) -> Result<Vec<u8>> {
    if let Some(pw) = configured(g, env_password())? {
        return Ok(pw);
    }
    if std::io::stdin().is_terminal() {
        return prompt("enter password for repository: ");
    }
    bail!(NO_PASSWORD)
}

/// The password for a new repository (asked twice on a terminal).
pub fn for_init(g: &GlobalOpts) -> Result<Vec<u8>> {
    if let Some(pw) = configured(g, env_password())? {
        return Ok(pw);
    }
    if std::io::stdin().is_terminal() {
        return prompt_twice("password for new repository");
    }
    bail!(NO_PASSWORD)
}

/// A new password for `key add` / `key passwd`.
pub fn new_password(file: Option<&Path>) -> Result<Vec<u8>> {
    if let Some(f) = file {
        return read_file(f);
    }
    if std::io::stdin().is_terminal() {
        return prompt_twice("new password");
    }
    bail!("no new password: use --new-password-file")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> GlobalOpts {
        GlobalOpts {
            repo: None,
            password_file: None,
            password_command: None,
            json: false,
            quiet: false,
            verbose: 0,
            no_progress: false,
            compression: None,
            pack_size: None,
            cache_dir: None,
            no_cache: false,
            no_lock: false,
            options: vec![],
        }
    }

    #[test]
    fn newline_stripping() {
        assert_eq!(strip_newline(b"pw\n".to_vec()), b"pw");
        assert_eq!(strip_newline(b"pw\r\n".to_vec()), b"pw");
        assert_eq!(strip_newline(b"pw".to_vec()), b"pw");
        assert_eq!(strip_newline(b"pw\n\n".to_vec()), b"pw\n");
    }

    #[test]
    fn file_uses_first_line_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("pw");
        std::fs::write(&f, b"s3cret \n second line\n").expect("write");
        assert_eq!(read_file(&f).expect("read"), b"s3cret ");
        std::fs::write(&f, b"\n").expect("write");
        assert!(read_file(&f).is_err());
        assert!(read_file(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn command_output_without_trailing_newline() {
        assert_eq!(run_command("printf 'a b\\n'").expect("run"), b"a b");
        let err = run_command("exit 3").expect_err("fails");
        assert!(err.to_string().contains("failed"), "{err}");
        assert!(run_command("true").is_err(), "empty output is an error");
    }

    #[test]
    fn precedence_command_then_file_then_env() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("pw");
        std::fs::write(&f, b"fromfile\n").expect("write");
        let mut g = opts();
        assert_eq!(
            configured(&g, Some(b"fromenv".to_vec())).expect("ok"),
            Some(b"fromenv".to_vec())
        );
        let e = configured(&g, Some(Vec::new())).expect_err("empty env");
        assert!(
            e.to_string().contains("BUNKER_PASSWORD is set but empty"),
            "{e}"
        );
        assert_eq!(configured(&g, None).expect("ok"), None);
        g.password_file = Some(f);
        assert_eq!(
            configured(&g, Some(b"fromenv".to_vec())).expect("ok"),
            Some(b"fromfile".to_vec())
        );
        g.password_command = Some("echo cmd".into());
        assert!(configured(&g, None).is_err(), "file and command together");
        g.password_file = None;
        assert_eq!(
            configured(&g, Some(b"fromenv".to_vec())).expect("ok"),
            Some(b"cmd".to_vec())
        );
    }
}
