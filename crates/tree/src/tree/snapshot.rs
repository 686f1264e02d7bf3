//! The tree as bytes (a snapshot's body) and as one number (a digest).
//!
//! A snapshot body lists the sessions, the distinct ACLs (with the numbers the nodes use
//! for them), then every node as a record: its slot id, its parent's slot id, its ACL
//! number, its name, its data (null kept) and its stored stat (the create counter as
//! cversion, the raw owner value), ids and lengths as varints and the stat without the
//! fields a never-changed node has at their defaults. Records come in slot order, so a snapshot can be
//! written a slice of slots at a time while the tree goes on changing
//! ([`DataTree::begin_snapshot`]): a slot changed before the snapshot reaches it has its
//! old record saved ([`super::store::Cow`]), and the snapshot is exactly the tree of the
//! zxid it began at. A reader takes records in any order of parents and children: one
//! whose parent has not come yet waits for it. Indexes (children, ephemerals, containers,
//! TTLs, data size) are rebuilt on reading, so they cannot disagree with the nodes.
//! Framing and checksums belong to the storage layer.

use super::store::{Cow, Store};
use super::{DataTree, EphemeralType, NodeStat, SessionInfo, NIL};
use crate::path;
use corral_proto::{read_acls, write_acls, DecodeError, Reader, Writer};
use hashbrown::HashMap;

const MAGIC: i32 = 0x5a4b_534e; // "ZKSN"
/// 2: records in slot order with slot ids (1 listed full paths, parents first).
const VERSION: i32 = 2;
/// Flush to the sink once this much is buffered.
const CHUNK: usize = 64 * 1024;
/// The smallest record: three ids, an empty name, null data and the shortest stat.
const MIN_RECORD: usize = 3 + 1 + 1 + 1 + 16;

/// FNV-1a, 64 bits: small, stable across platforms and Rust versions, which a digest
/// compared between servers needs.
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn write_record(w: &mut Writer, store: &Store, id: u32) {
    let s = store.slot(id);
    w.varint(id as u64).varint(s.parent.wrapping_add(1) as u64).varint(s.acl() as u64);
    let name = s.name_bytes();
    w.varint(name.len() as u64).raw(name);
    match s.data() {
        None => w.varint(0),
        Some(d) => w.varint(d.len() as u64 + 1).raw(d),
    };
    write_stat(w, &store.stat(id));
}

/// A live slot's snapshot record.
pub(super) fn record(store: &Store, id: u32) -> Box<[u8]> {
    let mut w = Writer::new();
    write_record(&mut w, store, id);
    w.into_inner().into_boxed_slice()
}

impl DataTree {
    /// The path of every node with its id, parents before children.
    fn walk(&self, mut visit: impl FnMut(&str, u32)) {
        let mut stack = vec![("/".to_string(), 0u32)];
        while let Some((p, id)) = stack.pop() {
            visit(&p, id);
            let mut kids: Vec<(String, u32)> =
                self.store.children(id).map(|c| (path::join(&p, self.store.slot(c).name()), c)).collect();
            // Reverse order on the stack: siblings come out in the order they were linked.
            kids.reverse();
            stack.extend(kids);
        }
    }

    /// A digest of every node (path, data, stat, ACL) and session. Equal trees have equal
    /// digests whatever order they were built in; replicas compare it to prove they agree.
    pub fn digest(&self) -> u64 {
        let mut sum = 0u64;
        let mut w = Writer::new();
        self.walk(|p, id| {
            let n = self.store.slot(id);
            w.buf.clear();
            w.string(p).data(n.data());
            write_stat(&mut w, &self.store.stat(id));
            write_acls(&mut w, self.store.acl(n.acl()));
            sum = sum.wrapping_add(fnv(FNV_OFFSET, &w.buf));
        });
        for (id, s) in &self.sessions {
            w.buf.clear();
            w.i64(*id).i32(s.timeout_ms).buffer(&s.passwd);
            sum = sum.wrapping_add(fnv(FNV_OFFSET ^ 1, &w.buf));
        }
        sum
    }

    /// Everything before the records: the zxid, sessions, ACLs and the node count.
    fn snapshot_header(&self) -> Writer {
        let mut w = Writer::new();
        w.i32(MAGIC).i32(VERSION).i64(self.last_zxid);
        w.i32(self.sessions.len() as i32);
        for (id, s) in &self.sessions {
            w.i64(*id).i32(s.timeout_ms).buffer(&s.passwd);
        }
        let acls: Vec<_> = self.store.acl_lists().collect();
        w.i32(acls.len() as i32);
        for (id, a) in acls {
            w.i32(id as i32);
            write_acls(&mut w, a);
        }
        w.i64(self.store.len() as i64);
        w
    }

    /// Writes the whole tree to `out` at once.
    pub fn write_snapshot<W: std::io::Write + ?Sized>(&self, out: &mut W) -> std::io::Result<()> {
        let mut w = self.snapshot_header();
        for id in 0..self.store.slab_len() {
            let s = self.store.slot(id);
            if !s.is_vacant() {
                write_record(&mut w, &self.store, id);
                if w.buf.len() >= CHUNK {
                    out.write_all(&w.buf)?;
                    w.buf.clear();
                }
            }
        }
        out.write_all(&w.buf)
    }

