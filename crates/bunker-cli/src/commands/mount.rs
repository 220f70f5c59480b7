//! `bunker mount`: browse the repository as a read-only file system (FUSE).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bunker_repo::mount::{self, RepoFs};
use clap::Args;

use super::FilterArgs;
use crate::cli::GlobalOpts;
use crate::exit::Status;
use crate::repo;

const LONG_ABOUT: &str = "\
Mount the repository read-only at MOUNTPOINT (an empty directory) with FUSE, laid out as \
restic does: snapshots/<time>/, ids/<short id>/, hosts/<host>/<time>/, tags/<tag>/<time>/, \
each with a `latest` link to the newest snapshot. Files are read from the repository when \
they are read, through a cache of --cache-mib MiB. Snapshots saved while the repository is \
mounted appear within seconds. --host/--tag/--path limit which snapshots are shown.

The command keeps running until the file system is unmounted (`fusermount -u MOUNTPOINT`) \
or it receives SIGINT or SIGTERM, which unmount it. It holds a shared lock, so `prune` \
waits until it ends. Needs /dev/fuse and fusermount3 (Debian: fuse3).";

const EXAMPLES: &str = "\
EXAMPLES:
    bunker mount /mnt/backup
    cp /mnt/backup/snapshots/latest/home/alice/notes.txt ~/
    bunker mount --host db1 /mnt/db1-backups";

/// Browse snapshots as a read-only file system
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct MountArgs {
    /// Empty directory to mount the repository at
    pub mountpoint: PathBuf,
    /// Size of the cache of file contents, in MiB
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    pub cache_mib: usize,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// Set `flag` on SIGHUP (SIGINT and SIGTERM cancel the command's token).
fn watch_hangup(flag: Arc<AtomicBool>) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal handler")?;
    let mut hup = rt.block_on(async { signal(SignalKind::hangup()) })?;
    std::thread::spawn(move || {
        rt.block_on(hup.recv());
        flag.store(true, Ordering::SeqCst);
    });
    Ok(())
}

pub fn run(g: &GlobalOpts, args: MountArgs) -> Result<Status> {
    let r = repo::open(g)?;
    let _lock = repo::lock(&r, false)?;
    r.load_index().context("loading the index")?;
    let cache = args.cache_mib.saturating_mul(1 << 20);
    let filter = args.filter.filter();
    let stop = Arc::new(AtomicBool::new(false));
    watch_hangup(stop.clone())?;
    let cancel = crate::interrupt::token();
    // With auto_unmount the mount also goes away if this process is killed;
    // users other than root need `user_allow_other` for it, so fall back.
    let session = match mount::mount(
        RepoFs::new(r.clone(), filter.clone(), cache)?,
        &args.mountpoint,
        true,
    ) {
        Ok(s) => s,
        Err(e) => {
            tracing::info!("mount with auto_unmount failed ({e}); mounting without it");
            mount::mount(
                RepoFs::new(r.clone(), filter, cache)?,
                &args.mountpoint,
                false,
            )?
        }
    };
    if !g.quiet {
        eprintln!(
            "repository mounted at {}; unmount with Ctrl-C or `fusermount -u {}`",
            args.mountpoint.display(),
            args.mountpoint.display()
        );
    }
    while !stop.load(Ordering::SeqCst) && !cancel.is_cancelled() && !session.guard.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
    }
    // Dropping the session unmounts the file system.
    drop(session);
    if !g.quiet {
        eprintln!("unmounted {}", args.mountpoint.display());
    }
    // SIGTERM and SIGHUP are a requested stop (exit 0); Ctrl-C is an
    // interruption (exit 130), as for every command.
    if crate::interrupt::interrupted() && !crate::interrupt::terminated() {
        return Err(bunker_engine::EngineError::Cancelled.into());
    }
    Ok(Status::Success)
}
