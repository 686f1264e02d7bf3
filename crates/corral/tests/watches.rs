//! Watches: one-shot data/child/exist watches, persistent and recursive watches, ordering
//! of notifications against replies, removal, and re-registration with setWatches.

mod common;

use std::time::Duration;

use common::*;
use corral_proto::{WatcherEvent, Writer};
use zk::{Acls, AddWatchMode, CreateMode, EventType};
use zookeeper_client as zk;

const QUIET: Duration = Duration::from_millis(400);
const WAIT: Duration = Duration::from_secs(5);

fn persistent() -> zk::CreateOptions<'static> {
    CreateMode::Persistent.with_acls(Acls::anyone_all())
}

fn ev(event_type: i32, path: &str) -> WatcherEvent {
    WatcherEvent { event_type, state: 3, path: path.to_string() }
}

/// Collects every notification that arrives within `QUIET`.
async fn drain(c: &mut RawConn) -> Vec<WatcherEvent> {
    let mut out = Vec::new();
    while let Some(e) = c.next_event(QUIET).await {
        out.push(e);
    }
    out
}

#[tokio::test]
async fn oneshot_watches_through_the_client() {
    let server = Server::start();
    let watcher = server.connect().await;
    let writer = server.connect().await;
    writer.create("/o", b"", &persistent()).await.unwrap();
    // `watcher` may be on another member of an ensemble: sync before reading another's write.
    watcher.sync("/o").await.unwrap();

    // Data watch: fires on setData.
    let (_, _, w) = watcher.get_and_watch_data("/o").await.unwrap();
    writer.set_data("/o", b"1", None).await.unwrap();
    let e = within(WAIT, "data watch", w.changed()).await;
    assert_eq!((e.event_type, e.path.as_str()), (EventType::NodeDataChanged, "/o"));

    // Child watch: fires on a child create, not on the node's data.
    let (_, _, w) = watcher.get_and_watch_children("/o").await.unwrap();
    writer.set_data("/o", b"2", None).await.unwrap();
    writer.create("/o/k", b"", &persistent()).await.unwrap();
    let e = within(WAIT, "child watch", w.changed()).await;
    assert_eq!((e.event_type, e.path.as_str()), (EventType::NodeChildrenChanged, "/o"));

    // Exist watch on a missing node: fires on create.
    let (stat, w) = watcher.check_and_watch_stat("/later").await.unwrap();
    assert!(stat.is_none());
    writer.create("/later", b"", &persistent()).await.unwrap();
    let e = within(WAIT, "exist watch", w.changed()).await;
    assert_eq!((e.event_type, e.path.as_str()), (EventType::NodeCreated, "/later"));

    // Exist watch on an existing node: fires on delete.
    let (stat, w) = watcher.check_and_watch_stat("/later").await.unwrap();
    assert!(stat.is_some());
    writer.delete("/later", None).await.unwrap();
    let e = within(WAIT, "exist watch on delete", w.changed()).await;
    assert_eq!((e.event_type, e.path.as_str()), (EventType::NodeDeleted, "/later"));

    // Data and child watches both see a delete as NodeDeleted.
    writer.create("/gone", b"", &persistent()).await.unwrap();
    watcher.sync("/gone").await.unwrap();
    let (_, _, dw) = watcher.get_and_watch_data("/gone").await.unwrap();
    let (_, cw) = watcher.list_and_watch_children("/gone").await.unwrap();
    writer.delete("/gone", None).await.unwrap();
    let e = within(WAIT, "data watch on delete", dw.changed()).await;
    assert_eq!((e.event_type, e.path.as_str()), (EventType::NodeDeleted, "/gone"));
    let e = within(WAIT, "child watch on delete", cw.changed()).await;
    assert_eq!((e.event_type, e.path.as_str()), (EventType::NodeDeleted, "/gone"));
}