    /// Starts a snapshot of the tree as it is now, to be written a slice at a time with
    /// [`DataTree::continue_snapshot`] while transactions go on being applied. Returns
    /// its zxid and the body's first bytes. A snapshot already in progress is abandoned.
    pub fn begin_snapshot(&mut self) -> (i64, Vec<u8>) {
        let header = self.snapshot_header().into_inner();
        let end = self.store.slab_len();
        let cow = Cow { zxid: self.last_zxid, cursor: 0, end, saved: Default::default() };
        self.store.set_cow(Some(Box::new(cow)));
        (self.last_zxid, header)
    }

    /// The zxid of the snapshot in progress, if any.
    pub fn snapshot_in_progress(&self) -> Option<i64> {
        self.store.cow().map(|c| c.zxid)
    }

    /// Appends the records of the next `slots` slots of the snapshot in progress to
    /// `out`, stopping early after the record that takes `out` to `bytes` or more (a
    /// slice of big nodes stays about `bytes` long). Returns true once the body is
    /// complete (the snapshot is then over); false if there is more, or if no snapshot is
    /// in progress.
    pub fn continue_snapshot(&mut self, slots: u32, bytes: usize, out: &mut Vec<u8>) -> bool {
        let Some(mut cow) = self.store.cow_mut().map(|c| std::mem::replace(c, Cow::idle())) else { return false };
        let mut w = Writer { buf: std::mem::take(out) };
        let mut stop = cow.end.min(cow.cursor.saturating_add(slots));
        for id in cow.cursor..stop {
            if w.buf.len() >= bytes {
                stop = id;
                break;
            }
            match cow.saved.remove(&id) {
                Some(Some(saved)) => w.buf.extend_from_slice(&saved),
                Some(None) => {}
                None => {
                    let s = self.store.slot(id);
                    if !s.is_vacant() {
                        write_record(&mut w, &self.store, id);
                    }
                }
            }
        }
        cow.cursor = stop;
        *out = w.into_inner();
        let done = stop == cow.end;
        debug_assert!(!done || cow.saved.is_empty(), "saved records past the end");
        self.store.set_cow((!done).then(|| Box::new(cow)));
        done
    }

    /// Forgets the snapshot in progress.
    pub fn abandon_snapshot(&mut self) {
        self.store.set_cow(None);
    }

    /// Rebuilds a tree from a snapshot body.
    pub fn read_snapshot(bytes: &[u8]) -> Result<DataTree, DecodeError> {
        Self::read_snapshot_growing(bytes, 0)
    }

    /// Rebuilds a tree from a snapshot body, with its lookup table sized for up to `more`
    /// nodes beyond the snapshot's (at most as many again): the creates a log replayed
    /// after it may add. The table is sized to end close to full, so a replay that
    /// outgrew it would make every part of it double.
    pub fn read_snapshot_growing(bytes: &[u8], more: usize) -> Result<DataTree, DecodeError> {
        let mut r = Reader::new(bytes);
        if r.read_i32()? != MAGIC {
            return Err(DecodeError::Invalid("not a Corral snapshot"));
        }
        let version = r.read_i32()?;
        if version != VERSION && version != 1 {
            return Err(DecodeError::Invalid("unknown snapshot version"));
        }
        let mut t = DataTree::empty();
        t.last_zxid = r.read_i64()?;
        let sessions = r.read_vec(|r| Ok((r.read_i64()?, r.read_i32()?, r.read_buffer()?)))?;
        for (id, timeout_ms, passwd) in sessions {
            t.sessions.insert(id, SessionInfo { timeout_ms, passwd });
        }
        if version == 1 {
            t.read_v1_nodes(&mut r, more)?;
            return Ok(t);
        }
        let acl_lists = r.read_vec(|r| Ok((r.read_i32()?, read_acls(r)?)))?;
        let mut acls: HashMap<i32, u32> = HashMap::with_capacity(acl_lists.len());
        for (number, list) in acl_lists {
            if acls.insert(number, t.store.intern_acl(&list)).is_some() {
                return Err(DecodeError::Invalid("an ACL number twice"));
            }
        }
        let count = r.read_i64()?;
        if count < 1 || count as usize > r.remaining() / MIN_RECORD {
            return Err(DecodeError::Invalid("bad node count"));
        }
        let count = count as usize;
        t.store.reserve(count + more.min(count));
        // The writer's slot ids, mapped to ours (ours are dense: 0, 1, 2 ... in order).
        let mut ids = IdMap::new(count);
        // Each node's path length, for the data size.
        let mut path_len: Vec<u32> = Vec::with_capacity(count);
        // Records whose parent has not come yet, by that parent's id.
        let mut waiting: hashbrown::HashMap<u32, Vec<(u32, Record)>> = hashbrown::HashMap::new();
        for i in 0..count {
            let (id, rec) = read_record(&mut r, &acls)?;
            if i == 0 {
                if rec.parent != NIL || !rec.name.is_empty() {
                    return Err(DecodeError::Invalid("the root is not first"));
                }
            } else if rec.parent == NIL || path::validate_name(rec.name).is_err() {
                return Err(DecodeError::Invalid("a second root, or a bad name"));
            }
            match (rec.parent, ids.get(rec.parent)) {
                (NIL, _) => t.place(&mut ids, &mut path_len, id, NIL, rec)?,
                (_, Some(parent)) => t.place(&mut ids, &mut path_len, id, parent, rec)?,
                (p, None) => {
                    waiting.entry(p).or_default().push((id, rec));
                    continue;
                }
            }
            // Whoever waited for this node (and for them, in turn) can come in now.
            if waiting.is_empty() {
                continue;
            }
            let mut ready = vec![id];
            while let Some(p) = ready.pop() {
                let ours = ids.get(p).expect("placed just before");
                for (child, rec) in waiting.remove(&p).unwrap_or_default() {
                    t.place(&mut ids, &mut path_len, child, ours, rec)?;
                    ready.push(child);
                }
            }
        }
        if !waiting.is_empty() {
            return Err(DecodeError::Invalid("a node without its parent"));
        }
        if r.remaining() != 0 {
            return Err(DecodeError::Invalid("trailing bytes after the snapshot"));
        }
        Ok(t)
    }

