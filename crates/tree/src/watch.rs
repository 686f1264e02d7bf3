//! Watch registrations and which session hears of which change.
//!
//! Like ZooKeeper, two tables: *data* watches (set by getData and exists, fired by
//! NodeCreated / NodeDeleted / NodeDataChanged on the path) and *child* watches (set by
//! getChildren, fired by NodeChildrenChanged and NodeDeleted on the path). A registration
//! is a bit set of modes: one-shot (cleared when it fires), persistent (kept), and
//! persistent-recursive (kept, and fired by changes anywhere below the path; recursive
//! watches live only in the data table, so they never see NodeChildrenChanged). A session
//! hears of one change once, whichever tables matched.

use crate::path;
use corral_proto::EventType;
use std::collections::{BTreeMap, HashMap, HashSet};

/// A session id.
pub type SessionId = i64;

pub const ONE_SHOT: u8 = 1;
pub const PERSISTENT: u8 = 2;
pub const RECURSIVE: u8 = 4;
const ALL: u8 = ONE_SHOT | PERSISTENT | RECURSIVE;

/// A notification for one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub session: SessionId,
    pub event_type: EventType,
    pub path: String,
}

#[derive(Debug, Default)]
struct Table {
    by_path: HashMap<String, BTreeMap<SessionId, u8>>,
}

impl Table {
    fn add(&mut self, path: &str, session: SessionId, mode: u8) {
        *self.by_path.entry(path.to_string()).or_default().entry(session).or_insert(0) |= mode;
    }

    fn has(&self, path: &str, session: SessionId, mask: u8) -> bool {
        self.by_path.get(path).and_then(|m| m.get(&session)).is_some_and(|b| b & mask != 0)
    }

    /// Clears `mask` bits for the session on the path; true when something was cleared.
    fn remove(&mut self, path: &str, session: SessionId, mask: u8) -> bool {
        let Some(m) = self.by_path.get_mut(path) else { return false };
        let Some(bits) = m.get_mut(&session) else { return false };
        let had = *bits & mask != 0;
        *bits &= !mask;
        if *bits == 0 {
            m.remove(&session);
        }
        if m.is_empty() {
            self.by_path.remove(path);
        }
        had
    }

    fn contains(&self, path: &str, session: SessionId) -> bool {
        self.by_path.get(path).is_some_and(|m| m.contains_key(&session))
    }

    /// The sessions watching `path` itself; one-shot bits are consumed, and sessions
    /// left with no registration here are added to `gone`.
    fn fire_exact(&mut self, path: &str, out: &mut Vec<SessionId>, gone: &mut Vec<SessionId>) {
        let Some(m) = self.by_path.get_mut(path) else { return };
        m.retain(|s, bits| {
            out.push(*s);
            *bits &= !ONE_SHOT;
            if *bits == 0 {
                gone.push(*s);
            }
            *bits != 0
        });
        if m.is_empty() {
            self.by_path.remove(path);
        }
    }

    fn fire_recursive_ancestors(&self, path: &str, out: &mut Vec<SessionId>) {
        for a in path::ancestors(path) {
            if let Some(m) = self.by_path.get(a) {
                out.extend(m.iter().filter(|(_, b)| **b & RECURSIVE != 0).map(|(s, _)| *s));
            }
        }
    }

    fn count(&self) -> usize {
        self.by_path.values().map(|m| m.len()).sum()
    }
}

/// All watches of the server.
#[derive(Debug, Default)]
pub struct Watches {
    data: Table,
    child: Table,
    /// How many recursive registrations exist; when none, a change skips the ancestor walk.
    recursive: usize,
    /// The paths each session may watch (a superset: entries are dropped lazily), so that
    /// dropping a session's watches costs its own watches, not every watch on the server.
    by_session: HashMap<SessionId, HashSet<String>>,
}

/// Which table(s) a removeWatches / checkWatches request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Children,
    Data,
    Any,
    Persistent,
    PersistentRecursive,
}

impl Watches {
    fn index(&mut self, path: &str, session: SessionId) {
        let paths = self.by_session.entry(session).or_default();
        if !paths.contains(path) {
            paths.insert(path.to_string());
        }
    }

    /// Drops `path` from the session's index once neither table holds it.
    fn unindex_if_gone(&mut self, path: &str, session: SessionId) {
        if self.data.contains(path, session) || self.child.contains(path, session) {
            return;
        }
        if let Some(paths) = self.by_session.get_mut(&session) {
            paths.remove(path);
            if paths.is_empty() {
                self.by_session.remove(&session);
            }
        }
    }

    pub fn add_data(&mut self, path: &str, session: SessionId) {
        self.data.add(path, session, ONE_SHOT);
        self.index(path, session);
    }

    pub fn add_child(&mut self, path: &str, session: SessionId) {
        self.child.add(path, session, ONE_SHOT);
        self.index(path, session);
    }

