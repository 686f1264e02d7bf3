//! Connections between ensemble members: the network under `corral-zab`.
//!
//! Two kinds of connection, as in ZooKeeper:
//!
//! - **Election links** (each member's election port) carry leader-election notifications
//!   between every pair of members. To keep one connection per pair, only the member with
//!   the larger id dials, and it redials with back-off while the link is down. A
//!   notification for a member with no link up is dropped; when a link comes up, both
//!   ends hear [`Inbound::ElectionUp`] and a LOOKING member sends its vote over it.
//! - **Quorum links** (the quorum port) carry everything else, one link per learner
//!   session. Only a learner dials, and only to send `LearnerInfo`, the first message of a
//!   session (dropping any older link to that leader); the leader answers on the
//!   connection it accepted and never dials. Anything sent to a peer with no link is
//!   dropped: the session it belonged to is over. When a quorum link breaks, the member
//!   hears [`Inbound::Disconnected`], which is what makes a follower look for a new
//!   leader and a leader forget a learner.
//!
//! Every connection starts with a hello (`"CRQ1"`, the sender's id, the link kind); a
//! connection from an id that is not a member, or that sends a frame that does not decode,
//! is closed, and the member carries on. Messages are length-prefixed
//! [`Message::encode`] frames. Each link has one writer task fed by a bounded queue, so
//! messages on a link stay in order; a quorum link whose queue overflows is closed (its
//! peer resyncs) rather than letting a slow learner grow the leader's memory.

use corral_zab::message::Message;
use corral_zab::ServerId;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const MAGIC: &[u8; 4] = b"CRQ1";
const KIND_ELECTION: i32 = 0;
const KIND_QUORUM: i32 = 1;
/// Largest frame accepted from a peer. A snapshot travels as one frame for now.
pub const MAX_FRAME_BYTES: usize = 1 << 30;
/// Messages that may wait on one election link; more are dropped (election resends).
const ELECTION_QUEUE: usize = 256;
/// Messages that may wait on one quorum link before it is closed as too slow.
const QUORUM_QUEUE: usize = 100_000;
const REDIAL_MIN: Duration = Duration::from_millis(50);
const REDIAL_MAX: Duration = Duration::from_secs(2);

/// Where a member listens.
#[derive(Debug, Clone)]
pub struct MemberAddrs {
    pub quorum: String,
    pub election: String,
}

/// What the network tells the member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    Message { from: ServerId, msg: Message },
    /// The quorum link to `peer` broke.
    Disconnected { peer: ServerId },
    /// An election link to `peer` came up (anything sent to `peer` before was dropped).
    ElectionUp { peer: ServerId },
}

#[derive(Debug)]
struct Link {
    tx: mpsc::Sender<Message>,
    /// Distinguishes this connection from a later one to the same peer.
    serial: u64,
}

#[derive(Debug)]
struct Inner {
    me: ServerId,
    members: BTreeMap<ServerId, MemberAddrs>,
    election: Mutex<HashMap<ServerId, Link>>,
    quorum: Mutex<HashMap<ServerId, Link>>,
    next_serial: Mutex<u64>,
    inbox: mpsc::UnboundedSender<Inbound>,
}

/// The member's side of the network. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

