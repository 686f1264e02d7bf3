//! [`FileLog`]: the transaction log as segment files in a directory, and its recovery.
//!
//! This module holds the log and its write, truncate and purge paths; `recovery` verifies
//! segments at open and applies the torn-tail rule below; `fsio` wraps the system calls
//! durability rests on (preallocation, cutting, directory `fsync`).
//!
//! # Writing
//!
//! [`append`](Log::append) packs records into batches of at most
//! [`max_batch_bytes`](FileLogOptions::max_batch_bytes) (a record larger than that goes
//! alone) and puts each batch on disk with one positioned write at the end of the current
//! segment. [`sync`](Log::sync) is one `fdatasync`, which covers every batch written since
//! the last (group commit). Segment files are preallocated in steps of
//! [`preallocate_bytes`](FileLogOptions::preallocate_bytes), so most writes do not change the
//! file size and `fdatasync` has no metadata to flush.
//!
//! When the current segment has passed [`segment_bytes`](FileLogOptions::segment_bytes),
//! the next append first `fsync`s it completely, then creates the next segment as
//! `log.<zxid>.tmp` (header written, space preallocated, `fsync`), renames it into place
//! and `fsync`s the directory. So a named segment always has a durable header, and a
//! segment is never followed by another before all of it is durable: only the **last**
//! segment can have a torn tail.
//!
//! # The torn-tail rule
//!
//! The writer keeps one bound, the segment's *window* `W` (from
//! [`max_unsynced_bytes`](FileLogOptions::max_unsynced_bytes), recorded in the segment
//! header): no write ever ends more than `W` bytes past the synced position. `append` syncs
//! by itself before a write that would break the bound. Data is only ever appended, and the
//! space past the data is preallocated zeros.
//!
//! At open, every batch of every segment is verified. At the first batch that is short,
//! has a bad header checksum or a bad payload checksum, at offset `p`:
//!
//! - if every byte from `p` to the end of the file is zero, that is simply the end;
//! - else, in the last segment, if every non-zero byte lies before `p + W`, it is a torn
//!   tail: the file is cut at `p` (and re-preallocated, so the space reads as zeros again),
//!   `fsync`ed, and reported in [`OpenReport::truncated`];
//! - else it is corruption: [`StorageError::Corrupt`] naming the file and `p`.
//!
//! Why this is sound: let `S` be the synced position at the crash. Everything before `S`
//! is durable and intact, so a bad batch caused by the crash has `p >= S`; and every write
//! ended at most at `S + W`, so nothing non-zero lies at or beyond `S + W <= p + W`.
//! A non-zero byte at or beyond `p + W` therefore proves `p < S`: durable data went bad.
//! The converse limit is inherent without recording `S` on disk: damage to durable data
//! within `W` bytes of the end of the log looks like a torn tail and is cut (and
//! reported). A batch whose checksums verify but whose content is malformed (zero length,
//! bad record framing, zxids out of order inside it) cannot come from tearing and is
//! always corruption, as is any bad batch in a segment that is not the last. A batch that
//! verifies but does not continue the log's zxids counts as bad (judged by the rule above)
//! rather than as corruption outright: after a crash some filesystems expose stale
//! blocks, which may hold an old segment's valid batches.
//!
//! The rule assumes a sector is written atomically, so appending into a partly written
//! sector cannot damage the durable bytes already in it.
//!
//! A last segment that holds no records after this (the crash came between creating it and
//! its first durable batch) is deleted and reported, as are leftover `*.tmp` segments.
//! Consecutive segments must chain (`prev_zxid` in a header equals the last zxid of the
//! segment before), else [`StorageError::MissingSegment`] names the file after the gap.
//!
//! # Failures
//!
//! Any error from a method that writes poisons the log: later writes return
//! [`StorageError::Failed`] (reads go on). After a failed `fsync` the kernel may have
//! dropped the dirty pages, so retrying could acknowledge data that is not on disk; the
//! only safe way on is to reopen and recover from what is on disk.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::format::{
    encode_batch, encoded_record_len, segment_file_name, SegmentHeader, BATCH_HEADER_LEN,
    RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use crate::{assert_appendable, Log, Record, StorageError};

