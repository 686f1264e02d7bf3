//! A deterministic simulation of a Zab ensemble: several [`Peer`]s, a network of FIFO
//! links (connections) that delay messages and can be cut and healed, disks that lose
//! what was not yet synced when their server crashes, crashes and restarts, and a client
//! proposing writes to whoever leads. Zab's invariants are checked after every event.
//!
//! One seed reproduces a run exactly:
//!
//! ```text
//! CORRAL_SIM_SEED=1234 cargo test -p corral-zab --test simulation -- --nocapture   # replay one seed, with a trace
//! CORRAL_SIM_SEEDS=100000 cargo test -p corral-zab --profile opt --test simulation # a longer soak
//! ```

use corral_zab::election::Timing;
use corral_zab::message::{Message, Txn};
use corral_zab::peer::{Action, DiskState, LogTail, Peer, Role, Settings};
use corral_zab::{epoch_of, ServerId, Voters, Zxid};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::sync::Arc;

const TICK_MS: u64 = 100;
const HISTORY_WINDOW: usize = 20;

#[derive(Debug, Clone)]
enum Event {
    Deliver { from: ServerId, to: ServerId, conn: u64, msg: Message },
    /// The log writer of `node` finished syncing through record `upto` (exclusive).
    Synced { node: ServerId, incarnation: u64, upto: usize },
    Wakeup { node: ServerId, incarnation: u64 },
    Disconnected { node: ServerId, incarnation: u64, peer: ServerId },
}

#[derive(Debug, Default, Clone)]
struct Disk {
    accepted: u32,
    current: u32,
    /// The snapshot the log follows: the transactions it holds.
    snapshot: Vec<(Zxid, Txn)>,
    log: Vec<(Zxid, Txn)>,
    /// `log[..synced]` is durable.
    synced: usize,
    /// The `updatingEpoch` marker.
    updating: bool,
}

impl Disk {
    fn last_zxid(&self) -> Zxid {
        self.log.last().or(self.snapshot.last()).map_or(0, |(z, _)| *z)
    }

    /// What a server does when it loads its data directory: finish an epoch update a
    /// crash interrupted (ZOOKEEPER-1653).
    fn repair(&mut self) {
        if self.updating {
            self.current = self.current.max(epoch_of(self.last_zxid()));
            self.updating = false;
        }
    }

    /// Snapshot + log: what recovery loads into memory.
    fn replay(&self) -> Vec<(Zxid, Txn)> {
        self.snapshot.iter().chain(self.log.iter()).cloned().collect()
    }

    fn state(&self) -> (DiskState, LogTail) {
        let disk = DiskState {
            accepted_epoch: self.accepted,
            current_epoch: self.current,
            last_zxid: self.last_zxid(),
            snapshot_zxid: self.snapshot.last().map_or(0, |(z, _)| *z),
            trusted: true,
        };
        let all = self.replay();
        let start = all.len().saturating_sub(HISTORY_WINDOW);
        let base = if start > 0 { all[start - 1].0 } else { 0 };
        (disk, LogTail { base, txns: all[start..].to_vec() })
    }
}

struct Node {
    id: ServerId,
    peer: Option<Peer>,
    /// Bumped at each start, so events meant for an earlier life are dropped.
    incarnation: u64,
    disk: Disk,
    /// The state machine: the transactions applied, in order.
    tree: Vec<(Zxid, Txn)>,
    role: Role,
    /// A scheduled wake-up time, to avoid queueing the same one twice.
    wakeup_at: Option<u64>,
    /// The end of the log when NEWLEADER arrived: what the sync brought.
    synced_history_end: Option<Zxid>,
}

struct Sim {
    rng: StdRng,
    trace: bool,
    now_ms: u64,
    seq: u64,
    events: BinaryHeap<Reverse<(u64, u64, usize)>>,
    payloads: Vec<Option<Event>>,
    nodes: Vec<Node>,
    voters: Voters,
    members: Vec<ServerId>,
    /// Cut links (both directions).
    cut: BTreeSet<(ServerId, ServerId)>,
    /// Connection number per ordered pair; bumped when a link breaks, so messages of a
    /// broken connection are dropped.
    conns: BTreeMap<(ServerId, ServerId), u64>,
    /// Last delivery time per link, to keep links FIFO.
    link_time: BTreeMap<(ServerId, ServerId), u64>,
    /// Every committed transaction, by zxid, as first seen committed.
    committed: BTreeMap<Zxid, Txn>,
    /// Transactions acknowledged to the client (applied on their leader).
    acknowledged: BTreeMap<Zxid, Txn>,
    leaders: BTreeMap<u32, ServerId>,
    next_payload: u64,
    stats: Stats,
    /// Syncs in flight: (member, id) → the newest acknowledged zxid when it was issued,
    /// which the member must have applied when the sync completes.
    syncs: BTreeMap<(ServerId, u64), Zxid>,
    next_sync: u64,
}

