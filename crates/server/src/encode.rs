//! Encoding replies and notifications into frames.

use corral_proto::request::{MultiOp, Request};
use corral_proto::{write_acls, Acl, ErrorCode, MultiHeader, OpCode, ReplyHeader, Stat, WatcherEvent, Writer};
use corral_tree::read::ReadResult;
use corral_tree::TxnResult;

/// A frame holding a reply header and, for success, a body written by `body`.
pub fn reply(xid: i32, zxid: i64, err: ErrorCode, body: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut w = Writer::frame();
    ReplyHeader { xid, zxid, err: err.code() }.encode(&mut w);
    if err == ErrorCode::Ok {
        body(&mut w);
    }
    w.finish_frame()
}

pub fn error(xid: i32, zxid: i64, err: ErrorCode) -> Vec<u8> {
    reply(xid, zxid, err, |_| {})
}

pub fn notification(event_type: i32, state: i32, path: &str) -> Vec<u8> {
    let mut w = Writer::frame();
    ReplyHeader { xid: corral_proto::XID_NOTIFICATION, zxid: -1, err: 0 }.encode(&mut w);
    WatcherEvent { event_type, state, path: path.to_string() }.encode(&mut w);
    w.finish_frame()
}

pub fn acl_and_stat(w: &mut Writer, acl: &[Acl], s: &Stat) {
    write_acls(w, acl);
    s.encode(w);
}

/// The body of a successful write, shaped by the opcode the client used.
pub fn write_body(w: &mut Writer, req: &Request, result: &TxnResult) {
    match (req, result) {
        (Request::Create { op, .. }, TxnResult::Create { path, stat }) => {
            w.string(path);
            if *op != OpCode::Create {
                stat.encode(w);
            }
        }
        (Request::SetData { .. }, TxnResult::SetData { stat }) => stat.encode(w),
        (Request::SetAcl { .. }, TxnResult::SetAcl { stat }) => stat.encode(w),
        (Request::Multi(ops), TxnResult::Multi(results)) => multi_body(w, ops, results),
        _ => {}
    }
}

/// A multi's results. Inside a multi, create answers with the path only; create2,
/// createContainer and createTTL with path and Stat under opcode create2, as ZooKeeper 3.9
/// does (3.8 dropped the Stat of create2, ZOOKEEPER-4026).
fn multi_body(w: &mut Writer, ops: &[MultiOp], results: &[TxnResult]) {
    for (op, r) in ops.iter().zip(results) {
        match (op, r) {
            (MultiOp::Create { op, .. }, TxnResult::Create { path, stat }) => {
                if *op == OpCode::Create {
                    MultiHeader { op: OpCode::Create as i32, done: false, err: 0 }.encode(w);
                    w.string(path);
                } else {
                    MultiHeader { op: OpCode::Create2 as i32, done: false, err: 0 }.encode(w);
                    w.string(path);
                    stat.encode(w);
                }
            }
            (_, TxnResult::Delete) => MultiHeader { op: OpCode::Delete as i32, done: false, err: 0 }.encode(w),
            (_, TxnResult::Check) => MultiHeader { op: OpCode::Check as i32, done: false, err: 0 }.encode(w),
            (_, TxnResult::SetData { stat }) => {
                MultiHeader { op: OpCode::SetData as i32, done: false, err: 0 }.encode(w);
                stat.encode(w);
            }
            (_, TxnResult::Error(e)) => {
                MultiHeader { op: -1, done: false, err: e.code() }.encode(w);
                w.i32(e.code());
            }
            (_, other) => unreachable!("multi op result {other:?}"),
        }
    }
    MultiHeader::END.encode(w);
}

pub fn multi_read_body(w: &mut Writer, results: &[ReadResult]) {
    for r in results {
        match r {
            ReadResult::Children(ch) => {
                MultiHeader { op: OpCode::GetChildren as i32, done: false, err: 0 }.encode(w);
                w.string_vec(ch);
            }
            ReadResult::Data(d, s) => {
                MultiHeader { op: OpCode::GetData as i32, done: false, err: 0 }.encode(w);
                w.data(d.as_deref());
                s.encode(w);
            }
            ReadResult::Error(e) => {
                MultiHeader { op: -1, done: false, err: e.code() }.encode(w);
                w.i32(e.code());
            }
        }
    }
    MultiHeader::END.encode(w);
}
