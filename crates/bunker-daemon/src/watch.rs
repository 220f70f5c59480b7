//! File-system changes for `on_change` items (inotify on Linux, through the
//! `notify` crate). Memory stays bounded for large trees: nothing is kept
//! per changed path — an event only tells the loop "item X changed at T"
//! (through a bounded channel; when it is full the event is dropped, which
//! at worst makes the debounced run start a little earlier). The kernel's
//! watches (one per directory) are the only per-directory cost; when the
//! system's limit (`fs.inotify.max_user_watches`) is reached the item's
//! watch fails with a logged error and the item runs by its other triggers
//! only.
//!
//! Reads (access events) are ignored, so a backup reading its own source
//! does not trigger the next one. A repository inside a watched tree would:
//! keep repositories outside the paths of `on_change` items.

use std::path::PathBuf;

use bunker_policy::{Policy, Schedule};
use chrono::Utc;
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::state::Msg;

/// The watchers of the policy's `on_change` items (dropped: stopped).
pub struct Watchers {
    _watchers: Vec<notify::RecommendedWatcher>,
}

impl Watchers {
    /// Watch the paths of every `on_change` files item of `policy`.
    pub fn new(policy: &Policy, tx: mpsc::Sender<Msg>) -> Watchers {
        let mut out = Vec::new();
        for item in &policy.items {
            if item.schedule != Some(Schedule::OnChange) {
                continue;
            }
            let Some(files) = item.files() else {
                tracing::warn!(
                    "item {}: on_change watches files; a {} item runs only when requested",
                    item.name,
                    item.kind().as_str()
                );
                continue;
            };
            let id = format!("backup:{}", item.name);
            let tx = tx.clone();
            let job = id.clone();
            let handler = move |res: notify::Result<notify::Event>| {
                if let Ok(ev) = res {
                    if matches!(ev.kind, EventKind::Access(_)) {
                        return;
                    }
                    let _ = tx.try_send(Msg::Changed(job.clone(), Utc::now()));
                }
            };
            let mut w = match notify::recommended_watcher(handler) {
                Ok(w) => w,
                Err(e) => {
                    tracing::error!("item {}: cannot watch for changes: {e}", item.name);
                    continue;
                }
            };
            let mut watching = 0;
            for p in &files.paths {
                let p: &PathBuf = p;
                match w.watch(p, RecursiveMode::Recursive) {
                    Ok(()) => watching += 1,
                    Err(e) => tracing::error!(
                        "item {}: cannot watch {} for changes: {e} (raise fs.inotify.max_user_watches for large trees)",
                        item.name,
                        p.display()
                    ),
                }
            }
            if watching > 0 {
                tracing::info!("item {}: watching {watching} paths for changes", item.name);
                out.push(w);
            }
        }
        Watchers { _watchers: out }
    }
}
