//! The bridge between the core and the disk: a log-writer thread with group commit, a
//! snapshot thread, and recovery at startup.
//!
//! The core never waits on the disk. It submits each transaction's entry; the writer
//! thread takes whatever has queued, appends it as one batch, syncs once and reports
//! "durable through zxid Z" — so one fsync covers every write that arrived while the
//! previous one ran. If the disk fails, the writer says why and stops reporting: writes
//! are no longer acknowledged, reads go on.
//!
//! Snapshots are *consistent* and never stall the core: every so many transactions the
//! core names a durable zxid Z, and the snapshot thread builds the tree as of Z on its own
//! — the newest snapshot plus the log records after it, read from the segment files — and
//! writes it. The price is a second tree in memory while a snapshot is being made, and the
//! CPU to replay the records since the last one. (ZooKeeper instead serialises its live
//! tree while it changes — a "fuzzy" snapshot — and relies on replaying transactions being
//! idempotent, the source of several of its bugs; docs/design.md says more.)

use crate::core::TxnLog;
use corral_storage::{snapshot, Log, Record, StorageError};
use corral_tree::{decode_entry, DataTree};
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Bytes the writer gathers into one append before syncing.
const MAX_BATCH_BYTES: usize = 4 << 20;

/// What the writer thread is asked to do.
enum WriterMsg {
    Append(Record),
    /// Delete log segments holding only records up to this zxid (a snapshot covers them).
    PurgeThrough(i64),
}

/// The core's handle on the writer thread.
pub struct LogWriter {
    tx: std_mpsc::Sender<WriterMsg>,
}

impl TxnLog for LogWriter {
    fn submit(&mut self, zxid: i64, entry: Vec<u8>) {
        // A send fails only once the writer stopped after a disk failure; the write is
        // then never acknowledged, which is what must happen.
        let _ = self.tx.send(WriterMsg::Append(Record { zxid, payload: entry }));
    }
}

/// Starts the writer thread over `log`. Without `force_sync` (zoo.cfg `forceSync=no`,
/// for benchmarks only) records are written but not fsynced before they are reported.
pub fn spawn_writer<L: Log + Send + 'static>(mut log: L, force_sync: bool) -> (LogWriter, mpsc::UnboundedReceiver<i64>) {
    let (tx, rx) = std_mpsc::channel::<WriterMsg>();
    let (durable_tx, durable_rx) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("corral-log-writer".into())
        .spawn(move || {
            let mut batch = Vec::new();
            let mut purge = None;
            while let Ok(first) = rx.recv() {
                let mut bytes = 0;
                let mut next = Some(first);
                while let Some(msg) = next {
                    match msg {
                        WriterMsg::Append(r) => {
                            bytes += r.payload.len();
                            batch.push(r);
                        }
                        WriterMsg::PurgeThrough(z) => purge = Some(z),
                    }
                    next = if bytes < MAX_BATCH_BYTES { rx.try_recv().ok() } else { None };
                }
                if let Some(last) = batch.last().map(|r| r.zxid) {
                    let written = log.append(&batch).and_then(|_| if force_sync { log.sync() } else { Ok(()) });
                    if let Err(e) = written {
                        tracing::error!(
                            error = %e,
                            "the transaction log cannot take writes; no further write will be acknowledged \
                             (reads go on). Fix the disk and restart the server."
                        );
                        return;
                    }
                    batch.clear();
                    if durable_tx.send(last).is_err() {
                        return;
                    }
                }
                if let Some(z) = purge.take() {
                    match log.purge_through(z) {
                        Ok(()) => tracing::debug!(zxid = format_args!("{z:#x}"), "purged log segments"),
                        Err(e) => tracing::warn!(error = %e, "purging old log segments failed"),
                    }
                }
            }
        })
        .expect("spawn the log writer thread");
    (LogWriter { tx }, durable_rx)
}

/// Settings of the snapshot thread.
#[derive(Debug, Clone)]
pub struct SnapshotSettings {
    pub snap_dir: PathBuf,
    pub log_dir: PathBuf,
    /// `autopurge.snapRetainCount`: snapshots kept when purging (at least 3).
    pub retain: usize,
    /// `autopurge.purgeInterval` in hours; 0 keeps every snapshot and log segment.
    pub purge_interval_hours: u32,
}

impl LogWriter {
    /// Asks the writer thread to delete log segments holding only records up to a zxid.
    pub fn purger(&self) -> impl Fn(i64) + Send + 'static {
        let tx = self.tx.clone();
        move |z| {
            let _ = tx.send(WriterMsg::PurgeThrough(z));
        }
    }
}