    /// The nodes of a version 1 body (written by Corral before slot-ordered records):
    /// the ACL lists, numbered by position, then every node parents first as its path,
    /// data, ACL number and the nine stored stat fields at full width.
    fn read_v1_nodes(&mut self, r: &mut Reader, more: usize) -> Result<(), DecodeError> {
        let acl_lists = r.read_vec(read_acls)?;
        let acls: Vec<u32> = acl_lists.iter().map(|a| self.store.intern_acl(a)).collect();
        let count = r.read_i64()?;
        if count < 1 || count as usize > r.remaining() {
            return Err(DecodeError::Invalid("bad node count"));
        }
        self.store.reserve(count as usize + more.min(count as usize));
        for i in 0..count {
            let p = r.read_opt_buffer()?.ok_or(DecodeError::Invalid("null path"))?;
            let p = std::str::from_utf8(p).map_err(|_| DecodeError::InvalidUtf8)?;
            let data = r.read_opt_buffer()?;
            let acl = *acls.get(r.read_i32()? as usize).ok_or(DecodeError::Invalid("bad ACL index"))?;
            let stat = NodeStat {
                czxid: r.read_i64()?,
                mzxid: r.read_i64()?,
                pzxid: r.read_i64()?,
                ctime: r.read_i64()?,
                mtime: r.read_i64()?,
                version: r.read_i32()?,
                cversion: r.read_i32()?,
                aversion: r.read_i32()?,
                ephemeral_owner: r.read_i64()?,
            };
            if (i == 0) != (p == "/") || path::validate(p).is_err() {
                return Err(DecodeError::Invalid("root not first, or a bad path"));
            }
            let parent = match path::parent(p) {
                None => NIL,
                Some(pp) => self.store.lookup(pp).ok_or(DecodeError::Invalid("node before its parent"))?,
            };
            if parent != NIL && self.store.child(parent, path::name(p)).is_some() {
                return Err(DecodeError::Invalid("a node twice"));
            }
            self.insert_under(parent, p, data, stat, acl);
        }
        if r.remaining() != 0 {
            return Err(DecodeError::Invalid("trailing bytes after the snapshot"));
        }
        Ok(())
    }

    /// Adds a snapshot record under `parent` (our id; [`NIL`] for the root).
    fn place(
        &mut self,
        ids: &mut IdMap,
        path_len: &mut Vec<u32>,
        their_id: u32,
        parent: u32,
        rec: Record,
    ) -> Result<(), DecodeError> {
        let id = self.store.insert(parent, rec.name, rec.data, rec.stat, rec.acl).ok_or(DecodeError::Invalid("a node twice"))?;
        if !ids.insert(their_id, id) {
            return Err(DecodeError::Invalid("a slot id twice"));
        }
        // "/" for the root; "/a" under it; "/a/b" below that.
        let len = match parent {
            NIL => 1,
            0 => 1 + rec.name.len() as u32,
            p => path_len[p as usize] + 1 + rec.name.len() as u32,
        };
        debug_assert_eq!(id as usize, path_len.len(), "ids are handed out in order while loading");
        path_len.push(len);
        self.data_bytes += (len as usize + rec.data.map_or(0, <[u8]>::len)) as u64;
        if EphemeralType::of(rec.stat.ephemeral_owner) != EphemeralType::Persistent {
            let p = self.path_of(id);
            self.track(&p, rec.stat.ephemeral_owner);
        }
        Ok(())
    }

    /// The path of node `id`, from its ancestors' names.
    fn path_of(&self, mut id: u32) -> String {
        let mut names = Vec::new();
        while id != 0 {
            let s = self.store.slot(id);
            names.push(s.name());
            id = s.parent;
        }
        names.reverse();
        if names.is_empty() {
            "/".to_string()
        } else {
            names.iter().flat_map(|n| ["/", n]).collect()
        }
    }
}

