//! Every client opcode through the third-party `zookeeper-client` crate, with the exact
//! Stat bookkeeping ZooKeeper does.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use corral_proto::{MultiHeader, Reader, Stat as RawStat, Writer};
use zk::{Acls, AddWatchMode, CreateMode, EventType, MultiReadResult, MultiWriteResult, Stat};
use zookeeper_client as zk;

fn persistent() -> zk::CreateOptions<'static> {
    CreateMode::Persistent.with_acls(Acls::anyone_all())
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn assert_recent(ms: i64) {
    let now = now_ms();
    assert!((now - 120_000..=now + 5_000).contains(&ms), "time {ms} is not close to now {now}");
}

// ZooKeeper stores containers and TTL nodes with a marker in ephemeralOwner
// (Long.MIN_VALUE, and 0xFF<<56 | ttl) but shows clients 0 for both
// (DataTree.getClientEphemeralOwner).

#[tokio::test]
async fn create_persistent_stat_fields() {
    let server = Server::start();
    let client = server.connect().await;
    let (stat, seq) = client.create("/p", b"hello", &persistent()).await.unwrap();
    assert_eq!(seq.into_i64(), -1);
    assert!(stat.czxid > 0);
    assert_eq!(stat.mzxid, stat.czxid);
    assert_eq!(stat.pzxid, stat.czxid, "a new node's pzxid is its czxid");
    assert_eq!(stat.ctime, stat.mtime);
    assert_recent(stat.ctime);
    assert_eq!(stat.version, 0);
    assert_eq!(stat.cversion, 0);
    assert_eq!(stat.aversion, 0);
    assert_eq!(stat.ephemeral_owner, 0);
    assert_eq!(stat.data_length, 5);
    assert_eq!(stat.num_children, 0);

    // get_data, exists and get_children2 all report the same stat.
    let (data, got) = client.get_data("/p").await.unwrap();
    assert_eq!(data, b"hello");
    assert_eq!(got, stat);
    assert_eq!(client.check_stat("/p").await.unwrap(), Some(stat));
    let (children, got) = client.get_children("/p").await.unwrap();
    assert!(children.is_empty());
    assert_eq!(got, stat);

    // Empty data.
    let (stat, _) = client.create("/empty", b"", &persistent()).await.unwrap();
    assert_eq!(stat.data_length, 0);
    assert_eq!(client.get_data("/empty").await.unwrap().0, b"");
}

#[tokio::test]
async fn child_create_and_delete_touch_parent_cversion_and_pzxid_only() {
    let server = Server::start();
    let client = server.connect().await;
    let (parent0, _) = client.create("/parent", b"pd", &persistent()).await.unwrap();

    let (child, _) = client.create("/parent/c1", b"", &persistent()).await.unwrap();
    assert!(child.czxid > parent0.czxid);
    let (_, parent1) = client.get_data("/parent").await.unwrap();
    assert_eq!(parent1.cversion, 1);
    assert_eq!(parent1.pzxid, child.czxid);
    assert_eq!(parent1.num_children, 1);
    assert_eq!(parent1.mzxid, parent0.mzxid, "creating a child does not change the parent's mzxid");
    assert_eq!(parent1.mtime, parent0.mtime);
    assert_eq!(parent1.version, 0);
    assert_eq!(parent1.czxid, parent0.czxid);
    assert_eq!(parent1.data_length, 2);

    client.create("/parent/c2", b"", &persistent()).await.unwrap();
    client.delete("/parent/c1", None).await.unwrap();
    let (children, parent2) = client.get_children("/parent").await.unwrap();
    assert_eq!(children, vec!["c2".to_string()]);
    assert_eq!(parent2.cversion, 3, "create, create, delete");
    assert_eq!(parent2.num_children, 1);
    assert!(parent2.pzxid > parent1.pzxid, "delete moves pzxid");
    assert_eq!(parent2.mzxid, parent0.mzxid);

    // Deleting the child bumped the zxid: the next write sees a larger one.
    let (c3, _) = client.create("/parent/c3", b"", &persistent()).await.unwrap();
    assert!(c3.czxid > parent2.pzxid);
}

