//! The znode tree and how transactions change it.

mod blob;
mod snapshot;
mod store;

use crate::path;
use crate::txn::{CreateTxn, Txn, TxnHeader, TxnResult};
use crate::watch::{SessionId, WatchEvent, Watches};
use corral_proto::{Acl, ErrorCode, Stat};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use store::{Slot, Store, NIL};

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

/// A node as read from the tree: a borrowed view of its slot.
#[derive(Clone, Copy)]
pub struct Node<'a> {
    store: &'a Store,
    id: u32,
}

impl<'a> Node<'a> {
    fn slot(&self) -> &'a Slot {
        self.store.slot(self.id)
    }

    /// `None` when created or set with null data; clients get null back.
    pub fn data(&self) -> Option<&'a [u8]> {
        self.slot().data()
    }

    pub fn data_len(&self) -> usize {
        self.slot().data_len()
    }

    pub fn acl(&self) -> &'a Arc<[Acl]> {
        self.store.acl(self.slot().acl())
    }

    /// The stored metadata (create counter as cversion, raw owner value).
    pub fn raw_stat(&self) -> NodeStat {
        self.store.stat(self.id)
    }

    pub fn num_children(&self) -> usize {
        self.store.num_children(self.id) as usize
    }

    /// Child names, sorted so listings are deterministic.
    pub fn child_names(&self) -> Vec<&'a str> {
        let store = self.store;
        let mut names: Vec<&str> = store.children(self.id).map(|c| store.slot(c).name()).collect();
        names.sort_unstable();
        names
    }

    pub fn stat(&self) -> Stat {
        let s = self.store.stat(self.id);
        let children = self.store.num_children(self.id) as i32;
        Stat {
            czxid: s.czxid,
            mzxid: s.mzxid,
            ctime: s.ctime,
            mtime: s.mtime,
            version: s.version,
            // The stored counter counts creates only (it names sequential children);
            // clients see creates + deletes, which is 2 * creates - children still here.
            cversion: s.cversion.wrapping_mul(2).wrapping_sub(children),
            aversion: s.aversion,
            // Container and TTL markers are internal; clients see 0 for them.
            ephemeral_owner: match EphemeralType::of(s.ephemeral_owner) {
                EphemeralType::Session(id) => id,
                _ => 0,
            },
            data_length: self.data_len() as i32,
            num_children: children,
            pzxid: s.pzxid,
        }
    }
}

