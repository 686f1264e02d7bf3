//! A client request, decoded from the opcode in its header and the body after it.

use crate::codes::OpCode;
use crate::jute::{DecodeError, Reader, Writer};
use crate::records::{read_acls, write_acls, Acl, MultiHeader};

/// The body of a create-family request (create, create2, createContainer, createTTL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRequest {
    pub path: String,
    /// `None` when the client sent a null buffer; ZooKeeper keeps that distinction.
    pub data: Option<Vec<u8>>,
    pub acl: Vec<Acl>,
    pub flags: i32,
    /// Only createTTL carries a TTL; 0 elsewhere.
    pub ttl: i64,
}

/// One operation inside a multi (write) transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiOp {
    /// `op` is the opcode the client used (create, create2, createContainer, createTTL);
    /// it decides the shape of the result.
    Create { op: OpCode, req: CreateRequest },
    Delete { path: String, version: i32 },
    SetData { path: String, data: Option<Vec<u8>>, version: i32 },
    Check { path: String, version: i32 },
}

/// One operation inside a multiRead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOp {
    GetChildren { path: String },
    GetData { path: String },
}

/// The watch lists of setWatches / setWatches2.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SetWatches {
    pub relative_zxid: i64,
    pub data: Vec<String>,
    pub exist: Vec<String>,
    pub child: Vec<String>,
    pub persistent: Vec<String>,
    pub persistent_recursive: Vec<String>,
}

/// Every request a client can send after the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Create { op: OpCode, req: CreateRequest },
    Delete { path: String, version: i32 },
    Exists { path: String, watch: bool },
    GetData { path: String, watch: bool },
    SetData { path: String, data: Option<Vec<u8>>, version: i32 },
    GetAcl { path: String },
    SetAcl { path: String, acl: Vec<Acl>, version: i32 },
    /// getChildren (`with_stat` false) and getChildren2 (true).
    GetChildren { path: String, watch: bool, with_stat: bool },
    Sync { path: String },
    Ping,
    Check { path: String, version: i32 },
    Multi(Vec<MultiOp>),
    MultiRead(Vec<ReadOp>),
    Reconfig,
    CheckWatches { path: String, watcher_type: i32 },
    RemoveWatches { path: String, watcher_type: i32 },
    Auth { auth_type: i32, scheme: String, auth: Vec<u8> },
    SetWatches(SetWatches),
    Sasl,
    GetEphemerals { prefix: String },
    GetAllChildrenNumber { path: String },
    AddWatch { path: String, mode: i32 },
    WhoAmI,
    CloseSession,
}

fn decode_create(op: OpCode, r: &mut Reader) -> Result<CreateRequest, DecodeError> {
    let path = r.read_path()?;
    let data = r.read_data()?;
    let acl = read_acls(r)?;
    let flags = r.read_i32()?;
    let ttl = if op == OpCode::CreateTtl { r.read_i64()? } else { 0 };
    Ok(CreateRequest { path, data, acl, flags, ttl })
}

impl Request {
    /// Decodes the body of a request whose header named `op`.
    pub fn decode(op: i32, r: &mut Reader) -> Result<Request, DecodeError> {
        let code = OpCode::from_i32(op).ok_or(DecodeError::UnknownOp(op))?;
        use OpCode as O;
        Ok(match code {
            O::Create | O::Create2 | O::CreateContainer | O::CreateTtl => {
                Request::Create { op: code, req: decode_create(code, r)? }
            }
            O::Delete => Request::Delete { path: r.read_path()?, version: r.read_i32()? },
            O::Exists => Request::Exists { path: r.read_path()?, watch: r.read_bool()? },
            O::GetData => Request::GetData { path: r.read_path()?, watch: r.read_bool()? },
            O::SetData => Request::SetData {
                path: r.read_path()?,
                data: r.read_data()?,
                version: r.read_i32()?,
            },
            O::GetAcl => Request::GetAcl { path: r.read_path()? },
            O::SetAcl => Request::SetAcl {
                path: r.read_path()?,
                acl: read_acls(r)?,
                version: r.read_i32()?,
            },
            O::GetChildren | O::GetChildren2 => Request::GetChildren {
                path: r.read_path()?,
                watch: r.read_bool()?,
                with_stat: code == O::GetChildren2,
            },
            O::Sync => Request::Sync { path: r.read_path()? },
            O::Ping => Request::Ping,
            O::Check => Request::Check { path: r.read_path()?, version: r.read_i32()? },
            O::Multi => Request::Multi(decode_multi(r)?),
            O::MultiRead => Request::MultiRead(decode_multi_read(r)?),
            O::Reconfig => Request::Reconfig,
            O::CheckWatches => {
                Request::CheckWatches { path: r.read_path()?, watcher_type: r.read_i32()? }
            }
            O::RemoveWatches => {
                Request::RemoveWatches { path: r.read_path()?, watcher_type: r.read_i32()? }
            }
            O::Auth => Request::Auth {
                auth_type: r.read_i32()?,
                scheme: r.read_string()?,
                auth: r.read_buffer()?,
            },
            O::SetWatches | O::SetWatches2 => {
                let mut sw = SetWatches {
                    relative_zxid: r.read_i64()?,
                    data: r.read_string_vec()?,
                    exist: r.read_string_vec()?,
                    child: r.read_string_vec()?,
                    ..Default::default()
                };
                if code == O::SetWatches2 {
                    sw.persistent = r.read_string_vec()?;
                    sw.persistent_recursive = r.read_string_vec()?;
                }
                Request::SetWatches(sw)
            }
            O::Sasl => Request::Sasl,
            O::GetEphemerals => Request::GetEphemerals { prefix: r.read_path()? },
            O::GetAllChildrenNumber => Request::GetAllChildrenNumber { path: r.read_path()? },
            O::AddWatch => Request::AddWatch { path: r.read_path()?, mode: r.read_i32()? },
            O::WhoAmI => Request::WhoAmI,
            O::CloseSession => Request::CloseSession,
            O::Notification | O::DeleteContainer | O::CreateSession | O::Error => {
                return Err(DecodeError::UnknownOp(op))
            }
        })
    }
}

