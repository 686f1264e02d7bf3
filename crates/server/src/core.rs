//! The core: one task that owns the tree and the sessions and handles every request in
//! arrival order.
//!
//! Connection tasks decode frames and send [`Msg`]s here; the core checks, applies and
//! answers them by pushing encoded frames onto each connection's outbound queue. Because
//! one task applies every change and a session's frames go through one FIFO queue, a
//! client sees the watch events of a change before the reply that shows it, and replies
//! in request order. This mirrors ZooKeeper's single-threaded final request processor.
//!
//! Writes are a pipeline: prep (against the tree plus outstanding changes), a zxid, the
//! encoded entry to a [`TxnLog`], and — once the log reports the entry durable — apply,
//! events and the reply. Reads from a session with writes in the pipeline wait behind
//! them, so each session sees its replies in request order; other sessions' reads are
//! answered from the applied tree at once.

use crate::config::Config;
use crate::durable::SnapshotMsg;
use crate::conn::Shared;
use crate::encode;
use crate::fourlw;
use corral_proto::request::Request;
use corral_proto::{
    ClientInfo, ConnectRequest, ConnectResponse, DecodeError, ErrorCode, Id, KeeperState, OpCode, Writer,

};
use corral_tree::{acl, encode_entry, read, Caller, Changes, DataTree, Outstanding, Prep, Settings, Txn, TxnHeader, TxnResult, WatchEvent};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

pub type ConnId = u64;

/// Slots encoded per slice of a snapshot, between turns of the loop (about 0.1 ms of
/// work; a million-node tree takes a few hundred slices).
const SNAPSHOT_SLICE_SLOTS: u32 = 2048;
const SNAPSHOT_SLICE_BYTES: usize = 256 * 1024;

/// What the core sends a connection's writer.
#[derive(Debug)]
pub enum Out {
    Frame(Vec<u8>),
    /// Flush what is queued, then close the connection.
    Close,
}

pub type OutTx = mpsc::UnboundedSender<Out>;

/// Where transactions go to become durable. `submit` must not block; the log reports
/// durability, in zxid order, on the channel it was built with ("durable through zxid").
pub trait TxnLog: Send {
    fn submit(&mut self, zxid: i64, entry: Vec<u8>);
}

/// A request waiting for the session's earlier writes.
pub(crate) struct Queued {
    pub conn: ConnId,
    pub xid: i32,
    pub op: i32,
    pub req: Result<Request, DecodeError>,
    /// The request's body as it arrived, for an ensemble learner to forward a write.
    pub raw: bytes::Bytes,
    /// When it arrived: its latency runs from here to its answer.
    pub received: Instant,
}

/// What to do once a proposed transaction is applied.
pub(crate) enum Done {
    Nothing,
    /// Answer a client's write, which arrived at `received`; `req` shapes the body.
    Reply { conn: ConnId, xid: i32, req: Option<Request>, received: Instant },
    /// Finish a new session's handshake.
    Connect { conn: ConnId, reply: oneshot::Sender<Handshake>, frame: Vec<u8> },
    /// Answer closeSession, then close the connection.
    Close { conn: ConnId, xid: i32 },
}

/// A transaction between prep and apply.
pub(crate) struct Proposed {
    hdr: TxnHeader,
    txn: Txn,
    done: Done,
}

impl Proposed {
    pub(crate) fn zxid(&self) -> i64 {
        self.hdr.zxid
    }

    pub(crate) fn into_parts(self) -> (TxnHeader, Txn, Done) {
        (self.hdr, self.txn, self.done)
    }
}

/// How transactions become durable and ordered.
pub(crate) enum Repl {
    /// Standalone: our own log; zxids are ours to give.
    Standalone { log: Box<dyn TxnLog>, last_proposed: i64 },
    /// An ensemble member: Zab orders and commits them (see `crate::ensemble`).
    Member(Box<crate::ensemble::Member>),
}

/// The core's answer to a handshake.
pub enum Handshake {
    /// Write this ConnectResponse and serve the session.
    Accepted(Vec<u8>),
    /// Write this answer, if any, and close.
    Refused(Option<Vec<u8>>),
}

/// A client that lets this much pile up unread (it stopped reading while watches fire,
/// say) is disconnected rather than allowed to exhaust the server's memory.
pub const MAX_QUEUED_BYTES: usize = 64 << 20;

/// Messages from connection tasks to the core.
pub enum Msg {
    /// A handshake.
    Connect {
        conn: ConnId,
        addr: SocketAddr,
        req: ConnectRequest,
        out: OutTx,
        reply: oneshot::Sender<Handshake>,
    },
    /// A request after the handshake; a body that did not decode is answered with
    /// MarshallingError, as ZooKeeper does.
    Request { conn: ConnId, xid: i32, op: i32, req: Result<Request, DecodeError>, raw: bytes::Bytes },
    /// The connection is gone (EOF, error, or closed by us).
    Closed { conn: ConnId },
    /// A four-letter word, answered with its text.
    FourLetter { cmd: String, reply: oneshot::Sender<String> },
    /// An AdminServer command (HTTP) with its query argument (`set_trace_mask`'s
    /// `traceMask`); the answer is its JSON.
    Admin { cmd: String, arg: Option<String>, reply: oneshot::Sender<serde_json::Value> },
    /// `/ready`: whether this server takes new sessions and writes now (it serves, it is
    /// not stopping, its log works).
    Ready { reply: oneshot::Sender<bool> },
    /// `/metrics`: the `mntr` answer and the task queues' depths.
    Metrics { reply: oneshot::Sender<(String, Vec<crate::metrics::QueueDepth>)> },
    /// Stop: answer what is in flight, then close every connection (sessions live on, and
    /// their clients move to another server), then reply.
    Shutdown { reply: oneshot::Sender<()> },
    /// A new TCP connection was accepted.
    Opened { conn: ConnId, addr: SocketAddr, shared: Arc<Shared> },
}

