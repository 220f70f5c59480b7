//! `bunker version`: program version, build target, supported repository versions.

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use crate::cli::GlobalOpts;
use crate::exit::Status;
use crate::output;

/// Repository format versions this build reads; new repositories use the last.
pub const REPO_VERSIONS: [u32; 2] = [1, 2];

/// Print version information
#[derive(Args, Debug)]
#[command(
    long_about = "Print the bunker version, the target it was built for, the compiler, and the \
                  restic repository format versions it supports (it reads 1 and 2, creates 2).",
    after_long_help = "EXAMPLES:\n    bunker version\n    bunker version --json"
)]
pub struct VersionArgs {}

#[derive(Serialize)]
struct Version {
    message_type: &'static str,
    version: &'static str,
    target: &'static str,
    rustc: &'static str,
    repository_versions: [u32; 2],
    created_repository_version: u32,
}

fn info() -> Version {
    Version {
        message_type: "version",
        version: env!("CARGO_PKG_VERSION"),
        target: env!("BUNKER_BUILD_TARGET"),
        rustc: env!("BUNKER_BUILD_RUSTC"),
        repository_versions: REPO_VERSIONS,
        created_repository_version: REPO_VERSIONS[1],
    }
}

pub fn run(g: &GlobalOpts, _args: VersionArgs) -> Result<Status> {
    let v = info();
    if g.json {
        output::json_line(&v)?;
    } else {
        println!(
            "bunker {} ({}, built with {})",
            v.version, v.target, v.rustc
        );
        println!(
            "repository versions: reads {}, creates {}",
            v.repository_versions.map(|x| x.to_string()).join(" and "),
            v.created_repository_version
        );
    }
    Ok(Status::Success)
}