#[tokio::test]
async fn oneshot_watches_fire_exactly_once() {
    let server = Server::start();
    let (mut a, _) = server.raw_session(10_000).await;
    let (mut b, _) = server.raw_session(10_000).await;
    assert_eq!(b.call(op::CREATE, &body_create("/x", b"", 0)).await.header.err, 0);

    // Registered twice, fires once; later changes are silent.
    assert_eq!(a.call(op::GET_DATA, &body_path_watch("/x", true)).await.header.err, 0);
    assert_eq!(a.call(op::GET_DATA, &body_path_watch("/x", true)).await.header.err, 0);
    assert_eq!(a.call(op::EXISTS, &body_path_watch("/x", true)).await.header.err, 0);
    b.call(op::SET_DATA, &body_set_data("/x", b"1", -1)).await;
    b.call(op::SET_DATA, &body_set_data("/x", b"2", -1)).await;
    // getData and exists watches on one path are one data watch: a single event.
    assert_eq!(drain(&mut a).await, vec![ev(event::NODE_DATA_CHANGED, "/x")]);

    // A child watch ignores data changes and fires once for several children.
    assert_eq!(a.call(op::GET_CHILDREN, &body_path_watch("/x", true)).await.header.err, 0);
    b.call(op::SET_DATA, &body_set_data("/x", b"3", -1)).await;
    b.call(op::CREATE, &body_create("/x/a", b"", 0)).await;
    b.call(op::CREATE, &body_create("/x/b", b"", 0)).await;
    assert_eq!(drain(&mut a).await, vec![ev(event::NODE_CHILDREN_CHANGED, "/x")]);

    // A data watch ignores children.
    assert_eq!(a.call(op::GET_DATA, &body_path_watch("/x", true)).await.header.err, 0);
    b.call(op::CREATE, &body_create("/x/c", b"", 0)).await;
    assert_eq!(drain(&mut a).await, vec![]);
    b.call(op::DELETE, &body_path_i32("/x/c", -1)).await;
    b.call(op::DELETE, &body_path_i32("/x/b", -1)).await;
    b.call(op::DELETE, &body_path_i32("/x/a", -1)).await;

    // Data + child watch, then delete: each fires NodeDeleted, but the client is sent
    // one notification per (type, path).
    assert_eq!(a.call(op::GET_CHILDREN, &body_path_watch("/x", true)).await.header.err, 0);
    b.call(op::DELETE, &body_path_i32("/x", -1)).await;
    assert_eq!(drain(&mut a).await, vec![ev(event::NODE_DELETED, "/x")]);

    // An exists watch on a missing node fires NodeCreated once.
    assert_eq!(a.call(op::EXISTS, &body_path_watch("/x", true)).await.header.err, err::NO_NODE);
    b.call(op::CREATE, &body_create("/x", b"", 0)).await;
    b.call(op::DELETE, &body_path_i32("/x", -1)).await;
    assert_eq!(drain(&mut a).await, vec![ev(event::NODE_CREATED, "/x")]);

    // getData on a missing node leaves no watch behind.
    assert_eq!(a.call(op::GET_DATA, &body_path_watch("/x", true)).await.header.err, err::NO_NODE);
    b.call(op::CREATE, &body_create("/x", b"", 0)).await;
    assert_eq!(drain(&mut a).await, vec![]);
}

#[tokio::test]
async fn watches_are_per_session() {
    let server = Server::start();
    let (mut a, _) = server.raw_session(10_000).await;
    let (mut b, _) = server.raw_session(10_000).await;
    let (mut c, _) = server.raw_session(10_000).await;
    c.call(op::CREATE, &body_create("/s", b"", 0)).await;
    a.call(op::GET_DATA, &body_path_watch("/s", true)).await;
    b.call(op::GET_DATA, &body_path_watch("/s", true)).await;
    c.call(op::SET_DATA, &body_set_data("/s", b"x", -1)).await;
    assert_eq!(drain(&mut a).await, vec![ev(event::NODE_DATA_CHANGED, "/s")]);
    assert_eq!(drain(&mut b).await, vec![ev(event::NODE_DATA_CHANGED, "/s")]);
    assert_eq!(drain(&mut c).await, vec![]);
}