/// What happened in runs, so a run that exercises nothing is noticed.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    diffs: u64,
    truncs: u64,
    snaps: u64,
    leaders: u64,
    crashes: u64,
    acknowledged: u64,
    forwarded: u64,
    syncs: u64,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, o: Stats) {
        self.diffs += o.diffs;
        self.truncs += o.truncs;
        self.snaps += o.snaps;
        self.leaders += o.leaders;
        self.crashes += o.crashes;
        self.acknowledged += o.acknowledged;
        self.forwarded += o.forwarded;
        self.syncs += o.syncs;
    }
}

fn encode_snapshot(txns: &[(Zxid, Txn)]) -> Arc<[u8]> {
    let mut b = Vec::new();
    for (z, t) in txns {
        b.extend_from_slice(&z.to_be_bytes());
        b.extend_from_slice(&(t.len() as u32).to_be_bytes());
        b.extend_from_slice(t);
    }
    b.into()
}

fn decode_snapshot(mut b: &[u8]) -> Vec<(Zxid, Txn)> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let z = i64::from_be_bytes(b[..8].try_into().unwrap());
        let n = u32::from_be_bytes(b[8..12].try_into().unwrap()) as usize;
        out.push((z, b[12..12 + n].into()));
        b = &b[12 + n..];
    }
    out
}

impl Sim {
    fn new(seed: u64, n_voters: u64, n_observers: u64, trace: bool) -> Sim {
        let voters = Voters::new(1..=n_voters);
        let members: Vec<ServerId> = (1..=n_voters + n_observers).collect();
        let nodes = members
            .iter()
            .map(|&id| Node {
                id,
                peer: None,
                incarnation: 0,
                disk: Disk::default(),
                tree: Vec::new(),
                role: Role::Looking,
                wakeup_at: None,
                synced_history_end: None,
            })
            .collect();
        Sim {
            rng: StdRng::seed_from_u64(seed),
            trace,
            now_ms: 0,
            seq: 0,
            events: BinaryHeap::new(),
            payloads: Vec::new(),
            nodes,
            voters,
            members,
            cut: BTreeSet::new(),
            conns: BTreeMap::new(),
            link_time: BTreeMap::new(),
            committed: BTreeMap::new(),
            acknowledged: BTreeMap::new(),
            leaders: BTreeMap::new(),
            next_payload: 0,
            stats: Stats::default(),
            syncs: BTreeMap::new(),
            next_sync: 0,
        }
    }

    fn settings(&self, id: ServerId) -> Settings {
        Settings {
            id,
            voters: self.voters.clone(),
            members: self.members.clone(),
            tick_ms: TICK_MS,
            init_limit: 10,
            sync_limit: 5,
            election: Timing { finalize_wait_ms: 50, resend_min_ms: 50, resend_max_ms: 2000 },
            history_window: HISTORY_WINDOW,
        }
    }

    fn idx(&self, id: ServerId) -> usize {
        (id - 1) as usize
    }

    fn schedule(&mut self, at: u64, e: Event) {
        self.seq += 1;
        self.payloads.push(Some(e));
        self.events.push(Reverse((at, self.seq, self.payloads.len() - 1)));
    }

    fn linked(&self, a: ServerId, b: ServerId) -> bool {
        !self.cut.contains(&(a.min(b), a.max(b)))
    }

