//! Micro-benchmarks of the file-backed transaction log and snapshot files, in a temporary
//! directory (under `TMPDIR`; put it on the disk you want to measure):
//!
//! - `log/append_no_sync`: one 150-byte record per `append`, no `sync` (one positioned
//!   write each). Between samples the log is synced, untimed, so that no sample pays for
//!   the backlog of an earlier one; a segment roll (every 64 MiB) still lands in some.
//! - `log/append100_sync`: 100 records in one `append`, then one `sync` (`fdatasync`):
//!   group commit, which measures the disk.
//! - `snapshot/write_100k`: a 100,000-node tree written as a snapshot file (serialize,
//!   checksum, write, `fsync`, rename, directory `fsync`).
//!
//! Run: `cargo bench -p corral-storage` (add `-- --warm-up-time 1 --measurement-time 2`
//! for a quick look).

use corral_proto::Acl;
use corral_storage::{snapshot, FileLog, FileLogOptions, Log, Record};
use corral_tree::{CreateTxn, DataTree, Txn, TxnHeader};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use std::time::{Duration, Instant};

const PAYLOAD: usize = 150;

/// The options the server opens its log with.
fn options() -> FileLogOptions {
    FileLogOptions { preallocate_bytes: 16 << 20, ..Default::default() }
}

fn payload(seed: u8) -> Vec<u8> {
    (0..PAYLOAD).map(|i| seed.wrapping_add(i as u8).wrapping_mul(31)).collect()
}

/// A log in a fresh temporary directory (removed when the guard drops).
fn fresh_log() -> (tempfile::TempDir, FileLog) {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = FileLog::open(dir.path(), options()).unwrap();
    (dir, log)
}

fn log_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("log");

    let (dir, mut log) = fresh_log();
    let mut zxid = 0i64;
    g.throughput(Throughput::Elements(1));
    let mut record = Record::new(0, payload(1));
    g.bench_function("append_no_sync", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                zxid += 1;
                record.zxid = zxid;
                log.append(std::slice::from_ref(&record)).unwrap();
            }
            let elapsed = t.elapsed();
            // Untimed: sync, so no sample inherits a backlog of dirty pages (or a sync the
            // log makes by itself when its window fills), and drop the segments the log has
            // moved past, to bound the disk used.
            log.sync().unwrap();
            log.purge_through(zxid).unwrap();
            elapsed
        })
    });
    drop((log, dir));

    let (dir, mut log) = fresh_log();
    let mut zxid = 0i64;
    let mut group: Vec<Record> = (0..100).map(|i| Record::new(0, payload(i as u8))).collect();
    g.throughput(Throughput::Elements(group.len() as u64));
    g.sampling_mode(SamplingMode::Flat).sample_size(20);
    g.bench_function("append100_sync", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                for r in &mut group {
                    zxid += 1;
                    r.zxid = zxid;
                }
                let t = Instant::now();
                log.append(&group).unwrap();
                log.sync().unwrap();
                elapsed += t.elapsed();
            }
            log.purge_through(zxid).unwrap();
            elapsed
        })
    });
    g.finish();
    assert_eq!(log.synced_zxid(), zxid);
    drop((log, dir));
}

/// 100,000 nodes of 100 bytes: 100 parents under the root, 1,000 children each.
fn tree() -> DataTree {
    let mut tree = DataTree::new();
    let mut zxid = 0;
    let mut create = |tree: &mut DataTree, path: String, parent_cversion: i32| {
        zxid += 1;
        let hdr = TxnHeader { session: 1, cxid: 0, zxid, time_ms: 1_700_000_000_000 + zxid };
        let txn = CreateTxn { path, data: Some(vec![0x5a; 100]), acl: Acl::open_unsafe(), ephemeral_owner: 0, parent_cversion };
        tree.apply(&hdr, Txn::Create(txn), &mut Vec::new());
    };
    for i in 0..100 {
        create(&mut tree, format!("/p{i:03}"), i + 1);
        for j in 0..1_000 {
            create(&mut tree, format!("/p{i:03}/n{j:05}"), j + 1);
        }
    }
    assert_eq!(tree.node_count(), 100_104);
    tree
}

fn snapshot_benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let tree = tree();
    let mut g = c.benchmark_group("snapshot");
    g.sampling_mode(SamplingMode::Flat).sample_size(10).measurement_time(Duration::from_secs(3));
    g.bench_function("write_100k", |b| {
        // The same zxid each time: the rename replaces the file, so one stays on disk.
        b.iter(|| snapshot::write(dir.path(), tree.last_zxid(), |w| tree.write_snapshot(w)).unwrap())
    });
    g.finish();
    let (_, path) = snapshot::list(dir.path()).unwrap().pop().unwrap();
    eprintln!("snapshot file: {} bytes", std::fs::metadata(path).unwrap().len());
}

criterion_group!(benches, log_benches, snapshot_benches);
criterion_main!(benches);
