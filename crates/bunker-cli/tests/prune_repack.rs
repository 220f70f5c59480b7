//! `bunker prune --max-repack-size` and `--repack-small` end to end (also as
//! `forget --prune` flags): the JSON and text reports say when the limit
//! stopped repacking, a limited prune leaves a repository that bunker and
//! restic (`check --read-data`, when installed) accept and that restores
//! identically, and a bad size is a one-line error.

mod policy_support;

use std::path::Path;
use std::process::Command;

use policy_support::{bytes, json, run_ok, stdout, tree, Ctx};

fn restic_available() -> bool {
    Command::new("restic")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn bunker(ctx: &Ctx, args: &[&str]) -> Command {
    let mut c = ctx.bunker();
    c.arg("--no-progress").args(args);
    c
}

/// Pack files in the repository.
fn packs(ctx: &Ctx) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for sub in std::fs::read_dir(ctx.repo().join("data")).expect("data dir") {
        for f in std::fs::read_dir(sub.expect("entry").path()).expect("subdir") {
            let f = f.expect("entry");
            let name = f.file_name().to_string_lossy().into_owned();
            out.push((name, f.metadata().expect("stat").len()));
        }
    }
    out.sort();
    out
}

/// bunker's and (when installed) restic's `check --read-data`, and the
/// newest snapshot restores to the source as it is now.
fn check_and_restore(ctx: &Ctx, src: &Path, name: &str) {
    run_ok(bunker(ctx, &["check", "--read-data"]));
    if restic_available() {
        run_ok({
            let mut c = ctx.restic();
            c.args(["check", "--read-data"]);
            c
        });
    } else {
        eprintln!("SKIPPED restic check: restic is not installed");
    }
    let target = ctx.path().join(name);
    let mut c = bunker(ctx, &["restore", "latest", "--target"]);
    c.arg(&target);
    run_ok(c);
    let restored = target.join(src.strip_prefix("/").expect("absolute"));
    assert_eq!(tree(&restored), tree(src), "latest restores differently");
}

/// 24 small backups at `--pack-size 4`, each adding one 165 KiB file of
/// random bytes: each writes a small data pack (4% of the target size and a
/// little more, so not tiny) and a tiny tree pack.
fn small_backups(ctx: &Ctx) -> std::path::PathBuf {
    run_ok(bunker(ctx, &["init"]));
    let src = ctx.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    for round in 0..24u64 {
        std::fs::write(src.join(format!("f{round:02}")), bytes(round, 165 * 1024)).expect("write");
        run_ok(bunker(ctx, &["backup", "-q", "--pack-size", "4", "src"]));
    }
    src
}

