//! Where the nodes live: a compact store built for a million znodes.
//!
//! Every node is one fixed-size slot in a chunked slab, named by a `u32` id, plus one heap
//! block holding its name and data together ([`Blob`]). There is no per-node map key, no
//! per-node child collection and no per-node ACL pointer:
//!
//! - **Lookup** goes through a hash table of ids keyed by (parent id, name), so a path
//!   is found by walking its components; the table stores 4 bytes per node. It is split
//!   into [`SHARDS`] tables or more that grow one at a time: growing one table of a
//!   million ids stops the loop for 0.1–0.2 s, growing one of a 256th of them does not.
//!   A bulk load (a snapshot) chooses how many so that each ends close to full.
//! - **Children** form an intrusive doubly linked list through the slots (next, previous
//!   in the slot; the first child in the parent's [`Ext`]), so adding or removing a child
//!   is O(1) and allocates nothing.
//! - **Rarely-set Stat fields** (mzxid, mtime, pzxid, the versions, the owner) and a
//!   parent's child list live in a second slab of [`Ext`] records, which a node's block
//!   names (see [`Blob`]) only once one of them leaves its default. A node created and
//!   never changed (most nodes: leaves written once) has none, and its slot is 32 bytes;
//!   a node that has one pays 56 more.
//! - **ACLs** are numbered in a reference-counted table (most nodes share one list); the
//!   node's block keeps the number, in no bytes at all for list 0 (see [`Blob`]).
//! - The slabs grow by fixed chunks, never by doubling, so growth neither copies the
//!   nodes nor leaves half a slab unused.
//!
//! Freed slots and extensions go on free lists threaded through them and are reused first.
//!
//! While a snapshot is being written slot by slot ([`Cow`]), the first change to a node
//! the snapshot has not reached yet saves that node's record as it was: the snapshot
//! stays the tree of one zxid while the tree goes on changing, at the cost of the nodes
//! changed meanwhile.

use super::blob::{Blob, Meta, MAX_NAME, NO_EXT};
use super::NodeStat;
use corral_proto::Acl;
use hashbrown::{DefaultHashBuilder, HashMap, HashTable};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

/// "No node": the root's parent, the end of a child list, the end of a free list. (A node
/// without an [`Ext`] has [`NO_EXT`], the same value, so no extension is ever numbered
/// that: [`Chunked::push`] refuses it.)
pub(crate) const NIL: u32 = u32::MAX;
const _: () = assert!(NIL == NO_EXT);
const CHUNK_BITS: u32 = 12;
const CHUNK: usize = 1 << CHUNK_BITS;
/// How many tables the lookup index is split into at least (see the module docs).
const SHARDS: usize = 256;

/// One node: what every node has. The blob pointer is thin ([`Blob`]) and the create
/// zxid and time take 6 bytes each ([`Stamp`]): 32 bytes per slot.
#[derive(Debug)]
pub(crate) struct Slot {
    /// The name and data, the ACL list's number, the number of this node's [`Ext`] if it
    /// has one (while every field in it has its default, it has none), and czxid and ctime
    /// if the stamp is [`Stamp::IN_BLOCK`].
    blob: Blob,
    pub parent: u32,
    next: u32,
    prev: u32,
    stamp: Stamp,
}

/// A node's czxid and ctime in 12 bytes: 48 bits each, which holds every zxid of the
/// first 65,535 epochs and every ctime from 1970 to the year 10,889. Values outside
/// that (a negative or far-future clock, a later epoch) go in the node's block
/// ([`Meta::stamp`]), and the stamp says so ([`Stamp::IN_BLOCK`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp([u32; 3]);

impl Stamp {
    const BITS: u32 = 48;
    const MASK: u64 = (1 << Self::BITS) - 1;
    /// "In the block": a czxid of all ones, which no packed stamp has.
    const IN_BLOCK: Stamp = Stamp([u32::MAX, 0xffff, 0]);

    /// The packed stamp, or `None` if the values need the block.
    fn pack(czxid: i64, ctime: i64) -> Option<Stamp> {
        let fits = |v: i64| (0..Self::MASK as i64).contains(&v);
        if !fits(czxid) || !fits(ctime) {
            return None;
        }
        let v = czxid as u128 | (ctime as u128) << Self::BITS;
        Some(Stamp([v as u32, (v >> 32) as u32, (v >> 64) as u32]))
    }

    fn unpack(self) -> (i64, i64) {
        let v = self.0[0] as u128 | (self.0[1] as u128) << 32 | (self.0[2] as u128) << 64;
        ((v as u64 & Self::MASK) as i64, ((v >> Self::BITS) as u64 & Self::MASK) as i64)
    }
}

/// The part of a node most nodes leave at its defaults (see [`Ext::of`]). Once a node has
/// one it keeps it until the node is removed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ext {
    pub mzxid: i64,
    pub pzxid: i64,
    pub mtime: i64,
    pub owner: i64,
    pub version: i32,
    pub cversion: i32,
    pub aversion: i32,
    /// Kept with the child list, by the store alone.
    num_children: u32,
    /// The head of the child list; on the free list, the next free extension.
    first_child: u32,
}

