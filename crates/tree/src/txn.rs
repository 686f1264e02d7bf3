//! Transactions: what a write request becomes once it has been checked. Applying a
//! transaction cannot fail for a reason the client caused; every replica that applies the
//! same transactions in the same order holds the same tree.
//!
//! [`encode_entry`] / [`decode_entry`] give a transaction and its header the byte form
//! that the log stores and that Zab will carry: jute primitives, each transaction tagged
//! with ZooKeeper's opcode for its kind.

use corral_proto::{read_acls, write_acls, Acl, DecodeError, ErrorCode, OpCode, Reader, Stat, Writer};

/// Who issued a transaction, when, and its place in the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnHeader {
    pub session: i64,
    pub cxid: i32,
    pub zxid: i64,
    /// Wall-clock milliseconds chosen by the server that created the txn; becomes
    /// ctime / mtime.
    pub time_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTxn {
    pub path: String,
    pub data: Option<Vec<u8>>,
    pub acl: Vec<Acl>,
    /// 0, the owning session, or the container / TTL marker (see [`crate::EphemeralType`]).
    pub ephemeral_owner: i64,
    /// The parent's cversion after this create.
    pub parent_cversion: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Txn {
    /// Opens the header's session. The password is part of the durable state so that a
    /// client can resume its session after the server restarts.
    CreateSession { timeout_ms: i32, passwd: Vec<u8> },
    /// Ends the header's session and deletes its ephemeral nodes.
    CloseSession,
    Create(CreateTxn),
    Delete { path: String },
    SetData { path: String, data: Option<Vec<u8>>, version: i32 },
    SetAcl { path: String, acl: Vec<Acl>, version: i32 },
    Check { path: String },
    Multi(Vec<Txn>),
    /// A failed request (or a failed op inside a failed multi) still takes its place in
    /// the history, as in ZooKeeper.
    Error(ErrorCode),
}

/// The outcome of applying one transaction (or one op of a multi).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnResult {
    Create { path: String, stat: Stat },
    Delete,
    SetData { stat: Stat },
    SetAcl { stat: Stat },
    Check,
    Multi(Vec<TxnResult>),
    Session,
    Error(ErrorCode),
}

fn error_code(v: i32) -> Result<ErrorCode, DecodeError> {
    use ErrorCode as E;
    const ALL: &[ErrorCode] = &[
        E::Ok, E::SystemError, E::RuntimeInconsistency, E::DataInconsistency, E::ConnectionLoss,
        E::MarshallingError, E::Unimplemented, E::OperationTimeout, E::BadArguments, E::UnknownSession,
        E::NewConfigNoQuorum, E::ReconfigInProgress, E::ApiError, E::NoNode, E::NoAuth, E::BadVersion,
        E::NoChildrenForEphemerals, E::NodeExists, E::NotEmpty, E::SessionExpired, E::InvalidCallback,
        E::InvalidAcl, E::AuthFailed, E::SessionMoved, E::NotReadOnly, E::EphemeralOnLocalSession,
        E::NoWatcher, E::RequestTimeout, E::ReconfigDisabled, E::SessionClosedRequireSaslAuth,
        E::QuotaExceeded, E::ThrottledOp,
    ];
    ALL.iter().copied().find(|e| *e as i32 == v).ok_or(DecodeError::Invalid("unknown error code in txn"))
}

impl TxnHeader {
    pub fn encode(&self, w: &mut Writer) {
        w.i64(self.session).i32(self.cxid).i64(self.zxid).i64(self.time_ms);
    }

    pub fn decode(r: &mut Reader) -> Result<TxnHeader, DecodeError> {
        Ok(TxnHeader { session: r.read_i64()?, cxid: r.read_i32()?, zxid: r.read_i64()?, time_ms: r.read_i64()? })
    }
}

/// How deep multis may nest when decoding (a multi never holds a multi; this only bounds
/// hostile input).
const MAX_NESTING: usize = 2;

impl Txn {
    pub fn encode(&self, w: &mut Writer) {
        match self {
            Txn::CreateSession { timeout_ms, passwd } => {
                w.i32(OpCode::CreateSession as i32).i32(*timeout_ms).buffer(passwd);
            }
            Txn::CloseSession => {
                w.i32(OpCode::CloseSession as i32);
            }
            Txn::Create(c) => {
                w.i32(OpCode::Create as i32).string(&c.path).data(c.data.as_deref());
                write_acls(w, &c.acl);
                w.i64(c.ephemeral_owner).i32(c.parent_cversion);
            }
            Txn::Delete { path } => {
                w.i32(OpCode::Delete as i32).string(path);
            }
            Txn::SetData { path, data, version } => {
                w.i32(OpCode::SetData as i32).string(path).data(data.as_deref()).i32(*version);
            }
            Txn::SetAcl { path, acl, version } => {
                w.i32(OpCode::SetAcl as i32).string(path);
                write_acls(w, acl);
                w.i32(*version);
            }
            Txn::Check { path } => {
                w.i32(OpCode::Check as i32).string(path);
            }
            Txn::Multi(txns) => {
                w.i32(OpCode::Multi as i32).i32(txns.len() as i32);
                for t in txns {
                    t.encode(w);
                }
            }
            Txn::Error(e) => {
                w.i32(OpCode::Error as i32).i32(e.code());
            }
        }
    }

