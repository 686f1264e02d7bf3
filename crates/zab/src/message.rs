//! What servers say to each other on the quorum port, by phase, and its encoding. The
//! names and the packet type numbers are ZooKeeper's (`Leader.java`); the layout is
//! Corral's own, in jute primitives (corral-proto), since Corral servers only talk to
//! Corral servers.

use crate::election::{Notification, PeerState, Vote};
use crate::Zxid;
use corral_proto::{Reader, Writer};
use std::sync::Arc;

/// Why bytes from a peer are not a message. The connection that sent them is closed.
pub use corral_proto::DecodeError;

/// A transaction's bytes as the log stores them; opaque to Zab.
pub type Txn = Arc<[u8]>;

/// A snapshot of the whole tree as of a zxid; opaque to Zab.
pub type Snapshot = Arc<[u8]>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Leader election (the election port).
    Election(Notification),

    // --- Discovery ---
    /// Learner → leader, first message: the epoch it last promised and its last zxid
    /// (ZooKeeper's FOLLOWERINFO, 11; OBSERVERINFO, 16, when `observer`), and the zxid of
    /// its newest snapshot: it cannot truncate below that, so a leader that would need it
    /// to sends a snapshot instead.
    LearnerInfo { accepted_epoch: u32, last_zxid: Zxid, snapshot_zxid: Zxid, observer: bool },
    /// Leader → learner: the new epoch (LEADERINFO, 17).
    LeaderInfo { epoch: u32 },
    /// Learner → leader: it promised the epoch; its history's epoch and last zxid
    /// (ACKEPOCH, 18). `fresh` is false when the learner had promised this epoch already
    /// (it still acks, but the leader does not count it toward the quorum).
    AckEpoch { current_epoch: u32, last_zxid: Zxid, fresh: bool },

    // --- Synchronisation ---
    /// Leader → learner: the proposals that follow bring you up to date (DIFF, 13).
    Diff { last_zxid: Zxid },
    /// Leader → learner: drop every transaction after `zxid`, then take what follows
    /// (TRUNC, 14).
    Trunc { zxid: Zxid },
    /// Leader → learner: replace everything with this snapshot (SNAP, 15).
    Snap { zxid: Zxid, snapshot: Snapshot },
    /// Leader → learner: the end of the sync data; ACK it once what was synced is durable
    /// and currentEpoch is `epoch` (NEWLEADER, 10).
    NewLeader { epoch: u32 },
    /// Leader → learner: a quorum has the new history; start serving (UPTODATE, 12).
    UpToDate,

    // --- Broadcast ---
    /// Leader → follower: log this transaction (PROPOSAL, 2).
    Proposal { zxid: Zxid, txn: Txn },
    /// Follower → leader: everything through `zxid` is durable here (ACK, 3). Sent in
    /// reply to NEWLEADER with the new epoch's zxid 0.
    Ack { zxid: Zxid },
    /// Leader → follower: every transaction through `zxid` is committed (COMMIT, 4).
    Commit { zxid: Zxid },
    /// Leader → observer: a committed transaction (INFORM, 8).
    Inform { zxid: Zxid, txn: Txn },
    /// Both ways, to show liveness (PING, 5).
    Ping,

    // --- Serving clients on learners ---
    /// Learner → leader: a client's write, to prep and propose (REQUEST, 1). Opaque to
    /// Zab.
    Request { body: Txn },
    /// Learner → leader: a client's `sync` (`zxid` 0); leader → learner: everything
    /// through `zxid` is committed and was sent to you before this (SYNC, 7).
    Sync { id: u64, zxid: Zxid },
}