impl Ext {
    /// What a node without an extension has: never modified, no children ever, no owner.
    fn of(s: &Slot) -> Ext {
        let (czxid, ctime) = s.stamp();
        Ext {
            mzxid: czxid,
            pzxid: czxid,
            mtime: ctime,
            owner: 0,
            version: 0,
            cversion: 0,
            aversion: 0,
            num_children: 0,
            first_child: NIL,
        }
    }
}

impl Slot {
    pub fn name_bytes(&self) -> &[u8] {
        self.blob.name()
    }

    pub fn name(&self) -> &str {
        // Names are only ever stored from a `&str` (see `Store::insert`).
        std::str::from_utf8(self.name_bytes()).unwrap_or_default()
    }

    pub fn data(&self) -> Option<&[u8]> {
        self.blob.data()
    }

    pub fn data_len(&self) -> usize {
        self.data().map_or(0, <[u8]>::len)
    }

    pub fn is_vacant(&self) -> bool {
        self.blob.is_vacant()
    }

    /// The number of the node's ACL list.
    pub fn acl(&self) -> u32 {
        self.blob.meta().acl
    }

    /// The node's czxid and ctime.
    pub fn stamp(&self) -> (i64, i64) {
        match self.stamp {
            Stamp::IN_BLOCK => self.blob.meta().stamp.expect("a stamp in the block"),
            packed => packed.unpack(),
        }
    }
}

/// A vector that grows a fixed chunk at a time: growing never copies what is there, and
/// at most one chunk is unused.
#[derive(Debug)]
struct Chunked<T> {
    chunks: Vec<Vec<T>>,
    len: u32,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked { chunks: Vec::new(), len: 0 }
    }
}

impl<T> Chunked<T> {
    fn get(&self, id: u32) -> &T {
        &self.chunks[(id >> CHUNK_BITS) as usize][id as usize & (CHUNK - 1)]
    }

    fn get_mut(&mut self, id: u32) -> &mut T {
        &mut self.chunks[(id >> CHUNK_BITS) as usize][id as usize & (CHUNK - 1)]
    }

    fn len(&self) -> u32 {
        self.len
    }

    /// Appends `t` and returns its id.
    fn push(&mut self, t: T) -> u32 {
        if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        let id = self.len;
        assert!(id != NIL, "too many znodes");
        self.chunks.last_mut().unwrap().push(t);
        self.len += 1;
        id
    }
}

/// Room for one table's `share` of evenly spread hashes: the share plus four standard
/// deviations of it (and a little for tiny shares), so that no table of many overflows.
fn with_spread(share: usize) -> usize {
    share + 4 * share.isqrt() + 16
}

/// How many index tables to make for a store about to hold `nodes`: at least [`SHARDS`],
/// and as many as fill the largest power-of-two tables close to the 7/8 a hash table
/// holds before it grows. A fixed count would leave the tables between 44% and 88% full
/// depending on `nodes` (a table's size is a power of two); after a restart of a million
/// znodes that was 48% and 10 MiB of index, where 82% takes 6.
fn shards_for(nodes: usize) -> usize {
    // A table's share is at most u32::MAX / SHARDS = 2^24 ids, which 2^25 buckets hold.
    let mut buckets = 1usize << 25;
    while buckets >= 16 {
        let holds = buckets / 8 * 7;
        let mut share = holds.saturating_sub(16);
        while share > 0 && with_spread(share) > holds {
            share -= 1;
        }
        if share > 0 && nodes.div_ceil(share) >= SHARDS {
            return nodes.div_ceil(share);
        }
        buckets /= 2;
    }
    SHARDS
}

/// The slabs, the lookup table and the ACL table.
#[derive(Debug, Default)]
pub(crate) struct Store {
    slots: Chunked<Slot>,
    free: Option<u32>,
    live: usize,
    exts: Chunked<Ext>,
    free_ext: Option<u32>,
    /// [`SHARDS`] tables or more (see [`shards_for`]), or none before the first node.
    /// Their number never changes once chosen: it places every entry.
    index: Vec<HashTable<u32>>,
    hasher: DefaultHashBuilder,
    acls: AclTable,
    cow: Option<Box<Cow>>,
}

/// A snapshot in progress (see the module docs).
#[derive(Debug)]
pub(crate) struct Cow {
    /// The zxid the snapshot is of.
    pub zxid: i64,
    /// The next slot to write.
    pub cursor: u32,
    /// The slab's length when the snapshot began: slots made since are not in it.
    pub end: u32,
    /// Records of slots at or past the cursor as they were when the snapshot began, saved
    /// on their first change since (`None`: the slot was vacant).
    pub saved: hashbrown::HashMap<u32, Option<Box<[u8]>>>,
}

impl Cow {
    /// A placeholder while a slice is written.
    pub fn idle() -> Cow {
        Cow { zxid: 0, cursor: 0, end: 0, saved: Default::default() }
    }
}

impl Store {
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn slot(&self, id: u32) -> &Slot {
        self.slots.get(id)
    }

