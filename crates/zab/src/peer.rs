//! One server's Zab: election, then leading or following, and back to election when the
//! quorum is lost.
//!
//! The driver feeds in events and carries out the [`Action`]s that come back, **in the
//! order given**, finishing each persisting action before the next one:
//!
//! | action | what the driver does |
//! |---|---|
//! | `PersistAcceptedEpoch(e)` / `PersistCurrentEpoch(e)` | write the epoch file atomically and durably, then go on (the latter also removes the `updatingEpoch` marker) |
//! | `BeginEpochUpdate` | create the `updatingEpoch` marker durably; at startup and after `Recover`, a marker left behind raises `currentEpoch` to the epoch of the last logged zxid |
//! | `Append(txns)` | queue them on the log (group commit is fine); call [`Peer::logged`] once durable |
//! | `Truncate(z)` | wait for queued appends, cut the log after `z`, rebuild the tree from disk |
//! | `InstallSnapshot { .. }` | write the snapshot durably, empty the log, load the tree from it |
//! | `SendSnapshot { to }` | serialise the tree as it is now (after the actions before) and send it as `Snap` |
//! | `Apply(txns)` | apply the committed transactions to the tree, in order |
//! | `Send { to, msg }` | send on the connection to `to` (FIFO per peer; a lost connection is reported with [`Peer::disconnected`]) |
//! | `Role(..)` | tell the client service (serve, forward writes, refuse clients...) |
//! | `Recover` | stop taking client writes, drain the log writer, rebuild the tree from disk, then call [`Peer::recovered`] |
//! | `Forwarded { from, body }` | (leader) prep the forwarded write and propose it |
//! | `Synced { id }` | answer the client's `sync` |
//! | `Disconnect { peer }` | close the quorum link to `peer` (the other end hears it as a disconnection) |
//!
//! A durability report ([`Peer::logged`]) must be for an append made since the last
//! `Truncate`, `InstallSnapshot` or `Recover`: a driver with appends in flight discards
//! reports from before those (they drain the writer first, so there are none to report).
//!
//! These orders are what make the ZooKeeper bugs listed in ZAB.md impossible here: an
//! epoch is on disk before a message says it; a follower's synced history is durable
//! before its currentEpoch changes and both before its NEWLEADER ACK (ZOOKEEPER-3911,
//! 4643, 4646); a received snapshot is durable before it is acknowledged (3642); memory
//! is rebuilt from disk, after the writer drained, before voting (2845, 4712).

use crate::election::{self, answer_when_settled, Candidate, Election, Notification, PeerState, Timing, Vote};
use crate::message::{Message, Snapshot, Txn};
use crate::{counter_of, epoch_of, make_zxid, ServerId, Voters, Zxid};
use std::collections::{BTreeMap, VecDeque};

/// Static settings of a member.
#[derive(Debug, Clone)]
pub struct Settings {
    pub id: ServerId,
    pub voters: Voters,
    /// Every member, voters and observers.
    pub members: Vec<ServerId>,
    pub tick_ms: u64,
    /// Ticks a learner has to connect, agree on the epoch and sync.
    pub init_limit: u32,
    /// Ticks a synced learner (or the leader) may stay silent.
    pub sync_limit: u32,
    pub election: Timing,
    /// Committed transactions the leader keeps in memory to sync learners by DIFF;
    /// a learner further behind gets a snapshot.
    pub history_window: usize,
}

/// The newest transactions of this server's log, which a leader uses to sync learners by
/// DIFF (up to [`Settings::history_window`] of them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogTail {
    /// The zxid just before `txns[0]` (the snapshot's, or an older log record's).
    pub base: Zxid,
    /// Consecutive log records, oldest first, ending with [`DiskState::last_zxid`].
    pub txns: Vec<(Zxid, Txn)>,
}

/// What is on this server's disk, as the driver found it at startup or after `Recover`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskState {
    pub accepted_epoch: u32,
    pub current_epoch: u32,
    /// The last zxid in the log (or of the snapshot when the log is empty).
    pub last_zxid: Zxid,
    /// The zxid of the newest snapshot (0 if none): the log cannot be cut below it.
    pub snapshot_zxid: Zxid,
    /// See [`Candidate::trusted`].
    pub trusted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Send { to: ServerId, msg: Message },
    PersistAcceptedEpoch(u32),
    PersistCurrentEpoch(u32),
    /// A sync from a new leader begins: record durably that history may now be written
    /// ahead of `currentEpoch`, so a crash in between is repaired at startup
    /// (ZOOKEEPER-1653). `PersistCurrentEpoch` ends it.
    BeginEpochUpdate,
    Append(Vec<(Zxid, Txn)>),
    Truncate(Zxid),
    InstallSnapshot { zxid: Zxid, snapshot: Snapshot },
    SendSnapshot { to: ServerId },
    Apply(Vec<(Zxid, Txn)>),
    Role(Role),
    Recover,
    /// Leader: a learner forwarded a client's write; prep it and [`Peer::propose`] it.
    Forwarded { from: ServerId, body: Txn },
    /// The `sync` with this id is done: everything committed before it was issued has
    /// been applied here (after the `Apply` actions before this one).
    Synced { id: u64 },
    /// Close the quorum link to `peer`: a learner leaving its leader, or a leader stepping
    /// down, ends the session so nothing of it reaches a later one.
    Disconnect { peer: ServerId },
}