/// A node as a snapshot lists it (borrowed from the body).
struct Record<'a> {
    parent: u32,
    acl: u32,
    name: &'a str,
    data: Option<&'a [u8]>,
    stat: NodeStat,
}

/// The writer's slot ids mapped to ours, while loading. The writer's ids are its slots',
/// mostly dense (its free slots are the gaps), so a vector indexed by them serves, up to a
/// bound on what a damaged file can make it allocate (four per node the file holds); ids
/// past it go to a map.
struct IdMap {
    dense: Vec<u32>,
    limit: usize,
    sparse: HashMap<u32, u32>,
}

impl IdMap {
    fn new(count: usize) -> IdMap {
        IdMap { dense: Vec::with_capacity(count), limit: count.saturating_mul(4) + 4096, sparse: HashMap::new() }
    }

    fn get(&self, theirs: u32) -> Option<u32> {
        match theirs as usize {
            i if i < self.limit => self.dense.get(i).copied().filter(|&ours| ours != NIL),
            _ => self.sparse.get(&theirs).copied(),
        }
    }

    /// Maps `theirs` to `ours`; false (and no change) if `theirs` was mapped already.
    fn insert(&mut self, theirs: u32, ours: u32) -> bool {
        match theirs as usize {
            i if i < self.limit => {
                if i >= self.dense.len() {
                    self.dense.resize(i + 1, NIL);
                }
                if self.dense[i] != NIL {
                    return false;
                }
                self.dense[i] = ours;
                true
            }
            _ => match self.sparse.entry(theirs) {
                hashbrown::hash_map::Entry::Occupied(_) => false,
                hashbrown::hash_map::Entry::Vacant(v) => {
                    v.insert(ours);
                    true
                }
            },
        }
    }
}

fn read_record<'a>(r: &mut Reader<'a>, acls: &HashMap<i32, u32>) -> Result<(u32, Record<'a>), DecodeError> {
    let small = |v: u64| u32::try_from(v).map_err(|_| DecodeError::Invalid("a number out of range"));
    let id = small(r.read_varint()?)?;
    let parent = small(r.read_varint()?)?.wrapping_sub(1);
    let acl = i32::try_from(r.read_varint()?).map_err(|_| DecodeError::Invalid("bad ACL number"))?;
    let acl = *acls.get(&acl).ok_or(DecodeError::Invalid("bad ACL number"))?;
    let name_len = r.read_varint()?;
    let name = r.read_raw(usize::try_from(name_len).map_err(|_| DecodeError::Invalid("bad name length"))?)?;
    let name = std::str::from_utf8(name).map_err(|_| DecodeError::InvalidUtf8)?;
    let data = match r.read_varint()? {
        0 => None,
        // The store holds at most 4 GiB of data per node.
        n => Some(r.read_raw(u32::try_from(n - 1).map_err(|_| DecodeError::Invalid("bad data length"))? as usize)?),
    };
    let stat = read_stat(r)?;
    if id == NIL {
        return Err(DecodeError::Invalid("bad slot id"));
    }
    Ok((id, Record { parent, acl, name, data, stat }))
}

// A stat as a record stores it: the create zxid and time, then only the fields that
// differ from what a node that was never changed has (most nodes are such leaves).
const MZXID: u8 = 1;
const PZXID: u8 = 2;
const MTIME: u8 = 4;
const VERSION_SET: u8 = 8;
const CVERSION: u8 = 16;
const AVERSION: u8 = 32;
const OWNER: u8 = 64;

fn zigzag(v: i32) -> u64 {
    ((v << 1) ^ (v >> 31)) as u32 as u64
}

fn unzigzag(v: u64) -> Result<i32, DecodeError> {
    let v = u32::try_from(v).map_err(|_| DecodeError::Invalid("a version out of range"))?;
    Ok(((v >> 1) as i32) ^ -((v & 1) as i32))
}

fn write_stat(w: &mut Writer, s: &NodeStat) {
    let flags = [
        (s.mzxid != s.czxid, MZXID),
        (s.pzxid != s.czxid, PZXID),
        (s.mtime != s.ctime, MTIME),
        (s.version != 0, VERSION_SET),
        (s.cversion != 0, CVERSION),
        (s.aversion != 0, AVERSION),
        (s.ephemeral_owner != 0, OWNER),
    ]
    .iter()
    .filter(|(set, _)| *set)
    .fold(0u8, |f, (_, bit)| f | bit);
    w.raw(&[flags]).i64(s.czxid).i64(s.ctime);
    for (bit, v) in [(MZXID, s.mzxid), (PZXID, s.pzxid), (MTIME, s.mtime)] {
        if flags & bit != 0 {
            w.i64(v);
        }
    }
    for (bit, v) in [(VERSION_SET, s.version), (CVERSION, s.cversion), (AVERSION, s.aversion)] {
        if flags & bit != 0 {
            w.varint(zigzag(v));
        }
    }
    if flags & OWNER != 0 {
        w.i64(s.ephemeral_owner);
    }
}

