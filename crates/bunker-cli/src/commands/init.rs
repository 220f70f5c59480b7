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
    BUNKER_PASSWORD_FILE=~/.bunker-pw bunker -r s3:https://s3.example.com/bucket/host1 init
    bunker -r s3:s3.amazonaws.com/bucket/host1 -o s3.storage_class.data=STANDARD_IA init
    bunker -r sftp:backup@nas.lan:/srv/bunker/host1 -o sftp.key=/root/.ssh/id_backup init

BACKEND OPTIONS (-o KEY=VALUE, repeatable; docs/storage.md has the full list):
    connections=N, timeout=D, retry.max_elapsed=D, index.flush_interval=D
                                      every backend (D: seconds, or 90s, 5m, 1h)
    s3.access_key_id, s3.secret_access_key, s3.region        S3 credentials and region
    s3.storage_class.data=CLASS       storage class of pack files (e.g. STANDARD_IA)
    s3.storage_class.metadata=CLASS   class of index, snapshots, keys, config, locks
    s3.storage_class=CLASS            class of every file (default: the bucket's)
        Classes: STANDARD, STANDARD_IA, ONEZONE_IA, INTELLIGENT_TIERING, GLACIER_IR,
        GLACIER, DEEP_ARCHIVE, REDUCED_REDUNDANCY (other upper-case names: warning).
        With GLACIER or DEEP_ARCHIVE for packs, restore and check --read-data need the
        packs restored from the archive first; archive classes are refused for metadata.
    sftp.key=PATH                     SFTP private key (else ssh's defaults and agent)
    sftp.known_hosts=strict|add|accept  host key policy (default strict: ~/.ssh/known_hosts)
    KEY=VALUE with opendal:SCHEME     handed to the OpenDAL service (root, bucket, endpoint...)";

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