    fn start(&mut self, id: ServerId) {
        let i = self.idx(id);
        let s = self.settings(id);
        let node = &mut self.nodes[i];
        node.incarnation += 1;
        node.disk.repair();
        // The startup checks a real server makes (corral_storage::epoch::check_startup).
        let d = &node.disk;
        assert!(d.current <= d.accepted, "{id} restarts with currentEpoch {} > acceptedEpoch {}", d.current, d.accepted);
        assert!(
            epoch_of(d.last_zxid()) <= d.current,
            "{id} restarts with history of epoch {} above currentEpoch {} (ZOOKEEPER-1653)",
            epoch_of(d.last_zxid()),
            d.current
        );
        node.tree = node.disk.replay();
        let (disk, tail) = node.disk.state();
        let (peer, actions) = Peer::new(s, disk, tail, self.now_ms);
        node.peer = Some(peer);
        node.wakeup_at = None;
        self.trace_line(format_args!("start {id} with last zxid {:#x}", disk.last_zxid));
        self.run_actions(id, actions);
    }

    fn crash(&mut self, id: ServerId) {
        let i = self.idx(id);
        let node = &mut self.nodes[i];
        if node.peer.is_none() {
            return;
        }
        node.peer = None;
        node.role = Role::Looking;
        // Whatever was not synced is lost.
        let synced = node.disk.synced;
        node.disk.log.truncate(synced);
        self.trace_line(format_args!("crash {id}: log keeps {synced} records"));
        self.stats.crashes += 1;
        for other in self.members.clone() {
            if other != id {
                self.break_link(id, other);
            }
        }
    }

    /// Breaks the connections between `a` and `b`: queued messages are lost and both ends
    /// hear about it.
    fn break_link(&mut self, a: ServerId, b: ServerId) {
        for (x, y) in [(a, b), (b, a)] {
            *self.conns.entry((x, y)).or_default() += 1;
            let i = self.idx(x);
            if self.nodes[i].peer.is_some() {
                let inc = self.nodes[i].incarnation;
                let at = self.now_ms + 1;
                self.schedule(at, Event::Disconnected { node: x, incarnation: inc, peer: y });
            }
        }
    }

    fn send(&mut self, from: ServerId, to: ServerId, msg: Message) {
        if !self.linked(from, to) {
            return;
        }
        let conn = *self.conns.entry((from, to)).or_default();
        let last = self.link_time.get(&(from, to)).copied().unwrap_or(0);
        let at = (self.now_ms + self.rng.gen_range(1..=8)).max(last);
        self.link_time.insert((from, to), at);
        self.schedule(at, Event::Deliver { from, to, conn, msg });
    }

    fn trace_line(&self, args: std::fmt::Arguments) {
        if self.trace {
            println!("{:>8} {args}", self.now_ms);
        }
    }

    fn run_actions(&mut self, id: ServerId, actions: Vec<Action>) {
        let mut queue: std::collections::VecDeque<Action> = actions.into();
        while let Some(a) = queue.pop_front() {
            let i = self.idx(id);
            if self.nodes[i].peer.is_none() {
                return;
            }
            let more = self.run_action(id, a);
            for m in more.into_iter().rev() {
                queue.push_front(m);
            }
        }
        self.arm_wakeup(id);
    }

    fn arm_wakeup(&mut self, id: ServerId) {
        let i = self.idx(id);
        let node = &self.nodes[i];
        let Some(at) = node.peer.as_ref().and_then(|p| p.next_wakeup_ms()) else { return };
        if node.wakeup_at.is_some_and(|w| w <= at && w >= self.now_ms) {
            return;
        }
        let inc = node.incarnation;
        self.nodes[i].wakeup_at = Some(at);
        self.schedule(at.max(self.now_ms), Event::Wakeup { node: id, incarnation: inc });
    }

