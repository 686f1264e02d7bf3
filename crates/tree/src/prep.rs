//! Prep: turning a write request into a transaction, or into the error ZooKeeper gives.
//!
//! Checks run against the tree *plus the changes of earlier ops not yet applied* (the
//! overlay), so that the second op of a multi sees the first. The order of the checks is
//! ZooKeeper's, because when several things are wrong the client sees the first one.

use crate::acl;
use crate::path;
use crate::tree::{is_special, DataTree, EphemeralType, MAX_TTL_MS};
use crate::txn::{CreateTxn, Txn};
use crate::watch::SessionId;
use corral_proto::request::{CreateRequest, MultiOp};
use corral_proto::{Acl, CreateMode, ErrorCode, Id, OpCode, Perms};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Who is asking: the session and the identities it has proven.
#[derive(Debug, Clone)]
pub struct Caller {
    pub session: SessionId,
    /// Shared with the session, so building a caller per request copies nothing.
    pub ids: Arc<Vec<Id>>,
}

/// Server settings that change what a request may do.
#[derive(Debug, Clone, Copy, Default)]
pub struct Settings {
    /// `extendedTypesEnabled`: TTL nodes are allowed.
    pub extended_types: bool,
}

/// What prep needs to know of a node.
#[derive(Debug, Clone)]
pub struct Rec {
    version: i32,
    cversion: i32,
    aversion: i32,
    ephemeral_owner: i64,
    num_children: i32,
    acl: Arc<[Acl]>,
}

/// The changes of transactions that were prepped but are not applied yet (they wait to
/// become durable). Prep reads through them, so a pipelined `create /a` then
/// `create /a/b` both succeed.
#[derive(Debug, Default)]
pub struct Outstanding {
    /// Latest pending state of each path, with the zxid of the txn that set it; `None`
    /// marks a pending delete.
    changes: HashMap<String, (i64, Option<Rec>)>,
    /// The paths each pending txn touched, oldest first.
    by_zxid: VecDeque<(i64, Vec<String>)>,
}

impl Outstanding {
    /// Records what a prepped txn will change.
    pub fn record(&mut self, zxid: i64, changes: Changes) {
        let paths: Vec<String> = changes.0.keys().cloned().collect();
        for (p, rec) in changes.0 {
            self.changes.insert(p, (zxid, rec));
        }
        if !paths.is_empty() {
            self.by_zxid.push_back((zxid, paths));
        }
    }