#[tokio::test]
async fn set_data_bumps_version_mzxid_mtime() {
    let server = Server::start();
    let client = server.connect().await;
    let (s0, _) = client.create("/d", b"one", &persistent()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let s1 = client.set_data("/d", b"second", Some(0)).await.unwrap();
    assert_eq!(s1.version, 1);
    assert!(s1.mzxid > s0.mzxid);
    assert_eq!(s1.czxid, s0.czxid);
    assert_eq!(s1.pzxid, s0.pzxid, "setData does not touch pzxid");
    assert_eq!(s1.ctime, s0.ctime);
    assert!(s1.mtime >= s0.mtime);
    assert_eq!(s1.data_length, 6);
    assert_eq!(s1.cversion, 0);
    assert_eq!(s1.aversion, 0);
    let (data, got) = client.get_data("/d").await.unwrap();
    assert_eq!(data, b"second");
    assert_eq!(got, s1);

    // Unconditional set (-1).
    let s2 = client.set_data("/d", b"", None).await.unwrap();
    assert_eq!(s2.version, 2);
    assert_eq!(s2.data_length, 0);
    // Same data still counts as a change.
    let s3 = client.set_data("/d", b"", Some(2)).await.unwrap();
    assert_eq!(s3.version, 3);
    assert!(s3.mzxid > s2.mzxid);
}

#[tokio::test]
async fn delete_with_and_without_version() {
    let server = Server::start();
    let client = server.connect().await;
    client.create("/del", b"", &persistent()).await.unwrap();
    client.set_data("/del", b"x", None).await.unwrap();
    assert_eq!(client.delete("/del", Some(0)).await, Err(zk::Error::BadVersion));
    client.delete("/del", Some(1)).await.unwrap();
    assert_eq!(client.check_stat("/del").await.unwrap(), None);
    client.create("/del2", b"", &persistent()).await.unwrap();
    client.delete("/del2", None).await.unwrap();
    assert_eq!(client.get_data("/del2").await, Err(zk::Error::NoNode));
}

#[tokio::test]
async fn ephemeral_nodes_belong_to_the_session() {
    let server = Server::start();
    let client = server.connect().await;
    let other = server.connect().await;
    let (stat, _) = client
        .create("/eph", b"e", &CreateMode::Ephemeral.with_acls(Acls::anyone_all()))
        .await
        .unwrap();
    assert_eq!(stat.ephemeral_owner, client.session_id().0);
    assert_ne!(stat.ephemeral_owner, 0);
    // `other` may be on another member of an ensemble: sync before reading another's write.
    other.sync("/eph").await.unwrap();
    assert_eq!(other.get_data("/eph").await.unwrap().1.ephemeral_owner, client.session_id().0);

    // getEphemerals lists this session's ephemerals only, by string prefix.
    client.create("/ephx", b"", &CreateMode::Ephemeral.with_acls(Acls::anyone_all())).await.unwrap();
    client.create("/dir", b"", &persistent()).await.unwrap();
    client.create("/dir/e1", b"", &CreateMode::Ephemeral.with_acls(Acls::anyone_all())).await.unwrap();
    other.create("/dir/e2", b"", &CreateMode::Ephemeral.with_acls(Acls::anyone_all())).await.unwrap();
    let mut all = client.list_ephemerals("/").await.unwrap();
    all.sort();
    assert_eq!(all, vec!["/dir/e1", "/eph", "/ephx"]);
    let mut eph = client.list_ephemerals("/eph").await.unwrap();
    eph.sort();
    assert_eq!(eph, vec!["/eph", "/ephx"]);
    assert_eq!(client.list_ephemerals("/dir").await.unwrap(), vec!["/dir/e1"]);
    assert_eq!(other.list_ephemerals("/").await.unwrap(), vec!["/dir/e2"]);
    assert!(client.list_ephemerals("/nothing").await.unwrap().is_empty());

    // Closing the session (dropping every handle) removes its ephemerals.
    drop(client);
    assert!(
        eventually(Duration::from_secs(5), || async { other.check_stat("/eph").await.unwrap().is_none() }).await,
        "ephemeral survived close"
    );
    assert_eq!(other.check_stat("/dir/e1").await.unwrap(), None);
    assert!(other.check_stat("/dir/e2").await.unwrap().is_some());
    let (children, parent) = other.get_children("/dir").await.unwrap();
    assert_eq!(children, vec!["e2"]);
    assert_eq!(parent.cversion, 3, "two creates and the session's delete");
}

#[tokio::test]
async fn sequential_suffix_comes_from_parent_cversion() {
    let server = Server::start();
    let client = server.connect().await;
    client.create("/seq", b"", &persistent()).await.unwrap();
    let ps = CreateMode::PersistentSequential.with_acls(Acls::anyone_all());
    let es = CreateMode::EphemeralSequential.with_acls(Acls::anyone_all());

    // ZooKeeper keeps, per parent, the number of children ever created (internally the
    // "cversion"); that count is the sequence suffix. The cversion clients see is
    // creates + deletes (DataNode.copyStat reports 2 * creates - numChildren), so the
    // suffix equals the visible cversion only until a child is deleted.
    let cversion = |c: &zk::Client| {
        let c = c.clone();
        async move { c.get_data("/seq").await.unwrap().1.cversion }
    };
    let (_, s0) = client.create("/seq/n-", b"", &ps).await.unwrap();
    assert_eq!(s0.into_i64(), 0);
    assert_eq!(s0.to_string(), "0000000000");
    client.create("/seq/plain", b"", &persistent()).await.unwrap();
    assert_eq!(cversion(&client).await, 2);
    let (stat, s2) = client.create("/seq/e-", b"", &es).await.unwrap();
    assert_eq!(s2.into_i64(), 2);
    assert_eq!(stat.ephemeral_owner, client.session_id().0);
    client.delete("/seq/plain", None).await.unwrap();
    assert_eq!(cversion(&client).await, 4, "a delete counts in the visible cversion");
    let (_, s3) = client.create("/seq/", b"", &ps).await.unwrap();
    assert_eq!(s3.into_i64(), 3, "but not in the sequence: 3 children were created before");
    assert_eq!(cversion(&client).await, 5);
    client.create("/seq/p2", b"", &persistent()).await.unwrap();
    client.delete("/seq/p2", None).await.unwrap();
    let (_, s5) = client.create("/seq/n-", b"", &ps).await.unwrap();
    assert_eq!(s5.into_i64(), 5);
    assert_eq!(cversion(&client).await, 8);

    let mut children = client.list_children("/seq").await.unwrap();
    children.sort();
    assert_eq!(children, vec!["0000000003", "e-0000000002", "n-0000000000", "n-0000000005"]);
    assert!(client.check_stat("/seq/n-0000000000").await.unwrap().is_some());

    // The sequence is per parent.
    client.create("/seq2", b"", &persistent()).await.unwrap();
    let (_, s) = client.create("/seq2/x", b"", &ps).await.unwrap();
    assert_eq!(s.into_i64(), 0);
}

#[tokio::test]
async fn container_nodes() {
    let server = Server::start_with(&["znode.container.checkIntervalMs=100"]);
    let client = server.connect().await;
    let (stat, _) = client
        .create("/box", b"c", &CreateMode::Container.with_acls(Acls::anyone_all()))
        .await
        .unwrap();
    assert_eq!(stat.ephemeral_owner, 0, "clients see 0 as a container's ephemeralOwner");
    assert_eq!(client.get_data("/box").await.unwrap().1, stat);
    assert_eq!(stat.version, 0);
    assert_eq!(stat.data_length, 1);

    // A container that never had a child is left alone.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(client.check_stat("/box").await.unwrap().is_some(), "container without ever a child was removed");

    // Once its last child goes, the server deletes it.
    client.create("/box/item", b"", &persistent()).await.unwrap();
    client.delete("/box/item", None).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async { client.check_stat("/box").await.unwrap().is_none() }).await,
        "empty container was not deleted"
    );
}

