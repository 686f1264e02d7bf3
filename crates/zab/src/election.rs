//! Fast leader election (FLE), as ZooKeeper runs it.
//!
//! Every server that is LOOKING proposes a leader and tells every voter; each adopts the
//! best proposal it hears, and once a quorum agrees with it (and a short finalize wait
//! brings nothing better) it decides. A vote is better when its (peer epoch, zxid, leader
//! id) is higher, so the leader chosen holds the most recent history among those that
//! voted. Election is only a heuristic: a wrong pick (say, messages lost) is caught by
//! discovery, which is where Zab's safety lies.
//!
//! The rules carried over from ZooKeeper's FastLeaderElection, in the order they apply:
//!
//! - **Rounds.** Each LOOKING period bumps the round (ZooKeeper's `logicalclock`, the
//!   notification's `electionEpoch`). A notification of a later round makes us join that
//!   round: forget the votes received so far and propose the better of its vote and our
//!   own initial one. An earlier round's notification is not counted; its sender, if
//!   LOOKING, is sent our vote so it can catch up.
//! - **Who counts.** Only notifications from voters that name a voter are counted.
//!   Observers vote for nobody and are never elected; a notification from one is
//!   answered with our vote, which is how an observer learns of the leader. A LOOKING
//!   notification whose zxid is -1 comes from a server that may not vote (an untrusted
//!   database) and is ignored.
//! - **Deciding while LOOKING.** When the votes received in this round that equal our
//!   proposal are a quorum, wait `finalize_wait_ms` for a better one, then decide:
//!   LEADING if the proposal names us, else FOLLOWING (OBSERVING for an observer).
//! - **Joining an established leader.** Notifications from FOLLOWING / LEADING servers
//!   are kept apart ("out of election"); once a quorum of them name the same leader and
//!   peer epoch, and the leader itself says it is LEADING, we follow it without waiting.
//! - **Resending.** Our vote is sent again every so often, the wait doubling from
//!   `resend_min_ms` up to `resend_max_ms` and starting over when something arrives (lost
//!   messages, servers not up yet). Unlike ZooKeeper, arrivals do not postpone the next
//!   resend, so no stream of messages from one server can keep us from the others.
//!
//! Time comes in as `now_ms` on every call (any monotonic origin); the driver calls
//! [`Election::tick`] at [`Election::next_wakeup_ms`] at the latest.

use crate::{ServerId, Voters, Zxid};
use std::collections::BTreeMap;

/// A server's state as its notifications report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerState {
    Looking,
    Following,
    Leading,
    Observing,
}

/// Whom a server proposes (or, settled, follows) and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vote {
    /// The proposed leader.
    pub leader: ServerId,
    /// The proposed leader's last logged zxid (committed or not).
    pub zxid: Zxid,
    /// The election round this vote was cast in (ZooKeeper's `electionEpoch`).
    pub round: u64,
    /// The proposed leader's current epoch (the epoch of the history it holds).
    pub peer_epoch: u32,
}

/// What an observer proposes: nobody, and worse than every real vote.
const NOBODY: ServerId = ServerId::MAX;

impl Vote {
    /// Whether `self` beats `other` (ZooKeeper's `totalOrderPredicate`): a higher peer
    /// epoch, then a higher zxid, then a higher id. Only a vote for a voter can win.
    fn beats(&self, other: &Vote, voters: &Voters) -> bool {
        voters.contains(self.leader)
            && (self.peer_epoch, self.zxid, self.leader) > (other.peer_epoch, other.zxid, other.leader)
    }
}

/// One election message: the sender's state and vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notification {
    pub from: ServerId,
    pub state: PeerState,
    pub vote: Vote,
}

/// Whether two (vote, state) pairs agree, as ZooKeeper counts them: while either side is
/// LOOKING every field must match; between settled servers the leader and its epoch do.
fn same(a: &Vote, a_state: PeerState, b: &Vote, b_state: PeerState) -> bool {
    if a_state == PeerState::Looking || b_state == PeerState::Looking {
        a == b
    } else {
        a.leader == b.leader && a.peer_epoch == b.peer_epoch
    }
}