impl std::fmt::Debug for Node<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("stat", &self.raw_stat()).field("data", &self.data()).finish()
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
    store: Store,
    ephemerals: HashMap<SessionId, BTreeSet<String>>,
    /// Containers and TTL nodes, the candidates for the periodic cleanup.
    containers: BTreeSet<String>,
    ttls: BTreeSet<String>,
    /// Live sessions: part of the durable state, so a restarted server knows them.
    sessions: BTreeMap<SessionId, SessionInfo>,
    pub watches: Watches,
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
            store: Store::default(),
            ephemerals: HashMap::new(),
            containers: BTreeSet::new(),
            ttls: BTreeSet::new(),
            sessions: BTreeMap::new(),
            watches: Watches::default(),
            last_zxid: 0,
            data_bytes: 0,
        }
    }

    /// A fresh tree: `/`, `/zookeeper`, `/zookeeper/quota` and `/zookeeper/config`.
    pub fn new() -> DataTree {
        let mut t = DataTree::empty();
        let open = t.store.intern_acl(&Acl::open_unsafe());
        let read = t.store.intern_acl(&Acl::read_unsafe());
        for (p, acl) in [("/", open), (ZOOKEEPER, open), (QUOTA, open), (CONFIG, read)] {
            // ZooKeeper creates /zookeeper/config with aversion -1.
            let stat = NodeStat { aversion: if p == CONFIG { -1 } else { 0 }, ..NodeStat::default() };
            let parent = path::parent(p).map_or(NIL, |pp| t.store.lookup(pp).expect("parents come first"));
            t.insert_under(parent, p, Some(&[]), stat, acl);
        }
        t
    }

    /// Adds node `p` under its parent (id `parent`, [`NIL`] for the root) and keeps the
    /// indexes; the caller has checked that it does not exist.
    fn insert_under(&mut self, parent: u32, p: &str, data: Option<&[u8]>, stat: NodeStat, acl: u32) -> u32 {
        let id = self.store.insert(parent, path::name(p), data, stat, acl).expect("the caller checked for a sibling of that name");
        self.data_bytes += (p.len() + data.map_or(0, <[u8]>::len)) as u64;
        self.track(p, stat.ephemeral_owner);
        id
    }

    /// Adds node `p` to the index its owner value calls for, if any.
    fn track(&mut self, p: &str, owner: i64) {
        match EphemeralType::of(owner) {
            EphemeralType::Session(s) => {
                self.ephemerals.entry(s).or_default().insert(p.to_string());
            }
            EphemeralType::Container => {
                self.containers.insert(p.to_string());
            }
            EphemeralType::Ttl(_) => {
                self.ttls.insert(p.to_string());
            }
            EphemeralType::Persistent => {}
        }
    }

    pub fn get(&self, path: &str) -> Option<Node<'_>> {
        self.store.lookup(path).map(|id| Node { store: &self.store, id })
    }

    pub fn node_count(&self) -> usize {
        self.store.len()
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
        let Some(id) = self.store.lookup(path) else { return 0 };
        let mut count = 0;
        let mut stack = vec![id];
        while let Some(id) = stack.pop() {
            let children = self.store.num_children(id);
            count += children as usize;
            if children > 0 {
                stack.extend(self.store.children(id));
            }
        }
        count
    }

    /// Containers that once had children and have none now, and TTL nodes without
    /// children unmodified for longer than their TTL: what the cleanup should delete.
    pub fn expired_containers(&self, now_ms: i64) -> Vec<String> {
        let empty_container = self.containers.iter().filter(|p| {
            self.get(p).is_some_and(|n| {
                let s = n.raw_stat();
                n.num_children() == 0 && s.cversion > 0
            })
        });
        let expired_ttl = self.ttls.iter().filter(|p| {
            self.get(p).is_some_and(|n| {
                let s = n.raw_stat();
                let EphemeralType::Ttl(ttl) = EphemeralType::of(s.ephemeral_owner) else { return false };
                n.num_children() == 0 && now_ms - s.mtime > ttl
            })
        });
        empty_container.chain(expired_ttl).cloned().collect()
    }

    /// Applies a transaction, appending the watch events it fires to `events`.
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
                let Some(id) = self.store.lookup(&path) else {
                    return TxnResult::Error(ErrorCode::NoNode);
                };
                let old_len = self.store.slot(id).data_len();
                self.data_bytes = self.data_bytes - old_len as u64 + data.as_ref().map_or(0, Vec::len) as u64;
                let e = self.store.set_data(id, data.as_deref());
                e.version = version;
                e.mzxid = hdr.zxid;
                e.mtime = hdr.time_ms;
                let stat = Node { store: &self.store, id }.stat();
                self.watches.data_changed(&path, events);
                TxnResult::SetData { stat }
            }
            Txn::SetAcl { path, acl, version } => {
                let Some(id) = self.store.lookup(&path) else {
                    return TxnResult::Error(ErrorCode::NoNode);
                };
                let acl = self.store.intern_acl(&acl);
                self.store.set_acl(id, acl).aversion = version;
                TxnResult::SetAcl { stat: Node { store: &self.store, id }.stat() }
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
        let parent = self.store.lookup(parent_path).ok_or(ErrorCode::NoNode)?;
        if self.store.child(parent, path::name(&c.path)).is_some() {
            return Err(ErrorCode::NodeExists);
        }
        let acl = self.store.intern_acl(&c.acl);
        let stat = NodeStat {
            czxid: hdr.zxid,
            mzxid: hdr.zxid,
            pzxid: hdr.zxid,
            ctime: hdr.time_ms,
            mtime: hdr.time_ms,
            version: 0,
            cversion: 0,
            aversion: 0,
            ephemeral_owner: c.ephemeral_owner,
        };
        let id = self.insert_under(parent, &c.path, c.data.as_deref(), stat, acl);
        if c.parent_cversion > self.store.ext(parent).cversion {
            let p = self.store.ext_mut(parent);
            p.cversion = c.parent_cversion;
            p.pzxid = hdr.zxid;
        }
        let stat = Node { store: &self.store, id }.stat();
        self.watches.node_created(&c.path, parent_path, events);
        Ok((c.path, stat))
    }

    fn delete(&mut self, p: &str, zxid: i64, events: &mut Vec<WatchEvent>) -> Result<(), ErrorCode> {
        let parent_path = path::parent(p).ok_or(ErrorCode::BadArguments)?;
        let id = self.store.lookup(p).ok_or(ErrorCode::NoNode)?;
        if self.store.num_children(id) > 0 {
            return Err(ErrorCode::NotEmpty);
        }
        let s = self.store.slot(id);
        let (parent, data_len, owner) = (s.parent, s.data_len(), self.store.ext(id).owner);
        self.data_bytes -= (p.len() + data_len) as u64;
        self.store.remove(id);
        if zxid > self.store.ext(parent).pzxid {
            self.store.ext_mut(parent).pzxid = zxid;
        }
        match EphemeralType::of(owner) {
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