/// Starts the snapshot thread; the core sends it durable zxids to snapshot. After a purge
/// of old snapshots, `purge_log(z)` is asked to delete log segments holding only records
/// up to `z` (by whoever owns the log).
pub fn spawn_snapshotter(settings: SnapshotSettings, purge_log: impl Fn(i64) + Send + 'static) -> std_mpsc::Sender<i64> {
    let (tx, rx) = std_mpsc::channel::<i64>();
    std::thread::Builder::new()
        .name("corral-snapshot".into())
        .spawn(move || {
            lower_this_threads_priority();
            let interval = Duration::from_secs(settings.purge_interval_hours as u64 * 3600);
            loop {
                let through = if settings.purge_interval_hours > 0 {
                    match rx.recv_timeout(interval) {
                        Ok(z) => Some(z),
                        Err(std_mpsc::RecvTimeoutError::Timeout) => None,
                        Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                } else {
                    match rx.recv() {
                        Ok(z) => Some(z),
                        Err(_) => return,
                    }
                };
                if let Some(mut z) = through {
                    // Several requests may have queued while the last snapshot ran.
                    while let Ok(later) = rx.try_recv() {
                        z = later;
                    }
                    let started = std::time::Instant::now();
                    match take_snapshot(&settings, z) {
                        Ok(path) => tracing::info!(
                            file = %path.display(),
                            ms = started.elapsed().as_millis() as u64,
                            "snapshot written"
                        ),
                        Err(e) => tracing::error!(error = %e, "taking a snapshot failed; the log keeps everything"),
                    }
                    // The snapshot's tree is gone: hand its pages back to the system.
                    release_free_memory();
                }
                if settings.purge_interval_hours > 0 {
                    match snapshot::retain(&settings.snap_dir, settings.retain) {
                        Ok(Some(oldest)) => purge_log(oldest),
                        Ok(None) => {}
                        Err(e) => tracing::warn!(error = %e, "purging old snapshots failed"),
                    }
                }
            }
        })
        .expect("spawn the snapshot thread");
    tx
}

/// Gives the calling thread the lowest CPU priority (nice 19; on Linux a thread's nice
/// value is its own). A snapshot rebuilds the whole tree; under a saturating write load
/// on few cores it should take only the CPU the threads serving requests leave: it can
/// wait, since the log holds everything meanwhile.
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority on our own thread id; no pointers.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, tid, 19) != 0 {
            tracing::debug!("could not lower the snapshot thread's priority");
        }
    }
}

/// Returns memory the allocator holds but nothing uses to the operating system. Building a
/// whole tree (for a snapshot, or at recovery) and dropping it leaves hundreds of MiB in
/// glibc's free lists otherwise, which counts as the server's resident memory.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Builds the tree as of `through` from the newest snapshot and the log, and writes it.
fn take_snapshot(s: &SnapshotSettings, through: i64) -> Result<PathBuf, RecoveryError> {
    let (mut tree, from) = newest_snapshot(&s.snap_dir)?;
    if from >= through {
        return Ok(s.snap_dir.join(snapshot::file_name(from)));
    }
    let records = snapshot::scan_log(&s.log_dir, from, through)?;
    replay(&mut tree, records)?;
    Ok(snapshot::write(&s.snap_dir, through, |w| tree.write_snapshot(w))?)
}

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("transaction log record {zxid:#x} does not decode: {reason}")]
    BadRecord { zxid: i64, reason: String },
    #[error("snapshot {file} does not decode: {reason}")]
    BadSnapshot { file: PathBuf, reason: String },
}

/// The tree of the newest snapshot in `dir` (and its zxid), or a fresh tree and 0. A
/// newest snapshot that does not verify is an error naming it, never skipped.
pub fn newest_snapshot(dir: &Path) -> Result<(DataTree, i64), RecoveryError> {
    let Some((_, path)) = snapshot::list(dir)?.pop() else { return Ok((DataTree::new(), 0)) };
    let (zxid, body) = snapshot::read(&path)?;
    tracing::debug!(file = %path.display(), "reading snapshot");
    let tree = DataTree::read_snapshot(&body)
        .map_err(|e| RecoveryError::BadSnapshot { file: path.clone(), reason: e.to_string() })?;
    if tree.last_zxid() != zxid {
        return Err(RecoveryError::BadSnapshot { file: path, reason: format!("holds zxid {:#x}", tree.last_zxid()) });
    }
    Ok((tree, zxid))
}

fn replay(tree: &mut DataTree, records: Vec<Record>) -> Result<(), RecoveryError> {
    let mut events = Vec::new();
    for r in records {
        let (hdr, txn) =
            decode_entry(&r.payload).map_err(|e| RecoveryError::BadRecord { zxid: r.zxid, reason: e.to_string() })?;
        if hdr.zxid != r.zxid {
            return Err(RecoveryError::BadRecord { zxid: r.zxid, reason: format!("header says {:#x}", hdr.zxid) });
        }
        tree.apply(&hdr, txn, &mut events);
        events.clear();
    }
    Ok(())
}

/// Rebuilds the tree: the newest snapshot in `snap_dir`, then every later record of the
/// log.
pub fn recover<L: Log>(snap_dir: &Path, log: &L) -> Result<DataTree, RecoveryError> {
    let (tree, after) = newest_snapshot(snap_dir)?;
    replay_log(tree, after, log)
}