    /// Forgets the changes of txns up to `zxid`, now applied to the tree, unless a later
    /// pending txn changed the same path.
    pub fn applied(&mut self, zxid: i64) {
        while self.by_zxid.front().is_some_and(|(z, _)| *z <= zxid) {
            let (_, paths) = self.by_zxid.pop_front().expect("checked");
            for p in paths {
                if self.changes.get(&p).is_some_and(|(z, _)| *z <= zxid) {
                    self.changes.remove(&p);
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// What one prepped request will change, to hand to [`Outstanding::record`].
#[derive(Debug, Default)]
pub struct Changes(HashMap<String, Option<Rec>>);

/// Checks requests against a tree and the not-yet-applied changes of earlier ones.
pub struct Prep<'a> {
    tree: &'a DataTree,
    caller: &'a Caller,
    settings: Settings,
    outstanding: Option<&'a Outstanding>,
    /// This request's own changes so far (a multi's earlier ops); `None` marks a delete.
    overlay: HashMap<String, Option<Rec>>,
}

type R<T> = Result<T, ErrorCode>;

fn valid(p: &str) -> R<()> {
    path::validate(p).map_err(|_| ErrorCode::BadArguments)
}

fn next_version(current: i32, expected: i32) -> R<i32> {
    if expected != -1 && expected != current {
        return Err(ErrorCode::BadVersion);
    }
    Ok(current.wrapping_add(1))
}

impl<'a> Prep<'a> {
    pub fn new(tree: &'a DataTree, caller: &'a Caller, settings: Settings) -> Self {
        Prep { tree, caller, settings, outstanding: None, overlay: HashMap::new() }
    }

    /// Prep that also sees the changes of earlier, not yet applied transactions.
    pub fn with_outstanding(
        tree: &'a DataTree,
        caller: &'a Caller,
        settings: Settings,
        outstanding: &'a Outstanding,
    ) -> Self {
        Prep { tree, caller, settings, outstanding: Some(outstanding), overlay: HashMap::new() }
    }

    /// The changes the successful requests prepped so far will make.
    pub fn into_changes(self) -> Changes {
        Changes(self.overlay)
    }

    fn rec(&self, p: &str) -> R<Rec> {
        if let Some(r) = self.overlay.get(p) {
            return r.clone().ok_or(ErrorCode::NoNode);
        }
        if let Some((_, r)) = self.outstanding.and_then(|o| o.changes.get(p)) {
            return r.clone().ok_or(ErrorCode::NoNode);
        }
        let n = self.tree.get(p).ok_or(ErrorCode::NoNode)?;
        let s = n.raw_stat();
        Ok(Rec {
            version: s.version,
            cversion: s.cversion,
            aversion: s.aversion,
            ephemeral_owner: s.ephemeral_owner,
            num_children: n.num_children() as i32,
            acl: n.acl().clone(),
        })
    }

    fn allow(&self, rec: &Rec, perm: i32) -> R<()> {
        acl::allow(&rec.acl, perm, &self.caller.ids)
    }

    pub fn create(&mut self, op: OpCode, req: &CreateRequest) -> R<CreateTxn> {
        let mode = CreateMode::from_flags(req.flags).ok_or(ErrorCode::BadArguments)?;
        // The opcode, not the flags, makes a container: createContainer ignores the
        // flags, and create with the container flag makes a plain persistent node.
        let container = op == OpCode::CreateContainer;
        let mode = match mode {
            _ if container => CreateMode::Persistent,
            CreateMode::Container => CreateMode::Persistent,
            m => m,
        };
        if mode.is_ttl() && !self.settings.extended_types {
            return Err(ErrorCode::Unimplemented);
        }
        // Only createTTL carries a TTL; the other opcodes behave as if it were -1.
        let ttl = if op == OpCode::CreateTtl { req.ttl } else { -1 };
        if mode.is_ttl() {
            if ttl <= 0 || ttl > MAX_TTL_MS {
                return Err(ErrorCode::BadArguments);
            }
        } else if ttl >= 0 {
            return Err(ErrorCode::BadArguments);
        }
        let slash = req.path.rfind('/').ok_or(ErrorCode::BadArguments)?;
        if req.path.contains('\0') {
            return Err(ErrorCode::BadArguments);
        }
        let acl = acl::fixup(&req.acl, &self.caller.ids)?;
        let parent_path = if slash == 0 { "/" } else { &req.path[..slash] };
        let parent = self.rec(parent_path)?;
        self.allow(&parent, Perms::CREATE)?;
        let mut p = req.path.clone();
        if mode.is_sequential() {
            p.push_str(&format!("{:010}", parent.cversion));
        }
        valid(&p)?;
        if p == "/" || self.rec(&p).is_ok() {
            return Err(ErrorCode::NodeExists);
        }
        if matches!(EphemeralType::of(parent.ephemeral_owner), EphemeralType::Session(_)) {
            return Err(ErrorCode::NoChildrenForEphemerals);
        }
        let ephemeral_owner = if container {
            crate::tree::CONTAINER_OWNER
        } else if mode.is_ttl() {
            EphemeralType::ttl_owner(ttl)
        } else if mode.is_ephemeral() {
            self.caller.session
        } else {
            0
        };
        let parent_cversion = parent.cversion.wrapping_add(1);
        self.overlay.insert(
            parent_path.to_string(),
            Some(Rec { cversion: parent_cversion, num_children: parent.num_children + 1, ..parent }),
        );
        let acl_arc: Arc<[Acl]> = acl.clone().into();
        self.overlay.insert(
            p.clone(),
            Some(Rec { version: 0, cversion: 0, aversion: 0, ephemeral_owner, num_children: 0, acl: acl_arc }),
        );
        Ok(CreateTxn { path: p, data: req.data.clone(), acl, ephemeral_owner, parent_cversion })
    }

    /// Like ZooKeeper, delete does not validate the whole path: a malformed path is a node
    /// that does not exist.
    pub fn delete(&mut self, p: &str, version: i32) -> R<Txn> {
        let Some(slash) = p.rfind('/') else { return Err(ErrorCode::BadArguments) };
        if p.contains('\0') || is_special(p) {
            return Err(ErrorCode::BadArguments);
        }
        let parent_path = if slash == 0 { "/" } else { &p[..slash] };
        let parent = self.rec(parent_path)?;
        self.allow(&parent, Perms::DELETE)?;
        let node = self.rec(p)?;
        next_version(node.version, version)?;
        if node.num_children > 0 {
            return Err(ErrorCode::NotEmpty);
        }
        self.overlay.insert(
            parent_path.to_string(),
            Some(Rec { num_children: parent.num_children - 1, ..parent }),
        );
        self.overlay.insert(p.to_string(), None);
        Ok(Txn::Delete { path: p.to_string() })
    }

    pub fn set_data(&mut self, p: &str, data: Option<&[u8]>, version: i32) -> R<Txn> {
        valid(p)?;
        let node = self.rec(p)?;
        self.allow(&node, Perms::WRITE)?;
        let version = next_version(node.version, version)?;
        self.overlay.insert(p.to_string(), Some(Rec { version, ..node }));
        Ok(Txn::SetData { path: p.to_string(), data: data.map(<[u8]>::to_vec), version })
    }

    pub fn set_acl(&mut self, p: &str, acl_list: &[Acl], version: i32) -> R<Txn> {
        valid(p)?;
        let acl = acl::fixup(acl_list, &self.caller.ids)?;
        let node = self.rec(p)?;
        self.allow(&node, Perms::ADMIN)?;
        let version = next_version(node.aversion, version)?;
        self.overlay.insert(p.to_string(), Some(Rec { aversion: version, acl: acl.clone().into(), ..node }));
        Ok(Txn::SetAcl { path: p.to_string(), acl, version })
    }

    pub fn check(&mut self, p: &str, version: i32) -> R<Txn> {
        valid(p)?;
        let node = self.rec(p)?;
        self.allow(&node, Perms::READ)?;
        next_version(node.version, version)?;
        Ok(Txn::Check { path: p.to_string() })
    }

    fn op(&mut self, op: &MultiOp) -> R<Txn> {
        match op {
            MultiOp::Create { op, req } => self.create(*op, req).map(Txn::Create),
            MultiOp::Delete { path, version } => self.delete(path, *version),
            MultiOp::SetData { path, data, version } => self.set_data(path, data.as_deref(), *version),
            MultiOp::Check { path, version } => self.check(path, *version),
        }
    }

    /// A multi: all ops or none. When op k fails, the transaction records `Ok` for the
    /// ops before it, k's error, and `RuntimeInconsistency` for the ops after it, which is
    /// what ZooKeeper reports to the client.
    pub fn multi(&mut self, ops: &[MultiOp]) -> Txn {
        let mut txns = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            match self.op(op) {
                Ok(t) => txns.push(t),
                Err(e) => {
                    // Nothing of a failed multi happens.
                    self.overlay.clear();
                    let mut errs = vec![Txn::Error(ErrorCode::Ok); i];
                    errs.push(Txn::Error(e));
                    errs.resize(ops.len(), Txn::Error(ErrorCode::RuntimeInconsistency));
                    return Txn::Multi(errs);
                }
            }
        }
        Txn::Multi(txns)
    }

    /// Ends a session: its ephemeral nodes — those in the tree and those whose creation is
    /// still outstanding — count as deleted for every later prep, as ZooKeeper's prep does.
    pub fn close_session(&mut self, session: SessionId) -> Txn {
        let mut paths: Vec<String> = self.tree.ephemerals_of(session).cloned().collect();
        if let Some(o) = self.outstanding {
            paths.extend(
                o.changes
                    .iter()
                    .filter(|(_, (_, r))| r.as_ref().is_some_and(|r| r.ephemeral_owner == session))
                    .map(|(p, _)| p.clone()),
            );
        }
        paths.sort();
        paths.dedup();
        for p in paths {
            // Skip what an earlier outstanding txn already deletes.
            if self.rec(&p).is_err() {
                continue;
            }
            if let Some(parent_path) = path::parent(&p) {
                if let Ok(parent) = self.rec(parent_path) {
                    let rec = Rec { num_children: parent.num_children - 1, ..parent };
                    self.overlay.insert(parent_path.to_string(), Some(rec));
                }
            }
            self.overlay.insert(p, None);
        }
        Txn::CloseSession
    }

    /// The cleanup's delete of an empty container or expired TTL node; `None` when the
    /// node changed since it was chosen.
    pub fn delete_container(&mut self, p: &str) -> Option<Txn> {
        let node = self.rec(p).ok()?;
        if node.num_children > 0
            || !matches!(EphemeralType::of(node.ephemeral_owner), EphemeralType::Container | EphemeralType::Ttl(_))
        {
            return None;
        }
        // Through the overlay like any delete, so later preps see the node gone.
        self.delete(p, -1).ok()
    }
}
