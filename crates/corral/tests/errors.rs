//! Error paths: what ZooKeeper answers when a request cannot be done.

mod common;

use std::time::Duration;

use common::*;
use corral_proto::{Acl, Writer};
use zk::{Acls, CreateMode};
use zookeeper_client as zk;

fn persistent() -> zk::CreateOptions<'static> {
    CreateMode::Persistent.with_acls(Acls::anyone_all())
}

#[tokio::test]
async fn no_node() {
    let server = Server::start();
    let c = server.connect().await;
    assert_eq!(c.get_data("/missing").await, Err(zk::Error::NoNode));
    assert_eq!(c.set_data("/missing", b"x", None).await, Err(zk::Error::NoNode));
    assert_eq!(c.delete("/missing", None).await, Err(zk::Error::NoNode));
    assert_eq!(c.list_children("/missing").await, Err(zk::Error::NoNode));
    assert_eq!(c.get_children("/missing").await, Err(zk::Error::NoNode));
    assert_eq!(c.get_acl("/missing").await, Err(zk::Error::NoNode));
    assert_eq!(c.set_acl("/missing", &[zk::Acl::new(zk::Permission::ALL, zk::AuthId::anyone())], None).await, Err(zk::Error::NoNode));
    assert_eq!(c.create("/missing/child", b"", &persistent()).await, Err(zk::Error::NoNode));
    assert_eq!(c.count_descendants_number("/missing").await, Err(zk::Error::NoNode));
    // exists is not an error.
    assert_eq!(c.check_stat("/missing").await, Ok(None));
    // The failed requests did not create anything or move the zxid.
    let (_, root) = c.get_children("/").await.unwrap();
    assert_eq!(root.num_children, 1);
    // ZooKeeper reports cversion as 2 * (children created) - (children now), and
    // /zookeeper was never "created" under the root: an untouched root shows -1.
    assert_eq!(root.cversion, -1);
}

#[tokio::test]
async fn error_replies_carry_the_current_zxid() {
    let server = Server::start();
    let (mut raw, _) = server.raw_session(10_000).await;
    let ok = raw.call(op::CREATE, &body_create("/z", b"", 0)).await;
    assert_eq!(ok.header.err, 0);
    let failed = raw.call(op::CREATE, &body_create("/z", b"", 0)).await;
    assert_eq!(failed.header.err, err::NODE_EXISTS);
    assert!(failed.body.is_empty(), "an error reply has no body");
    // A failed write is still a transaction in ZooKeeper (an error txn), so the zxid
    // moves on; it never goes backwards.
    assert!(failed.header.zxid >= ok.header.zxid);
    let read = raw.call(op::GET_DATA, &body_path_watch("/nope", false)).await;
    assert_eq!(read.header.err, err::NO_NODE);
    assert!(read.body.is_empty());
    assert!(read.header.zxid >= failed.header.zxid);
}

#[tokio::test]
async fn node_exists_not_empty_bad_version() {
    let server = Server::start();
    let c = server.connect().await;
    c.create("/n", b"", &persistent()).await.unwrap();
    assert_eq!(c.create("/n", b"", &persistent()).await, Err(zk::Error::NodeExists));
    c.create("/n/kid", b"", &persistent()).await.unwrap();
    assert_eq!(c.delete("/n", None).await, Err(zk::Error::NotEmpty));
    assert_eq!(c.set_data("/n", b"x", Some(3)).await, Err(zk::Error::BadVersion));
    assert_eq!(c.delete("/n/kid", Some(1)).await, Err(zk::Error::BadVersion));
    assert_eq!(
        c.set_acl("/n", &[zk::Acl::new(zk::Permission::ALL, zk::AuthId::anyone())], Some(5)).await,
        Err(zk::Error::BadVersion)
    );
    let mut w = c.new_multi_writer();
    w.add_check_version("/n", 1).unwrap();
    assert!(matches!(
        w.commit().await,
        Err(zk::MultiWriteError::OperationFailed { index: 0, source: zk::Error::BadVersion })
    ));
    // Nothing changed.
    let (_, stat) = c.get_data("/n").await.unwrap();
    assert_eq!((stat.version, stat.aversion, stat.cversion, stat.num_children), (0, 0, 1, 1));
    // The root cannot be created again.
    let (mut raw, _) = server.raw_session(10_000).await;
    assert_eq!(raw.call(op::CREATE, &body_create("/", b"", 0)).await.header.err, err::NODE_EXISTS);
}