/// Applies every record of `log` after `after` (the zxid `tree` holds) to `tree`.
pub fn replay_log<L: Log>(mut tree: DataTree, mut after: i64, log: &L) -> Result<DataTree, RecoveryError> {
    if after > 0 {
        tracing::info!(zxid = format_args!("{after:#x}"), nodes = tree.node_count(), "starting from snapshot");
    }
    loop {
        let page = log.read_after(after, 16 << 20)?;
        let Some(last) = page.last() else { break };
        after = last.zxid;
        replay(&mut tree, page)?;
    }
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_storage::MemLog;
    use corral_tree::{encode_entry, Txn, TxnHeader};

    fn txns() -> Vec<Txn> {
        vec![
            Txn::CreateSession { timeout_ms: 4000, passwd: vec![1; 16] },
            Txn::Create(corral_tree::CreateTxn {
                path: "/a".into(),
                data: Some(b"x".to_vec()),
                acl: corral_proto::Acl::open_unsafe(),
                ephemeral_owner: 7,
                parent_cversion: 1,
            }),
            Txn::SetData { path: "/a".into(), data: None, version: 1 },
        ]
    }

    #[test]
    fn replay_rebuilds_the_tree_and_sessions() {
        let mut log = MemLog::new();
        let mut live = DataTree::new();
        for (i, txn) in txns().into_iter().enumerate() {
            let hdr = TxnHeader { session: 7, cxid: i as i32, zxid: i as i64 + 1, time_ms: 100 };
            log.append(&[Record { zxid: hdr.zxid, payload: encode_entry(&hdr, &txn) }]).unwrap();
            live.apply(&hdr, txn, &mut Vec::new());
        }
        log.sync().unwrap();
        let snaps = tempfile::tempdir().unwrap();
        let back = recover(snaps.path(), &log).unwrap();
        assert_eq!(back.digest(), live.digest());
        assert_eq!(back.last_zxid(), 3);
        assert_eq!(back.ephemeral_count(), 1);
    }

    #[test]
    fn snapshot_plus_log_gives_the_live_tree() {
        let dir = tempfile::tempdir().unwrap();
        let (snap_dir, log_dir) = (dir.path().join("snap"), dir.path().join("log"));
        std::fs::create_dir_all(&snap_dir).unwrap();
        let opts = corral_storage::FileLogOptions { segment_bytes: 4096, preallocate_bytes: 4096, ..Default::default() };
        let (mut log, _) = corral_storage::FileLog::open(&log_dir, opts).unwrap();
        let mut live = DataTree::new();
        let mut zxid = 0;
        let mut write = |log: &mut corral_storage::FileLog, live: &mut DataTree, txn: Txn| {
            zxid += 1;
            let hdr = TxnHeader { session: 7, cxid: 0, zxid, time_ms: 100 + zxid };
            log.append(&[Record { zxid, payload: encode_entry(&hdr, &txn) }]).unwrap();
            live.apply(&hdr, txn, &mut Vec::new());
        };
        for t in txns() {
            write(&mut log, &mut live, t);
        }
        for i in 0..200 {
            let c = corral_tree::CreateTxn {
                path: format!("/n{i}"),
                data: Some(vec![i as u8; 30]),
                acl: corral_proto::Acl::open_unsafe(),
                ephemeral_owner: 0,
                parent_cversion: i + 2,
            };
            write(&mut log, &mut live, Txn::Create(c));
            if i == 120 {
                log.sync().unwrap();
                let s = SnapshotSettings { snap_dir: snap_dir.clone(), log_dir: log_dir.clone(), retain: 3, purge_interval_hours: 0 };
                take_snapshot(&s, live.last_zxid()).unwrap();
            }
        }
        log.sync().unwrap();
        let s = SnapshotSettings { snap_dir: snap_dir.clone(), log_dir: log_dir.clone(), retain: 3, purge_interval_hours: 0 };
        take_snapshot(&s, live.last_zxid()).unwrap();
        assert_eq!(snapshot::list(&snap_dir).unwrap().len(), 2);
        // Recovery from the newest snapshot (and nothing after it) and from an older one
        // plus the log agree with the live tree.
        assert_eq!(recover(&snap_dir, &log).unwrap().digest(), live.digest());
        let newest = snapshot::list(&snap_dir).unwrap().pop().unwrap().1;
        std::fs::remove_file(&newest).unwrap();
        assert_eq!(recover(&snap_dir, &log).unwrap().digest(), live.digest());
        // A damaged newest snapshot stops recovery, naming the file.
        let (_, older) = snapshot::list(&snap_dir).unwrap().pop().unwrap();
        let mut bytes = std::fs::read(&older).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        std::fs::write(&older, bytes).unwrap();
        let err = recover(&snap_dir, &log).unwrap_err().to_string();
        assert!(err.contains(&older.file_name().unwrap().to_string_lossy().to_string()), "{err}");
    }

    #[tokio::test]
    async fn writer_reports_durability_in_order() {
        let (mut w, mut durable) = spawn_writer(MemLog::new(), true);
        for z in 1..=100 {
            w.submit(z, vec![z as u8]);
        }
        let mut last = 0;
        while last < 100 {
            let z = durable.recv().await.unwrap();
            assert!(z > last);
            last = z;
        }
    }
}