pub(crate) struct Session {
    pub passwd: Vec<u8>,
    pub timeout_ms: i32,
    pub conn: Option<ConnId>,
    /// Identities of the session's current connection: its address, then what it proved
    /// with auth packets. Like ZooKeeper's, they belong to the connection; a client
    /// re-sends its auth after reconnecting.
    pub ids: Arc<Vec<Id>>,
    /// When the session expires unless its connection is heard from again.
    pub expires_at: Instant,
    /// Writes of this session proposed and not yet applied.
    pub(crate) pending_writes: usize,
    /// Its `sync`s waiting for Zab (ensemble members): everything after one waits, writes
    /// too, so that replies go out in request order.
    pub(crate) syncing: usize,
    /// Requests that must wait for those writes (reads, and anything after them).
    queue: VecDeque<Queued>,
    /// Its closeSession is proposed: it takes no more requests and cannot be resumed,
    /// but its watches still hear of the changes applied before the close.
    pub(crate) closing: bool,
    /// On an ensemble learner: what to do when each write this session forwarded to the
    /// leader comes back applied, by cxid, in the order they were forwarded.
    pub(crate) forwarded: VecDeque<(i32, Done)>,
    /// On an ensemble leader: the member whose connection serves the session, the only
    /// one whose writes for it are taken (ZooKeeper's session owner); `None` until known.
    pub(crate) owner: Option<u64>,
}

impl Session {
    pub(crate) fn new(passwd: Vec<u8>, timeout_ms: i32, conn: Option<ConnId>, ids: Arc<Vec<Id>>) -> Session {
        Session {
            passwd,
            timeout_ms,
            conn,
            ids,
            expires_at: Instant::now() + Duration::from_millis(timeout_ms.max(0) as u64),
            pending_writes: 0,
            syncing: 0,
            queue: VecDeque::new(),
            closing: false,
            forwarded: VecDeque::new(),
            owner: None,
        }
    }

    /// Forgets what the session's connection had in flight (it is being closed).
    pub(crate) fn reset(&mut self) {
        self.pending_writes = 0;
        self.syncing = 0;
        self.queue.clear();
        self.forwarded.clear();
        self.closing = false;
    }
}

/// Per-connection figures reported by `cons` / `stat`.
#[derive(Default, Clone)]
pub(crate) struct ConnStats {
    pub received: u64,
    pub sent: u64,
    pub last_op: &'static str,
    pub last_cxid: i32,
    pub last_zxid: i64,
    pub established_ms: i64,
    pub latency: Latency,
}

#[derive(Default, Clone, Copy)]
pub(crate) struct Latency {
    pub min_ms: u64,
    pub max_ms: u64,
    pub total_ms: u64,
    pub count: u64,
    pub last_ms: u64,
}

impl Latency {
    pub fn record(&mut self, ms: u64) {
        if self.count == 0 || ms < self.min_ms {
            self.min_ms = ms;
        }
        self.max_ms = self.max_ms.max(ms);
        self.last_ms = ms;
        self.total_ms += ms;
        self.count += 1;
    }
    pub fn avg(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.total_ms as f64 / self.count as f64
        }
    }
}

pub(crate) struct Conn {
    pub addr: SocketAddr,
    /// The session this connection serves; `None` before the handshake and once the
    /// connection is being closed (its later requests are dropped).
    pub session: Option<i64>,
    pub out: Option<OutTx>,
    pub shared: Arc<Shared>,
    pub stats: ConnStats,
}

pub struct Core {
    pub(crate) cfg: Arc<Config>,
    pub(crate) tree: DataTree,
    /// Where transactions go: a log of our own, or the ensemble.
    pub(crate) repl: Repl,
    /// Changes of proposed, unapplied transactions, for prep to see.
    pub(crate) outstanding: Outstanding,
    /// Proposed transactions in zxid order.
    pub(crate) proposed: VecDeque<Proposed>,
    /// Where snapshots are streamed, and after how many more applied transactions the
    /// next begins.
    snapshots: Option<mpsc::Sender<SnapshotMsg>>,
    until_snapshot: u64,
    /// The zxid of a snapshot whose body is all sent, until it is durable in the log and
    /// the snapshot thread told to finish.
    snapshot_sent: Option<i64>,
    /// A snapshot was abandoned while the thread's queue was full: the word is still to go.
    abandon_unsent: bool,
    /// How far our log is durable (with applied transactions), as last heard.
    durable_through: i64,
    /// The log stopped taking writes: writes are refused, reads go on.
    log_failed: bool,
    pub(crate) sessions: HashMap<i64, Session>,
    pub(crate) conns: HashMap<ConnId, Conn>,
    pub(crate) next_session: i64,
    pub(crate) started: Instant,
    pub(crate) packets_received: u64,
    pub(crate) packets_sent: u64,
    pub(crate) latency: Latency,
    pub(crate) auth_failed: u64,
    /// The trace mask `gtmk` reports and `stmk` sets (ZooKeeper's default, 306; Corral
    /// traces through `RUST_LOG`, so it changes nothing else).
    pub(crate) trace_mask: i64,
    /// The last digest `hash` computed: when, of which zxid, and its value.
    digest_cache: Option<(Instant, i64, i64)>,
    /// Set by [`Msg::Shutdown`]: told once the requests in flight are answered and the
    /// connections closed; the flag says the connections were told to close.
    stopping: Option<(oneshot::Sender<()>, bool)>,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The server id in the top byte of a standalone server's session ids (ZooKeeper's
/// standalone server uses 0; we use 1 so that ids never collide with the container / TTL
/// owner markers). An ensemble member uses its `myid`.
const SERVER_ID: i64 = 1;

/// The first session id a server hands out: ZooKeeper's scheme (the time in the middle
/// bits, the server id in the top byte), and past every id of ours already in the tree, so
/// ids stay unique across restarts and servers.
pub(crate) fn first_session_id(server_id: i64, tree: &DataTree) -> i64 {
    let top = server_id << 56;
    let fresh = (((now_ms() << 24) as u64) >> 8) as i64 | top;
    let mask = 0xffi64 << 56;
    tree.sessions().keys().filter(|id| *id & mask == top).map(|id| id + 1).fold(fresh, i64::max)
}

impl Core {
    pub fn new(cfg: Arc<Config>, log: Box<dyn TxnLog>) -> Core {
        Core::recovered(cfg, log, DataTree::new())
    }

    /// A core serving a tree recovered from disk. Its sessions come back without a
    /// connection and expire after their timeout unless their clients reconnect.
    pub fn recovered(cfg: Arc<Config>, log: Box<dyn TxnLog>, tree: DataTree) -> Core {
        Core::with_repl(cfg, Repl::Standalone { log, last_proposed: 0 }, tree, SERVER_ID)
    }

    pub(crate) fn with_repl(cfg: Arc<Config>, repl: Repl, tree: DataTree, server_id: i64) -> Core {
        let next_session = first_session_id(server_id, &tree);
        let sessions = sessions_of(&tree);
        Core {
            cfg,
            tree,
            repl,
            outstanding: Outstanding::default(),
            proposed: VecDeque::new(),
            snapshots: None,
            until_snapshot: u64::MAX,
            snapshot_sent: None,
            abandon_unsent: false,
            durable_through: 0,
            log_failed: false,
            sessions,
            conns: HashMap::new(),
            next_session,
            started: Instant::now(),
            packets_received: 0,
            packets_sent: 0,
            latency: Latency::default(),
            auth_failed: 0,
            stopping: None,
            trace_mask: 306,
            digest_cache: None,
        }
    }

