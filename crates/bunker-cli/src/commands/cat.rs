//! `bunker cat`: print raw repository objects.

use std::io::Write;

use anyhow::{Context, Result};
use bunker_repo::cat;
use clap::{Args, ValueEnum};

use crate::cli::GlobalOpts;
use crate::exit::Status;
use crate::repo;

const LONG_ABOUT: &str = "\
Print a repository object, decrypted, for inspection and debugging: the config, the master \
key (a secret: anyone with it can read the repository), a snapshot, index, key or lock file \
(JSON), the header of a pack file (as JSON), or a blob or tree. IDs may be abbreviated to a \
unique prefix; `snapshot` also accepts `latest`.";

const EXAMPLES: &str = "\
EXAMPLES:
    bunker cat config
    bunker cat snapshot latest
    bunker cat pack 1f3e
    bunker cat blob 9a8b7c > chunk.bin";

/// The kinds of objects `cat` prints.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Config,
    Masterkey,
    Snapshot,
    Index,
    Key,
    Lock,
    Pack,
    Blob,
    Tree,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Config => "config",
            Kind::Masterkey => "masterkey",
            Kind::Snapshot => "snapshot",
            Kind::Index => "index",
            Kind::Key => "key",
            Kind::Lock => "lock",
            Kind::Pack => "pack",
            Kind::Blob => "blob",
            Kind::Tree => "tree",
        }
    }
}

/// Print raw repository objects
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct CatArgs {
    /// What to print
    pub kind: Kind,
    /// The object's id (not for config and masterkey)
    #[arg(required_if_eq_any = [
        ("kind", "snapshot"), ("kind", "index"), ("kind", "key"), ("kind", "lock"),
        ("kind", "pack"), ("kind", "blob"), ("kind", "tree")
    ])]
    pub id: Option<String>,
}

pub fn run(g: &GlobalOpts, args: CatArgs) -> Result<Status> {
    let r = match args.kind {
        Kind::Blob | Kind::Tree | Kind::Pack => repo::open_with_index(g)?,
        _ => repo::open(g)?,
    };
    let bytes = cat::cat(&r, args.kind.as_str(), args.id.as_deref())
        .with_context(|| format!("cat {}", args.kind.as_str()))?;
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes).context("writing to stdout")?;
    if bytes.last() != Some(&b'\n') && args.kind != Kind::Blob {
        out.write_all(b"\n").context("writing to stdout")?;
    }
    out.flush().context("writing to stdout")?;
    Ok(Status::Success)
}