    /// addWatch: a persistent watch sits in both tables; a recursive one in the data
    /// table only.
    pub fn add_persistent(&mut self, path: &str, session: SessionId, recursive: bool) {
        if recursive {
            if !self.data.has(path, session, RECURSIVE) {
                self.recursive += 1;
            }
            self.data.add(path, session, RECURSIVE);
        } else {
            self.data.add(path, session, PERSISTENT);
            self.child.add(path, session, PERSISTENT);
        }
        self.index(path, session);
    }

    /// Fires the watches of one change. `suppress` holds sessions already told of this
    /// change by another table; the newly told are added to it.
    fn fire(
        &mut self,
        child_table: bool,
        path: &str,
        ev: EventType,
        told: &mut HashSet<SessionId>,
        out: &mut Vec<WatchEvent>,
    ) {
        let mut sessions = Vec::new();
        let mut gone = Vec::new();
        if child_table {
            self.child.fire_exact(path, &mut sessions, &mut gone);
        } else {
            self.data.fire_exact(path, &mut sessions, &mut gone);
            if self.recursive > 0 {
                self.data.fire_recursive_ancestors(path, &mut sessions);
            }
        }
        for s in gone {
            self.unindex_if_gone(path, s);
        }
        for s in sessions {
            if told.insert(s) {
                out.push(WatchEvent { session: s, event_type: ev, path: path.to_string() });
            }
        }
    }

    pub fn node_created(&mut self, path: &str, parent: &str, out: &mut Vec<WatchEvent>) {
        self.fire(false, path, EventType::NodeCreated, &mut HashSet::new(), out);
        self.fire(true, parent, EventType::NodeChildrenChanged, &mut HashSet::new(), out);
    }

    pub fn node_deleted(&mut self, path: &str, parent: &str, out: &mut Vec<WatchEvent>) {
        let mut told = HashSet::new();
        self.fire(false, path, EventType::NodeDeleted, &mut told, out);
        self.fire(true, path, EventType::NodeDeleted, &mut told, out);
        self.fire(true, parent, EventType::NodeChildrenChanged, &mut HashSet::new(), out);
    }

    pub fn data_changed(&mut self, path: &str, out: &mut Vec<WatchEvent>) {
        self.fire(false, path, EventType::NodeDataChanged, &mut HashSet::new(), out);
    }

    fn masks(kind: Kind) -> (u8, u8) {
        // (data-table bits, child-table bits)
        match kind {
            Kind::Children => (0, ALL),
            Kind::Data => (ALL, 0),
            Kind::Any => (ALL, ALL),
            Kind::Persistent => (PERSISTENT, PERSISTENT),
            Kind::PersistentRecursive => (RECURSIVE, 0),
        }
    }

    /// checkWatches: whether the session has a watch of this kind on the path.
    pub fn has(&self, path: &str, session: SessionId, kind: Kind) -> bool {
        let (d, c) = Self::masks(kind);
        (d != 0 && self.data.has(path, session, d)) || (c != 0 && self.child.has(path, session, c))
    }

    /// removeWatches: removes the session's watches of this kind on the path; false when
    /// there were none (the server answers NoWatcher).
    pub fn remove(&mut self, path: &str, session: SessionId, kind: Kind) -> bool {
        let (d, c) = Self::masks(kind);
        let had_recursive = self.data.has(path, session, RECURSIVE);
        let mut any = d != 0 && self.data.remove(path, session, d);
        any |= c != 0 && self.child.remove(path, session, c);
        if had_recursive && !self.data.has(path, session, RECURSIVE) {
            self.recursive -= 1;
        }
        self.unindex_if_gone(path, session);
        any
    }

    /// Drops every watch of a session (its connection closed; the client re-registers
    /// them with setWatches when it reconnects).
    pub fn remove_session(&mut self, session: SessionId) {
        let Some(paths) = self.by_session.remove(&session) else { return };
        for p in &paths {
            if self.data.has(p, session, RECURSIVE) {
                self.recursive -= 1;
            }
            self.data.remove(p, session, u8::MAX);
            self.child.remove(p, session, u8::MAX);
        }
    }

    /// Number of registrations (a path watched by a session in both tables counts twice).
    pub fn count(&self) -> usize {
        self.data.count() + self.child.count()
    }

    /// Distinct watched paths.
    pub fn path_count(&self) -> usize {
        let mut paths: HashSet<&String> = self.data.by_path.keys().collect();
        paths.extend(self.child.by_path.keys());
        paths.len()
    }

    /// Sessions that hold at least one watch.
    pub fn session_count(&self) -> usize {
        let mut s: HashSet<SessionId> = HashSet::new();
        for t in [&self.data, &self.child] {
            for m in t.by_path.values() {
                s.extend(m.keys());
            }
        }
        s.len()
    }