    /// The node's rarely-set fields, its defaults if it has no extension.
    pub fn ext(&self, id: u32) -> Ext {
        let s = self.slot(id);
        match s.blob.meta().ext {
            NO_EXT => Ext::of(s),
            e => *self.exts.get(e),
        }
    }

    pub fn stat(&self, id: u32) -> NodeStat {
        let (s, e) = (self.slot(id), self.ext(id));
        let (czxid, ctime) = s.stamp();
        NodeStat {
            czxid,
            mzxid: e.mzxid,
            pzxid: e.pzxid,
            ctime,
            mtime: e.mtime,
            version: e.version,
            cversion: e.cversion,
            aversion: e.aversion,
            ephemeral_owner: e.owner,
        }
    }

    pub fn num_children(&self, id: u32) -> u32 {
        match self.slot(id).blob.meta().ext {
            NO_EXT => 0,
            e => self.exts.get(e).num_children,
        }
    }

    /// If a snapshot in progress has yet to write node `id` and has not saved it yet, saves
    /// its record as it is now, before a change.
    fn save_for_snapshot(&mut self, id: u32) {
        let Some(c) = self.cow.as_deref() else { return };
        if id < c.cursor || id >= c.end || c.saved.contains_key(&id) {
            return;
        }
        let record = (!self.slot(id).is_vacant()).then(|| super::snapshot::record(self, id));
        if let Some(c) = self.cow.as_deref_mut() {
            c.saved.insert(id, record);
        }
    }

    /// Node `id`'s rarely-set fields, to change (a snapshot in progress saves the node
    /// first). The node gets an extension if it had none.
    pub fn ext_mut(&mut self, id: u32) -> &mut Ext {
        self.save_for_snapshot(id);
        self.ext_links_mut(id)
    }

    /// Node `id`'s extension, for its child list (not part of a snapshot record).
    fn ext_links_mut(&mut self, id: u32) -> &mut Ext {
        let e = self.ext_number(id);
        self.exts.get_mut(e)
    }

    /// The number of node `id`'s extension; the node gets one if it had none.
    fn ext_number(&mut self, id: u32) -> u32 {
        let s = self.slots.get(id);
        debug_assert!(!s.is_vacant(), "a vacant slot has no extension");
        let e = s.blob.meta().ext;
        if e != NO_EXT {
            return e;
        }
        let meta = self.meta_with_ext(id);
        // The block is made again with the number: once in the node's life.
        let s = self.slots.get_mut(id);
        s.blob = s.blob.with_meta(meta);
        meta.ext
    }

    /// What node `id`'s block holds besides its name and data, with an extension: its
    /// own, or a new one holding its defaults (for the caller to make the block again with).
    fn meta_with_ext(&mut self, id: u32) -> Meta {
        let s = self.slots.get(id);
        let meta = s.blob.meta();
        if meta.ext != NO_EXT {
            return meta;
        }
        let defaults = Ext::of(s);
        Meta { ext: self.new_ext(defaults), ..meta }
    }

    /// Numbers `ext` in the slab of extensions (reusing a freed one first).
    fn new_ext(&mut self, ext: Ext) -> u32 {
        match self.free_ext {
            Some(e) => {
                let slot = self.exts.get_mut(e);
                self.free_ext = (slot.first_child != NIL).then_some(slot.first_child);
                *slot = ext;
                e
            }
            None => self.exts.push(ext),
        }
    }

    /// Replaces node `id`'s data (its name stays), and hands out its extension to record
    /// the change in (setData changes its version, mzxid and mtime): the node's block is
    /// made once, with the new data and the extension's number.
    pub fn set_data(&mut self, id: u32, data: Option<&[u8]>) -> &mut Ext {
        self.save_for_snapshot(id);
        let meta = self.meta_with_ext(id);
        let s = self.slots.get_mut(id);
        s.blob = s.blob.with_data(data, meta);
        self.exts.get_mut(meta.ext)
    }

    /// One past the highest slot id ever used.
    pub fn slab_len(&self) -> u32 {
        self.slots.len()
    }

    pub fn cow(&self) -> Option<&Cow> {
        self.cow.as_deref()
    }

    pub fn cow_mut(&mut self) -> Option<&mut Cow> {
        self.cow.as_deref_mut()
    }

    pub fn set_cow(&mut self, cow: Option<Box<Cow>>) {
        self.cow = cow;
    }

    fn key_hash(hasher: &DefaultHashBuilder, parent: u32, name: &[u8]) -> u64 {
        let mut h = hasher.build_hasher();
        h.write_u32(parent);
        h.write(name);
        h.finish()
    }

    /// The index table a hash belongs to, of `tables`. Bits 32 to 56: a table places an
    /// entry by the low bits and tags it with the top seven, which must still vary within
    /// one table.
    fn shard(hash: u64, tables: usize) -> usize {
        ((hash >> 32) & 0x1ff_ffff) as usize % tables
    }

    /// The hash of a node already in the table, for when the table grows.
    fn rehash(slots: &Chunked<Slot>, hasher: &DefaultHashBuilder, id: u32) -> u64 {
        let s = slots.get(id);
        Self::key_hash(hasher, s.parent, s.name_bytes())
    }

