//! Sessions: timeout negotiation, expiry, reconnect with id and password, close, and a
//! second connection taking a session over.

mod common;

use std::time::{Duration, Instant};

use common::*;

const TICK: &str = "tickTime=200";

async fn exists(c: &mut RawConn, path: &str) -> bool {
    let r = c.call(op::EXISTS, &body_path_watch(path, false)).await;
    match r.header.err {
        0 => true,
        err::NO_NODE => false,
        e => panic!("exists {path}: error {e}"),
    }
}

#[tokio::test]
async fn handshake_and_timeout_negotiation() {
    let server = Server::start_with(&[TICK]);
    // The bounds default to 2 and 20 ticks.
    let (_a, r) = server.raw_session(100).await;
    assert_eq!(r.timeout_ms, 400);
    let (_b, r2) = server.raw_session(100_000).await;
    assert_eq!(r2.timeout_ms, 4000);
    let (_c, r3) = server.raw_session(1234).await;
    assert_eq!(r3.timeout_ms, 1234);
    assert_eq!(r.protocol_version, 0);
    assert_eq!(r.passwd.len(), 16);
    assert_eq!(r.read_only, Some(false), "the readOnly byte is echoed when the client sent one");
    assert_ne!(r.session_id, 0);
    assert_ne!(r.session_id, r2.session_id);
    assert_ne!(r2.session_id, r3.session_id);
    assert_ne!(r.passwd, r2.passwd);
    drop(server);

    let server = Server::start_with(&[TICK, "minSessionTimeout=1000", "maxSessionTimeout=2000"]);
    assert_eq!(server.raw_session(10).await.1.timeout_ms, 1000);
    assert_eq!(server.raw_session(1500).await.1.timeout_ms, 1500);
    assert_eq!(server.raw_session(60_000).await.1.timeout_ms, 2000);
}

#[tokio::test]
async fn crate_client_sees_negotiated_timeout() {
    let server = Server::start_with(&[TICK]);
    let c = server
        .connect_with(zookeeper_client::Client::connector().with_session_timeout(Duration::from_millis(60_000)))
        .await;
    assert_eq!(c.session_timeout(), Duration::from_millis(4000));
}

#[tokio::test]
async fn silent_session_expires_and_loses_its_ephemerals() {
    let server = Server::start_with(&[TICK]);
    let (mut observer, _) = server.raw_session(4000).await;
    let (mut victim, resp) = server.raw_session(800).await;
    assert_eq!(resp.timeout_ms, 800);
    assert_eq!(victim.call(op::CREATE, &body_create("/victim", b"", 1)).await.header.err, 0);
    let last_activity = Instant::now();

    // Stop talking. Keep the observer alive with pings while we wait.
    let mut gone_at = None;
    while last_activity.elapsed() < Duration::from_secs(6) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        observer.ping().await;
        if !exists(&mut observer, "/victim").await {
            gone_at = Some(last_activity.elapsed());
            break;
        }
    }
    let gone_at = gone_at.expect("ephemeral of a silent session never went away");
    assert!(gone_at >= Duration::from_millis(700), "session expired too early: {gone_at:?}");

    // The server hung up on the expired session.
    assert!(victim.closed_by_server(Duration::from_secs(3)).await, "expired session's connection still open");

    // Reconnecting to it is refused with a zero timeout, then the server hangs up.
    let mut again = RawConn::connect(&server.addr()).await;
    let r = again.handshake(800, resp.session_id, &resp.passwd).await.expect("a ConnectResponse");
    assert_eq!(r.timeout_ms, 0, "expired session accepted: {r:?}");
    assert!(again.closed_by_server(Duration::from_secs(3)).await);
}

#[tokio::test]
async fn pings_keep_a_session_alive() {
    let server = Server::start_with(&[TICK]);
    let (mut s, _) = server.raw_session(600).await;
    s.call(op::CREATE, &body_create("/alive", b"", 1)).await;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2000) {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let p = s.ping().await;
        assert_eq!((p.header.xid, p.header.err), (-2, 0));
        assert!(p.body.is_empty());
    }
    assert!(exists(&mut s, "/alive").await);
}

#[tokio::test]
async fn reconnect_within_timeout_keeps_session_and_ephemerals() {
    let server = Server::start_with(&[TICK]);
    let (mut observer, _) = server.raw_session(4000).await;
    let (mut first, resp) = server.raw_session(1500).await;
    let created = first.call(op::CREATE, &body_create("/keep", b"", 1)).await;
    assert_eq!(created.header.err, 0);
    drop(first); // TCP gone, no closeSession.

    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut second = RawConn::connect(&server.addr()).await;
    let r = second.handshake(1500, resp.session_id, &resp.passwd).await.expect("ConnectResponse");
    assert_eq!(r.session_id, resp.session_id);
    assert_eq!(r.timeout_ms, 1500);
    assert_eq!(r.passwd, resp.passwd);

    // Keep it alive past the original timeout: the ephemeral stays, still ours.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2500) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        second.ping().await;
        observer.ping().await;
    }
    let r = observer.call(op::EXISTS, &body_path_watch("/keep", false)).await;
    assert_eq!(r.header.err, 0);
    assert_eq!(r.stat().ephemeral_owner, resp.session_id);
    let r = second.call(op::GET_EPHEMERALS, &body_path("/")).await;
    assert_eq!(r.header.err, 0);
    assert_eq!(r.reader().read_string_vec().unwrap(), vec!["/keep"]);

    // And the session can still write.
    assert_eq!(second.call(op::SET_DATA, &body_set_data("/keep", b"x", -1)).await.header.err, 0);
}