    /// Carries out one action; returns actions it led to (they run next, first).
    fn run_action(&mut self, id: ServerId, a: Action) -> Vec<Action> {
        let i = self.idx(id);
        match a {
            Action::Send { to, msg } => {
                self.send(id, to, msg);
                vec![]
            }
            Action::PersistAcceptedEpoch(e) => {
                assert!(e >= self.nodes[i].disk.accepted, "acceptedEpoch went down on {id}");
                self.nodes[i].disk.accepted = e;
                vec![]
            }
            Action::PersistCurrentEpoch(e) => {
                let end = self.nodes[i].synced_history_end.take();
                let d = &mut self.nodes[i].disk;
                assert!(e <= d.accepted, "currentEpoch above acceptedEpoch on {id}");
                // The history it holds must be durable first (ZOOKEEPER-4643): for a
                // follower what came before NEWLEADER, for a leader all of its log.
                let unsynced = d.log[d.synced..].iter().filter(|(z, _)| end.is_none_or(|end| *z <= end)).count();
                assert_eq!(unsynced, 0, "{id} raised currentEpoch to {e} with unsynced history");
                d.current = e;
                d.updating = false;
                vec![]
            }
            Action::BeginEpochUpdate => {
                self.nodes[i].disk.updating = true;
                vec![]
            }
            Action::Append(txns) => {
                let node = &mut self.nodes[i];
                for (z, t) in txns {
                    let last = node.disk.last_zxid();
                    assert!(z > last, "{id} appended {z:#x} after {last:#x}");
                    node.disk.log.push((z, t));
                }
                let upto = node.disk.log.len();
                let inc = node.incarnation;
                let at = self.now_ms + self.rng.gen_range(1..=6);
                self.schedule(at, Event::Synced { node: id, incarnation: inc, upto });
                vec![]
            }
            Action::Truncate(z) => {
                let node = &mut self.nodes[i];
                assert!(node.disk.snapshot.last().map_or(0, |(x, _)| *x) <= z, "{id}: TRUNC to {z:#x} below its snapshot");
                // Drain, then cut (durably). Nothing cut may have been committed.
                let cut: Vec<(Zxid, Txn)> = node.disk.log.iter().filter(|(x, _)| *x > z).cloned().collect();
                for (x, t) in &cut {
                    assert!(self.committed.get(x) != Some(t), "{id}: TRUNC to {z:#x} cuts committed {x:#x}");
                }
                let node = &mut self.nodes[i];
                node.disk.log.retain(|(x, _)| *x <= z);
                node.disk.synced = node.disk.log.len();
                node.tree = node.disk.replay();
                vec![]
            }
            Action::InstallSnapshot { zxid, snapshot } => {
                let txns = decode_snapshot(&snapshot);
                assert_eq!(txns.last().map_or(0, |(z, _)| *z), zxid, "snapshot zxid");
                let node = &mut self.nodes[i];
                node.disk.snapshot = txns.clone();
                node.disk.log.clear();
                node.disk.synced = 0;
                // Not checked against the committed ones: a snapshot from a leader not yet
                // established holds its whole history, committed at establishment.
                node.tree = txns;
                vec![]
            }
            Action::SendSnapshot { to } => {
                let tree = &self.nodes[i].tree;
                let zxid = tree.last().map_or(0, |(z, _)| *z);
                let snapshot = encode_snapshot(tree);
                self.send(id, to, Message::Snap { zxid, snapshot });
                vec![]
            }
            Action::Apply(txns) => {
                // While syncing (not serving yet) a learner applies what its new leader
                // sends as committed: the leader's whole history, which becomes committed
                // when the leader is established. Only a serving server's applies are
                // checked against what is known committed.
                let serving = !matches!(self.nodes[i].role, Role::Looking);
                let leading = matches!(self.nodes[i].role, Role::Leading { .. });
                for (z, t) in txns {
                    let node = &mut self.nodes[i];
                    let last = node.tree.last().map_or(0, |(z, _)| *z);
                    assert!(z > last, "{id} applied {z:#x} after {last:#x}");
                    node.tree.push((z, t.clone()));
                    match self.committed.get(&z) {
                        Some(c) => assert_eq!(*c, t, "{id}: two different transactions committed as {z:#x}"),
                        None if serving => {
                            self.committed.insert(z, t.clone());
                        }
                        None => {}
                    }
                    if leading {
                        self.acknowledged.insert(z, t);
                    }
                }
                if serving {
                    self.check_tree_committed(id);
                }
                vec![]
            }
            Action::Role(role) => {
                self.trace_line(format_args!("{id} is now {role:?}"));
                self.nodes[i].role = role;
                if matches!(role, Role::Following { .. } | Role::Observing { .. }) {
                    self.check_tree_committed(id);
                }
                if let Role::Leading { epoch } = role {
                    self.stats.leaders += 1;
                    if let Some(other) = self.leaders.insert(epoch, id) {
                        assert_eq!(other, id, "two leaders established in epoch {epoch}");
                    }
                    // Its whole history is now committed.
                    for (z, t) in self.nodes[i].tree.clone() {
                        match self.committed.get(&z) {
                            Some(c) => assert_eq!(*c, t, "leader {id} holds another {z:#x}"),
                            None => {
                                self.committed.insert(z, t);
                            }
                        }
                    }
                    self.check_tree_committed(id);
                    // Everything acknowledged so far is in the new leader's history.
                    for (z, t) in &self.acknowledged {
                        assert!(
                            self.nodes[i].tree.iter().any(|(x, u)| x == z && u == t),
                            "new leader {id} of epoch {epoch} lacks acknowledged {z:#x}"
                        );
                    }
                }
                vec![]
            }
            Action::Disconnect { peer } => {
                self.break_link(id, peer);
                vec![]
            }
            Action::Forwarded { from, body } => {
                assert!(matches!(self.nodes[i].role, Role::Leading { .. }), "{id} got a forwarded write from {from}");
                self.stats.forwarded += 1;
                match self.nodes[i].peer.as_mut().unwrap().propose(body) {
                    Ok((_, actions)) => actions,
                    Err(_) => vec![],
                }
            }
            Action::Synced { id: sync } => {
                let required = self.syncs.remove(&(id, sync)).expect("a sync this member was asked for");
                let have = self.nodes[i].tree.last().map_or(0, |(z, _)| *z);
                assert!(
                    have >= required,
                    "{id}: sync {sync} done with {have:#x} applied, but {required:#x} was acknowledged before it"
                );
                self.stats.syncs += 1;
                vec![]
            }
            Action::Recover => {
                let node = &mut self.nodes[i];
                node.disk.synced = node.disk.log.len();
                node.disk.repair();
                node.tree = node.disk.replay();
                let (disk, tail) = node.disk.state();
                self.trace_line(format_args!("{id} recovers at {:#x}", disk.last_zxid));
                let now = self.now_ms;
                self.nodes[i].peer.as_mut().unwrap().recovered(disk, tail, now)
            }
        }
    }