#[tokio::test]
async fn no_children_for_ephemerals() {
    let server = Server::start();
    let c = server.connect().await;
    c.create("/e", b"", &CreateMode::Ephemeral.with_acls(Acls::anyone_all())).await.unwrap();
    assert_eq!(c.create("/e/kid", b"", &persistent()).await, Err(zk::Error::NoChildrenForEphemerals));
    assert_eq!(
        c.create("/e/kid", b"", &CreateMode::Ephemeral.with_acls(Acls::anyone_all())).await,
        Err(zk::Error::NoChildrenForEphemerals)
    );
    assert_eq!(
        c.create("/e/s", b"", &CreateMode::PersistentSequential.with_acls(Acls::anyone_all())).await,
        Err(zk::Error::NoChildrenForEphemerals)
    );
    assert_eq!(c.get_data("/e").await.unwrap().1.num_children, 0);
}

#[tokio::test]
async fn invalid_acl() {
    let server = Server::start();
    let c = server.connect().await;
    c.create("/a", b"", &persistent()).await.unwrap();
    // The crate checks for an empty list on create, but not on setACL.
    assert_eq!(c.set_acl("/a", &[], None).await, Err(zk::Error::InvalidAcl));
    // "auth" with no authenticated identity in the session.
    assert_eq!(c.create("/b", b"", &CreateMode::Persistent.with_acls(Acls::creator_all())).await, Err(zk::Error::InvalidAcl));

    let (mut raw, _) = server.raw_session(10_000).await;
    let cases: Vec<(Vec<Acl>, i32)> = vec![
        (vec![], err::INVALID_ACL),
        (vec![Acl::new(31, "auth", "")], err::INVALID_ACL),
        (vec![Acl::new(31, "digest", "no-colon")], err::INVALID_ACL),
        (vec![Acl::new(31, "no-such-scheme", "x")], err::INVALID_ACL),
        (vec![Acl::new(31, "ip", "not-an-ip")], err::INVALID_ACL),
        (vec![Acl::new(31, "world", "someone")], err::INVALID_ACL),
        // A valid entry does not rescue an invalid one.
        (vec![Acl::new(31, "world", "anyone"), Acl::new(31, "bogus", "x")], err::INVALID_ACL),
        (vec![Acl::new(31, "ip", "10.0.0.0/8")], 0),
        (vec![Acl::new(31, "ip", "127.0.0.1")], 0),
        (vec![Acl::new(31, "digest", &digest_id("u", "p"))], 0),
        // Permission bits are not checked.
        (vec![Acl::new(0, "world", "anyone")], 0),
    ];
    for (i, (acl, want)) in cases.into_iter().enumerate() {
        let path = format!("/acl{i}");
        let r = raw.call(op::CREATE, &body_create_acl(&path, b"", &acl, 0)).await;
        assert_eq!(r.header.err, want, "create {path} with {acl:?}");
    }
}