/// What the client service should be doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Electing or syncing: do not serve.
    Looking,
    /// Leading epoch `epoch`: take writes.
    Leading { epoch: u32 },
    /// Synced with `leader`: serve reads, forward writes.
    Following { leader: ServerId, epoch: u32 },
    Observing { leader: ServerId, epoch: u32 },
}

/// Why a proposal was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProposeError {
    /// Not an established leader (any more).
    NotLeader,
}

/// Where a learner is, seen from the leader (in the order it goes through them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum LearnerPhase {
    /// Sent its info; waiting for the epoch to be chosen.
    Info,
    /// Told the epoch; waiting for its ACKEPOCH.
    EpochSent,
    /// Acked the epoch; waiting for the leader to be ready to sync it.
    EpochAcked,
    /// Sync data and NEWLEADER sent; waiting for its ACK.
    Syncing,
    /// Acked NEWLEADER.
    Synced,
}

#[derive(Debug)]
struct Learner {
    observer: bool,
    /// Its ACKEPOCH promised our epoch anew. One that had promised it already (to
    /// another leader that picked the same epoch) does not count toward the epoch
    /// quorum, or two leaders could each gather one sharing it (ZooKeeper acks -1).
    fresh: bool,
    accepted_epoch: u32,
    last_zxid: Zxid,
    /// It cannot truncate below this.
    snapshot_zxid: Zxid,
    phase: LearnerPhase,
    /// Everything through this zxid is durable on the learner.
    acked: Zxid,
    last_heard_ms: u64,
}

/// A leader's view of its learners, for monitoring (ZooKeeper's `mntr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderStats {
    /// Learners connected, in any phase (`zk_followers`).
    pub learners: usize,
    /// Followers synced and taking proposals (`zk_synced_followers`).
    pub synced_followers: usize,
    /// Observers synced and taking commits (`zk_synced_observers`).
    pub synced_observers: usize,
    /// Learners' syncs waiting for a commit (`zk_pending_syncs`).
    pub pending_syncs: usize,
}

#[derive(Debug)]
struct Leading {
    /// The zxid just before `history[0]` (or the last zxid when `history` is empty).
    base: Zxid,
    /// Set when the zxid counter ran out: step down at the next tick.
    exhausted: bool,
    /// The new epoch, once chosen.
    epoch: Option<u32>,
    learners: BTreeMap<ServerId, Learner>,
    /// Discovery and sync must be done by this time.
    deadline_ms: u64,
    established: bool,
    /// Proposals, committed ones (the last `history_window`) then uncommitted ones.
    history: VecDeque<(Zxid, Txn)>,
    committed: Zxid,
    /// Durable in our own log through this zxid.
    logged: Zxid,
    next_counter: u32,
    next_ping_ms: u64,
    /// Syncs waiting for a commit: (learner, or `None` for our own client; sync id; zxid
    /// that must be committed first).
    pending_syncs: VecDeque<(Option<ServerId>, u64, Zxid)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FollowPhase {
    /// LearnerInfo sent; waiting for LEADERINFO.
    Discovery,
    /// Epoch acked; receiving sync data up to NEWLEADER.
    Sync,
    /// NEWLEADER of `epoch` received; its ACK waits for the log to be durable through
    /// `through` (everything received before it).
    NewLeaderPending { epoch: u32, through: Zxid },
    /// NEWLEADER acked; waiting for UPTODATE.
    Acked,
    Broadcast,
}

#[derive(Debug)]
struct Following {
    leader: ServerId,
    observer: bool,
    phase: FollowPhase,
    epoch: u32,
    /// Received, not yet committed (followers) — oldest first.
    pending: VecDeque<(Zxid, Txn)>,
    /// The last zxid received (by sync or proposal).
    received: Zxid,
    /// Durable in our log through this zxid.
    logged: Zxid,
    applied: Zxid,
    /// When we give up on the leader: initLimit from the start, then syncLimit from each
    /// message once synced.
    deadline_ms: u64,
}

#[derive(Debug)]
enum State {
    Looking(Box<Election>),
    Leading(Box<Leading>),
    Following(Box<Following>),
    /// `Recover` was asked for; waiting for [`Peer::recovered`].
    Recovering,
}

/// One member of an ensemble.
#[derive(Debug)]
pub struct Peer {
    s: Settings,
    disk: DiskState,
    /// The round of the last election (ZooKeeper's logicalclock), kept across elections.
    round: u64,
    /// The vote we settled on; what we answer LOOKING servers with.
    vote: Vote,
    /// The end of our log, for the history a leader starts with.
    tail: LogTail,
    state: State,
    /// Why the last role ended, for the driver's log.
    left_because: &'static str,
    /// LearnerInfos that arrived before we decided to lead (a learner may decide sooner
    /// than its leader): taken up if we do lead, as ZooKeeper's leader accepts the
    /// learners' queued connections once it leads.
    early_learners: BTreeMap<ServerId, Message>,
}

impl Peer {
    /// A member starting with `disk` (the tree already rebuilt from it): it starts LOOKING.
    pub fn new(s: Settings, disk: DiskState, tail: LogTail, now_ms: u64) -> (Peer, Vec<Action>) {
        let vote = Vote { leader: s.id, zxid: disk.last_zxid, round: 0, peer_epoch: disk.current_epoch };
        let mut p = Peer {
            s,
            disk,
            round: 0,
            vote,
            tail,
            state: State::Recovering,
            left_because: "",
            early_learners: BTreeMap::new(),
        };
        let mut out = Vec::new();
        p.start_looking(now_ms, &mut out);
        (p, out)
    }

    pub fn id(&self) -> ServerId {
        self.s.id
    }