    /// The child of `parent` called `name`.
    pub fn child(&self, parent: u32, name: &str) -> Option<u32> {
        let hash = Self::key_hash(&self.hasher, parent, name.as_bytes());
        self.index
            .get(Self::shard(hash, self.index.len()))?
            .find(hash, |&id| {
                let s = self.slot(id);
                s.parent == parent && s.name_bytes() == name.as_bytes()
            })
            .copied()
    }

    /// The node at an absolute path. The root is id 0; anything not starting with `/`,
    /// or with an empty component, names no node.
    pub fn lookup(&self, path: &str) -> Option<u32> {
        if self.live == 0 {
            return None;
        }
        let rest = path.strip_prefix('/')?;
        if rest.is_empty() {
            return Some(0);
        }
        rest.split('/').try_fold(0, |id, name| self.child(id, name))
    }

    /// Adds a node; `parent` is [`NIL`] only for the root, which must come first. Returns
    /// its id, or `None` (and changes nothing) if `parent` has a child of that name.
    pub fn insert(&mut self, parent: u32, name: &str, data: Option<&[u8]>, stat: NodeStat, acl: u32) -> Option<u32> {
        assert_eq!(parent == NIL, self.live == 0, "the root is the first node and the only one without a parent");
        // Checked before anything changes (the block is made after the index has the id).
        assert!(name.len() <= MAX_NAME, "znode name too long");
        assert!(data.is_none_or(|d| u32::try_from(d.len()).is_ok()), "znode data too long");
        let id = self.free.unwrap_or(self.slots.len());
        if parent != NIL {
            // One probe both finds a sibling of the same name and takes the place for this
            // one (under the id it is about to get).
            let hash = Self::key_hash(&self.hasher, parent, name.as_bytes());
            let (slots, hasher) = (&self.slots, &self.hasher);
            let same = |&id: &u32| {
                let s = slots.get(id);
                s.parent == parent && s.name_bytes() == name.as_bytes()
            };
            if self.index.is_empty() {
                self.index.resize_with(SHARDS, HashTable::new);
            }
            let i = Self::shard(hash, self.index.len());
            let table = &mut self.index[i];
            match table.entry(hash, same, |&id| Self::rehash(slots, hasher, id)) {
                hashbrown::hash_table::Entry::Occupied(_) => return None,
                hashbrown::hash_table::Entry::Vacant(v) => v.insert(id),
            };
        }
        // The parent's extension holds its child list.
        let parent_ext = (parent != NIL).then(|| self.ext_number(parent));
        let first_sibling = parent_ext.map_or(NIL, |e| self.exts.get(e).first_child);
        // What a node without an extension reads as (see `Ext::of`); any other stat needs
        // one, numbered before the block is made so that it is made once.
        let unchanged = NodeStat {
            czxid: stat.czxid,
            mzxid: stat.czxid,
            pzxid: stat.czxid,
            ctime: stat.ctime,
            mtime: stat.ctime,
            ..NodeStat::default()
        };
        let ext = if stat == unchanged {
            NO_EXT
        } else {
            self.new_ext(Ext {
                mzxid: stat.mzxid,
                pzxid: stat.pzxid,
                mtime: stat.mtime,
                owner: stat.ephemeral_owner,
                version: stat.version,
                cversion: stat.cversion,
                aversion: stat.aversion,
                num_children: 0,
                first_child: NIL,
            })
        };
        let packed = Stamp::pack(stat.czxid, stat.ctime);
        let meta = Meta { ext, acl, stamp: packed.is_none().then_some((stat.czxid, stat.ctime)) };
        let slot = Slot {
            blob: Blob::new(name.as_bytes(), data, meta),
            parent,
            next: first_sibling,
            prev: NIL,
            stamp: packed.unwrap_or(Stamp::IN_BLOCK),
        };
        if self.free == Some(id) {
            self.save_for_snapshot(id);
            let next = std::mem::replace(self.slots.get_mut(id), slot).next;
            self.free = (next != NIL).then_some(next);
        } else {
            assert_eq!(self.slots.push(slot), id);
        }
        self.live += 1;
        self.acls.retain(acl);
        if let Some(e) = parent_ext {
            if first_sibling != NIL {
                self.slots.get_mut(first_sibling).prev = id;
            }
            let p = self.exts.get_mut(e);
            p.first_child = id;
            p.num_children += 1;
        }
        Some(id)
    }

    /// Makes room for `additional` more nodes in the lookup table, so a bulk load does not
    /// rehash as it grows. Before the first child, this also chooses how many tables there
    /// are, so that each is filled close to its limit ([`shards_for`]).
    pub fn reserve(&mut self, additional: usize) {
        let (slots, hasher) = (&self.slots, &self.hasher);
        if self.index.is_empty() {
            self.index.resize_with(shards_for(additional), HashTable::new);
        }
        let share = additional.div_ceil(self.index.len());
        for table in &mut self.index {
            table.reserve(with_spread(share), |&id| Self::rehash(slots, hasher, id));
        }
    }

