//! Hostile and broken input: the offending connection is closed (or gets an error reply),
//! while a well-behaved client on the same server keeps working and the process survives.

mod common;

use std::time::Duration;

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::AsyncWriteExt;
use zk::{Acls, CreateMode};
use zookeeper_client as zk;

const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// A client that must keep working whatever other connections do.
struct Healthy {
    client: zk::Client,
    n: u32,
}

impl Healthy {
    async fn new(server: &Server) -> Healthy {
        let client = server.connect().await;
        client.create("/healthy", b"", &CreateMode::Persistent.with_acls(Acls::anyone_all())).await.unwrap();
        Healthy { client, n: 0 }
    }

    async fn check(&mut self) {
        self.n += 1;
        let data = self.n.to_string();
        let stat = tokio::time::timeout(Duration::from_secs(5), self.client.set_data("/healthy", data.as_bytes(), None))
            .await
            .expect("healthy client timed out")
            .expect("healthy client failed");
        assert_eq!(stat.version as u32, self.n);
        let (got, _) = self.client.get_data("/healthy").await.unwrap();
        assert_eq!(got, data.as_bytes());
    }
}

/// What the server did with a bad request on an established session.
#[derive(Debug)]
enum Outcome {
    Closed,
    ErrorReply(i32),
}

/// After a bad request with `xid`: either an error reply for that xid (the connection may
/// then stay or go) or the connection is closed. Anything else fails.
async fn expect_rejected(c: &mut RawConn, xid: i32) -> Outcome {
    match c.read_reply_timeout(CLOSE_WAIT).await {
        None => Outcome::Closed,
        Some(r) => {
            assert_eq!(r.header.xid, xid, "unexpected frame {r:?}");
            assert_ne!(r.header.err, 0, "bad request answered with success: {r:?}");
            Outcome::ErrorReply(r.header.err)
        }
    }
}

fn looks_like_four_letter_word(b: &[u8]) -> bool {
    b.len() >= 4 && b[..4].iter().all(|c| c.is_ascii_alphabetic())
}

#[tokio::test]
async fn random_garbage_instead_of_a_handshake() {
    let mut server = Server::start();
    let mut healthy = Healthy::new(&server).await;
    let mut rng = StdRng::seed_from_u64(0x5eed_c0de);
    for round in 0..25 {
        let len = rng.gen_range(1..300);
        let mut garbage: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        if looks_like_four_letter_word(&garbage) {
            garbage[0] = 0xff;
        }
        let mut c = RawConn::connect(&server.addr()).await;
        let _ = c.stream.write_all(&garbage).await;
        // Whatever the server made of it, once we stop sending it must hang up.
        let _ = c.stream.shutdown().await;
        assert!(c.closed_by_server(CLOSE_WAIT).await, "round {round}: connection left open after garbage {garbage:02x?}");
        healthy.check().await;
    }
    assert!(server.is_alive());
}

#[tokio::test]
async fn bad_lengths_before_the_handshake() {
    let mut server = Server::start();
    let mut healthy = Healthy::new(&server).await;
    for len in [-1i32, i32::MIN, -4, 0x0010_0000 + 1, 0x0020_0000, i32::MAX] {
        let mut c = RawConn::connect(&server.addr()).await;
        c.send_bytes(&len.to_be_bytes()).await.unwrap();
        assert!(c.closed_by_server(CLOSE_WAIT).await, "length {len} did not close the connection");
        healthy.check().await;
    }
    // A zero-length frame is not a ConnectRequest.
    let mut c = RawConn::connect(&server.addr()).await;
    c.send_bytes(&0i32.to_be_bytes()).await.unwrap();
    assert!(c.closed_by_server(CLOSE_WAIT).await);
    // Nor is an ordinary request.
    let mut c = RawConn::connect(&server.addr()).await;
    c.send_bytes(&request_frame(1, op::GET_DATA, &body_path_watch("/", false))).await.unwrap();
    assert!(c.closed_by_server(CLOSE_WAIT).await);
    healthy.check().await;
    assert!(server.is_alive());
}

#[tokio::test]
async fn bad_lengths_after_the_handshake() {
    let mut server = Server::start();
    let mut healthy = Healthy::new(&server).await;
    for len in [-1i32, i32::MIN, 0x0010_0000 + 64, 0x0100_0000, i32::MAX, 0, 4] {
        let (mut c, _) = server.raw_session(10_000).await;
        let mut bytes = len.to_be_bytes().to_vec();
        if len == 4 {
            // Too short for a request header.
            bytes.extend_from_slice(&[0, 0, 0, 1]);
        }
        c.send_bytes(&bytes).await.unwrap();
        assert!(c.closed_by_server(CLOSE_WAIT).await, "length {len} did not close the connection");
        healthy.check().await;
    }
    assert!(server.is_alive());
}

