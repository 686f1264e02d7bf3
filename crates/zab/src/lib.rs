//! Zab — ZooKeeper's atomic broadcast — as a state machine with no IO.
//!
//! Nothing here touches a socket, a file or a clock. The driver (in `corral-server`, or
//! the simulator in the tests) feeds in what happened — a message arrived, time passed —
//! and gets back what to do: messages to send, a decision reached. The driver does the
//! IO in the order the docs of each output say. This is what lets the same code run in
//! production and in a deterministic simulation where one seed reproduces a run.
//!
//! The parts, in the order a server goes through them (see `shared/ZAB.md` and
//! `docs/zab.md`):
//!
//! - [`election`]: fast leader election (FLE). A heuristic that picks the server with the
//!   most recent history as the likely leader; safety does not depend on it.
//! - [`peer`]: one member: election, then discovery, synchronisation and broadcast as
//!   leader or learner, and back to election when the quorum is lost. Its doc lists the
//!   actions it asks of the driver and the order they must be done in.
//! - [`message`]: what members say to each other.
//!
//! Shared vocabulary lives here: server ids, zxids and the quorum rule.

pub mod election;
pub mod message;
pub mod peer;

use std::collections::BTreeSet;

/// A server's id: the `N` of `server.N` in zoo.cfg and the content of its `myid` file.
pub type ServerId = u64;

/// A transaction id: the epoch in the high 32 bits, a counter in the low 32. A new
/// leader's first transaction is `(epoch, 1)`; counter 0 is never a transaction.
pub type Zxid = i64;

/// The epoch part of a zxid.
pub fn epoch_of(zxid: Zxid) -> u32 {
    (zxid >> 32) as u32
}

/// The counter part of a zxid.
pub fn counter_of(zxid: Zxid) -> u32 {
    zxid as u32
}

/// The zxid `(epoch, counter)`.
pub fn make_zxid(epoch: u32, counter: u32) -> Zxid {
    ((epoch as i64) << 32) | counter as i64
}

/// Who votes: the participants of the ensemble (observers are not in it). A set of
/// servers is a quorum when it holds a strict majority of the voters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voters {
    ids: BTreeSet<ServerId>,
}

impl Voters {
    pub fn new(ids: impl IntoIterator<Item = ServerId>) -> Voters {
        let ids: BTreeSet<ServerId> = ids.into_iter().collect();
        assert!(!ids.is_empty(), "an ensemble needs at least one voter");
        Voters { ids }
    }

    pub fn contains(&self, id: ServerId) -> bool {
        self.ids.contains(&id)
    }

    pub fn iter(&self) -> impl Iterator<Item = ServerId> + '_ {
        self.ids.iter().copied()
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// How many voters make a quorum.
    pub fn quorum_size(&self) -> usize {
        self.ids.len() / 2 + 1
    }

    /// Whether the voters among `ids` are a quorum (non-voters in `ids` do not count).
    pub fn is_quorum<'a>(&self, ids: impl IntoIterator<Item = &'a ServerId>) -> bool {
        ids.into_iter().filter(|id| self.contains(**id)).count() >= self.quorum_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zxid_parts() {
        let z = make_zxid(7, 42);
        assert_eq!((epoch_of(z), counter_of(z)), (7, 42));
        assert_eq!(z, 0x7_0000_002a);
        assert_eq!(make_zxid(1, u32::MAX) + 1, make_zxid(2, 0), "the counter rolls into the epoch");
    }

    #[test]
    fn quorum_is_a_strict_majority_of_voters() {
        let v = Voters::new([1, 2, 3, 4, 5]);
        assert_eq!(v.quorum_size(), 3);
        assert!(!v.is_quorum(&[1, 2]));
        assert!(v.is_quorum(&[1, 2, 5]));
        assert!(!v.is_quorum(&[1, 2, 9, 10]), "non-voters do not count");
        assert_eq!(Voters::new([1, 2, 3, 4]).quorum_size(), 3);
        assert_eq!(Voters::new([1]).quorum_size(), 1);
    }
}
