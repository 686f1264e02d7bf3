//! The znode tree and how transactions change it.

mod snapshot;

use crate::path;
use crate::txn::{CreateTxn, Txn, TxnHeader, TxnResult};
use crate::watch::{SessionId, WatchEvent, Watches};
use corral_proto::{Acl, ErrorCode, Stat};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// What kind of node an `ephemeralOwner` value marks. The encodings are ZooKeeper's, so
/// clients that decode them (and snapshots) agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EphemeralType {
    /// A plain persistent node (owner 0).
    Persistent,
    /// Owned by a session; deleted when the session ends.
    Session(SessionId),
    /// A container: deleted once its last child is gone.
    Container,
    /// Deleted when it has no children and was not modified for this many milliseconds.
    Ttl(i64),
}

/// The owner value of a container node (`Long.MIN_VALUE`).
pub const CONTAINER_OWNER: i64 = i64::MIN;
const EXTENDED_MASK: u64 = 0xff00_0000_0000_0000;
/// The largest TTL ZooKeeper can encode in an owner value.
pub const MAX_TTL_MS: i64 = 0x00ff_ffff_ffff;

impl EphemeralType {
    pub fn of(owner: i64) -> EphemeralType {
        if owner == 0 {
            EphemeralType::Persistent
        } else if owner == CONTAINER_OWNER {
            EphemeralType::Container
        } else if (owner as u64) & EXTENDED_MASK == EXTENDED_MASK {
            EphemeralType::Ttl(owner & MAX_TTL_MS)
        } else {
            EphemeralType::Session(owner)
        }
    }

    pub fn ttl_owner(ttl_ms: i64) -> i64 {
        (EXTENDED_MASK as i64) | ttl_ms
    }
}

/// The stored part of a node's metadata; dataLength and numChildren are derived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodeStat {
    pub czxid: i64,
    pub mzxid: i64,
    pub pzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    /// How many children were ever created (ZooKeeper's stored cversion). Sequential
    /// names come from it; deletes do not change it.
    pub cversion: i32,
    pub aversion: i32,
    pub ephemeral_owner: i64,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub stat: NodeStat,
    /// `None` when created or set with null data; clients get null back.
    pub data: Option<Vec<u8>>,
    /// Shared among nodes with equal ACLs (most nodes carry the same one).
    pub acl: Arc<[Acl]>,
    /// Child names, sorted so listings and digests are deterministic.
    pub children: BTreeSet<Box<str>>,
}

impl Node {
    pub fn data_len(&self) -> usize {
        self.data.as_ref().map_or(0, Vec::len)
    }

    pub fn stat(&self) -> Stat {
        let s = &self.stat;
        Stat {
            czxid: s.czxid,
            mzxid: s.mzxid,
            ctime: s.ctime,
            mtime: s.mtime,
            version: s.version,
            // The stored counter counts creates only (it names sequential children);
            // clients see creates + deletes, which is 2 * creates - children still here.
            cversion: s.cversion.wrapping_mul(2).wrapping_sub(self.children.len() as i32),
            aversion: s.aversion,
            // Container and TTL markers are internal; clients see 0 for them.
            ephemeral_owner: match EphemeralType::of(s.ephemeral_owner) {
                EphemeralType::Session(id) => id,
                _ => 0,
            },
            data_length: self.data_len() as i32,
            num_children: self.children.len() as i32,
            pzxid: s.pzxid,
        }
    }
}

/// What the tree keeps of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub timeout_ms: i32,
    pub passwd: Vec<u8>,
}

/// Paths of ZooKeeper's own subtree.
pub const ZOOKEEPER: &str = "/zookeeper";
pub const QUOTA: &str = "/zookeeper/quota";
pub const CONFIG: &str = "/zookeeper/config";

/// Paths that can never be deleted.
pub fn is_special(path: &str) -> bool {
    matches!(path, "/" | ZOOKEEPER | QUOTA | CONFIG)
}

/// The whole replicated state: nodes, the sessions that exist, and the indexes that
/// follow from them. Watches live here too because applying a change fires them.
#[derive(Debug)]
pub struct DataTree {
    nodes: HashMap<Box<str>, Node>,
    ephemerals: HashMap<SessionId, BTreeSet<String>>,
    /// Containers and TTL nodes, the candidates for the periodic cleanup.
    containers: BTreeSet<String>,
    ttls: BTreeSet<String>,
    /// Live sessions: part of the durable state, so a restarted server knows them.
    sessions: BTreeMap<SessionId, SessionInfo>,
    pub watches: Watches,
    acl_cache: HashMap<Vec<Acl>, Arc<[Acl]>>,
    /// Cache size at which unused ACLs are next purged; doubling it after each purge keeps
    /// the cost amortised constant however many distinct ACLs are in use.
    acl_purge_at: usize,
    last_zxid: i64,
    data_bytes: u64,
}

impl Default for DataTree {
    fn default() -> Self {
        Self::new()
    }
}

