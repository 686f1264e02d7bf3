//! Clients that misbehave — or are merely unlucky — must not hurt the server or others.

mod common;

use common::*;
use corral_proto::{Acl, Perms};
use std::time::Duration;
use tokio::io::AsyncReadExt;

#[tokio::test]
async fn requests_pipelined_after_a_failed_auth_are_not_applied() {
    let server = Server::start();
    let (mut raw, _) = server.raw_session(10_000).await;
    let mut bytes = request_frame(-4, op::AUTH, &body_auth("no-such-scheme", b"x"));
    bytes.extend(request_frame(1, op::CREATE, &body_create("/after-auth-failure", b"", 0)));
    raw.send_bytes(&bytes).await.unwrap();
    let r = raw.read_reply().await.expect("auth reply");
    assert_eq!(r.header.err, err::AUTH_FAILED);
    assert!(raw.closed_by_server(Duration::from_secs(5)).await);
    let (mut other, _) = server.raw_session(10_000).await;
    let r = other.call(op::EXISTS, &body_path_watch("/after-auth-failure", false)).await;
    assert_eq!(r.header.err, err::NO_NODE, "a request sent after the failed auth was applied");
}

#[tokio::test]
async fn delete_checks_the_parent_acl_before_the_node() {
    let server = Server::start();
    let (mut raw, _) = server.raw_session(10_000).await;
    let no_delete = [Acl::new(Perms::ALL & !Perms::DELETE, "world", "anyone")];
    assert_eq!(raw.call(op::CREATE, &body_create_acl("/nodel", b"", &no_delete, 0)).await.header.err, 0);
    let r = raw.call(op::DELETE, &body_path_i32("/nodel/missing", -1)).await;
    assert_eq!(r.header.err, err::NO_AUTH);
}

/// A client that sends requests but never reads the replies piles them up in the server;
/// past a bound the server drops that connection and stays healthy for everyone else.
#[tokio::test]
async fn a_client_that_never_reads_is_dropped() {
    if is_zookeeper() {
        return; // ZooKeeper throttles instead; this is Corral's bound.
    }
    let server = Server::start();
    let (mut setup, _) = server.raw_session(10_000).await;
    let big = vec![5u8; 1_000_000];
    assert_eq!(setup.call(op::CREATE, &body_create("/big", &big, 0)).await.header.err, 0);

    let (mut hog, _) = server.raw_session(30_000).await;
    let mut burst = Vec::new();
    for xid in 1..=100 {
        burst.extend(request_frame(xid, op::GET_DATA, &body_path_watch("/big", false)));
    }
    hog.send_bytes(&burst).await.unwrap();
    // 100 replies of 1 MB are more than the server queues for one connection.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(setup.call(op::EXISTS, &body_path_watch("/big", false)).await.header.err, 0);

    let mut received = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let drained = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match hog.stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received += n,
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the connection of a client that never read was kept open");
    assert!(received < 100 * big.len(), "every reply was delivered: {received} bytes");
    assert_eq!(setup.call(op::EXISTS, &body_path_watch("/big", false)).await.header.err, 0);
}

/// Identities belong to the connection: a session resumed from another address gets that
/// address's `ip` identity, not the one it had before.
#[tokio::test]
async fn ip_identity_follows_the_connection() {
    let server = Server::start();
    let (mut a, resp) = server.raw_session(10_000).await;
    let only_here = [Acl::new(Perms::ALL, "ip", "127.0.0.1")];
    assert_eq!(a.call(op::CREATE, &body_create_acl("/iponly", b"x", &only_here, 0)).await.header.err, 0);
    assert_eq!(a.call(op::GET_DATA, &body_path_watch("/iponly", false)).await.header.err, 0);

    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let stream = sock.connect(server.socket_addr()).await.unwrap();
    let mut b = RawConn::from_stream(stream);
    let resumed = b.handshake(10_000, resp.session_id, &resp.passwd).await.expect("resume");
    assert_eq!(resumed.session_id, resp.session_id);
    assert_eq!(b.call(op::GET_DATA, &body_path_watch("/iponly", false)).await.header.err, err::NO_AUTH);
}

/// A closeSession sent right behind a write still lets the session hear of that write's
/// change: the session ends when the close is applied, not when it is received.
#[tokio::test]
async fn close_session_right_after_a_write_keeps_its_watch_event() {
    let server = Server::start();
    let (mut a, _) = server.raw_session(10_000).await;
    assert_eq!(a.call(op::CREATE, &body_create("/w", b"1", 0)).await.header.err, 0);
    assert_eq!(a.call(op::GET_DATA, &body_path_watch("/w", true)).await.header.err, 0);
    let mut bytes = request_frame(50, op::SET_DATA, &body_set_data("/w", b"2", -1));
    bytes.extend(request_frame(51, op::CLOSE_SESSION, &[]));
    a.send_bytes(&bytes).await.unwrap();
    let mut seen = Vec::new();
    while let Some(frame) = a.read_frame(Duration::from_secs(5)).await {
        let xid = i32::from_be_bytes(frame[0..4].try_into().unwrap());
        seen.push(xid);
    }
    assert_eq!(seen, vec![-1, 50, 51], "expected the event, the setData reply, then the close reply");
}

/// SIGTERM: the server answers the writes already in its pipeline, closes the
/// connection cleanly (EOF after the last reply), cuts a connection that never finished
/// a handshake, and exits with status 0 without waiting out its 10 s limit.
#[tokio::test]
async fn sigterm_answers_what_is_in_flight_then_closes_and_exits() {
    let mut server = Server::start();
    let mut raw = RawConn::connect(&server.addr()).await;
    raw.handshake(10_000, 0, &[0; 16]).await.expect("session");
    let n = 300;
    raw.send_bytes(&pipelined_creates("/t", n)).await.unwrap();
    // The first reply means the pipeline is full of the rest.
    let first = raw.read_reply().await.expect("a first reply");
    assert_eq!((first.header.xid, first.header.err), (1, 0));
    // A connection that never says anything (a load balancer's TCP probe) does not hold
    // the shutdown up.
    let idle = std::net::TcpStream::connect(server.addr()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // SAFETY: kill(2) on the server process this test started.
    assert_eq!(unsafe { libc::kill(server.pid() as i32, libc::SIGTERM) }, 0);
    let mut answered = 1;
    while let Some(r) = raw.read_reply_timeout(Duration::from_secs(15)).await {
        assert_eq!((r.header.xid, r.header.err), (answered + 1, 0), "replies in order, all successful");
        answered += 1;
    }
    assert!(raw.closed_by_server(Duration::from_secs(5)).await, "closed after the last reply");
    let status = server.wait_exit(Duration::from_secs(15)).expect("exited");
    assert!(status.success(), "{status:?}: {}", server.stderr_tail());
    assert!(server.stderr().contains("SIGTERM; shutting down"), "{}", server.stderr_tail());
    assert!(!server.stderr().contains("after 10 s"), "the shutdown waited out its limit: {}", server.stderr_tail());
    drop(idle);
    eprintln!("{answered} of {n} writes answered before the close");
    assert!(answered > 1, "the writes in the pipeline were answered");
}