impl Message {
    /// ZooKeeper's packet type number, for logs and tools (election notifications,
    /// which travel on the election port, have none: 0).
    pub fn type_number(&self) -> u8 {
        match self {
            Message::Election(_) => 0,
            Message::LearnerInfo { observer: false, .. } => 11,
            Message::LearnerInfo { observer: true, .. } => 16,
            Message::LeaderInfo { .. } => 17,
            Message::AckEpoch { .. } => 18,
            Message::Diff { .. } => 13,
            Message::Trunc { .. } => 14,
            Message::Snap { .. } => 15,
            Message::NewLeader { .. } => 10,
            Message::UpToDate => 12,
            Message::Proposal { .. } => 2,
            Message::Ack { .. } => 3,
            Message::Commit { .. } => 4,
            Message::Inform { .. } => 8,
            Message::Ping => 5,
            Message::Request { .. } => 1,
            Message::Sync { .. } => 7,
        }
    }
}

fn state_code(s: PeerState) -> i32 {
    match s {
        PeerState::Looking => 0,
        PeerState::Following => 1,
        PeerState::Leading => 2,
        PeerState::Observing => 3,
    }
}

fn state_of(code: i32) -> Result<PeerState, DecodeError> {
    Ok(match code {
        0 => PeerState::Looking,
        1 => PeerState::Following,
        2 => PeerState::Leading,
        3 => PeerState::Observing,
        _ => return Err(DecodeError::Invalid("unknown server state")),
    })
}

