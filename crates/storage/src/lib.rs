//! Durable storage for Corral: the transaction log.
//!
//! A server acknowledges a write only once its transaction is in the log and the log is
//! synced; after a crash it rebuilds its state from what the log holds. This crate owns
//! the bytes on disk and the rules that make that sound.
//!
//! - [`Log`]: the trait every log implements, with its durability contract. The server and
//!   the coming Zab driver are written against it.
//! - [`Record`]: one entry, a zxid and an opaque payload (an encoded transaction; this
//!   crate never looks inside).
//! - [`MemLog`] ([`mem`]): an in-memory log for tests and the Zab simulator, with
//!   [`MemLog::crash`] to lose exactly what was not synced.
//! - [`FileLog`] ([`file`](mod@file)): segment files in a directory (ZooKeeper's
//!   `dataLogDir`), with group commit, preallocation and crash recovery
//!   ([`FileLog::open`] returns an [`OpenReport`] that says what recovery cut).
//! - [`EpochFiles`] ([`epoch`]): Zab's persisted `acceptedEpoch` and `currentEpoch` in
//!   `dataDir` (ZooKeeper's files and format), written atomically, and [`check_startup`],
//!   which refuses a data directory whose epochs and log disagree.
//! - [`snapshot`]: snapshot files (a whole tree as of one zxid), written atomically,
//!   verified by checksum before they are trusted, and retained by count.
//! - [`format`](mod@format): the on-disk encoding of segment headers, batches and
//!   records (pure).
//! - [`StorageError`] ([`error`]): an I/O failure (stop acknowledging writes), corrupt
//!   data (refuse to start), or a log that already failed once.
//! - [`conformance`]: the contract as executable checks; every [`Log`] runs the same suite.
//!
//! Misuse by the caller (a zxid that does not increase, a record larger than the log can
//! hold) is a bug, not an operating condition: it panics.

pub mod conformance;
pub mod epoch;
pub mod error;
pub mod file;
pub mod format;
pub mod mem;
pub mod snapshot;

pub use epoch::{check_startup, EpochCheckError, EpochFiles};
pub use error::StorageError;
pub use file::{DetachedSync, FileLog, FileLogOptions, OpenReport, SegmentInfo, TornTail};
pub use mem::MemLog;

/// One log entry: a transaction as the layer above encoded it, keyed by its zxid.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Record {
    /// The transaction id: `epoch << 32 | counter`. Always positive; strictly increasing
    /// along the log (gaps are allowed, e.g. where a new epoch begins).
    pub zxid: i64,
    /// The encoded transaction. Opaque here, so the log can be tested and reused without
    /// knowing the transaction format.
    pub payload: Vec<u8>,
}

impl Record {
    /// Builds a record from anything that becomes a byte vector.
    pub fn new(zxid: i64, payload: impl Into<Vec<u8>>) -> Self {
        Record {
            zxid,
            payload: payload.into(),
        }
    }
}

/// An append-only sequence of [`Record`]s in strictly increasing zxid order.
///
/// # Durability contract
///
/// - [`append`](Log::append) writes; it does **not** make durable. A crash may lose any
///   suffix of what was appended since the last sync — only a suffix: a record is never
///   lost while a later one survives, and a record that survives is intact.
/// - [`sync`](Log::sync) makes everything appended so far durable: once it returns `Ok`, no
///   crash loses any of it. One sync covers every record appended before it (group commit),
///   so the caller appends whatever is pending and then syncs once.
/// - [`synced_zxid`](Log::synced_zxid) is the last record known durable. An implementation
///   may sync on its own (a [`FileLog`] does when its unsynced window fills, and when it
///   starts a new segment), so the caller reads `synced_zxid` after `append` or `sync` to
///   learn what it may acknowledge, rather than assuming only `sync` moves it.
/// - [`truncate_after`](Log::truncate_after) and [`purge_through`](Log::purge_through) are
///   durable on return. If they fail or the process dies during them, the log afterwards
///   is still a contiguous run of records: an interrupted truncation leaves a prefix of
///   the old log that is at least as long as the requested one, an interrupted purge a
///   suffix.
/// - After any `Err` from a method that writes, the log may refuse further writes (a
///   [`FileLog`] does: after a failed `fsync` the kernel may have dropped the dirty pages,
///   so a later "successful" `fsync` would be a lie). Recovery is to stop acknowledging and
///   reopen from disk.
///
/// Reads see everything appended, synced or not; it is the caller's business not to
/// expose what is not yet committed.
pub trait Log {
    /// Appends `records`. Their zxids must be strictly increasing and greater than
    /// [`last_zxid`](Log::last_zxid); anything else is a caller bug and panics. The records
    /// are written, not yet durable (see the contract above).
    fn append(&mut self, records: &[Record]) -> Result<(), StorageError>;

    /// Makes everything appended so far durable; after `Ok`, no crash loses any of it.
    fn sync(&mut self) -> Result<(), StorageError>;

    /// The zxid of the last appended record, 0 when the log is empty.
    fn last_zxid(&self) -> i64;

    /// The zxid of the last durable record (0 when none is): every record up to it
    /// survives a crash. Never greater than [`last_zxid`](Log::last_zxid).
    fn synced_zxid(&self) -> i64;

    /// The zxid of the oldest record still held, `None` when the log is empty. Records
    /// before it were purged (or never written here).
    fn first_zxid(&self) -> Option<i64>;

    /// Records with zxid greater than `after`, in order, one page at a time.
    ///
    /// The page holds as many records as fit in `max_bytes` of payload, but always at least
    /// one when any exists, so a record larger than `max_bytes` still comes back (alone).
    /// An empty page means there is nothing after `after`. To read on, call again with the
    /// last zxid returned. If `after` is older than [`first_zxid`](Log::first_zxid), the
    /// page starts at the oldest record held; the caller checks `first_zxid` to know
    /// whether it missed purged history.
    fn read_after(&self, after: i64, max_bytes: usize) -> Result<Vec<Record>, StorageError>;

    /// Removes every record with zxid greater than `zxid` (Zab's TRUNC). On return the log
    /// is exactly the records it held up to `zxid`, all durable:
    /// `synced_zxid() == last_zxid()`. Truncating past the end only syncs.
    fn truncate_after(&mut self, zxid: i64) -> Result<(), StorageError>;

    /// Deletes old records with zxid up to `zxid` to reclaim space (retention, after a
    /// snapshot covers them). The granularity is the implementation's (a [`FileLog`]
    /// deletes whole segments whose every record is `<= zxid`), so some records `<= zxid`
    /// may stay; a record greater than `zxid` and the last record are never removed, so
    /// [`last_zxid`](Log::last_zxid) survives a restart. Durable on return.
    fn purge_through(&mut self, zxid: i64) -> Result<(), StorageError>;
}

/// Panics unless `records` have strictly increasing zxids, all greater than `last`.
///
/// Shared by the implementations so both enforce the same invariant the same way.
pub(crate) fn assert_appendable(last: i64, records: &[Record]) {
    let mut prev = last;
    for record in records {
        assert!(
            record.zxid > prev,
            "log append out of order: zxid {:#x} after {:#x} (zxids must strictly increase)",
            record.zxid,
            prev
        );
        prev = record.zxid;
    }
}