fn decode_multi(r: &mut Reader) -> Result<Vec<MultiOp>, DecodeError> {
    let mut ops = Vec::new();
    loop {
        let h = MultiHeader::decode(r)?;
        if h.done {
            return Ok(ops);
        }
        let code = OpCode::from_i32(h.op).ok_or(DecodeError::Invalid("unknown op in multi"))?;
        ops.push(match code {
            OpCode::Create | OpCode::Create2 | OpCode::CreateContainer | OpCode::CreateTtl => {
                MultiOp::Create { op: code, req: decode_create(code, r)? }
            }
            OpCode::Delete => MultiOp::Delete { path: r.read_path()?, version: r.read_i32()? },
            OpCode::SetData => MultiOp::SetData {
                path: r.read_path()?,
                data: r.read_data()?,
                version: r.read_i32()?,
            },
            OpCode::Check => MultiOp::Check { path: r.read_path()?, version: r.read_i32()? },
            _ => return Err(DecodeError::Invalid("op not allowed in multi")),
        });
    }
}

fn decode_multi_read(r: &mut Reader) -> Result<Vec<ReadOp>, DecodeError> {
    let mut ops = Vec::new();
    loop {
        let h = MultiHeader::decode(r)?;
        if h.done {
            return Ok(ops);
        }
        ops.push(match OpCode::from_i32(h.op) {
            // A getChildren / getData inside multiRead carries the watch flag, which
            // ZooKeeper ignores there.
            Some(OpCode::GetChildren) => {
                let path = r.read_path()?;
                r.read_bool()?;
                ReadOp::GetChildren { path }
            }
            Some(OpCode::GetData) => {
                let path = r.read_path()?;
                r.read_bool()?;
                ReadOp::GetData { path }
            }
            _ => return Err(DecodeError::Invalid("op not allowed in multiRead")),
        });
    }
}

/// Encodes a create body; used by tests and tools that speak to a server.
pub fn encode_create(w: &mut Writer, op: OpCode, req: &CreateRequest) {
    w.string(&req.path).data(req.data.as_deref());
    write_acls(w, &req.acl);
    w.i32(req.flags);
    if op == OpCode::CreateTtl {
        w.i64(req.ttl);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_create_ttl_and_multi() {
        let req = CreateRequest { path: "/a".into(), data: Some(b"x".to_vec()), acl: Acl::open_unsafe(), flags: 5, ttl: 100 };
        let mut w = Writer::new();
        encode_create(&mut w, OpCode::CreateTtl, &req);
        let got = Request::decode(21, &mut Reader::new(&w.buf)).unwrap();
        assert_eq!(got, Request::Create { op: OpCode::CreateTtl, req: req.clone() });

        let mut w = Writer::new();
        MultiHeader { op: 1, done: false, err: -1 }.encode(&mut w);
        encode_create(&mut w, OpCode::Create, &req);
        MultiHeader { op: 13, done: false, err: -1 }.encode(&mut w);
        w.string("/a").i32(3);
        MultiHeader::END.encode(&mut w);
        match Request::decode(14, &mut Reader::new(&w.buf)).unwrap() {
            Request::Multi(ops) => {
                assert_eq!(ops.len(), 2);
                assert_eq!(ops[1], MultiOp::Check { path: "/a".into(), version: 3 });
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_unknown_and_truncated() {
        assert_eq!(Request::decode(10, &mut Reader::new(&[])), Err(DecodeError::UnknownOp(10)));
        assert!(Request::decode(4, &mut Reader::new(&[0, 0, 0, 5, b'/'])).is_err());
        // A multi without its end marker is truncated, not an endless loop.
        let mut w = Writer::new();
        MultiHeader { op: 13, done: false, err: -1 }.encode(&mut w);
        w.string("/a").i32(3);
        assert!(Request::decode(14, &mut Reader::new(&w.buf)).is_err());
    }
}
