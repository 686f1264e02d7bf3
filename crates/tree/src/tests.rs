//! Semantics of prep + apply together, the way a server drives them.

use crate::*;
use corral_proto::request::{CreateRequest, MultiOp};
use corral_proto::{Acl, ErrorCode, EventType, Id, OpCode};

struct Harness {
    tree: DataTree,
    zxid: i64,
    settings: Settings,
}

fn caller(session: i64) -> Caller {
    Caller { session, ids: std::sync::Arc::new(vec![Id::new("ip", "127.0.0.1")]) }
}

fn create_req(path: &str, flags: i32) -> CreateRequest {
    CreateRequest { path: path.into(), data: Some(b"d".to_vec()), acl: Acl::open_unsafe(), flags, ttl: 0 }
}

impl Harness {
    fn new() -> Self {
        Harness { tree: DataTree::new(), zxid: 0, settings: Settings { extended_types: true } }
    }

    fn commit(&mut self, session: i64, txn: Txn) -> (TxnResult, Vec<WatchEvent>) {
        self.zxid += 1;
        let hdr = TxnHeader { session, cxid: 0, zxid: self.zxid, time_ms: 1000 + self.zxid };
        let mut ev = vec![];
        let r = self.tree.apply(&hdr, txn, &mut ev);
        (r, ev)
    }

    fn create(&mut self, session: i64, path: &str, flags: i32) -> Result<String, ErrorCode> {
        let c = caller(session);
        let txn = Prep::new(&self.tree, &c, self.settings).create(OpCode::Create, &create_req(path, flags))?;
        match self.commit(session, Txn::Create(txn)).0 {
            TxnResult::Create { path, .. } => Ok(path),
            other => panic!("{other:?}"),
        }
    }

    fn delete(&mut self, path: &str, version: i32) -> Result<(), ErrorCode> {
        let c = caller(1);
        let txn = Prep::new(&self.tree, &c, self.settings).delete(path, version)?;
        self.commit(1, txn);
        Ok(())
    }

    fn stat(&self, path: &str) -> corral_proto::Stat {
        self.tree.get(path).unwrap().stat()
    }
}

#[test]
fn fresh_tree_has_zookeeper_subtree() {
    let t = DataTree::new();
    assert_eq!(t.node_count(), 4);
    assert_eq!(t.get("/").unwrap().stat().num_children, 1);
    assert_eq!(t.get("/zookeeper").unwrap().stat().num_children, 2);
    // ZooKeeper inserts its own nodes without counting them as creates.
    assert_eq!(t.get("/zookeeper").unwrap().stat().cversion, -2);
    assert_eq!(t.descendant_count("/"), 3);
}

#[test]
fn create_sets_stats_and_parent_cversion() {
    let mut h = Harness::new();
    h.create(1, "/a", 0).unwrap();
    let a = h.stat("/a");
    assert_eq!((a.czxid, a.mzxid, a.pzxid, a.version, a.cversion), (1, 1, 1, 0, 0));
    assert_eq!((a.ctime, a.data_length), (1001, 1));
    h.create(1, "/a/b", 0).unwrap();
    let a = h.stat("/a");
    assert_eq!((a.mzxid, a.pzxid, a.cversion, a.num_children), (1, 2, 1, 1));
    h.delete("/a/b", -1).unwrap();
    let a = h.stat("/a");
    assert_eq!((a.pzxid, a.cversion, a.num_children), (3, 2, 0));
}

#[test]
fn sequential_names_come_from_parent_cversion() {
    let mut h = Harness::new();
    h.create(1, "/q", 0).unwrap();
    assert_eq!(h.create(1, "/q/n-", 2).unwrap(), "/q/n-0000000000");
    assert_eq!(h.create(1, "/q/n-", 2).unwrap(), "/q/n-0000000001");
    h.create(1, "/q/x", 0).unwrap();
    assert_eq!(h.create(1, "/q/", 2).unwrap(), "/q/0000000003");
}

