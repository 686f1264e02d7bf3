//! A Zab member's disk: what the driver does with the storage-touching actions of
//! `corral_zab::peer` (see the table in that module's docs), in one place. The tree in
//! memory belongs to the driver; the operations that replace it (recovery, TRUNC, a
//! snapshot from the leader) return the new one.
//!
//! Every method that changes the disk is durable when it returns. Appends are synced one
//! call at a time here; the ensemble driver will move them onto the log-writer thread for
//! group commit, as the standalone server does.
//!
//! Crash safety of the multi-step operations, in the order the steps are taken:
//!
//! - [`ReplicaStore::install_snapshot`]: decode and check the snapshot, write it durably,
//!   delete snapshots newer than it (a diverged history's), and only then empty the log. A
//!   crash in between leaves the new snapshot plus old records after it, which recovery
//!   replays and the next sync cuts; never a state with neither the old history nor the
//!   new one.
//! - [`ReplicaStore::truncate`]: cut the log (durable), then rebuild the tree from disk.
//! - Epochs: [`ReplicaStore::open`] and [`ReplicaStore::recover`] repair an interrupted
//!   epoch update (ZOOKEEPER-1653) before the startup checks.

use crate::durable;
use corral_storage::{
    check_startup, snapshot, DetachedSync, EpochFiles, FileLog, FileLogOptions, Log, Record, StorageError,
};
use corral_tree::{decode_entry, DataTree, TxnHeader, TxnResult, WatchEvent};
use corral_zab::message::Txn;
use corral_zab::peer::{DiskState, LogTail};
use corral_zab::{epoch_of, Zxid};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Recovery(#[from] durable::RecoveryError),
    #[error("the epochs on disk do not fit the log: {0}")]
    Epochs(#[from] corral_storage::EpochCheckError),
    #[error("a snapshot from the leader does not decode: {0}")]
    BadSnapshot(String),
    #[error("transaction {zxid:#x} does not decode: {reason}")]
    BadTxn { zxid: Zxid, reason: String },
    #[error("cannot {op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
}

/// Where a member keeps its state.
#[derive(Debug, Clone)]
pub struct ReplicaDirs {
    /// `acceptedEpoch`, `currentEpoch`, `updatingEpoch` (dataDir, as in ZooKeeper).
    pub data: PathBuf,
    pub log: PathBuf,
    pub snapshots: PathBuf,
}

pub struct ReplicaStore {
    dirs: ReplicaDirs,
    log: FileLog,
    epochs: EpochFiles,
    /// Records kept in the [`LogTail`] handed to Zab.
    history_window: usize,
}

impl ReplicaStore {
    /// Opens the member's state: the log (cutting a torn tail), the epochs (finishing an
    /// interrupted update, then checking them against the log) and the tree (newest
    /// snapshot plus the log).
    #[allow(clippy::type_complexity)]
    pub fn open(
        dirs: ReplicaDirs,
        history_window: usize,
    ) -> Result<(ReplicaStore, DataTree, DiskState, LogTail), ReplicaError> {
        for d in [&dirs.data, &dirs.log, &dirs.snapshots] {
            std::fs::create_dir_all(d).map_err(|source| ReplicaError::Io { op: "create", path: d.clone(), source })?;
        }
        let options = FileLogOptions { preallocate_bytes: 16 << 20, ..Default::default() };
        let (log, _) = FileLog::open(&dirs.log, options)?;
        let epochs = EpochFiles::open(&dirs.data)?;
        let mut store = ReplicaStore { dirs, log, epochs, history_window };
        let (tree, disk, tail) = store.recover()?;
        Ok((store, tree, disk, tail))
    }

    /// Rebuilds the tree from disk (`Recover`), repairing an interrupted epoch update
    /// first, and describes the disk for Zab.
    pub fn recover(&mut self) -> Result<(DataTree, DiskState, LogTail), ReplicaError> {
        let (tree, snapshot_zxid) = self.rebuild()?;
        let last = tree.last_zxid();
        if let Some(e) = self.epochs.repair_interrupted_update(epoch_of(last) as i64)? {
            tracing::warn!(epoch = e, "finished an epoch update a crash interrupted (currentEpoch raised to the log's)");
        }
        let (accepted, current) = (self.epochs.accepted()?, self.epochs.current()?);
        check_startup(accepted, current, epoch_of(last) as i64)?;
        let disk = DiskState {
            accepted_epoch: accepted.unwrap_or(0) as u32,
            current_epoch: current.unwrap_or(0) as u32,
            last_zxid: last,
            snapshot_zxid,
            trusted: true,
        };
        Ok((tree, disk, self.tail(snapshot_zxid)?))
    }

    /// The newest records of the log after the snapshot, at most `history_window` of them,
    /// and the zxid just before them.
    fn tail(&self, snapshot_zxid: Zxid) -> Result<LogTail, ReplicaError> {
        // One more than the window, so the oldest one kept names the base.
        let keep = self.history_window + 1;
        let mut all: Vec<Record> = Vec::new();
        let mut after = snapshot_zxid;
        loop {
            let page = self.log.read_after(after, 16 << 20)?;
            let Some(last) = page.last() else { break };
            after = last.zxid;
            all.extend(page);
            let excess = all.len().saturating_sub(keep);
            all.drain(..excess);
        }
        let base = if all.len() < keep { snapshot_zxid } else { all.remove(0).zxid };
        Ok(LogTail { base, txns: all.into_iter().map(|r| (r.zxid, r.payload.into())).collect() })
    }

    pub fn persist_accepted(&mut self, epoch: u32) -> Result<(), ReplicaError> {
        Ok(self.epochs.set_accepted(epoch as i64)?)
    }

    pub fn persist_current(&mut self, epoch: u32) -> Result<(), ReplicaError> {
        Ok(self.epochs.set_current(epoch as i64)?)
    }

    pub fn begin_epoch_update(&mut self) -> Result<(), ReplicaError> {
        Ok(self.epochs.begin_epoch_update()?)
    }

    /// Appends and syncs; returns the zxid the log is durable through.
    pub fn append(&mut self, txns: &[(Zxid, Txn)]) -> Result<Zxid, ReplicaError> {
        let records: Vec<Record> = txns.iter().map(|(z, t)| Record::new(*z, t.to_vec())).collect();
        self.log.append(&records)?;
        self.log.sync()?;
        Ok(self.log.synced_zxid())
    }

    /// Appends without syncing: [`ReplicaStore::detached_sync`] makes it durable.
    pub fn append_unsynced(&mut self, txns: &[(Zxid, Txn)]) -> Result<(), ReplicaError> {
        let records: Vec<Record> = txns.iter().map(|(z, t)| Record::new(*z, t.to_vec())).collect();
        Ok(self.log.append(&records)?)
    }

    /// A sync of what is appended so far, to run on another thread; `None` if it is
    /// durable already.
    pub fn detached_sync(&self) -> Result<Option<DetachedSync>, ReplicaError> {
        Ok(self.log.detached_sync()?)
    }

    /// A detached sync ran: the log is durable through its zxid.
    pub fn synced_by(&mut self, done: &DetachedSync) {
        self.log.synced_by(done)
    }

    /// Syncs whatever is appended (a no-op if it is durable already).
    pub fn sync(&mut self) -> Result<Zxid, ReplicaError> {
        self.log.sync()?;
        Ok(self.log.synced_zxid())
    }

    /// The last zxid appended.
    pub fn last_zxid(&self) -> Zxid {
        self.log.last_zxid()
    }

    /// The zxid the log is durable through.
    pub fn synced_zxid(&self) -> Zxid {
        self.log.synced_zxid()
    }

    /// Deletes log segments holding only records up to `zxid` (a snapshot covers them).
    pub fn purge_through(&mut self, zxid: Zxid) -> Result<(), ReplicaError> {
        Ok(self.log.purge_through(zxid)?)
    }

    /// Cuts the log after `zxid` and rebuilds the tree from disk (what was cut had been
    /// loaded into memory by recovery).
    pub fn truncate(&mut self, zxid: Zxid) -> Result<DataTree, ReplicaError> {
        self.log.truncate_after(zxid)?;
        Ok(self.rebuild()?.0)
    }

    /// Loads the tree from disk: the newest snapshot, then the log after it; and the
    /// snapshot's zxid.
    fn rebuild(&mut self) -> Result<(DataTree, Zxid), ReplicaError> {
        let last = self.log.last_zxid();
        let (tree, snapshot_zxid) = durable::newest_snapshot(&self.dirs.snapshots, |z| durable::records_between(z, last))?;
        Ok((durable::replay_log(tree, snapshot_zxid, &self.log)?, snapshot_zxid))
    }

    /// Replaces everything with the leader's snapshot of `zxid` (see the module docs for
    /// the order of the steps).
    pub fn install_snapshot(&mut self, zxid: Zxid, bytes: &[u8]) -> Result<DataTree, ReplicaError> {
        let tree = DataTree::read_snapshot(bytes).map_err(|e| ReplicaError::BadSnapshot(e.to_string()))?;
        if tree.last_zxid() != zxid {
            return Err(ReplicaError::BadSnapshot(format!("holds {:#x}, announced {zxid:#x}", tree.last_zxid())));
        }
        snapshot::write(&self.dirs.snapshots, zxid, |w| w.write_all(bytes))?;
        snapshot::remove_newer_than(&self.dirs.snapshots, zxid)?;
        self.log.truncate_after(0)?;
        Ok(tree)
    }
}

/// The tree as snapshot bytes, for `SendSnapshot`.
pub fn snapshot_bytes(tree: &DataTree) -> Vec<u8> {
    let mut out = Vec::new();
    tree.write_snapshot(&mut out).expect("writing to a Vec cannot fail");
    out
}

/// A committed transaction's header and body, checked against the zxid Zab gave it.
pub fn decode_committed(zxid: Zxid, bytes: &[u8]) -> Result<(TxnHeader, corral_tree::Txn), ReplicaError> {
    let (hdr, txn) = decode_entry(bytes).map_err(|e| ReplicaError::BadTxn { zxid, reason: e.to_string() })?;
    if hdr.zxid != zxid {
        return Err(ReplicaError::BadTxn { zxid, reason: format!("its header says {:#x}", hdr.zxid) });
    }
    Ok((hdr, txn))
}

/// Applies committed transactions to `tree`, in order.
pub fn apply(
    tree: &mut DataTree,
    txns: &[(Zxid, Txn)],
    events: &mut Vec<WatchEvent>,
) -> Result<Vec<(TxnHeader, TxnResult)>, ReplicaError> {
    let mut results = Vec::with_capacity(txns.len());
    for (zxid, bytes) in txns {
        let (hdr, txn) = decode_committed(*zxid, bytes)?;
        let result = tree.apply(&hdr, txn, events);
        results.push((hdr, result));
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use corral_tree::{encode_entry, CreateTxn, Txn as TreeTxn};

    fn dirs(root: &Path) -> ReplicaDirs {
        ReplicaDirs { data: root.to_path_buf(), log: root.join("log"), snapshots: root.join("snapshots") }
    }

    fn create(zxid: Zxid, path: &str) -> (Zxid, Txn) {
        let hdr = TxnHeader { session: 1, cxid: 0, zxid, time_ms: 1 };
        let txn = TreeTxn::Create(CreateTxn {
            path: path.into(),
            data: Some(path.as_bytes().to_vec()),
            acl: corral_proto::Acl::open_unsafe(),
            ephemeral_owner: 0,
            parent_cversion: 1,
        });
        (zxid, encode_entry(&hdr, &txn).into())
    }

    fn z(e: u32, c: u32) -> Zxid {
        corral_zab::make_zxid(e, c)
    }

    /// A fresh member that has taken epoch 1 as accepted and current.
    fn in_epoch_1(root: &Path, window: usize) -> (ReplicaStore, DataTree) {
        let (mut s, tree, ..) = ReplicaStore::open(dirs(root), window).unwrap();
        s.persist_accepted(1).unwrap();
        s.persist_current(1).unwrap();
        (s, tree)
    }

    /// Appends and applies `txns`, as a member does with committed ones.
    fn commit(s: &mut ReplicaStore, tree: &mut DataTree, txns: &[(Zxid, Txn)]) {
        s.append(txns).unwrap();
        apply(tree, txns, &mut Vec::new()).unwrap();
    }

    #[test]
    fn a_fresh_member_and_what_survives_a_reopen() {
        let root = tempfile::tempdir().unwrap();
        let (mut s, mut tree, disk, tail) = ReplicaStore::open(dirs(root.path()), 10).unwrap();
        assert_eq!(disk, DiskState { accepted_epoch: 0, current_epoch: 0, last_zxid: 0, snapshot_zxid: 0, trusted: true });
        assert!(tail.txns.is_empty());
        s.persist_accepted(1).unwrap();
        s.persist_current(1).unwrap();
        let txns: Vec<_> = (1..=3).map(|c| create(z(1, c), &format!("/n{c}"))).collect();
        commit(&mut s, &mut tree, &txns);
        let digest = tree.digest();
        drop(s);
        let (_, tree, disk, tail) = ReplicaStore::open(dirs(root.path()), 10).unwrap();
        assert_eq!((disk.accepted_epoch, disk.current_epoch, disk.last_zxid), (1, 1, z(1, 3)));
        assert_eq!(tree.digest(), digest);
        assert_eq!(tail.base, 0);
        assert_eq!(tail.txns, txns);
    }

    #[test]
    fn the_tail_holds_the_newest_records_and_the_zxid_before_them() {
        let root = tempfile::tempdir().unwrap();
        let (mut s, mut tree) = in_epoch_1(root.path(), 4);
        let txns: Vec<_> = (1..=10).map(|c| create(z(1, c), &format!("/n{c}"))).collect();
        commit(&mut s, &mut tree, &txns);
        let (_, _, tail) = s.recover().unwrap();
        assert_eq!(tail.base, z(1, 6));
        assert_eq!(tail.txns, txns[6..].to_vec());
    }

    #[test]
    fn truncate_drops_the_uncommitted_tail_from_disk_and_memory() {
        let root = tempfile::tempdir().unwrap();
        let (mut s, mut tree) = in_epoch_1(root.path(), 10);
        let txns: Vec<_> = (1..=5).map(|c| create(z(1, c), &format!("/n{c}"))).collect();
        commit(&mut s, &mut tree, &txns[..3]);
        let three = tree.digest();
        commit(&mut s, &mut tree, &txns[3..]);
        let tree = s.truncate(z(1, 3)).unwrap();
        assert_eq!(tree.digest(), three);
        assert!(tree.get("/n4").is_none());
        drop(s);
        let (_, tree, disk, _) = ReplicaStore::open(dirs(root.path()), 10).unwrap();
        assert_eq!(disk.last_zxid, z(1, 3));
        assert_eq!(tree.digest(), three);
    }

    #[test]
    fn a_snapshot_from_the_leader_replaces_a_diverged_history() {
        // The leader's state.
        let lroot = tempfile::tempdir().unwrap();
        let (mut leader, mut leader_tree, ..) = ReplicaStore::open(dirs(lroot.path()), 10).unwrap();
        commit(&mut leader, &mut leader_tree, &[create(z(1, 1), "/a"), create(z(1, 2), "/b")]);
        let bytes = snapshot_bytes(&leader_tree);
        // A member holding a diverged history, including a snapshot newer than the leader's.
        let root = tempfile::tempdir().unwrap();
        let (mut s, mut tree, ..) = ReplicaStore::open(dirs(root.path()), 10).unwrap();
        commit(&mut s, &mut tree, &[create(z(1, 1), "/a"), create(z(1, 2), "/x"), create(z(1, 3), "/y")]);
        let own = snapshot_bytes(&tree);
        snapshot::write(&dirs(root.path()).snapshots, z(1, 3), |w| w.write_all(&own)).unwrap();
        commit(&mut s, &mut tree, &[create(z(1, 4), "/z")]);
        // A snapshot that does not decode, or holds another zxid, changes nothing.
        assert!(matches!(s.install_snapshot(z(1, 2), &bytes[..10]), Err(ReplicaError::BadSnapshot(_))));
        assert!(matches!(s.install_snapshot(z(1, 9), &bytes), Err(ReplicaError::BadSnapshot(_))));
        assert!(tree.get("/z").is_some());
        let mut tree = s.install_snapshot(z(1, 2), &bytes).unwrap();
        assert_eq!(tree.digest(), leader_tree.digest());
        // NEWLEADER: the epoch, then what follows the snapshot is appended after it.
        s.persist_accepted(2).unwrap();
        s.persist_current(2).unwrap();
        commit(&mut s, &mut tree, &[create(z(2, 1), "/c")]);
        let digest = tree.digest();
        drop(s);
        let (_, tree, disk, _) = ReplicaStore::open(dirs(root.path()), 10).unwrap();
        assert_eq!(tree.digest(), digest, "the stale snapshot of (1,3) must not come back");
        assert_eq!((disk.last_zxid, disk.snapshot_zxid), (z(2, 1), z(1, 2)));
        assert!(tree.get("/x").is_none() && tree.get("/c").is_some());
    }

    /// ZOOKEEPER-1653 end to end on disk: synced history of epoch 2 logged, then a crash
    /// before currentEpoch is raised; the member must start.
    #[test]
    fn an_interrupted_epoch_update_does_not_keep_the_member_down() {
        let root = tempfile::tempdir().unwrap();
        let (mut s, mut tree, ..) = ReplicaStore::open(dirs(root.path()), 10).unwrap();
        s.persist_accepted(3).unwrap();
        s.persist_current(1).unwrap();
        commit(&mut s, &mut tree, &[create(z(1, 1), "/a")]);
        s.begin_epoch_update().unwrap();
        s.append(&[create(z(2, 1), "/b")]).unwrap();
        drop(s); // the crash
        let (_, _, disk, _) = ReplicaStore::open(dirs(root.path()), 10).unwrap();
        assert_eq!((disk.accepted_epoch, disk.current_epoch, disk.last_zxid), (3, 2, z(2, 1)));
        // Without the marker the same disk is refused, naming the problem.
        let root = tempfile::tempdir().unwrap();
        let (mut s, ..) = ReplicaStore::open(dirs(root.path()), 10).unwrap();
        s.persist_accepted(3).unwrap();
        s.persist_current(1).unwrap();
        s.append(&[create(z(2, 1), "/b")]).unwrap();
        drop(s);
        assert!(matches!(ReplicaStore::open(dirs(root.path()), 10), Err(ReplicaError::Epochs(_))));
    }
}
