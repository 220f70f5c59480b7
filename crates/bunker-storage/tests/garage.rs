//! The storage contract on a real Garage cluster (S3 through OpenDAL): plain,
//! through the retry layer over injected faults, and on a three-node cluster
//! with replication factor 3 while one node is down. Skipped (with a note) when
//! the `garage` binary is not installed.

mod garage_harness;

use std::sync::Arc;
use std::time::Duration;

use bunker_storage::{
    conformance, open, open_backend, ErrorKind, FaultConfig, FaultStorage, FileType, RetryConfig,
    RetryStorage,
};
use bytes::Bytes;
use garage_harness::{garage_or_skip, GarageCluster};

fn must<T>(r: std::io::Result<T>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("starting garage failed: {e}"),
    }
}

#[test]
fn conformance_on_single_node_garage() {
    let Some(bin) = garage_or_skip("conformance_on_single_node_garage") else {
        return;
    };
    let cluster = must(GarageCluster::single(&bin));
    let s = open(&cluster.location("conformance"), &cluster.options()).expect("open");
    assert_eq!(s.location(), cluster.location("conformance"));
    if let Err(e) = conformance::run(&*s) {
        panic!("conformance on garage: {e}\n{}", cluster.log_tail(0));
    }
    // A second prefix in the same bucket is an independent, empty repository.
    let other = open(&cluster.location("other/prefix"), &cluster.options()).expect("open");
    assert!(other.list(FileType::Pack).expect("list").is_empty());
    conformance::run(&*other).expect("conformance on a nested prefix");
}

#[test]
fn wrong_credentials_and_missing_bucket_are_clear_errors() {
    let Some(bin) = garage_or_skip("wrong_credentials_and_missing_bucket_are_clear_errors") else {
        return;
    };
    let cluster = must(GarageCluster::single(&bin));
    let mut bad = cluster.options();
    bad[1].1 = "0".repeat(64);
    let s = open_backend(&cluster.location("x"), &bad).expect("open");
    let e = s.list(FileType::Snapshot).expect_err("bad secret");
    assert_eq!(e.kind, ErrorKind::Unauthenticated, "{e}");
    assert!(!e.is_retryable());
    assert!(e.to_string().contains(&cluster.endpoint()), "{e}");

    let missing = format!("s3:{}/no-such-bucket/p", cluster.endpoint());
    let s = open_backend(&missing, &cluster.options()).expect("open");
    let e = s
        .write(FileType::Config, "", Bytes::from_static(b"c"))
        .expect_err("missing bucket");
    assert!(!e.is_retryable(), "{e}");
}

#[test]
fn retry_layer_over_faults_on_garage() {
    let Some(bin) = garage_or_skip("retry_layer_over_faults_on_garage") else {
        return;
    };
    let cluster = must(GarageCluster::single(&bin));
    let backend = open_backend(&cluster.location("faults"), &cluster.options()).expect("open");
    let faults = FaultStorage::new(
        backend,
        FaultConfig {
            error_rate: 0.15,
            timeout_rate: 0.05,
            seed: 17,
            ..FaultConfig::default()
        },
    )
    .errors_after_write(false);
    let retry = RetryStorage::with_config(
        Arc::new(faults),
        RetryConfig {
            initial_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(50),
            max_elapsed: Duration::from_secs(60),
        },
    );
    conformance::run(&retry).expect("conformance through faults on garage");
    assert!(retry.retries() > 0);
}

#[test]
fn replicated_cluster_survives_one_node_down() {
    let Some(bin) = garage_or_skip("replicated_cluster_survives_one_node_down") else {
        return;
    };
    let mut cluster = must(GarageCluster::start(&bin, 3, 3));
    let s = open(&cluster.location("rf3"), &cluster.options()).expect("open");
    s.create().expect("create");
    let data = Bytes::from(vec![0x5au8; 3 * 1024 * 1024 + 11]);
    s.write(FileType::Pack, "aa01", data.clone())
        .expect("write");

    // Node 2 goes away; node 0 (our endpoint) still has a write and read quorum.
    cluster.kill_node(2);
    assert_eq!(s.read(FileType::Pack, "aa01").expect("read"), data);
    s.write(FileType::Pack, "aa02", data.slice(7..))
        .expect("write");
    let names: Vec<String> = s
        .list(FileType::Pack)
        .expect("list")
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, ["aa01", "aa02"]);

    // Back up: the restarted node serves everything, including what it missed.
    must(cluster.start_node(2));
    cluster.kill_node(1);
    let s2 = open(
        &format!("s3:{}/{}/rf3", cluster.endpoint_of(2), cluster.bucket),
        &cluster.options(),
    )
    .expect("open node 2");
    assert_eq!(
        s2.read(FileType::Pack, "aa02").expect("read"),
        data.slice(7..)
    );
    assert_eq!(
        s2.read_range(FileType::Pack, "aa01", 1000, 10)
            .expect("range"),
        data.slice(1000..1010)
    );
}

#[test]
fn whole_cluster_down_is_a_retryable_error_naming_the_endpoint() {
    let Some(bin) = garage_or_skip("whole_cluster_down_is_a_retryable_error_naming_the_endpoint")
    else {
        return;
    };
    let mut cluster = must(GarageCluster::single(&bin));
    let mut opts = cluster.options();
    opts.push(("retry.max_elapsed".into(), "1".into()));
    opts.push(("timeout".into(), "5".into()));
    let s = open(&cluster.location("down"), &opts).expect("open");
    s.create().expect("create");
    s.write(FileType::Index, "0101", Bytes::from_static(b"idx"))
        .expect("write");
    cluster.kill_all();
    let e = s.read(FileType::Index, "0101").expect_err("cluster down");
    assert!(e.is_retryable(), "{e}");
    assert!(e.to_string().contains(&cluster.endpoint()), "{e}");
    must(cluster.start_all());
    assert_eq!(
        s.read(FileType::Index, "0101").expect("read after restart"),
        &b"idx"[..]
    );
}
