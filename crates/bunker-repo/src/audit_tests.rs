use super::*;
use crate::pg::test_repo;

fn audit_dir(d: &tempfile::TempDir) -> std::path::PathBuf {
    d.path().join("repo/bunker/audit")
}

fn three(repo: &Repository) {
    for op in ["backup", "forget", "restore"] {
        append(repo, &Entry::new(op).snapshots(["abc"])).expect("append");
    }
}

#[test]
fn appended_records_chain_in_order_and_verify() {
    let (_d, repo) = test_repo();
    three(&repo);
    let listed = list(&repo).expect("list");
    let ops: Vec<&str> = listed.iter().map(|l| l.record.operation.as_str()).collect();
    assert_eq!(ops, ["backup", "forget", "restore"]);
    assert_eq!(listed[0].record.prev, "");
    assert_eq!(listed[1].record.prev, listed[0].hash);
    assert_eq!(listed[2].record.seq, 3);
    assert_eq!(listed[2].record.pid, std::process::id());
    let v = verify(&repo).expect("verify");
    assert!(v.is_ok(), "{:?}", v.problems);
    assert_eq!(v.head, Some((3, listed[2].hash.clone())));
}

#[test]
fn a_modified_record_is_named() {
    let (d, repo) = test_repo();
    three(&repo);
    let p = audit_dir(&d).join(object_name(2));
    let mut bytes = std::fs::read(&p).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&p, bytes).expect("write");
    let v = verify(&repo).expect("verify");
    assert!(v
        .problems
        .iter()
        .any(|p| p.kind == ProblemKind::Unreadable && p.seq == 2));
    // A record re-encrypted with the key (a valid object with other content)
    // breaks the chain at the next record.
    let (d, repo) = test_repo();
    three(&repo);
    let p = audit_dir(&d).join(object_name(2));
    let mut r = decode(&repo, &std::fs::read(&p).unwrap()).unwrap();
    r.operation = "nothing to see".into();
    let json = serde_json::to_vec(&r).unwrap();
    std::fs::write(&p, unpacked::encode(repo.key(), &json, Default::default())).unwrap();
    let v = verify(&repo).expect("verify");
    assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
    assert_eq!(v.problems[0].kind, ProblemKind::Modified);
    assert!(v.problems[0].message.contains("record 2 was modified"));
}

#[test]
fn a_removed_record_is_named() {
    let (d, repo) = test_repo();
    three(&repo);
    std::fs::remove_file(audit_dir(&d).join(object_name(2))).unwrap();
    let v = verify(&repo).expect("verify");
    assert!(v
        .problems
        .iter()
        .any(|p| p.kind == ProblemKind::Missing && p.message.contains("record 2 is missing")));
}

#[test]
fn reordered_records_are_named() {
    let (d, repo) = test_repo();
    three(&repo);
    let dir = audit_dir(&d);
    let (a, b) = (dir.join(object_name(1)), dir.join(object_name(2)));
    let tmp = dir.join("swap");
    std::fs::rename(&a, &tmp).unwrap();
    std::fs::rename(&b, &a).unwrap();
    std::fs::rename(&tmp, &b).unwrap();
    let v = verify(&repo).expect("verify");
    let reordered: Vec<u64> = v
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::Reordered)
        .map(|p| p.seq)
        .collect();
    assert_eq!(reordered, [1, 2], "{:?}", v.problems);
}

#[test]
fn concurrent_appenders_do_not_fork_the_chain() {
    let (_d, repo) = test_repo();
    std::thread::scope(|s| {
        for i in 0..4 {
            let repo = &repo;
            s.spawn(move || {
                for j in 0..3 {
                    append(repo, &Entry::new(&format!("op{i}.{j}"))).expect("append");
                }
            });
        }
    });
    let v = verify(&repo).expect("verify");
    assert!(v.is_ok(), "{:?}", v.problems);
    assert_eq!(v.records, 12);
}

#[test]
fn foreign_objects_are_reported() {
    let (d, repo) = test_repo();
    three(&repo);
    std::fs::write(audit_dir(&d).join("000000000002-fork"), b"x").unwrap();
    let v = verify(&repo).expect("verify");
    assert!(v.problems.iter().any(|p| p.kind == ProblemKind::Foreign));
}