fn read_stat(r: &mut Reader) -> Result<NodeStat, DecodeError> {
    let flags = r.read_raw(1)?[0];
    if flags & 0x80 != 0 {
        return Err(DecodeError::Invalid("unknown stat flags"));
    }
    let (czxid, ctime) = (r.read_i64()?, r.read_i64()?);
    let mut long = |bit: u8, default: i64| if flags & bit != 0 { r.read_i64() } else { Ok(default) };
    let (mzxid, pzxid, mtime) = (long(MZXID, czxid)?, long(PZXID, czxid)?, long(MTIME, ctime)?);
    let mut int = |bit: u8| if flags & bit != 0 { unzigzag(r.read_varint()?) } else { Ok(0) };
    let (version, cversion, aversion) = (int(VERSION_SET)?, int(CVERSION)?, int(AVERSION)?);
    let ephemeral_owner = if flags & OWNER != 0 { r.read_i64()? } else { 0 };
    Ok(NodeStat { czxid, mzxid, pzxid, ctime, mtime, version, cversion, aversion, ephemeral_owner })
}

#[cfg(test)]
mod tests {
    use crate::prep::{Caller, Prep, Settings};
    use crate::{DataTree, Txn, TxnHeader};
    use corral_proto::request::CreateRequest;
    use corral_proto::{Acl, DecodeError, Id, OpCode};
    use std::sync::Arc;
    use super::IdMap;

    fn build() -> DataTree {
        let mut t = DataTree::new();
        let c = Caller { session: 7, ids: Arc::new(vec![Id::new("ip", "127.0.0.1")]) };
        let settings = Settings { extended_types: true };
        let mut zxid = 0;
        let mut run = |t: &mut DataTree, txn: Txn| {
            zxid += 1;
            t.apply(&TxnHeader { session: 7, cxid: 0, zxid, time_ms: 1000 + zxid }, txn, &mut Vec::new());
        };
        run(&mut t, Txn::CreateSession { timeout_ms: 5000, passwd: vec![3; 16] });
        let reqs = [
            (OpCode::Create, "/a", 0, Some(b"x".to_vec())),
            (OpCode::Create, "/a/s-", 2, None),
            (OpCode::Create, "/a/e", 1, Some(vec![])),
            (OpCode::CreateContainer, "/c", 0, Some(b"c".to_vec())),
            (OpCode::CreateTtl, "/t", 5, Some(b"t".to_vec())),
        ];
        for (op, p, flags, data) in reqs {
            let acl = if p == "/a" { vec![Acl::new(31, "ip", "127.0.0.1")] } else { Acl::open_unsafe() };
            let req = CreateRequest { path: p.into(), data, acl, flags, ttl: if op == OpCode::CreateTtl { 60_000 } else { 0 } };
            let txn = Prep::new(&t, &c, settings).create(op, &req).unwrap();
            run(&mut t, Txn::Create(txn));
        }
        t
    }

    #[test]
    fn snapshot_round_trip_keeps_everything() {
        let t = build();
        let mut bytes = Vec::new();
        t.write_snapshot(&mut bytes).unwrap();
        let back = DataTree::read_snapshot(&bytes).unwrap();
        assert_eq!(back.digest(), t.digest());
        assert_eq!(back.node_count(), t.node_count());
        assert_eq!(back.last_zxid(), t.last_zxid());
        assert_eq!(back.data_bytes(), t.data_bytes());
        assert_eq!(back.ephemeral_count(), 1);
        assert_eq!(back.sessions(), t.sessions());
        assert_eq!(back.get("/a").unwrap().stat(), t.get("/a").unwrap().stat());
        assert_eq!(back.get("/a/s-0000000000").unwrap().data(), None);
        assert_eq!(back.expired_containers(i64::MAX), t.expired_containers(i64::MAX));
        // Damage anywhere is an error, never a panic.
        for cut in 0..bytes.len() {
            assert!(DataTree::read_snapshot(&bytes[..cut]).is_err());
        }
    }