#[tokio::test]
async fn ttl_nodes_when_enabled() {
    let server = Server::start_with(&["extendedTypesEnabled=true", "znode.container.checkIntervalMs=100"]);
    let client = server.connect().await;
    let opts = CreateMode::Persistent.with_acls(Acls::anyone_all()).with_ttl(Duration::from_millis(300));
    let (stat, _) = client.create("/ttl", b"t", &opts).await.unwrap();
    assert_eq!(stat.ephemeral_owner, 0, "clients see 0 as a TTL node's ephemeralOwner");
    assert_eq!(client.get_data("/ttl").await.unwrap().1, stat);
    assert_eq!(stat.version, 0);
    let seq_opts = CreateMode::PersistentSequential.with_acls(Acls::anyone_all()).with_ttl(Duration::from_secs(3600));
    let (stat, seq) = client.create("/ttlseq-", b"", &seq_opts).await.unwrap();
    assert_eq!(stat.ephemeral_owner, 0);
    let long_lived = format!("/ttlseq-{seq}");

    // Unmodified for longer than its TTL and childless: removed.
    assert!(
        eventually(Duration::from_secs(5), || async { client.check_stat("/ttl").await.unwrap().is_none() }).await,
        "expired TTL node was not deleted"
    );
    assert!(client.check_stat(&long_lived).await.unwrap().is_some());
}

