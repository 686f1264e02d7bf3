//! Micro-benchmarks of the data tree, on a tree of 100,000 znodes of 100 bytes (100
//! parents under the root, 1,000 children each):
//!
//! - `tree/read`: getData, exists and getChildren (of a 1,000-child parent) through
//!   [`corral_tree::read`], as the server answers them (no watch).
//! - `tree/write`: a write the way a standalone server takes it through the tree: prep
//!   against the tree and the outstanding changes, record the changes, encode the log
//!   entry, apply, forget the outstanding changes.
//! - `tree/apply`: applying an already prepped transaction alone (what a follower or a
//!   restart replaying the log does).
//! - `tree/snapshot`: serializing the whole tree into memory.
//!
//! Run: `cargo bench -p corral-tree` (add `-- --warm-up-time 1 --measurement-time 2` for a
//! quick look).

use corral_proto::request::CreateRequest;
use corral_proto::{Acl, Id, OpCode};
use corral_tree::{encode_entry, read, Caller, DataTree, Outstanding, Prep, Settings, Txn, TxnHeader};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PARENTS: usize = 100;
const CHILDREN: usize = 1_000;
const DATA: [u8; 100] = [0x5a; 100];

fn parent(i: usize) -> String {
    format!("/p{i:03}")
}

fn child(i: usize, j: usize) -> String {
    format!("/p{i:03}/n{j:05}")
}

/// A tree, and the server-side state a write goes through with it.
struct Bench {
    tree: DataTree,
    outstanding: Outstanding,
    caller: Caller,
    settings: Settings,
    zxid: i64,
    /// Names new nodes: never reused, so a create never finds its node there.
    fresh: u64,
}

impl Bench {
    fn new() -> Bench {
        Bench {
            tree: DataTree::new(),
            outstanding: Outstanding::default(),
            caller: Caller { session: 0x100, ids: Arc::new(vec![Id::new("ip", "127.0.0.1")]) },
            settings: Settings::default(),
            zxid: 0,
            fresh: 0,
        }
    }

    fn header(&mut self) -> TxnHeader {
        self.zxid += 1;
        TxnHeader { session: self.caller.session, cxid: 1, zxid: self.zxid, time_ms: 1_700_000_000_000 + self.zxid }
    }

    /// One write through the tree, as the server's core does it for a standalone server
    /// (the log write and the reply left out).
    fn write(&mut self, prep: impl FnOnce(&mut Prep) -> Txn) {
        let mut p = Prep::with_outstanding(&self.tree, &self.caller, self.settings, &self.outstanding);
        let txn = prep(&mut p);
        let changes = p.into_changes();
        let hdr = self.header();
        self.outstanding.record(hdr.zxid, changes);
        black_box(encode_entry(&hdr, &txn));
        let mut events = Vec::new();
        black_box(self.tree.apply(&hdr, txn, &mut events));
        self.outstanding.applied(hdr.zxid);
    }

    fn create(&mut self, path: &str) {
        let req = create_req(path);
        self.write(|p| Txn::Create(p.create(OpCode::Create, &req).expect("create")));
    }

    fn delete(&mut self, path: &str) {
        self.write(|p| p.delete(path, -1).expect("delete"));
    }

    fn set_data(&mut self, path: &str) {
        self.write(|p| p.set_data(path, Some(&DATA), -1).expect("setData"));
    }

    /// Applies a prepped transaction alone.
    fn apply(&mut self, txn: Txn) {
        let hdr = self.header();
        let mut events = Vec::new();
        black_box(self.tree.apply(&hdr, txn, &mut events));
    }

    /// Paths for `n` nodes that do not exist, spread over the parents.
    fn fresh_paths(&mut self, n: u64) -> Vec<String> {
        (0..n)
            .map(|_| {
                self.fresh += 1;
                format!("{}/new{:09}", parent(self.fresh as usize % PARENTS), self.fresh)
            })
            .collect()
    }
}

fn create_req(path: &str) -> CreateRequest {
    CreateRequest { path: path.to_string(), data: Some(DATA.to_vec()), acl: Acl::open_unsafe(), flags: 0, ttl: 0 }
}

fn filled() -> Bench {
    let mut b = Bench::new();
    for i in 0..PARENTS {
        b.create(&parent(i));
        for j in 0..CHILDREN {
            b.create(&child(i, j));
        }
    }
    assert_eq!(b.tree.node_count(), 4 + PARENTS + PARENTS * CHILDREN);
    b
}

/// Existing leaf paths in a scattered order, so reads do not walk memory in insertion
/// order (a server's clients rarely do).
fn leaves() -> Vec<String> {
    let n = PARENTS * CHILDREN;
    // 7919 is prime and coprime with n, so this visits every leaf once.
    (0..n).map(|k| (k * 7919) % n).map(|k| child(k % PARENTS, k / PARENTS)).collect()
}

