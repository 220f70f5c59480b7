//! `bunker run` with a policy whose primary repository is unreachable: the item
//! is backed up to the fallback, loudly (stderr, `--json`, exit status 4), and
//! `bunker copy` heals the primary once it is back (on a real Garage).
//! The Garage part is skipped (with a note) when `garage` is not installed.

#[path = "../../bunker-storage/tests/garage_harness/mod.rs"]
mod garage_harness;
mod output_support;
mod policy_support;

use output_support::{json_last, show};
use std::net::TcpListener;
use std::path::Path;
use std::process::Output;

use garage_harness::{garage_or_skip, GarageCluster};
use policy_support::{Ctx, PASSWORD};

/// A policy with item `docs` targeting `primary` (at `primary_loc`, with extra
/// options) that falls back to the local repository `spare`.
fn write_policy(ctx: &Ctx, primary_loc: &str, options: &[(String, String)]) -> std::path::PathBuf {
    let src = ctx.path().join("src");
    std::fs::create_dir_all(src.join("sub")).expect("mkdir");
    std::fs::write(src.join("a.txt"), b"first file\n").expect("write");
    std::fs::write(src.join("sub/b.bin"), vec![7u8; 100_000]).expect("write");
    let opts: String = options
        .iter()
        .map(|(k, v)| format!("      {k}: \"{v}\"\n"))
        .collect();
    let policy = format!(
        "repositories:\n\
         \x20 primary:\n\
         \x20   location: {primary_loc}\n\
         \x20   password_file: ./pw\n\
         \x20   options:\n{opts}\
         \x20   fallbacks: [spare]\n\
         \x20 spare:\n\
         \x20   location: ./spare\n\
         \x20   password_file: ./pw\n\
         \x20   role: offsite\n\
         items:\n\
         \x20 - name: docs\n\
         \x20   paths: [./src]\n\
         \x20   targets: [primary]\n"
    );
    let path = ctx.path().join("bunker.yaml");
    std::fs::write(&path, policy).expect("policy");
    path
}

fn assert_fallback_run(out: &Output, primary_hint: &str) {
    assert_eq!(out.status.code(), Some(4), "{}", show(out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("WARNING") && stderr.contains("\"spare\"") && stderr.contains(primary_hint),
        "{stderr}"
    );
    let json = json_last(out);
    let row = &json["results"][0];
    assert_eq!(row["status"], "ok", "{json}");
    assert_eq!(row["target"], "spare", "{json}");
    assert_eq!(row["fallback_used"], "spare", "{json}");
    assert_eq!(row["fallback_for"], "primary", "{json}");
    assert!(row["snapshot"].is_string(), "{json}");
}

fn snapshot_count(ctx: &Ctx, location: &str, extra: &[(String, String)]) -> usize {
    let out = ctx
        .bare()
        .env("BUNKER_REPOSITORY", location)
        .env("BUNKER_PASSWORD", PASSWORD)
        .envs(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .args(["--json", "snapshots"])
        .output()
        .expect("spawn");
    assert!(out.status.success(), "{}", show(&out));
    json_last_array(&out)
}

fn json_last_array(out: &Output) -> usize {
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('['))
        .unwrap_or("[]");
    serde_json::from_str::<Vec<serde_json::Value>>(line)
        .map(|v| v.len())
        .unwrap_or_else(|e| panic!("bad JSON {line:?}: {e}"))
}

#[test]
fn run_falls_back_when_the_primary_endpoint_is_closed() {
    let ctx = Ctx::new();
    // A loopback port nobody listens on (bound, then released).
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let endpoint = format!("127.0.0.1:{port}");
    let policy = write_policy(
        &ctx,
        &format!("s3:http://{endpoint}/bucket/host1"),
        &[
            ("s3.access_key_id", "GKclosed"),
            ("s3.secret_access_key", "closed"),
            ("s3.region", "garage"),
            ("retry.max_elapsed", "2"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let out = ctx
        .bare()
        .args(["--json", "run", "--all"])
        .arg(&policy)
        .output()
        .expect("spawn");
    assert_fallback_run(&out, &endpoint);
    assert_eq!(snapshot_count(&ctx, "./spare", &[]), 1);
}

#[test]
fn copy_heals_the_primary_after_a_policy_fallback() {
    let Some(bin) = garage_or_skip("copy_heals_the_primary_after_a_policy_fallback") else {
        return;
    };
    let mut cluster = GarageCluster::single(&bin).unwrap_or_else(|e| panic!("garage: {e}"));
    let ctx = Ctx::new();
    let primary = cluster.location("policy/primary");
    let mut opts = cluster.options();
    opts.push(("retry.max_elapsed".into(), "2".into()));
    let policy = write_policy(&ctx, &primary, &opts);
    let run = || {
        ctx.bare()
            .args(["--json", "run", "--all"])
            .arg(&policy)
            .output()
            .expect("spawn")
    };
    // First run: the primary is up (and created); no fallback.
    let out = run();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(json_last(&out)["results"][0]["target"], "primary");

    cluster.kill_all();
    let out = run();
    assert_fallback_run(&out, &cluster.endpoint());

    cluster
        .start_all()
        .unwrap_or_else(|e| panic!("garage restart: {e}"));
    let aws = cluster.aws_env();
    assert_eq!(snapshot_count(&ctx, &primary, &aws), 1);
    let out = ctx
        .bare()
        .env("BUNKER_REPOSITORY", &primary)
        .env("BUNKER_PASSWORD", PASSWORD)
        .env("BUNKER_FROM_PASSWORD", PASSWORD)
        .envs(aws.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .args(["copy", "--from-repo"])
        .arg(Path::new("./spare"))
        .output()
        .expect("spawn");
    assert!(out.status.success(), "copy: {}", show(&out));
    assert_eq!(snapshot_count(&ctx, &primary, &aws), 2);
    let out = ctx
        .bare()
        .env("BUNKER_REPOSITORY", &primary)
        .env("BUNKER_PASSWORD", PASSWORD)
        .envs(aws.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .args(["check", "--read-data"])
        .output()
        .expect("spawn");
    assert!(out.status.success(), "check: {}", show(&out));
    // With the primary back, the next run uses it again.
    let out = run();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(json_last(&out)["results"][0]["target"], "primary");
}