#[tokio::test]
async fn frame_size_limit_is_jute_maxbuffer() {
    let server = Server::start();
    let mut healthy = Healthy::new(&server).await;
    let (mut c, _) = server.raw_session(10_000).await;
    assert_eq!(c.call(op::CREATE, &body_create("/big", b"", 0)).await.header.err, 0);
    // Just under the default 0xfffff bytes: fine.
    let data = vec![7u8; 0xfffff - 100];
    let r = c.call(op::SET_DATA, &body_set_data("/big", &data, -1)).await;
    assert_eq!(r.header.err, 0);
    assert_eq!(r.stat().data_length, data.len() as i32);
    healthy.check().await;
    // Over it: the connection goes.
    let data = vec![7u8; 0xfffff];
    // The server may close while the frame is still being written: ignore write errors.
    let _ = c.send_bytes(&request_frame(9, op::SET_DATA, &body_set_data("/big", &data, -1))).await;
    assert!(c.closed_by_server(CLOSE_WAIT).await, "oversized frame accepted");
    healthy.check().await;
    let (_, stat) = healthy.client.get_data("/big").await.unwrap();
    assert_eq!(stat.version, 1);
    drop(healthy);
    drop(server);

    // The limit follows jute.maxbuffer.
    let mut server = Server::start_with(&["jute.maxbuffer=4096"]);
    let mut healthy = Healthy::new(&server).await;
    let (mut c, _) = server.raw_session(10_000).await;
    assert_eq!(c.call(op::CREATE, &body_create("/small", &[1u8; 2000], 0)).await.header.err, 0);
    let _ = c.send_bytes(&request_frame(3, op::SET_DATA, &body_set_data("/small", &[2u8; 8000], -1))).await;
    assert!(c.closed_by_server(CLOSE_WAIT).await, "frame over jute.maxbuffer accepted");
    healthy.check().await;
    assert!(server.is_alive());
}

#[tokio::test]
async fn truncated_frames() {
    let mut server = Server::start();
    let mut healthy = Healthy::new(&server).await;

    // A handshake cut short, then EOF.
    let frame = connect_frame(10_000, 0, &[0; 16]);
    for cut in [1, 3, 4, 10, frame.len() - 1] {
        let mut c = RawConn::connect(&server.addr()).await;
        c.send_bytes(&frame[..cut]).await.unwrap();
        c.stream.shutdown().await.unwrap();
        assert!(c.closed_by_server(CLOSE_WAIT).await, "cut handshake at {cut}");
        healthy.check().await;
    }

    // A request frame cut short, then EOF: the session's connection goes.
    let full = request_frame(1, op::CREATE, &body_create("/cut", b"data", 0));
    for cut in [2, 4, 8, full.len() - 1] {
        let (mut c, _) = server.raw_session(10_000).await;
        c.send_bytes(&full[..cut]).await.unwrap();
        c.stream.shutdown().await.unwrap();
        assert!(c.closed_by_server(CLOSE_WAIT).await, "cut request at {cut}");
        healthy.check().await;
    }
    assert_eq!(healthy.client.check_stat("/cut").await.unwrap(), None);

    // A whole frame whose body is cut short inside: rejected, nothing created.
    let (mut c, _) = server.raw_session(10_000).await;
    let mut body = Vec::new();
    body.extend_from_slice(&50i32.to_be_bytes());
    body.extend_from_slice(b"/ab");
    c.send(6, op::GET_DATA, &body).await;
    expect_rejected(&mut c, 6).await;
    let (mut c, _) = server.raw_session(10_000).await;
    c.send(7, op::CREATE, &body_path("/half")).await;
    expect_rejected(&mut c, 7).await;
    healthy.check().await;
    assert_eq!(healthy.client.check_stat("/half").await.unwrap(), None);
    assert!(server.is_alive());
}

#[tokio::test]
async fn unknown_opcodes_after_the_handshake() {
    let mut server = Server::start();
    let mut healthy = Healthy::new(&server).await;
    for opcode in [999, 10, 0, 23, 99, 108, 5000, -3, i32::MAX, i32::MIN] {
        let (mut c, _) = server.raw_session(10_000).await;
        c.send(5, opcode, &body_path("/")).await;
        let outcome = expect_rejected(&mut c, 5).await;
        if is_zookeeper() && opcode > 0 && opcode < 1000 {
            // ZooKeeper answers Unimplemented and then closes the connection.
            assert!(matches!(outcome, Outcome::ErrorReply(-6)), "op {opcode}: {outcome:?}");
        }
        healthy.check().await;
    }
    assert!(server.is_alive());
}

