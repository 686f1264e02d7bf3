//! The tree as bytes (a snapshot's body) and as one number (a digest).
//!
//! A snapshot body lists the sessions, the distinct ACLs, then every node, parents before
//! children, with its stored stat (the create counter as cversion, the raw owner value),
//! its data (null kept) and the index of its ACL. Indexes (children, ephemerals,
//! containers, TTLs, data size) are rebuilt on reading, so they cannot disagree with the
//! nodes. Framing and checksums belong to the storage layer.

use super::{DataTree, NodeStat, SessionInfo, NIL};
use crate::path;
use corral_proto::{read_acls, write_acls, DecodeError, Reader, Writer};
use std::collections::HashMap;

const MAGIC: i32 = 0x5a4b_534e; // "ZKSN"
const VERSION: i32 = 1;
/// Flush to the sink once this much is buffered.
const CHUNK: usize = 64 * 1024;

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
            write_stat(&mut w, &n.stat());
            write_acls(&mut w, self.store.acl(n.acl));
            sum = sum.wrapping_add(fnv(FNV_OFFSET, &w.buf));
        });
        for (id, s) in &self.sessions {
            w.buf.clear();
            w.i64(*id).i32(s.timeout_ms).buffer(&s.passwd);
            sum = sum.wrapping_add(fnv(FNV_OFFSET ^ 1, &w.buf));
        }
        sum
    }

    /// Writes the whole tree to `out`.
    pub fn write_snapshot<W: std::io::Write + ?Sized>(&self, out: &mut W) -> std::io::Result<()> {
        let mut w = Writer::new();
        w.i32(MAGIC).i32(VERSION).i64(self.last_zxid);
        w.i32(self.sessions.len() as i32);
        for (id, s) in &self.sessions {
            w.i64(*id).i32(s.timeout_ms).buffer(&s.passwd);
        }
        // Distinct ACL lists in use, numbered in the order written.
        let mut acl_ids: HashMap<u32, i32> = HashMap::new();
        let acls: Vec<_> = self.store.acl_lists().collect();
        w.i32(acls.len() as i32);
        for (i, (id, a)) in acls.into_iter().enumerate() {
            acl_ids.insert(id, i as i32);
            write_acls(&mut w, a);
        }
        w.i64(self.store.len() as i64);
        let mut result = Ok(());
        self.walk(|p, id| {
            let n = self.store.slot(id);
            w.string(p).data(n.data()).i32(acl_ids[&n.acl]);
            write_stat(&mut w, &n.stat());
            if w.buf.len() >= CHUNK && result.is_ok() {
                result = out.write_all(&w.buf);
                w.buf.clear();
            }
        });
        result?;
        out.write_all(&w.buf)
    }

    /// Rebuilds a tree from [`DataTree::write_snapshot`]'s bytes.
    pub fn read_snapshot(bytes: &[u8]) -> Result<DataTree, DecodeError> {
        let mut r = Reader::new(bytes);
        if r.read_i32()? != MAGIC {
            return Err(DecodeError::Invalid("not a Corral snapshot"));
        }
        if r.read_i32()? != VERSION {
            return Err(DecodeError::Invalid("unknown snapshot version"));
        }
        let mut t = DataTree::empty();
        t.last_zxid = r.read_i64()?;
        let sessions = r.read_vec(|r| Ok((r.read_i64()?, r.read_i32()?, r.read_buffer()?)))?;
        for (id, timeout_ms, passwd) in sessions {
            t.sessions.insert(id, SessionInfo { timeout_ms, passwd });
        }
        let acl_lists = r.read_vec(read_acls)?;
        let acls: Vec<u32> = acl_lists.iter().map(|a| t.store.intern_acl(a)).collect();
        let count = r.read_i64()?;
        if count < 1 || count as usize > r.remaining() {
            return Err(DecodeError::Invalid("bad node count"));
        }
        t.store.reserve(count as usize);
        // Nodes come parents first and siblings together, so the parent of a node is
        // nearly always the previous node's parent or the previous node itself.
        let mut last: Option<(&str, u32)> = None;
        let mut last_parent: Option<(&str, u32)> = None;
        for i in 0..count {
            let p = r.read_opt_buffer()?.ok_or(DecodeError::Invalid("null path"))?;
            let p = std::str::from_utf8(p).map_err(|_| DecodeError::InvalidUtf8)?;
            let data = r.read_opt_buffer()?;
            let acl = *acls.get(r.read_i32()? as usize).ok_or(DecodeError::Invalid("bad ACL index"))?;
            let stat = read_stat(&mut r)?;
            if (i == 0) != (p == "/") || path::validate(p).is_err() {
                return Err(DecodeError::Invalid("root not first, or a bad path"));
            }
            let parent = match path::parent(p) {
                None => NIL,
                Some(pp) => match [last_parent, last].into_iter().flatten().find(|(lp, _)| *lp == pp) {
                    Some((_, id)) => id,
                    None => t.store.lookup(pp).ok_or(DecodeError::Invalid("node before its parent"))?,
                },
            };
            if parent != NIL && t.store.child(parent, path::name(p)).is_some() {
                return Err(DecodeError::Invalid("a node twice"));
            }
            let id = t.insert_under(parent, p, data, stat, acl);
            if let Some(pp) = path::parent(p) {
                last_parent = Some((pp, parent));
            }
            last = Some((p, id));
        }
        if r.remaining() != 0 {
            return Err(DecodeError::Invalid("trailing bytes after the snapshot"));
        }
        Ok(t)
    }
}