#[tokio::test]
async fn no_auth() {
    let server = Server::start();
    let owner = server.connect_with(zk::Client::connector().with_auth("digest", b"owner:pw")).await;
    owner.create("/locked", b"secret", &CreateMode::Persistent.with_acls(Acls::creator_all())).await.unwrap();
    let read_only = [zk::Acl::new(zk::Permission::READ, zk::AuthId::anyone())];
    owner.create("/ro", b"", &CreateMode::Persistent.with_acls(Acls::new(&read_only))).await.unwrap();

    let other = server.connect().await;
    assert_eq!(other.get_data("/locked").await, Err(zk::Error::NoAuth));
    assert_eq!(other.set_data("/locked", b"x", None).await, Err(zk::Error::NoAuth));
    assert_eq!(other.list_children("/locked").await, Err(zk::Error::NoAuth));
    assert_eq!(other.create("/locked/kid", b"", &persistent()).await, Err(zk::Error::NoAuth));
    assert_eq!(other.set_acl("/locked", &read_only, None).await, Err(zk::Error::NoAuth));
    // exists needs no permission; getACL needs READ or ADMIN.
    assert!(other.check_stat("/locked").await.unwrap().is_some());
    assert_eq!(other.get_acl("/locked").await, Err(zk::Error::NoAuth));

    assert_eq!(other.create("/ro/kid", b"", &persistent()).await, Err(zk::Error::NoAuth));
    assert_eq!(other.set_data("/ro", b"x", None).await, Err(zk::Error::NoAuth));
    assert_eq!(other.get_data("/ro").await.unwrap().0, b"");

    // Delete needs DELETE on the parent, not on the node.
    owner.create("/ro2", b"", &persistent()).await.unwrap();
    owner.create("/ro2/kid", b"", &CreateMode::Persistent.with_acls(Acls::new(&read_only))).await.unwrap();
    other.delete("/ro2/kid", None).await.unwrap();
    // Even the creator needs ADMIN to change an ACL.
    assert_eq!(owner.set_acl("/ro", &read_only, None).await, Err(zk::Error::NoAuth));
}

#[tokio::test]
async fn bad_arguments_for_invalid_paths() {
    let server = Server::start();
    let (mut raw, _) = server.raw_session(10_000).await;
    assert_eq!(raw.call(op::CREATE, &body_create("/a", b"", 0)).await.header.err, 0);
    for path in ["", "noslash", "/a/", "/a/.", "/a/..", "/a/\0b", "/a/b\u{1}", "/a/b\u{7f}", "/a/b\u{fff0}"] {
        let r = raw.call(op::CREATE, &body_create(path, b"", 0)).await;
        assert_eq!(r.header.err, err::BAD_ARGUMENTS, "create {path:?}");
        let r = raw.call(op::SET_DATA, &body_set_data(path, b"", -1)).await;
        assert_eq!(r.header.err, err::BAD_ARGUMENTS, "setData {path:?}");
    }
    // Names that merely contain dots are fine.
    for path in ["/a/.b", "/a/..b", "/a/b."] {
        assert_eq!(raw.call(op::CREATE, &body_create(path, b"", 0)).await.header.err, 0, "create {path:?}");
    }
    // A sequential create may end in '/': the suffix becomes the name.
    let r = raw.call(op::CREATE, &body_create("/a/", b"", 2)).await;
    assert_eq!(r.header.err, 0);
    assert_eq!(r.reader().read_string().unwrap(), "/a/0000000003");
    // The root and /zookeeper cannot be deleted.
    for path in ["/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"] {
        let r = raw.call(op::DELETE, &body_path_i32(path, -1)).await;
        assert_eq!(r.header.err, err::BAD_ARGUMENTS, "delete {path}");
    }
    // Unknown create flags.
    assert_eq!(raw.call(op::CREATE, &body_create("/flags", b"", 9)).await.header.err, err::BAD_ARGUMENTS);
    assert_eq!(raw.call(op::CREATE, &body_create("/flags", b"", -1)).await.header.err, err::BAD_ARGUMENTS);
    // The session survives all of that.
    assert_eq!(raw.call(op::EXISTS, &body_path_watch("/a", false)).await.header.err, 0);
}

