//! The ZooKeeper client wire protocol, as plain data.
//!
//! This crate owns everything about bytes on the client port and nothing else: no sockets,
//! no clocks, no state. Its parts:
//!
//! - [`jute`]: the primitive encoding ZooKeeper calls jute (big-endian integers,
//!   length-prefixed buffers, strings and vectors), a [`jute::Reader`] over a byte slice
//!   and a [`jute::Writer`] onto a `Vec<u8>`.
//! - [`codes`]: opcodes, error codes, watch event types and states, create modes and
//!   permission bits — the numbers every ZooKeeper client already knows.
//! - [`records`]: the records of `zookeeper.jute` that cross the client port (connect
//!   handshake, request and reply headers, `Stat`, `ACL`, every request and response).
//! - [`request`]: a whole client request decoded from its opcode and body.
//! - [`frame`]: "is a whole length-prefixed frame here?", with the size limit that stands
//!   in for `jute.maxbuffer`.
//!
//! Decoding never panics on hostile input: a short or malformed body is a [`DecodeError`].

pub mod codes;
pub mod frame;
pub mod jute;
pub mod records;
pub mod request;

pub use codes::{CreateMode, ErrorCode, EventType, KeeperState, OpCode, Perms};
pub use jute::{DecodeError, Reader, Writer};
pub use records::*;
pub use request::Request;