pub(crate) mod fsio;
mod recovery;

use fsio::{create_tmp, cut_file, file_len, preallocate, round_up, sync_dir, tmp_path};
use recovery::{cut_torn_tail, list_segments, read_header, read_written_batch, scan_segment};

const MIB: u64 = 1 << 20;
/// Where the first batch of a segment starts.
const DATA_START: u64 = SEGMENT_HEADER_LEN as u64;
/// A segment keeps one index entry per this many bytes of batches, so a read seeks close
/// to its zxid without a per-batch index (64 entries for a 64 MiB segment).
const INDEX_INTERVAL: u64 = MIB;
/// Bytes read at a time when checking a tail for zeros or copying a segment.
const CHUNK_BYTES: usize = MIB as usize;
/// The smallest window allowed: room for a batch of one small record.
const MIN_WINDOW: u32 = 256;

/// How a [`FileLog`] lays out and writes its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLogOptions {
    /// A segment is closed, and the next append starts a new one, once it holds this many
    /// bytes. Smaller segments let purging reclaim space sooner; each costs an `fsync` of
    /// the directory when it is created. Default 64 MiB.
    pub segment_bytes: u64,
    /// Files grow in multiples of this, ahead of the writes, so that an append does not
    /// change file size metadata. Default 64 MiB.
    pub preallocate_bytes: u64,
    /// Records are packed into batches of at most this many payload bytes; one batch is
    /// one write. A record larger than this is written alone. Default 8 MiB.
    pub max_batch_bytes: usize,
    /// The most bytes that may stand written but unsynced in a segment (the window `W` of
    /// the torn-tail rule): `append` syncs by itself rather than exceed it. It also bounds
    /// a record ([`FileLog::max_record_bytes`]). It is recorded in each new segment's header,
    /// so changing it applies to new segments only. Default 64 MiB.
    pub max_unsynced_bytes: u32,
}

impl Default for FileLogOptions {
    fn default() -> Self {
        FileLogOptions {
            segment_bytes: 64 * MIB,
            preallocate_bytes: 64 * MIB,
            max_batch_bytes: 8 * MIB as usize,
            max_unsynced_bytes: 64 * MIB as u32,
        }
    }
}

impl FileLogOptions {
    fn validate(&self) {
        assert!(self.segment_bytes > 0, "segment_bytes must be positive");
        assert!(
            self.preallocate_bytes > 0,
            "preallocate_bytes must be positive"
        );
        assert!(self.max_batch_bytes > 0, "max_batch_bytes must be positive");
        assert!(
            self.max_unsynced_bytes >= MIN_WINDOW,
            "max_unsynced_bytes must be at least {MIN_WINDOW}"
        );
    }
}

/// A torn tail that recovery cut off the last segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file.
    pub file: PathBuf,
    /// Where the first bad batch started; the file now ends its data here.
    pub offset: u64,
    /// How many bytes were cut: from `offset` through the last non-zero byte.
    pub bytes: u64,
}

impl fmt::Display for TornTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cut {} bytes of torn tail from {} at offset {}",
            self.bytes,
            self.file.display(),
            self.offset
        )
    }
}

/// What [`FileLog::open`] found and repaired, for the server to log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// The torn tail cut from the last segment, if there was one.
    pub truncated: Option<TornTail>,
    /// Files deleted: unfinished `*.tmp` segments, and a last segment left without records.
    pub removed: Vec<PathBuf>,
    /// Segments in the log after recovery.
    pub segments: usize,
    /// Records in the log after recovery.
    pub records: u64,
}

/// A segment as [`FileLog::segments`] describes it (for tools and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The segment file.
    pub path: PathBuf,
    /// Its first zxid (also its name).
    pub first_zxid: i64,
    /// Its last zxid (its `prev_zxid` while it holds no record).
    pub last_zxid: i64,
    /// Where its data ends: the offset of the next batch.
    pub data_end: u64,
}

/// A segment as the log tracks it in memory.
#[derive(Debug)]
struct Segment {
    path: PathBuf,
    header: SegmentHeader,
    /// The last record's zxid, or `header.prev_zxid` while the segment is empty.
    last_zxid: i64,
    /// End of the last batch written: the written position.
    end: u64,
    /// Sparse (first zxid of a batch, its offset), ascending; see [`INDEX_INTERVAL`].
    index: Vec<IndexEntry>,
}

