//! `bunker prune` end to end: after forget, both bunker's and restic's
//! `check --read-data` pass and every kept snapshot restores identically;
//! prune killed after any number of storage mutations leaves a repository
//! that checks clean, and a rerun finishes the job.

mod policy_support;

use std::collections::BTreeMap;
use std::path::Path;

use policy_support::{bytes, json, run_ok, stdout, tree, Ctx};

type Files = BTreeMap<String, Vec<u8>>;

fn write_round(src: &Path, round: u64) {
    std::fs::create_dir_all(src.join("sub")).expect("mkdir");
    std::fs::write(src.join("stable.bin"), bytes(1, 300 * 1024)).expect("write");
    std::fs::write(src.join("changing.bin"), bytes(100 + round, 200 * 1024)).expect("write");
    std::fs::write(src.join("sub/n.txt"), format!("round {round}\n").repeat(99)).expect("write");
    if round % 2 == 0 {
        std::fs::write(src.join("sub/even.bin"), bytes(500 + round, 150 * 1024)).expect("write");
    } else {
        let _ = std::fs::remove_file(src.join("sub/even.bin"));
    }
}

/// A repository with `rounds` snapshots; returns each snapshot's id and files.
fn build(ctx: &Ctx, rounds: u64) -> Vec<(String, Files)> {
    run_ok({
        let mut c = ctx.bunker();
        c.arg("init");
        c
    });
    let src = ctx.path().join("src");
    let mut out = Vec::new();
    for round in 0..rounds {
        write_round(&src, round);
        let mut c = ctx.bunker();
        c.args(["backup", "--json", "--pack-size", "4", "src"]);
        let summary = json(&run_ok(c));
        let id = summary["snapshot_id"]
            .as_str()
            .expect("snapshot id")
            .to_string();
        out.push((id, tree(&src)));
    }
    out
}

fn check_both(ctx: &Ctx) {
    run_ok({
        let mut c = ctx.bunker();
        c.args(["check", "--read-data"]);
        c
    });
    run_ok({
        let mut c = ctx.restic();
        c.args(["check", "--read-data"]);
        c
    });
}

fn restores_identically(ctx: &Ctx, src: &Path, snaps: &[(String, Files)]) {
    for (id, files) in snaps {
        let target = ctx.path().join(format!("restore-{}", &id[..8]));
        run_ok({
            let mut c = ctx.bunker();
            c.args(["restore", id, "--target"]).arg(&target);
            c
        });
        let restored = target.join(src.strip_prefix("/").expect("absolute"));
        assert_eq!(
            &tree(&restored),
            files,
            "snapshot {id} restores differently"
        );
    }
}

fn kept(ctx: &Ctx, all: &[(String, Files)]) -> Vec<(String, Files)> {
    let mut c = ctx.bunker();
    c.args(["snapshots", "--json"]);
    let ids: Vec<String> = json(&run_ok(c))
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_string())
        .collect();
    all.iter()
        .filter(|(id, _)| ids.contains(id))
        .cloned()
        .collect()
}

#[test]
fn prune_after_forget_checks_clean_and_restores() {
    let ctx = Ctx::new();
    let all = build(&ctx, 6);
    let before: u64 = std::fs::read_dir(ctx.repo().join("data"))
        .expect("data dir")
        .count() as u64;
    assert!(before > 0);
    let out = run_ok({
        let mut c = ctx.bunker();
        c.args([
            "forget",
            "--keep-last",
            "2",
            "--prune",
            "--max-unused",
            "0%",
            "--pack-size",
            "4",
        ]);
        c
    });
    let text = stdout(&out);
    assert!(text.contains("removed 4 snapshots"), "{text}");
    let keep = kept(&ctx, &all);
    assert_eq!(keep.len(), 2);
    check_both(&ctx);
    restores_identically(&ctx, &ctx.path().join("src"), &keep);

    // A second prune has nothing to do.
    let again = json(&run_ok({
        let mut c = ctx.bunker();
        c.args(["prune", "--json", "--max-unused", "0%"]);
        c
    }));
    assert_eq!(again["packs_removed"], 0);
    assert_eq!(again["packs_repacked"], 0);
    assert_eq!(again["packs_unreferenced"], 0);
}

fn copy_dir(from: &Path, to: &Path) {
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(st.success());
}

#[test]
fn prune_killed_at_any_point_leaves_a_clean_repository() {
    let template = Ctx::new();
    let all = build(&template, 5);
    run_ok({
        let mut c = template.bunker();
        c.args(["forget", "-q", "--keep-last", "2"]);
        c
    });
    let keep = kept(&template, &all);

    // How many mutations a full prune makes (on a copy).
    let probe = Ctx::new();
    std::fs::remove_dir_all(probe.path()).expect("clear");
    copy_dir(template.path(), probe.path());
    let report = json(&run_ok({
        let mut c = probe.bunker();
        c.args(["prune", "--json", "--max-unused", "0%", "--pack-size", "4"]);
        c
    }));
    let total = ["new_packs", "index_files_written", "index_files_removed"]
        .iter()
        .map(|k| report[k].as_u64().expect("count"))
        .sum::<u64>()
        + ["packs_removed", "packs_repacked", "packs_unreferenced"]
            .iter()
            .map(|k| report[k].as_u64().expect("count"))
            .sum::<u64>();
    assert!(total >= 4, "too few mutations to test: {report}");

    let points: Vec<u64> = (1..total).collect();
    for (n, point) in points.iter().enumerate() {
        let ctx = Ctx::new();
        std::fs::remove_dir_all(ctx.path()).expect("clear");
        copy_dir(template.path(), ctx.path());
        let out = {
            let mut c = ctx.bunker();
            c.args(["prune", "-q", "--max-unused", "0%", "--pack-size", "4"])
                .env("BUNKER_TEST_PRUNE_CRASH_AFTER", point.to_string());
            c.output().expect("spawn")
        };
        assert!(
            !out.status.success(),
            "prune should have aborted at {point}"
        );
        // The crashed state is consistent: bunker's check passes (the
        // dead process's lock is recognised as stale).
        run_ok({
            let mut c = ctx.bunker();
            c.arg("check");
            c
        });
        // A rerun finishes; afterwards everything is clean and readable.
        run_ok({
            let mut c = ctx.bunker();
            c.args(["prune", "-q", "--max-unused", "0%", "--pack-size", "4"]);
            c
        });
        let again = json(&run_ok({
            let mut c = ctx.bunker();
            c.args(["prune", "--json", "--dry-run", "--max-unused", "0%"]);
            c
        }));
        assert_eq!(again["bytes_removed"], 0, "after crash at {point}: {again}");
        run_ok({
            let mut c = ctx.bunker();
            c.args(["check", "--read-data"]);
            c
        });
        if n == 0 || n + 1 == points.len() || n == points.len() / 2 {
            run_ok({
                let mut c = ctx.restic();
                c.args(["check", "--read-data"]);
                c
            });
            restores_identically(&ctx, &template.path().join("src"), &keep);
        }
    }
}
