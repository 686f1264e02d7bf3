//! Transactions: what a write request becomes once it has been checked. Applying a
//! transaction cannot fail for a reason the client caused; every replica that applies the
//! same transactions in the same order holds the same tree.

use corral_proto::{Acl, ErrorCode, Stat};

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
    CreateSession { timeout_ms: i32 },
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