    /// A node's applied transactions through its last are exactly the committed ones.
    fn check_tree_committed(&self, id: ServerId) {
        let node = &self.nodes[self.idx(id)];
        let Some(&(last, _)) = node.tree.last() else { return };
        let committed: Vec<(Zxid, Txn)> = self.committed.range(..=last).map(|(z, t)| (*z, t.clone())).collect();
        assert!(
            node.tree == committed,
            "{id}'s tree is not the committed prefix through {last:#x}:\n tree      {:?}\n committed {:?}",
            node.tree.iter().map(|(z, _)| *z).collect::<Vec<_>>(),
            committed.iter().map(|(z, _)| *z).collect::<Vec<_>>()
        );
    }

    fn step(&mut self) -> bool {
        let Some(Reverse((at, _, slot))) = self.events.pop() else { return false };
        self.now_ms = self.now_ms.max(at);
        let e = self.payloads[slot].take().expect("each event runs once");
        match e {
            Event::Deliver { from, to, conn, msg } => {
                if self.conns.get(&(from, to)).copied().unwrap_or(0) != conn || !self.linked(from, to) {
                    return true;
                }
                let i = self.idx(to);
                let now = self.now_ms;
                if self.trace && !matches!(msg, Message::Ping) {
                    let short = match &msg {
                        Message::Snap { zxid, .. } => format!("Snap {zxid:#x}"),
                        Message::Proposal { zxid, .. } => format!("Proposal {zxid:#x}"),
                        Message::Inform { zxid, .. } => format!("Inform {zxid:#x}"),
                        m => format!("{m:x?}"),
                    };
                    self.trace_line(format_args!("{from} -> {to}: {short}"));
                }
                match &msg {
                    Message::Diff { .. } => self.stats.diffs += 1,
                    Message::Trunc { .. } => self.stats.truncs += 1,
                    Message::Snap { .. } => self.stats.snaps += 1,
                    _ => {}
                }
                if matches!(msg, Message::NewLeader { .. }) {
                    self.nodes[i].synced_history_end = Some(self.nodes[i].disk.last_zxid());
                }
                let Some(p) = self.nodes[i].peer.as_mut() else { return true };
                let actions = p.on_message(from, msg, now);
                self.run_actions(to, actions);
            }
            Event::Synced { node, incarnation, upto } => {
                let i = self.idx(node);
                let n = &mut self.nodes[i];
                if n.incarnation != incarnation || n.peer.is_none() || upto > n.disk.log.len() {
                    return true;
                }
                if upto <= n.disk.synced {
                    return true;
                }
                n.disk.synced = upto;
                let zxid = n.disk.log[upto - 1].0;
                let actions = n.peer.as_mut().unwrap().logged(zxid);
                self.run_actions(node, actions);
            }
            Event::Wakeup { node, incarnation } => {
                let i = self.idx(node);
                let n = &mut self.nodes[i];
                if n.incarnation != incarnation || n.peer.is_none() {
                    return true;
                }
                n.wakeup_at = None;
                let now = self.now_ms;
                let actions = n.peer.as_mut().unwrap().tick(now);
                self.run_actions(node, actions);
            }
            Event::Disconnected { node, incarnation, peer } => {
                let i = self.idx(node);
                let n = &mut self.nodes[i];
                if n.incarnation != incarnation || n.peer.is_none() {
                    return true;
                }
                let actions = n.peer.as_mut().unwrap().disconnected(peer);
                self.run_actions(node, actions);
            }
        }
        true
    }