/// Timing of an election, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long a quorum must hold before deciding, for a better vote to arrive.
    pub finalize_wait_ms: u64,
    /// First wait before resending our vote when nothing arrives; it doubles each time.
    pub resend_min_ms: u64,
    /// Longest wait between resends.
    pub resend_max_ms: u64,
}

impl Default for Timing {
    /// ZooKeeper's: 200 ms finalize wait, resends from 200 ms doubling up to 60 s.
    fn default() -> Timing {
        Timing { finalize_wait_ms: 200, resend_min_ms: 200, resend_max_ms: 60_000 }
    }
}

/// What the election asks the driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send this notification to that server.
    Send { to: ServerId, notification: Notification },
    /// The election is over: become `state` under `vote.leader`. The election takes no
    /// more input after this.
    Decided { state: PeerState, vote: Vote },
}

/// What a server knows of itself when it starts LOOKING: this must be what is on its
/// disk, since its vote advertises it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub id: ServerId,
    /// The last zxid in its log, committed or not.
    pub last_zxid: Zxid,
    /// Its currentEpoch file.
    pub current_epoch: u32,
    /// False for a server whose database cannot be trusted to hold what it once
    /// acknowledged (say, its data directory was wiped). Such a server must not help
    /// elect anyone — with zxid 0 it could make a stale server leader (ZOOKEEPER-261) —
    /// so it votes like a server with zxid -1, which nobody counts, and only joins a
    /// leader that a quorum already follows.
    pub trusted: bool,
}

/// One LOOKING period of one server.
#[derive(Debug)]
pub struct Election {
    me: ServerId,
    /// A trusted voter: its vote counts, and it adopts better votes. An untrusted one
    /// keeps proposing itself with zxid -1 (ignored by all) and waits for a leader.
    voting: bool,
    voters: Voters,
    /// Every server to tell (voters and observers), other than us.
    peers: Vec<ServerId>,
    timing: Timing,
    round: u64,
    /// What we proposed when this period began: ourselves (or nobody, as an observer).
    initial: Vote,
    proposal: Vote,
    /// Votes cast in our round, by sender, with the state they were sent in.
    received: BTreeMap<ServerId, (Vote, PeerState)>,
    /// Settled servers' votes, whatever their round.
    out_of_election: BTreeMap<ServerId, (Vote, PeerState)>,
    /// When a quorum agreeing with our proposal may be turned into a decision.
    finalize_at_ms: Option<u64>,
    resend_at_ms: u64,
    resend_wait_ms: u64,
    decided: bool,
}

impl Election {
    /// Starts LOOKING. `last_round` is the round of this server's previous election (0 at
    /// startup). `peers` are all other members, voters and observers. Observers (not in
    /// `voters`) propose nobody.
    pub fn start(
        me: Candidate,
        voters: Voters,
        peers: impl IntoIterator<Item = ServerId>,
        timing: Timing,
        last_round: u64,
        now_ms: u64,
    ) -> (Election, Vec<Output>) {
        let round = last_round + 1;
        let voting = me.trusted && voters.contains(me.id);
        let initial = if voting {
            Vote { leader: me.id, zxid: me.last_zxid, round, peer_epoch: me.current_epoch }
        } else if voters.contains(me.id) {
            Vote { leader: me.id, zxid: -1, round, peer_epoch: 0 }
        } else {
            Vote { leader: NOBODY, zxid: Zxid::MIN, round, peer_epoch: 0 }
        };
        let mut peers: Vec<ServerId> = peers.into_iter().filter(|&p| p != me.id).collect();
        peers.sort_unstable();
        peers.dedup();
        let mut e = Election {
            me: me.id,
            voting,
            voters,
            peers,
            timing,
            round,
            initial,
            proposal: initial,
            received: BTreeMap::new(),
            out_of_election: BTreeMap::new(),
            finalize_at_ms: None,
            resend_at_ms: now_ms + timing.resend_min_ms,
            resend_wait_ms: timing.resend_min_ms,
            decided: false,
        };
        let mut out = Vec::new();
        e.count_own_vote();
        e.broadcast(&mut out);
        // A single voter is its own quorum.
        e.check_quorum(now_ms, &mut out);
        (e, out)
    }

