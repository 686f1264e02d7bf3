//! The records of `zookeeper.jute` that cross the client port.
//!
//! Each record decodes from a [`Reader`] and encodes onto a [`Writer`] with the field order
//! of ZooKeeper's jute definitions.

use crate::jute::{DecodeError, Reader, Writer};

type R<T> = Result<T, DecodeError>;

/// The first frame a client sends.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectRequest {
    pub protocol_version: i32,
    pub last_zxid_seen: i64,
    pub timeout_ms: i32,
    pub session_id: i64,
    pub passwd: Vec<u8>,
    /// Sent by clients since 3.4; older clients omit the byte.
    pub read_only: Option<bool>,
}

impl ConnectRequest {
    pub fn decode(r: &mut Reader) -> R<Self> {
        let protocol_version = r.read_i32()?;
        let last_zxid_seen = r.read_i64()?;
        let timeout_ms = r.read_i32()?;
        let session_id = r.read_i64()?;
        let passwd = r.read_buffer()?;
        let read_only = if r.remaining() > 0 { Some(r.read_bool()?) } else { None };
        Ok(ConnectRequest { protocol_version, last_zxid_seen, timeout_ms, session_id, passwd, read_only })
    }

    pub fn encode(&self, w: &mut Writer) {
        w.i32(self.protocol_version)
            .i64(self.last_zxid_seen)
            .i32(self.timeout_ms)
            .i64(self.session_id)
            .buffer(&self.passwd);
        if let Some(ro) = self.read_only {
            w.bool(ro);
        }
    }
}

/// The server's answer to [`ConnectRequest`]. A timeout of 0 tells the client its session
/// is expired (or its password wrong).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectResponse {
    pub protocol_version: i32,
    pub timeout_ms: i32,
    pub session_id: i64,
    pub passwd: Vec<u8>,
    /// Written only when the client's request carried the flag, as ZooKeeper does.
    pub read_only: Option<bool>,
}

impl ConnectResponse {
    pub fn encode(&self, w: &mut Writer) {
        w.i32(self.protocol_version).i32(self.timeout_ms).i64(self.session_id).buffer(&self.passwd);
        if let Some(ro) = self.read_only {
            w.bool(ro);
        }
    }