    fn run_until(&mut self, t: u64) {
        while let Some(Reverse((at, _, _))) = self.events.peek() {
            if *at > t {
                break;
            }
            self.step();
        }
        self.now_ms = self.now_ms.max(t);
    }

    fn leader(&self) -> Option<ServerId> {
        self.nodes.iter().find(|n| matches!(n.role, Role::Leading { .. }) && n.peer.is_some()).map(|n| n.id)
    }

    /// The client: proposes a write to the leader, if there is one.
    fn propose(&mut self) -> Option<Zxid> {
        let id = self.leader()?;
        let txn = self.payload();
        let i = self.idx(id);
        let (zxid, actions) = self.nodes[i].peer.as_mut().unwrap().propose(txn).ok()?;
        self.run_actions(id, actions);
        Some(zxid)
    }

    fn payload(&mut self) -> Txn {
        self.next_payload += 1;
        format!("w{}", self.next_payload).into_bytes().into()
    }

    fn serving(&self) -> Vec<ServerId> {
        self.nodes.iter().filter(|n| n.peer.is_some() && !matches!(n.role, Role::Looking)).map(|n| n.id).collect()
    }

    /// A client of a random serving member writes: the leader proposes, a follower
    /// forwards.
    fn write_anywhere(&mut self, pick: usize) {
        let serving = self.serving();
        let Some(&id) = serving.get(pick % serving.len().max(1)) else { return };
        let i = self.idx(id);
        if matches!(self.nodes[i].role, Role::Leading { .. }) {
            self.propose();
            return;
        }
        let txn = self.payload();
        if let Ok(actions) = self.nodes[i].peer.as_mut().unwrap().forward(txn) {
            self.run_actions(id, actions);
        }
    }

    /// A client of a random serving member syncs; when it completes, the member must
    /// have applied every write acknowledged before it was issued.
    fn sync_anywhere(&mut self, pick: usize) {
        let serving = self.serving();
        let Some(&id) = serving.get(pick % serving.len().max(1)) else { return };
        self.next_sync += 1;
        let sync = self.next_sync;
        let required = self.acknowledged.keys().next_back().copied().unwrap_or(0);
        let i = self.idx(id);
        if let Ok(actions) = self.nodes[i].peer.as_mut().unwrap().sync(sync) {
            self.syncs.insert((id, sync), required);
            self.run_actions(id, actions);
        }
    }
}