impl DataTree {
    /// A tree with no nodes at all, for a snapshot to fill.
    fn empty() -> DataTree {
        DataTree {
            nodes: HashMap::new(),
            ephemerals: HashMap::new(),
            containers: BTreeSet::new(),
            ttls: BTreeSet::new(),
            sessions: BTreeMap::new(),
            watches: Watches::default(),
            acl_cache: HashMap::new(),
            acl_purge_at: 1024,
            last_zxid: 0,
            data_bytes: 0,
        }
    }

    /// A fresh tree: `/`, `/zookeeper`, `/zookeeper/quota` and `/zookeeper/config`.
    pub fn new() -> DataTree {
        let mut t = DataTree::empty();
        let open = t.intern_acl(&Acl::open_unsafe());
        let read = t.intern_acl(&Acl::read_unsafe());
        for (p, acl) in [("/", &open), (ZOOKEEPER, &open), (QUOTA, &open), (CONFIG, &read)] {
            // ZooKeeper creates /zookeeper/config with aversion -1.
            let stat = NodeStat { aversion: if p == CONFIG { -1 } else { 0 }, ..NodeStat::default() };
            t.nodes.insert(
                p.into(),
                Node { stat, data: Some(Vec::new()), acl: acl.clone(), children: BTreeSet::new() },
            );
            t.data_bytes += p.len() as u64;
            if let Some(parent) = path::parent(p) {
                t.nodes.get_mut(parent).unwrap().children.insert(path::name(p).into());
            }
        }
        t
    }

    fn intern_acl(&mut self, acl: &[Acl]) -> Arc<[Acl]> {
        if let Some(a) = self.acl_cache.get(acl) {
            return a.clone();
        }
        if self.acl_cache.len() >= self.acl_purge_at {
            // Forget ACLs no node uses any more.
            self.acl_cache.retain(|_, a| Arc::strong_count(a) > 1);
            self.acl_purge_at = (self.acl_cache.len() * 2).max(1024);
        }
        let a: Arc<[Acl]> = acl.into();
        self.acl_cache.insert(acl.to_vec(), a.clone());
        a
    }

    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Total bytes of data and path names, ZooKeeper's `approximate_data_size`.
    pub fn data_bytes(&self) -> u64 {
        self.data_bytes
    }

    /// The zxid of the last applied transaction.
    pub fn last_zxid(&self) -> i64 {
        self.last_zxid
    }

    pub fn sessions(&self) -> &BTreeMap<SessionId, SessionInfo> {
        &self.sessions
    }

    pub fn session_exists(&self, session: SessionId) -> bool {
        self.sessions.contains_key(&session)
    }

    /// Ephemeral node paths of a session, sorted.
    pub fn ephemerals_of(&self, session: SessionId) -> impl Iterator<Item = &String> {
        self.ephemerals.get(&session).into_iter().flatten()
    }

    pub fn ephemeral_count(&self) -> usize {
        self.ephemerals.values().map(BTreeSet::len).sum()
    }

    /// Number of nodes below `path` (not counting itself).
    pub fn descendant_count(&self, path: &str) -> usize {
        let Some(n) = self.nodes.get(path) else { return 0 };
        let mut count = 0;
        let mut stack: Vec<String> = n.children.iter().map(|c| path::join(path, c)).collect();
        while let Some(p) = stack.pop() {
            count += 1;
            if let Some(n) = self.nodes.get(p.as_str()) {
                stack.extend(n.children.iter().map(|c| path::join(&p, c)));
            }
        }
        count
    }

    /// Containers that once had children and have none now, and TTL nodes without
    /// children unmodified for longer than their TTL: what the cleanup should delete.
    pub fn expired_containers(&self, now_ms: i64) -> Vec<String> {
        let empty_container = self.containers.iter().filter(|p| {
            self.nodes.get(p.as_str()).is_some_and(|n| n.children.is_empty() && n.stat.cversion > 0)
        });
        let expired_ttl = self.ttls.iter().filter(|p| {
            self.nodes.get(p.as_str()).is_some_and(|n| {
                let EphemeralType::Ttl(ttl) = EphemeralType::of(n.stat.ephemeral_owner) else { return false };
                n.children.is_empty() && now_ms - n.stat.mtime > ttl
            })
        });
        empty_container.chain(expired_ttl).cloned().collect()
    }

    /// Applies a transaction, appending the watch events it fires to `events`. The
    /// transaction is consumed: its data moves into the tree without a copy.
    pub fn apply(&mut self, hdr: &TxnHeader, txn: Txn, events: &mut Vec<WatchEvent>) -> TxnResult {
        assert!(
            hdr.zxid >= self.last_zxid,
            "zxid went backwards: {:#x} after {:#x}",
            hdr.zxid,
            self.last_zxid
        );
        self.last_zxid = hdr.zxid;
        self.apply_one(hdr, txn, events)
    }