#[tokio::test]
async fn notification_comes_before_the_reply_that_shows_the_change() {
    let server = Server::start();
    let (mut a, _) = server.raw_session(10_000).await;
    assert_eq!(a.call(op::CREATE, &body_create("/order", b"", 0)).await.header.err, 0);
    assert_eq!(a.call(op::GET_DATA, &body_path_watch("/order", true)).await.header.err, 0);
    assert_eq!(a.call(op::GET_CHILDREN, &body_path_watch("/order", true)).await.header.err, 0);

    // The session that makes the change gets the notification first, then the reply.
    a.send(100, op::SET_DATA, &body_set_data("/order", b"v", -1)).await;
    let first = a.read_reply().await.expect("frame");
    assert_eq!(first.header.xid, -1, "expected the notification first, got {first:?}");
    assert_eq!(first.header.err, 0);
    assert_eq!(first.event(), ev(event::NODE_DATA_CHANGED, "/order"));
    let second = a.read_reply().await.expect("frame");
    assert_eq!(second.header.xid, 100);
    assert_eq!(second.header.err, 0);
    assert_eq!(second.stat().version, 1);

    a.send(101, op::CREATE, &body_create("/order/k", b"", 0)).await;
    let first = a.read_reply().await.expect("frame");
    assert_eq!(first.header.xid, -1, "expected the notification first, got {first:?}");
    assert_eq!(first.event(), ev(event::NODE_CHILDREN_CHANGED, "/order"));
    assert_eq!(a.read_reply().await.expect("frame").header.xid, 101);

    // Same for a change made by another session: the watcher sees the event before the
    // reply to any request it sends after the change.
    let (mut b, _) = server.raw_session(10_000).await;
    assert_eq!(a.call(op::GET_DATA, &body_path_watch("/order", true)).await.header.err, 0);
    assert_eq!(b.call(op::SET_DATA, &body_set_data("/order", b"w", -1)).await.header.err, 0);
    a.send(102, op::GET_DATA, &body_path_watch("/order", false)).await;
    let first = a.read_reply().await.expect("frame");
    assert_eq!(first.header.xid, -1, "expected the notification first, got {first:?}");
    let reply = a.read_reply().await.expect("frame");
    assert_eq!(reply.header.xid, 102);
}

#[tokio::test]
async fn persistent_watch_keeps_firing() {
    let server = Server::start();
    let (mut a, _) = server.raw_session(10_000).await;
    let (mut b, _) = server.raw_session(10_000).await;
    // addWatch on a node that does not exist yet; the reply body is a bare int 0.
    let r = a.call(op::ADD_WATCH, &body_path_i32("/p", 0)).await;
    assert_eq!(r.header.err, 0);
    assert_eq!(r.body, vec![0, 0, 0, 0]);

    b.call(op::CREATE, &body_create("/p", b"", 0)).await;
    b.call(op::SET_DATA, &body_set_data("/p", b"1", -1)).await;
    b.call(op::SET_DATA, &body_set_data("/p", b"2", -1)).await;
    b.call(op::CREATE, &body_create("/p/k", b"", 0)).await;
    b.call(op::CREATE, &body_create("/p/k/deep", b"", 0)).await;
    b.call(op::SET_DATA, &body_set_data("/p/k", b"x", -1)).await;
    b.call(op::DELETE, &body_path_i32("/p/k/deep", -1)).await;
    b.call(op::DELETE, &body_path_i32("/p/k", -1)).await;
    b.call(op::DELETE, &body_path_i32("/p", -1)).await;
    b.call(op::CREATE, &body_create("/p", b"", 0)).await;
    assert_eq!(
        drain(&mut a).await,
        vec![
            ev(event::NODE_CREATED, "/p"),
            ev(event::NODE_DATA_CHANGED, "/p"),
            ev(event::NODE_DATA_CHANGED, "/p"),
            ev(event::NODE_CHILDREN_CHANGED, "/p"),
            ev(event::NODE_CHILDREN_CHANGED, "/p"),
            ev(event::NODE_DELETED, "/p"),
            ev(event::NODE_CREATED, "/p"),
        ]
    );
}

