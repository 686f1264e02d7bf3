//! Recovery at open: listing segments, verifying batches, and the torn-tail rule (see the
//! [parent module](super) for the rule and why it is sound).

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::fsio::{cut_file, sync_dir};
use super::{OpenReport, Segment, TornTail, CHUNK_BYTES, DATA_START};
use crate::format::{
    decode_batch_header, decode_payload, parse_segment_file_name, SegmentHeader, BATCH_HEADER_LEN,
    SEGMENT_HEADER_LEN,
};
use crate::{Record, StorageError};

/// Lists `log.<zxid>` files sorted by zxid, deleting leftover `log.<zxid>.tmp` files (a
/// crash while creating or rewriting a segment) and noting them in the report.
pub(super) fn list_segments(
    dir: &Path,
    report: &mut OpenReport,
) -> Result<Vec<(i64, PathBuf)>, StorageError> {
    let mut names = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| StorageError::io("read directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io("read directory", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(zxid) = parse_segment_file_name(name) {
            names.push((zxid, entry.path()));
        } else if name
            .strip_suffix(".tmp")
            .and_then(parse_segment_file_name)
            .is_some()
        {
            let path = entry.path();
            fs::remove_file(&path).map_err(|e| StorageError::io("remove", &path, e))?;
            report.removed.push(path);
        }
    }
    if !report.removed.is_empty() {
        sync_dir(dir)?;
    }
    names.sort();
    Ok(names)
}

pub(super) fn read_header(
    file: &File,
    path: &Path,
    len: u64,
) -> Result<SegmentHeader, StorageError> {
    if len < DATA_START {
        return Err(StorageError::corrupt(
            path,
            0,
            format!("file of {len} bytes is shorter than a segment header"),
        ));
    }
    let mut buf = [0u8; SEGMENT_HEADER_LEN];
    file.read_exact_at(&mut buf, 0)
        .map_err(|e| StorageError::io("read", path, e))?;
    SegmentHeader::decode(&buf).map_err(|reason| StorageError::corrupt(path, 0, reason))
}

/// What recovery found in one segment file.
pub(super) struct Scan {
    pub(super) segment: Segment,
    pub(super) records: u64,
    pub(super) torn: Option<TornTail>,
}

/// Verifies every batch of a segment and applies the torn-tail rule ([`super`]) at the
/// first bad one. Does not modify the file.
pub(super) fn scan_segment(
    path: &Path,
    file: &File,
    header: SegmentHeader,
    len: u64,
    is_last: bool,
) -> Result<Scan, StorageError> {
    let mut segment = Segment::new(path.to_path_buf(), header);
    let mut records_seen = 0;
    let mut pos = DATA_START;
    let reason = loop {
        let (records, batch_len) = match read_batch(file, path, pos, len, segment.window())? {
            BatchRead::Good { records, len } => (records, len),
            BatchRead::Bad(reason) => break reason,
        };
        let mut prev = records[0].zxid;
        for record in &records[1..] {
            if record.zxid <= prev {
                return Err(StorageError::corrupt(
                    path,
                    pos,
                    format!(
                        "record zxid {:#x} follows {prev:#x} in one batch",
                        record.zxid
                    ),
                ));
            }
            prev = record.zxid;
        }
        let first = records[0].zxid;
        let expected_first = if segment.is_empty() {
            first == header.first_zxid
        } else {
            first > segment.last_zxid
        };
        if !expected_first {
            // A batch that verifies but does not continue the log: not ours to keep. A
            // filesystem may expose stale blocks (an earlier file's batches) past the
            // durable end after a crash, so this is judged like any other bad batch.
            break "a batch that verifies but whose zxids do not continue the log";
        }
        records_seen += records.len() as u64;
        segment.note_batch(pos, batch_len, first, prev);
        pos += batch_len;
    };
    let torn = match last_nonzero(file, path, pos, len)? {
        None => None,
        Some(last) if is_last && last < pos + segment.window() => Some(TornTail {
            file: path.to_path_buf(),
            offset: pos,
            bytes: last + 1 - pos,
        }),
        Some(last) => {
            let why = if is_last {
                format!(
                    "{reason}, followed by data up to offset {last}, beyond the {}-byte \
                     window that a crash can leave unsynced",
                    segment.window()
                )
            } else {
                format!("{reason}, in a segment that is not the last")
            };
            return Err(StorageError::corrupt(path, pos, why));
        }
    };
    Ok(Scan {
        segment,
        records: records_seen,
        torn,
    })
}