#[tokio::test]
async fn ttl_is_unimplemented_when_extended_types_are_off() {
    let server = Server::start();
    let client = server.connect().await;
    let opts = CreateMode::Persistent.with_acls(Acls::anyone_all()).with_ttl(Duration::from_secs(10));
    assert_eq!(client.create("/ttl", b"", &opts).await, Err(zk::Error::Unimplemented));
    assert_eq!(client.check_stat("/ttl").await.unwrap(), None);
}

#[tokio::test]
async fn create_without_stat_returns_path_only() {
    // Opcode 1 (create) answers with the path alone; 15 (create2) adds the stat.
    let server = Server::start();
    let (mut raw, _) = server.raw_session(10_000).await;
    let r = raw.call(op::CREATE, &body_create("/c1", b"abc", 0)).await;
    assert_eq!(r.header.err, 0);
    let mut rd = r.reader();
    assert_eq!(rd.read_string().unwrap(), "/c1");
    assert_eq!(rd.remaining(), 0);
    let r2 = raw.call(op::CREATE2, &body_create("/c2", b"abcd", 2)).await;
    assert_eq!(r2.header.err, 0);
    let mut rd = r2.reader();
    assert_eq!(rd.read_string().unwrap(), "/c20000000001");
    let stat = RawStat::decode(&mut rd).unwrap();
    assert_eq!(rd.remaining(), 0);
    assert_eq!(stat.data_length, 4);
    assert_eq!(stat.czxid, r2.header.zxid, "the reply header carries the txn's zxid");
    assert_eq!(r.header.zxid + 1, r2.header.zxid);
}

#[tokio::test]
async fn acl_get_and_set() {
    let server = Server::start();
    let client = server.connect().await;
    let (s0, _) = client.create("/acl", b"", &persistent()).await.unwrap();
    let (acl, stat) = client.get_acl("/acl").await.unwrap();
    assert_eq!(acl.len(), 1);
    assert_eq!(acl[0].scheme(), "world");
    assert_eq!(acl[0].id(), "anyone");
    assert_eq!(acl[0].permission(), zk::Permission::ALL);
    assert_eq!(stat, s0);

    let read_admin = zk::Permission::READ | zk::Permission::ADMIN;
    let read_only = [zk::Acl::new(read_admin, zk::AuthId::anyone())];
    let s1 = client.set_acl("/acl", &read_only, Some(0)).await.unwrap();
    assert_eq!(s1.aversion, 1);
    assert_eq!(s1.version, 0);
    assert_eq!(s1.cversion, 0);
    assert_eq!(s1.mzxid, s0.mzxid, "setACL does not change mzxid");
    assert_eq!(s1.mtime, s0.mtime);
    let (acl, stat) = client.get_acl("/acl").await.unwrap();
    assert_eq!(acl[0].permission(), read_admin);
    assert_eq!(stat.aversion, 1);
    assert_eq!(client.set_acl("/acl", &read_only, Some(0)).await, Err(zk::Error::BadVersion));
    // Reads still work, writes are refused.
    client.get_data("/acl").await.unwrap();
    assert_eq!(client.set_data("/acl", b"x", None).await, Err(zk::Error::NoAuth));
    // Without ADMIN, setACL is refused before the version is looked at.
    let none = [zk::Acl::new(zk::Permission::READ, zk::AuthId::anyone())];
    let s2 = client.set_acl("/acl", &none, Some(1)).await.unwrap();
    assert_eq!(s2.aversion, 2);
    assert_eq!(client.set_acl("/acl", &none, Some(0)).await, Err(zk::Error::NoAuth));

    // The root and /zookeeper are world:anyone with all permissions.
    let (acl, _) = client.get_acl("/").await.unwrap();
    assert_eq!(acl[0].scheme(), "world");
    assert_eq!(acl[0].permission(), zk::Permission::ALL);
}