#[tokio::test]
async fn recursive_watch_sees_descendants_but_no_child_events() {
    let server = Server::start();
    let (mut a, _) = server.raw_session(10_000).await;
    let (mut b, _) = server.raw_session(10_000).await;
    b.call(op::CREATE, &body_create("/r", b"", 0)).await;
    b.call(op::CREATE, &body_create("/rr", b"", 0)).await;
    assert_eq!(a.call(op::ADD_WATCH, &body_path_i32("/r", 1)).await.header.err, 0);

    b.call(op::CREATE, &body_create("/r/a", b"", 0)).await;
    b.call(op::CREATE, &body_create("/r/a/b", b"", 0)).await;
    b.call(op::SET_DATA, &body_set_data("/r/a/b", b"1", -1)).await;
    b.call(op::SET_DATA, &body_set_data("/r", b"1", -1)).await;
    // Siblings that share the prefix are not descendants.
    b.call(op::SET_DATA, &body_set_data("/rr", b"1", -1)).await;
    b.call(op::CREATE, &body_create("/rr/x", b"", 0)).await;
    b.call(op::DELETE, &body_path_i32("/r/a/b", -1)).await;
    b.call(op::SET_DATA, &body_set_data("/r/a", b"again", -1)).await;
    assert_eq!(
        drain(&mut a).await,
        vec![
            ev(event::NODE_CREATED, "/r/a"),
            ev(event::NODE_CREATED, "/r/a/b"),
            ev(event::NODE_DATA_CHANGED, "/r/a/b"),
            ev(event::NODE_DATA_CHANGED, "/r"),
            ev(event::NODE_DELETED, "/r/a/b"),
            ev(event::NODE_DATA_CHANGED, "/r/a"),
        ]
    );

    // A recursive watch on the root sees everything, /zookeeper included.
    let (mut root, _) = server.raw_session(10_000).await;
    assert_eq!(root.call(op::ADD_WATCH, &body_path_i32("/", 1)).await.header.err, 0);
    b.call(op::CREATE, &body_create("/top", b"", 0)).await;
    b.call(op::SET_DATA, &body_set_data("/zookeeper", b"z", -1)).await;
    assert_eq!(
        drain(&mut root).await,
        vec![ev(event::NODE_CREATED, "/top"), ev(event::NODE_DATA_CHANGED, "/zookeeper")]
    );
}

#[tokio::test]
async fn one_shot_and_persistent_watch_from_different_sessions() {
    let server = Server::start();
    let watcher = server.connect().await;
    let persistent_watcher = server.connect().await;
    let writer = server.connect().await;
    writer.create("/mix", b"", &persistent()).await.unwrap();
    // The watchers may be on other members of an ensemble: sync before reading.
    watcher.sync("/mix").await.unwrap();
    persistent_watcher.sync("/mix").await.unwrap();
    let (_, _, once) = watcher.get_and_watch_data("/mix").await.unwrap();
    let mut pw = persistent_watcher.watch("/mix", AddWatchMode::Persistent).await.unwrap();
    writer.set_data("/mix", b"1", None).await.unwrap();
    writer.set_data("/mix", b"2", None).await.unwrap();
    let e = within(WAIT, "one-shot", once.changed()).await;
    assert_eq!(e.event_type, EventType::NodeDataChanged);
    for _ in 0..2 {
        let e = within(WAIT, "persistent", pw.changed()).await;
        assert_eq!((e.event_type, e.path.as_str()), (EventType::NodeDataChanged, "/mix"));
    }
}

