//! The znode tree: ZooKeeper's data model and semantics, with no IO.
//!
//! - [`tree`]: [`DataTree`], the nodes and the sessions that own ephemerals, and
//!   [`DataTree::apply`], which applies a [`Txn`] and reports the watch events it fires.
//! - [`prep`]: turns a write request into a [`Txn`] or a ZooKeeper error, checking paths,
//!   versions and ACLs against the tree plus changes not yet applied.
//! - [`read`]: reads and watch registration.
//! - [`watch`]: watch tables (one-shot, persistent, persistent-recursive).
//! - [`acl`]: ACL schemes, checks and the digest function.
//! - [`path`]: path validation and helpers.
//!
//! Everything here is deterministic: the same transactions in the same order give the same
//! tree on every replica. Time enters only through the transaction header.

pub mod acl;
pub mod path;
pub mod prep;
pub mod read;
pub mod tree;
pub mod txn;
pub mod watch;

pub use prep::{Caller, Changes, Outstanding, Prep, Settings};
pub use tree::{DataTree, EphemeralType, Node};
pub use tree::SessionInfo;
pub use txn::{decode_entry, encode_entry, CreateTxn, Txn, TxnHeader, TxnResult};
pub use watch::{SessionId, WatchEvent};

#[cfg(test)]
mod tests;