#[tokio::test]
async fn children_listing_and_counts() {
    let server = Server::start();
    let client = server.connect().await;
    client.create("/t", b"", &persistent()).await.unwrap();
    for name in ["a", "b", "c"] {
        client.create(&format!("/t/{name}"), b"", &persistent()).await.unwrap();
    }
    client.create("/t/a/x", b"", &persistent()).await.unwrap();
    client.create("/t/a/x/y", b"", &persistent()).await.unwrap();

    let mut names = client.list_children("/t").await.unwrap();
    names.sort();
    assert_eq!(names, vec!["a", "b", "c"]);
    let (mut names2, stat) = client.get_children("/t").await.unwrap();
    names2.sort();
    assert_eq!(names2, names);
    assert_eq!(stat.num_children, 3);
    assert_eq!(stat.cversion, 3);

    assert_eq!(client.count_descendants_number("/t").await.unwrap(), 5);
    assert_eq!(client.count_descendants_number("/t/a").await.unwrap(), 2);
    assert_eq!(client.count_descendants_number("/t/b").await.unwrap(), 0);
    assert_eq!(client.count_descendants_number("/nope").await, Err(zk::Error::NoNode));

    // The root lists /zookeeper too.
    let mut root = client.list_children("/").await.unwrap();
    root.sort();
    assert_eq!(root, vec!["t", "zookeeper"]);
}

#[tokio::test]
async fn sync_and_whoami() {
    let server = Server::start();
    let client = server.connect().await;
    client.sync("/").await.unwrap();
    client.create("/s", b"", &persistent()).await.unwrap();
    client.sync("/s").await.unwrap();

    let users = client.list_auth_users().await.unwrap();
    assert_eq!(users, vec![zk::AuthUser::new("ip", "127.0.0.1")]);
    client.auth("digest", b"alice:secret").await.unwrap();
    let mut users = client.list_auth_users().await.unwrap();
    users.sort_by(|a, b| a.scheme().cmp(b.scheme()));
    assert_eq!(users, vec![zk::AuthUser::new("digest", "alice"), zk::AuthUser::new("ip", "127.0.0.1")]);
}

#[tokio::test]
async fn digest_auth_and_creator_acl() {
    let server = Server::start();
    let alice = server.connect_with(zk::Client::connector().with_auth("digest", b"alice:pw")).await;
    let (_, _) = alice.create("/mine", b"m", &CreateMode::Persistent.with_acls(Acls::creator_all())).await.unwrap();
    let (acl, _) = alice.get_acl("/mine").await.unwrap();
    assert_eq!(acl.len(), 1);
    assert_eq!(acl[0].scheme(), "digest");
    assert_eq!(acl[0].id(), digest_id("alice", "pw"));
    assert_eq!(acl[0].permission(), zk::Permission::ALL);
    assert_eq!(alice.get_data("/mine").await.unwrap().0, b"m");

    let anon = server.connect().await;
    assert_eq!(anon.get_data("/mine").await, Err(zk::Error::NoAuth));
    anon.auth("digest", b"alice:pw").await.unwrap();
    assert_eq!(anon.get_data("/mine").await.unwrap().0, b"m");
}