#[tokio::test]
async fn removed_watches_stop_firing() {
    let server = Server::start();
    let (mut a, _) = server.raw_session(10_000).await;
    let (mut b, _) = server.raw_session(10_000).await;
    b.call(op::CREATE, &body_create("/rm", b"", 0)).await;

    // Data watch: checkWatches sees it, removeWatches removes it. ZooKeeper's server sends
    // no DataWatchRemoved notification: client libraries make that event themselves.
    a.call(op::GET_DATA, &body_path_watch("/rm", true)).await;
    a.call(op::GET_CHILDREN, &body_path_watch("/rm", true)).await;
    assert_eq!(a.call(op::CHECK_WATCHES, &body_path_i32("/rm", 2)).await.header.err, 0);
    assert_eq!(a.call(op::CHECK_WATCHES, &body_path_i32("/rm", 1)).await.header.err, 0);
    assert_eq!(a.call(op::REMOVE_WATCHES, &body_path_i32("/rm", 2)).await.header.err, 0);
    assert_eq!(a.call(op::CHECK_WATCHES, &body_path_i32("/rm", 2)).await.header.err, err::NO_WATCHER);
    assert_eq!(a.call(op::CHECK_WATCHES, &body_path_i32("/rm", 1)).await.header.err, 0);
    b.call(op::SET_DATA, &body_set_data("/rm", b"1", -1)).await;
    assert_eq!(drain(&mut a).await, vec![], "removed data watch fired (or a WatchRemoved event was sent)");
    // The child watch is still there.
    b.call(op::CREATE, &body_create("/rm/k", b"", 0)).await;
    assert_eq!(drain(&mut a).await, vec![ev(event::NODE_CHILDREN_CHANGED, "/rm")]);

    // Any (3) removes both kinds.
    a.call(op::GET_DATA, &body_path_watch("/rm", true)).await;
    a.call(op::GET_CHILDREN, &body_path_watch("/rm", true)).await;
    assert_eq!(a.call(op::REMOVE_WATCHES, &body_path_i32("/rm", 3)).await.header.err, 0);
    b.call(op::SET_DATA, &body_set_data("/rm", b"2", -1)).await;
    b.call(op::CREATE, &body_create("/rm/k2", b"", 0)).await;
    assert_eq!(drain(&mut a).await, vec![]);

    // Any also removes a recursive watch.
    assert_eq!(a.call(op::ADD_WATCH, &body_path_i32("/rm", 1)).await.header.err, 0);
    assert_eq!(a.call(op::REMOVE_WATCHES, &body_path_i32("/rm", 3)).await.header.err, 0);
    b.call(op::SET_DATA, &body_set_data("/rm", b"3", -1)).await;
    assert_eq!(drain(&mut a).await, vec![]);

    // Watcher types 4 and 5 (persistent, persistent recursive) exist since 3.9.
    if !is_zookeeper() {
        assert_eq!(a.call(op::ADD_WATCH, &body_path_i32("/rm", 0)).await.header.err, 0);
        assert_eq!(a.call(op::REMOVE_WATCHES, &body_path_i32("/rm", 4)).await.header.err, 0);
        b.call(op::SET_DATA, &body_set_data("/rm", b"4", -1)).await;
        assert_eq!(drain(&mut a).await, vec![]);
    }
}