    /// A bigger tree shaped by creates and deletes in a scrambled order (slots reused,
    /// siblings not adjacent in the slab, deep paths), written and read back.
    #[test]
    fn round_trip_of_a_churned_tree() {
        let mut t = DataTree::new();
        let mut zxid = 0;
        let mut apply = |t: &mut DataTree, txn: Txn| {
            zxid += 1;
            t.apply(&TxnHeader { session: 1, cxid: 0, zxid, time_ms: zxid }, txn, &mut Vec::new())
        };
        let create = |p: String, i: usize| {
            Txn::Create(crate::CreateTxn {
                path: p,
                data: (!i.is_multiple_of(7)).then(|| vec![i as u8; i % 50]),
                acl: if i.is_multiple_of(5) { Acl::read_unsafe() } else { Acl::open_unsafe() },
                ephemeral_owner: 0,
                parent_cversion: 1,
            })
        };
        let mut paths: Vec<String> = vec![];
        for i in 0..2000usize {
            // Parents picked pseudo-randomly among nodes made so far: deep, interleaved.
            let parent = if paths.is_empty() { "/".to_string() } else { paths[(i * 7919) % paths.len()].clone() };
            let p = crate::path::join(&parent, &format!("n{i}"));
            apply(&mut t, create(p.clone(), i));
            paths.push(p);
        }
        // Delete some leaves, then create more (reusing their slots).
        let mut deleted = 0;
        for p in paths.iter().rev().step_by(3) {
            if t.get(p).is_some_and(|n| n.num_children() == 0) {
                apply(&mut t, Txn::Delete { path: p.clone() });
                deleted += 1;
            }
        }
        assert!(deleted > 100);
        for i in 2000..2300usize {
            apply(&mut t, create(format!("/late{i}"), i));
        }
        let mut bytes = Vec::new();
        t.write_snapshot(&mut bytes).unwrap();
        let back = DataTree::read_snapshot(&bytes).unwrap();
        assert_eq!(back.digest(), t.digest());
        assert_eq!(back.node_count(), t.node_count());
        assert_eq!(back.data_bytes(), t.data_bytes());
        for p in &paths {
            match (t.get(p), back.get(p)) {
                (None, None) => {}
                (Some(a), Some(b)) => {
                    assert_eq!(a.stat(), b.stat(), "{p}");
                    assert_eq!(a.data(), b.data(), "{p}");
                    assert_eq!(a.acl(), b.acl(), "{p}");
                    assert_eq!(a.child_names(), b.child_names(), "{p}");
                }
                (a, b) => panic!("{p}: {:?} vs {:?}", a.is_some(), b.is_some()),
            }
        }
    }

    /// A snapshot body cut into its header and its records.
    fn split(bytes: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
        let t = DataTree::read_snapshot(bytes).unwrap();
        let mut r = corral_proto::Reader::new(bytes);
        r.read_i32().unwrap();
        r.read_i32().unwrap();
        r.read_i64().unwrap();
        r.read_vec(|r| Ok((r.read_i64()?, r.read_i32()?, r.read_buffer()?))).unwrap();
        let acls = r.read_vec(|r| Ok((r.read_i32()?, corral_proto::read_acls(r)?))).unwrap();
        let acls: hashbrown::HashMap<i32, u32> = acls.iter().map(|(n, _)| (*n, 0)).collect();
        assert_eq!(r.read_i64().unwrap() as usize, t.node_count());
        let header = bytes[..bytes.len() - r.remaining()].to_vec();
        let mut records = Vec::new();
        while r.remaining() > 0 {
            let before = r.remaining();
            super::read_record(&mut r, &acls).unwrap();
            let at = bytes.len() - before;
            records.push(bytes[at..at + before - r.remaining()].to_vec());
        }
        (header, records)
    }

    fn join(header: &[u8], records: &[Vec<u8>]) -> Vec<u8> {
        let mut out = header.to_vec();
        let count = out.len() - 8;
        out[count..].copy_from_slice(&(records.len() as i64).to_be_bytes());
        records.iter().for_each(|r| out.extend_from_slice(r));
        out
    }

    #[test]
    fn records_in_any_order_of_parents_and_children_read_the_same() {
        let t = build();
        let mut bytes = Vec::new();
        t.write_snapshot(&mut bytes).unwrap();
        let (header, mut records) = split(&bytes);
        assert_eq!(records.len(), t.node_count());
        // Children before parents (the root stays first).
        records[1..].reverse();
        let back = DataTree::read_snapshot(&join(&header, &records)).unwrap();
        assert_eq!(back.digest(), t.digest());
        assert_eq!(back.data_bytes(), t.data_bytes());
        assert_eq!(back.ephemeral_count(), 1);
        assert_eq!(back.expired_containers(i64::MAX), t.expired_containers(i64::MAX));
    }

    #[test]
    fn a_node_twice_an_orphan_or_a_misplaced_root_is_an_error() {
        let t = build();
        let mut bytes = Vec::new();
        t.write_snapshot(&mut bytes).unwrap();
        let (header, records) = split(&bytes);
        let err = |records: &[Vec<u8>]| match DataTree::read_snapshot(&join(&header, records)) {
            Err(DecodeError::Invalid(why)) => why,
            other => panic!("read: {:?}", other.map(|t| t.node_count())),
        };
        let mut twice = records.clone();
        twice.push(records[4].clone());
        assert_eq!(err(&twice), "a node twice");
        // The same slot id, under another name.
        let mut other_name = records[4].clone();
        let name_at = 4; // Three one-byte varints and the name's length come first.
        other_name[name_at] = other_name[name_at].wrapping_add(1);
        let mut same_id = records.clone();
        same_id.push(other_name);
        assert_eq!(err(&same_id), "a slot id twice");
        // A node whose parent is missing.
        let id_of = |r: &[u8]| corral_proto::Reader::new(r).read_varint().unwrap() as i64;
        let parent_of = |r: &[u8]| {
            let mut r = corral_proto::Reader::new(r);
            r.read_varint().unwrap();
            r.read_varint().unwrap() as i64 - 1
        };
        let a = records.iter().find(|r| records.iter().any(|c| parent_of(c) == id_of(r) && id_of(r) != 0)).unwrap();
        let orphaned: Vec<Vec<u8>> = records.iter().filter(|r| *r != a).cloned().collect();
        assert_eq!(err(&orphaned), "a node without its parent");
        let mut root_late = records.clone();
        root_late.swap(0, 1);
        assert_eq!(err(&root_late), "the root is not first");
        // The unchanged records still read.
        assert_eq!(DataTree::read_snapshot(&join(&header, &records)).unwrap().digest(), t.digest());
    }