#[tokio::test]
async fn multi_success_applies_every_op() {
    let server = Server::start();
    let client = server.connect().await;
    client.create("/m", b"", &persistent()).await.unwrap();
    client.create("/m/gone", b"", &persistent()).await.unwrap();

    let mut w = client.new_multi_writer();
    w.add_check_version("/m", 0).unwrap();
    w.add_create("/m/a", b"A", &persistent()).unwrap();
    w.add_create("/m/s-", b"", &CreateMode::PersistentSequential.with_acls(Acls::anyone_all())).unwrap();
    w.add_set_data("/m/a", b"AA", Some(0)).unwrap();
    w.add_delete("/m/gone", None).unwrap();
    let results = w.commit().await.unwrap();
    assert_eq!(results.len(), 5);
    assert_eq!(results[0], MultiWriteResult::Check);
    let MultiWriteResult::Create { path, stat: a_stat } = &results[1] else { panic!("{results:?}") };
    assert_eq!(path, "/m/a");
    let MultiWriteResult::Create { path: seq_path, .. } = &results[2] else { panic!("{results:?}") };
    assert_eq!(seq_path, "/m/s-0000000002", "cversion was 1 before the multi, 2 after /m/a");
    let MultiWriteResult::SetData { stat: set_stat } = &results[3] else { panic!("{results:?}") };
    assert_eq!(results[4], MultiWriteResult::Delete);

    // Every op of a multi shares one zxid.
    assert_eq!(set_stat.version, 1);
    assert_eq!(set_stat.mzxid, set_stat.czxid);
    if a_stat.czxid == -1 {
        // ZooKeeper before 3.9 answers a create2 inside a multi without its stat
        // (ZOOKEEPER-4026); the crate reports that as an invalid stat.
        assert!(is_zookeeper(), "create inside multi answered without a stat");
    } else {
        assert_eq!(set_stat.czxid, a_stat.czxid);
        assert_eq!(a_stat.version, 0);
        assert_eq!(a_stat.data_length, 1);
    }
    let (data, stat) = client.get_data("/m/a").await.unwrap();
    assert_eq!(data, b"AA");
    assert_eq!(stat, *set_stat);
    assert_eq!(client.check_stat("/m/gone").await.unwrap(), None);
    let (_, parent) = client.get_data("/m").await.unwrap();
    assert_eq!(parent.cversion, 4, "1 before + create + create + delete");
    assert_eq!(parent.pzxid, set_stat.czxid);

    // CheckWriter: a check in front.
    let mut cw = client.new_check_writer("/m/a", Some(1)).unwrap();
    cw.add_set_data("/m/a", b"AAA", Some(1)).unwrap();
    let res = cw.commit().await.unwrap();
    assert!(matches!(res[0], MultiWriteResult::SetData { .. }));
}

#[tokio::test]
async fn multi_failure_applies_nothing() {
    let server = Server::start();
    let client = server.connect().await;
    client.create("/f", b"orig", &persistent()).await.unwrap();
    let (_, before) = client.get_data("/f").await.unwrap();

    let mut w = client.new_multi_writer();
    w.add_create("/f/new", b"", &persistent()).unwrap();
    w.add_set_data("/f", b"changed", None).unwrap();
    w.add_check_version("/f", 7).unwrap();
    w.add_delete("/f/never", None).unwrap();
    match w.commit().await {
        Err(zk::MultiWriteError::OperationFailed { index, source }) => {
            assert_eq!(index, 2);
            assert_eq!(source, zk::Error::BadVersion);
        }
        other => panic!("expected a failed multi, got {other:?}"),
    }
    let (data, after) = client.get_data("/f").await.unwrap();
    assert_eq!(data, b"orig");
    assert_eq!(after, before);
    assert_eq!(client.check_stat("/f/new").await.unwrap(), None);

    // The check on a missing node fails with NoNode.
    let mut w = client.new_multi_writer();
    w.add_check_version("/missing", -1).unwrap();
    match w.commit().await {
        Err(zk::MultiWriteError::OperationFailed { index: 0, source: zk::Error::NoNode }) => {}
        other => panic!("{other:?}"),
    }
}

/// Encodes a multi request from (op, body) pairs.
fn multi_body(ops: &[(i32, Vec<u8>)]) -> Vec<u8> {
    let mut w = Writer::new();
    for (op, body) in ops {
        MultiHeader { op: *op, done: false, err: -1 }.encode(&mut w);
        w.buf.extend_from_slice(body);
    }
    MultiHeader::END.encode(&mut w);
    w.into_inner()
}

