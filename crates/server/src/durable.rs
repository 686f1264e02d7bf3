//! The bridge between the core and a transaction log: a writer thread with group commit,
//! and recovery of the tree from the log at startup.
//!
//! The core never waits on the disk. It submits each transaction's entry; the writer
//! thread takes whatever has queued, appends it as one batch, syncs once and reports
//! "durable through zxid Z" — so one fsync covers every write that arrived while the
//! previous one ran. If the disk fails, the writer says why and stops reporting: writes
//! are no longer acknowledged, reads go on.

use crate::core::TxnLog;
use corral_storage::{Log, Record, StorageError};
use corral_tree::{decode_entry, DataTree};
use std::sync::mpsc as std_mpsc;
use tokio::sync::mpsc;

/// Bytes the writer gathers into one append before syncing.
const MAX_BATCH_BYTES: usize = 4 << 20;

/// The core's handle on the writer thread.
pub struct LogWriter {
    tx: std_mpsc::Sender<Record>,
}

impl TxnLog for LogWriter {
    fn submit(&mut self, zxid: i64, entry: Vec<u8>) {
        // A send fails only once the writer stopped after a disk failure; the write is
        // then never acknowledged, which is what must happen.
        let _ = self.tx.send(Record { zxid, payload: entry });
    }
}

/// Starts the writer thread over `log`. Without `force_sync` (zoo.cfg `forceSync=no`,
/// for benchmarks only) records are written but not fsynced before they are reported.
pub fn spawn_writer<L: Log + Send + 'static>(mut log: L, force_sync: bool) -> (LogWriter, mpsc::UnboundedReceiver<i64>) {
    let (tx, rx) = std_mpsc::channel::<Record>();
    let (durable_tx, durable_rx) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("corral-log-writer".into())
        .spawn(move || {
            let mut batch = Vec::new();
            while let Ok(first) = rx.recv() {
                let mut bytes = first.payload.len();
                batch.push(first);
                while bytes < MAX_BATCH_BYTES {
                    match rx.try_recv() {
                        Ok(r) => {
                            bytes += r.payload.len();
                            batch.push(r);
                        }
                        Err(_) => break,
                    }
                }
                let last = batch.last().expect("not empty").zxid;
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
        })
        .expect("spawn the log writer thread");
    (LogWriter { tx }, durable_rx)
}

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("transaction log record {zxid:#x} does not decode: {reason}")]
    BadRecord { zxid: i64, reason: String },
}

/// Rebuilds the tree by replaying every record of the log.
pub fn recover<L: Log>(log: &L) -> Result<DataTree, RecoveryError> {
    let mut tree = DataTree::new();
    let mut after = 0;
    let mut events = Vec::new();
    loop {
        let page = log.read_after(after, 16 << 20)?;
        let Some(last) = page.last() else { break };
        after = last.zxid;
        for r in page {
            let (hdr, txn) =
                decode_entry(&r.payload).map_err(|e| RecoveryError::BadRecord { zxid: r.zxid, reason: e.to_string() })?;
            if hdr.zxid != r.zxid {
                return Err(RecoveryError::BadRecord { zxid: r.zxid, reason: format!("header says {:#x}", hdr.zxid) });
            }
            tree.apply(&hdr, txn, &mut events);
            events.clear();
        }
    }
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_storage::MemLog;
    use corral_tree::{encode_entry, Txn, TxnHeader};

    #[test]
    fn replay_rebuilds_the_tree_and_sessions() {
        let mut log = MemLog::new();
        let mut live = DataTree::new();
        let txns = vec![
            Txn::CreateSession { timeout_ms: 4000, passwd: vec![1; 16] },
            Txn::Create(corral_tree::CreateTxn {
                path: "/a".into(),
                data: Some(b"x".to_vec()),
                acl: corral_proto::Acl::open_unsafe(),
                ephemeral_owner: 7,
                parent_cversion: 1,
            }),
            Txn::SetData { path: "/a".into(), data: None, version: 1 },
        ];
        for (i, txn) in txns.into_iter().enumerate() {
            let hdr = TxnHeader { session: 7, cxid: i as i32, zxid: i as i64 + 1, time_ms: 100 };
            log.append(&[Record { zxid: hdr.zxid, payload: encode_entry(&hdr, &txn) }]).unwrap();
            live.apply(&hdr, txn, &mut Vec::new());
        }
        log.sync().unwrap();
        let back = recover(&log).unwrap();
        assert_eq!(back.digest(), live.digest());
        assert_eq!(back.last_zxid(), 3);
        assert_eq!(back.ephemeral_count(), 1);
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
