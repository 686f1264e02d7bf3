//! `corral bench` against a real server: every workload runs, completes what it was asked
//! and reports its figures.

mod common;

use common::Server;
use std::process::Command;

#[test]
fn every_workload_runs_and_reports() {
    let server = Server::start();
    for (workload, ops) in [("create", 300), ("set", 300), ("get", 300), ("exists", 300), ("mixed", 300), ("populate", 300), ("watch", 10), ("queue", 50)] {
        let out = Command::new(env!("CARGO_BIN_EXE_corral"))
            .args(["bench", "--connect", &server.hosts(), "--workload", workload, "--clients", "3", "--outstanding", "4"])
            .args(["--ops", &ops.to_string(), "--keys", "20", "--json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{workload}: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["workload"], workload);
        assert_eq!(v["errors"], 0, "{workload}: {v}");
        assert!(v["ops"].as_u64().unwrap() >= ops, "{workload}: {v}");
        let (p50, p99, max) = (v["p50_us"].as_u64().unwrap(), v["p99_us"].as_u64().unwrap(), v["max_us"].as_u64().unwrap());
        assert!(0 < p50 && p50 <= p99 && p99 <= max, "{workload}: {v}");
        assert!(v["ops_per_s"].as_f64().unwrap() > 0.0);
    }
    // An unknown workload is refused.
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["bench", "--connect", &server.hosts(), "--workload", "nonsense"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