#[derive(Debug, Clone, Copy)]
struct IndexEntry {
    first_zxid: i64,
    offset: u64,
}

impl Segment {
    fn new(path: PathBuf, header: SegmentHeader) -> Self {
        Segment {
            path,
            last_zxid: header.prev_zxid,
            header,
            end: DATA_START,
            index: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.end == DATA_START
    }

    fn window(&self) -> u64 {
        u64::from(self.header.window)
    }

    /// Records a batch written (or found) at `offset`.
    fn note_batch(&mut self, offset: u64, len: u64, first_zxid: i64, last_zxid: i64) {
        assert_eq!(offset, self.end, "batches are contiguous");
        assert!(first_zxid > self.last_zxid && last_zxid >= first_zxid);
        let due = match self.index.last() {
            Some(entry) => offset - entry.offset >= INDEX_INTERVAL,
            None => true,
        };
        if due {
            self.index.push(IndexEntry { first_zxid, offset });
        }
        self.end = offset + len;
        self.last_zxid = last_zxid;
    }

    /// The offset of a batch from which the first record with zxid greater than `after`
    /// is reached by reading forward, and whose first record is `<= after` unless it is
    /// the segment's first batch.
    fn seek(&self, after: i64) -> u64 {
        let i = self
            .index
            .partition_point(|entry| entry.first_zxid <= after);
        if i == 0 {
            DATA_START
        } else {
            self.index[i - 1].offset
        }
    }

    fn info(&self) -> SegmentInfo {
        SegmentInfo {
            path: self.path.clone(),
            first_zxid: self.header.first_zxid,
            last_zxid: self.last_zxid,
            data_end: self.end,
        }
    }
}

/// The open, writable last segment.
#[derive(Debug)]
struct Active {
    file: File,
    /// Offset up to which the segment is durable.
    synced: u64,
    /// The file's length: space preallocated for writes.
    allocated: u64,
}

/// The transaction log in a directory of segment files. See the [module docs](self) for the
/// write path and the recovery rules.
#[derive(Debug)]
pub struct FileLog {
    dir: PathBuf,
    options: FileLogOptions,
    /// Every segment, oldest first; the last is the one appended to.
    segments: Vec<Segment>,
    /// The last segment opened for writing; `None` when there is no segment (or while a
    /// truncation replaces files).
    active: Option<Active>,
    synced_zxid: i64,
    /// The first failure of a write, after which the log refuses writes.
    failed: Option<String>,
    /// Reused encoding buffer, so steady appends do not allocate.
    buf: Vec<u8>,
}

impl FileLog {
    /// Opens (creating if needed) the log in `dir`, verifying every segment and cutting a
    /// torn tail as the [module docs](self) describe. Corruption and missing segments are
    /// errors naming the file; the report says what was repaired.
    pub fn open(
        dir: impl AsRef<Path>,
        options: FileLogOptions,
    ) -> Result<(FileLog, OpenReport), StorageError> {
        options.validate();
        let dir = dir.as_ref().to_path_buf();
        if !dir.exists() {
            fs::create_dir_all(&dir).map_err(|e| StorageError::io("create directory", &dir, e))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        let mut report = OpenReport::default();
        let names = list_segments(&dir, &mut report)?;

        let mut segments: Vec<Segment> = Vec::with_capacity(names.len());
        let count = names.len();
        for (i, (zxid, path)) in names.into_iter().enumerate() {
            let is_last = i + 1 == count;
            let file = File::open(&path).map_err(|e| StorageError::io("open", &path, e))?;
            let len = file_len(&file, &path)?;
            let header = read_header(&file, &path, len)?;
            if header.first_zxid != zxid {
                return Err(StorageError::corrupt(
                    &path,
                    0,
                    format!(
                        "header says the first zxid is {:#x}, the file name {zxid:#x}",
                        header.first_zxid
                    ),
                ));
            }
            if let Some(previous) = segments.last() {
                if header.prev_zxid != previous.last_zxid {
                    return Err(StorageError::MissingSegment {
                        file: path,
                        previous: previous.path.clone(),
                        expected_prev: header.prev_zxid,
                        found_prev: previous.last_zxid,
                    });
                }
            }
            let scan = scan_segment(&path, &file, header, len, is_last)?;
            if scan.segment.is_empty() && !is_last {
                return Err(StorageError::corrupt(
                    &path,
                    DATA_START,
                    "segment holds no records but is not the last",
                ));
            }
            if let Some(torn) = scan.torn {
                cut_torn_tail(&path, torn.offset, len)?;
                report.truncated = Some(torn);
            }
            report.records += scan.records;
            segments.push(scan.segment);
        }
        if segments.last().is_some_and(Segment::is_empty) {
            let empty = segments.pop().expect("checked above");
            fs::remove_file(&empty.path).map_err(|e| StorageError::io("remove", &empty.path, e))?;
            sync_dir(&dir)?;
            report.removed.push(empty.path);
        }
        report.segments = segments.len();

        let mut log = FileLog {
            dir,
            options,
            segments,
            active: None,
            synced_zxid: 0,
            failed: None,
            buf: Vec::new(),
        };
        log.open_active()?;
        // The previous process may have died between a write and its sync: what it wrote
        // is readable (page cache) but not yet durable. Make it so before claiming it is.
        if let (Some(active), Some(segment)) = (&log.active, log.segments.last()) {
            active
                .file
                .sync_all()
                .map_err(|e| StorageError::io("fsync", &segment.path, e))?;
        }
        log.synced_zxid = log.last_zxid();
        Ok((log, report))
    }

    /// The directory holding the segments.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The segments, oldest first.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.segments.iter().map(Segment::info).collect()
    }