    /// Takes a snapshot through `to` every so many transactions (zoo.cfg `snapCount`).
    pub fn with_snapshots(mut self, to: mpsc::Sender<SnapshotMsg>) -> Core {
        self.snapshots = Some(to);
        self.until_snapshot = self.next_snapshot_gap();
        self
    }

    /// ZooKeeper's spacing: a random point between half and all of snapCount, so that
    /// the members of an ensemble do not all snapshot at once.
    fn next_snapshot_gap(&self) -> u64 {
        let n = self.cfg.snap_count.max(2) as u64;
        n / 2 + rand::random::<u64>() % (n / 2).max(1)
    }

    /// Runs until every sender is gone.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Msg>, mut durable: mpsc::UnboundedReceiver<i64>) {
        let tick = Duration::from_millis((self.cfg.tick_time_ms as u64 / 2).clamp(10, 1000));
        let mut expiry = tokio::time::interval(tick);
        expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut containers =
            tokio::time::interval(Duration::from_millis(self.cfg.container_check_interval_ms.max(1)));
        containers.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let snapshots = self.snapshot_queue();
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(m) => self.handle(m),
                    None => return,
                },
                room = snapshots.reserve(), if self.snapshot_wants_room() => match room {
                    Ok(room) => self.snapshot_step(room),
                    Err(_) => self.snapshot_thread_gone(),
                },
                zxid = durable.recv(), if !self.log_failed => match zxid {
                    Some(zxid) => self.on_durable(zxid),
                    // The writer thread stopped: the disk failed (it said why).
                    None => self.on_log_failed(),
                },
                _ = expiry.tick() => self.expire_sessions(Instant::now()),
                _ = containers.tick() => self.reap_containers(),
            }
            self.finish_stopping_when_idle();
        }
    }

    /// Once stopping and nothing is in flight (no write waiting for the log or the leader,
    /// no request queued behind one), closes every connection after what it has queued,
    /// and once they are all gone says it is done.
    pub(crate) fn finish_stopping_when_idle(&mut self) {
        let Some((_, closing)) = &self.stopping else { return };
        if !*closing {
            let busy = !self.proposed.is_empty() && !self.log_failed
                || self.sessions.values().any(|s| {
                    s.pending_writes > 0 || !s.queue.is_empty() || s.syncing > 0 || !s.forwarded.is_empty()
                });
            if busy {
                return;
            }
            let conns: Vec<(ConnId, bool)> = self.conns.iter().map(|(id, c)| (*id, c.out.is_some())).collect();
            for (c, handshaken) in conns {
                // Flush what a session's connection has queued; cut one that never
                // finished its handshake.
                self.close_conn(c, handshaken);
            }
            if let Some((_, closing)) = &mut self.stopping {
                *closing = true;
            }
        }
        if self.conns.is_empty() {
            if let Some((done, _)) = self.stopping.take() {
                let _ = done.send(());
            }
        }
    }

    pub fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Opened { conn, addr, shared } => {
                let stats = ConnStats { established_ms: now_ms(), last_op: "NA", last_cxid: -1, last_zxid: -1, ..Default::default() };
                crate::metrics::metrics().connections.inc();
                self.conns.insert(conn, Conn { addr, session: None, out: None, shared, stats });
            }
            Msg::Connect { conn, addr, req, out, reply } => self.connect(conn, addr, req, out, reply, false),
            Msg::Request { conn, xid, op, req, raw } => self.request(conn, xid, op, req, raw),
            Msg::Closed { conn } => self.closed(conn),
            Msg::FourLetter { cmd, reply } => {
                let _ = reply.send(fourlw::answer(self, &cmd));
            }
            Msg::Admin { cmd, arg, reply } => {
                let _ = reply.send(crate::admin::answer(self, &cmd, arg.as_deref()));
            }
            Msg::Ready { reply } => {
                let _ = reply.send(self.serving() && self.stopping.is_none() && !self.log_failed);
            }
            Msg::Metrics { reply } => {
                let mntr = fourlw::monitor_text(self);
                let _ = reply.send((mntr, crate::metrics::queue_depths(&self.tree)));
            }
            Msg::Shutdown { reply } => {
                tracing::info!("shutting down: answering the requests in flight, then closing every connection");
                self.stopping = Some((reply, false));
            }
        }
    }

    /// Gives a prepped transaction the next zxid and sends it to the log (standalone) or
    /// proposes it to the ensemble (leader); `done` runs once it is committed and applied.
    /// `None` when it cannot be proposed (a leader whose epoch is ending): `done` is
    /// failed, so its client sees connection loss.
    pub(crate) fn propose(&mut self, session: i64, cxid: i32, txn: Txn, done: Done) -> Option<i64> {
        let time_ms = now_ms();
        let hdr = match &mut self.repl {
            Repl::Standalone { log, last_proposed } => {
                *last_proposed = (*last_proposed).max(self.tree.last_zxid()) + 1;
                let hdr = TxnHeader { session, cxid, zxid: *last_proposed, time_ms };
                log.submit(hdr.zxid, encode_entry(&hdr, &txn));
                hdr
            }
            Repl::Member(m) => {
                let proposed = m.peer.next_zxid().and_then(|zxid| {
                    let hdr = TxnHeader { session, cxid, zxid, time_ms };
                    let (z, actions) = m.peer.propose(encode_entry(&hdr, &txn).into()).ok()?;
                    assert_eq!(z, zxid, "the zxid the peer announced");
                    crate::metrics::metrics().proposals.inc();
                    m.actions.extend(actions);
                    Some(hdr)
                });
                let Some(hdr) = proposed else {
                    self.fail(done);
                    return None;
                };
                hdr
            }
        };
        self.proposed.push_back(Proposed { hdr, txn, done });
        Some(hdr.zxid)
    }

    /// Applies, in order, every proposed transaction the log has made durable.
    fn on_durable(&mut self, through: i64) {
        while self.proposed.front().is_some_and(|p| p.hdr.zxid <= through) {
            let Proposed { hdr, txn, done } = self.proposed.pop_front().expect("checked");
            self.apply_one(hdr, txn, done);
        }
        self.maybe_snapshot(through);
    }

    /// Applies one committed transaction: the tree, watch events, the sessions it starts
    /// or ends, then whatever waits for it.
    pub(crate) fn apply_one(&mut self, hdr: TxnHeader, txn: Txn, done: Done) {
        let created = match &txn {
            Txn::CreateSession { timeout_ms, passwd } => Some((*timeout_ms, passwd.clone())),
            _ => None,
        };
        let closed = matches!(txn, Txn::CloseSession);
        let mut events = Vec::new();
        let result = self.tree.apply(&hdr, txn, &mut events);
        self.outstanding.applied(hdr.zxid);
        self.deliver(&events);
        if let Some((timeout_ms, passwd)) = created {
            // A session another member created (ours are in the table already).
            self.sessions.entry(hdr.session).or_insert_with(|| Session::new(passwd, timeout_ms, None, Arc::default()));
        }
        self.finish(hdr, result, done);
        if closed {
            // Ended elsewhere (expired by the leader, or closed through another member):
            // its connection here, if any, goes too.
            if let Some(conn) = self.sessions.get(&hdr.session).and_then(|s| s.conn) {
                self.close_conn(conn, true);
            }
            if self.sessions.remove(&hdr.session).is_some() {
                self.tree.watches.remove_session(hdr.session);
            }
        }
        self.until_snapshot = self.until_snapshot.saturating_sub(1);
    }

    /// Fails what waited for a transaction that will never be applied here: the client
    /// sees connection loss (the honest answer for a write whose fate it cannot know).
    pub(crate) fn fail(&mut self, done: Done) {
        match done {
            Done::Nothing => {}
            Done::Connect { reply, .. } => {
                let _ = reply.send(Handshake::Refused(None));
            }
            Done::Reply { conn, .. } | Done::Close { conn, .. } => self.close_conn(conn, true),
        }
    }

    /// Begins a snapshot of the live tree once enough transactions were applied since the
    /// last (if none is under way), and notes how far the log is durable (`durable_through`:
    /// applied transactions up to there are in our log), which a snapshot must wait for
    /// before it is made final.
    pub(crate) fn maybe_snapshot(&mut self, durable_through: i64) {
        self.durable_through = durable_through;
        if self.until_snapshot != 0 {
            return;
        }
        self.until_snapshot = self.next_snapshot_gap();
        let Some(to) = &self.snapshots else { return };
        if self.tree.snapshot_in_progress().is_some() || self.snapshot_sent.is_some() {
            tracing::info!("the last snapshot is not written yet; skipping this one");
            return;
        }
        let (zxid, header) = self.tree.begin_snapshot();
        if let Err(e) = to.try_send(SnapshotMsg::Begin { zxid, header }) {
            self.tree.abandon_snapshot();
            match e {
                mpsc::error::TrySendError::Full(_) => tracing::warn!("the snapshot thread is busy; skipping this snapshot"),
                mpsc::error::TrySendError::Closed(_) => self.snapshot_thread_gone(),
            }
        } else {
            // A Begin drops whatever the thread was writing.
            self.abandon_unsent = false;
        }
    }

    /// Whether the snapshot under way has something to send: a slice, or the word to
    /// finish. The loop then waits for room on the snapshot thread's queue and calls
    /// [`Core::snapshot_step`].
    pub(crate) fn snapshot_wants_room(&self) -> bool {
        self.abandon_unsent
            || self.tree.snapshot_in_progress().is_some()
            || self.snapshot_sent.is_some_and(|z| z <= self.durable_through)
    }

    /// Requests read from clients and not answered yet (mntr's `zk_outstanding_requests`).
    pub(crate) fn outstanding_requests(&self) -> usize {
        self.conns.values().map(|c| c.shared.outstanding()).sum()
    }

    /// The tree's digest and its zxid for `hash`. Computing it walks the whole tree on
    /// this loop (about a second for a million znodes), so it is done at most once a
    /// minute, or when nothing changed since; in between the last one is answered with
    /// its zxid, as ZooKeeper answers from its log of past digests.
    pub(crate) fn digest(&mut self) -> (i64, i64) {
        let zxid = self.tree.last_zxid();
        match self.digest_cache {
            Some((at, z, d)) if z == zxid || at.elapsed() < Duration::from_secs(60) => (z, d),
            _ => {
                let d = self.tree.digest() as i64;
                self.digest_cache = Some((Instant::now(), zxid, d));
                (zxid, d)
            }
        }
    }

    /// Sends the next slice of the snapshot under way, or, once it is all sent and its
    /// zxid durable in the log, tells the snapshot thread to finish the file.
    pub(crate) fn snapshot_step(&mut self, room: mpsc::Permit<'_, SnapshotMsg>) {
        if std::mem::take(&mut self.abandon_unsent) {
            room.send(SnapshotMsg::Abandon);
        } else if let Some(zxid) = self.tree.snapshot_in_progress() {
            let mut chunk = Vec::with_capacity(SNAPSHOT_SLICE_BYTES);
            if self.tree.continue_snapshot(SNAPSHOT_SLICE_SLOTS, SNAPSHOT_SLICE_BYTES, &mut chunk) {
                self.snapshot_sent = Some(zxid);
            }
            room.send(SnapshotMsg::Chunk(chunk));
        } else if self.snapshot_sent.is_some_and(|z| z <= self.durable_through) {
            self.snapshot_sent = None;
            room.send(SnapshotMsg::Finish);
        }
    }

    /// Drops the snapshot under way (the tree it was of is being replaced).
    pub(crate) fn abandon_snapshot(&mut self) {
        if self.tree.snapshot_in_progress().is_some() || self.snapshot_sent.is_some() {
            self.tree.abandon_snapshot();
            self.snapshot_sent = None;
            // If the queue is full, the word goes as soon as there is room (the thread
            // must not hold a partial file until the next snapshot begins).
            if let Some(to) = &self.snapshots {
                self.abandon_unsent = to.try_send(SnapshotMsg::Abandon).is_err();
            }
        }
    }

    /// The snapshot thread is gone (it cannot have stopped on its own but by a bug): no
    /// more snapshots; the log keeps everything.
    pub(crate) fn snapshot_thread_gone(&mut self) {
        tracing::error!("the snapshot thread stopped; no more snapshots are taken (the log keeps everything)");
        self.tree.abandon_snapshot();
        self.snapshot_sent = None;
        self.abandon_unsent = false;
        self.snapshots = None;
    }

    /// The sender the loop waits on for room. Without snapshots it is a closed one, never
    /// waited on: `snapshot_wants_room` does not hold then.
    pub(crate) fn snapshot_queue(&self) -> mpsc::Sender<SnapshotMsg> {
        self.snapshots.clone().unwrap_or_else(|| mpsc::channel(1).0)
    }

    /// The log can take no more writes. What was proposed will never be acknowledged:
    /// the connections waiting for it are closed (their clients see connection loss, the
    /// honest answer for a write whose fate they cannot know), new sessions are refused,
    /// and from now on every write closes its connection. Reads and pings go on; sessions
    /// stop expiring, since their end could not be recorded.
    fn on_log_failed(&mut self) {
        tracing::error!("writes are refused from now on; reads go on. Fix the disk and restart the server.");
        self.log_failed = true;
        for p in std::mem::take(&mut self.proposed) {
            self.fail(p.done);
        }
        self.outstanding = Outstanding::default();
        for s in self.sessions.values_mut() {
            s.pending_writes = 0;
        }
        let waiting: Vec<i64> = self.sessions.keys().copied().collect();
        for id in waiting {
            self.drain(id);
        }
    }

    /// Gives back a connection's permit for one request in flight.
    pub(crate) fn release(&self, conn: ConnId) {
        if let Some(c) = self.conns.get(&conn) {
            c.shared.in_flight.add_permits(1);
        }
    }

    fn finish(&mut self, hdr: TxnHeader, result: TxnResult, done: Done) {
        match done {
            Done::Nothing => {}
            Done::Connect { conn, reply, frame } => {
                let accepted = self.conns.get(&conn).is_some_and(|c| c.session == Some(hdr.session));
                let _ = reply.send(if accepted { Handshake::Accepted(frame) } else { Handshake::Refused(None) });
            }
            Done::Close { conn, xid } => {
                if let TxnResult::Error(e) = result {
                    // Refused by an ensemble's leader (the session moved on): it lives on.
                    self.send(conn, encode::error(xid, hdr.zxid, e));
                    self.release(conn);
                    self.close_conn(conn, true);
                    if let Some(s) = self.sessions.get_mut(&hdr.session) {
                        s.closing = false;
                    }
                    return;
                }
                // The session ends here, after the events of everything applied before.
                self.tree.watches.remove_session(hdr.session);
                self.sessions.remove(&hdr.session);
                self.send(conn, encode::error(xid, hdr.zxid, ErrorCode::Ok));
                self.release(conn);
                self.close_conn(conn, true);
            }
            Done::Reply { conn, xid, req, received } => {
                self.record_latency(conn, received, true);
                let frame = match (&result, &req) {
                    (TxnResult::Error(e), _) => encode::error(xid, hdr.zxid, *e),
                    (r, Some(req)) => encode::reply(xid, hdr.zxid, ErrorCode::Ok, |w| encode::write_body(w, req, r)),
                    (_, None) => encode::error(xid, hdr.zxid, ErrorCode::Ok),
                };
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.stats.last_zxid = hdr.zxid;
                }
                self.send(conn, frame);
                self.release(conn);
                if let Some(s) = self.sessions.get_mut(&hdr.session) {
                    s.pending_writes -= 1;
                }
                self.drain(hdr.session);
            }
        }
    }

    /// Runs a session's waiting requests that no longer have to wait.
    pub(crate) fn drain(&mut self, session: i64) {
        loop {
            let Some(s) = self.sessions.get_mut(&session) else { return };
            let Some(front) = s.queue.front() else { return };
            if s.syncing > 0 || (s.pending_writes > 0 && !is_write(front.op, &front.req)) {
                return;
            }
            let q = s.queue.pop_front().expect("checked");
            self.process(session, q);
        }
    }

    fn deliver(&mut self, events: &[WatchEvent]) {
        for ev in events {
            let frame = encode::notification(ev.event_type as i32, KeeperState::SyncConnected as i32, &ev.path);
            self.send_to_session(ev.session, frame);
        }
    }

    fn send_to_session(&mut self, session: i64, frame: Vec<u8>) {
        if let Some(conn) = self.sessions.get(&session).and_then(|s| s.conn) {
            self.send(conn, frame);
        }
    }

    pub(crate) fn send(&mut self, conn: ConnId, frame: Vec<u8>) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let Some(out) = &c.out else { return };
        c.stats.sent += 1;
        self.packets_sent += 1;
        let queued = c.shared.queued_bytes.fetch_add(frame.len(), Ordering::Relaxed) + frame.len();
        let _ = out.send(Out::Frame(frame));
        if queued > MAX_QUEUED_BYTES {
            tracing::warn!(client = %c.addr, queued, "client is not reading its replies; dropping the connection");
            self.close_conn(conn, false);
        }
    }

    /// Closes a connection: after what is queued (`flush`), or at once. Either way the
    /// connection stops serving its session now, so requests it already sent are dropped.
    pub(crate) fn close_conn(&mut self, conn: ConnId, flush: bool) {
        self.detach(conn);
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if let Some(out) = c.out.take() {
            if flush {
                let _ = out.send(Out::Close);
            }
        }
        if !flush {
            c.shared.kill.notify_one();
        }
    }

    /// Separates a connection from its session. Watches belong to the connection, so they
    /// go; the client re-registers them with setWatches when it reconnects.
    fn detach(&mut self, conn: ConnId) {
        let Some(id) = self.conns.get_mut(&conn).and_then(|c| c.session.take()) else { return };
        if let Some(s) = self.sessions.get_mut(&id) {
            if s.conn == Some(conn) {
                s.conn = None;
                // What the connection sent and is still waiting is dropped with it.
                s.queue.clear();
                self.tree.watches.remove_session(id);
            }
        }
    }

    /// A handshake. `revalidated`: an ensemble learner has synced with the leader since
    /// it arrived, so a session it does not know is truly gone.
    pub(crate) fn connect(
        &mut self,
        conn: ConnId,
        addr: SocketAddr,
        req: ConnectRequest,
        out: OutTx,
        reply: oneshot::Sender<Handshake>,
        revalidated: bool,
    ) {
        if !self.serving() || self.stopping.is_some() {
            // An ensemble member between leaders, or a server on its way out: the client
            // tries another server.
            let _ = reply.send(Handshake::Refused(None));
            return;
        }
        let resumed = req.session_id;
        if resumed != 0 && !revalidated && self.is_learner() && !self.sessions.contains_key(&resumed) {
            // Perhaps created or resumed elsewhere and not applied here yet: ask again
            // once everything the leader committed is.
            self.sync_then_connect(conn, addr, req, out, reply);
            return;
        }
        match self.handshake(conn, addr, req, out) {
            Ok(answer) => {
                if resumed != 0 && matches!(answer, Handshake::Accepted(_)) {
                    self.session_attached(resumed);
                }
                let _ = reply.send(answer);
            }
            // The log takes no writes, so no session can be created: the client goes
            // elsewhere.
            Err((id, ..)) if self.log_failed => {
                self.sessions.remove(&id);
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.session = None;
                }
                let _ = reply.send(Handshake::Refused(None));
            }
            // A new session: answered once its creation is committed and applied.
            Err((id, timeout_ms, passwd, frame)) => {
                let done = Done::Connect { conn, reply, frame };
                if self.is_learner() {
                    self.forward_create_session(id, timeout_ms, passwd, done);
                } else {
                    self.session_attached(id);
                    self.propose(id, 0, Txn::CreateSession { timeout_ms, passwd }, done);
                }
            }
        }
    }

    /// Answers a handshake at once, or (`Err`) describes a new session still to create.
    #[allow(clippy::type_complexity)]
    fn handshake(
        &mut self,
        conn: ConnId,
        addr: SocketAddr,
        req: ConnectRequest,
        out: OutTx,
    ) -> Result<Handshake, (i64, i32, Vec<u8>, Vec<u8>)> {
        self.packets_received += 1;
        if req.last_zxid_seen > self.tree.last_zxid() {
            // The client has seen a newer history than ours; it must go elsewhere.
            tracing::warn!(
                client = %addr,
                client_zxid = format_args!("{:#x}", req.last_zxid_seen),
                our_zxid = format_args!("{:#x}", self.tree.last_zxid()),
                "refusing connection from a client that has seen a newer zxid"
            );
            return Ok(Handshake::Refused(None));
        }
        let timeout_ms = self.cfg.negotiate_timeout(req.timeout_ms);
        let read_only = req.read_only.map(|_| false);
        let expired = ConnectResponse { protocol_version: 0, timeout_ms: 0, session_id: 0, passwd: vec![0; 16], read_only };
        let session_id = if req.session_id != 0 {
            let Some(s) = self.sessions.get(&req.session_id) else {
                return Ok(Handshake::Refused(Some(frame_of(&expired))));
            };
            if s.passwd != req.passwd || s.closing {
                return Ok(Handshake::Refused(Some(frame_of(&expired))));
            }
            // A reconnect: the session moves to this connection; the old one is closed.
            if let Some(old) = s.conn {
                self.close_conn(old, true);
            }
            let s = self.sessions.get_mut(&req.session_id).expect("looked up above");
            s.conn = Some(conn);
            s.timeout_ms = timeout_ms;
            s.expires_at = Instant::now() + Duration::from_millis(timeout_ms as u64);
            s.ids = Arc::new(vec![Id::new("ip", &addr.ip().to_string())]);
            req.session_id
        } else {
            let id = self.next_session;
            self.next_session += 1;
            let passwd: Vec<u8> = (0..16).map(|_| rand::random::<u8>()).collect();
            let ids = Arc::new(vec![Id::new("ip", &addr.ip().to_string())]);
            self.sessions.insert(id, Session::new(passwd, timeout_ms, Some(conn), ids));
            id
        };
        let is_new = req.session_id == 0;
        let s = &self.sessions[&session_id];
        let resp = ConnectResponse {
            protocol_version: 0,
            timeout_ms,
            session_id,
            passwd: s.passwd.clone(),
            read_only,
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.session = Some(session_id);
            c.out = Some(out);
            c.stats.sent += 1;
        }
        self.packets_sent += 1;
        if is_new {
            return Err((session_id, timeout_ms, resp.passwd.clone(), frame_of(&resp)));
        }
        Ok(Handshake::Accepted(frame_of(&resp)))
    }

    fn closed(&mut self, conn: ConnId) {
        self.detach(conn);
        self.conns.remove(&conn);
    }

    pub(crate) fn expire_sessions(&mut self, now: Instant) {
        // Only the server that orders writes ends sessions: an ensemble's leader.
        if self.log_failed || !self.orders_writes() {
            return;
        }
        let conns = &self.conns;
        let expired: Vec<i64> = self
            .sessions
            .iter_mut()
            .filter_map(|(id, s)| {
                // A session lives while its connection is heard from, whether or not the
                // core has handled what arrived yet.
                if let Some(c) = s.conn.and_then(|c| conns.get(&c)) {
                    let heard = c.shared.last_heard() + Duration::from_millis(s.timeout_ms as u64);
                    s.expires_at = s.expires_at.max(heard);
                }
                (s.expires_at <= now && !s.closing).then_some(*id)
            })
            .collect();
        for id in expired {
            tracing::info!(session = format_args!("{id:#x}"), "session expired");
            self.end_session(id);
        }
    }

    /// Closes a session: one transaction removes its ephemeral nodes; its connection, if
    /// any, is closed after what is queued for it.
    fn end_session(&mut self, id: i64) {
        if let Some(conn) = self.sessions.get(&id).and_then(|s| s.conn) {
            self.close_conn(conn, true);
        }
        self.sessions.remove(&id);
        self.propose_close(id, 0, Done::Nothing);
    }

    pub(crate) fn reap_containers(&mut self) {
        if self.log_failed || !self.orders_writes() {
            return;
        }
        let caller = Caller { session: 0, ids: Arc::new(vec![Id::new("super", "")]) };
        for p in self.tree.expired_containers(now_ms()) {
            let mut prep = Prep::with_outstanding(&self.tree, &caller, self.settings(), &self.outstanding);
            if let Some(txn) = prep.delete_container(&p) {
                let changes = prep.into_changes();
                tracing::debug!(path = %p, "deleting empty container or expired TTL node");
                if let Some(zxid) = self.propose(0, 0, txn, Done::Nothing) {
                    self.outstanding.record(zxid, changes);
                }
            }
        }
    }

    fn settings(&self) -> Settings {
        Settings { extended_types: self.cfg.extended_types_enabled }
    }

    fn request(&mut self, conn: ConnId, xid: i32, op: i32, req: Result<Request, DecodeError>, raw: bytes::Bytes) {
        self.packets_received += 1;
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let Some(session) = c.session else {
            // The connection no longer serves a session: the request is dropped.
            c.shared.in_flight.add_permits(1);
            return;
        };
        c.stats.received += 1;
        c.stats.last_op = OpCode::from_i32(op).map(OpCode::short_name).unwrap_or("UNKN");
        if xid >= 0 {
            c.stats.last_cxid = xid;
        }
        let Some(s) = self.sessions.get_mut(&session) else {
            self.release(conn);
            return;
        };
        let received = Instant::now();
        s.expires_at = received + Duration::from_millis(s.timeout_ms as u64);
        if matches!(req, Ok(Request::Ping)) {
            // Pings carry no order: answered at once, with the ping xid whatever the
            // client used.
            let frame = encode::error(corral_proto::XID_PING, self.tree.last_zxid(), ErrorCode::Ok);
            self.send(conn, frame);
            self.release(conn);
            return;
        }
        let q = Queued { conn, xid, op, req, raw, received };
        // A read waits for the session's writes in flight; anything waits behind what
        // already waits. A write with nothing waiting enters the pipeline at once.
        if !s.queue.is_empty() || s.syncing > 0 || (s.pending_writes > 0 && !is_write(op, &q.req)) {
            s.queue.push_back(q);
            return;
        }
        self.process(session, q);
    }

    /// Handles one request whose turn has come. Its permit goes back when it is answered:
    /// here for a read, once applied for a write.
    fn process(&mut self, session: i64, q: Queued) {
        if self.is_learner() && is_write(q.op, &q.req) {
            // The leader preps and orders it; the reply goes out when it comes back.
            self.forward_write(session, q);
            return;
        }
        let Queued { conn, xid, op, req, raw: _, received } = q;
        let write = is_write(op, &req);
        if self.log_failed && write {
            // No write can be recorded: the client sees connection loss.
            self.release(conn);
            self.close_conn(conn, true);
            return;
        }
        if is_write(op, &req) && self.moved_away(session) {
            // A stale connection of a session that moved to another member.
            self.propose_write(session, conn, xid, Txn::Error(ErrorCode::SessionMoved), None, received);
            return;
        }
        let Some(s) = self.sessions.get(&session) else {
            self.release(conn);
            return;
        };
        let caller = Caller { session, ids: s.ids.clone() };
        let last = self.tree.last_zxid();
        let answer = match req {
            Err(DecodeError::UnknownOp(op)) => {
                // ZooKeeper answers an opcode it does not know with Unimplemented, then
                // closes the connection.
                tracing::debug!(op, "unknown opcode; closing the connection");
                Some((encode::error(xid, -1, ErrorCode::Unimplemented), true))
            }
            Err(e) => {
                tracing::debug!(%e, op, "undecodable request body");
                let err = ErrorCode::MarshallingError;
                if is_txn_op(op) {
                    // ZooKeeper turns a write it cannot decode into an error transaction,
                    // which takes a zxid like any other.
                    self.propose_write(session, conn, xid, Txn::Error(err), None, received);
                    None
                } else {
                    Some((encode::error(xid, last, err), false))
                }
            }
            Ok(req) => self.dispatch(&caller, conn, xid, req, received),
        };
        if let Some((frame, close)) = answer {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.stats.last_zxid = i64::from_be_bytes(frame[8..16].try_into().expect("reply header"));
            }
            self.send(conn, frame);
            self.record_latency(conn, received, write);
            self.release(conn);
            if close {
                self.close_conn(conn, true);
            }
        }
    }

    /// A request that arrived at `received` is answered now: mntr's latencies, the
    /// connection's, and the `readlatency` or `updatelatency` summary.
    fn record_latency(&mut self, conn: ConnId, received: Instant, write: bool) {
        let elapsed = received.elapsed();
        let ms = elapsed.as_millis() as u64;
        self.latency.record(ms);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.stats.latency.record(ms);
        }
        let m = crate::metrics::metrics();
        let summary = if write { &m.update_latency } else { &m.read_latency };
        summary.observe(elapsed.as_secs_f64() * 1000.0);
    }

    /// Proposes the end of a session; later preps see its ephemerals as deleted.
    pub(crate) fn propose_close(&mut self, session: i64, xid: i32, done: Done) {
        let caller = Caller { session, ids: Arc::new(Vec::new()) };
        let mut prep = Prep::with_outstanding(&self.tree, &caller, self.settings(), &self.outstanding);
        let txn = prep.close_session(session);
        let changes = prep.into_changes();
        if let Some(zxid) = self.propose(session, xid, txn, done) {
            self.outstanding.record(zxid, changes);
        }
    }

    /// Proposes a client's write; its reply goes out once it is applied.
    fn propose_write(
        &mut self,
        session: i64,
        conn: ConnId,
        xid: i32,
        txn: Txn,
        req: Option<Request>,
        received: Instant,
    ) -> Option<i64> {
        let zxid = self.propose(session, xid, txn, Done::Reply { conn, xid, req, received })?;
        if let Some(s) = self.sessions.get_mut(&session) {
            s.pending_writes += 1;
        }
        Some(zxid)
    }

    /// Checks a write against the tree and the writes before it: the transaction, and the
    /// changes later preps must see (`None` for a refused write, an error transaction).
    pub(crate) fn prep_write(&self, caller: &Caller, req: &Request) -> (Txn, Option<Changes>) {
        let mut prep = Prep::with_outstanding(&self.tree, caller, self.settings(), &self.outstanding);
        let r = match req {
            Request::Create { op, req } => prep.create(*op, req).map(Txn::Create),
            Request::Delete { path, version } => prep.delete(path, *version),
            Request::SetData { path, data, version } => prep.set_data(path, data.as_deref(), *version),
            Request::SetAcl { path, acl, version } => prep.set_acl(path, acl, *version),
            Request::Check { path, version } => prep.check(path, *version),
            Request::Multi(ops) => Ok(prep.multi(ops)),
            Request::Reconfig => {
                // A write in ZooKeeper's pipeline: the refusal is an error transaction.
                Err(if self.cfg.reconfig_enabled { ErrorCode::Unimplemented } else { ErrorCode::ReconfigDisabled })
            }
            _ => unreachable!("prep_write of a read"),
        };
        match r {
            Ok(txn) => (txn, Some(prep.into_changes())),
            Err(e) => (Txn::Error(e), None),
        }
    }

    /// Answers one decoded request: the reply frame and whether to close afterwards, or
    /// `None` for a write, answered once it is applied.
    fn dispatch(&mut self, caller: &Caller, conn: ConnId, xid: i32, req: Request, received: Instant) -> Option<(Vec<u8>, bool)> {
        let last = self.tree.last_zxid();
        let session = caller.session;
        let ok = ErrorCode::Ok;
        Some(match &req {
            Request::Ping => (encode::error(corral_proto::XID_PING, last, ok), false),
            Request::Auth { scheme, auth, .. } => {
                match acl::authenticate(scheme, auth, self.cfg.super_digest.as_deref()) {
                    Ok(ids) => {
                        if let Some(s) = self.sessions.get_mut(&session) {
                            let mine = Arc::make_mut(&mut s.ids);
                            for id in ids {
                                if !mine.contains(&id) {
                                    mine.push(id);
                                }
                            }
                        }
                        (encode::error(xid, 0, ok), false)
                    }
                    Err(e) => {
                        self.auth_failed += 1;
                        (encode::error(xid, 0, e), true)
                    }
                }
            }
            Request::SetWatches(sw) => {
                let mut events = Vec::new();
                read::set_watches(&mut self.tree, caller, sw, &mut events);
                self.deliver(&events);
                (encode::error(xid, last, ok), false)
            }
            Request::CloseSession => {
                // The connection takes no more requests; the session itself ends when the
                // close is applied, so events of earlier writes still reach it.
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.session = None;
                }
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.closing = true;
                }
                self.propose_close(session, xid, Done::Close { conn, xid });
                return None;
            }
            Request::Create { .. }
            | Request::Delete { .. }
            | Request::SetData { .. }
            | Request::SetAcl { .. }
            | Request::Check { .. }
            | Request::Multi(_) => {
                let (txn, changes) = self.prep_write(caller, &req);
                let zxid = self.propose_write(session, conn, xid, txn, Some(req), received);
                if let (Some(zxid), Some(changes)) = (zxid, changes) {
                    self.outstanding.record(zxid, changes);
                }
                return None;
            }
            Request::Exists { path, watch } => {
                let r = read::exists(&mut self.tree, caller, root_alias(path), *watch);
                (answer(xid, last, r, |w, s| s.encode(w)), false)
            }
            Request::GetData { path, watch } => {
                let r = read::get_data(&mut self.tree, caller, root_alias(path), *watch);
                (answer(xid, last, r, |w, (d, s)| {
                    w.data(d.as_deref());
                    s.encode(w);
                }), false)
            }
            Request::GetChildren { path, watch, with_stat } => {
                let r = read::get_children(&mut self.tree, caller, root_alias(path), *watch);
                (answer(xid, last, r, |w, (ch, s)| {
                    w.string_vec(&ch);
                    if *with_stat {
                        s.encode(w);
                    }
                }), false)
            }
            Request::GetAcl { path } => {
                let r = read::get_acl(&self.tree, caller, root_alias(path));
                (answer(xid, last, r, |w, (a, s)| encode::acl_and_stat(w, &a, &s)), false)
            }
            Request::GetAllChildrenNumber { path } => {
                let r = read::all_children_number(&self.tree, caller, root_alias(path));
                (answer(xid, last, r, |w, n| {
                    w.i32(n);
                }), false)
            }
            Request::GetEphemerals { prefix } => {
                let paths = read::ephemerals(&self.tree, caller, prefix);
                (answer(xid, last, Ok(paths), |w, p| {
                    w.string_vec(&p);
                }), false)
            }
            Request::MultiRead(ops) => {
                let results = read::multi_read(&mut self.tree, caller, ops);
                (answer(xid, last, Ok(results), |w, r| encode::multi_read_body(w, &r)), false)
            }
            Request::Sync { path } if matches!(self.repl, Repl::Member(_)) => {
                // Answered once everything the leader committed before now is applied here.
                self.ensemble_sync(session, conn, xid, path.clone());
                return None;
            }
            Request::Sync { path } => (answer(xid, last, Ok(()), |w, _| {
                w.string(path);
            }), false),
            Request::AddWatch { path, mode } => {
                // ZooKeeper answers addWatch with an ErrorResponse body holding 0.
                (answer(xid, last, read::add_watch(&mut self.tree, caller, path, *mode), |w, _| {
                    w.i32(0);
                }), false)
            }
            Request::CheckWatches { path, watcher_type } => {
                (answer(xid, last, read::check_watches(&self.tree, caller, path, *watcher_type), |_, _| {}), false)
            }
            Request::RemoveWatches { path, watcher_type } => {
                let r = read::remove_watches(&mut self.tree, caller, path, *watcher_type);
                (answer(xid, last, r, |_, _| {}), false)
            }
            Request::WhoAmI => {
                let infos: Vec<ClientInfo> = caller
                    .ids
                    .iter()
                    .map(|id| ClientInfo {
                        auth_scheme: id.scheme.clone(),
                        user: match id.scheme.as_str() {
                            "digest" => id.id.split(':').next().unwrap_or("").to_string(),
                            _ => id.id.clone(),
                        },
                    })
                    .collect();
                (answer(xid, last, Ok(infos), |w, infos| {
                    w.vec(&infos, |w, c| {
                        w.string(&c.auth_scheme).string(&c.user);
                    });
                }), false)
            }
            Request::Reconfig => {
                let (txn, _) = self.prep_write(caller, &req);
                self.propose_write(session, conn, xid, txn, None, received);
                return None;
            }
            Request::Sasl => (encode::error(xid, last, ErrorCode::Unimplemented), false),
        })
    }
}

