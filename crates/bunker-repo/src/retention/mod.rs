//! Retention: which snapshots `forget` keeps.
//!
//! [`apply`] follows restic 0.14's `ApplyPolicy` (internal/restic/
//! snapshot_policy.go) rule for rule, so that `bunker forget` and
//! `restic forget` agree on the same repository:
//!
//! * snapshots are sorted newest first (stable) and walked in that order;
//! * `keep_last/hourly/daily/weekly/monthly/yearly = n` keep the first
//!   snapshot of each of the newest `n` distinct hours/days/ISO weeks/
//!   months/years, computed in each snapshot's own UTC offset; `0` disables
//!   a rule; `-1` means unlimited (restic >= 0.15 semantics; 0.14 had no
//!   unlimited); other negative values disable the rule like 0.14 does;
//! * `within*` durations are measured back from the newest snapshot that is
//!   not in the future (relative to `now`), with Go's `AddDate` calendar
//!   arithmetic, and a snapshot must be strictly after the cut-off;
//! * `tags` keeps snapshots carrying all tags of any one list (an empty
//!   tag in a list matches snapshots without tags);
//! * an empty policy keeps everything ("policy is empty").
//!
//! Restic >= 0.15 also keeps the oldest snapshot while counts remain
//! ("oldest daily snapshot"); 0.14 does not, and neither do we.

mod duration;
mod group;

pub use duration::{KeepDuration, KeepDurationError};
pub use group::{group_by, GroupBy, GroupByError, GroupKey};

use chrono::{DateTime, Datelike, FixedOffset, Timelike, Utc};

/// The snapshot facts retention needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapInfo {
    /// Snapshot id (any string; used only to report decisions).
    pub id: String,
    /// Snapshot time with the offset it was recorded in.
    pub time: DateTime<FixedOffset>,
    /// Host name.
    pub hostname: String,
    /// Backed-up paths.
    pub paths: Vec<String>,
    /// Tags.
    pub tags: Vec<String>,
}

impl SnapInfo {
    /// Restic's `HasTags`: all tags of `list` are present; an empty tag
    /// matches a snapshot without tags.
    pub fn has_tags(&self, list: &[String]) -> bool {
        for tag in list {
            if tag.is_empty() && self.tags.is_empty() {
                return true;
            }
            if !self.tags.iter().any(|t| t == tag) {
                return false;
            }
        }
        true
    }
}

/// What to keep, mirroring restic's `--keep-*` options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeepPolicy {
    /// `--keep-last`.
    pub last: i32,
    /// `--keep-hourly`.
    pub hourly: i32,
    /// `--keep-daily`.
    pub daily: i32,
    /// `--keep-weekly`.
    pub weekly: i32,
    /// `--keep-monthly`.
    pub monthly: i32,
    /// `--keep-yearly`.
    pub yearly: i32,
    /// `--keep-within`.
    pub within: Option<KeepDuration>,
    /// `--keep-within-hourly`.
    pub within_hourly: Option<KeepDuration>,
    /// `--keep-within-daily`.
    pub within_daily: Option<KeepDuration>,
    /// `--keep-within-weekly`.
    pub within_weekly: Option<KeepDuration>,
    /// `--keep-within-monthly`.
    pub within_monthly: Option<KeepDuration>,
    /// `--keep-within-yearly`.
    pub within_yearly: Option<KeepDuration>,
    /// `--keep-tag` lists.
    pub tags: Vec<Vec<String>>,
}

/// Count value meaning "no limit".
pub const UNLIMITED: i32 = -1;

fn set(d: &Option<KeepDuration>) -> Option<KeepDuration> {
    d.filter(|d| !d.is_zero())
}

impl KeepPolicy {
    /// True if nothing is configured (restic then keeps everything).
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
            && [
                self.last,
                self.hourly,
                self.daily,
                self.weekly,
                self.monthly,
                self.yearly,
            ]
            .iter()
            .all(|c| *c == 0)
            && [
                &self.within,
                &self.within_hourly,
                &self.within_daily,
                &self.within_weekly,
                &self.within_monthly,
                &self.within_yearly,
            ]
            .iter()
            .all(|d| set(d).is_none())
    }

    /// The `restic forget` arguments expressing this policy.
    pub fn to_restic_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let counts = [
            ("--keep-last", self.last),
            ("--keep-hourly", self.hourly),
            ("--keep-daily", self.daily),
            ("--keep-weekly", self.weekly),
            ("--keep-monthly", self.monthly),
            ("--keep-yearly", self.yearly),
        ];
        for (flag, n) in counts {
            if n != 0 {
                args.push(flag.to_string());
                args.push(n.to_string());
            }
        }
        let durations = [
            ("--keep-within", &self.within),
            ("--keep-within-hourly", &self.within_hourly),
            ("--keep-within-daily", &self.within_daily),
            ("--keep-within-weekly", &self.within_weekly),
            ("--keep-within-monthly", &self.within_monthly),
            ("--keep-within-yearly", &self.within_yearly),
        ];
        for (flag, d) in durations {
            if let Some(d) = set(d) {
                args.push(flag.to_string());
                args.push(d.to_string());
            }
        }
        for list in &self.tags {
            args.push("--keep-tag".to_string());
            args.push(list.join(","));
        }
        args
    }
}