#[test]
fn create_errors_in_zookeeper_order() {
    let mut h = Harness::new();
    assert_eq!(h.create(1, "/a/b", 0), Err(ErrorCode::NoNode));
    assert_eq!(h.create(1, "/a/", 0), Err(ErrorCode::NoNode));
    h.create(1, "/a", 0).unwrap();
    assert_eq!(h.create(1, "/a", 0), Err(ErrorCode::NodeExists));
    assert_eq!(h.create(1, "/a/", 0), Err(ErrorCode::BadArguments));
    assert_eq!(h.create(1, "/", 0), Err(ErrorCode::NodeExists));
    assert_eq!(h.create(1, "/zookeeper", 0), Err(ErrorCode::NodeExists));
    assert_eq!(h.create(1, "/a/.", 0), Err(ErrorCode::BadArguments));
    assert_eq!(h.create(1, "/a/./b", 0), Err(ErrorCode::NoNode));
    assert_eq!(h.create(1, "/a/x", 9), Err(ErrorCode::BadArguments));
    h.create(7, "/e", 1).unwrap();
    assert_eq!(h.create(7, "/e/c", 0), Err(ErrorCode::NoChildrenForEphemerals));
    let c = caller(1);
    let mut bad_acl = create_req("/z", 0);
    bad_acl.acl.clear();
    assert_eq!(Prep::new(&h.tree, &c, h.settings).create(OpCode::Create, &bad_acl), Err(ErrorCode::InvalidAcl));
}

#[test]
fn ttl_needs_extended_types() {
    let mut h = Harness::new();
    h.settings.extended_types = false;
    let c = caller(1);
    let mut req = create_req("/t", 5);
    req.ttl = 100;
    assert_eq!(Prep::new(&h.tree, &c, h.settings).create(OpCode::CreateTtl, &req), Err(ErrorCode::Unimplemented));
    h.settings.extended_types = true;
    let txn = Prep::new(&h.tree, &c, h.settings).create(OpCode::CreateTtl, &req).unwrap();
    assert_eq!(EphemeralType::of(txn.ephemeral_owner), EphemeralType::Ttl(100));
    req.ttl = 0;
    assert_eq!(Prep::new(&h.tree, &c, h.settings).create(OpCode::CreateTtl, &req), Err(ErrorCode::BadArguments));
}

#[test]
fn delete_errors() {
    let mut h = Harness::new();
    h.create(1, "/a", 0).unwrap();
    h.create(1, "/a/b", 0).unwrap();
    assert_eq!(h.delete("/a", -1), Err(ErrorCode::NotEmpty));
    assert_eq!(h.delete("/a/b", 5), Err(ErrorCode::BadVersion));
    assert_eq!(h.delete("/nope", -1), Err(ErrorCode::NoNode));
    assert_eq!(h.delete("/zookeeper", -1), Err(ErrorCode::BadArguments));
    assert_eq!(h.delete("/", -1), Err(ErrorCode::BadArguments));
    h.delete("/a/b", 0).unwrap();
}

#[test]
fn multi_is_all_or_nothing_with_zookeeper_results() {
    let mut h = Harness::new();
    let c = caller(1);
    let ops = vec![
        MultiOp::Create { op: OpCode::Create, req: create_req("/m", 0) },
        MultiOp::Create { op: OpCode::Create, req: create_req("/m/c", 0) },
        MultiOp::Check { path: "/m".into(), version: 3 },
        MultiOp::Delete { path: "/m/c".into(), version: -1 },
    ];
    let txn = Prep::new(&h.tree, &c, h.settings).multi(&ops);
    let (r, _) = h.commit(1, txn);
    assert_eq!(
        r,
        TxnResult::Multi(vec![
            TxnResult::Error(ErrorCode::Ok),
            TxnResult::Error(ErrorCode::Ok),
            TxnResult::Error(ErrorCode::BadVersion),
            TxnResult::Error(ErrorCode::RuntimeInconsistency),
        ])
    );
    assert!(h.tree.get("/m").is_none());
    let ops = &ops[..2];
    let txn = Prep::new(&h.tree, &c, h.settings).multi(ops);
    let (r, _) = h.commit(1, txn);
    let TxnResult::Multi(rs) = r else { panic!() };
    assert!(matches!(&rs[1], TxnResult::Create { path, .. } if path == "/m/c"));
    assert_eq!(h.stat("/m").num_children, 1);
}

#[test]
fn close_session_removes_ephemerals_and_fires_watches() {
    let mut h = Harness::new();
    h.commit(7, Txn::CreateSession { timeout_ms: 4000, passwd: vec![1; 16] });
    h.create(7, "/e1", 1).unwrap();
    h.create(7, "/e2", 1).unwrap();
    assert_eq!(h.tree.ephemeral_count(), 2);
    h.tree.watches.add_data("/e1", 9);
    h.tree.watches.add_child("/", 9);
    let (_, ev) = h.commit(7, Txn::CloseSession);
    assert!(h.tree.get("/e1").is_none() && h.tree.get("/e2").is_none());
    assert!(!h.tree.session_exists(7));
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[0].event_type, EventType::NodeDeleted);
    assert_eq!(ev[1].event_type, EventType::NodeChildrenChanged);
}

