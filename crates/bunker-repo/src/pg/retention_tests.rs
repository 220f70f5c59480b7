use super::*;
use crate::pg::base::BaseBackupInfo;
use crate::pg::test_repo;
use crate::snapshots::SnapshotEntry;
use bunker_format::snapshot::Snapshot;
use bunker_format::{Id, TreeId};
use bunker_sources::postgres::Lsn;

const S: u64 = DEFAULT_SEGMENT_SIZE;

fn now() -> DateTime<Utc> {
    "2024-06-01T12:00:00Z".parse().expect("time")
}

/// A base backup on `tli` from segment `start` to `stop`, finished `age` ago.
fn bb(tli: u32, start: u64, stop: u64, age: Duration) -> BaseBackup {
    let end = (now() - age).fixed_offset();
    let start_lsn = Lsn(start * S + 0x28);
    let mut snap = Snapshot::new(
        end - Duration::minutes(5),
        TreeId::from(Id::random()),
        vec!["/base.tar".into()],
    );
    let info = BaseBackupInfo {
        system_id: Some(7),
        timeline: tli,
        start_lsn,
        stop_lsn: Lsn(stop * S + 0x100),
        start_wal: Segment::containing(tli, start_lsn, S).file_name(S),
        backup_from: "primary".into(),
        next_xid: None,
    };
    snap.tags = info.to_tags();
    BaseBackup {
        entry: SnapshotEntry {
            id: SnapshotId::from(Id::random()),
            snapshot: snap,
        },
        info,
        end_time: end,
    }
}

fn seg(tli: u32, segno: u64) -> String {
    Segment {
        timeline: tli,
        segno,
    }
    .file_name(S)
}

fn archive(names: &[String]) -> Vec<(String, WalFileName)> {
    let mut v: Vec<_> = names
        .iter()
        .map(|n| (n.clone(), WalFileName::parse(n).expect("wal name")))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn segs(tli: u32, r: std::ops::RangeInclusive<u64>) -> Vec<String> {
    r.map(|s| seg(tli, s)).collect()
}

fn ids(b: &[&BaseBackup]) -> Vec<SnapshotId> {
    b.iter().map(|b| b.entry.id).collect()
}

fn input<'a>(
    backups: &'a [BaseBackup],
    rules: Option<&'a BTreeSet<SnapshotId>>,
    pitr_days: Option<i64>,
) -> PitrInput<'a> {
    PitrInput {
        backups,
        others: &[],
        kept_by_rules: rules,
        pitr: pitr_days.map(Duration::days),
        now: now(),
        segment_size: S,
    }
}

#[test]
fn pitr_window_plus_daily_points() {
    let b = [
        bb(1, 2, 3, Duration::days(40)),
        bb(1, 10, 11, Duration::days(20)),
        bb(1, 20, 21, Duration::days(10)),
        bb(1, 30, 31, Duration::days(5)),
        bb(1, 40, 41, Duration::days(1)),
    ];
    // The rules keep the 20-day-old and the newest backup.
    let rules: BTreeSet<SnapshotId> = [b[1].entry.id, b[4].entry.id].into();
    let mut names = segs(1, 2..=45);
    names.push("00000001.history".into()); // (timeline 1 has none; any history stays)
    names.push(format!("{}.00000028.backup", seg(1, 2)));
    names.push(format!("{}.00000028.backup", seg(1, 10)));
    let p = plan(&input(&b, Some(&rules), Some(7)), &archive(&names));
    // Anchor: the newest backup finished 7 days ago or earlier (10 days).
    assert_eq!(p.keep, ids(&[&b[1], &b[2], &b[3], &b[4]]));
    assert_eq!(p.kept_for_pitr, ids(&[&b[2], &b[3]]));
    assert_eq!(p.forget, ids(&[&b[0]]));
    assert_eq!(p.window_backup, Some(b[2].entry.id));
    assert!(p.window_covers);
    let mut gone = segs(1, 2..=9);
    gone.extend(segs(1, 12..=19));
    gone.push(format!("{}.00000028.backup", seg(1, 2)));
    gone.sort();
    assert_eq!(p.wal_delete, gone);
    assert!(p.wal_keep.contains(&"00000001.history".to_string()));
    assert!(p.wal_keep.contains(&seg(1, 10)) && p.wal_keep.contains(&seg(1, 11)));
    assert!(p
        .wal_keep
        .contains(&format!("{}.00000028.backup", seg(1, 10))));
    assert_eq!(p.wal_keep.len() + p.wal_delete.len(), names.len());
    // Nothing kept by the window is older than its anchor.
    let points = point_only(&b, now() - Duration::days(7));
    assert_eq!(points, [b[0].entry.id, b[1].entry.id].into());
}

