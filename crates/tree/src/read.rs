//! Reads and watch management: requests answered from the tree without a transaction.

use crate::acl;
use crate::prep::Caller;
use crate::tree::DataTree;
use crate::watch::{Kind, WatchEvent};
use corral_proto::request::{ReadOp, SetWatches};
use corral_proto::{Acl, ErrorCode, EventType, Perms, Stat};

type R<T> = Result<T, ErrorCode>;

use crate::acl::allow;

/// exists: no permission needed. With `watch`, a data watch is left whether or not the
/// node exists (that is how a client waits for a node to appear).
pub fn exists(tree: &mut DataTree, c: &Caller, path: &str, watch: bool) -> R<Stat> {
    if path.contains('\0') {
        return Err(ErrorCode::BadArguments);
    }
    if watch {
        tree.watches.add_data(path, c.session);
    }
    tree.get(path).map(|n| n.stat()).ok_or(ErrorCode::NoNode)
}

pub fn get_data(tree: &mut DataTree, c: &Caller, path: &str, watch: bool) -> R<(Option<Vec<u8>>, Stat)> {
    let n = tree.get(path).ok_or(ErrorCode::NoNode)?;
    allow(n.acl(), Perms::READ, &c.ids)?;
    let out = (n.data().map(<[u8]>::to_vec), n.stat());
    if watch {
        tree.watches.add_data(path, c.session);
    }
    Ok(out)
}

pub fn get_children(tree: &mut DataTree, c: &Caller, path: &str, watch: bool) -> R<(Vec<String>, Stat)> {
    let n = tree.get(path).ok_or(ErrorCode::NoNode)?;
    allow(n.acl(), Perms::READ, &c.ids)?;
    let out = (n.child_names().into_iter().map(str::to_string).collect(), n.stat());
    if watch {
        tree.watches.add_child(path, c.session);
    }
    Ok(out)
}

/// getACL needs READ or ADMIN; without ADMIN the hashes of digest ids are hidden.
pub fn get_acl(tree: &DataTree, c: &Caller, path: &str) -> R<(Vec<Acl>, Stat)> {
    let n = tree.get(path).ok_or(ErrorCode::NoNode)?;
    allow(n.acl(), Perms::READ | Perms::ADMIN, &c.ids)?;
    let mut acl = n.acl().to_vec();
    if !acl::check(n.acl(), Perms::ADMIN, &c.ids) {
        for a in acl.iter_mut().filter(|a| a.id.scheme == "digest") {
            if let Some((user, _)) = a.id.id.split_once(':') {
                a.id.id = format!("{user}:x");
            }
        }
    }
    Ok((acl, n.stat()))
}

pub fn all_children_number(tree: &DataTree, c: &Caller, path: &str) -> R<i32> {
    let n = tree.get(path).ok_or(ErrorCode::NoNode)?;
    allow(n.acl(), Perms::READ, &c.ids)?;
    Ok(tree.descendant_count(path) as i32)
}

/// The caller's own ephemeral nodes whose path starts with `prefix` (all for `/` or "").
pub fn ephemerals(tree: &DataTree, c: &Caller, prefix: &str) -> Vec<String> {
    let trimmed = prefix.trim();
    let all = trimmed.is_empty() || trimmed == "/";
    tree.ephemerals_of(c.session).filter(|p| all || p.starts_with(prefix)).cloned().collect()
}

/// One result of a multiRead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadResult {
    Children(Vec<String>),
    Data(Option<Vec<u8>>, Stat),
    Error(ErrorCode),
}

/// multiRead: each op answered on its own; a failing op does not stop the others.
pub fn multi_read(tree: &mut DataTree, c: &Caller, ops: &[ReadOp]) -> Vec<ReadResult> {
    ops.iter()
        .map(|op| match op {
            ReadOp::GetChildren { path } => match get_children(tree, c, path, false) {
                Ok((ch, _)) => ReadResult::Children(ch),
                Err(e) => ReadResult::Error(e),
            },
            ReadOp::GetData { path } => match get_data(tree, c, path, false) {
                Ok((d, s)) => ReadResult::Data(d, s),
                Err(e) => ReadResult::Error(e),
            },
        })
        .collect()
}

pub fn watcher_kind(t: i32) -> R<Kind> {
    Ok(match t {
        1 => Kind::Children,
        2 => Kind::Data,
        3 => Kind::Any,
        4 => Kind::Persistent,
        5 => Kind::PersistentRecursive,
        _ => return Err(ErrorCode::MarshallingError),
    })
}

pub fn check_watches(tree: &DataTree, c: &Caller, path: &str, kind: i32) -> R<()> {
    if tree.watches.has(path, c.session, watcher_kind(kind)?) {
        Ok(())
    } else {
        Err(ErrorCode::NoWatcher)
    }
}

pub fn remove_watches(tree: &mut DataTree, c: &Caller, path: &str, kind: i32) -> R<()> {
    if tree.watches.remove(path, c.session, watcher_kind(kind)?) {
        Ok(())
    } else {
        Err(ErrorCode::NoWatcher)
    }
}

pub fn add_watch(tree: &mut DataTree, c: &Caller, path: &str, mode: i32) -> R<()> {
    let recursive = match mode {
        corral_proto::codes::ADD_WATCH_PERSISTENT => false,
        corral_proto::codes::ADD_WATCH_PERSISTENT_RECURSIVE => true,
        _ => return Err(ErrorCode::MarshallingError),
    };
    tree.watches.add_persistent(path, c.session, recursive);
    Ok(())
}

/// setWatches after a reconnect: each watch is either fired at once, because what it
/// waits for happened after `relative_zxid` (the last zxid the client saw), or registered.
pub fn set_watches(tree: &mut DataTree, c: &Caller, sw: &SetWatches, out: &mut Vec<WatchEvent>) {
    let s = c.session;
    let rel = sw.relative_zxid;
    let fire = |out: &mut Vec<WatchEvent>, t: EventType, p: &str| {
        out.push(WatchEvent { session: s, event_type: t, path: p.to_string() });
    };
    for p in &sw.data {
        match tree.get(p) {
            None => fire(out, EventType::NodeDeleted, p),
            Some(n) if n.raw_stat().mzxid > rel => fire(out, EventType::NodeDataChanged, p),
            Some(_) => tree.watches.add_data(p, s),
        }
    }
    for p in &sw.exist {
        match tree.get(p) {
            Some(_) => fire(out, EventType::NodeCreated, p),
            None => tree.watches.add_data(p, s),
        }
    }
    for p in &sw.child {
        match tree.get(p) {
            None => fire(out, EventType::NodeDeleted, p),
            Some(n) if n.raw_stat().pzxid > rel => fire(out, EventType::NodeChildrenChanged, p),
            Some(_) => tree.watches.add_child(p, s),
        }
    }
    for p in &sw.persistent {
        tree.watches.add_persistent(p, s, false);
    }
    for p in &sw.persistent_recursive {
        tree.watches.add_persistent(p, s, true);
    }
}