impl Transport {
    /// Starts listening on the two (already bound) listeners and dialing the election
    /// ports of members with smaller ids. Everything received goes to the returned
    /// receiver.
    pub fn start(
        me: ServerId,
        members: BTreeMap<ServerId, MemberAddrs>,
        election_listener: TcpListener,
        quorum_listener: TcpListener,
    ) -> (Transport, mpsc::UnboundedReceiver<Inbound>) {
        let (inbox, rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            me,
            members,
            election: Mutex::new(HashMap::new()),
            quorum: Mutex::new(HashMap::new()),
            next_serial: Mutex::new(0),
            inbox,
        });
        let t = Transport { inner };
        tokio::spawn(t.clone().accept_loop(election_listener, KIND_ELECTION));
        tokio::spawn(t.clone().accept_loop(quorum_listener, KIND_QUORUM));
        for (&id, addrs) in &t.inner.members {
            if id < me {
                tokio::spawn(t.clone().dial_election(id, addrs.election.clone()));
            }
        }
        (t, rx)
    }

    /// Sends `msg` to `to`: election notifications on the election link (dropped if it is
    /// down), everything else on the quorum link, dialing `to`'s quorum port if there is
    /// none.
    pub fn send(&self, to: ServerId, msg: Message) {
        if to == self.inner.me || !self.inner.members.contains_key(&to) {
            return;
        }
        if matches!(msg, Message::Election(_)) {
            if let Some(link) = self.inner.election.lock().unwrap().get(&to) {
                let _ = link.tx.try_send(msg);
            }
            return;
        }
        let mut quorum = self.inner.quorum.lock().unwrap();
        if matches!(msg, Message::LearnerInfo { .. }) {
            // A learner's session with a leader starts here, on a connection of its own:
            // whatever link there was to that peer belongs to an earlier session.
            quorum.remove(&to);
            let (tx, rx) = mpsc::channel(QUORUM_QUEUE);
            let serial = self.serial();
            let addr = self.inner.members[&to].quorum.clone();
            tokio::spawn(self.clone().dial_quorum(to, addr, rx, serial));
            quorum.insert(to, Link { tx, serial });
        }
        // Everything else goes on the session's link; with none (the peer left, and we
        // hear or heard of it as a disconnection), it is dropped.
        let Some(link) = quorum.get(&to) else { return };
        if link.tx.try_send(msg).is_err() {
            // Too far behind (or already gone): drop the link; the peer resyncs.
            let serial = link.serial;
            drop(quorum);
            self.quorum_down(to, serial);
        }
    }

    /// Closes the quorum link to `peer`, if there is one: its writer stops and the
    /// connection closes, which the other end hears as a disconnection. This member is not
    /// told (it asked).
    pub fn close(&self, peer: ServerId) {
        self.inner.quorum.lock().unwrap().remove(&peer);
    }

    fn serial(&self) -> u64 {
        let mut s = self.inner.next_serial.lock().unwrap();
        *s += 1;
        *s
    }

    /// Forgets quorum link `serial` to `peer` (if it is still the current one) and tells
    /// the member.
    fn quorum_down(&self, peer: ServerId, serial: u64) {
        let mut quorum = self.inner.quorum.lock().unwrap();
        if quorum.get(&peer).is_some_and(|l| l.serial == serial) {
            quorum.remove(&peer);
            let _ = self.inner.inbox.send(Inbound::Disconnected { peer });
        }
    }

    async fn accept_loop(self, listener: TcpListener, kind: i32) {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let t = self.clone();
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let (mut rd, wr) = stream.into_split();
                let Ok(Some(peer)) = t.read_hello(&mut rd, kind).await else { return };
                let (tx, rx) = mpsc::channel(if kind == KIND_QUORUM { QUORUM_QUEUE } else { ELECTION_QUEUE });
                let serial = t.serial();
                let links = if kind == KIND_QUORUM { &t.inner.quorum } else { &t.inner.election };
                let old = links.lock().unwrap().insert(peer, Link { tx, serial });
                if let (Some(old), KIND_QUORUM) = (old, kind) {
                    // A learner dialed again: its old connection is over.
                    drop(old);
                    let _ = t.inner.inbox.send(Inbound::Disconnected { peer });
                }
                if kind == KIND_ELECTION {
                    let _ = t.inner.inbox.send(Inbound::ElectionUp { peer });
                }
                t.run_link(peer, kind, serial, rd, wr, rx).await;
            });
        }
    }

    /// Reads the hello: `Some(peer)` for a member speaking the expected kind.
    async fn read_hello(&self, rd: &mut tokio::net::tcp::OwnedReadHalf, kind: i32) -> std::io::Result<Option<ServerId>> {
        let mut b = [0u8; 16];
        tokio::time::timeout(Duration::from_secs(10), rd.read_exact(&mut b)).await??;
        let id = u64::from_be_bytes(b[4..12].try_into().expect("8 bytes"));
        let k = i32::from_be_bytes(b[12..16].try_into().expect("4 bytes"));
        let ok = &b[..4] == MAGIC && k == kind && id != self.inner.me && self.inner.members.contains_key(&id);
        if !ok {
            tracing::warn!(peer = id, "refused a quorum connection: bad hello or unknown member");
        }
        Ok(ok.then_some(id))
    }

    fn hello(&self, kind: i32) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(MAGIC);
        b[4..12].copy_from_slice(&self.inner.me.to_be_bytes());
        b[12..16].copy_from_slice(&kind.to_be_bytes());
        b
    }

    /// Keeps the election link to a member with a smaller id up, redialing with back-off.
    async fn dial_election(self, peer: ServerId, addr: String) {
        let mut wait = REDIAL_MIN;
        loop {
            if let Ok(mut stream) = TcpStream::connect(&addr).await {
                let _ = stream.set_nodelay(true);
                if stream.write_all(&self.hello(KIND_ELECTION)).await.is_ok() {
                    wait = REDIAL_MIN;
                    let (tx, rx) = mpsc::channel(ELECTION_QUEUE);
                    let serial = self.serial();
                    self.inner.election.lock().unwrap().insert(peer, Link { tx, serial });
                    let _ = self.inner.inbox.send(Inbound::ElectionUp { peer });
                    let (rd, wr) = stream.into_split();
                    self.run_link(peer, KIND_ELECTION, serial, rd, wr, rx).await;
                }
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(REDIAL_MAX);
        }
    }

    /// Dials `peer`'s quorum port once and runs the link; if that fails, the member hears
    /// it as a disconnection.
    async fn dial_quorum(self, peer: ServerId, addr: String, rx: mpsc::Receiver<Message>, serial: u64) {
        match TcpStream::connect(&addr).await {
            Ok(mut stream) => {
                let _ = stream.set_nodelay(true);
                if stream.write_all(&self.hello(KIND_QUORUM)).await.is_ok() {
                    let (rd, wr) = stream.into_split();
                    self.run_link(peer, KIND_QUORUM, serial, rd, wr, rx).await;
                    return;
                }
                self.quorum_down(peer, serial);
            }
            Err(_) => self.quorum_down(peer, serial),
        }
    }

    /// Runs one connection until either direction fails: a writer draining `rx`, and this
    /// task reading frames into the inbox.
    async fn run_link(
        &self,
        peer: ServerId,
        kind: i32,
        serial: u64,
        rd: tokio::net::tcp::OwnedReadHalf,
        mut wr: tokio::net::tcp::OwnedWriteHalf,
        mut rx: mpsc::Receiver<Message>,
    ) {
        // Whatever is queued goes out in one write (up to 256 KiB): under load a leader
        // sends a proposal and a commit per transaction to every follower, and a system
        // call each would cost more than the rest of the work.
        let writer = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(64 * 1024);
            while let Some(first) = rx.recv().await {
                let mut next = Some(first);
                while let Some(msg) = next {
                    let body = msg.encode();
                    batch.extend_from_slice(&(body.len() as u32).to_be_bytes());
                    batch.extend_from_slice(&body);
                    next = if batch.len() < 256 * 1024 { rx.try_recv().ok() } else { None };
                }
                if wr.write_all(&batch).await.is_err() {
                    return;
                }
                batch.clear();
            }
        });
        let mut rd = tokio::io::BufReader::with_capacity(64 * 1024, rd);
        let inbox = self.inner.inbox.clone();
        let reader = async {
            loop {
                let mut len = [0u8; 4];
                rd.read_exact(&mut len).await?;
                let len = u32::from_be_bytes(len) as usize;
                if len > MAX_FRAME_BYTES {
                    return Err(std::io::Error::other(format!("frame of {len} bytes")));
                }
                let mut body = vec![0u8; len];
                rd.read_exact(&mut body).await?;
                let msg = Message::decode(&body).map_err(|e| std::io::Error::other(e.to_string()))?;
                if inbox.send(Inbound::Message { from: peer, msg }).is_err() {
                    return Ok(());
                }
            }
        };
        let mut writer = writer;
        let result: std::io::Result<()> = tokio::select! {
            r = reader => r,
            _ = &mut writer => Ok(()),
        };
        writer.abort();
        if let Err(e) = result {
            tracing::debug!(peer, kind, error = %e, "quorum connection closed");
        }
        if kind == KIND_QUORUM {
            self.quorum_down(peer, serial);
        } else {
            let mut election = self.inner.election.lock().unwrap();
            if election.get(&peer).is_some_and(|l| l.serial == serial) {
                election.remove(&peer);
            }
        }
    }
}