    /// A snapshot written a few slots at a time while creates, deletes (freeing slots for
    /// reuse), data and ACL changes and sessions come and go is the tree of the zxid it
    /// began at, whatever the slices and the changes.
    #[test]
    fn a_snapshot_in_slices_is_the_tree_it_began_at() {
        for seed in 1..=40u64 {
            let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let mut next = move |n: u64| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng % n
            };
            let mut t = DataTree::new();
            let mut zxid = 0;
            let mut paths: Vec<String> = vec!["/".into()];
            let mut sessions: Vec<i64> = vec![];
            let mut step = |t: &mut DataTree, paths: &mut Vec<String>, sessions: &mut Vec<i64>, r: u64, pick: u64| {
                zxid += 1;
                let hdr = |session| TxnHeader { session, cxid: 0, zxid, time_ms: zxid };
                let target = paths[pick as usize % paths.len()].clone();
                let txn = match r % 8 {
                    0..=2 => {
                        let owner = match r % 5 {
                            0 if !sessions.is_empty() => sessions[pick as usize % sessions.len()],
                            1 => crate::tree::CONTAINER_OWNER,
                            _ => 0,
                        };
                        let p = crate::path::join(&target, &format!("n{zxid}"));
                        if owner == 0 {
                            paths.push(p.clone());
                        }
                        Txn::Create(crate::CreateTxn {
                            path: p,
                            data: (!r.is_multiple_of(3)).then(|| vec![zxid as u8; (r % 40) as usize]),
                            acl: if r.is_multiple_of(4) { Acl::read_unsafe() } else { vec![Acl::new(31, "ip", &format!("10.0.0.{}", r % 3))] },
                            ephemeral_owner: owner,
                            parent_cversion: zxid as i32,
                        })
                    }
                    3 => {
                        paths.retain(|p| *p != target || target == "/");
                        Txn::Delete { path: target }
                    }
                    4 => Txn::SetData { path: target, data: Some(vec![7; (r % 30) as usize]), version: zxid as i32 },
                    5 => Txn::SetAcl { path: target, acl: vec![Acl::new(1, "ip", &format!("10.1.0.{}", r % 4))], version: 2 },
                    6 => {
                        sessions.push(zxid);
                        t.apply(&hdr(zxid), Txn::CreateSession { timeout_ms: 1000, passwd: vec![1; 16] }, &mut Vec::new());
                        return;
                    }
                    _ => match sessions.pop() {
                        Some(s) => {
                            t.apply(&hdr(s), Txn::CloseSession, &mut Vec::new());
                            return;
                        }
                        None => Txn::Delete { path: target },
                    },
                };
                t.apply(&hdr(1), txn, &mut Vec::new());
            };
            for _ in 0..400 {
                let (r, pick) = (next(1 << 20), next(1 << 20));
                step(&mut t, &mut paths, &mut sessions, r, pick);
            }
            let mut then = Vec::new();
            t.write_snapshot(&mut then).unwrap();
            let then = DataTree::read_snapshot(&then).unwrap();

            let (z, mut body) = t.begin_snapshot();
            assert_eq!((z, t.snapshot_in_progress()), (t.last_zxid(), Some(z)));
            loop {
                for _ in 0..next(6) {
                    let (r, pick) = (next(1 << 20), next(1 << 20));
                    step(&mut t, &mut paths, &mut sessions, r, pick);
                }
                // A slice ends after so many slots, or bytes (as the server's does).
                let bytes = if next(2) == 0 { usize::MAX } else { body.len() + 1 + next(3000) as usize };
                if t.continue_snapshot(1 + next(12) as u32, bytes, &mut body) {
                    break;
                }
            }
            assert_eq!(t.snapshot_in_progress(), None);
            assert!(!t.continue_snapshot(10, usize::MAX, &mut body), "nothing in progress");
            let back = DataTree::read_snapshot(&body).unwrap();
            assert_eq!(back.digest(), then.digest(), "seed {seed}");
            assert_eq!(back.last_zxid(), z);
            assert_eq!((back.node_count(), back.data_bytes()), (then.node_count(), then.data_bytes()), "seed {seed}");
            assert_eq!(back.ephemeral_count(), then.ephemeral_count());
            assert_ne!(t.digest(), then.digest(), "the tree did change meanwhile (seed {seed})");
        }
    }

    #[test]
    fn a_version_1_body_still_reads() {
        // Written the way Corral wrote snapshots before version 2.
        let open = Acl::open_unsafe();
        let mut w = corral_proto::Writer::new();
        w.i32(super::MAGIC).i32(1).i64(9);
        w.i32(1).i64(0x77).i32(4000).buffer(&[5; 16]); // one session
        w.i32(1);
        corral_proto::write_acls(&mut w, &open);
        w.i64(4);
        let stat = |w: &mut corral_proto::Writer, z: i64, owner: i64| {
            w.i64(z).i64(z).i64(z).i64(1000 + z).i64(1000 + z).i32(0).i32(0).i32(0).i64(owner);
        };
        for (p, data, z, owner) in [("/", None, 0, 0), ("/zookeeper", Some(&b""[..]), 0, 0), ("/a", Some(&b"hi"[..]), 7, 0), ("/a/e", None, 9, 0x77)] {
            w.buffer(p.as_bytes());
            match data {
                Some(d) => w.buffer(d),
                None => w.null_buffer(),
            };
            w.i32(0);
            stat(&mut w, z, owner);
        }
        let t = DataTree::read_snapshot(&w.into_inner()).unwrap();
        assert_eq!(t.last_zxid(), 9);
        assert_eq!(t.node_count(), 4);
        assert_eq!(t.get("/a").unwrap().data(), Some(&b"hi"[..]));
        assert_eq!(t.get("/a/e").unwrap().data(), None);
        assert_eq!(t.get("/a").unwrap().num_children(), 1);
        assert_eq!(t.ephemeral_count(), 1);
        assert_eq!(t.sessions().len(), 1);
        // And it writes back as version 2, the same tree.
        let mut again = Vec::new();
        t.write_snapshot(&mut again).unwrap();
        assert_eq!(DataTree::read_snapshot(&again).unwrap().digest(), t.digest());
    }

    #[test]
    fn a_slice_of_big_nodes_stops_at_its_byte_budget() {
        let mut t = DataTree::new();
        let big = vec![7u8; 256 * 1024];
        for i in 0..40 {
            let txn = Txn::Create(crate::CreateTxn {
                path: format!("/n{i}"),
                data: Some(big.clone()),
                acl: vec![Acl { perms: 31, id: Id { scheme: "world".into(), id: "anyone".into() } }],
                ephemeral_owner: 0,
                parent_cversion: i + 1,
            });
            t.apply(&TxnHeader { session: 1, cxid: 0, zxid: i as i64 + 1, time_ms: 5 }, txn, &mut Vec::new());
        }
        let (_, mut body) = t.begin_snapshot();
        let budget = 1024 * 1024;
        let mut slices = 0;
        loop {
            let mut chunk = Vec::new();
            let done = t.continue_snapshot(2048, budget, &mut chunk);
            assert!(chunk.len() < budget + big.len() + 100, "a slice of {} bytes", chunk.len());
            body.extend_from_slice(&chunk);
            slices += 1;
            if done {
                break;
            }
        }
        assert!(slices >= 10, "40 nodes of 256 KiB in slices of about 1 MiB: {slices}");
        let back = DataTree::read_snapshot(&body).unwrap();
        assert_eq!(back.digest(), t.digest());
    }

    #[test]
    fn an_abandoned_snapshot_saves_nothing_more() {
        let mut t = build();
        let (_, mut body) = t.begin_snapshot();
        t.abandon_snapshot();
        assert_eq!(t.snapshot_in_progress(), None);
        assert!(!t.continue_snapshot(100, usize::MAX, &mut body));
        t.apply(
            &TxnHeader { session: 7, cxid: 0, zxid: 100, time_ms: 5 },
            Txn::SetData { path: "/a".into(), data: Some(b"y".to_vec()), version: 1 },
            &mut Vec::new(),
        );
        assert!(t.store.cow().is_none());
    }

    #[test]
    fn digest_sees_every_change() {
        let a = build();
        let mut b = build();
        assert_eq!(a.digest(), b.digest());
        b.apply(
            &TxnHeader { session: 7, cxid: 0, zxid: 100, time_ms: 5 },
            Txn::SetData { path: "/a".into(), data: Some(b"y".to_vec()), version: 1 },
            &mut Vec::new(),
        );
        assert_ne!(a.digest(), b.digest());
    }

    #[test]
    fn slot_ids_map_densely_and_past_the_bound_sparsely() {
        let mut m = IdMap::new(10);
        assert_eq!(m.limit, 4096 + 40);
        for (theirs, ours) in [(0, 0), (3, 1), (7, 2), (5000, 3), (u32::MAX - 1, 4)] {
            assert_eq!(m.get(theirs), None);
            assert!(m.insert(theirs, ours));
            assert!(!m.insert(theirs, 9), "{theirs} twice");
            assert_eq!(m.get(theirs), Some(ours));
        }
        assert_eq!((m.get(1), m.get(4999), m.get(5001)), (None, None, None));
        assert_eq!(m.dense.len(), 8, "ids past the bound do not grow the vector");
        assert_eq!(m.sparse.len(), 2);
    }
}
