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
//! core begins a snapshot of its live tree (as of the last applied zxid Z) and, between
//! turns of its loop, encodes it a slice of slots at a time while transactions go on
//! being applied; a slot changed before its slice was written has its record as of Z
//! saved on the change (copy on write, in `corral-tree`). The slices stream to the
//! snapshot thread, which writes the file; once Z is durable in the log the core lets the
//! thread finish it (fsync, rename). A snapshot costs what it writes plus the slots
//! changed meanwhile, never a second tree. (ZooKeeper serialises its live tree while it
//! changes — a "fuzzy" snapshot — and relies on replaying transactions being idempotent,
//! the source of several of its bugs; docs/design.md says more.)

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
                    let written = log.append(&batch).and_then(|_| {
                        if !force_sync {
                            return Ok(());
                        }
                        let started = std::time::Instant::now();
                        log.sync()?;
                        crate::metrics::metrics().fsynced(started.elapsed(), batch.len());
                        Ok(())
                    });
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

/// What the core sends the snapshot thread.
#[derive(Debug)]
pub enum SnapshotMsg {
    /// A snapshot of `zxid` begins with these bytes of its body.
    Begin { zxid: i64, header: Vec<u8> },
    /// The next bytes of the body.
    Chunk(Vec<u8>),
    /// The body is complete and its zxid durable in the log: make the file final.
    Finish,
    /// Drop the snapshot being written (the core's tree was replaced).
    Abandon,
    /// Time to purge old snapshots (`autopurge.purgeInterval`).
    Purge,
}

/// Slices of a snapshot that may wait for the snapshot thread; the core encodes no more
/// while they do.
pub const SNAPSHOT_QUEUE: usize = 16;

/// Starts the snapshot thread, which writes the snapshots the core streams to it (see the
/// module docs), after deleting unfinished snapshot files an earlier run left. After
/// purging old snapshots (with `purgeInterval` set: after each new one, and every
/// interval), `purge_log(z)` is asked to delete log segments holding only records up to
/// `z` (by whoever owns the log).
pub fn spawn_snapshotter(
    settings: SnapshotSettings,
    purge_log: impl Fn(i64) + Send + 'static,
) -> mpsc::Sender<SnapshotMsg> {
    snapshot::remove_leftovers(&settings.snap_dir);
    let (tx, mut rx) = mpsc::channel::<SnapshotMsg>(SNAPSHOT_QUEUE);
    let purge = {
        let settings = settings.clone();
        move || match snapshot::retain(&settings.snap_dir, settings.retain) {
            Ok(Some(oldest)) => purge_log(oldest),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "purging old snapshots failed"),
        }
    };
    if settings.purge_interval_hours > 0 {
        // The timer only asks: purging runs on the snapshot thread, between snapshots.
        let interval = Duration::from_secs(settings.purge_interval_hours as u64 * 3600);
        let weak = tx.downgrade();
        std::thread::Builder::new()
            .name("corral-purge-timer".into())
            .spawn(move || loop {
                std::thread::sleep(interval);
                match weak.upgrade() {
                    Some(tx) if tx.blocking_send(SnapshotMsg::Purge).is_ok() => {}
                    _ => return,
                }
            })
            .expect("spawn the purge timer");
    }
    std::thread::Builder::new()
        .name("corral-snapshot".into())
        .spawn(move || {
            lower_this_threads_priority();
            let mut next = rx.blocking_recv();
            while let Some(msg) = next.take() {
                let SnapshotMsg::Begin { zxid, header } = msg else {
                    if matches!(msg, SnapshotMsg::Purge) {
                        purge();
                    }
                    next = rx.blocking_recv();
                    continue;
                };
                let mut purge_asked = false;
                let started = std::time::Instant::now();
                // A snapshot that begins before the last was finished replaces it.
                let mut replaced_by = None;
                let written = snapshot::write(&settings.snap_dir, zxid, |w| {
                    w.write_all(&header)?;
                    loop {
                        match rx.blocking_recv() {
                            Some(SnapshotMsg::Chunk(bytes)) => w.write_all(&bytes)?,
                            Some(SnapshotMsg::Finish) => return Ok(()),
                            Some(SnapshotMsg::Purge) => purge_asked = true,
                            Some(begin @ SnapshotMsg::Begin { .. }) => {
                                replaced_by = Some(begin);
                                return Err(std::io::Error::other(ABANDONED));
                            }
                            Some(SnapshotMsg::Abandon) | None => return Err(std::io::Error::other(ABANDONED)),
                        }
                    }
                });
                match written {
                    Ok(path) => {
                        crate::metrics::metrics().snapshot_time.observe(crate::metrics::ms(started.elapsed()));
                        tracing::info!(file = %path.display(), ms = started.elapsed().as_millis() as u64, "snapshot written");
                        purge_asked |= settings.purge_interval_hours > 0;
                    }
                    Err(e) if e.to_string().contains(ABANDONED) => {
                        tracing::debug!(zxid = format_args!("{zxid:#x}"), "snapshot abandoned")
                    }
                    Err(e) => tracing::error!(error = %e, "taking a snapshot failed; the log keeps everything"),
                }
                if purge_asked {
                    purge();
                }
                next = replaced_by.or_else(|| rx.blocking_recv());
            }
        })
        .expect("spawn the snapshot thread");
    tx
}

const ABANDONED: &str = "the snapshot was abandoned";

