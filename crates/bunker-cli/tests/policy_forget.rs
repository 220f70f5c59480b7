//! `bunker forget` against restic 0.14 as the oracle: the same repository,
//! the same rules, the same kept and removed snapshots.

mod policy_support;

use std::collections::BTreeSet;

use policy_support::{json, run_ok, Ctx};

fn ids(groups: &serde_json::Value, key: &str) -> BTreeSet<String> {
    groups
        .as_array()
        .expect("array of groups")
        .iter()
        .flat_map(|g| g[key].as_array().cloned().unwrap_or_default())
        .map(|s| s["id"].as_str().expect("id").to_string())
        .collect()
}

/// ~150 snapshots over two years, two hosts, some tagged, mixed UTC offsets.
fn populate(ctx: &Ctx) {
    run_ok({
        let mut c = ctx.bunker();
        c.arg("init");
        c
    });
    let src = ctx.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("f"), b"content").expect("write");
    let start = chrono::DateTime::parse_from_rfc3339("2022-01-03T08:15:00+00:00").expect("time");
    let mut t = start;
    let mut x: u64 = 12345;
    for i in 0..150u32 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        // gaps from 20 minutes to ~10 days, averaging ~5 days: two years in total
        let gap_min = 20 + (x >> 33) % (10 * 24 * 60);
        t += chrono::Duration::minutes(gap_min as i64);
        let offset = if i % 3 == 0 {
            5 * 3600 + 1800
        } else {
            -7 * 3600
        };
        let local = t.with_timezone(&chrono::FixedOffset::east_opt(offset).expect("offset"));
        let mut c = ctx.bunker();
        c.args(["backup", "-q", "src", "--time", &local.to_rfc3339()]);
        c.args(["--host", if i % 4 == 0 { "beta" } else { "alpha" }]);
        if i % 10 == 0 {
            c.args(["--tag", "release"]);
        }
        run_ok(c);
    }
}

#[test]
fn forget_decisions_match_restic() {
    let ctx = Ctx::new();
    populate(&ctx);
    let rule_sets: &[&[&str]] = &[
        &["--keep-last", "7"],
        &[
            "--keep-daily",
            "7",
            "--keep-weekly",
            "5",
            "--keep-monthly",
            "12",
            "--keep-yearly",
            "3",
        ],
        &["--keep-hourly", "30", "--keep-last", "2"],
        &["--keep-within", "3m"],
        &["--keep-within", "1y2m3d4h", "--keep-monthly", "2"],
        &[
            "--keep-within-daily",
            "1m",
            "--keep-within-weekly",
            "6m",
            "--keep-within-yearly",
            "5y",
        ],
        &["--keep-within-hourly", "10d", "--keep-within-monthly", "1y"],
        &["--keep-tag", "release", "--keep-last", "3"],
        &["--keep-weekly", "10", "--group-by", "host"],
        &["--keep-monthly", "6", "--group-by", "tags"],
        &["--keep-daily", "20", "--group-by", ""],
        &["--keep-last", "4", "--host", "beta"],
        &["--keep-yearly", "10", "--tag", "release"],
    ];
    for rules in rule_sets {
        let r = {
            let mut c = ctx.restic();
            c.args(["forget", "--dry-run", "--json"]).args(*rules);
            json(&run_ok(c))
        };
        let b = {
            let mut c = ctx.bunker();
            c.args(["forget", "--dry-run", "--json"]).args(*rules);
            json(&run_ok(c))
        };
        let (rk, bk) = (ids(&r, "keep"), ids(&b, "keep"));
        assert!(!rk.is_empty(), "{rules:?}: restic kept nothing?");
        assert_eq!(bk, rk, "kept snapshots differ for {rules:?}");
        assert_eq!(
            ids(&b, "remove"),
            ids(&r, "remove"),
            "removed differ for {rules:?}"
        );
        assert_eq!(
            b.as_array().map(Vec::len),
            r.as_array().map(Vec::len),
            "group count differs for {rules:?}"
        );
    }

    // Really forgetting removes exactly the predicted snapshots.
    let predicted = {
        let mut c = ctx.bunker();
        c.args(["forget", "--dry-run", "--json", "--keep-monthly", "5"]);
        ids(&json(&run_ok(c)), "keep")
    };
    run_ok({
        let mut c = ctx.bunker();
        c.args(["forget", "-q", "--keep-monthly", "5"]);
        c
    });
    let left: BTreeSet<String> = {
        let mut c = ctx.bunker();
        c.args(["snapshots", "--json"]);
        json(&run_ok(c))
            .as_array()
            .expect("array")
            .iter()
            .map(|s| s["id"].as_str().expect("id").to_string())
            .collect()
    };
    assert_eq!(left, predicted);
}

#[test]
fn forget_takes_rules_from_a_policy_item() {
    let ctx = Ctx::new();
    run_ok({
        let mut c = ctx.bunker();
        c.arg("init");
        c
    });
    std::fs::create_dir_all(ctx.path().join("src")).expect("mkdir");
    for (i, tag) in [
        "bunker:item=web",
        "bunker:item=web",
        "bunker:item=web",
        "other",
    ]
    .iter()
    .enumerate()
    {
        let mut c = ctx.bunker();
        c.args(["backup", "-q", "src", "--tag", tag])
            .args(["--time", &format!("2024-01-0{} 10:00:00", i + 1)]);
        run_ok(c);
    }
    std::fs::write(
        ctx.path().join("bunker.yaml"),
        "repositories:\n  main:\n    location: ./repo\n    password_file: ./pw\n\
         items:\n  - name: web\n    paths: [./src]\n    retention:\n      keep_last: 1\n",
    )
    .expect("policy");
    let out = {
        let mut c = ctx.bunker();
        c.args([
            "forget",
            "--config",
            "bunker.yaml",
            "--item",
            "web",
            "--dry-run",
            "--json",
        ]);
        json(&run_ok(c))
    };
    assert_eq!(ids(&out, "keep").len(), 1);
    assert_eq!(
        ids(&out, "remove").len(),
        2,
        "the `other` snapshot is not considered"
    );
}
