//! The client service of an ensemble member: the [`Core`] running on Zab.
//!
//! One task owns the core, the [`Peer`], the [`ReplicaStore`] and the [`Transport`], so
//! client requests and Zab's actions are ordered by a single owner. Each turn of the loop
//! handles what has arrived (client messages, quorum messages, timers), carries out the
//! peer's actions in order, and ends by appending every transaction logged in the turn.
//! One fdatasync at a time makes everything appended before it started durable (group
//! commit); when it is done the peer hears of it with [`Peer::logged`]. A busy member
//! runs it on a blocking thread without stopping the loop; an idle one runs it on the
//! loop itself, which saves the two thread hand-offs around it (`sync_turn`).
//!
//! - **Leader.** Preps writes as a standalone server does and proposes them with the zxid
//!   [`Peer::next_zxid`] announces; a write is answered when Zab's `Apply` reaches it.
//!   Writes forwarded by learners are prepped the same way, under the forwarding
//!   session's identities. It alone expires sessions and reaps containers.
//! - **Follower / observer.** Serves reads from its own tree. Forwards writes,
//!   `createSession` and `closeSession` to the leader ([`Forward`] inside Zab's REQUEST)
//!   and answers each when the transaction comes back applied, matched by session and
//!   cxid; so its clients see a write only once their own server has applied it. Reports
//!   the sessions its clients are keeping alive to the leader every half tick.
//! - **Looking.** No client is served: connections are closed and handshakes refused, so
//!   clients move to a serving member. Sessions live on in the tree and resume anywhere.
//!
//! A disk error ends the process: a member that cannot record what it promised must not
//! go on voting.

use crate::config::{Config, Ensemble};
use crate::core::{ConnId, Core, Done, Msg, Queued, Repl};
use crate::encode;
use crate::quorum::{self, Inbound, Transport};
use crate::replica::{self, ReplicaDirs, ReplicaError, ReplicaStore};
use corral_storage::DetachedSync;
use crate::ServerError;
use corral_proto::request::Request;
use corral_proto::{ErrorCode, Id, OpCode, Reader, Writer};
use corral_tree::{Caller, DataTree, Txn};
use corral_zab::message::{Message, Txn as ZabTxn};
use corral_zab::peer::{Action, Peer, Role};
use corral_zab::election::Timing;
use corral_zab::peer::Settings;
use corral_zab::{Voters, Zxid};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Committed transactions a leader keeps in memory to sync learners by DIFF (ZooKeeper's
/// committedLog holds 500); a learner further behind gets a snapshot.
pub const HISTORY_WINDOW: usize = 500;

/// Zab's settings from the ensemble configuration.
fn settings(cfg: &Config, ens: &Ensemble) -> Settings {
    Settings {
        id: ens.my_id,
        voters: Voters::new(ens.voters().map(|s| s.id)),
        members: ens.servers.iter().map(|s| s.id).collect(),
        tick_ms: cfg.tick_time_ms as u64,
        init_limit: ens.init_limit,
        sync_limit: ens.sync_limit,
        // ZooKeeper's timing, but a LOOKING member resends its vote at least every 2 s
        // rather than backing off to 60 s. A member whose first notifications went out
        // before its election links were up (and were dropped) was seen to stay LOOKING
        // for over 30 s while the others had formed a quorum; it now also sends its vote
        // on each election link as the link comes up, and this bound is the fallback.
        election: Timing { resend_max_ms: 2_000, ..Timing::default() },
        history_window: HISTORY_WINDOW,
    }
}

/// Client messages or quorum messages handled in one turn before the turn's appends are
/// synced: a bound on how long a turn holds replies back.
const TURN_MESSAGES: usize = 512;

/// The Zab side of a member, owned by its core.
pub(crate) struct Member {
    pub(crate) peer: Peer,
    store: ReplicaStore,
    transport: Transport,
    pub(crate) role: Role,
    /// Actions of the peer not yet carried out, in order.
    pub(crate) actions: VecDeque<Action>,
    /// Transactions to append at the end of the turn.
    unlogged: Vec<(Zxid, ZabTxn)>,
    /// An fdatasync of the log running on a blocking thread, and its generation: one that
    /// finishes after the log was synced inline or changed under it is not reported.
    syncing: bool,
    sync_gen: u64,
    synced_tx: mpsc::UnboundedSender<(u64, DetachedSync)>,
    synced_rx: Option<mpsc::UnboundedReceiver<(u64, DetachedSync)>>,
    /// Clients' `sync` requests waiting for Zab, by the id given to the peer.
    syncs: HashMap<u64, PendingSync>,
    next_sync: u64,
    /// Log purges the snapshot thread asks for (the log is ours to change).
    purges: std::sync::mpsc::Receiver<Zxid>,
    /// When this learner last told the leader which sessions are alive.
    last_touch_report: Instant,
    /// Transactions appended since the last sync started (for the group-commit metric).
    unsynced_txns: usize,
    /// Since when this member has been LOOKING (for `election_time`).
    looking_since: Option<Instant>,
}

enum PendingSync {
    /// A client's `sync`.
    Client { session: i64, conn: ConnId, xid: i32, path: String },
    /// A learner's handshake for a session it does not know, retried once synced.
    Connect {
        conn: ConnId,
        addr: std::net::SocketAddr,
        req: corral_proto::ConnectRequest,
        out: crate::core::OutTx,
        reply: tokio::sync::oneshot::Sender<crate::core::Handshake>,
    },
}

/// What a learner's client service asks of the leader's, inside Zab's REQUEST. Its
/// encoding is Corral's own (jute primitives): only Corral servers speak it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Forward {
    /// A client's write (or closeSession): the request body as the client sent it, and
    /// the identities of the session's connection, for ACL checks.
    Write { session: i64, cxid: i32, op: i32, ids: Vec<Id>, body: Vec<u8> },
    /// A new session, with the id the learner gave it.
    CreateSession { session: i64, timeout_ms: i32, passwd: Vec<u8> },
    /// Sessions whose clients were heard from since the last report.
    Touch { sessions: Vec<i64> },
    /// A session's client reconnected here: its writes now come from this learner
    /// (ZooKeeper's REVALIDATE sets the session's owner the same way).
    Attach { session: i64 },
}