#[tokio::test]
async fn path_checks_happen_after_the_parent_lookup() {
    // ZooKeeper looks the parent up (the text before the last '/') before it validates
    // the whole path, so a path whose parent part is malformed fails with NoNode.
    let server = Server::start();
    let (mut raw, _) = server.raw_session(10_000).await;
    assert_eq!(raw.call(op::CREATE, &body_create("/a", b"", 0)).await.header.err, 0);
    for path in ["/a//b", "/a/./b", "/a/../b", "/x/"] {
        let r = raw.call(op::CREATE, &body_create(path, b"", 0)).await;
        assert_eq!(r.header.err, err::NO_NODE, "create {path:?}");
    }
    // Reads do not validate: a malformed path is just a node that does not exist.
    for path in ["noslash", "/a/", "/a//b"] {
        assert_eq!(raw.call(op::GET_DATA, &body_path_watch(path, false)).await.header.err, err::NO_NODE, "getData {path:?}");
        assert_eq!(raw.call(op::EXISTS, &body_path_watch(path, false)).await.header.err, err::NO_NODE, "exists {path:?}");
        assert_eq!(raw.call(op::GET_CHILDREN, &body_path_watch(path, false)).await.header.err, err::NO_NODE, "getChildren {path:?}");
    }
    assert_eq!(raw.call(op::DELETE, &body_path_i32("/a/", -1)).await.header.err, err::NO_NODE);
    assert_eq!(raw.call(op::DELETE, &body_path_i32("noslash", -1)).await.header.err, err::BAD_ARGUMENTS);
}

#[tokio::test]
async fn ttl_errors() {
    // Disabled (the default): createTTL and the TTL create modes are Unimplemented.
    let server = Server::start();
    let (mut raw, _) = server.raw_session(10_000).await;
    assert_eq!(raw.call(op::CREATE_TTL, &body_create_ttl("/t", b"", 5, 1000)).await.header.err, err::UNIMPLEMENTED);
    assert_eq!(raw.call(op::CREATE_TTL, &body_create_ttl("/t", b"", 6, 1000)).await.header.err, err::UNIMPLEMENTED);
    assert_eq!(raw.call(op::CREATE, &body_create("/t", b"", 5)).await.header.err, err::UNIMPLEMENTED);
    assert_eq!(raw.call(op::EXISTS, &body_path_watch("/t", false)).await.header.err, err::NO_NODE);
    let c = server.connect().await;
    let opts = CreateMode::Persistent.with_acls(Acls::anyone_all()).with_ttl(Duration::from_secs(5));
    assert_eq!(c.create("/t", b"", &opts).await, Err(zk::Error::Unimplemented));
    drop(server);

    // Enabled: a TTL must go with a TTL mode and be in 1..=0xFFFFFFFFFF ms.
    let server = Server::start_with(&["extendedTypesEnabled=true"]);
    let (mut raw, _) = server.raw_session(10_000).await;
    assert_eq!(raw.call(op::CREATE_TTL, &body_create_ttl("/t", b"", 5, 1000)).await.header.err, 0);
    assert_eq!(raw.call(op::CREATE_TTL, &body_create_ttl("/t0", b"", 5, 0)).await.header.err, err::BAD_ARGUMENTS);
    assert_eq!(raw.call(op::CREATE_TTL, &body_create_ttl("/tneg", b"", 5, -5)).await.header.err, err::BAD_ARGUMENTS);
    assert_eq!(
        raw.call(op::CREATE_TTL, &body_create_ttl("/tbig", b"", 5, 0x100_0000_0000)).await.header.err,
        err::BAD_ARGUMENTS
    );
    assert_eq!(raw.call(op::CREATE_TTL, &body_create_ttl("/tmode", b"", 0, 1000)).await.header.err, err::BAD_ARGUMENTS);
    assert_eq!(raw.call(op::CREATE_TTL, &body_create_ttl("/teph", b"", 1, 1000)).await.header.err, err::BAD_ARGUMENTS);
    // A TTL mode through plain create has no TTL to go with it.
    assert_eq!(raw.call(op::CREATE, &body_create("/tplain", b"", 5)).await.header.err, err::BAD_ARGUMENTS);
}

