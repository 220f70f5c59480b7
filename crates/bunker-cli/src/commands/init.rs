//! `bunker init`: create a repository.

use anyhow::{Context, Result};
use bunker_format::keyfile::KdfParams;
use bunker_repo::Repository;
use clap::Args;
use serde::Serialize;

use crate::cli::GlobalOpts;
use crate::exit::Status;
use crate::{output, password, repo};

const LONG_ABOUT: &str = "\
Create a new, empty repository (format version 2) at the location given with -r/--repo \
or BUNKER_REPOSITORY, protected by one key for the given password.

The password is taken from --password-command, --password-file or BUNKER_PASSWORD; \
otherwise it is asked for twice on the terminal. Losing the password means losing the \
data: it cannot be recovered. Initialising an existing repository is an error.";

const EXAMPLES: &str = "\
EXAMPLES:
    bunker -r /srv/backup init
    BUNKER_PASSWORD_FILE=~/.bunker-pw bunker -r s3:https://s3.example.com/bucket/host1 init";

/// Create a new repository
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct InitArgs {}

#[derive(Serialize)]
struct Initialized<'a> {
    message_type: &'static str,
    id: &'a str,
    repository: &'a str,
}

pub fn run(g: &GlobalOpts, _args: InitArgs) -> Result<Status> {
    let storage = repo::storage(g)?;
    let options = repo::repo_options(g)?;
    let pw = password::for_init(g)?;
    let location = storage.location();
    let r = Repository::init(storage, &pw, options, KdfParams::from_env())
        .with_context(|| format!("creating repository at {location}"))?;
    let id = r.config().id.clone();
    if g.json {
        output::json_line(&Initialized {
            message_type: "initialized",
            id: &id,
            repository: &location,
        })?;
    } else if !g.quiet {
        println!("created bunker repository {} at {location}", short(&id));
        println!();
        println!("Please note that knowledge of your password is required to access");
        println!("the repository. Losing your password means that your data is");
        println!("irrecoverably lost.");
    }
    Ok(Status::Success)
}

fn short(id: &str) -> &str {
    id.get(..10).unwrap_or(id)
}