#[test]
fn containers_and_ttls_expire() {
    let mut h = Harness::new();
    let c = caller(1);
    let txn = Prep::new(&h.tree, &c, h.settings).create(OpCode::CreateContainer, &create_req("/c", 4)).unwrap();
    h.commit(1, Txn::Create(txn));
    assert!(h.tree.expired_containers(i64::MAX).is_empty(), "never had children");
    h.create(1, "/c/x", 0).unwrap();
    h.delete("/c/x", -1).unwrap();
    assert_eq!(h.tree.expired_containers(0), vec!["/c".to_string()]);
    let mut req = create_req("/t", 5);
    req.ttl = 50;
    let txn = Prep::new(&h.tree, &c, h.settings).create(OpCode::CreateTtl, &req).unwrap();
    h.commit(1, Txn::Create(txn));
    let mtime = h.stat("/t").mtime;
    assert_eq!(h.tree.expired_containers(mtime + 50), vec!["/c".to_string()]);
    assert_eq!(h.tree.expired_containers(mtime + 51), vec!["/c".to_string(), "/t".to_string()]);
}

#[test]
fn pipelined_writes_see_outstanding_changes() {
    let mut h = Harness::new();
    let c = caller(1);
    let mut out = Outstanding::default();
    // create /p, then create /p/q and a sequential child, before anything is applied.
    let mut txns = vec![];
    for (zxid, (path, flags)) in [(1, ("/p", 0)), (2, ("/p/q", 0)), (3, ("/p/s-", 2))] {
        let mut prep = Prep::with_outstanding(&h.tree, &c, h.settings, &out);
        let txn = prep.create(OpCode::Create, &create_req(path, flags)).unwrap();
        out.record(zxid, prep.into_changes());
        txns.push(txn);
    }
    assert_eq!(txns[2].path, "/p/s-0000000001");
    assert!(h.tree.get("/p").is_none(), "nothing applied yet");
    let mut prep = Prep::with_outstanding(&h.tree, &c, h.settings, &out);
    assert_eq!(prep.delete("/p", -1), Err(ErrorCode::NotEmpty));
    for txn in txns {
        h.commit(1, Txn::Create(txn));
        out.applied(h.zxid);
    }
    assert!(out.is_empty());
    assert_eq!(h.stat("/p").num_children, 2);
}

#[test]
fn a_closing_session_deletes_its_ephemerals_for_later_preps() {
    let mut h = Harness::new();
    h.commit(7, Txn::CreateSession { timeout_ms: 4000, passwd: vec![1; 16] });
    h.create(7, "/applied", 1).unwrap();
    let owner = caller(7);
    let other = caller(9);
    let mut out = Outstanding::default();
    // An ephemeral create still outstanding when the session closes.
    let mut prep = Prep::with_outstanding(&h.tree, &owner, h.settings, &out);
    let pending = prep.create(OpCode::Create, &create_req("/pending", 1)).unwrap();
    out.record(h.zxid + 1, prep.into_changes());
    let mut prep = Prep::with_outstanding(&h.tree, &owner, h.settings, &out);
    let close = prep.close_session(7);
    out.record(h.zxid + 2, prep.into_changes());
    // Another session now sees both gone, and the root without them.
    let mut prep = Prep::with_outstanding(&h.tree, &other, h.settings, &out);
    assert_eq!(prep.delete("/applied", -1), Err(ErrorCode::NoNode));
    assert_eq!(prep.delete("/pending", -1), Err(ErrorCode::NoNode));
    assert!(prep.create(OpCode::Create, &create_req("/applied", 0)).is_ok());
    h.commit(7, Txn::Create(pending));
    h.commit(7, close);
    assert!(h.tree.get("/applied").is_none() && h.tree.get("/pending").is_none());
}

#[test]
fn a_pending_container_delete_is_seen_by_later_preps() {
    let mut h = Harness::new();
    let c = caller(1);
    let txn = Prep::new(&h.tree, &c, h.settings).create(OpCode::CreateContainer, &create_req("/c", 4)).unwrap();
    h.commit(1, Txn::Create(txn));
    h.create(1, "/c/x", 0).unwrap();
    h.delete("/c/x", -1).unwrap();
    let mut out = Outstanding::default();
    let mut prep = Prep::with_outstanding(&h.tree, &c, h.settings, &out);
    assert!(prep.delete_container("/c").is_some());
    out.record(h.zxid + 1, prep.into_changes());
    let mut prep = Prep::with_outstanding(&h.tree, &c, h.settings, &out);
    assert_eq!(prep.create(OpCode::Create, &create_req("/c/m", 0)), Err(ErrorCode::NoNode));
    assert!(prep.delete_container("/c").is_none(), "the reaper proposed the same delete twice");
}