#[test]
fn empty_archive_deletes_nothing_but_still_decides_backups() {
    let b = [
        bb(1, 2, 3, Duration::days(40)),
        bb(1, 6, 6, Duration::days(20)),
        bb(1, 10, 11, Duration::days(1)),
    ];
    let rules: BTreeSet<SnapshotId> = [b[2].entry.id].into();
    let p = plan(&input(&b, Some(&rules), Some(7)), &[]);
    assert_eq!(p.forget, ids(&[&b[0]]));
    assert_eq!(p.kept_for_pitr, ids(&[&b[1]]));
    assert!(p.wal_keep.is_empty() && p.wal_delete.is_empty());
    assert!(p.window_covers);
    // Only a 1-day-old backup: the window cannot reach 7 days back.
    let p = plan(&input(&b[2..], Some(&rules), Some(7)), &[]);
    assert!(!p.window_covers && p.forget.is_empty());
}

#[test]
fn timeline_switch_keeps_both_timelines_after_the_anchor() {
    let b = [
        bb(1, 2, 2, Duration::days(30)),
        bb(1, 5, 5, Duration::days(3)),
        bb(2, 10, 10, Duration::hours(1)),
    ];
    let rules: BTreeSet<SnapshotId> = [b[2].entry.id].into();
    let mut names = segs(1, 2..=12);
    names.extend(segs(2, 8..=15));
    names.push("00000002.history".into());
    let p = plan(&input(&b, Some(&rules), Some(1)), &archive(&names));
    assert_eq!(p.forget, ids(&[&b[0]]));
    assert_eq!(p.kept_for_pitr, ids(&[&b[1]]));
    assert_eq!(p.wal_delete, segs(1, 2..=4));
    assert!(p.wal_keep.contains(&"00000002.history".to_string()));
    assert!(
        p.wal_keep.contains(&seg(1, 7)),
        "parent timeline up to the switch"
    );
    assert!(
        p.wal_keep.contains(&seg(2, 8)),
        "the switch segment on the child"
    );
}

#[test]
fn a_window_older_than_every_backup_keeps_them_all() {
    let b = [
        bb(1, 4, 4, Duration::days(30)),
        bb(1, 8, 8, Duration::days(10)),
        bb(1, 12, 12, Duration::days(1)),
    ];
    let rules: BTreeSet<SnapshotId> = [b[2].entry.id].into();
    let p = plan(
        &input(&b, Some(&rules), Some(90)),
        &archive(&segs(1, 1..=14)),
    );
    assert!(p.forget.is_empty());
    assert_eq!(p.kept_for_pitr, ids(&[&b[0], &b[1]]));
    assert_eq!(p.wal_delete, segs(1, 1..=3));
    assert!(!p.window_covers, "nothing reaches 90 days back");
    assert_eq!(p.window_start, Some(b[0].end_time));
}

#[test]
fn no_retention_rules_keep_everything() {
    let b = [
        bb(1, 4, 4, Duration::days(30)),
        bb(1, 8, 8, Duration::days(1)),
    ];
    let names = segs(1, 1..=10);
    let p = plan(&input(&b, None, Some(7)), &archive(&names));
    assert!(p.forget.is_empty() && p.wal_delete.is_empty());
    assert_eq!(p.keep.len(), 2);
    assert_eq!(p.wal_keep, names);
}

#[test]
fn without_pitr_the_window_starts_at_the_oldest_kept_backup() {
    let b = [
        bb(1, 4, 5, Duration::days(30)),
        bb(1, 8, 8, Duration::days(10)),
        bb(1, 12, 12, Duration::days(1)),
    ];
    let rules: BTreeSet<SnapshotId> = [b[1].entry.id, b[2].entry.id].into();
    let mut others = vec![bb(1, 2, 2, Duration::days(50))];
    others[0].entry.snapshot.tags.push("manual".into());
    let mut i = input(&b, Some(&rules), None);
    i.others = &others;
    let p = plan(&i, &archive(&segs(1, 1..=14)));
    assert_eq!(p.forget, ids(&[&b[0]]));
    assert!(p.kept_for_pitr.is_empty() && p.window_covers);
    // The other (manual) backup keeps its own segment; 4..=7 go.
    let mut gone = vec![seg(1, 1), seg(1, 3)];
    gone.extend(segs(1, 4..=7));
    assert_eq!(p.wal_delete, gone);
    // No backup kept at all: no WAL is deleted.
    let none = BTreeSet::new();
    let p = plan(&input(&b, Some(&none), None), &archive(&segs(1, 1..=14)));
    assert_eq!(p.forget.len(), 3);
    assert!(p.wal_delete.is_empty());
}