    /// Why the last role ended (with the last `Recover`), in words.
    pub fn left_because(&self) -> &'static str {
        self.left_because
    }

    pub fn role(&self) -> Role {
        match &self.state {
            State::Leading(l) if l.established => Role::Leading { epoch: l.epoch.unwrap_or(0) },
            State::Following(f) if f.phase == FollowPhase::Broadcast => {
                if f.observer {
                    Role::Observing { leader: f.leader, epoch: f.epoch }
                } else {
                    Role::Following { leader: f.leader, epoch: f.epoch }
                }
            }
            _ => Role::Looking,
        }
    }

    /// The Zab phase, in ZooKeeper's words (its `ZabState`, lower case): `election`,
    /// `discovery`, `synchronization` or `broadcast`.
    pub fn phase(&self) -> &'static str {
        match &self.state {
            State::Looking(_) | State::Recovering => "election",
            State::Leading(l) if l.established => "broadcast",
            State::Leading(l) if l.epoch.is_some() => "synchronization",
            State::Leading(_) => "discovery",
            State::Following(f) => match f.phase {
                FollowPhase::Discovery => "discovery",
                FollowPhase::Broadcast => "broadcast",
                _ => "synchronization",
            },
        }
    }

    /// What a leader reports about its learners (`None` on any other server).
    pub fn leader_stats(&self) -> Option<LeaderStats> {
        let State::Leading(l) = &self.state else { return None };
        let synced = |observer: bool| {
            l.learners.values().filter(|x| x.observer == observer && x.phase == LearnerPhase::Synced).count()
        };
        Some(LeaderStats {
            learners: l.learners.len(),
            synced_followers: synced(false),
            synced_observers: synced(true),
            pending_syncs: l.pending_syncs.len(),
        })
    }

    /// The last zxid this server has committed (leader) or applied (learner).
    pub fn committed(&self) -> Zxid {
        match &self.state {
            State::Leading(l) => l.committed,
            State::Following(f) => f.applied,
            _ => self.disk.last_zxid,
        }
    }

    fn is_observer(&self) -> bool {
        !self.s.voters.contains(self.s.id)
    }

    fn start_looking(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        out.push(Action::Role(Role::Looking));
        let me = Candidate {
            id: self.s.id,
            last_zxid: self.disk.last_zxid,
            current_epoch: self.disk.current_epoch,
            trusted: self.disk.trusted,
        };
        let (e, o) =
            Election::start(me, self.s.voters.clone(), self.s.members.clone(), self.s.election, self.round, now_ms);
        self.round = e.round();
        self.state = State::Looking(Box::new(e));
        self.election_outputs(o, now_ms, out);
    }

    /// Leaves the current role: the driver rebuilds memory from disk and calls
    /// [`Peer::recovered`].
    fn recover(&mut self, why: &'static str, out: &mut Vec<Action>) {
        self.left_because = why;
        match &self.state {
            State::Following(f) => out.push(Action::Disconnect { peer: f.leader }),
            State::Leading(l) => out.extend(l.learners.keys().map(|&peer| Action::Disconnect { peer })),
            _ => {}
        }
        self.state = State::Recovering;
        out.push(Action::Role(Role::Looking));
        out.push(Action::Recover);
    }

    /// The driver finished `Recover`: memory matches `disk`. Starts an election.
    pub fn recovered(&mut self, disk: DiskState, tail: LogTail, now_ms: u64) -> Vec<Action> {
        assert!(matches!(self.state, State::Recovering), "recovered() without Recover");
        self.disk = disk;
        self.tail = tail;
        let mut out = Vec::new();
        self.start_looking(now_ms, &mut out);
        out
    }

    fn election_outputs(&mut self, outputs: Vec<election::Output>, now_ms: u64, out: &mut Vec<Action>) {
        for o in outputs {
            match o {
                election::Output::Send { to, notification } => {
                    out.push(Action::Send { to, msg: Message::Election(notification) })
                }
                election::Output::Decided { state, vote } => {
                    self.round = self.round.max(vote.round);
                    self.vote = vote;
                    match state {
                        PeerState::Leading => self.lead(now_ms, out),
                        _ => self.follow(vote.leader, now_ms, out),
                    }
                }
            }
        }
    }

    fn lead(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        let mut tail = std::mem::take(&mut self.tail);
        if tail.txns.last().map_or(tail.base, |(z, _)| *z) != self.disk.last_zxid {
            // Not the end of our log: no use for DIFFs.
            tail = LogTail { base: self.disk.last_zxid, txns: Vec::new() };
        }
        let skip = tail.txns.len().saturating_sub(self.s.history_window);
        let base = if skip > 0 { tail.txns[skip - 1].0 } else { tail.base };
        self.state = State::Leading(Box::new(Leading {
            base,
            exhausted: false,
            history: tail.txns.into_iter().skip(skip).collect(),
            epoch: None,
            learners: BTreeMap::new(),
            deadline_ms: now_ms + self.s.init_limit as u64 * self.s.tick_ms,
            established: false,
            committed: self.disk.last_zxid,
            logged: self.disk.last_zxid,
            next_counter: 1,
            next_ping_ms: now_ms + self.s.tick_ms / 2,
            pending_syncs: VecDeque::new(),
        }));
        // Learners that reached us before we decided.
        for (from, info) in std::mem::take(&mut self.early_learners) {
            self.leader_on(from, info, now_ms, out);
        }
        // A single voter is its own quorum at every step.
        self.try_choose_epoch(out);
        if matches!(&self.state, State::Leading(l) if l.epoch.is_some()) {
            self.try_sync(now_ms, out);
        }
    }

    fn follow(&mut self, leader: ServerId, now_ms: u64, out: &mut Vec<Action>) {
        self.early_learners.clear();
        let observer = self.is_observer();
        self.state = State::Following(Box::new(Following {
            leader,
            observer,
            phase: FollowPhase::Discovery,
            epoch: 0,
            pending: VecDeque::new(),
            received: self.disk.last_zxid,
            logged: self.disk.last_zxid,
            applied: self.disk.last_zxid,
            deadline_ms: now_ms + self.s.init_limit as u64 * self.s.tick_ms,
        }));
        out.push(Action::Send {
            to: leader,
            msg: Message::LearnerInfo {
                accepted_epoch: self.disk.accepted_epoch,
                last_zxid: self.disk.last_zxid,
                snapshot_zxid: self.disk.snapshot_zxid,
                observer,
            },
        });
    }

    /// When the driver should call [`Peer::tick`] next, at the latest.
    pub fn next_wakeup_ms(&self) -> Option<u64> {
        match &self.state {
            State::Looking(e) => Some(e.next_wakeup_ms()),
            State::Leading(l) => Some(if l.established { l.next_ping_ms } else { l.deadline_ms.min(l.next_ping_ms) }),
            State::Following(f) => Some(f.deadline_ms),
            State::Recovering => None,
        }
    }

    /// Time passed.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        match &mut self.state {
            State::Looking(e) => {
                let o = e.tick(now_ms);
                self.election_outputs(o, now_ms, &mut out);
            }
            State::Leading(l) => {
                if !l.established && now_ms >= l.deadline_ms {
                    self.recover("no quorum synced within initLimit", &mut out);
                    return out;
                }
                if l.exhausted {
                    self.recover("the zxid counter of this epoch ran out", &mut out);
                    return out;
                }
                if now_ms >= l.next_ping_ms {
                    l.next_ping_ms = now_ms + self.s.tick_ms / 2;
                    for (&id, _) in l.learners.iter().filter(|(_, x)| x.phase == LearnerPhase::Synced) {
                        out.push(Action::Send { to: id, msg: Message::Ping });
                    }
                    if l.established {
                        let limit = self.s.sync_limit as u64 * self.s.tick_ms;
                        let heard = l
                            .learners
                            .iter()
                            .filter(|(_, x)| x.phase == LearnerPhase::Synced && now_ms - x.last_heard_ms <= limit)
                            .map(|(id, _)| id)
                            .chain(std::iter::once(&self.s.id));
                        if !self.s.voters.is_quorum(heard) {
                            self.recover("lost the quorum", &mut out);
                        }
                    }
                }
            }
            State::Following(f) => {
                if now_ms >= f.deadline_ms {
                    self.recover("the leader went silent", &mut out);
                }
            }
            State::Recovering => {}
        }
        out
    }

    /// The election link to `peer` came up: a LOOKING member sends it its vote.
    pub fn election_link_up(&mut self, peer: ServerId, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        if let State::Looking(e) = &self.state {
            let o = e.link_up(peer);
            self.election_outputs(o, now_ms, &mut out);
        }
        out
    }

    /// A connection to `peer` was lost.
    pub fn disconnected(&mut self, peer: ServerId) -> Vec<Action> {
        let mut out = Vec::new();
        self.early_learners.remove(&peer);
        match &mut self.state {
            State::Following(f) if f.leader == peer => self.recover("lost the leader", &mut out),
            State::Leading(l) => {
                l.learners.remove(&peer);
                l.pending_syncs.retain(|(who, ..)| *who != Some(peer));
            }
            _ => {}
        }
        out
    }

    /// A message arrived from `from`.
    pub fn on_message(&mut self, from: ServerId, msg: Message, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        if let Message::Election(n) = msg {
            self.on_notification(n, now_ms, &mut out);
            return out;
        }
        match &self.state {
            State::Leading(_) => self.leader_on(from, msg, now_ms, &mut out),
            State::Following(f) if f.leader == from => self.learner_on(msg, now_ms, &mut out),
            State::Looking(_) | State::Recovering if matches!(msg, Message::LearnerInfo { .. }) => {
                self.early_learners.insert(from, msg);
            }
            _ => {} // stale: from an earlier role
        }
        out
    }

    fn on_notification(&mut self, n: Notification, now_ms: u64, out: &mut Vec<Action>) {
        let settled = match &self.state {
            State::Looking(_) => None,
            State::Leading(_) => Some(PeerState::Leading),
            State::Following(f) => Some(if f.observer { PeerState::Observing } else { PeerState::Following }),
            State::Recovering => return,
        };
        match settled {
            Some(state) => {
                if let Some(election::Output::Send { to, notification }) = answer_when_settled(self.s.id, state, self.vote, &n) {
                    out.push(Action::Send { to, msg: Message::Election(notification) });
                }
            }
            None => {
                let State::Looking(e) = &mut self.state else { unreachable!() };
                let o = e.on_notification(n, now_ms);
                self.election_outputs(o, now_ms, out);
            }
        }
    }

    // ------------------------------------------------------------------ leader

    fn leader_on(&mut self, from: ServerId, msg: Message, now_ms: u64, out: &mut Vec<Action>) {
        let State::Leading(l) = &mut self.state else { unreachable!() };
        if let Some(x) = l.learners.get_mut(&from) {
            x.last_heard_ms = now_ms;
        }
        // Clients' writes and syncs are taken only from synced learners of an
        // established leader.
        let serving_learner = l.established && l.learners.get(&from).is_some_and(|x| x.phase == LearnerPhase::Synced);
        match msg {
            Message::LearnerInfo { accepted_epoch, last_zxid, snapshot_zxid, observer } => {
                // A new session of this learner: what was pending for the old one is gone.
                l.pending_syncs.retain(|(who, ..)| *who != Some(from));
                l.learners.insert(
                    from,
                    Learner {
                        observer: observer || !self.s.voters.contains(from),
                        fresh: false,
                        accepted_epoch,
                        last_zxid,
                        snapshot_zxid,
                        phase: LearnerPhase::Info,
                        acked: last_zxid,
                        last_heard_ms: now_ms,
                    },
                );
                match l.epoch {
                    Some(epoch) => {
                        l.learners.get_mut(&from).unwrap().phase = LearnerPhase::EpochSent;
                        out.push(Action::Send { to: from, msg: Message::LeaderInfo { epoch } });
                    }
                    None => self.try_choose_epoch(out),
                }
            }
            Message::AckEpoch { current_epoch, last_zxid, fresh } => {
                let ours = (self.disk.current_epoch, l.last_zxid());
                let Some(x) = l.learners.get_mut(&from) else { return };
                if x.phase != LearnerPhase::EpochSent {
                    return;
                }
                x.phase = LearnerPhase::EpochAcked;
                x.last_zxid = last_zxid;
                x.acked = last_zxid;
                x.fresh = fresh;
                if (current_epoch, last_zxid) > ours && !x.observer {
                    // A learner holds a more recent history than ours: we must not lead.
                    self.recover("a follower is ahead of the elected leader", out);
                    return;
                }
                self.try_sync(now_ms, out);
            }
            Message::Ack { zxid } => {
                let Some(x) = l.learners.get_mut(&from) else { return };
                match x.phase {
                    LearnerPhase::Syncing => {
                        let epoch = l.epoch.expect("syncing means the epoch is chosen");
                        if zxid != make_zxid(epoch, 0) {
                            // The first ACK must be NEWLEADER's (ZOOKEEPER-4685).
                            l.learners.remove(&from);
                            return;
                        }
                        x.phase = LearnerPhase::Synced;
                        // It acked NEWLEADER only with everything sent before it durable.
                        x.acked = x.last_zxid;
                        if l.established {
                            out.push(Action::Send { to: from, msg: Message::UpToDate });
                            // Its ACK may complete the quorum of a pending proposal.
                            self.try_commit(out);
                        } else {
                            self.try_establish(now_ms, out);
                        }
                    }
                    LearnerPhase::Synced => {
                        x.acked = x.acked.max(zxid);
                        self.try_commit(out);
                    }
                    _ => {}
                }
            }
            Message::Request { body } if serving_learner => {
                out.push(Action::Forwarded { from, body });
            }
            Message::Sync { id, .. } if serving_learner => {
                let last = l.last_zxid();
                l.pending_syncs.push_back((Some(from), id, last));
                self.answer_syncs(out);
            }
            Message::Ping => {}
            _ => {}
        }
    }

    /// Answers the syncs whose zxid is now committed, in order.
    fn answer_syncs(&mut self, out: &mut Vec<Action>) {
        let State::Leading(l) = &mut self.state else { return };
        while let Some(&(who, id, zxid)) = l.pending_syncs.front() {
            if zxid > l.committed {
                break;
            }
            l.pending_syncs.pop_front();
            match who {
                // The COMMITs through `zxid` went to it before this.
                Some(to) => out.push(Action::Send { to, msg: Message::Sync { id, zxid } }),
                None => out.push(Action::Synced { id }),
            }
        }
    }

    /// A client of this server asked for `sync`: [`Action::Synced`] comes back once
    /// everything the leader committed before now is applied here. Refused (`NotLeader`)
    /// while this server is not serving.
    pub fn sync(&mut self, id: u64) -> Result<Vec<Action>, ProposeError> {
        let mut out = Vec::new();
        match &mut self.state {
            State::Leading(l) if l.established => {
                let last = l.last_zxid();
                l.pending_syncs.push_back((None, id, last));
                self.answer_syncs(&mut out);
            }
            State::Following(f) if f.phase == FollowPhase::Broadcast => {
                out.push(Action::Send { to: f.leader, msg: Message::Sync { id, zxid: 0 } });
            }
            _ => return Err(ProposeError::NotLeader),
        }
        Ok(out)
    }

    /// A client of this learner wrote: the write goes to the leader, which answers with
    /// the transaction (it comes back in `Apply`). Refused (`NotLeader`) while this
    /// server is not serving.
    pub fn forward(&mut self, body: Txn) -> Result<Vec<Action>, ProposeError> {
        match &self.state {
            State::Following(f) if f.phase == FollowPhase::Broadcast => {
                Ok(vec![Action::Send { to: f.leader, msg: Message::Request { body } }])
            }
            _ => Err(ProposeError::NotLeader),
        }
    }

    /// Discovery step 2: once a quorum (with us) has sent its info, pick the epoch.
    fn try_choose_epoch(&mut self, out: &mut Vec<Action>) {
        let State::Leading(l) = &mut self.state else { unreachable!() };
        if l.epoch.is_some() {
            return;
        }
        let voters_in = l.learners.iter().filter(|(_, x)| !x.observer).map(|(id, _)| id);
        if !self.s.voters.is_quorum(voters_in.chain(std::iter::once(&self.s.id))) {
            return;
        }
        let max_accepted = l.learners.values().map(|x| x.accepted_epoch).max().unwrap_or(0);
        let epoch = max_accepted.max(self.disk.accepted_epoch) + 1;
        l.epoch = Some(epoch);
        self.disk.accepted_epoch = epoch;
        out.push(Action::PersistAcceptedEpoch(epoch));
        for (&id, x) in l.learners.iter_mut() {
            x.phase = LearnerPhase::EpochSent;
            out.push(Action::Send { to: id, msg: Message::LeaderInfo { epoch } });
        }
    }

    /// Discovery step 4 and synchronisation: once a quorum acked the epoch, take it as our
    /// current epoch and sync every learner that acked.
    fn try_sync(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        let State::Leading(l) = &mut self.state else { unreachable!() };
        let epoch = l.epoch.expect("acks come after the epoch");
        if self.disk.current_epoch != epoch {
            let acked = l
                .learners
                .iter()
                .filter(|(_, x)| !x.observer && x.fresh && x.phase >= LearnerPhase::EpochAcked)
                .map(|(id, _)| id);
            if !self.s.voters.is_quorum(acked.chain(std::iter::once(&self.s.id))) {
                return;
            }
            self.disk.current_epoch = epoch;
            out.push(Action::PersistCurrentEpoch(epoch));
        }
        let ids: Vec<ServerId> =
            l.learners.iter().filter(|(_, x)| x.phase == LearnerPhase::EpochAcked).map(|(id, _)| *id).collect();
        for id in ids {
            self.sync_learner(id, out);
        }
        self.try_establish(now_ms, out);
    }

    /// Sends a learner what it lacks (DIFF, TRUNC + DIFF, or SNAP), then NEWLEADER. The
    /// proposals we make from now on follow on the same connection.
    fn sync_learner(&mut self, id: ServerId, out: &mut Vec<Action>) {
        let State::Leading(l) = &mut self.state else { unreachable!() };
        let epoch = l.epoch.expect("syncing after the epoch");
        let x = &l.learners[&id];
        let (peer_last, observer) = (x.last_zxid, x.observer);
        let last = l.last_zxid();
        // The learner keeps the longest prefix of its log that is committed in our history:
        // through the last transaction we both hold, but nothing we have not committed (a
        // learner serving data that might still be lost would be reading uncommitted).
        let shared = std::iter::once(l.base)
            .chain(l.history.iter().map(|(z, _)| *z))
            .filter(|z| *z <= peer_last)
            .max()
            .unwrap_or(l.base);
        let keep = shared.min(l.committed);
        let from = if peer_last < l.base {
            // Behind our in-memory window: a snapshot of what we applied.
            out.push(Action::SendSnapshot { to: id });
            l.committed
        } else if keep == peer_last {
            // Its log is a prefix of our committed history: send what follows.
            out.push(Action::Send { to: id, msg: Message::Diff { last_zxid: last } });
            keep
        } else if keep >= x.snapshot_zxid {
            // It holds transactions we never had or have not committed: cut them, then
            // send what follows.
            out.push(Action::Send { to: id, msg: Message::Trunc { zxid: keep } });
            keep
        } else {
            // What it must drop is inside its snapshot: replace everything.
            out.push(Action::SendSnapshot { to: id });
            l.committed
        };
        for (z, txn) in l.history.iter().filter(|(z, _)| *z > from) {
            let committed = *z <= l.committed;
            let msgs = match (observer, committed) {
                (true, true) => vec![Message::Inform { zxid: *z, txn: txn.clone() }],
                (true, false) => vec![],
                (false, true) => vec![Message::Proposal { zxid: *z, txn: txn.clone() }, Message::Commit { zxid: *z }],
                (false, false) => vec![Message::Proposal { zxid: *z, txn: txn.clone() }],
            };
            out.extend(msgs.into_iter().map(|msg| Action::Send { to: id, msg }));
        }
        let x = l.learners.get_mut(&id).expect("known learner");
        // Everything through here has been sent (an observer gets committed ones only).
        x.last_zxid = if observer { l.committed } else { last };
        x.phase = LearnerPhase::Syncing;
        out.push(Action::Send { to: id, msg: Message::NewLeader { epoch } });
    }

    /// Once a quorum acked NEWLEADER, the leader is established: our recovered history is
    /// committed, learners get UPTODATE, and proposals may start.
    fn try_establish(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        let State::Leading(l) = &mut self.state else { unreachable!() };
        if l.established || self.disk.current_epoch != l.epoch.unwrap_or(0) {
            return;
        }
        let synced =
            l.learners.iter().filter(|(_, x)| !x.observer && x.phase == LearnerPhase::Synced).map(|(id, _)| id);
        if !self.s.voters.is_quorum(synced.chain(std::iter::once(&self.s.id))) {
            return;
        }
        l.established = true;
        let epoch = l.epoch.expect("established after the epoch");
        // LOOKING servers are answered with our vote; it must carry the epoch we now lead,
        // as our followers' will, or a joiner never sees a quorum agree.
        self.vote.peer_epoch = epoch;
        for (&id, x) in l.learners.iter_mut() {
            if x.phase == LearnerPhase::Synced {
                out.push(Action::Send { to: id, msg: Message::UpToDate });
                // A learner that acked long before the last one was waiting, not silent:
                // syncLimit counts from now.
                x.last_heard_ms = now_ms;
            }
        }
        out.push(Action::Role(Role::Leading { epoch }));
    }

    /// The zxid the next [`Peer::propose`] will assign (an established leader only), for
    /// a driver whose transactions carry their own zxid.
    pub fn next_zxid(&self) -> Option<Zxid> {
        match &self.state {
            State::Leading(l) if l.established && !l.exhausted && l.next_counter < u32::MAX => {
                Some(make_zxid(l.epoch.expect("established"), l.next_counter))
            }
            _ => None,
        }
    }

    /// Proposes a transaction (leader only): returns its zxid. It is committed (and
    /// comes back in `Apply`) once a quorum has it durable.
    pub fn propose(&mut self, txn: Txn) -> Result<(Zxid, Vec<Action>), ProposeError> {
        let State::Leading(l) = &mut self.state else { return Err(ProposeError::NotLeader) };
        if !l.established {
            return Err(ProposeError::NotLeader);
        }
        let epoch = l.epoch.expect("established");
        let mut out = Vec::new();
        if l.next_counter == u32::MAX || l.exhausted {
            // The counter would roll into the epoch bits: a new epoch must begin.
            l.exhausted = true;
            return Err(ProposeError::NotLeader);
        }
        let zxid = make_zxid(epoch, l.next_counter);
        l.next_counter += 1;
        l.history.push_back((zxid, txn.clone()));
        out.push(Action::Append(vec![(zxid, txn.clone())]));
        for (&id, x) in &l.learners {
            if !x.observer && matches!(x.phase, LearnerPhase::Syncing | LearnerPhase::Synced) {
                out.push(Action::Send { to: id, msg: Message::Proposal { zxid, txn: txn.clone() } });
            }
        }
        Ok((zxid, out))
    }

    /// The log is durable through `zxid`.
    pub fn logged(&mut self, zxid: Zxid) -> Vec<Action> {
        let mut out = Vec::new();
        match &mut self.state {
            State::Leading(l) => {
                l.logged = l.logged.max(zxid);
                self.try_commit(&mut out);
            }
            State::Following(f) => {
                f.logged = f.logged.max(zxid);
                match f.phase {
                    FollowPhase::NewLeaderPending { epoch, through } if f.logged >= through => {
                        let (logged, observer, leader) = (f.logged, f.observer, f.leader);
                        self.ack_new_leader(epoch, &mut out);
                        // Proposals that came after NEWLEADER and became durable in the
                        // same sync are acked too, after NEWLEADER's ACK.
                        if logged > through && !observer {
                            out.push(Action::Send { to: leader, msg: Message::Ack { zxid: logged } });
                        }
                    }
                    FollowPhase::Acked | FollowPhase::Broadcast if !f.observer => {
                        out.push(Action::Send { to: f.leader, msg: Message::Ack { zxid: f.logged } });
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        out
    }

    /// Commits, in order, every proposal a quorum has durable.
    fn try_commit(&mut self, out: &mut Vec<Action>) {
        let State::Leading(l) = &mut self.state else { return };
        if !l.established {
            return;
        }
        let mut newly = Vec::new();
        for (z, txn) in l.history.iter().filter(|(z, _)| *z > l.committed) {
            let acked = l
                .learners
                .iter()
                .filter(|(_, x)| !x.observer && x.phase == LearnerPhase::Synced && x.acked >= *z)
                .map(|(id, _)| id);
            let me = (l.logged >= *z).then_some(&self.s.id);
            if !self.s.voters.is_quorum(acked.chain(me)) {
                break;
            }
            newly.push((*z, txn.clone()));
        }
        let Some(&(last, _)) = newly.last() else { return };
        l.committed = last;
        for (&id, x) in &l.learners {
            match (x.observer, x.phase) {
                (false, LearnerPhase::Syncing | LearnerPhase::Synced) => {
                    out.push(Action::Send { to: id, msg: Message::Commit { zxid: last } })
                }
                (true, LearnerPhase::Syncing | LearnerPhase::Synced) => {
                    for (z, txn) in &newly {
                        out.push(Action::Send { to: id, msg: Message::Inform { zxid: *z, txn: txn.clone() } });
                    }
                }
                _ => {}
            }
        }
        out.push(Action::Apply(newly));
        self.answer_syncs(out);
        let State::Leading(l) = &mut self.state else { return };
        // Keep only the window of committed transactions (and every uncommitted one).
        let committed_held = l.history.iter().take_while(|(z, _)| *z <= l.committed).count();
        let excess = committed_held.saturating_sub(self.s.history_window);
        if excess > 0 {
            l.base = l.history[excess - 1].0;
            l.history.drain(..excess);
        }
    }

    // ----------------------------------------------------------------- learner

    fn learner_on(&mut self, msg: Message, now_ms: u64, out: &mut Vec<Action>) {
        let State::Following(f) = &mut self.state else { unreachable!() };
        if matches!(f.phase, FollowPhase::Broadcast) {
            f.deadline_ms = now_ms + self.s.sync_limit as u64 * self.s.tick_ms;
        }
        match (f.phase, msg) {
            (FollowPhase::Discovery, Message::LeaderInfo { epoch }) => {
                let fresh = epoch > self.disk.accepted_epoch;
                if epoch < self.disk.accepted_epoch {
                    self.recover("the leader's epoch is older than one we promised", out);
                    return;
                }
                if fresh {
                    self.disk.accepted_epoch = epoch;
                    out.push(Action::PersistAcceptedEpoch(epoch));
                }
                f.epoch = epoch;
                f.phase = FollowPhase::Sync;
                out.push(Action::Send {
                    to: f.leader,
                    msg: Message::AckEpoch {
                        current_epoch: self.disk.current_epoch,
                        last_zxid: self.disk.last_zxid,
                        fresh,
                    },
                });
            }
            (FollowPhase::Sync, Message::Diff { .. }) => {
                out.push(Action::BeginEpochUpdate);
            }
            (FollowPhase::Sync, Message::Trunc { zxid }) => {
                out.push(Action::BeginEpochUpdate);
                // What goes was loaded from our log at recovery, never committed.
                out.push(Action::Truncate(zxid));
                f.received = zxid;
                f.logged = zxid;
                f.applied = zxid;
            }
            (FollowPhase::Sync, Message::Snap { zxid, snapshot }) => {
                out.push(Action::BeginEpochUpdate);
                out.push(Action::InstallSnapshot { zxid, snapshot });
                f.received = zxid;
                f.logged = zxid;
                f.applied = zxid;
                f.pending.clear();
            }
            (FollowPhase::Sync | FollowPhase::NewLeaderPending { .. } | FollowPhase::Acked | FollowPhase::Broadcast, Message::Proposal { zxid, txn }) => {
                if zxid <= f.received {
                    return; // a duplicate
                }
                if !follows(f.received, zxid) {
                    // A hole in our log would be a hole in our history (ZOOKEEPER-4925).
                    self.recover("a proposal does not follow the last one", out);
                    return;
                }
                f.received = zxid;
                f.pending.push_back((zxid, txn.clone()));
                out.push(Action::Append(vec![(zxid, txn)]));
            }
            (FollowPhase::Sync | FollowPhase::NewLeaderPending { .. } | FollowPhase::Acked | FollowPhase::Broadcast, Message::Commit { zxid }) => {
                if zxid <= f.applied {
                    return;
                }
                let n = f.pending.iter().take_while(|(z, _)| *z <= zxid).count();
                assert!(
                    n > 0 && f.pending[n - 1].0 == zxid,
                    "COMMIT {zxid:#x} does not match a pending proposal (next {:?})",
                    f.pending.front().map(|(z, _)| *z)
                );
                let txns: Vec<(Zxid, Txn)> = f.pending.drain(..n).collect();
                f.applied = zxid;
                out.push(Action::Apply(txns));
            }
            (FollowPhase::Sync | FollowPhase::NewLeaderPending { .. } | FollowPhase::Acked | FollowPhase::Broadcast, Message::Inform { zxid, txn }) => {
                if zxid <= f.applied {
                    return;
                }
                f.received = f.received.max(zxid);
                f.applied = zxid;
                out.push(Action::Append(vec![(zxid, txn.clone())]));
                out.push(Action::Apply(vec![(zxid, txn)]));
            }
            (FollowPhase::Sync, Message::NewLeader { epoch }) => {
                if f.logged >= f.received {
                    self.ack_new_leader(epoch, out);
                } else {
                    f.phase = FollowPhase::NewLeaderPending { epoch, through: f.received };
                }
            }
            (FollowPhase::Acked, Message::UpToDate) => {
                f.phase = FollowPhase::Broadcast;
                // Our vote now names the leader with the epoch we share with it.
                self.vote.peer_epoch = f.epoch;
                f.deadline_ms = now_ms + self.s.sync_limit as u64 * self.s.tick_ms;
                let role = if f.observer {
                    Role::Observing { leader: f.leader, epoch: f.epoch }
                } else {
                    Role::Following { leader: f.leader, epoch: f.epoch }
                };
                out.push(Action::Role(role));
            }
            (FollowPhase::Broadcast, Message::Sync { id, zxid }) => {
                // FIFO: every COMMIT through `zxid` came before this and was applied.
                assert!(f.applied >= zxid, "SYNC {zxid:#x} before its commits");
                out.push(Action::Synced { id });
            }
            (FollowPhase::Broadcast, Message::Ping) => {
                out.push(Action::Send { to: f.leader, msg: Message::Ping });
            }
            // Learners answer pings once they acked NEWLEADER: the leader counts them from
            // then on.
            (FollowPhase::Acked, Message::Ping) => {
                out.push(Action::Send { to: f.leader, msg: Message::Ping });
            }
            (_, Message::Ping) => {}
            // An answer meant for an earlier session with this leader.
            (_, Message::Sync { .. }) => {}
            (phase, msg) => {
                let _ = (phase, msg);
                self.recover("unexpected message from the leader", out);
            }
        }
    }

    /// Everything the sync brought is durable: take the epoch as ours, then ACK — in that
    /// order, and before any other ACK on this connection.
    fn ack_new_leader(&mut self, epoch: u32, out: &mut Vec<Action>) {
        let State::Following(f) = &mut self.state else { unreachable!() };
        if self.disk.current_epoch != epoch {
            self.disk.current_epoch = epoch;
            out.push(Action::PersistCurrentEpoch(epoch));
        }
        f.phase = FollowPhase::Acked;
        out.push(Action::Send { to: f.leader, msg: Message::Ack { zxid: make_zxid(epoch, 0) } });
    }
}

/// Whether `next` can come right after `prev` in one history: the next counter of the
/// same epoch, or the first transaction of a later epoch.
fn follows(prev: Zxid, next: Zxid) -> bool {
    next == prev + 1 || (epoch_of(next) > epoch_of(prev) && counter_of(next) == 1)
}

impl Leading {
    /// The last zxid of our history.
    fn last_zxid(&self) -> Zxid {
        self.history.back().map_or(self.base, |(z, _)| *z)
    }
}

#[cfg(test)]
mod tests;