impl Forward {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            Forward::Write { session, cxid, op, ids, body } => {
                w.i32(1).i64(*session).i32(*cxid).i32(*op);
                w.vec(ids, |w, id| id.encode(w));
                w.buffer(body);
            }
            Forward::CreateSession { session, timeout_ms, passwd } => {
                w.i32(2).i64(*session).i32(*timeout_ms).buffer(passwd);
            }
            Forward::Touch { sessions } => {
                w.i32(3).vec(sessions, |w, s| {
                    w.i64(*s);
                });
            }
            Forward::Attach { session } => {
                w.i32(4).i64(*session);
            }
        }
        w.into_inner()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Forward, corral_proto::DecodeError> {
        let mut r = Reader::new(bytes);
        let f = match r.read_i32()? {
            1 => Forward::Write {
                session: r.read_i64()?,
                cxid: r.read_i32()?,
                op: r.read_i32()?,
                ids: r.read_vec(Id::decode)?,
                body: r.read_buffer()?,
            },
            2 => Forward::CreateSession { session: r.read_i64()?, timeout_ms: r.read_i32()?, passwd: r.read_buffer()? },
            3 => Forward::Touch { sessions: r.read_vec(|r| r.read_i64())? },
            4 => Forward::Attach { session: r.read_i64()? },
            _ => return Err(corral_proto::DecodeError::Invalid("unknown forwarded request kind")),
        };
        if r.remaining() != 0 {
            return Err(corral_proto::DecodeError::Invalid("trailing bytes after a forwarded request"));
        }
        Ok(f)
    }
}

/// The rows `mntr` adds for a member, with ZooKeeper's names: `zk_quorum_size` on every
/// member; on the leader, its learners (`zk_learners`, and `zk_followers`, the same count
/// under the name ZooKeeper 3.4 used), how many are synced, and the syncs waiting.
pub(crate) fn monitor_rows(core: &Core) -> Vec<(&'static str, String)> {
    let Repl::Member(m) = &core.repl else { return Vec::new() };
    let quorum = core.cfg.ensemble.as_ref().map_or(0, |e| e.voters().count());
    let mut rows = vec![("zk_quorum_size", quorum.to_string())];
    if let (Some(s), Role::Leading { .. }) = (m.peer.leader_stats(), m.role) {
        rows.extend([
            ("zk_learners", s.learners.to_string()),
            ("zk_followers", s.learners.to_string()),
            ("zk_synced_followers", s.synced_followers.to_string()),
            ("zk_synced_non_voting_followers", "0".to_string()),
            ("zk_synced_observers", s.synced_observers.to_string()),
            ("zk_pending_syncs", s.pending_syncs.to_string()),
        ]);
    }
    rows
}

/// The AdminServer's `leader`: whether this member leads, and who does.
pub(crate) fn leader_json(core: &Core) -> serde_json::Value {
    let (Some(role), Some(ens)) = (core.zab_role(), core.cfg.ensemble.as_ref()) else {
        return serde_json::json!({ "error": "server is not initialized" });
    };
    let leader = match role {
        Role::Leading { .. } => Some(ens.my_id),
        Role::Following { leader, .. } | Role::Observing { leader, .. } => Some(leader),
        Role::Looking => None,
    };
    let ip = leader.and_then(|id| ens.servers.iter().find(|s| s.id == id)).map(|s| s.host.clone());
    serde_json::json!({ "is_leader": matches!(role, Role::Leading { .. }), "leader_id": leader, "leader_ip": ip })
}

/// The AdminServer's `voting_view`: the voting members (observers are not in it), each
/// with its addresses as ZooKeeper's `QuorumServerView` has them.
pub(crate) fn voting_view_json(core: &Core) -> serde_json::Value {
    let mut view = serde_json::Map::new();
    for s in core.cfg.ensemble.iter().flat_map(|e| e.voters()) {
        view.insert(
            s.id.to_string(),
            serde_json::json!({
                "server_addresses": [format!("{}:{}", s.host, s.quorum_port)],
                "election_addresses": [format!("{}:{}", s.host, s.election_port)],
                "client_address": client_address(s),
                "learner_type": "participant",
            }),
        );
    }
    serde_json::json!({ "current_config": view })
}