    /// The largest record payload [`append`](Log::append) accepts: a batch holding it alone
    /// must fit in the unsynced window. Larger records are a caller bug and panic (the
    /// server bounds requests far below this, by `jute.maxbuffer`).
    pub fn max_record_bytes(&self) -> usize {
        let mut window = self.options.max_unsynced_bytes;
        if let Some(segment) = self.segments.last() {
            window = window.min(segment.header.window);
        }
        window as usize - BATCH_HEADER_LEN - RECORD_HEADER_LEN
    }

    /// The error to return if an earlier failure poisoned the log.
    fn check_writable(&self) -> Result<(), StorageError> {
        match &self.failed {
            Some(reason) => Err(StorageError::Failed {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Poisons the log if `result` is an error (see the module docs, "Failures").
    fn note<T>(&mut self, result: Result<T, StorageError>) -> Result<T, StorageError> {
        if let Err(error) = &result {
            if self.failed.is_none() {
                self.failed = Some(error.to_string());
            }
        }
        result
    }

    /// Opens the last segment for writing, with its synced position at its end: the caller
    /// has made (or makes) its content durable.
    fn open_active(&mut self) -> Result<(), StorageError> {
        self.active = None;
        let Some(segment) = self.segments.last() else {
            return Ok(());
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&segment.path)
            .map_err(|e| StorageError::io("open", &segment.path, e))?;
        let allocated = file_len(&file, &segment.path)?;
        self.active = Some(Active {
            file,
            synced: segment.end,
            allocated,
        });
        Ok(())
    }

    fn append_batches(&mut self, mut records: &[Record]) -> Result<(), StorageError> {
        while let Some(first) = records.first() {
            let full = match self.segments.last() {
                Some(segment) => self.active.is_none() || segment.end >= self.options.segment_bytes,
                None => true,
            };
            if full {
                self.roll(first.zxid)?;
            }
            let window = self.segments.last().expect("rolled").window() as usize;
            let cap = self.options.max_batch_bytes.min(window - BATCH_HEADER_LEN);
            let mut take = 0;
            let mut bytes = 0;
            for record in records {
                let len = encoded_record_len(record);
                if take > 0 && bytes + len > cap {
                    break;
                }
                take += 1;
                bytes += len;
            }
            let (batch, rest) = records.split_at(take);
            self.write_batch(batch)?;
            records = rest;
        }
        Ok(())
    }

    /// Writes one batch at the end of the last segment, syncing first if the write would
    /// otherwise end beyond the segment's window.
    fn write_batch(&mut self, batch: &[Record]) -> Result<(), StorageError> {
        self.buf.clear();
        encode_batch(batch, &mut self.buf);
        let len = self.buf.len() as u64;
        let segment = self.segments.last_mut().expect("a segment to write to");
        let active = self.active.as_mut().expect("the last segment is open");
        assert!(
            len <= segment.window(),
            "batch larger than the unsynced window"
        );
        let offset = segment.end;
        if offset + len - active.synced > segment.window() {
            active
                .file
                .sync_data()
                .map_err(|e| StorageError::io("fdatasync", &segment.path, e))?;
            active.synced = offset;
            self.synced_zxid = segment.last_zxid;
        }
        if offset + len > active.allocated {
            let target = round_up(offset + len, self.options.preallocate_bytes);
            preallocate(&active.file, &segment.path, active.allocated, target)?;
            active.allocated = target;
        }
        active
            .file
            .write_all_at(&self.buf, offset)
            .map_err(|e| StorageError::io("write", &segment.path, e))?;
        let first = batch.first().expect("non-empty batch").zxid;
        let last = batch.last().expect("non-empty batch").zxid;
        segment.note_batch(offset, len, first, last);
        Ok(())
    }

    /// Finishes the current segment (full `fsync`) and creates the next, whose first record
    /// will be `first_zxid`, durably (tmp file, `fsync`, rename, directory `fsync`).
    fn roll(&mut self, first_zxid: i64) -> Result<(), StorageError> {
        if let (Some(active), Some(segment)) = (self.active.as_mut(), self.segments.last()) {
            active
                .file
                .sync_all()
                .map_err(|e| StorageError::io("fsync", &segment.path, e))?;
            active.synced = segment.end;
            self.synced_zxid = segment.last_zxid;
        }
        let header = SegmentHeader {
            window: self.options.max_unsynced_bytes,
            first_zxid,
            prev_zxid: self.last_zxid(),
        };
        let path = self.dir.join(segment_file_name(first_zxid));
        assert!(
            !path.exists(),
            "segment {} already exists; zxids must increase",
            path.display()
        );
        let tmp = tmp_path(&path);
        let file = create_tmp(&tmp)?;
        file.write_all_at(&header.encode(), 0)
            .map_err(|e| StorageError::io("write", &tmp, e))?;
        let allocated = round_up(DATA_START, self.options.preallocate_bytes);
        preallocate(&file, &tmp, 0, allocated)?;
        file.sync_all()
            .map_err(|e| StorageError::io("fsync", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| StorageError::io("rename", &tmp, e))?;
        sync_dir(&self.dir)?;
        self.segments.push(Segment::new(path, header));
        self.active = Some(Active {
            file,
            synced: DATA_START,
            allocated,
        });
        Ok(())
    }

    fn sync_inner(&mut self) -> Result<(), StorageError> {
        if let (Some(active), Some(segment)) = (self.active.as_mut(), self.segments.last()) {
            if active.synced < segment.end {
                active
                    .file
                    .sync_data()
                    .map_err(|e| StorageError::io("fdatasync", &segment.path, e))?;
                active.synced = segment.end;
            }
        }
        self.synced_zxid = self.last_zxid();
        Ok(())
    }

    fn truncate_inner(&mut self, zxid: i64) -> Result<(), StorageError> {
        // Newest first, one directory fsync each: whenever this stops, what is left is a
        // prefix of the log, never a log with a hole in it.
        self.active = None;
        while self
            .segments
            .last()
            .is_some_and(|segment| segment.header.first_zxid > zxid)
        {
            let segment = self.segments.pop().expect("checked above");
            fs::remove_file(&segment.path)
                .map_err(|e| StorageError::io("remove", &segment.path, e))?;
            sync_dir(&self.dir)?;
        }
        if let Some(segment) = self.segments.last_mut() {
            if segment.last_zxid > zxid {
                cut_segment(segment, zxid, &self.dir, self.options.preallocate_bytes)?;
            }
        }
        self.open_active()?;
        self.synced_zxid = self.last_zxid();
        assert!(
            self.last_zxid() <= zxid,
            "truncation left a record after {zxid:#x}"
        );
        Ok(())
    }

    fn purge_inner(&mut self, zxid: i64) -> Result<(), StorageError> {
        // Oldest first, one directory fsync each, so what is left is always a suffix.
        while self.segments.len() > 1 && self.segments[0].last_zxid <= zxid {
            let path = self.segments[0].path.clone();
            fs::remove_file(&path).map_err(|e| StorageError::io("remove", &path, e))?;
            sync_dir(&self.dir)?;
            self.segments.remove(0);
        }
        Ok(())
    }
}

/// An `fdatasync` of what a [`FileLog`] has written, to run on another thread while the
/// log goes on taking appends (see [`FileLog::detached_sync`]).
pub struct DetachedSync {
    file: File,
    path: PathBuf,
    /// The segment's first zxid, its end and last zxid when the sync was detached.
    segment: i64,
    end: u64,
    zxid: i64,
}

impl DetachedSync {
    /// Makes everything written before the handle was taken durable.
    pub fn run(&self) -> Result<(), StorageError> {
        self.file.sync_data().map_err(|e| StorageError::io("fdatasync", &self.path, e))
    }

    /// The zxid the log is durable through once [`DetachedSync::run`] succeeded.
    pub fn zxid(&self) -> i64 {
        self.zxid
    }
}

impl FileLog {
    /// A handle to sync what has been written so far from another thread, or `None` if
    /// it is durable already. Earlier segments need nothing: a segment is synced in full
    /// when the log moves on to the next. Once the handle ran, report it with
    /// [`FileLog::synced_by`]; until then [`Log::synced_zxid`] does not count it.
    pub fn detached_sync(&self) -> Result<Option<DetachedSync>, StorageError> {
        self.check_writable()?;
        let (Some(active), Some(segment)) = (self.active.as_ref(), self.segments.last()) else { return Ok(None) };
        if active.synced >= segment.end {
            return Ok(None);
        }
        let file = active.file.try_clone().map_err(|e| StorageError::io("dup", &segment.path, e))?;
        Ok(Some(DetachedSync {
            file,
            path: segment.path.clone(),
            segment: segment.header.first_zxid,
            end: segment.end,
            zxid: segment.last_zxid,
        }))
    }

    /// A [`DetachedSync`] ran successfully: the log is durable through its zxid. (If the
    /// log was truncated after the handle was taken, the caller must not report it.)
    pub fn synced_by(&mut self, done: &DetachedSync) {
        if let (Some(active), Some(segment)) = (self.active.as_mut(), self.segments.last()) {
            if segment.header.first_zxid == done.segment {
                active.synced = active.synced.max(done.end);
            }
        }
        self.synced_zxid = self.synced_zxid.max(done.zxid);
    }
}

impl Log for FileLog {
    fn append(&mut self, records: &[Record]) -> Result<(), StorageError> {
        self.check_writable()?;
        assert_appendable(self.last_zxid(), records);
        let max = self.max_record_bytes();
        for record in records {
            assert!(
                record.payload.len() <= max,
                "record {:#x} of {} bytes exceeds the log's limit of {max}",
                record.zxid,
                record.payload.len()
            );
        }
        let result = self.append_batches(records);
        self.note(result)
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.check_writable()?;
        let result = self.sync_inner();
        self.note(result)
    }

    fn last_zxid(&self) -> i64 {
        self.segments.last().map_or(0, |segment| segment.last_zxid)
    }

    fn synced_zxid(&self) -> i64 {
        self.synced_zxid
    }

    fn first_zxid(&self) -> Option<i64> {
        self.segments
            .iter()
            .find(|segment| !segment.is_empty())
            .map(|segment| segment.header.first_zxid)
    }

    fn read_after(&self, after: i64, max_bytes: usize) -> Result<Vec<Record>, StorageError> {
        let mut page = Vec::new();
        let mut bytes = 0usize;
        let start = self
            .segments
            .partition_point(|segment| segment.header.first_zxid <= after)
            .saturating_sub(1);
        for (i, segment) in self.segments.iter().enumerate().skip(start) {
            if segment.last_zxid <= after {
                continue;
            }
            let opened;
            let file = match &self.active {
                Some(active) if i + 1 == self.segments.len() => &active.file,
                _ => {
                    opened = File::open(&segment.path)
                        .map_err(|e| StorageError::io("open", &segment.path, e))?;
                    &opened
                }
            };
            let mut pos = segment.seek(after);
            while pos < segment.end {
                let (records, len) =
                    read_written_batch(file, &segment.path, pos, segment.end, segment.window())?;
                for record in records.into_iter().filter(|r| r.zxid > after) {
                    if !page.is_empty() && bytes + record.payload.len() > max_bytes {
                        return Ok(page);
                    }
                    bytes += record.payload.len();
                    page.push(record);
                }
                pos += len;
            }
        }
        Ok(page)
    }

    fn truncate_after(&mut self, zxid: i64) -> Result<(), StorageError> {
        if zxid >= self.last_zxid() {
            return self.sync();
        }
        self.check_writable()?;
        let result = self.truncate_inner(zxid);
        self.note(result)
    }

    fn purge_through(&mut self, zxid: i64) -> Result<(), StorageError> {
        self.check_writable()?;
        let result = self.purge_inner(zxid);
        self.note(result)
    }
}

/// Removes the records after `zxid` from `segment`, whose first record is `<= zxid`.
///
/// At a batch boundary this is a cut of the file. When `zxid` falls inside a batch, the
/// records of that batch up to `zxid` must be kept, and they may be durable (committed):
/// rewriting the batch in place could tear it and lose them. So the segment is rewritten
/// whole into a tmp file that replaces it by rename: at every instant either the old or the
/// new segment is on disk. (Truncation is rare — Zab TRUNC during sync — and touches one
/// segment, so the copy is affordable.)
fn cut_segment(
    segment: &mut Segment,
    zxid: i64,
    dir: &Path,
    step: u64,
) -> Result<(), StorageError> {
    assert!(segment.header.first_zxid <= zxid && zxid < segment.last_zxid);
    let path = segment.path.clone();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| StorageError::io("open", &path, e))?;
    let len = file_len(&file, &path)?;
    // The first batch read starts with a record <= zxid (see `Segment::seek`), so the zxid
    // of the last record kept is known by the time the cut is found.
    let mut pos = segment.seek(zxid);
    let mut kept_last = segment.header.prev_zxid;
    let (cut, records) = loop {
        assert!(
            pos < segment.end,
            "no record after {zxid:#x} in {}",
            path.display()
        );
        let (records, batch_len) =
            read_written_batch(&file, &path, pos, segment.end, segment.window())?;
        if records.last().expect("non-empty batch").zxid > zxid {
            break (pos, records);
        }
        kept_last = records.last().expect("non-empty batch").zxid;
        pos += batch_len;
    };
    let keep: Vec<Record> = records.into_iter().take_while(|r| r.zxid <= zxid).collect();
    segment.index.retain(|entry| entry.offset < cut);
    segment.end = cut;
    segment.last_zxid = kept_last;
    if keep.is_empty() {
        return cut_file(&file, &path, cut, len);
    }

    let tmp = tmp_path(&path);
    let out = create_tmp(&tmp)?;
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut copied = 0;
    while copied < cut {
        let n = (cut - copied).min(CHUNK_BYTES as u64) as usize;
        file.read_exact_at(&mut buf[..n], copied)
            .map_err(|e| StorageError::io("read", &path, e))?;
        out.write_all_at(&buf[..n], copied)
            .map_err(|e| StorageError::io("write", &tmp, e))?;
        copied += n as u64;
    }
    let mut batch = Vec::new();
    encode_batch(&keep, &mut batch);
    let end = cut + batch.len() as u64;
    preallocate(&out, &tmp, 0, round_up(end, step))?;
    out.write_all_at(&batch, cut)
        .map_err(|e| StorageError::io("write", &tmp, e))?;
    out.sync_all()
        .map_err(|e| StorageError::io("fsync", &tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| StorageError::io("rename", &tmp, e))?;
    sync_dir(dir)?;
    let first = keep[0].zxid;
    let last = keep[keep.len() - 1].zxid;
    segment.note_batch(cut, batch.len() as u64, first, last);
    Ok(())
}