    pub fn decode(r: &mut Reader) -> Result<Txn, DecodeError> {
        Self::decode_nested(r, 0)
    }

    fn decode_nested(r: &mut Reader, depth: usize) -> Result<Txn, DecodeError> {
        let op = r.read_i32()?;
        let op = OpCode::from_i32(op).ok_or(DecodeError::UnknownOp(op))?;
        Ok(match op {
            OpCode::CreateSession => Txn::CreateSession { timeout_ms: r.read_i32()?, passwd: r.read_buffer()? },
            OpCode::CloseSession => Txn::CloseSession,
            OpCode::Create => Txn::Create(CreateTxn {
                path: r.read_path()?,
                data: r.read_data()?,
                acl: read_acls(r)?,
                ephemeral_owner: r.read_i64()?,
                parent_cversion: r.read_i32()?,
            }),
            OpCode::Delete => Txn::Delete { path: r.read_path()? },
            OpCode::SetData => Txn::SetData { path: r.read_path()?, data: r.read_data()?, version: r.read_i32()? },
            OpCode::SetAcl => Txn::SetAcl { path: r.read_path()?, acl: read_acls(r)?, version: r.read_i32()? },
            OpCode::Check => Txn::Check { path: r.read_path()? },
            OpCode::Multi if depth < MAX_NESTING => {
                let n = r.read_i32()?;
                // Every sub-transaction takes at least its 4-byte tag.
                if n < 0 || n as usize > r.remaining() / 4 {
                    return Err(DecodeError::InvalidLength(n));
                }
                let mut txns = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    txns.push(Self::decode_nested(r, depth + 1)?);
                }
                Txn::Multi(txns)
            }
            OpCode::Error => Txn::Error(error_code(r.read_i32()?)?),
            _ => return Err(DecodeError::Invalid("not a transaction opcode")),
        })
    }
}

/// The bytes of a logged transaction: its header, then the transaction.
pub fn encode_entry(hdr: &TxnHeader, txn: &Txn) -> Vec<u8> {
    let mut w = Writer::new();
    hdr.encode(&mut w);
    txn.encode(&mut w);
    w.into_inner()
}

/// The inverse of [`encode_entry`]; trailing bytes are an error.
pub fn decode_entry(bytes: &[u8]) -> Result<(TxnHeader, Txn), DecodeError> {
    let mut r = Reader::new(bytes);
    let hdr = TxnHeader::decode(&mut r)?;
    let txn = Txn::decode(&mut r)?;
    if r.remaining() != 0 {
        return Err(DecodeError::Invalid("trailing bytes after a transaction"));
    }
    Ok((hdr, txn))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Txn> {
        let create = CreateTxn {
            path: "/a/b".into(),
            data: Some(b"data".to_vec()),
            acl: Acl::open_unsafe(),
            ephemeral_owner: 0x0100_0000_0000_0001,
            parent_cversion: 7,
        };
        vec![
            Txn::CreateSession { timeout_ms: 30_000, passwd: vec![9; 16] },
            Txn::CloseSession,
            Txn::Create(create.clone()),
            Txn::Create(CreateTxn { data: None, ..create.clone() }),
            Txn::Delete { path: "/a".into() },
            Txn::SetData { path: "/a".into(), data: Some(vec![]), version: 3 },
            Txn::SetData { path: "/a".into(), data: None, version: 4 },
            Txn::SetAcl { path: "/a".into(), acl: Acl::read_unsafe(), version: 1 },
            Txn::Check { path: "/a".into() },
            Txn::Multi(vec![Txn::Create(create), Txn::Check { path: "/a".into() }]),
            Txn::Multi(vec![Txn::Error(ErrorCode::Ok), Txn::Error(ErrorCode::NodeExists)]),
            Txn::Multi(vec![]),
            Txn::Error(ErrorCode::ReconfigDisabled),
        ]
    }

    #[test]
    fn entries_round_trip() {
        let hdr = TxnHeader { session: -5, cxid: 42, zxid: 0x1_0000_0007, time_ms: 1_700_000_000_000 };
        for txn in samples() {
            let bytes = encode_entry(&hdr, &txn);
            assert_eq!(decode_entry(&bytes).unwrap(), (hdr, txn));
        }
    }

    #[test]
    fn damaged_entries_are_errors_not_panics() {
        let hdr = TxnHeader { session: 1, cxid: 1, zxid: 1, time_ms: 1 };
        for txn in samples() {
            let bytes = encode_entry(&hdr, &txn);
            for cut in 0..bytes.len() {
                assert!(decode_entry(&bytes[..cut]).is_err(), "{txn:?} cut at {cut}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(decode_entry(&longer).is_err());
        }
        // A multi claiming more sub-transactions than bytes, and deep nesting.
        let mut w = Writer::new();
        hdr.encode(&mut w);
        w.i32(OpCode::Multi as i32).i32(i32::MAX);
        assert!(decode_entry(&w.buf).is_err());
        let mut w = Writer::new();
        hdr.encode(&mut w);
        for _ in 0..10 {
            w.i32(OpCode::Multi as i32).i32(1);
        }
        w.i32(OpCode::CloseSession as i32);
        assert!(decode_entry(&w.buf).is_err());
    }
}