/// Gives the calling thread the lowest CPU priority (nice 19; on Linux a thread's nice
/// value is its own). Writing a snapshot can wait: the log holds everything meanwhile.
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
/// whole tree (at recovery, or from a leader's snapshot) and dropping the old one leaves
/// hundreds of MiB in the allocator's free pages otherwise (mimalloc, the binary's
/// allocator, purges a thread's free pages only when that thread allocates again; glibc's
/// keeps them in its free lists), which counts as the server's resident memory.
pub fn release_free_memory() {
    // SAFETY: mi_collect only walks mimalloc's own free pages (it has none if the
    // binary's allocator is another); it takes no pointers.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
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
/// newest snapshot that does not verify is an error naming it, never skipped. `after`
/// tells, from the snapshot's zxid, about how many log records will be replayed after it,
/// to size the tree for the nodes they may add.
pub fn newest_snapshot(dir: &Path, after: impl FnOnce(i64) -> usize) -> Result<(DataTree, i64), RecoveryError> {
    let Some((_, path)) = snapshot::list(dir)?.pop() else { return Ok((DataTree::new(), 0)) };
    let (zxid, body) = snapshot::read(&path)?;
    tracing::debug!(file = %path.display(), "reading snapshot");
    let tree = DataTree::read_snapshot_growing(&body, after(zxid))
        .map_err(|e| RecoveryError::BadSnapshot { file: path.clone(), reason: e.to_string() })?;
    if tree.last_zxid() != zxid {
        return Err(RecoveryError::BadSnapshot { file: path, reason: format!("holds zxid {:#x}", tree.last_zxid()) });
    }
    Ok((tree, zxid))
}

/// About how many records a log holds after `from` up to `to`: zxids count up by one
/// within an epoch and start again at 1 in the next (so across epochs, at least the new
/// epoch's count).
pub fn records_between(from: i64, to: i64) -> usize {
    use corral_zab::{counter_of, epoch_of};
    if to <= from {
        0
    } else if epoch_of(to) == epoch_of(from) {
        (to - from) as usize
    } else {
        counter_of(to) as usize
    }
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
    let (tree, after) = newest_snapshot(snap_dir, |z| records_between(z, log.last_zxid()))?;
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

    #[test]
    fn records_after_a_snapshot_are_counted_by_zxid() {
        let z = |epoch: i64, n: i64| epoch << 32 | n;
        assert_eq!(records_between(z(1, 100), z(1, 100)), 0);
        assert_eq!(records_between(z(1, 100), z(1, 50)), 0);
        assert_eq!(records_between(z(1, 100), z(1, 160)), 60);
        assert_eq!(records_between(z(1, 100), z(3, 25)), 25);
        assert_eq!(records_between(0, z(1, 7)), 7);
    }

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
                snapshot::write(&snap_dir, live.last_zxid(), |w| live.write_snapshot(w)).unwrap();
            }
        }
        log.sync().unwrap();
        snapshot::write(&snap_dir, live.last_zxid(), |w| live.write_snapshot(w)).unwrap();
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

    /// The snapshot thread writes what the core streams, drops what it abandons, and lets
    /// a snapshot that begins before the last was finished replace it.
    #[tokio::test]
    async fn the_snapshot_thread_writes_streamed_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let snap_dir = dir.path().to_path_buf();
        let settings = SnapshotSettings { snap_dir: snap_dir.clone(), log_dir: snap_dir.clone(), retain: 3, purge_interval_hours: 0 };
        let tx = spawn_snapshotter(settings, |_| {});
        let mut tree = DataTree::new();
        for (i, txn) in txns().into_iter().enumerate() {
            let hdr = TxnHeader { session: 7, cxid: i as i32, zxid: i as i64 + 1, time_ms: 100 };
            tree.apply(&hdr, txn, &mut Vec::new());
        }
        let stream = |tree: &mut DataTree, end: Option<SnapshotMsg>| {
            let (zxid, header) = tree.begin_snapshot();
            let mut msgs = vec![SnapshotMsg::Begin { zxid, header }];
            loop {
                let mut chunk = Vec::new();
                let done = tree.continue_snapshot(2, usize::MAX, &mut chunk);
                msgs.push(SnapshotMsg::Chunk(chunk));
                if done {
                    break;
                }
            }
            msgs.extend(end);
            msgs
        };
        // Abandoned half way; then one replaced by the next Begin; then one finished.
        let mut zxid = tree.last_zxid();
        let mut step = |tree: &mut DataTree| {
            zxid += 1;
            let hdr = TxnHeader { session: zxid, cxid: 0, zxid, time_ms: 100 };
            tree.apply(&hdr, Txn::CreateSession { timeout_ms: 1000, passwd: vec![0; 16] }, &mut Vec::new());
        };
        let mut msgs = stream(&mut tree, Some(SnapshotMsg::Abandon));
        msgs.truncate(msgs.len() - 2);
        msgs.push(SnapshotMsg::Abandon);
        step(&mut tree);
        msgs.extend(stream(&mut tree, None));
        step(&mut tree);
        msgs.extend(stream(&mut tree, Some(SnapshotMsg::Finish)));
        for m in msgs {
            tx.send(m).await.unwrap();
        }
        let path = snap_dir.join(snapshot::file_name(tree.last_zxid()));
        for _ in 0..500 {
            if path.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (zxid, body) = snapshot::read(&path).unwrap();
        assert_eq!(zxid, tree.last_zxid());
        assert_eq!(DataTree::read_snapshot(&body).unwrap().digest(), tree.digest());
        drop(tx);
        // The thread is done once the channel is closed; only the finished file is there.
        std::thread::sleep(Duration::from_millis(50));
        let names: Vec<_> = std::fs::read_dir(&snap_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from(snapshot::file_name(zxid))]);
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
