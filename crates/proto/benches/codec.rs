//! Micro-benchmarks of the jute codec: decoding typical client requests from the bytes of
//! a frame body (request header + request, as the connection task decodes them) and
//! encoding typical replies into whole frames (as the server's `encode` module does).
//!
//! Run: `cargo bench -p corral-proto` (add `-- --warm-up-time 1 --measurement-time 2` for a
//! quick look).

use corral_proto::request::{encode_create, CreateRequest};
use corral_proto::{
    Acl, EventType, KeeperState, MultiHeader, OpCode, Reader, ReplyHeader, Request, RequestHeader,
    Stat, WatcherEvent, Writer, XID_NOTIFICATION,
};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

const DATA: [u8; 100] = [0x5a; 100];
const PATH: &str = "/app/config/node-0000001234";

fn create_req(path: &str) -> CreateRequest {
    CreateRequest {
        path: path.to_string(),
        data: Some(DATA.to_vec()),
        acl: Acl::open_unsafe(),
        flags: 0, // persistent
        ttl: 0,
    }
}

/// A frame body: the request header, then whatever `body` writes.
fn request(xid: i32, op: OpCode, body: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut w = Writer::new();
    RequestHeader { xid, op: op as i32 }.encode(&mut w);
    body(&mut w);
    w.into_inner()
}

/// What the connection task does with a frame body.
fn decode(body: &[u8]) -> (RequestHeader, Request) {
    let mut r = Reader::new(body);
    let hdr = RequestHeader::decode(&mut r).unwrap();
    let req = Request::decode(hdr.op, &mut r).unwrap();
    (hdr, req)
}

fn decode_requests(c: &mut Criterion) {
    let create = request(7, OpCode::Create, |w| encode_create(w, OpCode::Create, &create_req(PATH)));
    let get_data = request(8, OpCode::GetData, |w| {
        w.string(PATH).bool(true);
    });
    let set_data = request(9, OpCode::SetData, |w| {
        w.string(PATH).buffer(&DATA).i32(-1);
    });
    // Five ops, the shape of a typical transaction: check a version, create two nodes,
    // update one, delete one.
    let multi = request(10, OpCode::Multi, |w| {
        let head = |w: &mut Writer, op: OpCode| MultiHeader { op: op as i32, done: false, err: -1 }.encode(w);
        head(w, OpCode::Check);
        w.string("/app/config").i32(4);
        head(w, OpCode::Create);
        encode_create(w, OpCode::Create, &create_req("/app/config/node-0000001235"));
        head(w, OpCode::Create);
        encode_create(w, OpCode::Create, &create_req("/app/config/node-0000001236"));
        head(w, OpCode::SetData);
        w.string("/app/config").buffer(&DATA).i32(4);
        head(w, OpCode::Delete);
        w.string("/app/config/node-0000001200").i32(-1);
        MultiHeader::END.encode(w);
    });
    // The inputs decode to what they should, so the loop measures the real path.
    assert!(matches!(decode(&create).1, Request::Create { .. }));
    assert!(matches!(decode(&get_data).1, Request::GetData { .. }));
    assert!(matches!(decode(&set_data).1, Request::SetData { .. }));
    assert!(matches!(decode(&multi).1, Request::Multi(ref ops) if ops.len() == 5));

    let mut g = c.benchmark_group("codec/decode");
    for (name, bytes) in [("create", &create), ("get_data", &get_data), ("set_data", &set_data), ("multi5", &multi)] {
        g.bench_function(name, |b| b.iter(|| decode(black_box(bytes))));
    }
    g.finish();
}

fn stat() -> Stat {
    Stat {
        czxid: 0x1_0000_0a00,
        mzxid: 0x1_0000_0b00,
        ctime: 1_700_000_000_000,
        mtime: 1_700_000_100_000,
        version: 3,
        cversion: 0,
        aversion: 0,
        ephemeral_owner: 0,
        data_length: DATA.len() as i32,
        num_children: 0,
        pzxid: 0x1_0000_0a00,
    }
}

/// A reply frame the way the server builds one: length placeholder, reply header, body.
fn reply(xid: i32, zxid: i64, body: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut w = Writer::frame();
    ReplyHeader { xid, zxid, err: 0 }.encode(&mut w);
    body(&mut w);
    w.finish_frame()
}

fn encode_replies(c: &mut Criterion) {
    let s = stat();
    let mut g = c.benchmark_group("codec/encode");
    g.bench_function("get_data_reply", |b| {
        b.iter(|| {
            reply(black_box(8), 0x1_0000_0c00, |w| {
                w.data(Some(black_box(&DATA[..])));
                black_box(&s).encode(w);
            })
        })
    });
    // A create (opcode 1) answers with the path it created.
    g.bench_function("create_reply", |b| {
        b.iter(|| reply(black_box(7), 0x1_0000_0c01, |w| {
            w.string(black_box(PATH));
        }))
    });
    g.bench_function("watcher_event", |b| {
        b.iter(|| {
            reply(XID_NOTIFICATION, -1, |w| {
                WatcherEvent {
                    event_type: EventType::NodeDataChanged as i32,
                    state: KeeperState::SyncConnected as i32,
                    path: black_box(PATH).to_string(),
                }
                .encode(w)
            })
        })
    });
    g.finish();
}

criterion_group!(benches, decode_requests, encode_replies);
criterion_main!(benches);