#[tokio::test]
async fn set_watches_replays_missed_changes() {
    let server = Server::start();
    let (mut a, _) = server.raw_session(10_000).await;
    let (mut b, _) = server.raw_session(10_000).await;
    let created = b.call(op::CREATE, &body_create("/sw", b"", 0)).await.header.zxid;
    // setWatches(relativeZxid, data, exist, child): everything changed after zxid 1 is
    // reported at once; watches on unchanged or missing nodes stay armed.
    let mut w = Writer::new();
    w.i64(created - 1).string_vec(&["/sw"]).string_vec(&["/sw", "/none"]).string_vec(&["/sw"]);
    let r = a.call(op::SET_WATCHES, &w.buf).await;
    assert_eq!(r.header.err, 0);
    let mut got = drain(&mut a).await;
    got.sort_by_key(|e| e.event_type);
    assert_eq!(
        got,
        vec![ev(event::NODE_CREATED, "/sw"), ev(event::NODE_DATA_CHANGED, "/sw"), ev(event::NODE_CHILDREN_CHANGED, "/sw")]
    );
    b.call(op::CREATE, &body_create("/none", b"", 0)).await;
    assert_eq!(drain(&mut a).await, vec![ev(event::NODE_CREATED, "/none")]);

    // With an up-to-date zxid nothing fires until the next change.
    let zxid = b.call(op::SET_DATA, &body_set_data("/sw", b"v", -1)).await.header.zxid;
    let mut w = Writer::new();
    w.i64(zxid).string_vec(&["/sw"]).string_vec::<&str>(&[]).string_vec::<&str>(&[]);
    assert_eq!(a.call(op::SET_WATCHES, &w.buf).await.header.err, 0);
    assert_eq!(drain(&mut a).await, vec![]);
    b.call(op::SET_DATA, &body_set_data("/sw", b"w", -1)).await;
    assert_eq!(drain(&mut a).await, vec![ev(event::NODE_DATA_CHANGED, "/sw")]);
}

#[tokio::test]
async fn ephemeral_removal_at_session_close_triggers_watches() {
    let server = Server::start();
    let (mut owner, _) = server.raw_session(10_000).await;
    let (mut a, _) = server.raw_session(10_000).await;
    owner.call(op::CREATE, &body_create("/eph", b"", 1)).await;
    a.call(op::EXISTS, &body_path_watch("/eph", true)).await;
    a.call(op::GET_CHILDREN, &body_path_watch("/", true)).await;
    assert_eq!(owner.close_session().await.header.err, 0);
    let mut got = drain(&mut a).await;
    got.sort_by_key(|e| e.event_type);
    assert_eq!(got, vec![ev(event::NODE_DELETED, "/eph"), ev(event::NODE_CHILDREN_CHANGED, "/")]);
}

#[tokio::test]
async fn multi_fires_watches_for_each_op() {
    let server = Server::start();
    let client = server.connect().await;
    let (mut a, _) = server.raw_session(10_000).await;
    client.create("/mw", b"", &persistent()).await.unwrap();
    a.call(op::SYNC, &body_path("/mw")).await;
    a.call(op::GET_DATA, &body_path_watch("/mw", true)).await;
    a.call(op::GET_CHILDREN, &body_path_watch("/mw", true)).await;
    a.call(op::EXISTS, &body_path_watch("/mw/new", true)).await;
    let mut w = client.new_multi_writer();
    w.add_create("/mw/new", b"", &persistent()).unwrap();
    w.add_set_data("/mw", b"x", None).unwrap();
    w.commit().await.unwrap();
    let mut got = drain(&mut a).await;
    got.sort_by_key(|e| e.event_type);
    assert_eq!(
        got,
        vec![
            ev(event::NODE_CREATED, "/mw/new"),
            ev(event::NODE_DATA_CHANGED, "/mw"),
            ev(event::NODE_CHILDREN_CHANGED, "/mw"),
        ]
    );
    // A failed multi fires nothing.
    a.call(op::GET_DATA, &body_path_watch("/mw", true)).await;
    let mut w = client.new_multi_writer();
    w.add_set_data("/mw", b"y", None).unwrap();
    w.add_check_version("/mw", 99).unwrap();
    assert!(w.commit().await.is_err());
    assert_eq!(drain(&mut a).await, vec![]);
}