/// The sessions recorded in `tree`, none of them connected here, each expiring after its
/// timeout from now unless heard from.
pub(crate) fn sessions_of(tree: &DataTree) -> HashMap<i64, Session> {
    tree.sessions()
        .iter()
        .map(|(id, info)| (*id, Session::new(info.passwd.clone(), info.timeout_ms, None, Arc::default())))
        .collect()
}

/// Whether a request goes through the write pipeline (and so may run ahead of the
/// session's earlier writes being applied).
fn is_write(op: i32, req: &Result<Request, DecodeError>) -> bool {
    match req {
        Err(DecodeError::UnknownOp(_)) => false,
        _ => is_txn_op(op) || op == OpCode::CloseSession as i32,
    }
}

/// Opcodes that ZooKeeper's pipeline turns into transactions (and so zxids), even when
/// they fail.
fn is_txn_op(op: i32) -> bool {
    use OpCode as O;
    matches!(
        OpCode::from_i32(op),
        Some(O::Create | O::Create2 | O::CreateContainer | O::CreateTtl | O::Delete | O::SetData | O::SetAcl | O::Check | O::Multi | O::Reconfig)
    )
}

/// A reply frame: the body for a result, the header alone for an error.
fn answer<T>(xid: i32, zxid: i64, r: Result<T, ErrorCode>, body: impl FnOnce(&mut Writer, T)) -> Vec<u8> {
    match r {
        Ok(v) => encode::reply(xid, zxid, ErrorCode::Ok, |w| body(w, v)),
        Err(e) => encode::error(xid, zxid, e),
    }
}

/// ZooKeeper keys the root both as "/" and as "": reads of "" answer for the root.
fn root_alias(path: &str) -> &str {
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

fn frame_of(resp: &ConnectResponse) -> Vec<u8> {
    let mut w = Writer::frame();
    resp.encode(&mut w);
    w.finish_frame()
}