/// The verdict on one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The snapshot id.
    pub id: String,
    /// Keep (true) or forget (false).
    pub keep: bool,
    /// Why it is kept, worded like restic ("daily snapshot", "within 30d").
    pub reasons: Vec<String>,
}

type Bucker = fn(&DateTime<FixedOffset>, usize) -> i64;

fn ymdh(d: &DateTime<FixedOffset>, _: usize) -> i64 {
    i64::from(d.year()) * 1_000_000
        + i64::from(d.month()) * 10_000
        + i64::from(d.day()) * 100
        + i64::from(d.hour())
}

fn ymd(d: &DateTime<FixedOffset>, _: usize) -> i64 {
    i64::from(d.year()) * 10_000 + i64::from(d.month()) * 100 + i64::from(d.day())
}

fn yw(d: &DateTime<FixedOffset>, _: usize) -> i64 {
    let w = d.iso_week();
    i64::from(w.year()) * 100 + i64::from(w.week())
}

fn ym(d: &DateTime<FixedOffset>, _: usize) -> i64 {
    i64::from(d.year()) * 100 + i64::from(d.month())
}

fn y(d: &DateTime<FixedOffset>, _: usize) -> i64 {
    i64::from(d.year())
}

fn always(_: &DateTime<FixedOffset>, nr: usize) -> i64 {
    i64::try_from(nr).unwrap_or(i64::MAX)
}

struct Bucket {
    count: i32,
    bucker: Bucker,
    last: Option<i64>,
    reason: &'static str,
}

struct WithinBucket {
    cutoff: Option<Option<DateTime<FixedOffset>>>,
    within: KeepDuration,
    bucker: Bucker,
    last: Option<i64>,
    reason: &'static str,
}

/// Whether `t` is after the cut-off `within` before `latest`. With no
/// latest snapshot (all in the future) restic measures from the zero time,
/// so everything is "within".
fn after_cutoff(
    t: &DateTime<FixedOffset>,
    latest: Option<DateTime<FixedOffset>>,
    within: &KeepDuration,
) -> bool {
    match latest {
        None => true,
        Some(latest) => match within.before(latest) {
            Some(cutoff) => *t > cutoff,
            None => true,
        },
    }
}

/// Decides, for one group of snapshots, which to keep. Decisions are
/// returned newest first (the order restic evaluates them in).
pub fn apply(snapshots: &[SnapInfo], policy: &KeepPolicy, now: DateTime<Utc>) -> Vec<Decision> {
    let mut list: Vec<&SnapInfo> = snapshots.iter().collect();
    list.sort_by_key(|s| std::cmp::Reverse(s.time));

    if policy.is_empty() {
        return list
            .iter()
            .map(|s| Decision {
                id: s.id.clone(),
                keep: true,
                reasons: vec!["policy is empty".to_string()],
            })
            .collect();
    }

    let mut buckets = [
        (policy.last, always as Bucker, "last snapshot"),
        (policy.hourly, ymdh, "hourly snapshot"),
        (policy.daily, ymd, "daily snapshot"),
        (policy.weekly, yw, "weekly snapshot"),
        (policy.monthly, ym, "monthly snapshot"),
        (policy.yearly, y, "yearly snapshot"),
    ]
    .map(|(count, bucker, reason)| Bucket {
        count,
        bucker,
        last: None,
        reason,
    });

    let latest = list.iter().map(|s| s.time).filter(|t| *t < now).max();

    let mut within_buckets: Vec<WithinBucket> = [
        (&policy.within_hourly, ymdh as Bucker, "hourly within"),
        (&policy.within_daily, ymd, "daily within"),
        (&policy.within_weekly, yw, "weekly within"),
        (&policy.within_monthly, ym, "monthly within"),
        (&policy.within_yearly, y, "yearly within"),
    ]
    .into_iter()
    .filter_map(|(d, bucker, reason)| {
        set(d).map(|within| WithinBucket {
            cutoff: None,
            within,
            bucker,
            last: None,
            reason,
        })
    })
    .collect();

    let mut out = Vec::with_capacity(list.len());
    for (nr, cur) in list.iter().enumerate() {
        let mut reasons = Vec::new();

        for l in &policy.tags {
            if cur.has_tags(l) {
                reasons.push(format!("has tags [{}]", l.join(", ")));
            }
        }

        if let Some(within) = set(&policy.within) {
            if after_cutoff(&cur.time, latest, &within) {
                reasons.push(format!("within {within}"));
            }
        }

        for b in buckets.iter_mut() {
            if b.count > 0 || b.count == UNLIMITED {
                let val = (b.bucker)(&cur.time, nr);
                if b.last != Some(val) {
                    b.last = Some(val);
                    if b.count > 0 {
                        b.count -= 1;
                    }
                    reasons.push(b.reason.to_string());
                }
            }
        }

        for b in within_buckets.iter_mut() {
            let cutoff = *b
                .cutoff
                .get_or_insert_with(|| latest.and_then(|l| b.within.before(l)));
            let inside = match (latest, cutoff) {
                (Some(_), Some(c)) => cur.time > c,
                _ => true,
            };
            if inside {
                let val = (b.bucker)(&cur.time, nr);
                if b.last != Some(val) {
                    b.last = Some(val);
                    reasons.push(format!("{} {}", b.reason, b.within));
                }
            }
        }

        out.push(Decision {
            id: cur.id.clone(),
            keep: !reasons.is_empty(),
            reasons,
        });
    }
    out
}

#[cfg(test)]
mod tests;