/// A member's client address as ZooKeeper prints it (`""` when its line names none).
fn client_address(s: &crate::config::ServerSpec) -> String {
    s.client.as_ref().map_or(String::new(), |c| format!("{}:{}", c.host.as_deref().unwrap_or("0.0.0.0"), c.port))
}

/// The AdminServer's `zabstate`: for a voting member, who it is, its last zxid and its
/// Zab phase; an observer only says it does not vote.
pub(crate) fn zabstate_json(core: &Core) -> serde_json::Value {
    let (Repl::Member(m), Some(ens)) = (&core.repl, core.cfg.ensemble.as_ref()) else {
        return serde_json::json!({ "voting": false, "zabstate": "" });
    };
    let Some(me) = ens.voters().find(|s| s.id == ens.my_id) else {
        return serde_json::json!({ "voting": false, "zabstate": "" });
    };
    let zxid = core.tree.last_zxid();
    serde_json::json!({
        "myid": ens.my_id,
        "is_leader": matches!(m.role, Role::Leading { .. }),
        "quorum_address": format!("{}:{}", me.host, me.quorum_port),
        "election_address": format!("{}:{}", me.host, me.election_port),
        "client_address": client_address(me),
        "voting": true,
        "last_zxid": format!("0x{zxid:x}"),
        "zab_epoch": zxid >> 32,
        "zab_counter": zxid & 0xffff_ffff,
        "zabstate": m.peer.phase(),
    })
}

/// The AdminServer's `observers`: on a leader, how many observers are synced.
pub(crate) fn observers_json(core: &Core) -> serde_json::Value {
    let synced = match &core.repl {
        Repl::Member(m) if matches!(m.role, Role::Leading { .. }) => m.peer.leader_stats().map_or(0, |s| s.synced_observers),
        _ => 0,
    };
    serde_json::json!({ "synced_observers": synced, "observers": [] })
}

/// A member ready to run: its core (with the tree recovered from disk) and the quorum
/// messages it will receive.
pub(crate) struct Started {
    pub core: Core,
    pub inbox: mpsc::UnboundedReceiver<Inbound>,
}

/// Opens the member's disk, binds its quorum and election ports and starts Zab.
pub(crate) async fn start(cfg: Arc<Config>) -> Result<Started, ServerError> {
    let ens = cfg.ensemble.clone().expect("start() is for an ensemble");
    let dirs =
        ReplicaDirs { data: cfg.data_dir.clone(), log: crate::log_dir(&cfg), snapshots: crate::snapshot_dir(&cfg) };
    let started = Instant::now();
    let (store, tree, disk, tail) = ReplicaStore::open(dirs, HISTORY_WINDOW).map_err(ServerError::Replica)?;
    crate::durable::release_free_memory();
    crate::metrics::metrics().db_init_time.observe(crate::metrics::ms(started.elapsed()));
    tracing::info!(
        id = ens.my_id,
        zxid = format_args!("{:#x}", disk.last_zxid),
        accepted_epoch = disk.accepted_epoch,
        current_epoch = disk.current_epoch,
        nodes = tree.node_count(),
        sessions = tree.sessions().len(),
        ms = started.elapsed().as_millis() as u64,
        "ensemble member recovered from disk"
    );
    let me = ens.me();
    let bind = |port: u16| {
        let host = me.host.clone();
        async move {
            let addr = format!("{host}:{port}");
            quorum::bind(&host, port).await.map_err(|source| ServerError::Peer { addr, source })
        }
    };
    let (election, quorum_l) = (bind(me.election_port).await?, bind(me.quorum_port).await?);
    let (transport, inbox) = Transport::start(ens.my_id, quorum::member_addrs(&ens), election, quorum_l);
    let (peer, actions) = Peer::new(settings(&cfg, &ens), disk, tail, now_ms());
    let (purge_tx, purges) = std::sync::mpsc::channel();
    let snapshotter = crate::durable::spawn_snapshotter(
        crate::durable::SnapshotSettings {
            snap_dir: crate::snapshot_dir(&cfg),
            log_dir: crate::log_dir(&cfg),
            retain: cfg.snap_retain_count as usize,
            purge_interval_hours: cfg.purge_interval_hours,
        },
        move |z| {
            let _ = purge_tx.send(z);
        },
    );
    let (synced_tx, synced_rx) = mpsc::unbounded_channel();
    let member = Member {
        peer,
        store,
        transport,
        role: Role::Looking,
        looking_since: Some(Instant::now()),
        actions: actions.into(),
        unlogged: Vec::new(),
        syncing: false,
        sync_gen: 0,
        synced_tx,
        synced_rx: Some(synced_rx),
        syncs: HashMap::new(),
        next_sync: 1,
        purges,
        last_touch_report: Instant::now(),
        unsynced_txns: 0,
    };
    let core = Core::with_repl(cfg.clone(), Repl::Member(Box::new(member)), tree, ens.my_id as i64)
        .with_snapshots(snapshotter);
    Ok(Started { core, inbox })
}

fn now_ms() -> u64 {
    crate::core::now_ms().max(0) as u64
}

/// The member cannot go on: its disk failed, or the leader sent what it cannot apply.
fn fatal(e: ReplicaError) -> ! {
    tracing::error!(error = %e, "stopping: this member cannot keep its promises to the ensemble");
    eprintln!("corral: stopping: {e}");
    std::process::exit(3)
}