#[tokio::test]
async fn failed_multi_reports_per_op_results_on_the_wire() {
    let server = Server::start();
    let (mut raw, _) = server.raw_session(10_000).await;
    assert_eq!(raw.call(op::CREATE, &body_create("/r", b"", 0)).await.header.err, 0);
    let body = multi_body(&[
        (op::CREATE, body_create("/r/a", b"", 0)),
        (op::SET_DATA, body_set_data("/nope", b"x", -1)),
        (op::DELETE, body_path_i32("/r", -1)),
    ]);
    let reply = raw.call(op::MULTI, &body).await;
    // The reply header of a failed multi still says 0: the failure is in the results.
    assert_eq!(reply.header.err, 0);
    let mut rd = reply.reader();
    let mut results = Vec::new();
    loop {
        let h = MultiHeader::decode(&mut rd).unwrap();
        if h.done {
            break;
        }
        assert_eq!(h.op, -1, "a failed multi answers with error results only");
        let code = rd.read_i32().unwrap();
        results.push(code);
    }
    assert_eq!(rd.remaining(), 0);
    // Ops before the failure: 0; the failure: its code; after it: RuntimeInconsistency.
    assert_eq!(results, vec![0, err::NO_NODE, -2]);
    let r = raw.call(op::EXISTS, &body_path_watch("/r/a", false)).await;
    assert_eq!(r.header.err, err::NO_NODE);

    // A successful multi answers with one typed result per op.
    let body = multi_body(&[
        (op::CREATE, body_create("/r/b", b"bb", 0)),
        (op::CHECK, body_path_i32("/r/b", 0)),
        (op::SET_DATA, body_set_data("/r/b", b"x", 0)),
        (op::DELETE, body_path_i32("/r/b", 1)),
    ]);
    let reply = raw.call(op::MULTI, &body).await;
    assert_eq!(reply.header.err, 0);
    let mut rd = reply.reader();
    let h = MultiHeader::decode(&mut rd).unwrap();
    assert_eq!((h.op, h.done, h.err), (op::CREATE, false, 0));
    assert_eq!(rd.read_string().unwrap(), "/r/b");
    let h = MultiHeader::decode(&mut rd).unwrap();
    assert_eq!((h.op, h.done, h.err), (op::CHECK, false, 0));
    let h = MultiHeader::decode(&mut rd).unwrap();
    assert_eq!((h.op, h.done, h.err), (op::SET_DATA, false, 0));
    let stat = RawStat::decode(&mut rd).unwrap();
    assert_eq!(stat.version, 1);
    assert_eq!(stat.czxid, reply.header.zxid);
    let h = MultiHeader::decode(&mut rd).unwrap();
    assert_eq!((h.op, h.done, h.err), (op::DELETE, false, 0));
    let h = MultiHeader::decode(&mut rd).unwrap();
    assert!(h.done);
    assert_eq!(rd.remaining(), 0);

    // An empty multi succeeds with an empty result list.
    let reply = raw.call(op::MULTI, &multi_body(&[])).await;
    assert_eq!(reply.header.err, 0);
    let h = MultiHeader::decode(&mut Reader::new(&reply.body)).unwrap();
    assert!(h.done);
}

#[tokio::test]
async fn multi_read_reports_errors_per_op() {
    let server = Server::start();
    let client = server.connect().await;
    client.create("/mr", b"data", &persistent()).await.unwrap();
    client.create("/mr/k", b"", &persistent()).await.unwrap();
    let mut r = client.new_multi_reader();
    r.add_get_data("/mr").unwrap();
    r.add_get_children("/mr").unwrap();
    r.add_get_data("/mr/missing").unwrap();
    r.add_get_children("/missing").unwrap();
    let results = r.commit().await.unwrap();
    assert_eq!(results.len(), 4);
    let MultiReadResult::Data { data, stat } = &results[0] else { panic!("{results:?}") };
    assert_eq!(data, b"data");
    assert_eq!(stat.num_children, 1);
    let MultiReadResult::Children { children } = &results[1] else { panic!("{results:?}") };
    assert_eq!(children, &vec!["k".to_string()]);
    assert!(matches!(results[2], MultiReadResult::Error { err: zk::Error::NoNode }), "{results:?}");
    assert!(matches!(results[3], MultiReadResult::Error { err: zk::Error::NoNode }), "{results:?}");
}