#[tokio::test]
async fn reconfig_is_disabled_in_standalone() {
    let server = Server::start();
    let (mut raw, _) = server.raw_session(10_000).await;
    let mut w = Writer::new();
    // ReconfigRequest: joiningServers, leavingServers, newMembers, curConfigId.
    w.string("").string("").string("server.1=127.0.0.1:12888:13888;12181").i64(-1);
    let r = raw.call(op::RECONFIG, &w.buf).await;
    assert_eq!(r.header.err, err::RECONFIG_DISABLED);
    assert!(r.body.is_empty());
    // The crate maps it too.
    let c = server.connect().await;
    let update = zk::EnsembleUpdate::New { ensemble: ["server.1=127.0.0.1:12888:13888;12181"].into_iter() };
    assert_eq!(c.update_ensemble(update, None).await, Err(zk::Error::ReconfigDisabled));
}

#[tokio::test]
async fn zookeeper_system_nodes_exist() {
    let server = Server::start();
    let c = server.connect().await;
    for p in ["/zookeeper", "/zookeeper/quota", "/zookeeper/config"] {
        let stat = c.check_stat(p).await.unwrap().unwrap_or_else(|| panic!("{p} missing"));
        assert_eq!(stat.ephemeral_owner, 0);
    }
    // /zookeeper/config is readable by anyone but writable only by the super user.
    let (acl, _) = c.get_acl("/zookeeper/config").await.unwrap();
    assert!(acl.iter().all(|a| !a.permission().has(zk::Permission::WRITE) || a.scheme() != "world"), "{acl:?}");
    assert_eq!(c.set_data("/zookeeper/config", b"x", None).await, Err(zk::Error::NoAuth));
    c.get_config().await.unwrap();
    // /zookeeper itself is an ordinary world-writable node.
    c.set_data("/zookeeper", b"x", None).await.unwrap();
    c.create("/zookeeper/mine", b"", &persistent()).await.unwrap();
}

#[tokio::test]
async fn watch_removal_errors() {
    let server = Server::start();
    let (mut raw, _) = server.raw_session(10_000).await;
    assert_eq!(raw.call(op::CREATE, &body_create("/w", b"", 0)).await.header.err, 0);
    // No watch of that kind on that path.
    for kind in [1, 2, 3] {
        assert_eq!(raw.call(op::CHECK_WATCHES, &body_path_i32("/w", kind)).await.header.err, err::NO_WATCHER);
        assert_eq!(raw.call(op::REMOVE_WATCHES, &body_path_i32("/w", kind)).await.header.err, err::NO_WATCHER);
    }
    assert_eq!(raw.call(op::REMOVE_WATCHES, &body_path_i32("/nope", 3)).await.header.err, err::NO_WATCHER);
}

#[tokio::test]
async fn auth_errors() {
    let server = Server::start();
    // Unknown scheme: AuthFailed with the auth xid, then the server drops the connection.
    let (mut raw, _) = server.raw_session(10_000).await;
    raw.send(-4, op::AUTH, &body_auth("no-such-scheme", b"x")).await;
    let r = raw.read_reply().await.expect("auth reply");
    assert_eq!((r.header.xid, r.header.err), (-4, err::AUTH_FAILED));
    assert!(raw.closed_by_server(Duration::from_secs(5)).await, "connection kept after AuthFailed");

    // Digest accepts anything; the reply echoes the xid the client used.
    let (mut raw, _) = server.raw_session(10_000).await;
    raw.send(-4, op::AUTH, &body_auth("digest", b"user:pw")).await;
    let r = raw.read_reply().await.unwrap();
    assert_eq!((r.header.xid, r.header.err), (-4, 0));
    raw.send(77, op::AUTH, &body_auth("digest", b"u2:pw")).await;
    let r = raw.read_reply().await.unwrap();
    assert_eq!((r.header.xid, r.header.err), (77, 0));
    assert_eq!(raw.call(op::EXISTS, &body_path_watch("/", false)).await.header.err, 0);

    // Through the crate an unknown scheme ends the session with AuthFailed.
    let c = server.connect().await;
    assert_eq!(c.auth("no-such-scheme", b"x").await, Err(zk::Error::AuthFailed));
    assert_eq!(c.get_data("/").await.unwrap_err(), zk::Error::AuthFailed);
}