/// The addresses of every member, from the ensemble configuration.
pub fn member_addrs(ensemble: &crate::config::Ensemble) -> BTreeMap<ServerId, MemberAddrs> {
    let host = |h: &str| if h.contains(':') { format!("[{h}]") } else { h.to_string() };
    ensemble
        .servers
        .iter()
        .map(|s| {
            let addrs = MemberAddrs {
                quorum: format!("{}:{}", host(&s.host), s.quorum_port),
                election: format!("{}:{}", host(&s.host), s.election_port),
            };
            (s.id, addrs)
        })
        .collect()
}

/// Binds a listener on the configured host's first address at `port`, as ZooKeeper does
/// by default (without `quorumListenOnAllIPs`).
pub async fn bind(host: &str, port: u16) -> std::io::Result<TcpListener> {
    let addr: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
    let first = addr.first().ok_or_else(|| std::io::Error::other(format!("{host} does not resolve")))?;
    TcpListener::bind(first).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_zab::election::{Notification, PeerState, Vote};

    async fn listener() -> (TcpListener, String) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap().to_string();
        (l, a)
    }

    /// `n` members on free loopback ports.
    async fn ensemble(n: u64) -> Vec<(Transport, mpsc::UnboundedReceiver<Inbound>)> {
        let mut listeners = Vec::new();
        let mut members = BTreeMap::new();
        for id in 1..=n {
            let (e, ea) = listener().await;
            let (q, qa) = listener().await;
            members.insert(id, MemberAddrs { quorum: qa, election: ea });
            listeners.push((id, e, q));
        }
        listeners.into_iter().map(|(id, e, q)| Transport::start(id, members.clone(), e, q)).collect()
    }

    fn vote(from: ServerId) -> Message {
        Message::Election(Notification {
            from,
            state: PeerState::Looking,
            vote: Vote { leader: from, zxid: 7, round: 1, peer_epoch: 0 },
        })
    }

    fn info() -> Message {
        Message::LearnerInfo { accepted_epoch: 1, last_zxid: 5, snapshot_zxid: 0, observer: false }
    }

    /// The next message or disconnection (election links coming up are skipped).
    async fn next(rx: &mut mpsc::UnboundedReceiver<Inbound>) -> Inbound {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("a message in time").unwrap() {
                Inbound::ElectionUp { .. } => continue,
                m => return m,
            }
        }
    }

    #[tokio::test]
    async fn both_ends_hear_an_election_link_come_up() {
        let mut e = ensemble(3).await;
        for (i, (_, rx)) in e.iter_mut().enumerate() {
            let me = i as u64 + 1;
            let mut up = std::collections::BTreeSet::new();
            while up.len() < 2 {
                match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("in time").unwrap() {
                    Inbound::ElectionUp { peer } => assert!(peer != me && up.insert(peer), "{peer} twice"),
                    m => panic!("unexpected {m:?}"),
                }
            }
        }
    }

    #[tokio::test]
    async fn election_links_form_between_every_pair_and_carry_votes() {
        let mut e = ensemble(3).await;
        // Links form in the background; send until each pair has heard the other.
        for (a, b) in [(0usize, 1usize), (1, 2), (2, 0), (0, 2)] {
            let to = b as u64 + 1;
            let got = loop {
                e[a].0.send(to, vote(a as u64 + 1));
                if let Ok(m) = tokio::time::timeout(Duration::from_millis(50), next(&mut e[b].1)).await {
                    break m;
                }
            };
            assert_eq!(got, Inbound::Message { from: a as u64 + 1, msg: vote(a as u64 + 1) });
        }
    }

    #[tokio::test]
    async fn quorum_links_are_dialed_on_demand_keep_order_and_report_breaks() {
        let mut e = ensemble(2).await;
        // Without a session nothing is dialed: the message is dropped.
        e[1].0.send(1, Message::Ack { zxid: 99 });
        e[0].0.send(2, Message::Commit { zxid: 99 });
        assert!(tokio::time::timeout(Duration::from_millis(200), next(&mut e[0].1)).await.is_err());
        // The learner (2) starts a session with the leader (1): a quorum link is dialed,
        // and what follows goes on it in order.
        e[1].0.send(1, info());
        for i in 0..100 {
            e[1].0.send(1, Message::Ack { zxid: i });
        }
        assert_eq!(next(&mut e[0].1).await, Inbound::Message { from: 2, msg: info() });
        for i in 0..100 {
            assert_eq!(next(&mut e[0].1).await, Inbound::Message { from: 2, msg: Message::Ack { zxid: i } });
        }
        // The leader answers on the connection it accepted.
        e[0].0.send(2, Message::Commit { zxid: 5 });
        assert_eq!(next(&mut e[1].1).await, Inbound::Message { from: 1, msg: Message::Commit { zxid: 5 } });
        // The learner goes away: the leader hears of it.
        let (t2, rx2) = e.pop().unwrap();
        drop(rx2);
        // Make the learner's link fail: its inbox is gone, so the next message it reads
        // ends the link.
        e[0].0.send(2, Message::Ping);
        drop(t2);
        assert_eq!(next(&mut e[0].1).await, Inbound::Disconnected { peer: 2 });
    }

    #[tokio::test]
    async fn a_dial_to_nobody_is_a_disconnection() {
        let (e, _) = listener().await;
        let (q, _) = listener().await;
        let mut members = BTreeMap::new();
        members.insert(1, MemberAddrs { quorum: "127.0.0.1:1".into(), election: "127.0.0.1:1".into() });
        members.insert(2, MemberAddrs { quorum: q.local_addr().unwrap().to_string(), election: e.local_addr().unwrap().to_string() });
        let (t, mut rx) = Transport::start(2, members, e, q);
        t.send(1, info());
        assert_eq!(next(&mut rx).await, Inbound::Disconnected { peer: 1 });
    }

    #[tokio::test]
    async fn strangers_and_garbage_are_cut_off_and_members_carry_on() {
        let mut e = ensemble(2).await;
        let qaddr = e[0].0.inner.members[&1].quorum.clone();
        // A stranger's hello.
        let mut s = TcpStream::connect(&qaddr).await.unwrap();
        let mut hello = e[1].0.hello(KIND_QUORUM);
        hello[4..12].copy_from_slice(&99u64.to_be_bytes());
        s.write_all(&hello).await.unwrap();
        s.write_all(&[0, 0, 0, 4, 0, 0, 0, 5]).await.unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(s.read(&mut buf).await.unwrap(), 0, "closed");
        // A member's hello, then a frame that does not decode.
        let mut s = TcpStream::connect(&qaddr).await.unwrap();
        s.write_all(&e[1].0.hello(KIND_QUORUM)).await.unwrap();
        s.write_all(&[0, 0, 0, 4, 0, 0, 0, 99]).await.unwrap();
        assert_eq!(next(&mut e[0].1).await, Inbound::Disconnected { peer: 2 });
        // Real traffic still flows.
        e[1].0.send(1, info());
        assert_eq!(next(&mut e[0].1).await, Inbound::Message { from: 2, msg: info() });
    }
}