    pub fn round(&self) -> u64 {
        self.round
    }

    /// What we propose now.
    pub fn proposal(&self) -> Vote {
        self.proposal
    }

    fn notification(&self) -> Notification {
        Notification { from: self.me, state: PeerState::Looking, vote: self.proposal }
    }

    /// Voters receive our vote (ZooKeeper sends to voters only); observers learn from the
    /// answers to their own notifications.
    fn broadcast(&self, out: &mut Vec<Output>) {
        for &to in self.peers.iter().filter(|p| self.voters.contains(**p)) {
            out.push(Output::Send { to, notification: self.notification() });
        }
    }

    fn count_own_vote(&mut self) {
        if self.voting {
            self.received.insert(self.me, (self.proposal, PeerState::Looking));
        }
    }

    /// When the driver must call [`Election::tick`] next.
    pub fn next_wakeup_ms(&self) -> u64 {
        self.finalize_at_ms.map_or(self.resend_at_ms, |f| f.min(self.resend_at_ms))
    }

    /// Time passed: decide if the finalize wait is over, resend if nothing came.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Output> {
        let mut out = Vec::new();
        if self.decided {
            return out;
        }
        if self.finalize_at_ms.is_some_and(|t| now_ms >= t) {
            let state = if self.proposal.leader == self.me { PeerState::Leading } else { self.learning_state() };
            self.decide(state, self.proposal, &mut out);
            return out;
        }
        if now_ms >= self.resend_at_ms {
            self.broadcast(&mut out);
            self.resend_wait_ms = (self.resend_wait_ms * 2).min(self.timing.resend_max_ms);
            self.resend_at_ms = now_ms + self.resend_wait_ms;
        }
        out
    }

    fn learning_state(&self) -> PeerState {
        if self.voters.contains(self.me) {
            PeerState::Following
        } else {
            PeerState::Observing
        }
    }

    fn decide(&mut self, state: PeerState, vote: Vote, out: &mut Vec<Output>) {
        self.decided = true;
        out.push(Output::Decided { state, vote });
    }

    /// The link to `peer` has just come up: it heard nothing we sent before (a notification
    /// to a peer with no link is dropped), so it gets our current vote now rather than at
    /// the next resend, as ZooKeeper resends a queue's last message on a new connection.
    pub fn link_up(&self, peer: ServerId) -> Vec<Output> {
        if self.decided || peer == self.me || !self.voters.contains(peer) || !self.peers.contains(&peer) {
            return Vec::new();
        }
        vec![Output::Send { to: peer, notification: self.notification() }]
    }

    /// A notification arrived.
    pub fn on_notification(&mut self, n: Notification, now_ms: u64) -> Vec<Output> {
        let mut out = Vec::new();
        if self.decided || n.from == self.me {
            return out;
        }
        // Something arrived: later resends back off from the shortest interval again.
        // The next one stays where it is, so a stream of arrivals cannot hold it off.
        self.resend_wait_ms = self.timing.resend_min_ms;
        self.resend_at_ms = self.resend_at_ms.min(now_ms + self.resend_wait_ms);
        let untrusted = !self.voting && self.voters.contains(self.me);
        if !self.voters.contains(n.from) {
            // An observer (or a server we do not know) that is looking for the leader:
            // tell it what we think. A settled one needs nothing (and answering it would
            // start an endless exchange, since it answers LOOKING servers). An untrusted
            // voter answers nobody: its vote means nothing, and two servers that answer
            // each other's every notification never stop.
            if n.state == PeerState::Looking && !untrusted {
                out.push(Output::Send { to: n.from, notification: self.notification() });
            }
            return out;
        }
        if !self.voters.contains(n.vote.leader) {
            return out;
        }
        match n.state {
            PeerState::Looking => self.on_looking(n, now_ms, &mut out),
            PeerState::Following | PeerState::Leading => self.on_settled(n, &mut out),
            PeerState::Observing => {}
        }
        out
    }

    fn on_looking(&mut self, n: Notification, now_ms: u64, out: &mut Vec<Output>) {
        if n.vote.zxid == -1 {
            // A server that may not vote: not counted, but told what we think (unless we
            // may not vote either: see above).
            if self.voting || !self.voters.contains(self.me) {
                out.push(Output::Send { to: n.from, notification: self.notification() });
            }
            return;
        }
        if !self.voting && self.voters.contains(self.me) {
            // Untrusted: LOOKING votes are not for us to adopt or count.
            return;
        }
        if n.vote.round > self.round {
            self.round = n.vote.round;
            self.received.clear();
            let mut mine = self.initial;
            mine.round = self.round;
            self.proposal = if n.vote.beats(&mine, &self.voters) { n.vote } else { mine };
            self.count_own_vote();
            self.broadcast(out);
        } else if n.vote.round < self.round {
            // A straggler: not counted, but sent our vote so it can join our round.
            out.push(Output::Send { to: n.from, notification: self.notification() });
            return;
        } else if n.vote.beats(&self.proposal, &self.voters) {
            self.proposal = n.vote;
            self.count_own_vote();
            self.broadcast(out);
        }
        self.received.insert(n.from, (n.vote, PeerState::Looking));
        self.check_quorum(now_ms, out);
    }

    /// Arms (or disarms) the finalize wait from the votes of our round.
    fn check_quorum(&mut self, now_ms: u64, out: &mut Vec<Output>) {
        let agreeing = self
            .received
            .iter()
            .filter(|(_, (v, s))| same(v, *s, &self.proposal, PeerState::Looking))
            .map(|(id, _)| id);
        if self.voters.is_quorum(agreeing) {
            if self.finalize_at_ms.is_none() {
                self.finalize_at_ms = Some(now_ms + self.timing.finalize_wait_ms);
            }
            if self.timing.finalize_wait_ms == 0 {
                out.extend(self.tick(now_ms));
            }
        } else {
            self.finalize_at_ms = None;
        }
    }

    /// A FOLLOWING or LEADING server told us whom it follows.
    fn on_settled(&mut self, n: Notification, out: &mut Vec<Output>) {
        if n.vote.round == self.round {
            self.received.insert(n.from, (n.vote, n.state));
            if self.established(&self.received, &n) {
                let state = self.state_under(n.vote.leader);
                self.decide(state, n.vote, out);
                return;
            }
        }
        self.out_of_election.insert(n.from, (n.vote, n.state));
        if self.established(&self.out_of_election, &n) {
            self.round = n.vote.round;
            let state = self.state_under(n.vote.leader);
            self.decide(state, n.vote, out);
        }
    }

    fn state_under(&self, leader: ServerId) -> PeerState {
        if leader == self.me {
            PeerState::Leading
        } else {
            self.learning_state()
        }
    }

    /// Whether `votes` show a quorum behind `n`'s leader, and that leader is really
    /// leading (ZooKeeper's `checkLeader`): it said LEADING itself, or it is us and the
    /// round is ours.
    fn established(&self, votes: &BTreeMap<ServerId, (Vote, PeerState)>, n: &Notification) -> bool {
        let agreeing = votes.iter().filter(|(_, (v, s))| same(v, *s, &n.vote, n.state)).map(|(id, _)| id);
        if !self.voters.is_quorum(agreeing) {
            return false;
        }
        if n.vote.leader == self.me {
            n.vote.round == self.round
        } else {
            votes.get(&n.vote.leader).is_some_and(|(_, s)| *s == PeerState::Leading)
        }
    }
}

/// How a settled (FOLLOWING, LEADING or OBSERVING) server answers an election
/// notification: a LOOKING sender gets our vote and state, so it can join the leader we
/// follow; anything else needs no answer.
pub fn answer_when_settled(
    me: ServerId,
    state: PeerState,
    vote: Vote,
    n: &Notification,
) -> Option<Output> {
    (n.state == PeerState::Looking && n.from != me)
        .then_some(Output::Send { to: n.from, notification: Notification { from: me, state, vote } })
}

#[cfg(test)]
mod tests;
