//! What servers say to each other on the quorum port, by phase. The names and the packet
//! type numbers are ZooKeeper's (`Leader.java`); the encoding is Corral's own
//! (corral-proto), since Corral servers only talk to Corral servers.

use crate::election::Notification;
use crate::Zxid;
use std::sync::Arc;

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
        }
    }
}