    /// Every watched path with the sessions watching it, sorted by path.
    pub fn by_path(&self) -> Vec<(String, Vec<SessionId>)> {
        let mut m: BTreeMap<&String, Vec<SessionId>> = BTreeMap::new();
        for t in [&self.data, &self.child] {
            for (p, sessions) in &t.by_path {
                m.entry(p).or_default().extend(sessions.keys());
            }
        }
        m.into_iter()
            .map(|(p, mut v)| {
                v.sort_unstable();
                v.dedup();
                (p.clone(), v)
            })
            .collect()
    }

    /// Every watching session with its watched paths, sorted by session.
    pub fn by_session(&self) -> Vec<(SessionId, Vec<String>)> {
        let mut m: BTreeMap<SessionId, Vec<String>> = BTreeMap::new();
        for (p, sessions) in self.by_path() {
            for s in sessions {
                m.entry(s).or_default().push(p.clone());
            }
        }
        m.into_iter().collect()
    }

    /// Watched paths of one session, sorted.
    pub fn paths_of(&self, session: SessionId) -> Vec<String> {
        let mut v: Vec<String> = [&self.data, &self.child]
            .iter()
            .flat_map(|t| t.by_path.iter().filter(|(_, m)| m.contains_key(&session)).map(|(p, _)| p.clone()))
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EventType::*;

    fn ev(session: SessionId, t: EventType, p: &str) -> WatchEvent {
        WatchEvent { session, event_type: t, path: p.into() }
    }

    #[test]
    fn session_index_follows_registrations() {
        let mut w = Watches::default();
        w.add_data("/a", 1);
        w.add_child("/a", 1);
        w.add_persistent("/p", 1, true);
        w.add_data("/a", 2);
        let mut out = vec![];
        w.data_changed("/a", &mut out);
        // Session 1 still has its child watch on /a, session 2 nothing.
        assert_eq!(w.by_session.get(&1).map(|p| p.len()), Some(2));
        assert!(!w.by_session.contains_key(&2));
        w.remove_session(1);
        assert_eq!((w.count(), w.recursive), (0, 0));
        out.clear();
        w.node_created("/p/x", "/p", &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn one_shot_fires_once() {
        let mut w = Watches::default();
        w.add_data("/a", 1);
        let mut out = vec![];
        w.data_changed("/a", &mut out);
        w.data_changed("/a", &mut out);
        assert_eq!(out, vec![ev(1, NodeDataChanged, "/a")]);
        assert_eq!(w.count(), 0);
    }

    #[test]
    fn delete_tells_each_session_once() {
        let mut w = Watches::default();
        w.add_data("/a", 1);
        w.add_child("/a", 1);
        w.add_child("/", 2);
        let mut out = vec![];
        w.node_deleted("/a", "/", &mut out);
        assert_eq!(out, vec![ev(1, NodeDeleted, "/a"), ev(2, NodeChildrenChanged, "/")]);
    }

    #[test]
    fn persistent_and_recursive() {
        let mut w = Watches::default();
        w.add_persistent("/a", 1, false);
        w.add_persistent("/a", 2, true);
        let mut out = vec![];
        w.node_created("/a/b", "/a", &mut out);
        assert_eq!(out, vec![ev(2, NodeCreated, "/a/b"), ev(1, NodeChildrenChanged, "/a")]);
        out.clear();
        w.data_changed("/a", &mut out);
        w.data_changed("/a", &mut out);
        assert_eq!(out.len(), 4);
        assert!(w.remove("/a", 2, Kind::PersistentRecursive));
        assert!(!w.remove("/a", 2, Kind::PersistentRecursive));
        out.clear();
        w.node_created("/a/c", "/a", &mut out);
        assert_eq!(out, vec![ev(1, NodeChildrenChanged, "/a")]);
    }

    #[test]
    fn listings_by_path_and_session() {
        let mut w = Watches::default();
        w.add_data("/b", 2);
        w.add_child("/a", 2);
        w.add_data("/a", 1);
        assert_eq!(w.by_path(), vec![("/a".to_string(), vec![1, 2]), ("/b".to_string(), vec![2])]);
        assert_eq!(w.by_session(), vec![(1, vec!["/a".to_string()]), (2, vec!["/a".to_string(), "/b".to_string()])]);
        assert_eq!((w.count(), w.path_count(), w.session_count()), (3, 2, 2));
    }

    #[test]
    fn remove_kinds_and_sessions() {
        let mut w = Watches::default();
        w.add_data("/a", 1);
        w.add_child("/a", 1);
        assert!(w.has("/a", 1, Kind::Data));
        assert!(w.remove("/a", 1, Kind::Children));
        assert!(!w.has("/a", 1, Kind::Children));
        w.add_persistent("/p", 1, false);
        assert!(w.has("/p", 1, Kind::Children) && w.has("/p", 1, Kind::Data));
        assert!(w.has("/a", 1, Kind::Any));
        w.add_persistent("/b", 1, true);
        w.remove_session(1);
        assert_eq!(w.count(), 0);
        assert_eq!(w.recursive, 0);
        assert!(w.by_session.is_empty());
    }
}
