//! Planning: which items are due, and why.
//!
//! Due-ness is derived from the repositories themselves — the time of each
//! target's newest snapshot of the item (tag `bunker:item=NAME`) — so no
//! separate state can drift from what is stored. The clock is passed in.

use std::fmt;

use bunker_policy::{Item, Policy};
use bunker_repo::pg::due::StartReason;
use bunker_repo::snapshots;
use bunker_repo::Repository;
use chrono::{DateTime, FixedOffset, Utc};

use crate::error::{EngineError, Result};
use crate::events::{Event, EventSink, Warning};
use crate::pool::RepoPool;
use crate::retention::item_filter;
use crate::sources::postgres;

/// Why an item runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DueReason {
    /// A target holds no snapshot of it (or its snapshots cannot be read).
    NeverRun,
    /// Its schedule fired since the newest snapshot in a target.
    ScheduleFired {
        /// The newest snapshot's time in that target.
        last: DateTime<Utc>,
    },
    /// The start-up rule of a postgres physical item (`full_on_start`).
    ServerStarted(StartReason),
    /// Asked for by name (`--item`) or `--all`.
    Requested,
}

impl fmt::Display for DueReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DueReason::NeverRun => f.write_str("no snapshot yet"),
            DueReason::ScheduleFired { .. } => f.write_str("schedule"),
            DueReason::ServerStarted(r) => write!(f, "{r}"),
            DueReason::Requested => f.write_str("requested"),
        }
    }
}

/// Which items to consider.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Selection {
    /// The items that are due (the default of `bunker run`).
    #[default]
    Due,
    /// Every item, due or not.
    All,
    /// These items, due or not.
    Items(Vec<String>),
}

/// An item and whether (and why) it runs now.
#[derive(Debug, Clone)]
pub struct Planned<'p> {
    /// The item.
    pub item: &'p Item,
    /// `None`: not due.
    pub reason: Option<DueReason>,
}

/// The items of `policy` in priority order (critical first, then file
/// order) with their due reasons at `now`; items not selected are left out.
/// Unknown names in `selection` are an error before anything is opened.
pub fn plan<'p>(
    policy: &'p Policy,
    pool: &mut RepoPool<'_>,
    selection: &Selection,
    now: DateTime<Utc>,
    sink: &dyn EventSink,
) -> Result<Vec<Planned<'p>>> {
    if let Selection::Items(names) = selection {
        for name in names {
            if policy.item(name).is_none() {
                let known: Vec<&str> = policy.items.iter().map(|i| i.name.as_str()).collect();
                return Err(EngineError::Invalid(format!(
                    "no item {name:?} in the policy (items: {})",
                    known.join(", ")
                )));
            }
        }
    }
    let mut out = Vec::new();
    for item in policy.items_by_priority() {
        let reason = match selection {
            Selection::Items(names) if !names.contains(&item.name) => continue,
            Selection::Items(_) | Selection::All => Some(DueReason::Requested),
            Selection::Due => due_reason(pool, item, now, sink),
        };
        out.push(Planned { item, reason });
    }
    Ok(out)
}

/// The time and short id of the newest snapshot of `item` in `repo`.
pub fn newest_snapshot(
    repo: &Repository,
    item: &Item,
) -> Result<Option<(DateTime<FixedOffset>, String)>> {
    Ok(snapshots::filtered(repo, &item_filter(item), None)?
        .pop()
        .map(|e| (e.snapshot.time, e.id.short())))
}

/// Why `item` is due at `now`, if it is: it has a schedule, and some
/// target's newest snapshot of the item is old enough (or missing, or
/// unreadable); or, for a postgres physical item with `full_on_start`, the
/// server restarted or changed timeline or system since the item's newest
/// base backup there.
pub fn due_reason(
    pool: &mut RepoPool<'_>,
    item: &Item,
    now: DateTime<Utc>,
    sink: &dyn EventSink,
) -> Option<DueReason> {
    let schedule = item.schedule.as_ref()?;
    for t in &item.targets {
        let last = pool
            .get(t)
            .ok()
            .and_then(|o| newest_snapshot(&o.repo, item).ok().flatten())
            .map(|(time, _)| time.with_timezone(&Utc));
        if schedule.is_due(last, now) {
            return Some(match last {
                None => DueReason::NeverRun,
                Some(last) => DueReason::ScheduleFired { last },
            });
        }
    }
    let cfg = item.physical().filter(|c| c.full_on_start)?;
    let server = match postgres::server_state(cfg) {
        Ok(s) => s,
        Err(e) => {
            let w = Warning::ServerStateUnknown {
                item: item.name.clone(),
                error: crate::error::one_line(&e),
            };
            sink.event(&Event::Warning(&w));
            return None;
        }
    };
    for t in &item.targets {
        let Ok(o) = pool.get(t) else { continue };
        match postgres::start_reason(&o.repo, item, &server) {
            Ok(Some(r)) => return Some(DueReason::ServerStarted(r)),
            Ok(None) => {}
            Err(e) => {
                let w = Warning::BaseBackupsUnreadable {
                    item: item.name.clone(),
                    target: t.clone(),
                    error: e.one_line(),
                };
                sink.event(&Event::Warning(&w));
            }
        }
    }
    None
}
