//! Compares `retention::apply` with the real `restic forget --dry-run`.
//!
//! Creates a restic repository in a temporary directory, makes ~160
//! snapshots at seeded random times spread over two years (several hosts,
//! paths and tags, same-day duplicates), then checks for a dozen policies
//! that our kept/removed sets and keep reasons equal restic's, group by
//! group. Uses `restic` from PATH (or `RESTIC_BIN`); skipped with a note if
//! it is not installed.

use bunker_repo::retention::{apply, group_by, GroupBy, KeepDuration, KeepPolicy, SnapInfo};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

struct Restic {
    bin: String,
    repo: PathBuf,
    cache: PathBuf,
}

impl Restic {
    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.env("RESTIC_PASSWORD", "oracle-test")
            .env("RESTIC_REPOSITORY", &self.repo)
            .env("RESTIC_CACHE_DIR", &self.cache)
            .env("TZ", "Europe/Berlin");
        c
    }

    fn run(&self, args: &[&str], cwd: &Path) -> String {
        let out = self
            .cmd()
            .args(args)
            .current_dir(cwd)
            .output()
            .expect("restic runs");
        assert!(
            out.status.success(),
            "restic {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }
}

/// A small deterministic generator (64-bit LCG), so runs are repeatable.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Plan {
    time: String,
    host: &'static str,
    dir: &'static str,
    tags: Vec<&'static str>,
}

fn plan(count: usize) -> Vec<Plan> {
    let mut rng = Lcg(0x5eed_b0c5);
    let start = NaiveDate::from_ymd_opt(2022, 1, 1).expect("date");
    let mut used = BTreeSet::new();
    let mut out = Vec::new();
    let mut prev_day = start;
    while out.len() < count {
        let day = if !out.is_empty() && rng.below(100) < 20 {
            prev_day // same-day duplicate
        } else {
            start + Duration::days(rng.below(730) as i64)
        };
        prev_day = day;
        // avoid 02:xx, which a DST change can shift onto another snapshot
        let mut hour = rng.below(23) as u32;
        if hour >= 2 {
            hour += 1;
        }
        let time = format!(
            "{} {:02}:{:02}:{:02}",
            day.format("%Y-%m-%d"),
            hour,
            rng.below(60),
            rng.below(60)
        );
        if !used.insert(time.clone()) {
            continue;
        }
        let host = if rng.below(100) < 70 { "h1" } else { "h2" };
        let dir = if rng.below(100) < 80 { "d1" } else { "d2" };
        let mut tags = Vec::new();
        match rng.below(100) {
            0..=14 => tags.push("x"),
            15..=22 => tags.extend(["x", "y"]),
            23..=27 => tags.push("keep"),
            _ => {}
        }
        out.push(Plan {
            time,
            host,
            dir,
            tags,
        });
    }
    out
}

fn parse_snapshots(json: &str) -> Vec<SnapInfo> {
    let v: Value = serde_json::from_str(json).expect("snapshots json");
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| SnapInfo {
            id: s["id"].as_str().expect("id").to_string(),
            time: DateTime::parse_from_rfc3339(s["time"].as_str().expect("time")).expect("rfc3339"),
            hostname: s["hostname"].as_str().unwrap_or_default().to_string(),
            paths: strings(&s["paths"]),
            tags: strings(&s["tags"]),
        })
        .collect()
}

type GroupResult = BTreeMap<String, (bool, Vec<String>)>;