/// One batch read from a file.
pub(super) enum BatchRead {
    /// The batch verified: its records and its length on disk (header included).
    Good { records: Vec<Record>, len: u64 },
    /// The batch does not verify in a way a torn write can cause; the reason, in words.
    Bad(&'static str),
}

/// Reads the batch at `pos`, which must end by `limit`. A batch whose checksums verify but
/// whose content is malformed is an error: tearing cannot produce it.
pub(super) fn read_batch(
    file: &File,
    path: &Path,
    pos: u64,
    limit: u64,
    window: u64,
) -> Result<BatchRead, StorageError> {
    if limit.saturating_sub(pos) < BATCH_HEADER_LEN as u64 {
        return Ok(BatchRead::Bad("short batch header"));
    }
    let mut head = [0u8; BATCH_HEADER_LEN];
    file.read_exact_at(&mut head, pos)
        .map_err(|e| StorageError::io("read", path, e))?;
    let Some(header) = decode_batch_header(&head) else {
        return Ok(BatchRead::Bad(if head == [0; BATCH_HEADER_LEN] {
            "zero batch header"
        } else {
            "batch header checksum mismatch"
        }));
    };
    let len = u64::from(header.payload_len);
    if len == 0 || len + BATCH_HEADER_LEN as u64 > window {
        return Err(StorageError::corrupt(
            path,
            pos,
            format!("batch of {len} bytes (header checksum valid) is outside 1..{window}"),
        ));
    }
    let start = pos + BATCH_HEADER_LEN as u64;
    if start + len > limit {
        return Ok(BatchRead::Bad("batch runs past the end of the file"));
    }
    let mut payload = vec![0u8; len as usize];
    file.read_exact_at(&mut payload, start)
        .map_err(|e| StorageError::io("read", path, e))?;
    if crc32c::crc32c(&payload) != header.payload_crc {
        return Ok(BatchRead::Bad("batch payload checksum mismatch"));
    }
    let records =
        decode_payload(&payload).map_err(|reason| StorageError::corrupt(path, pos, reason))?;
    Ok(BatchRead::Good {
        records,
        len: BATCH_HEADER_LEN as u64 + len,
    })
}

/// Reads a batch the log wrote or verified before, so any fault is corruption.
pub(super) fn read_written_batch(
    file: &File,
    path: &Path,
    pos: u64,
    end: u64,
    window: u64,
) -> Result<(Vec<Record>, u64), StorageError> {
    match read_batch(file, path, pos, end, window)? {
        BatchRead::Good { records, len } => Ok((records, len)),
        BatchRead::Bad(reason) => Err(StorageError::corrupt(
            path,
            pos,
            format!("{reason} (the batch verified when it was written or recovered)"),
        )),
    }
}

/// The offset of the last non-zero byte in `[from, to)`, if any.
pub(super) fn last_nonzero(
    file: &File,
    path: &Path,
    from: u64,
    to: u64,
) -> Result<Option<u64>, StorageError> {
    let mut last = None;
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut pos = from;
    while pos < to {
        let n = (to - pos).min(CHUNK_BYTES as u64) as usize;
        file.read_exact_at(&mut buf[..n], pos)
            .map_err(|e| StorageError::io("read", path, e))?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b != 0) {
            last = Some(pos + i as u64);
        }
        pos += n as u64;
    }
    Ok(last)
}

/// Cuts the torn tail at `offset` so the space after it reads as zeros, durably. The file is
/// shrunk first because preallocating blocks that are already allocated would keep the
/// garbage in them; it is then grown back so appends still land in preallocated space.
pub(super) fn cut_torn_tail(path: &Path, offset: u64, len: u64) -> Result<(), StorageError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| StorageError::io("open", path, e))?;
    cut_file(&file, path, offset, len)
}