/// One seeded run: faults for a while, then everything healed and restarted; the
/// ensemble must then elect a leader, commit a write, and agree everywhere.
fn run_seed(seed: u64, trace: bool) -> Stats {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let n_voters = if rng.gen_bool(0.5) { 3 } else { 5 };
    let n_observers = if rng.gen_bool(0.3) { 1 } else { 0 };
    let mut sim = Sim::new(seed, n_voters, n_observers, trace);
    for id in sim.members.clone() {
        sim.start(id);
    }
    let chaos_ms = 20_000;
    while sim.now_ms < chaos_ms {
        let next = sim.now_ms + rng.gen_range(1..60);
        sim.run_until(next);
        match rng.gen_range(0..100) {
            0..=29 => {
                sim.propose();
            }
            30..=49 => sim.write_anywhere(rng.gen()),
            50..=59 => sim.sync_anywhere(rng.gen()),
            60..=61 => {
                let id = rng.gen_range(1..=sim.members.len() as u64);
                sim.crash(id);
            }
            62..=64 => {
                let id = rng.gen_range(1..=sim.members.len() as u64);
                if sim.nodes[sim.idx(id)].peer.is_none() {
                    sim.start(id);
                }
            }
            65 => {
                // Cut a random link.
                let a = rng.gen_range(1..=sim.members.len() as u64);
                let b = rng.gen_range(1..=sim.members.len() as u64);
                if a != b {
                    sim.trace_line(format_args!("cut {a} - {b}"));
                    sim.cut.insert((a.min(b), a.max(b)));
                    sim.break_link(a, b);
                }
            }
            66 => {
                // Crash the leader, the interesting case.
                if let Some(l) = sim.leader() {
                    sim.crash(l);
                }
            }
            67..=68 => {
                sim.trace_line(format_args!("heal"));
                sim.cut.clear();
            }
            _ => {}
        }
    }
    // Heal and restart everything: the ensemble must recover.
    sim.trace_line(format_args!("heal and restart all"));
    sim.cut.clear();
    for id in sim.members.clone() {
        if sim.nodes[sim.idx(id)].peer.is_none() {
            sim.start(id);
        }
    }
    let deadline = sim.now_ms + 60_000;
    let mut final_write = None;
    while sim.now_ms < deadline {
        let t = sim.now_ms + 50;
        sim.run_until(t);
        match final_write {
            None => final_write = sim.propose(),
            Some(z) if sim.acknowledged.contains_key(&z) => break,
            Some(z) => {
                // Its leader stepped down before answering: like a client that lost its
                // connection, write again to whoever leads now.
                let epoch_now = sim.leader().and_then(|l| match sim.nodes[sim.idx(l)].role {
                    Role::Leading { epoch } => Some(epoch),
                    _ => None,
                });
                if epoch_now != Some(epoch_of(z)) {
                    final_write = sim.propose();
                }
            }
        }
    }
    let z = final_write.unwrap_or_else(|| panic!("seed {seed}: no leader after healing"));
    assert!(sim.acknowledged.contains_key(&z), "seed {seed}: the final write {z:#x} was not committed");
    // Let every member catch up, then compare.
    let t = sim.now_ms + 5_000;
    sim.run_until(t);
    let leader = sim.leader().unwrap();
    let reference = sim.nodes[sim.idx(leader)].tree.clone();
    for (z, t) in &sim.acknowledged {
        assert!(reference.contains(&(*z, t.clone())), "seed {seed}: acknowledged {z:#x} lost");
    }
    for n in &sim.nodes {
        // Contents too, not only zxids: the same zxid must hold the same transaction.
        assert!(n.tree == reference, "seed {seed}: {} differs from leader {leader}", n.id);
        assert!(matches!(n.role, Role::Leading { .. } | Role::Following { .. } | Role::Observing { .. }), "seed {seed}: {} is {:?}", n.id, n.role);
    }
    assert!(epoch_of(z) >= 1);
    sim.stats.acknowledged = sim.acknowledged.len() as u64;
    sim.stats
}

#[test]
fn seeds() {
    if let Ok(seed) = std::env::var("CORRAL_SIM_SEED") {
        run_seed(seed.parse().expect("CORRAL_SIM_SEED is a number"), true);
        return;
    }
    // ./test.sh builds with optimisations: thousands of seeds there (about 10 s); a debug
    // build, ten times slower, runs a tenth of them.
    let default = if cfg!(debug_assertions) { 300 } else { 3000 };
    let n: u64 = std::env::var("CORRAL_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(default);
    let mut total = Stats::default();
    for seed in 0..n {
        match std::panic::catch_unwind(|| run_seed(seed, false)) {
            Ok(stats) => total += stats,
            Err(_) => panic!(
                "seed {seed} failed; replay with CORRAL_SIM_SEED={seed} cargo test -p corral-zab --test simulation -- --nocapture"
            ),
        }
    }
    println!("{n} seeds: {total:?}");
    // Every path the runs are meant to cover was taken.
    assert!(total.diffs > 0 && total.truncs > 0 && total.snaps > 0, "{total:?}");
    assert!(total.leaders > n && total.crashes > n && total.acknowledged > 50 * n, "{total:?}");
    assert!(total.forwarded > 10 * n && total.syncs > 10 * n, "{total:?}");
}