#[tokio::test]
async fn random_frames_after_the_handshake() {
    let mut server = Server::start();
    let mut healthy = Healthy::new(&server).await;
    let mut rng = StdRng::seed_from_u64(0xbad_f00d);
    for round in 0..20i32 {
        let (mut c, _) = server.raw_session(10_000).await;
        let frames = rng.gen_range(1..4);
        for _ in 0..frames {
            let len = rng.gen_range(0..200usize);
            let mut body: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            if rng.gen_bool(0.5) && body.len() >= 8 {
                // A plausible header with a random opcode among the real ones.
                let ops: [i32; 17] = [1, 2, 3, 4, 5, 6, 7, 8, 12, 14, 15, 19, 21, 22, 103, 104, 106];
                body[4..8].copy_from_slice(&ops[rng.gen_range(0..ops.len())].to_be_bytes());
                // Never a ping, closeSession, auth or setWatches by accident.
                body[0..4].copy_from_slice(&(round * 10 + 1).to_be_bytes());
            }
            let mut frame = (body.len() as i32).to_be_bytes().to_vec();
            frame.extend_from_slice(&body);
            if c.stream.write_all(&frame).await.is_err() {
                break;
            }
        }
        // Replies (errors or even successes of a lucky decode) may come; then EOF.
        let _ = c.stream.shutdown().await;
        assert!(c.closed_by_server(CLOSE_WAIT).await, "round {round}: connection left open");
        healthy.check().await;
    }
    // Pure noise with no framing at all.
    for _ in 0..5 {
        let (mut c, _) = server.raw_session(10_000).await;
        let noise: Vec<u8> = (0..rng.gen_range(1..64)).map(|_| rng.gen()).collect();
        let _ = c.stream.write_all(&noise).await;
        let _ = c.stream.shutdown().await;
        assert!(c.closed_by_server(CLOSE_WAIT).await);
        healthy.check().await;
    }
    assert!(server.is_alive());
}

#[tokio::test]
async fn byte_at_a_time_and_pipelined_requests_are_fine() {
    let mut server = Server::start();
    // A handshake dribbled one byte at a time still works.
    let mut c = RawConn::connect(&server.addr()).await;
    for b in connect_frame(10_000, 0, &[0; 16]) {
        c.send_bytes(&[b]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let body = c.read_frame(CLOSE_WAIT).await.expect("ConnectResponse");
    let resp = corral_proto::ConnectResponse::decode(&mut corral_proto::Reader::new(&body)).unwrap();
    assert!(resp.timeout_ms > 0);

    // Several requests in one write come back in order.
    let mut batch = Vec::new();
    batch.extend(request_frame(1, op::CREATE, &body_create("/pipe", b"", 0)));
    batch.extend(request_frame(2, op::SET_DATA, &body_set_data("/pipe", b"x", -1)));
    batch.extend(request_frame(3, op::GET_DATA, &body_path_watch("/pipe", false)));
    batch.extend(request_frame(4, op::GET_DATA, &body_path_watch("/missing", false)));
    batch.extend(request_frame(5, op::EXISTS, &body_path_watch("/pipe", false)));
    c.send_bytes(&batch).await.unwrap();
    let mut last_zxid = 0;
    for xid in 1..=5 {
        let r = c.read_reply().await.expect("reply");
        assert_eq!(r.header.xid, xid);
        assert_eq!(r.header.err, if xid == 4 { err::NO_NODE } else { 0 });
        assert!(r.header.zxid >= last_zxid);
        last_zxid = r.header.zxid;
    }
    assert!(server.is_alive());
}

#[tokio::test]
async fn many_idle_and_abandoned_connections() {
    let mut server = Server::start_with(&["tickTime=200"]);
    let mut healthy = Healthy::new(&server).await;
    let mut conns = Vec::new();
    for i in 0..40 {
        let mut c = RawConn::connect(&server.addr()).await;
        if i % 2 == 0 {
            // Half of them get a handshake, then are dropped without closeSession.
            let _ = c.handshake(400, 0, &[0; 16]).await;
        }
        conns.push(c);
    }
    healthy.check().await;
    drop(conns);
    healthy.check().await;
    // The abandoned sessions expire; the healthy one does not.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    healthy.check().await;
    assert!(server.is_alive());
}
