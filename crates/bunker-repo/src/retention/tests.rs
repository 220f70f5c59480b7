use super::*;
use proptest::prelude::*;

fn snap(id: &str, time: &str) -> SnapInfo {
    SnapInfo {
        id: id.to_string(),
        time: DateTime::parse_from_rfc3339(time).expect("valid test time"),
        hostname: "h".into(),
        paths: vec!["/data".into()],
        tags: Vec::new(),
    }
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
        .expect("valid")
        .with_timezone(&Utc)
}

fn kept(d: &[Decision]) -> Vec<&str> {
    d.iter().filter(|d| d.keep).map(|d| d.id.as_str()).collect()
}

fn series() -> Vec<SnapInfo> {
    vec![
        snap("a", "2024-01-01T10:00:00Z"),
        snap("b", "2024-01-01T12:00:00Z"),
        snap("c", "2024-01-02T09:00:00Z"),
        snap("d", "2024-01-08T09:00:00Z"),
        snap("e", "2024-02-01T09:00:00Z"),
        snap("f", "2024-02-01T09:30:00Z"),
        snap("g", "2025-03-01T09:00:00Z"),
    ]
}

#[test]
fn keep_last_and_empty_policy() {
    let d = apply(
        &series(),
        &KeepPolicy {
            last: 2,
            ..Default::default()
        },
        now(),
    );
    assert_eq!(kept(&d), vec!["g", "f"]);
    // decisions come newest first, removed ones carry no reasons
    assert_eq!(
        d.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        vec!["g", "f", "e", "d", "c", "b", "a"]
    );
    assert!(d[2].reasons.is_empty() && !d[2].keep);
    assert_eq!(d[0].reasons, vec!["last snapshot"]);

    let d = apply(&series(), &KeepPolicy::default(), now());
    assert_eq!(d.len(), 7);
    assert!(d
        .iter()
        .all(|d| d.keep && d.reasons == vec!["policy is empty"]));
    assert!(apply(
        &[],
        &KeepPolicy {
            last: 1,
            ..Default::default()
        },
        now()
    )
    .is_empty());
}

#[test]
fn calendar_buckets_keep_the_newest_per_period() {
    let p = KeepPolicy {
        daily: 3,
        monthly: 2,
        ..Default::default()
    };
    let d = apply(&series(), &p, now());
    // daily: g, f (Feb 1, newest of that day), d; monthly: g (2025-03), f (2024-02)
    assert_eq!(kept(&d), vec!["g", "f", "d"]);
    assert_eq!(d[0].reasons, vec!["daily snapshot", "monthly snapshot"]);
    let p = KeepPolicy {
        weekly: 10,
        ..Default::default()
    };
    // ISO weeks: 2024-01-01 and 01-02 share week 1; 01-08 is week 2
    assert_eq!(kept(&apply(&series(), &p, now())), vec!["g", "f", "d", "c"]);
    let p = KeepPolicy {
        yearly: 5,
        ..Default::default()
    };
    assert_eq!(kept(&apply(&series(), &p, now())), vec!["g", "f"]);
    let p = KeepPolicy {
        hourly: 100,
        ..Default::default()
    };
    // e (09:00) and f (09:30) share an hour
    assert_eq!(
        kept(&apply(&series(), &p, now())),
        vec!["g", "f", "d", "c", "b", "a"]
    );
}

#[test]
fn buckets_use_the_snapshot_offset() {
    // 23:30 at -05:00 is the next day in UTC; restic uses the recorded offset.
    let s = vec![
        snap("x", "2024-01-01T23:30:00-05:00"),
        snap("y", "2024-01-01T18:00:00-05:00"),
    ];
    let d = apply(
        &s,
        &KeepPolicy {
            daily: 5,
            ..Default::default()
        },
        now(),
    );
    assert_eq!(kept(&d), vec!["x"]);
}

#[test]
fn within_is_relative_to_the_newest_non_future_snapshot() {
    let mut s = series();
    s.push(snap("future", "2031-01-01T00:00:00Z"));
    let p = KeepPolicy {
        within: KeepDuration::parse_restic("1y1m").ok(),
        ..Default::default()
    };
    let d = apply(&s, &p, now());
    // latest = g (2025-03-01 09:00); cut-off 2024-02-01 09:00, strictly after
    assert_eq!(kept(&d), vec!["future", "g", "f"]);
    assert_eq!(d[1].reasons, vec!["within 1y1m"]);

    let p = KeepPolicy {
        within_daily: KeepDuration::parse_restic("400d").ok(),
        ..Default::default()
    };
    let d = apply(&series(), &p, now());
    assert_eq!(kept(&d), vec!["g", "f"]);
    assert_eq!(d[1].reasons, vec!["daily within 400d"]);

    // all snapshots in the future: restic measures from the zero time
    let only_future = vec![snap("z", "2031-01-01T00:00:00Z")];
    let p = KeepPolicy {
        within: Some(KeepDuration::days(1)),
        ..Default::default()
    };
    assert_eq!(kept(&apply(&only_future, &p, now())), vec!["z"]);
    // a zero duration counts as unset
    let p = KeepPolicy {
        within: Some(KeepDuration::default()),
        ..Default::default()
    };
    assert!(p.is_empty());
}