fn next_leaf<'a>(leaves: &'a [String], i: &mut usize) -> &'a String {
    *i = (*i + 1) % leaves.len();
    &leaves[*i]
}

fn benches(c: &mut Criterion) {
    let started = Instant::now();
    let mut b = filled();
    eprintln!("filled the tree: {} nodes in {:.2?}", b.tree.node_count(), started.elapsed());
    let leaves = leaves();
    let mut i = 0usize;

    let mut g = c.benchmark_group("tree/read");
    g.bench_function("get_data", |bn| {
        bn.iter(|| {
            i = (i + 1) % leaves.len();
            read::get_data(&mut b.tree, &b.caller, &leaves[i], false).unwrap()
        })
    });
    g.bench_function("exists", |bn| {
        bn.iter(|| {
            i = (i + 1) % leaves.len();
            read::exists(&mut b.tree, &b.caller, &leaves[i], false).unwrap()
        })
    });
    let parents: Vec<String> = (0..PARENTS).map(parent).collect();
    g.bench_function("get_children_1000", |bn| {
        bn.iter(|| {
            i = (i + 1) % parents.len();
            let (names, _) = read::get_children(&mut b.tree, &b.caller, &parents[i], false).unwrap();
            debug_assert_eq!(names.len(), CHILDREN);
            names
        })
    });
    g.finish();

    // Creates and deletes time `iters` operations and undo them untimed, so the tree stays
    // at its size whatever the iteration count.
    let mut g = c.benchmark_group("tree/write");
    g.bench_function("create", |bn| {
        bn.iter_custom(|iters| {
            let paths = b.fresh_paths(iters);
            let t = Instant::now();
            for p in &paths {
                b.create(p);
            }
            let elapsed = t.elapsed();
            for p in &paths {
                b.delete(p);
            }
            elapsed
        })
    });
    g.bench_function("set_data", |bn| {
        bn.iter_custom(|iters| {
            let paths: Vec<&String> = (0..iters).map(|_| next_leaf(&leaves, &mut i)).collect();
            let t = Instant::now();
            for p in &paths {
                b.set_data(p);
            }
            t.elapsed()
        })
    });
    g.bench_function("delete", |bn| {
        bn.iter_custom(|iters| {
            let paths = b.fresh_paths(iters);
            for p in &paths {
                b.create(p);
            }
            let t = Instant::now();
            for p in &paths {
                b.delete(p);
            }
            t.elapsed()
        })
    });
    g.finish();

    // The same transactions, prepped untimed, applied timed.
    let mut g = c.benchmark_group("tree/apply");
    let prep = |b: &Bench, f: &dyn Fn(&mut Prep) -> Txn| {
        let mut p = Prep::new(&b.tree, &b.caller, b.settings);
        f(&mut p)
    };
    g.bench_function("create", |bn| {
        bn.iter_custom(|iters| {
            let paths = b.fresh_paths(iters);
            let txns: Vec<Txn> = paths
                .iter()
                .map(|p| prep(&b, &|pr| Txn::Create(pr.create(OpCode::Create, &create_req(p)).unwrap())))
                .collect();
            let t = Instant::now();
            for txn in txns {
                b.apply(txn);
            }
            let elapsed = t.elapsed();
            for p in &paths {
                b.delete(p);
            }
            elapsed
        })
    });
    g.bench_function("set_data", |bn| {
        bn.iter_custom(|iters| {
            let txns: Vec<Txn> = (0..iters)
                .map(|_| {
                    let p = next_leaf(&leaves, &mut i);
                    prep(&b, &|pr| pr.set_data(p, Some(&DATA), -1).unwrap())
                })
                .collect();
            let t = Instant::now();
            for txn in txns {
                b.apply(txn);
            }
            t.elapsed()
        })
    });
    g.bench_function("delete", |bn| {
        bn.iter_custom(|iters| {
            let paths = b.fresh_paths(iters);
            for p in &paths {
                b.create(p);
            }
            let txns: Vec<Txn> = paths.iter().map(|p| prep(&b, &|pr| pr.delete(p, -1).unwrap())).collect();
            let t = Instant::now();
            for txn in txns {
                b.apply(txn);
            }
            t.elapsed()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("tree/snapshot");
    g.sampling_mode(SamplingMode::Flat).sample_size(10).measurement_time(Duration::from_secs(2));
    g.bench_function("write_100k_to_memory", |bn| {
        bn.iter_batched_ref(
            || Vec::with_capacity(32 << 20),
            |out: &mut Vec<u8>| b.tree.write_snapshot(out).unwrap(),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(tree, benches);
criterion_main!(tree);