#[test]
fn segment_size_is_inferred_from_the_tags() {
    let b = [bb(1, 2, 3, Duration::days(1))];
    assert_eq!(infer_segment_size(&b), Some(S));
    let mut one_mib = b[0].clone();
    one_mib.info.start_wal =
        Segment::containing(1, one_mib.info.start_lsn, 1 << 20).file_name(1 << 20);
    assert_eq!(infer_segment_size(&[one_mib.clone()]), Some(1 << 20));
    one_mib.info.start_wal = "0000000100000000000000FF".into();
    assert_eq!(infer_segment_size(&[one_mib]), None);
    assert_eq!(infer_segment_size(&[]), Some(S));
}

/// Save `b` as a real snapshot tagged for `item`; returns it with its stored id.
fn save(repo: &Repository, mut b: BaseBackup, item: &str) -> BaseBackup {
    b.entry.snapshot.tags.push(format!("bunker:item={item}"));
    // No summary: list_base_backups takes the snapshot time as the end.
    b.entry.snapshot.time = b.end_time;
    b.entry.id = snapshots::save(repo, &b.entry.snapshot).expect("save");
    b
}

#[test]
fn apply_forgets_then_deletes_wal_and_dry_run_changes_nothing() {
    let (_d, repo) = test_repo();
    let b: Vec<BaseBackup> = [
        bb(1, 2, 3, Duration::days(40)),
        bb(1, 10, 11, Duration::days(20)),
        bb(1, 20, 21, Duration::days(10)),
        bb(1, 30, 31, Duration::days(2)),
    ]
    .into_iter()
    .map(|b| save(&repo, b, "db"))
    .collect();
    let foreign = save(&repo, bb(1, 5, 5, Duration::days(30)), "other");
    for n in segs(1, 2..=33) {
        wal_archive::push(&repo, &n, n.as_bytes()).expect("push");
    }
    let mut opts = PitrOptions {
        policy: KeepPolicy {
            last: 1,
            ..Default::default()
        },
        filter: SnapshotFilter {
            tags: vec![vec!["bunker:item=db".into()]],
            ..Default::default()
        },
        pitr: Some(Duration::days(7)),
        now: Some(now()),
        dry_run: true,
        ..Default::default()
    };
    let r = apply(&repo, &opts).expect("dry run");
    let removed: BTreeSet<SnapshotId> = r.removed.iter().copied().collect();
    assert_eq!(removed, [b[0].entry.id, b[1].entry.id].into());
    assert_eq!(snapshots::list(&repo).expect("list").len(), 5);
    assert_eq!(wal_archive::list(&repo).expect("list").len(), 32);
    let reasons: Vec<&str> = r.groups[0]
        .reasons
        .iter()
        .flat_map(|k| k.matches.iter().map(String::as_str))
        .collect();
    assert_eq!(reasons, vec!["last snapshot", PITR_REASON]);

    opts.dry_run = false;
    let r = apply(&repo, &opts).expect("apply");
    let left: BTreeSet<SnapshotId> = snapshots::list(&repo)
        .expect("list")
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(
        left,
        [b[2].entry.id, b[3].entry.id, foreign.entry.id].into()
    );
    let wal: Vec<String> = wal_archive::list(&repo)
        .expect("list")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let mut expect = vec![seg(1, 5)];
    expect.extend(segs(1, 20..=33));
    assert_eq!(wal, expect);
    assert_eq!(r.plan.wal_delete.len(), 32 - expect.len());
    // Applying again changes nothing.
    let again = apply(&repo, &opts).expect("again");
    assert!(again.removed.is_empty() && again.plan.wal_delete.is_empty());

    // A segment size that does not fit the tags is refused before any change.
    opts.segment_size = Some(1 << 20);
    let e = apply(&repo, &opts).expect_err("wrong size");
    assert!(e.to_string().contains("refusing to delete WAL"), "{e}");
}