#[test]
fn tags_unlimited_and_negative_counts() {
    let mut s = series();
    s[0].tags = vec!["keep".into(), "x".into()];
    s[1].tags = vec!["keep".into()];
    let p = KeepPolicy {
        tags: vec![vec!["keep".into(), "x".into()]],
        ..Default::default()
    };
    let d = apply(&s, &p, now());
    assert_eq!(kept(&d), vec!["a"]);
    assert_eq!(
        d.iter().find(|d| d.id == "a").map(|d| d.reasons.clone()),
        Some(vec!["has tags [keep, x]".to_string()])
    );
    // an empty tag matches untagged snapshots
    let p = KeepPolicy {
        tags: vec![vec![String::new()]],
        ..Default::default()
    };
    assert_eq!(kept(&apply(&s, &p, now())), vec!["g", "f", "e", "d", "c"]);

    let p = KeepPolicy {
        monthly: UNLIMITED,
        ..Default::default()
    };
    assert_eq!(kept(&apply(&series(), &p, now())), vec!["g", "f", "d"]);
    // other negative values disable the rule but still make the policy
    // non-empty, as in restic 0.14: nothing is kept
    let p = KeepPolicy {
        daily: -2,
        ..Default::default()
    };
    assert!(kept(&apply(&series(), &p, now())).is_empty());
}

#[test]
fn equal_times_keep_input_order() {
    let s = vec![
        snap("first", "2024-01-01T10:00:00Z"),
        snap("second", "2024-01-01T10:00:00Z"),
    ];
    let d = apply(
        &s,
        &KeepPolicy {
            last: 1,
            ..Default::default()
        },
        now(),
    );
    assert_eq!(kept(&d), vec!["first"]);
}

#[test]
fn restic_args_and_grouping() {
    let p = KeepPolicy {
        last: 3,
        daily: -1,
        within: Some(KeepDuration::days(30)),
        tags: vec![vec!["a".into(), "b".into()]],
        ..Default::default()
    };
    assert_eq!(
        p.to_restic_args(),
        vec![
            "--keep-last",
            "3",
            "--keep-daily",
            "-1",
            "--keep-within",
            "30d",
            "--keep-tag",
            "a,b"
        ]
    );

    let mut s = series();
    s[0].hostname = "other".into();
    s[1].paths = vec!["/z".into(), "/a".into()];
    s[2].tags = vec!["t".into()];
    let groups = group_by(&s, GroupBy::default());
    assert_eq!(groups.len(), 3);
    assert_eq!(groups[0].0.paths, vec!["/a".to_string(), "/z".to_string()]);
    assert!(groups.iter().all(|(k, _)| k.tags.is_empty()));
    let by_tags = group_by(&s, GroupBy::parse("tags").expect("valid"));
    assert_eq!(by_tags.len(), 2);
    assert_eq!(group_by(&s, GroupBy::parse("").expect("valid")).len(), 1);
    assert!(GroupBy::parse("host,colour").is_err());
}

proptest! {
    #[test]
    fn count_rules_keep_bounded_and_newest(
        offsets in proptest::collection::vec(0i64..100_000_000, 1..60),
        last in 0i32..5, daily in 0i32..5, weekly in 0i32..5,
    ) {
        let base = DateTime::parse_from_rfc3339("2020-01-01T00:00:00Z").expect("valid");
        let snaps: Vec<SnapInfo> = offsets.iter().enumerate().map(|(i, o)| SnapInfo {
            id: i.to_string(),
            time: base + chrono::Duration::seconds(*o),
            hostname: "h".into(),
            paths: vec![],
            tags: vec![],
        }).collect();
        let p = KeepPolicy { last, daily, weekly, ..Default::default() };
        let d = apply(&snaps, &p, now());
        prop_assert_eq!(d.len(), snaps.len());
        let k = d.iter().filter(|d| d.keep).count();
        if last + daily + weekly == 0 {
            prop_assert_eq!(k, snaps.len());
        } else {
            prop_assert!(k <= (last + daily + weekly) as usize);
            prop_assert!(d[0].keep);
            prop_assert!(k >= (last.max(daily).max(weekly) as usize).min(1));
        }
        if last > 0 {
            prop_assert!(k >= (last as usize).min(snaps.len()));
        }
    }
}