    /// Removes a node that has no children (and is not the root).
    pub fn remove(&mut self, id: u32) {
        assert!(self.num_children(id) == 0 && self.slot(id).parent != NIL, "only a childless non-root node can be removed");
        self.save_for_snapshot(id);
        let s = self.slot(id);
        let Meta { acl, ext, .. } = s.blob.meta();
        let (parent, prev, next) = (s.parent, s.prev, s.next);
        let hash = Self::key_hash(&self.hasher, parent, s.name_bytes());
        let i = Self::shard(hash, self.index.len());
        if let Ok(e) = self.index[i].find_entry(hash, |&x| x == id) {
            e.remove();
        }
        if prev == NIL {
            self.ext_links_mut(parent).first_child = next;
        } else {
            self.slots.get_mut(prev).next = next;
        }
        if next != NIL {
            self.slots.get_mut(next).prev = prev;
        }
        self.ext_links_mut(parent).num_children -= 1;
        self.acls.release(acl);
        if ext != NO_EXT {
            self.exts.get_mut(ext).first_child = self.free_ext.unwrap_or(NIL);
            self.free_ext = Some(ext);
        }
        let free = self.free.unwrap_or(NIL);
        let s = self.slots.get_mut(id);
        s.blob = Blob::vacant();
        s.stamp = Stamp([0; 3]);
        s.parent = NIL;
        s.next = free;
        self.free = Some(id);
        self.live -= 1;
    }

    /// Ids of a node's children, in no particular order.
    pub fn children(&self, id: u32) -> impl Iterator<Item = u32> + '_ {
        let mut next = self.ext(id).first_child;
        std::iter::from_fn(move || {
            let id = next;
            (id != NIL).then(|| {
                next = self.slot(id).next;
                id
            })
        })
    }

    pub fn acl(&self, id: u32) -> &Arc<[Acl]> {
        self.acls.get(id)
    }

    /// The number of an ACL list, adding it if new. It counts as used only once a node
    /// takes it ([`Store::insert`], [`Store::set_acl`]).
    pub fn intern_acl(&mut self, acl: &[Acl]) -> u32 {
        self.acls.intern(acl)
    }

    /// Gives node `id` ACL list `acl`, and hands out its extension to record the change in
    /// (setACL changes its aversion): the node's block is made once, with the new number
    /// and the extension's.
    pub fn set_acl(&mut self, id: u32, acl: u32) -> &mut Ext {
        self.save_for_snapshot(id);
        self.acls.retain(acl);
        let meta = self.meta_with_ext(id);
        let s = self.slots.get_mut(id);
        if s.blob.meta() != (Meta { acl, ..meta }) {
            s.blob = s.blob.with_meta(Meta { acl, ..meta });
        }
        // `meta` still has the old list's number.
        self.acls.release(meta.acl);
        self.exts.get_mut(meta.ext)
    }

    /// Distinct ACL lists in use, for a snapshot.
    pub fn acl_lists(&self) -> impl Iterator<Item = (u32, &Arc<[Acl]>)> {
        self.acls.in_use()
    }
}

/// Reference-counted ACL lists, numbered: a node's block stores the number (see [`Blob`]).
#[derive(Debug, Default)]
struct AclTable {
    /// Each list with the number of nodes that use it; a freed entry has 0 uses.
    lists: Vec<(Arc<[Acl]>, u32)>,
    ids: HashMap<Arc<[Acl]>, u32>,
    free: Vec<u32>,
}

impl AclTable {
    fn get(&self, id: u32) -> &Arc<[Acl]> {
        &self.lists[id as usize].0
    }

    fn intern(&mut self, acl: &[Acl]) -> u32 {
        if let Some(&id) = self.ids.get(acl) {
            return id;
        }
        let a: Arc<[Acl]> = acl.into();
        let id = match self.free.pop() {
            Some(id) => {
                self.lists[id as usize] = (a.clone(), 0);
                id
            }
            None => {
                self.lists.push((a.clone(), 0));
                self.lists.len() as u32 - 1
            }
        };
        self.ids.insert(a, id);
        id
    }

    fn retain(&mut self, id: u32) {
        self.lists[id as usize].1 += 1;
    }

    /// Drops one use; a list nobody uses is forgotten.
    fn release(&mut self, id: u32) {
        let e = &mut self.lists[id as usize];
        e.1 -= 1;
        if e.1 == 0 {
            let a = std::mem::replace(&mut e.0, Arc::from(Vec::new()));
            self.ids.remove(&a);
            self.free.push(id);
        }
    }

