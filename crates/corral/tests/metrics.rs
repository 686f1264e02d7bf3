//! Prometheus metrics at `/metrics` (zoo.cfg `metricsProvider.*`), read over plain HTTP.

mod common;

use common::*;
use std::collections::HashMap;
use std::io::Write;
use zookeeper_client as zk;

/// Parses the Prometheus text format strictly: `# HELP` / `# TYPE` comments, and samples
/// `name[{labels}] value`. Returns every sample by its name with labels.
fn parse_prometheus(body: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    let mut typed = std::collections::HashSet::new();
    for line in body.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name) = (parts.next().unwrap(), parts.next().expect("a metric name"));
            assert!(kind == "HELP" || kind == "TYPE", "comment {line:?}");
            if kind == "TYPE" {
                let t = parts.next().unwrap();
                assert!(["gauge", "counter", "histogram", "summary", "untyped"].contains(&t), "{line:?}");
                typed.insert(name.to_string());
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("sample {line:?}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "metric name {name:?}"
        );
        let family = ["_bucket", "_sum", "_count"].iter().fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
        assert!(typed.contains(name) || typed.contains(family), "{name} has no # TYPE line");
        let v: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line:?}"));
        samples.insert(series.to_string(), v);
    }
    samples
}

#[tokio::test]
async fn metrics_carry_zookeepers_names_and_corrals_histograms() {
    let port = free_port();
    let server = Server::start_with(&[
        "metricsProvider.className=org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider",
        "metricsProvider.httpHost=127.0.0.1",
        &format!("metricsProvider.httpPort={port}"),
    ]);
    let client = server.connect().await;
    for i in 0..20 {
        client.create(&format!("/m{i}"), b"0123456789", &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())).await.unwrap();
    }
    let (_, w) = client.get_and_watch_data("/m0").await.map(|(d, s, w)| ((d, s), w)).unwrap();
    // A task queue with 3 ready tasks and 1 delayed.
    let q = corral_queue::Queue::open(client.clone(), "mail").await.unwrap();
    for i in 0..3 {
        q.push(format!("task {i}").as_bytes(), &corral_queue::PushOptions::default()).await.unwrap();
    }
    let later = corral_queue::PushOptions { delay: Some(std::time::Duration::from_secs(3600)), ..Default::default() };
    q.push(b"later", &later).await.unwrap();
    let (status, body) = tokio::task::spawn_blocking(move || http_get(port, "/metrics")).await.unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let m = parse_prometheus(&body);
    // ZooKeeper's names (mntr's keys without zk_), with the values mntr has.
    assert!(m["znode_count"] >= 24.0, "{body}");
    assert!(m["num_alive_connections"] >= 1.0, "{body}");
    assert!(m["packets_received"] >= 20.0, "{body}");
    assert_eq!(m["watch_count"], 1.0, "{body}");
    assert!(m["approximate_data_size"] >= 200.0, "{body}");
    assert!(m["open_file_descriptor_count"] >= 3.0 && m["max_file_descriptor_count"] >= m["open_file_descriptor_count"], "{body}");
    for name in ["ephemerals_count", "avg_latency", "max_latency", "min_latency", "outstanding_requests", "uptime", "global_sessions"] {
        assert!(m.contains_key(name), "{name} missing:\n{body}");
    }
    // ZooKeeper's summaries and counters, under its names and in its units (ms).
    assert!(m["fsynctime_count"] >= 1.0 && m.contains_key("fsynctime{quantile=\"0.99\"}"), "{body}");
    assert!(m["sync_processor_batch_size_sum"] >= 20.0, "{body}");
    assert!(m["updatelatency_count"] >= 20.0, "every create counts: {body}");
    assert!(m["readlatency_count"] >= 1.0, "{body}");
    assert!(m["updatelatency{quantile=\"0.5\"}"] > 0.0, "{body}");
    assert_eq!(m["dbinittime_count"], 1.0, "{body}");
    assert!(m["connection_request_count"] >= 1.0, "{body}");
    for name in ["snapshottime_count", "election_time_count", "looking_count", "commit_count", "proposal_count"] {
        assert!(m.contains_key(name), "{name} missing:\n{body}");
    }
    // Corral's own: every acknowledged create was fsynced.
    assert!(m["corral_fsync_seconds_count"] >= 1.0, "{body}");
    assert!(m["corral_group_commit_transactions_sum"] >= 20.0, "{body}");
    assert!(m.contains_key("corral_fsync_seconds_bucket{le=\"+Inf\"}"), "{body}");
    assert_eq!(m["corral_queue_ready_tasks{queue=\"mail\"}"], 3.0, "{body}");
    assert_eq!(m["corral_queue_delayed_tasks{queue=\"mail\"}"], 1.0, "{body}");
    assert_eq!(m["corral_queue_running_tasks{queue=\"mail\"}"], 0.0, "{body}");
    drop(w);
    // Anything else is not found.
    let (status, _) = tokio::task::spawn_blocking(move || http_get(port, "/nothing")).await.unwrap();
    assert!(status.starts_with("HTTP/1.1 404"), "{status}");
}

#[test]
fn an_unknown_metrics_provider_is_a_startup_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["server", "--config", "/dev/stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(b"clientPort=0\nmetricsProvider.className=com.example.Statsd\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PrometheusMetricsProvider"), "{err}");
}