impl Core {
    fn member(&mut self) -> Option<&mut Member> {
        match &mut self.repl {
            Repl::Member(m) => Some(m),
            Repl::Standalone { .. } => None,
        }
    }

    /// The Zab role, for a member.
    pub(crate) fn zab_role(&self) -> Option<Role> {
        match &self.repl {
            Repl::Member(m) => Some(m.role),
            Repl::Standalone { .. } => None,
        }
    }

    /// Whether clients are served: always standalone; for a member, once it leads or
    /// follows an established leader.
    pub(crate) fn serving(&self) -> bool {
        !matches!(self.zab_role(), Some(Role::Looking))
    }

    /// Whether this server decides the order of writes (standalone, or the leader).
    pub(crate) fn orders_writes(&self) -> bool {
        matches!(self.zab_role(), None | Some(Role::Leading { .. }))
    }

    /// Whether writes go to a leader elsewhere.
    pub(crate) fn is_learner(&self) -> bool {
        matches!(self.zab_role(), Some(Role::Following { .. } | Role::Observing { .. }))
    }

    /// The mode 4lw reports: `standalone`, `leader`, `follower`, `observer`, or
    /// `looking` between leaders.
    pub(crate) fn mode_name(&self) -> &'static str {
        match self.zab_role() {
            None => "standalone",
            Some(Role::Leading { .. }) => "leader",
            Some(Role::Following { .. }) => "follower",
            Some(Role::Observing { .. }) => "observer",
            Some(Role::Looking) => "looking",
        }
    }

    /// Hands Zab a message for the leader, or (not serving any more) closes `conn` so its
    /// client tries elsewhere. Returns whether it went.
    fn forward(&mut self, f: Forward, conn: Option<ConnId>) -> bool {
        let m = self.member().expect("forwarding is for members");
        match m.peer.forward(f.encode().into()) {
            Ok(actions) => {
                m.actions.extend(actions);
                true
            }
            Err(_) => {
                if let Some(conn) = conn {
                    self.close_conn(conn, true);
                }
                false
            }
        }
    }

    /// A learner's client wrote: the leader preps and orders it; the answer goes out when
    /// the transaction comes back applied.
    pub(crate) fn forward_write(&mut self, session: i64, q: Queued) {
        let Queued { conn, xid, op, req, raw, received } = q;
        let Some(s) = self.sessions.get(&session) else {
            self.release(conn);
            return;
        };
        let ids = s.ids.as_ref().clone();
        let f = Forward::Write { session, cxid: xid, op, ids, body: raw.to_vec() };
        if !self.forward(f, Some(conn)) {
            self.release(conn);
            return;
        }
        let done = if op == OpCode::CloseSession as i32 {
            // As standalone: the connection takes no more requests; the session ends when
            // the close is applied.
            if let Some(c) = self.conns.get_mut(&conn) {
                c.session = None;
            }
            Done::Close { conn, xid }
        } else {
            Done::Reply { conn, xid, req: req.ok(), received }
        };
        let s = self.sessions.get_mut(&session).expect("looked up above");
        if matches!(done, Done::Close { .. }) {
            s.closing = true;
        } else {
            s.pending_writes += 1;
        }
        s.forwarded.push_back((xid, done));
    }

    /// A new session on a learner: created by the leader, answered once applied here.
    pub(crate) fn forward_create_session(&mut self, session: i64, timeout_ms: i32, passwd: Vec<u8>, done: Done) {
        if self.forward(Forward::CreateSession { session, timeout_ms, passwd }, None) {
            if let Some(s) = self.sessions.get_mut(&session) {
                s.forwarded.push_back((0, done));
                return;
            }
        }
        self.sessions.remove(&session);
        self.fail(done);
    }

    /// Asks Zab for a sync; `pending` is done once everything the leader committed before
    /// now is applied here. Gives `pending` back if this member is not serving.
    fn start_sync(&mut self, pending: PendingSync) -> Result<(), PendingSync> {
        let m = self.member().expect("syncs are for members");
        let id = m.next_sync;
        match m.peer.sync(id) {
            Ok(actions) => {
                m.next_sync += 1;
                m.actions.extend(actions);
                m.syncs.insert(id, pending);
                Ok(())
            }
            Err(_) => Err(pending),
        }
    }

    /// A client's `sync` on a member: answered once everything the leader committed
    /// before it is applied here. The session's later requests wait for it.
    pub(crate) fn ensemble_sync(&mut self, session: i64, conn: ConnId, xid: i32, path: String) {
        match self.start_sync(PendingSync::Client { session, conn, xid, path }) {
            Ok(()) => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.syncing += 1;
                }
            }
            Err(_) => {
                self.release(conn);
                self.close_conn(conn, true);
            }
        }
    }

    fn on_synced(&mut self, id: u64) {
        match self.member().and_then(|m| m.syncs.remove(&id)) {
            None => {}
            Some(PendingSync::Client { session, conn, xid, path }) => {
                let frame = encode::reply(xid, self.tree.last_zxid(), ErrorCode::Ok, |w| {
                    w.string(&path);
                });
                self.send(conn, frame);
                self.release(conn);
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.syncing = s.syncing.saturating_sub(1);
                }
                self.drain(session);
            }
            Some(PendingSync::Connect { conn, addr, req, out, reply }) => {
                self.connect(conn, addr, req, out, reply, true);
            }
        }
    }

    /// (Learner) a handshake for a session not applied here yet: answered once everything
    /// the leader had committed is.
    pub(crate) fn sync_then_connect(
        &mut self,
        conn: ConnId,
        addr: std::net::SocketAddr,
        req: corral_proto::ConnectRequest,
        out: crate::core::OutTx,
        reply: tokio::sync::oneshot::Sender<crate::core::Handshake>,
    ) {
        if let Err(PendingSync::Connect { reply, .. }) =
            self.start_sync(PendingSync::Connect { conn, addr, req, out, reply })
        {
            let _ = reply.send(crate::core::Handshake::Refused(None));
        }
    }

    /// A session's client is now connected here. A learner tells the leader; the leader
    /// notes itself as the session's owner.
    pub(crate) fn session_attached(&mut self, session: i64) {
        match self.zab_role() {
            Some(Role::Leading { .. }) => {
                let me = self.member().expect("member").peer.id();
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.owner = Some(me);
                }
            }
            Some(Role::Following { .. } | Role::Observing { .. }) => {
                self.forward(Forward::Attach { session }, None);
            }
            _ => {}
        }
    }

    /// (Leader) whether a session's client has moved to another member: writes from its
    /// old connection here are refused with SessionMoved.
    pub(crate) fn moved_away(&mut self, session: i64) -> bool {
        let Some(Role::Leading { .. }) = self.zab_role() else { return false };
        let me = self.member().expect("member").peer.id();
        self.sessions.get(&session).and_then(|s| s.owner).is_some_and(|o| o != me)
    }

    /// (Leader) a learner's client service asked for something.
    fn on_forwarded(&mut self, from: u64, body: &[u8]) {
        let f = match Forward::decode(body) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(from, error = %e, "a forwarded request does not decode; ignored");
                return;
            }
        };
        let now = Instant::now();
        match f {
            Forward::Touch { sessions } => {
                for id in sessions {
                    if let Some(s) = self.sessions.get_mut(&id) {
                        s.expires_at = s.expires_at.max(now + Duration::from_millis(s.timeout_ms.max(0) as u64));
                    }
                }
            }
            Forward::Attach { session } => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.owner = Some(from);
                    // A connection of it here is stale now.
                    if let Some(conn) = s.conn {
                        self.close_conn(conn, true);
                    }
                }
            }
            Forward::CreateSession { session, timeout_ms, passwd } => {
                // In the table now, so the session's first requests find it.
                self.sessions
                    .entry(session)
                    .or_insert_with(|| crate::core::Session::new(passwd.clone(), timeout_ms, None, Arc::default()))
                    .owner = Some(from);
                self.propose(session, 0, Txn::CreateSession { timeout_ms, passwd }, Done::Nothing);
            }
            Forward::Write { session, cxid, op, ids, body } => {
                let known = self.sessions.get_mut(&session).filter(|s| !s.closing);
                let Some(s) = known else {
                    // ZooKeeper's leader answers a request of a session it does not know
                    // with an error transaction, so the learner's client hears of it.
                    self.propose(session, cxid, Txn::Error(ErrorCode::SessionExpired), Done::Nothing);
                    return;
                };
                if s.owner.is_some_and(|o| o != from) {
                    // Sent before the client moved to another member, which now owns it.
                    self.propose(session, cxid, Txn::Error(ErrorCode::SessionMoved), Done::Nothing);
                    return;
                }
                s.owner = Some(from);
                s.expires_at = s.expires_at.max(now + Duration::from_millis(s.timeout_ms.max(0) as u64));
                if op == OpCode::CloseSession as i32 {
                    s.closing = true;
                    self.propose_close(session, cxid, Done::Nothing);
                    return;
                }
                let (txn, changes) = match Request::decode(op, &mut Reader::new(&body)) {
                    Ok(req) => self.prep_write(&Caller { session, ids: Arc::new(ids) }, &req),
                    Err(_) => (Txn::Error(ErrorCode::MarshallingError), None),
                };
                if let (Some(zxid), Some(changes)) = (self.propose(session, cxid, txn, Done::Nothing), changes) {
                    self.outstanding.record(zxid, changes);
                }
            }
        }
    }

    /// (Learner) tells the leader which sessions are alive here: those whose connection
    /// was heard from since the last report. The leader counts their timeout from the
    /// report, so a dead client's session ends at most a report interval late.
    fn report_sessions(&mut self) {
        let now = Instant::now();
        let since = std::mem::replace(&mut self.member().expect("member").last_touch_report, now);
        // `last_heard` has millisecond steps: a little overlap rather than a gap.
        let since = since.checked_sub(Duration::from_millis(2)).unwrap_or(since);
        let alive: Vec<i64> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.conn.and_then(|c| self.conns.get(&c)).is_some_and(|c| c.shared.last_heard() >= since))
            .map(|(id, _)| *id)
            .collect();
        if !alive.is_empty() {
            self.forward(Forward::Touch { sessions: alive }, None);
        }
    }

    /// Stops serving clients: every connection is closed (its client moves to another
    /// member), and what was proposed or forwarded is forgotten. Sessions stay in the
    /// tree and resume on any serving member.
    fn leave_service(&mut self) {
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            self.close_conn(conn, true);
        }
        for p in std::mem::take(&mut self.proposed) {
            self.fail(p.into_parts().2);
        }
        self.outstanding = corral_tree::Outstanding::default();
        let mut dones = Vec::new();
        for s in self.sessions.values_mut() {
            dones.extend(s.forwarded.drain(..).map(|(_, d)| d));
            s.reset();
        }
        for d in dones {
            self.fail(d);
        }
        if let Some(m) = self.member() {
            m.syncs.clear();
        }
    }

    /// Serves a tree rebuilt from disk or received from the leader.
    fn replace_tree(&mut self, tree: DataTree) {
        self.abandon_snapshot();
        self.tree = tree;
        self.sessions = crate::core::sessions_of(&self.tree);
        crate::durable::release_free_memory();
    }

    /// Applies a transaction Zab committed: ours (the leader's, with its reply waiting),
    /// or one from the leader (perhaps a write a client of ours forwarded).
    fn apply_committed(&mut self, zxid: Zxid, bytes: &[u8]) {
        if self.proposed.front().is_some_and(|p| p.zxid() == zxid) {
            crate::metrics::metrics().commits.inc();
            let p = self.proposed.pop_front().expect("checked");
            let (hdr, txn, done) = p.into_parts();
            self.apply_one(hdr, txn, done);
            return;
        }
        let (hdr, txn) = replica::decode_committed(zxid, bytes).unwrap_or_else(|e| fatal(e));
        let done = match self.sessions.get_mut(&hdr.session) {
            Some(s) if s.forwarded.front().is_some_and(|(cxid, _)| *cxid == hdr.cxid) => {
                s.forwarded.pop_front().map(|(_, d)| d).expect("checked")
            }
            _ => Done::Nothing,
        };
        self.apply_one(hdr, txn, done);
    }

    /// Carries out the peer's actions in order, then appends what the turn logged (the
    /// loop then syncs it, `sync_turn`; the peer hears of it when the sync is done).
    fn run_actions(&mut self) {
        while let Some(a) = self.member().and_then(|m| m.actions.pop_front()) {
            self.execute(a);
        }
        self.append_turn();
        let m = self.member().expect("member");
        while let Ok(z) = m.purges.try_recv() {
            match m.store.purge_through(z) {
                Ok(()) => tracing::debug!(zxid = format_args!("{z:#x}"), "purged log segments"),
                Err(e) => tracing::warn!(error = %e, "purging old log segments failed"),
            }
        }
        // A snapshot holds only what is committed and durable here: never a tree rebuilt
        // from a log with an uncommitted tail (between leaders).
        if !matches!(m.role, Role::Looking) {
            let through = m.store.synced_zxid().min(m.peer.committed());
            self.maybe_snapshot(through);
        }
    }

    /// Writes the turn's transactions to the log (the loop syncs them: `sync_turn`).
    fn append_turn(&mut self) {
        let m = self.member().expect("member");
        if !m.unlogged.is_empty() {
            let txns = std::mem::take(&mut m.unlogged);
            m.store.append_unsynced(&txns).unwrap_or_else(|e| fatal(e));
            m.unsynced_txns += txns.len();
        }
    }

    /// Whether the log holds appends that no sync covers, and none is running.
    fn needs_sync(&mut self) -> bool {
        let m = self.member().expect("member");
        !m.syncing && m.store.synced_zxid() < m.store.last_zxid()
    }

    /// Ends a turn by starting the sync of what it appended, if none is running (group
    /// commit: one fdatasync covers everything appended before it started).
    ///
    /// - With nothing waiting for the loop (an idle member: one client, one request at a
    ///   time), the loop first yields, so that the tasks the turn woke (the writers of
    ///   its proposals, acks and replies) put their bytes on the wire, and then, if still
    ///   nothing waits, syncs right here and carries out what the peer does once it hears
    ///   of it (a follower's ACK, a leader's COMMIT and replies). That saves the two
    ///   thread hand-offs of a detached sync (to the blocking thread and back to this
    ///   task), 20-35 µs each on a small VM, on the critical path of every write.
    /// - Otherwise (a busy member) one fdatasync at a time runs on a blocking thread while
    ///   the loop goes on (reading, proposing, appending the next turns); the next sync
    ///   covers all of those.
    ///
    /// Either way the peer hears "durable through Z" only after the fdatasync covering Z
    /// returned, and in increasing order: a sync starts only while none is running.
    async fn sync_turn(&mut self, rx: &mpsc::Receiver<Msg>, inbox: &mpsc::UnboundedReceiver<Inbound>) {
        if !self.needs_sync() {
            return;
        }
        if rx.is_empty() && inbox.is_empty() {
            tokio::task::yield_now().await;
            if rx.is_empty() && inbox.is_empty() && self.needs_sync() {
                self.flush_log(true);
                self.run_actions();
            }
        }
        if self.needs_sync() {
            self.start_detached_sync();
        }
    }

    /// Starts one fdatasync on a blocking thread for everything written so far. While it
    /// runs the loop goes on; [`Core::on_synced_log`] reports it.
    fn start_detached_sync(&mut self) {
        let m = self.member().expect("member");
        let Some(sync) = m.store.detached_sync().unwrap_or_else(|e| fatal(e)) else { return };
        m.syncing = true;
        let (gen, tx) = (m.sync_gen, m.synced_tx.clone());
        let txns = std::mem::take(&mut m.unsynced_txns);
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            sync.run().unwrap_or_else(|e| fatal(e.into()));
            crate::metrics::metrics().fsynced(started.elapsed(), txns);
            let _ = tx.send((gen, sync));
        });
    }

    /// A detached sync finished: the log is durable through its zxid, unless the log was
    /// synced inline or changed since it started.
    fn on_synced_log(&mut self, gen: u64, sync: DetachedSync) {
        let m = self.member().expect("member");
        if gen != m.sync_gen {
            return;
        }
        m.syncing = false;
        m.store.synced_by(&sync);
        let more = m.peer.logged(sync.zxid());
        m.actions.extend(more);
    }

    /// Appends and syncs what is not durable yet, inline, and (`report`) tells the peer:
    /// an idle member's sync (`sync_turn`), and the flushes before an epoch change,
    /// `Truncate`, `InstallSnapshot` or `Recover`. Before a `Truncate`, `InstallSnapshot` or `Recover` the peer is not told: its
    /// contract discards reports of appends from before those. A detached sync still
    /// running will not be reported.
    fn flush_log(&mut self, report: bool) {
        self.append_turn();
        let m = self.member().expect("member");
        if m.store.synced_zxid() == m.store.last_zxid() && !m.syncing {
            return;
        }
        m.sync_gen += 1;
        m.syncing = false;
        let txns = std::mem::take(&mut m.unsynced_txns);
        let started = Instant::now();
        let through = m.store.sync().unwrap_or_else(|e| fatal(e));
        crate::metrics::metrics().fsynced(started.elapsed(), txns);
        if report {
            let more = m.peer.logged(through);
            m.actions.extend(more);
        }
    }

    fn execute(&mut self, a: Action) {
        // Whatever changes the disk or the tree comes after the turn's appends.
        match a {
            Action::Send { .. } | Action::Append(_) | Action::Apply(_) | Action::Forwarded { .. } | Action::Synced { .. } => {}
            Action::Truncate(_) | Action::InstallSnapshot { .. } | Action::Recover => {
                self.flush_log(false);
            }
            _ => {
                self.flush_log(true);
            }
        }
        let m = self.member().expect("member");
        match a {
            Action::Send { to, msg } => {
                match &msg {
                    Message::Diff { .. } => {
                        crate::metrics::metrics().diffs.inc();
                        tracing::info!(to, "syncing a learner by DIFF")
                    }
                    Message::Trunc { zxid } => tracing::info!(to, zxid = format_args!("{zxid:#x}"), "syncing a learner by TRUNC"),
                    _ => {}
                }
                m.transport.send(to, msg);
            }
            Action::PersistAcceptedEpoch(e) => m.store.persist_accepted(e).unwrap_or_else(|e| fatal(e)),
            Action::PersistCurrentEpoch(e) => m.store.persist_current(e).unwrap_or_else(|e| fatal(e)),
            Action::BeginEpochUpdate => m.store.begin_epoch_update().unwrap_or_else(|e| fatal(e)),
            Action::Append(txns) => m.unlogged.extend(txns),
            Action::Truncate(z) => {
                let tree = m.store.truncate(z).unwrap_or_else(|e| fatal(e));
                self.replace_tree(tree);
            }
            Action::InstallSnapshot { zxid, snapshot } => {
                tracing::info!(zxid = format_args!("{zxid:#x}"), bytes = snapshot.len(), "installing the leader's snapshot");
                let tree = m.store.install_snapshot(zxid, &snapshot).unwrap_or_else(|e| fatal(e));
                self.replace_tree(tree);
            }
            Action::SendSnapshot { to } => {
                let zxid = self.tree.last_zxid();
                crate::metrics::metrics().snaps.inc();
                tracing::info!(to, zxid = format_args!("{zxid:#x}"), "syncing a learner by SNAP");
                let snapshot = replica::snapshot_bytes(&self.tree).into();
                self.member().expect("member").transport.send(to, Message::Snap { zxid, snapshot });
            }
            Action::Apply(txns) => {
                for (zxid, bytes) in txns {
                    self.apply_committed(zxid, &bytes);
                }
            }
            Action::Role(r) => {
                m.role = r;
                let metrics = crate::metrics::metrics();
                if matches!(r, Role::Looking) {
                    metrics.looking.inc();
                    m.looking_since.get_or_insert_with(Instant::now);
                } else if let Some(since) = m.looking_since.take() {
                    metrics.election_time.observe(crate::metrics::ms(since.elapsed()));
                }
                match r {
                    Role::Looking => {
                        tracing::info!("looking for a leader; clients are refused until one is established");
                        self.leave_service();
                    }
                    Role::Leading { epoch } => {
                        tracing::info!(epoch, "leading");
                        // Sessions get a full timeout from now: their clients may have
                        // been cut off by the election.
                        let now = Instant::now();
                        for s in self.sessions.values_mut() {
                            s.expires_at = now + Duration::from_millis(s.timeout_ms.max(0) as u64);
                        }
                    }
                    Role::Following { leader, epoch } => tracing::info!(leader, epoch, "following"),
                    Role::Observing { leader, epoch } => tracing::info!(leader, epoch, "observing"),
                }
            }
            Action::Recover => {
                tracing::info!(why = m.peer.left_because(), "left the role; rebuilding from disk");
                self.leave_service();
                let m = self.member().expect("member");
                let (tree, disk, tail) = m.store.recover().unwrap_or_else(|e| fatal(e));
                tracing::info!(zxid = format_args!("{:#x}", disk.last_zxid), "rebuilt from disk");
                let more = m.peer.recovered(disk, tail, now_ms());
                m.actions.extend(more);
                self.replace_tree(tree);
            }
            Action::Forwarded { from, body } => self.on_forwarded(from, &body),
            Action::Synced { id } => self.on_synced(id),
            Action::Disconnect { peer } => m.transport.close(peer),
        }
    }

    /// Runs a member until every client-side sender is gone.
    pub(crate) async fn run_member(mut self, mut rx: mpsc::Receiver<Msg>, mut inbox: mpsc::UnboundedReceiver<Inbound>) {
        let tick = Duration::from_millis((self.cfg.tick_time_ms as u64 / 2).clamp(10, 1000));
        let mut half_tick = tokio::time::interval(tick);
        half_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut containers = tokio::time::interval(Duration::from_millis(self.cfg.container_check_interval_ms.max(1)));
        containers.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut synced_rx = self.member().and_then(|m| m.synced_rx.take()).expect("run once");
        let snapshots = self.snapshot_queue();
        self.run_actions();
        self.sync_turn(&rx, &inbox).await;
        loop {
            let wake = self.member().and_then(|m| m.peer.next_wakeup_ms());
            let wake_in = wake.map_or(1000, |w| w.saturating_sub(now_ms()).min(1000));
            tokio::select! {
                Some((gen, sync)) = synced_rx.recv() => self.on_synced_log(gen, sync),
                room = snapshots.reserve(), if self.snapshot_wants_room() => match room {
                    Ok(room) => self.snapshot_step(room),
                    Err(_) => self.snapshot_thread_gone(),
                },
                m = inbox.recv() => match m {
                    Some(m) => {
                        self.on_inbound(m);
                        for _ in 0..TURN_MESSAGES {
                            match inbox.try_recv() {
                                Ok(m) => self.on_inbound(m),
                                Err(_) => break,
                            }
                        }
                    }
                    None => return,
                },
                msg = rx.recv() => match msg {
                    Some(m) => {
                        self.handle(m);
                        for _ in 0..TURN_MESSAGES {
                            match rx.try_recv() {
                                Ok(m) => self.handle(m),
                                Err(_) => break,
                            }
                        }
                    }
                    None => return,
                },
                _ = tokio::time::sleep(Duration::from_millis(wake_in.max(1))) => {
                    let m = self.member().expect("member");
                    let more = m.peer.tick(now_ms());
                    m.actions.extend(more);
                }
                _ = half_tick.tick() => {
                    if self.is_learner() {
                        self.report_sessions();
                    }
                    self.expire_sessions(Instant::now());
                }
                _ = containers.tick() => self.reap_containers(),
            }
            // Under a steady stream of messages the sleep above may never win the race:
            // Zab's timers (the leader's pings among them) must run anyway.
            let m = self.member().expect("member");
            if m.peer.next_wakeup_ms().is_some_and(|w| w <= now_ms()) {
                let more = m.peer.tick(now_ms());
                m.actions.extend(more);
            }
            self.run_actions();
            self.sync_turn(&rx, &inbox).await;
            self.finish_stopping_when_idle();
        }
    }

    fn on_inbound(&mut self, m: Inbound) {
        let member = self.member().expect("member");
        let more = match m {
            Inbound::Message { from, msg } => member.peer.on_message(from, msg, now_ms()),
            Inbound::Disconnected { peer } => member.peer.disconnected(peer),
            Inbound::ElectionUp { peer } => member.peer.election_link_up(peer, now_ms()),
        };
        member.actions.extend(more);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_requests_round_trip_and_garbage_is_refused() {
        let all = [
            Forward::Write {
                session: 0x0300_0000_0000_0001,
                cxid: 7,
                op: OpCode::Create as i32,
                ids: vec![Id::new("ip", "127.0.0.1"), Id::new("digest", "u:h")],
                body: vec![1, 2, 3],
            },
            Forward::CreateSession { session: -5, timeout_ms: 30_000, passwd: vec![9; 16] },
            Forward::Touch { sessions: vec![1, 2, 3] },
            Forward::Touch { sessions: vec![] },
            Forward::Attach { session: 42 },
        ];
        for f in all {
            let bytes = f.encode();
            assert_eq!(Forward::decode(&bytes).unwrap(), f);
            assert!(Forward::decode(&bytes[..bytes.len() - 1]).is_err());
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(Forward::decode(&longer).is_err());
        }
        assert!(Forward::decode(&[0, 0, 0, 9]).is_err());
        assert!(Forward::decode(&[]).is_err());
    }
}