#[tokio::test]
async fn wrong_password_is_refused_and_session_survives() {
    let server = Server::start_with(&[TICK]);
    let (mut owner, resp) = server.raw_session(2000).await;
    owner.call(op::CREATE, &body_create("/pw", b"", 1)).await;

    let mut wrong = resp.passwd.clone();
    wrong[0] ^= 0xff;
    let mut intruder = RawConn::connect(&server.addr()).await;
    let r = intruder.handshake(2000, resp.session_id, &wrong).await.expect("ConnectResponse");
    assert_eq!(r.timeout_ms, 0, "wrong password accepted: {r:?}");
    assert!(intruder.closed_by_server(Duration::from_secs(3)).await);

    // A session id that never existed is refused the same way.
    let mut stranger = RawConn::connect(&server.addr()).await;
    let r = stranger.handshake(2000, 0x0123_4567_89ab_cdef, &[7; 16]).await.expect("ConnectResponse");
    assert_eq!(r.timeout_ms, 0);
    assert!(stranger.closed_by_server(Duration::from_secs(3)).await);

    // The session itself is unharmed: the owner can resume it with the right password and
    // finds its ephemeral. (ZooKeeper drops the owner's current connection as soon as any
    // connect request names the session, before it checks the password, so the owner may
    // have to reconnect; whether the old connection survives is not asserted.)
    drop(owner);
    let mut back = RawConn::connect(&server.addr()).await;
    let r = back.handshake(2000, resp.session_id, &resp.passwd).await.expect("ConnectResponse");
    assert_eq!(r.session_id, resp.session_id);
    assert!(r.timeout_ms > 0);
    assert!(exists(&mut back, "/pw").await);
    assert_eq!(back.ping().await.header.err, 0);
}

#[tokio::test]
async fn close_session_removes_ephemerals_at_once() {
    let server = Server::start_with(&[TICK]);
    let (mut observer, _) = server.raw_session(4000).await;
    let (mut s, resp) = server.raw_session(4000).await;
    s.call(op::CREATE, &body_create("/dir", b"", 0)).await;
    s.call(op::CREATE, &body_create("/dir/e1", b"", 1)).await;
    s.call(op::CREATE, &body_create("/dir/e2-", b"", 3)).await;
    let r = s.close_session().await;
    assert_eq!(r.header.err, 0);
    assert!(r.body.is_empty());
    assert!(s.closed_by_server(Duration::from_secs(3)).await, "server kept the connection after closeSession");

    let r = observer.call(op::GET_CHILDREN2, &body_path_watch("/dir", false)).await;
    assert_eq!(r.header.err, 0);
    let mut rd = r.reader();
    assert!(rd.read_string_vec().unwrap().is_empty());
    let stat = corral_proto::Stat::decode(&mut rd).unwrap();
    assert_eq!(stat.num_children, 0);
    assert_eq!(stat.cversion, 4);
    assert_eq!(stat.pzxid, r.header.zxid, "the closeSession txn deleted them last");

    // A closed session cannot be resumed.
    let mut again = RawConn::connect(&server.addr()).await;
    let r = again.handshake(4000, resp.session_id, &resp.passwd).await.expect("ConnectResponse");
    assert_eq!(r.timeout_ms, 0);
}

#[tokio::test]
async fn new_connection_for_live_session_closes_the_old_one() {
    let server = Server::start_with(&[TICK]);
    let (mut old, resp) = server.raw_session(3000).await;
    old.call(op::CREATE, &body_create("/moved", b"", 1)).await;
    let mut new = RawConn::connect(&server.addr()).await;
    let r = new.handshake(3000, resp.session_id, &resp.passwd).await.expect("ConnectResponse");
    assert_eq!(r.session_id, resp.session_id);
    assert!(r.timeout_ms > 0);
    assert!(old.closed_by_server(Duration::from_secs(3)).await, "old connection still open");
    // The session and its ephemeral live on through the new connection.
    assert!(exists(&mut new, "/moved").await);
    let r = new.call(op::DELETE, &body_path_i32("/moved", -1)).await;
    assert_eq!(r.header.err, 0);
}

#[tokio::test]
async fn crate_client_resumes_a_detached_session() {
    let server = Server::start_with(&[TICK]);
    let zk_connector = || zookeeper_client::Client::connector().with_session_timeout(Duration::from_millis(3000));
    let first = server.connect_with(zk_connector().with_detached()).await;
    let opts = zookeeper_client::CreateMode::Ephemeral.with_acls(zookeeper_client::Acls::anyone_all());
    first.create("/crate-eph", b"", &opts).await.unwrap();
    let info = first.session().clone();
    let id = first.session_id();
    drop(first); // Detached: the session is not closed.

    let second = server.connect_with(zk_connector().with_session(info)).await;
    assert_eq!(second.session_id(), id);
    // The crate resumes with last zxid 0, so a member of an ensemble that knows the session
    // may not have applied the create yet: sync first.
    second.sync("/crate-eph").await.unwrap();
    let (_, stat) = second.get_data("/crate-eph").await.unwrap();
    assert_eq!(stat.ephemeral_owner, id.0);
    assert_eq!(second.list_ephemerals("/").await.unwrap(), vec!["/crate-eph"]);

    // Dropping the last (attached) handle closes it.
    drop(second);
    let observer = server.connect().await;
    assert!(
        eventually(Duration::from_secs(5), || async { observer.check_stat("/crate-eph").await.unwrap().is_none() })
            .await
    );
}
