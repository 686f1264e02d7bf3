//! Builds a tree of N znodes of 100 bytes (under 100 parents, as bench/restart_memory.py
//! does) by applying creates one at a time, with the server's allocator, and prints every
//! create that took longer than 1 ms: the pauses a member's loop would take while its tree
//! grows. Then the RSS with the tree built.
//!
//! `cargo run --release --example tree_pauses -- [N] [--thp]` (default 1000000; `--thp`
//! leaves transparent huge pages on, which the server turns off).

use corral_tree::{CreateTxn, DataTree, Txn, TxnHeader};
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--thp") {
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
    let n: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(1_000_000);
    let mut tree = DataTree::new();
    let mut zxid = 0i64;
    let mut events = Vec::new();
    let mut create = |tree: &mut DataTree, path: String, parent_cversion: i32| {
        zxid += 1;
        let hdr = TxnHeader { session: 0, cxid: 0, zxid, time_ms: 1_700_000_000_000 + zxid / 50 };
        let txn = Txn::Create(CreateTxn {
            path,
            data: Some(vec![b'x'; 100]),
            acl: corral_proto::Acl::open_unsafe(),
            ephemeral_owner: 0,
            parent_cversion,
        });
        let started = Instant::now();
        tree.apply(&hdr, txn, &mut events);
        events.clear();
        started.elapsed()
    };
    create(&mut tree, "/bench".into(), 1);
    for p in 0..100 {
        create(&mut tree, format!("/bench/p{p}"), p + 1);
    }
    let (mut pauses, mut paused) = (0, std::time::Duration::ZERO);
    let started = Instant::now();
    for i in 0..n {
        let took = create(&mut tree, format!("/bench/p{}/n{i:07}", i % 100), (i / 100 + 1) as i32);
        if took.as_micros() >= 1000 {
            println!("create {i}: {:.1} ms", took.as_secs_f64() * 1e3);
            pauses += 1;
            paused += took;
        }
    }
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS")).map(str::to_string))
        .unwrap_or_default();
    println!(
        "{n} creates in {:.2} s; {pauses} took 1 ms or more ({:.0} ms in all); {rss}",
        started.elapsed().as_secs_f64(),
        paused.as_secs_f64() * 1e3
    );
}