#[tokio::test]
async fn persistent_and_recursive_watches_through_the_client() {
    let server = Server::start();
    let client = server.connect().await;
    let writer = server.connect().await;
    client.create("/pw", b"", &persistent()).await.unwrap();

    // Separate sessions: ZooKeeper keeps a single watch mode per path and connection, so a
    // recursive watch added on the same session would replace the persistent one.
    let client2 = server.connect().await;
    let mut node = client.watch("/pw", AddWatchMode::Persistent).await.unwrap();
    let mut tree = client2.watch("/pw", AddWatchMode::PersistentRecursive).await.unwrap();

    writer.set_data("/pw", b"1", None).await.unwrap();
    let e = within(Duration::from_secs(5), "persistent data event", node.changed()).await;
    assert_eq!((e.event_type, e.path.as_str()), (EventType::NodeDataChanged, "/pw"));
    let e = within(Duration::from_secs(5), "recursive data event", tree.changed()).await;
    assert_eq!((e.event_type, e.path.as_str()), (EventType::NodeDataChanged, "/pw"));

    writer.create("/pw/kid", b"", &persistent()).await.unwrap();
    let e = within(Duration::from_secs(5), "persistent child event", node.changed()).await;
    assert_eq!((e.event_type, e.path.as_str()), (EventType::NodeChildrenChanged, "/pw"));
    let e = within(Duration::from_secs(5), "recursive create event", tree.changed()).await;
    assert_eq!((e.event_type, e.path.as_str()), (EventType::NodeCreated, "/pw/kid"));

    // Still armed after firing.
    writer.set_data("/pw", b"2", None).await.unwrap();
    let e = within(Duration::from_secs(5), "second persistent event", node.changed()).await;
    assert_eq!(e.event_type, EventType::NodeDataChanged);
    let e = within(Duration::from_secs(5), "second recursive event", tree.changed()).await;
    assert_eq!(e.event_type, EventType::NodeDataChanged);

    // A watch on a node that does not exist yet sees its creation.
    let mut later = client.watch("/later", AddWatchMode::Persistent).await.unwrap();
    writer.create("/later", b"", &persistent()).await.unwrap();
    let e = within(Duration::from_secs(5), "creation event", later.changed()).await;
    assert_eq!((e.event_type, e.path.as_str()), (EventType::NodeCreated, "/later"));
}

#[tokio::test]
async fn dropping_watchers_removes_them_on_the_server() {
    if common::ensemble_size() > 1 {
        eprintln!("skipped: wchs is asked of member 1, which may not be the client's server");
        return;
    }
    let server = Server::start();
    let client = server.connect().await;
    client.create("/rw", b"", &persistent()).await.unwrap();
    let total = |s: &str| -> i64 {
        s.lines().find_map(|l| l.strip_prefix("Total watches:")).unwrap().trim().parse().unwrap()
    };
    let w = client.watch("/rw", AddWatchMode::Persistent).await.unwrap();
    let (_, _, d) = client.get_and_watch_data("/rw").await.unwrap();
    assert!(total(&server.four_letter("wchs")) >= 1);
    drop(w);
    drop(d);
    // The crate sends removeWatches when the last watcher on a path goes away.
    client.sync("/").await.unwrap();
    let gone = eventually(Duration::from_secs(5), || async { total(&server.four_letter("wchs")) == 0 }).await;
    assert!(gone, "watches still registered: {}", server.four_letter("wchs"));
}

#[tokio::test]
async fn close_session_through_the_client() {
    let server = Server::start();
    let client = server.connect().await;
    let observer = server.connect().await;
    client.create("/bye", b"", &CreateMode::Ephemeral.with_acls(Acls::anyone_all())).await.unwrap();
    let mut state = client.state_watcher();
    drop(client);
    let _ = tokio::time::timeout(Duration::from_secs(2), state.changed()).await;
    assert!(
        eventually(Duration::from_secs(5), || async { observer.check_stat("/bye").await.unwrap().is_none() }).await
    );
}

#[tokio::test]
async fn zookeeper_system_nodes() {
    let server = Server::start();
    let client = server.connect().await;
    let (data, stat) = client.get_data("/zookeeper").await.unwrap();
    assert!(data.is_empty());
    assert_eq!(stat.czxid, 0);
    assert_eq!(stat.ephemeral_owner, 0);
    let mut kids = client.list_children("/zookeeper").await.unwrap();
    kids.sort();
    assert_eq!(kids, vec!["config", "quota"]);
    assert!(client.check_stat("/zookeeper/quota").await.unwrap().is_some());
    let (_, config_stat) = client.get_config().await.unwrap();
    assert_eq!(config_stat.czxid, 0);
    let (_, root): (Vec<String>, Stat) = client.get_children("/").await.unwrap();
    assert_eq!(root.czxid, 0);
    assert_eq!(root.num_children, 1);
}