    pub fn decode(r: &mut Reader) -> R<Self> {
        Ok(ConnectResponse {
            protocol_version: r.read_i32()?,
            timeout_ms: r.read_i32()?,
            session_id: r.read_i64()?,
            passwd: r.read_buffer()?,
            read_only: if r.remaining() > 0 { Some(r.read_bool()?) } else { None },
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    pub xid: i32,
    pub op: i32,
}

impl RequestHeader {
    pub fn decode(r: &mut Reader) -> R<Self> {
        Ok(RequestHeader { xid: r.read_i32()?, op: r.read_i32()? })
    }
    pub fn encode(&self, w: &mut Writer) {
        w.i32(self.xid).i32(self.op);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyHeader {
    pub xid: i32,
    pub zxid: i64,
    pub err: i32,
}

impl ReplyHeader {
    pub fn encode(&self, w: &mut Writer) {
        w.i32(self.xid).i64(self.zxid).i32(self.err);
    }
    pub fn decode(r: &mut Reader) -> R<Self> {
        Ok(ReplyHeader { xid: r.read_i32()?, zxid: r.read_i64()?, err: r.read_i32()? })
    }
}

/// Reserved xids.
pub const XID_NOTIFICATION: i32 = -1;
pub const XID_PING: i32 = -2;
pub const XID_AUTH: i32 = -4;
pub const XID_SET_WATCHES: i32 = -8;

/// A znode's metadata as clients see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Stat {
    pub czxid: i64,
    pub mzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    pub cversion: i32,
    pub aversion: i32,
    pub ephemeral_owner: i64,
    pub data_length: i32,
    pub num_children: i32,
    pub pzxid: i64,
}

impl Stat {
    pub fn encode(&self, w: &mut Writer) {
        w.i64(self.czxid)
            .i64(self.mzxid)
            .i64(self.ctime)
            .i64(self.mtime)
            .i32(self.version)
            .i32(self.cversion)
            .i32(self.aversion)
            .i64(self.ephemeral_owner)
            .i32(self.data_length)
            .i32(self.num_children)
            .i64(self.pzxid);
    }

    pub fn decode(r: &mut Reader) -> R<Self> {
        Ok(Stat {
            czxid: r.read_i64()?,
            mzxid: r.read_i64()?,
            ctime: r.read_i64()?,
            mtime: r.read_i64()?,
            version: r.read_i32()?,
            cversion: r.read_i32()?,
            aversion: r.read_i32()?,
            ephemeral_owner: r.read_i64()?,
            data_length: r.read_i32()?,
            num_children: r.read_i32()?,
            pzxid: r.read_i64()?,
        })
    }
}

/// An identity: a scheme and an id within it (`world:anyone`, `digest:user:hash`, `ip:10.0.0.0/8`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id {
    pub scheme: String,
    pub id: String,
}

impl Id {
    pub fn new(scheme: &str, id: &str) -> Id {
        Id { scheme: scheme.to_string(), id: id.to_string() }
    }
    pub fn encode(&self, w: &mut Writer) {
        w.string(&self.scheme).string(&self.id);
    }
    pub fn decode(r: &mut Reader) -> R<Self> {
        Ok(Id { scheme: r.read_string()?, id: r.read_string()? })
    }
}

/// One ACL entry: permission bits granted to an identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Acl {
    pub perms: i32,
    pub id: Id,
}

impl Acl {
    pub fn new(perms: i32, scheme: &str, id: &str) -> Acl {
        Acl { perms, id: Id::new(scheme, id) }
    }

    /// `world:anyone` with every permission: ZooKeeper's OPEN_ACL_UNSAFE.
    pub fn open_unsafe() -> Vec<Acl> {
        vec![Acl::new(crate::Perms::ALL, "world", "anyone")]
    }

    /// `world:anyone` read-only: ZooKeeper's READ_ACL_UNSAFE.
    pub fn read_unsafe() -> Vec<Acl> {
        vec![Acl::new(crate::Perms::READ, "world", "anyone")]
    }

    pub fn encode(&self, w: &mut Writer) {
        w.i32(self.perms);
        self.id.encode(w);
    }
    pub fn decode(r: &mut Reader) -> R<Self> {
        Ok(Acl { perms: r.read_i32()?, id: Id::decode(r)? })
    }
}

pub fn read_acls(r: &mut Reader) -> R<Vec<Acl>> {
    r.read_vec(Acl::decode)
}

pub fn write_acls(w: &mut Writer, acls: &[Acl]) {
    w.vec(acls, |w, a| a.encode(w));
}

/// A watch notification body (`WatcherEvent`), sent with xid -1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatcherEvent {
    pub event_type: i32,
    pub state: i32,
    pub path: String,
}

impl WatcherEvent {
    pub fn encode(&self, w: &mut Writer) {
        w.i32(self.event_type).i32(self.state).string(&self.path);
    }
    pub fn decode(r: &mut Reader) -> R<Self> {
        Ok(WatcherEvent { event_type: r.read_i32()?, state: r.read_i32()?, path: r.read_string()? })
    }
}

/// One entry of a whoAmI reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    pub auth_scheme: String,
    pub user: String,
}

/// The header before each op of a multi request and each result of its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MultiHeader {
    pub op: i32,
    pub done: bool,
    pub err: i32,
}

impl MultiHeader {
    pub const END: MultiHeader = MultiHeader { op: -1, done: true, err: -1 };

    pub fn encode(&self, w: &mut Writer) {
        w.i32(self.op).bool(self.done).i32(self.err);
    }
    pub fn decode(r: &mut Reader) -> R<Self> {
        Ok(MultiHeader { op: r.read_i32()?, done: r.read_bool()?, err: r.read_i32()? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_is_68_bytes_and_round_trips() {
        let s = Stat { czxid: 1, mzxid: 2, ctime: 3, mtime: 4, version: 5, cversion: 6, aversion: 7, ephemeral_owner: 8, data_length: 9, num_children: 10, pzxid: 11 };
        let mut w = Writer::new();
        s.encode(&mut w);
        assert_eq!(w.buf.len(), 68);
        assert_eq!(Stat::decode(&mut Reader::new(&w.buf)).unwrap(), s);
    }

    #[test]
    fn connect_request_with_and_without_read_only() {
        let mut c = ConnectRequest { protocol_version: 0, last_zxid_seen: 5, timeout_ms: 30000, session_id: 0, passwd: vec![0; 16], read_only: Some(false) };
        let mut w = Writer::new();
        c.encode(&mut w);
        assert_eq!(w.buf.len(), 4 + 8 + 4 + 8 + 4 + 16 + 1);
        assert_eq!(ConnectRequest::decode(&mut Reader::new(&w.buf)).unwrap(), c);
        c.read_only = None;
        let mut w = Writer::new();
        c.encode(&mut w);
        assert_eq!(ConnectRequest::decode(&mut Reader::new(&w.buf)).unwrap(), c);
    }
}