    fn in_use(&self) -> impl Iterator<Item = (u32, &Arc<[Acl]>)> {
        self.lists.iter().enumerate().filter(|(_, (_, uses))| *uses > 0).map(|(i, (a, _))| (i as u32, a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(czxid: i64) -> NodeStat {
        NodeStat { czxid, ..NodeStat::default() }
    }

    /// A store holding only the root, with the open ACL's number.
    fn with_root() -> (Store, u32, u32) {
        let mut s = Store::default();
        let acl = s.intern_acl(&Acl::open_unsafe());
        let root = s.insert(NIL, "", Some(b""), stat(0), acl).unwrap();
        (s, acl, root)
    }

    fn names(s: &Store, id: u32) -> Vec<String> {
        let mut v: Vec<String> = s.children(id).map(|c| s.slot(c).name().to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn slots_stay_compact() {
        assert_eq!(std::mem::size_of::<Slot>(), 32);
        assert!(std::mem::size_of::<Ext>() <= 56, "{}", std::mem::size_of::<Ext>());
    }

    #[test]
    fn insert_lookup_remove_and_reuse() {
        let (mut s, acl, root) = with_root();
        assert_eq!(root, 0);
        let a = s.insert(root, "a", Some(b"x"), stat(1), acl).unwrap();
        let b = s.insert(a, "b", None, stat(2), acl).unwrap();
        let c = s.insert(a, "c", Some(b"yy"), stat(3), acl).unwrap();
        assert_eq!(s.lookup("/"), Some(0));
        assert_eq!(s.lookup("/a/b"), Some(b));
        assert_eq!(s.lookup("/a/c"), Some(c));
        for missing in ["", "a", "/b", "/a/", "//a", "/a//b", "/a/b/c", "/a/d"] {
            assert_eq!(s.lookup(missing), None, "{missing:?}");
        }
        assert_eq!(s.slot(b).data(), None);
        assert_eq!(s.slot(c).data(), Some(&b"yy"[..]));
        assert_eq!(s.num_children(a), 2);
        assert_eq!(names(&s, a), ["b", "c"]);

        s.remove(b);
        assert_eq!(s.lookup("/a/b"), None);
        assert_eq!(s.num_children(a), 1);
        assert_eq!(names(&s, a), ["c"]);
        assert_eq!(s.len(), 3);
        // The freed slot is reused, and the new node is found under its own name only.
        let d = s.insert(root, "d", Some(b"z"), stat(4), acl).unwrap();
        assert_eq!(d, b);
        assert_eq!(s.lookup("/d"), Some(d));
        assert_eq!(s.lookup("/a/b"), None);
        assert_eq!(s.slot(d).stamp().0, 4);
        assert_eq!(names(&s, root), ["a", "d"]);
    }

    #[test]
    fn a_reserved_index_is_sized_to_the_load() {
        assert_eq!(shards_for(0), SHARDS);
        assert_eq!(shards_for(1_000), SHARDS);
        for nodes in [50_000, 200_000, 1_000_001, 3_000_000] {
            let n = shards_for(nodes);
            assert!((SHARDS..3 * SHARDS).contains(&n), "{nodes}: {n}");
        }
        // A bulk load of 300,000 nodes under a reservation: no table grows past what was
        // reserved, the tables end more than 3/4 full, and every node is found.
        let nodes = 300_000;
        let (mut s, acl, root) = with_root();
        s.reserve(nodes);
        let buckets: Vec<usize> = s.index.iter().map(|t| t.capacity()).collect();
        let parents: Vec<u32> = (0..10).map(|p| s.insert(root, &format!("p{p}"), None, stat(p), acl).unwrap()).collect();
        for i in 0..nodes - 10 {
            s.insert(parents[i % 10], &format!("n{i:07}"), Some(b"d"), stat(i as i64), acl).unwrap();
        }
        assert_eq!(s.index.iter().map(|t| t.capacity()).collect::<Vec<_>>(), buckets, "a table grew");
        let held: usize = buckets.iter().sum();
        assert!(nodes * 4 > held * 3, "{nodes} nodes in room for {held}");
        for i in (0..nodes - 10).step_by(7) {
            assert!(s.lookup(&format!("/p{}/n{i:07}", i % 10)).is_some(), "n{i}");
        }
    }

    #[test]
    fn many_children_removed_in_any_order() {
        let (mut s, acl, root) = with_root();
        let ids: Vec<u32> = (0..10_000).map(|i| s.insert(root, &format!("n{i}"), Some(b"d"), stat(i), acl).unwrap()).collect();
        assert_eq!(s.slots.chunks.len(), 10_001usize.div_ceil(CHUNK));
        // Remove every third, then check what is left, by lookup and by listing.
        for (i, id) in ids.iter().enumerate().filter(|(i, _)| i % 3 == 0) {
            assert_eq!(s.lookup(&format!("/n{i}")), Some(*id));
            s.remove(*id);
        }
        let left: Vec<usize> = (0..10_000).filter(|i| i % 3 != 0).collect();
        assert_eq!(s.num_children(root) as usize, left.len());
        assert_eq!(s.children(root).count(), left.len());
        for i in 0..10_000 {
            assert_eq!(s.lookup(&format!("/n{i}")).is_some(), i % 3 != 0, "n{i}");
        }
        for i in left {
            s.remove(s.lookup(&format!("/n{i}")).unwrap());
        }
        assert_eq!(s.children(root).count(), 0);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn acl_lists_are_counted_and_forgotten() {
        let mut s = Store::default();
        let open = s.intern_acl(&Acl::open_unsafe());
        let root = s.insert(NIL, "", Some(b""), stat(0), open).unwrap();
        let read = s.intern_acl(&Acl::read_unsafe());
        assert_eq!(s.intern_acl(&Acl::read_unsafe()), read, "same list, same number");
        let a = s.insert(root, "a", None, stat(1), read).unwrap();
        let b = s.insert(root, "b", None, stat(2), read).unwrap();
        assert_eq!(s.acl_lists().count(), 2);
        s.remove(a);
        assert_eq!(s.acl_lists().count(), 2, "b still uses it");
        s.set_acl(b, open);
        assert_eq!(s.acl_lists().count(), 1, "nobody uses the read-only list now");
        assert_eq!(**s.acl(s.slot(b).acl()), *Acl::open_unsafe());
        // Its number is free for the next new list.
        let other = s.intern_acl(&[Acl::new(1, "ip", "10.0.0.1")]);
        assert_eq!(other, read);
    }

    #[test]
    fn rarely_set_fields_take_an_extension_only_once_set() {
        let (mut s, acl, root) = with_root();
        let plain = NodeStat { czxid: 5, mzxid: 5, pzxid: 5, ctime: 50, mtime: 50, ..NodeStat::default() };
        let a = s.insert(root, "a", Some(b"x"), plain, acl).unwrap();
        assert_eq!(s.stat(a), plain);
        assert_eq!(s.slot(a).blob.meta().ext, NO_EXT, "a node never changed has no extension");
        assert_ne!(s.slot(root).blob.meta().ext, NO_EXT, "a parent has one for its child list");
        // A node loaded with changed fields keeps every one of them.
        let changed = NodeStat { mzxid: 7, pzxid: 6, mtime: 70, version: 2, cversion: 3, aversion: 1, ephemeral_owner: 9, ..plain };
        let b = s.insert(root, "b", None, changed, acl).unwrap();
        assert_eq!(s.stat(b), changed);
        // Changing a field gives the node an extension; the rest keep their values.
        s.ext_mut(a).version = 1;
        assert_eq!(s.stat(a), NodeStat { version: 1, ..plain });
        let used = s.exts.len();
        // A removed node's extension is reused before the slab grows.
        s.remove(b);
        s.ext_mut(a).aversion = 4;
        let c = s.insert(root, "c", None, changed, acl).unwrap();
        assert_eq!(s.exts.len(), used);
        assert_eq!(s.stat(c), changed);
        assert_eq!(s.stat(a), NodeStat { version: 1, aversion: 4, ..plain });
        assert_eq!(s.num_children(root), 2);
        assert_eq!(s.num_children(a), 0);
    }

    #[test]
    fn set_data_keeps_the_name() {
        let (mut s, acl, root) = with_root();
        let a = s.insert(root, "name", Some(b"old"), stat(1), acl).unwrap();
        s.set_data(a, None);
        assert_eq!((s.slot(a).name(), s.slot(a).data()), ("name", None));
        s.set_data(a, Some(b"new data"));
        assert_eq!((s.slot(a).name(), s.slot(a).data()), ("name", Some(&b"new data"[..])));
        s.set_data(a, Some(b""));
        assert_eq!(s.slot(a).data(), Some(&b""[..]));
        assert_eq!(s.lookup("/name"), Some(a));
    }

    #[test]
    fn a_second_child_of_the_same_name_is_refused_and_changes_nothing() {
        let (mut s, acl, root) = with_root();
        let a = s.insert(root, "a", Some(b"x"), stat(1), acl).unwrap();
        let b = s.insert(a, "a", Some(b"y"), stat(2), acl).unwrap();
        assert_eq!(s.insert(root, "a", Some(b"z"), stat(3), acl), None);
        assert_eq!(s.insert(a, "a", None, stat(3), acl), None);
        assert_eq!((s.len(), s.slab_len(), s.num_children(root), s.num_children(a)), (3, 3, 1, 1));
        assert_eq!(s.slot(s.lookup("/a").unwrap()).data(), Some(&b"x"[..]));
        assert_eq!(s.lookup("/a/a"), Some(b));
        // A freed slot stays free too.
        s.remove(b);
        assert_eq!(s.insert(root, "a", None, stat(4), acl), None);
        assert_eq!(s.insert(a, "c", None, stat(5), acl), Some(b));
    }

    #[test]
    fn an_extension_survives_set_data_and_leaves_with_its_node() {
        let (mut s, acl, root) = with_root();
        let plain = NodeStat { czxid: 5, mzxid: 5, pzxid: 5, ctime: 50, mtime: 50, ..NodeStat::default() };
        let p = s.insert(root, "p", Some(b"x"), plain, acl).unwrap();
        assert_eq!(s.slot(p).blob.meta().ext, NO_EXT);
        let k = s.insert(p, "k", None, plain, acl).unwrap();
        let e = s.slot(p).blob.meta().ext;
        assert_ne!(e, NO_EXT, "the first child gives the parent an extension");
        assert_eq!((s.slot(p).name(), s.slot(p).data(), s.stat(p)), ("p", Some(&b"x"[..]), plain));
        assert_eq!(s.slot(k).blob.meta().ext, NO_EXT);
        let before = (s.len(), s.slab_len(), s.exts.len(), s.free_ext);
        assert_eq!(s.insert(p, "k", Some(b"z"), plain, acl), None);
        assert_eq!((s.len(), s.slab_len(), s.exts.len(), s.free_ext), before, "a refused insert changes nothing");
        s.ext_mut(p).version = 3;
        for d in [None, Some(&b""[..]), Some(&[1u8; 300][..]), Some(&b"y"[..])] {
            s.set_data(p, d);
            assert_eq!((s.slot(p).blob.meta().ext, s.slot(p).data(), s.stat(p).version), (e, d, 3));
            assert_eq!((names(&s, p), s.num_children(p)), (vec!["k".to_string()], 1));
        }
        // A node's first setData gives it an extension, in the same new block.
        let used = s.exts.len();
        s.set_data(k, Some(b"v")).aversion = 2;
        let ek = s.slot(k).blob.meta().ext;
        assert_eq!((s.exts.len(), s.slot(k).data(), s.stat(k).aversion), (used + 1, Some(&b"v"[..]), 2));
        s.remove(k);
        assert!(s.slot(k).is_vacant());
        assert_eq!((s.slot(k).blob.meta().ext, s.num_children(p), s.free_ext), (NO_EXT, 0, Some(ek)));
        let n = s.insert(root, "n", Some(b"y"), plain, acl).unwrap();
        assert_eq!(n, k, "the freed slot is reused");
        assert_eq!((s.slot(n).blob.meta().ext, s.stat(n)), (NO_EXT, plain), "no stale extension");
        s.ext_mut(n).version = 1;
        assert_eq!((s.slot(n).blob.meta().ext, s.exts.len(), s.free_ext), (ek, used + 1, None), "the freed extension is reused");
        assert_eq!(s.stat(n), NodeStat { version: 1, ..plain });
        assert_eq!(s.stat(p), NodeStat { version: 3, ..plain });
        // A node inserted with a changed stat has its extension from the start.
        let changed = NodeStat { version: 4, ephemeral_owner: 9, ..plain };
        let c = s.insert(root, "c", Some(b"w"), changed, acl).unwrap();
        assert_ne!(s.slot(c).blob.meta().ext, NO_EXT);
        assert_eq!((s.stat(c), s.slot(c).data()), (changed, Some(&b"w"[..])));
    }

    #[test]
    fn stamps_the_slot_cannot_hold_and_acl_numbers_live_in_the_block() {
        let (mut s, open, root) = with_root();
        let other = s.intern_acl(&Acl::read_unsafe());
        assert_ne!(other, open);
        let big_epoch = (70_000i64 << 32) | 5;
        let stamps = [(0, 0), (1, 1), (Stamp::MASK as i64 - 1, Stamp::MASK as i64 - 1), (Stamp::MASK as i64, 7), (big_epoch, 1_800_000_000_000), (5, -1), (-3, i64::MAX), (i64::MIN, i64::MIN)];
        let mut ids = Vec::new();
        for (i, &(czxid, ctime)) in stamps.iter().enumerate() {
            let st = NodeStat { czxid, mzxid: czxid, pzxid: czxid, ctime, mtime: ctime, ..NodeStat::default() };
            let acl = if i % 2 == 0 { open } else { other };
            let id = s.insert(root, &format!("n{i}"), Some(b"d"), st, acl).unwrap();
            assert_eq!(s.stat(id), st, "{i}");
            assert_eq!(s.slot(id).acl(), acl);
            let in_block = Stamp::pack(czxid, ctime).is_none();
            assert_eq!((s.slot(id).stamp == Stamp::IN_BLOCK, s.slot(id).blob.meta().stamp.is_some()), (in_block, in_block), "{i}");
            ids.push((id, st, acl));
        }
        // A changed node keeps its stamp and ACL; a new ACL keeps its data and stat.
        for &(id, st, acl) in &ids {
            s.set_data(id, Some(b"changed")).version = 1;
            let changed = NodeStat { version: 1, ..st };
            assert_eq!((s.stat(id), s.slot(id).acl(), s.slot(id).data()), (changed, acl, Some(&b"changed"[..])));
            let swapped = if acl == open { other } else { open };
            s.set_acl(id, swapped).aversion = 2;
            let changed = NodeStat { aversion: 2, ..changed };
            assert_eq!((s.stat(id), s.slot(id).acl(), s.slot(id).data()), (changed, swapped, Some(&b"changed"[..])));
            assert_eq!(s.slot(id).name(), format!("n{}", ids.iter().position(|x| x.0 == id).unwrap()));
        }
        // A node's first change being a setACL gives it its extension in the same block.
        let plain = NodeStat { czxid: 9, mzxid: 9, pzxid: 9, ..NodeStat::default() };
        let fresh = s.insert(root, "fresh", None, plain, open).unwrap();
        assert_eq!(s.slot(fresh).blob.meta().ext, NO_EXT);
        let used = s.exts.len();
        s.set_acl(fresh, other).aversion = 1;
        assert_eq!((s.exts.len(), s.slot(fresh).acl(), s.stat(fresh).aversion, s.slot(fresh).data()), (used + 1, other, 1, None));
        ids.push((fresh, plain, other));
        // Removing every node that uses `other` forgets the list.
        for &(id, ..) in &ids {
            s.remove(id);
        }
        assert_eq!(s.acl_lists().map(|(n, _)| n).collect::<Vec<_>>(), vec![open]);
    }
}
