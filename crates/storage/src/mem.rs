//! An in-memory [`Log`] with a simulated power loss.

use std::collections::VecDeque;

use crate::{assert_appendable, Log, Record, StorageError};

/// A [`Log`] held in memory, for tests and the Zab simulator.
///
/// It keeps the same contract as a [`FileLog`](crate::FileLog), and [`crash`](MemLog::crash)
/// plays the worst crash that contract allows: every record not yet synced is lost. It
/// never fails, so it says nothing about I/O errors; it purges record by record rather
/// than by segment.
#[derive(Debug, Clone, Default)]
pub struct MemLog {
    /// The records held, oldest first. A deque because purging removes from the front.
    records: VecDeque<Record>,
    /// The last durable zxid; records after it are what a crash loses.
    synced_zxid: i64,
}

impl MemLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Simulates a power loss: drops every record appended but not synced.
    pub fn crash(&mut self) {
        while self
            .records
            .back()
            .is_some_and(|record| record.zxid > self.synced_zxid)
        {
            self.records.pop_back();
        }
        self.synced_zxid = self.last_zxid();
    }

    /// How many records the log holds.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the log holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

impl Log for MemLog {
    fn append(&mut self, records: &[Record]) -> Result<(), StorageError> {
        assert_appendable(self.last_zxid(), records);
        self.records.extend(records.iter().cloned());
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.synced_zxid = self.last_zxid();
        Ok(())
    }

    fn last_zxid(&self) -> i64 {
        self.records.back().map_or(0, |record| record.zxid)
    }

    fn synced_zxid(&self) -> i64 {
        self.synced_zxid
    }

    fn first_zxid(&self) -> Option<i64> {
        self.records.front().map(|record| record.zxid)
    }

    fn read_after(&self, after: i64, max_bytes: usize) -> Result<Vec<Record>, StorageError> {
        let start = self.records.partition_point(|record| record.zxid <= after);
        let mut page = Vec::new();
        let mut bytes = 0usize;
        for record in self.records.range(start..) {
            if !page.is_empty() && bytes + record.payload.len() > max_bytes {
                break;
            }
            bytes += record.payload.len();
            page.push(record.clone());
        }
        Ok(page)
    }

    fn truncate_after(&mut self, zxid: i64) -> Result<(), StorageError> {
        let keep = self.records.partition_point(|record| record.zxid <= zxid);
        self.records.truncate(keep);
        self.synced_zxid = self.last_zxid();
        Ok(())
    }

    fn purge_through(&mut self, zxid: i64) -> Result<(), StorageError> {
        // Keep the last record whatever `zxid` says, as a FileLog keeps its last segment.
        while self.records.len() > 1 && self.records[0].zxid <= zxid {
            self.records.pop_front();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(zxid: i64) -> Record {
        Record::new(zxid, zxid.to_be_bytes())
    }

    #[test]
    fn crash_drops_exactly_the_unsynced_tail() {
        let mut log = MemLog::new();
        log.append(&[rec(1), rec(2)]).unwrap();
        log.sync().unwrap();
        log.append(&[rec(3), rec(4)]).unwrap();
        assert_eq!((log.synced_zxid(), log.last_zxid()), (2, 4));
        log.crash();
        assert_eq!(log.read_after(0, usize::MAX).unwrap(), vec![rec(1), rec(2)]);
        assert_eq!((log.synced_zxid(), log.last_zxid()), (2, 2));
        // The zxids lost in the crash may be written again (a new leader re-proposes).
        log.append(&[rec(3)]).unwrap();
        log.crash();
        assert_eq!(log.last_zxid(), 2);
    }

    #[test]
    fn crash_of_a_never_synced_log_empties_it() {
        let mut log = MemLog::new();
        log.append(&[rec(5)]).unwrap();
        log.crash();
        assert!(log.is_empty());
        assert_eq!(
            (log.first_zxid(), log.last_zxid(), log.synced_zxid()),
            (None, 0, 0)
        );
    }

    #[test]
    fn purge_is_per_record_and_keeps_the_last() {
        let mut log = MemLog::new();
        log.append(&[rec(1), rec(2), rec(3)]).unwrap();
        log.purge_through(2).unwrap();
        assert_eq!(log.first_zxid(), Some(3));
        log.purge_through(10).unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(log.last_zxid(), 3);
    }
}