#[test]
fn max_repack_size_and_repack_small_flags_report_and_stay_readable() {
    let ctx = Ctx::new();
    let src = small_backups(&ctx);
    let before = packs(&ctx);
    assert_eq!(before.len(), 48, "{before:?}");

    // Without --repack-small only the tiny packs (below 4% of 4 MiB: the 24
    // tree packs) merge, as restic's default; the small data packs stay.
    let tiny = before
        .iter()
        .filter(|(_, s)| *s < 4 * 1024 * 1024 / 25)
        .count();
    assert_eq!(tiny, 24, "{before:?}");
    let plain = json(&run_ok(bunker(
        &ctx,
        &["prune", "--json", "--pack-size", "4"],
    )));
    assert_eq!(plain["packs_repacked"], 24, "{plain}");
    assert_eq!(plain["new_packs"], 1, "{plain}");
    assert_eq!(plain["repack_limited"], false, "{plain}");
    let before = packs(&ctx);
    assert_eq!(before.len(), 25, "{before:?}");
    let total: u64 = before.iter().map(|(_, s)| s).sum();

    // A zero budget repacks nothing and says so.
    let out = run_ok(bunker(
        &ctx,
        &[
            "prune",
            "--repack-small",
            "--max-repack-size",
            "0",
            "--pack-size",
            "4",
        ],
    ));
    let text = stdout(&out);
    assert!(
        text.contains("stopped repacking at --max-repack-size; run prune again to free the rest"),
        "{text}"
    );
    assert_eq!(packs(&ctx), before);

    // A quarter of the bytes: some packs are merged, the report is limited.
    let quarter = (total / 4).to_string();
    let limited = json(&run_ok(bunker(
        &ctx,
        &[
            "prune",
            "--json",
            "--repack-small",
            "--max-repack-size",
            &quarter,
            "--pack-size",
            "4",
        ],
    )));
    assert_eq!(limited["repack_limited"], true, "{limited}");
    let repacked = limited["packs_repacked"].as_u64().expect("count");
    assert!(repacked > 1 && repacked < before.len() as u64, "{limited}");
    assert_eq!(limited["packs_repacked_small"], repacked, "{limited}");
    assert!(
        limited.get("repacked").is_none(),
        "pack ids stay out of JSON"
    );
    let middle = packs(&ctx);
    assert_eq!(
        middle.len() as u64,
        before.len() as u64 - repacked + limited["new_packs"].as_u64().expect("count")
    );
    check_and_restore(&ctx, &src, "restore-limited");

    // Without a budget the rest is merged: one data and one tree pack.
    let merged = json(&run_ok(bunker(
        &ctx,
        &["prune", "--json", "--repack-small", "--pack-size", "4"],
    )));
    assert_eq!(merged["repack_limited"], false, "{merged}");
    assert_eq!(merged["new_packs"], 2, "{merged}");
    assert_eq!(packs(&ctx).len(), 2);
    check_and_restore(&ctx, &src, "restore-merged");

    // The same flags on forget --prune: the trees of forgotten snapshots
    // leave the tree pack partly used, and a zero budget keeps it.
    let out = run_ok(bunker(
        &ctx,
        &[
            "forget",
            "--json",
            "--keep-last",
            "6",
            "--prune",
            "--max-unused",
            "0%",
            "--max-repack-size",
            "0",
        ],
    ));
    let text = stdout(&out);
    let report: serde_json::Value =
        serde_json::from_str(text.lines().nth(1).expect("prune report line")).expect("JSON");
    assert_eq!(report["packs_repacked"], 0, "{report}");
    assert_eq!(report["repack_limited"], true, "{report}");
    check_and_restore(&ctx, &src, "restore-forget");
    let rest = json(&run_ok(bunker(
        &ctx,
        &["prune", "--json", "--max-unused", "0%"],
    )));
    assert_eq!(rest["repack_limited"], false, "{rest}");
    assert_eq!(rest["unused_bytes_after"], 0, "{rest}");
    assert!(
        rest["packs_repacked"].as_u64().expect("count") >= 1,
        "{rest}"
    );
    check_and_restore(&ctx, &src, "restore-rest");
}

#[test]
fn a_bad_max_repack_size_is_a_one_line_error() {
    let ctx = Ctx::new();
    run_ok(bunker(&ctx, &["init"]));
    for (args, value) in [
        (&["prune", "--max-repack-size", "lots"][..], "lots"),
        (&["prune", "--max-repack-size", "5%"][..], "5%"),
        (
            &[
                "forget",
                "--keep-last",
                "1",
                "--prune",
                "--max-repack-size",
                "2X",
            ][..],
            "2X",
        ),
    ] {
        let out = bunker(&ctx, args).output().expect("spawn");
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err.lines().next().unwrap_or("");
        assert_eq!(
            first,
            format!(
                "error: invalid value '{value}' for '--max-repack-size <SIZE>': \
                 expected a size such as 500M, 2G or 1048576 (bytes)"
            ),
            "{err}"
        );
    }
}

#[test]
fn help_documents_the_flags() {
    let ctx = Ctx::new();
    for cmd in ["prune", "forget"] {
        let help = stdout(&run_ok(bunker(&ctx, &[cmd, "--help"])));
        for flag in ["--max-repack-size <SIZE>", "--repack-small"] {
            assert!(help.contains(flag), "{cmd} --help lacks {flag}:\n{help}");
        }
    }
    let help = stdout(&run_ok(bunker(&ctx, &["prune", "--help"])));
    assert!(help.contains("bunker prune --max-repack-size 2G"), "{help}");
    assert!(help.contains("4% of the target pack size"), "{help}");
    assert!(help.contains("raises that to 80%"), "{help}");
}
