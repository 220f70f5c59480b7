//! `bunker key list|add|remove|passwd`: manage the key files (passwords).

use std::path::PathBuf;

use anyhow::{Context, Result};
use bunker_format::keyfile::KdfParams;
use bunker_repo::keys;
use clap::{Args, Subcommand};
use serde::Serialize;

use crate::cli::GlobalOpts;
use crate::exit::Status;
use crate::output::{self, Table};
use crate::{password, repo};

const LONG_ABOUT: &str = "\
Manage the keys of a repository. Every key is a file in keys/ that encrypts the same master \
key with a different password, so any key's password opens the repository.

`list` shows all keys (the one used now is marked with *); `add` adds a key for a new \
password; `remove ID` removes a key (not the one in use); `passwd` replaces the key in use \
by one for a new password. The new password is read from --new-password-file, or asked \
for twice on the terminal.";

const EXAMPLES: &str = "\
EXAMPLES:
    bunker key list
    bunker key add --new-password-file ~/new-pw --user alice --host laptop
    bunker key remove 3f2a9c
    bunker key passwd --new-password-file ~/new-pw";

/// Manage keys (passwords)
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub action: KeyAction,
}

#[derive(Subcommand, Debug)]
pub enum KeyAction {
    /// List keys
    List,
    /// Add a key for a new password
    Add {
        /// Read the new password from the first line of FILE
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
        /// Host name recorded in the key (default: this host)
        #[arg(long)]
        host: Option<String>,
        /// User name recorded in the key (default: the current user)
        #[arg(long)]
        user: Option<String>,
    },
    /// Remove a key (by a unique prefix of its id)
    Remove {
        /// Key id or unique prefix
        id: String,
    },
    /// Change the password of the key in use
    Passwd {
        /// Read the new password from the first line of FILE
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
    },
}

#[derive(Serialize)]
struct KeyChange<'a> {
    message_type: &'static str,
    action: &'static str,
    id: &'a str,
}

/// One key in `key list --json`, exactly as restic prints it: the short id,
/// `userName`/`hostName`, and the creation time as local
/// `YYYY-MM-DD HH:MM:SS`.
#[derive(Serialize)]
struct KeyJson<'a> {
    current: bool,
    id: &'a str,
    #[serde(rename = "userName")]
    user_name: &'a str,
    #[serde(rename = "hostName")]
    host_name: &'a str,
    created: String,
}

fn current_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_default()
}

/// A key's creation time in the local zone (as stored when it does not parse).
fn created(raw: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(raw)
        .map(|t| output::local_time(&t))
        .unwrap_or_else(|_| raw.to_string())
}

fn report(g: &GlobalOpts, action: &'static str, id: &str, human: String) -> Result<()> {
    if g.json {
        output::json_line(&KeyChange {
            message_type: "key",
            action,
            id,
        })
    } else {
        if !g.quiet {
            println!("{human}");
        }
        Ok(())
    }
}

pub fn run(g: &GlobalOpts, args: KeyArgs) -> Result<Status> {
    let r = repo::open(g)?;
    match args.action {
        KeyAction::List => {
            let _lock = repo::lock_read(&r)?;
            let list = keys::list(&r).context("listing keys")?;
            if g.json {
                let shown: Vec<KeyJson> = list
                    .iter()
                    .map(|k| KeyJson {
                        current: k.current,
                        id: k.id.get(..8).unwrap_or(&k.id),
                        user_name: &k.username,
                        host_name: &k.hostname,
                        created: created(&k.created),
                    })
                    .collect();
                output::json_line(&shown)?;
            } else {
                let mut t = Table::new(&[" ID", "User", "Host", "Created"]);
                for k in &list {
                    let mark = if k.current { "*" } else { " " };
                    let short = k.id.get(..8).unwrap_or(&k.id);
                    t.row(vec![
                        vec![format!("{mark}{short}")],
                        vec![k.username.clone()],
                        vec![k.hostname.clone()],
                        vec![created(&k.created)],
                    ]);
                }
                print!("{}", t.render());
            }
        }
        KeyAction::Add {
            new_password_file,
            host,
            user,
        } => {
            let _lock = repo::lock(&r, false)?;
            let pw = password::new_password(new_password_file.as_deref())?;
            let host =
                host.unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned());
            let user = user.unwrap_or_else(current_user);
            let id =
                keys::add(&r, &pw, KdfParams::from_env(), &user, &host).context("adding key")?;
            report(
                g,
                "added",
                &id.to_string(),
                format!("saved new key as {id}"),
            )?;
        }
        KeyAction::Remove { id } => {
            let _lock = repo::lock(&r, true)?;
            let removed = keys::remove(&r, &id).with_context(|| format!("removing key {id}"))?;
            report(g, "removed", &removed, format!("removed key {removed}"))?;
        }
        KeyAction::Passwd { new_password_file } => {
            let _lock = repo::lock(&r, true)?;
            let pw = password::new_password(new_password_file.as_deref())?;
            let id = keys::passwd(&r, &pw, KdfParams::from_env()).context("changing password")?;
            report(
                g,
                "changed",
                &id.to_string(),
                format!("saved new key as {id}; the old key was removed"),
            )?;
        }
    }
    Ok(Status::Success)
}