fn write_stat(w: &mut Writer, s: &NodeStat) {
    w.i64(s.czxid).i64(s.mzxid).i64(s.pzxid).i64(s.ctime).i64(s.mtime);
    w.i32(s.version).i32(s.cversion).i32(s.aversion).i64(s.ephemeral_owner);
}

fn read_stat(r: &mut Reader) -> Result<NodeStat, DecodeError> {
    Ok(NodeStat {
        czxid: r.read_i64()?,
        mzxid: r.read_i64()?,
        pzxid: r.read_i64()?,
        ctime: r.read_i64()?,
        mtime: r.read_i64()?,
        version: r.read_i32()?,
        cversion: r.read_i32()?,
        aversion: r.read_i32()?,
        ephemeral_owner: r.read_i64()?,
    })
}

#[cfg(test)]
mod tests {
    use crate::prep::{Caller, Prep, Settings};
    use crate::{DataTree, Txn, TxnHeader};
    use corral_proto::request::CreateRequest;
    use corral_proto::{Acl, DecodeError, Id, OpCode};
    use std::sync::Arc;

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

    #[test]
    fn a_node_listed_twice_is_an_error() {
        let mut t = DataTree::new();
        t.apply(
            &TxnHeader { session: 1, cxid: 0, zxid: 1, time_ms: 1 },
            Txn::Create(crate::CreateTxn {
                path: "/a".into(),
                data: None,
                acl: Acl::open_unsafe(),
                ephemeral_owner: 0,
                parent_cversion: 1,
            }),
            &mut Vec::new(),
        );
        let mut bytes = Vec::new();
        t.write_snapshot(&mut bytes).unwrap();
        // Node records: path, data (null: length -1), ACL index, 60 bytes of stat.
        let find = |pat: &[u8]| bytes.windows(pat.len()).position(|w| w == pat).unwrap();
        let root = find(b"\0\0\0\x01/");
        let a = find(b"\0\0\0\x02/a");
        let record = bytes[a..a + 6 + 4 + 4 + 60].to_vec();
        let mut twice = bytes.clone();
        twice.splice(a..a, record);
        let count = i64::from_be_bytes(twice[root - 8..root].try_into().unwrap());
        twice[root - 8..root].copy_from_slice(&(count + 1).to_be_bytes());
        assert!(matches!(DataTree::read_snapshot(&twice), Err(DecodeError::Invalid("a node twice"))));
        // The unchanged bytes still read.
        assert_eq!(DataTree::read_snapshot(&bytes).unwrap().digest(), t.digest());
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
}