    fn apply_one(&mut self, hdr: &TxnHeader, txn: Txn, events: &mut Vec<WatchEvent>) -> TxnResult {
        match txn {
            Txn::CreateSession { timeout_ms, passwd } => {
                self.sessions.insert(hdr.session, SessionInfo { timeout_ms, passwd });
                TxnResult::Session
            }
            Txn::CloseSession => {
                let paths: Vec<String> = self.ephemerals.remove(&hdr.session).into_iter().flatten().collect();
                // Deepest first is not needed (ephemerals have no children) but sorted
                // order keeps every replica's event order the same.
                for p in paths {
                    let _ = self.delete(&p, hdr.zxid, events);
                }
                self.sessions.remove(&hdr.session);
                TxnResult::Session
            }
            Txn::Create(c) => match self.create(c, hdr, events) {
                Ok((path, stat)) => TxnResult::Create { path, stat },
                Err(e) => TxnResult::Error(e),
            },
            Txn::Delete { path } => match self.delete(&path, hdr.zxid, events) {
                Ok(()) => TxnResult::Delete,
                Err(e) => TxnResult::Error(e),
            },
            Txn::SetData { path, data, version } => {
                let Some(n) = self.nodes.get_mut(path.as_str()) else {
                    return TxnResult::Error(ErrorCode::NoNode);
                };
                self.data_bytes = self.data_bytes - n.data_len() as u64 + data.as_ref().map_or(0, Vec::len) as u64;
                n.data = data;
                n.stat.version = version;
                n.stat.mzxid = hdr.zxid;
                n.stat.mtime = hdr.time_ms;
                let stat = n.stat();
                self.watches.data_changed(&path, events);
                TxnResult::SetData { stat }
            }
            Txn::SetAcl { path, acl, version } => {
                let acl = self.intern_acl(&acl);
                let Some(n) = self.nodes.get_mut(path.as_str()) else {
                    return TxnResult::Error(ErrorCode::NoNode);
                };
                n.acl = acl;
                n.stat.aversion = version;
                TxnResult::SetAcl { stat: n.stat() }
            }
            Txn::Check { .. } => TxnResult::Check,
            Txn::Multi(txns) => {
                TxnResult::Multi(txns.into_iter().map(|t| self.apply_one(hdr, t, events)).collect())
            }
            Txn::Error(e) => TxnResult::Error(e),
        }
    }

    fn create(&mut self, c: CreateTxn, hdr: &TxnHeader, events: &mut Vec<WatchEvent>) -> Result<(String, Stat), ErrorCode> {
        let parent_path = path::parent(&c.path).ok_or(ErrorCode::NodeExists)?;
        if self.nodes.contains_key(c.path.as_str()) {
            return Err(ErrorCode::NodeExists);
        }
        let acl = self.intern_acl(&c.acl);
        let parent = self.nodes.get_mut(parent_path).ok_or(ErrorCode::NoNode)?;
        parent.children.insert(path::name(&c.path).into());
        if c.parent_cversion > parent.stat.cversion {
            parent.stat.cversion = c.parent_cversion;
            parent.stat.pzxid = hdr.zxid;
        }
        let node = Node {
            stat: NodeStat {
                czxid: hdr.zxid,
                mzxid: hdr.zxid,
                pzxid: hdr.zxid,
                ctime: hdr.time_ms,
                mtime: hdr.time_ms,
                version: 0,
                cversion: 0,
                aversion: 0,
                ephemeral_owner: c.ephemeral_owner,
            },
            data: c.data,
            acl,
            children: BTreeSet::new(),
        };
        let stat = node.stat();
        self.data_bytes += (c.path.len() + node.data_len()) as u64;
        self.nodes.insert(c.path.as_str().into(), node);
        match EphemeralType::of(c.ephemeral_owner) {
            EphemeralType::Session(s) => {
                self.ephemerals.entry(s).or_default().insert(c.path.clone());
            }
            EphemeralType::Container => {
                self.containers.insert(c.path.clone());
            }
            EphemeralType::Ttl(_) => {
                self.ttls.insert(c.path.clone());
            }
            EphemeralType::Persistent => {}
        }
        self.watches.node_created(&c.path, parent_path, events);
        Ok((c.path, stat))
    }

    fn delete(&mut self, p: &str, zxid: i64, events: &mut Vec<WatchEvent>) -> Result<(), ErrorCode> {
        let parent_path = path::parent(p).ok_or(ErrorCode::BadArguments)?;
        match self.nodes.get(p) {
            None => return Err(ErrorCode::NoNode),
            Some(n) if !n.children.is_empty() => return Err(ErrorCode::NotEmpty),
            Some(_) => {}
        }
        let node = self.nodes.remove(p).expect("checked above");
        self.data_bytes -= (p.len() + node.data_len()) as u64;
        if let Some(parent) = self.nodes.get_mut(parent_path) {
            parent.children.remove(path::name(p));
            if zxid > parent.stat.pzxid {
                parent.stat.pzxid = zxid;
            }
        }
        match EphemeralType::of(node.stat.ephemeral_owner) {
            EphemeralType::Session(s) => {
                if let Some(set) = self.ephemerals.get_mut(&s) {
                    set.remove(p);
                    if set.is_empty() {
                        self.ephemerals.remove(&s);
                    }
                }
            }
            EphemeralType::Container => {
                self.containers.remove(p);
            }
            EphemeralType::Ttl(_) => {
                self.ttls.remove(p);
            }
            EphemeralType::Persistent => {}
        }
        self.watches.node_deleted(p, parent_path, events);
        Ok(())
    }
}