/// restic's verdicts per group key: id -> (keep, reasons).
fn restic_verdicts(json: &str) -> BTreeMap<(String, Vec<String>, Vec<String>), GroupResult> {
    let mut out = BTreeMap::new();
    if json.trim().is_empty() {
        return out;
    }
    let v: Value = serde_json::from_str(json).expect("forget json");
    let list = |v: &Value| -> Vec<String> {
        let mut l: Vec<String> = v
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        l.sort();
        l
    };
    for g in v.as_array().expect("groups") {
        let key = (
            g["host"].as_str().unwrap_or_default().to_string(),
            list(&g["paths"]),
            list(&g["tags"]),
        );
        let mut res = GroupResult::new();
        let keep = g["keep"].as_array().cloned().unwrap_or_default();
        let reasons = g["reasons"].as_array().cloned().unwrap_or_default();
        assert_eq!(keep.len(), reasons.len(), "reasons follow keep order");
        for (s, r) in keep.iter().zip(reasons.iter()) {
            let id = s["id"].as_str().expect("id").to_string();
            let matches = r["matches"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|m| m.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            res.insert(id, (true, matches));
        }
        for s in g["remove"].as_array().cloned().unwrap_or_default() {
            res.insert(
                s["id"].as_str().expect("id").to_string(),
                (false, Vec::new()),
            );
        }
        out.insert(key, res);
    }
    out
}

fn d(s: &str) -> Option<KeepDuration> {
    Some(KeepDuration::parse_restic(s).expect("valid duration"))
}

fn policies() -> Vec<(&'static str, KeepPolicy)> {
    let tags = |lists: &[&[&str]]| -> Vec<Vec<String>> {
        lists
            .iter()
            .map(|l| l.iter().map(|s| s.to_string()).collect())
            .collect()
    };
    vec![
        (
            "host,paths",
            KeepPolicy {
                last: 5,
                ..Default::default()
            },
        ),
        (
            "host,paths",
            KeepPolicy {
                daily: 7,
                weekly: 4,
                monthly: 12,
                yearly: 2,
                ..Default::default()
            },
        ),
        (
            "host,paths",
            KeepPolicy {
                hourly: 30,
                ..Default::default()
            },
        ),
        (
            "host,paths",
            KeepPolicy {
                within: d("3m10d"),
                ..Default::default()
            },
        ),
        (
            "host,paths",
            KeepPolicy {
                within_daily: d("2m"),
                within_weekly: d("6m"),
                within_monthly: d("1y"),
                within_yearly: d("2y"),
                ..Default::default()
            },
        ),
        (
            "host,paths",
            KeepPolicy {
                within_hourly: d("20d"),
                last: 3,
                ..Default::default()
            },
        ),
        (
            "host,paths",
            KeepPolicy {
                tags: tags(&[&["x"]]),
                monthly: 3,
                ..Default::default()
            },
        ),
        (
            "host,paths",
            KeepPolicy {
                tags: tags(&[&["x", "y"], &["keep"]]),
                within: d("1y2h"),
                ..Default::default()
            },
        ),
        (
            "host,paths",
            KeepPolicy {
                last: 35,
                daily: 7,
                weekly: 8,
                monthly: 12,
                yearly: 2,
                ..Default::default()
            },
        ),
        (
            "host,paths",
            KeepPolicy {
                weekly: 1000,
                ..Default::default()
            },
        ),
        (
            "host,tags",
            KeepPolicy {
                daily: 3,
                yearly: 1,
                ..Default::default()
            },
        ),
        (
            "",
            KeepPolicy {
                last: 10,
                monthly: 6,
                ..Default::default()
            },
        ),
        (
            "paths",
            KeepPolicy {
                daily: -2,
                weekly: 2,
                ..Default::default()
            },
        ),
    ]
}

#[test]
fn retention_matches_restic_forget() {
    let bin = std::env::var("RESTIC_BIN").unwrap_or_else(|_| "restic".to_string());
    if !Command::new(&bin)
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("note: restic not found; skipping the retention oracle test");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path();
    for sub in ["d1", "d2"] {
        std::fs::create_dir(work.join(sub)).expect("mkdir");
        std::fs::write(
            work.join(sub).join("file.txt"),
            format!("content of {sub}\n"),
        )
        .expect("write");
    }
    let restic = Restic {
        bin,
        repo: work.join("repo"),
        cache: work.join("cache"),
    };
    restic.run(&["init", "-q"], work);

    let plans = plan(160);
    let (a, b) = plans.split_at(plans.len() / 2);
    std::thread::scope(|s| {
        for half in [a, b] {
            let restic = &restic;
            s.spawn(move || {
                for p in half {
                    let mut args = vec!["backup", "-q", "--host", p.host, "--time", &p.time];
                    for t in &p.tags {
                        args.extend(["--tag", t]);
                    }
                    args.push(p.dir);
                    restic.run(&args, work);
                }
            });
        }
    });

    let snaps = parse_snapshots(&restic.run(&["snapshots", "--json"], work));
    assert_eq!(snaps.len(), plans.len());
    let now = Utc::now();

    for (group_opt, policy) in policies() {
        let mut args: Vec<String> = vec!["forget".into(), "--dry-run".into(), "--json".into()];
        args.extend(["--group-by".to_string(), group_opt.to_string()]);
        args.extend(policy.to_restic_args());
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let theirs = restic_verdicts(&restic.run(&argv, work));

        let ours: BTreeMap<_, GroupResult> =
            group_by(&snaps, GroupBy::parse(group_opt).expect("group-by"))
                .into_iter()
                .map(|(k, group)| {
                    let res = apply(&group, &policy, now)
                        .into_iter()
                        .map(|d| (d.id, (d.keep, d.reasons)))
                        .collect();
                    ((k.hostname, k.paths, k.tags), res)
                })
                .collect();
        assert_eq!(ours.len(), theirs.len(), "group count for {args:?}");
        for (key, their_group) in &theirs {
            let our_group = ours
                .get(key)
                .unwrap_or_else(|| panic!("group {key:?} missing for {args:?}"));
            assert_eq!(
                our_group.len(),
                their_group.len(),
                "group {key:?} size for {args:?}"
            );
            for (id, verdict) in their_group {
                assert_eq!(
                    our_group.get(id),
                    Some(verdict),
                    "snapshot {id} in group {key:?} for {args:?}"
                );
            }
        }
        let kept: usize = theirs
            .values()
            .flat_map(|g| g.values())
            .filter(|v| v.0)
            .count();
        eprintln!("{args:?}: {kept} of {} kept, same as restic", snaps.len());
    }
}