impl Message {
    /// The message as bytes: its type number, then its fields as jute primitives (the
    /// framing, a length before each message, belongs to the connection).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.i32(self.type_number() as i32);
        match self {
            Message::Election(n) => {
                w.i64(n.from as i64).i32(state_code(n.state));
                w.i64(n.vote.leader as i64).i64(n.vote.zxid).i64(n.vote.round as i64).i32(n.vote.peer_epoch as i32);
            }
            Message::LearnerInfo { accepted_epoch, last_zxid, snapshot_zxid, observer: _ } => {
                w.i32(*accepted_epoch as i32).i64(*last_zxid).i64(*snapshot_zxid);
            }
            Message::LeaderInfo { epoch } | Message::NewLeader { epoch } => {
                w.i32(*epoch as i32);
            }
            Message::AckEpoch { current_epoch, last_zxid, fresh } => {
                w.i32(*current_epoch as i32).i64(*last_zxid).bool(*fresh);
            }
            Message::Diff { last_zxid: z } | Message::Trunc { zxid: z } | Message::Ack { zxid: z } | Message::Commit { zxid: z } => {
                w.i64(*z);
            }
            Message::Snap { zxid, snapshot } => {
                w.i64(*zxid).buffer(snapshot);
            }
            Message::Proposal { zxid, txn } | Message::Inform { zxid, txn } => {
                w.i64(*zxid).buffer(txn);
            }
            Message::UpToDate | Message::Ping => {}
            Message::Request { body } => {
                w.buffer(body);
            }
            Message::Sync { id, zxid } => {
                w.i64(*id as i64).i64(*zxid);
            }
        }
        w.into_inner()
    }

    /// Reads a message written by [`Message::encode`]. Never panics; trailing bytes are
    /// an error.
    pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        let mut r = Reader::new(bytes);
        let u32_of = |v: i32| u32::try_from(v).map_err(|_| DecodeError::Invalid("negative epoch"));
        let msg = match r.read_i32()? {
            0 => {
                let from = r.read_i64()? as u64;
                let state = state_of(r.read_i32()?)?;
                let leader = r.read_i64()? as u64;
                let zxid = r.read_i64()?;
                let round = r.read_i64()? as u64;
                let peer_epoch = u32_of(r.read_i32()?)?;
                Message::Election(Notification {
                    from,
                    state,
                    vote: Vote { leader, zxid, round, peer_epoch },
                })
            }
            t @ (11 | 16) => Message::LearnerInfo {
                accepted_epoch: u32_of(r.read_i32()?)?,
                last_zxid: r.read_i64()?,
                snapshot_zxid: r.read_i64()?,
                observer: t == 16,
            },
            17 => Message::LeaderInfo { epoch: u32_of(r.read_i32()?)? },
            10 => Message::NewLeader { epoch: u32_of(r.read_i32()?)? },
            18 => Message::AckEpoch {
                current_epoch: u32_of(r.read_i32()?)?,
                last_zxid: r.read_i64()?,
                fresh: r.read_bool()?,
            },
            13 => Message::Diff { last_zxid: r.read_i64()? },
            14 => Message::Trunc { zxid: r.read_i64()? },
            3 => Message::Ack { zxid: r.read_i64()? },
            4 => Message::Commit { zxid: r.read_i64()? },
            15 => Message::Snap { zxid: r.read_i64()?, snapshot: r.read_buffer()?.into() },
            2 => Message::Proposal { zxid: r.read_i64()?, txn: r.read_buffer()?.into() },
            8 => Message::Inform { zxid: r.read_i64()?, txn: r.read_buffer()?.into() },
            12 => Message::UpToDate,
            5 => Message::Ping,
            1 => Message::Request { body: r.read_buffer()?.into() },
            7 => Message::Sync { id: r.read_i64()? as u64, zxid: r.read_i64()? },
            _ => return Err(DecodeError::Invalid("unknown quorum message type")),
        };
        if r.remaining() != 0 {
            return Err(DecodeError::Invalid("trailing bytes after a quorum message"));
        }
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Message> {
        let vote = Vote { leader: 3, zxid: 0x5_0000_0007, round: 9, peer_epoch: 5 };
        vec![
            Message::Election(Notification { from: 2, state: PeerState::Following, vote }),
            Message::Election(Notification { from: 7, state: PeerState::Looking, vote: Vote { zxid: -1, ..vote } }),
            Message::LearnerInfo { accepted_epoch: 4, last_zxid: 0x4_0000_0001, snapshot_zxid: 0x3_0000_0002, observer: false },
            Message::LearnerInfo { accepted_epoch: 0, last_zxid: 0, snapshot_zxid: 0, observer: true },
            Message::LeaderInfo { epoch: 6 },
            Message::AckEpoch { current_epoch: 5, last_zxid: 0x5_0000_0009, fresh: true },
            Message::AckEpoch { current_epoch: 5, last_zxid: 7, fresh: false },
            Message::Diff { last_zxid: 0x6_0000_0000 },
            Message::Trunc { zxid: 0x5_0000_0003 },
            Message::Snap { zxid: 0x5_0000_0009, snapshot: vec![1, 2, 3].into() },
            Message::NewLeader { epoch: 6 },
            Message::UpToDate,
            Message::Proposal { zxid: 0x6_0000_0001, txn: b"create /a".to_vec().into() },
            Message::Ack { zxid: 0x6_0000_0001 },
            Message::Commit { zxid: 0x6_0000_0001 },
            Message::Inform { zxid: 0x6_0000_0001, txn: Vec::new().into() },
            Message::Ping,
            Message::Request { body: b"setData".to_vec().into() },
            Message::Sync { id: 42, zxid: 0 },
            Message::Sync { id: u64::MAX, zxid: 0x6_0000_0001 },
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for m in all() {
            let bytes = m.encode();
            assert_eq!(Message::decode(&bytes).unwrap(), m, "{bytes:?}");
        }
    }

    #[test]
    fn damaged_messages_are_errors_not_panics() {
        for m in all() {
            let bytes = m.encode();
            for cut in 0..bytes.len() {
                assert!(Message::decode(&bytes[..cut]).is_err(), "{m:?} cut at {cut}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(Message::decode(&longer).is_err(), "{m:?} with a trailing byte");
            // Flip every byte: an error or some message, never a panic.
            for i in 0..bytes.len() {
                let mut b = bytes.clone();
                b[i] ^= 0xff;
                let _ = Message::decode(&b);
            }
        }
        assert!(Message::decode(&99i32.to_be_bytes()).is_err());
    }
}
