//! FileLog on real files: rollover, preallocation, recovery from torn tails, and the
//! corruption and missing-segment errors.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use corral_storage::conformance::{read_all, record};
use corral_storage::{FileLog, FileLogOptions, Log, OpenReport, Record, StorageError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The header length of a segment, where its first batch starts.
const DATA_START: u64 = 36;

fn tiny() -> FileLogOptions {
    FileLogOptions {
        segment_bytes: 2048,
        preallocate_bytes: 4096,
        max_batch_bytes: 300,
        max_unsynced_bytes: 64 << 10,
    }
}

/// One segment of 1 MiB, so every test record stays in the last segment.
fn one_segment(window: u32) -> FileLogOptions {
    FileLogOptions {
        segment_bytes: 1 << 20,
        preallocate_bytes: 1 << 20,
        max_batch_bytes: 4096,
        max_unsynced_bytes: window,
    }
}

fn open(dir: &Path, options: &FileLogOptions) -> (FileLog, OpenReport) {
    FileLog::open(dir, options.clone()).unwrap()
}

fn open_err(dir: &Path, options: &FileLogOptions) -> StorageError {
    FileLog::open(dir, options.clone()).unwrap_err()
}

fn records(zxids: impl IntoIterator<Item = i64>) -> Vec<Record> {
    zxids.into_iter().map(record).collect()
}

fn append(log: &mut FileLog, zxids: impl IntoIterator<Item = i64>, per_append: usize) {
    for chunk in records(zxids).chunks(per_append) {
        log.append(chunk).unwrap();
    }
}

fn last_segment(log: &FileLog) -> PathBuf {
    log.segments().last().unwrap().path.clone()
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).unwrap().len()
}

fn write_at(path: &Path, offset: u64, bytes: &[u8]) {
    let file = OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(bytes, offset).unwrap();
}

fn flip_byte(path: &Path, offset: u64) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, offset).unwrap();
    file.write_all_at(&[byte[0] ^ 0x40], offset).unwrap();
}

fn assert_corrupt(error: StorageError, file: &Path, offset: u64) {
    match &error {
        StorageError::Corrupt {
            file: f, offset: o, ..
        } => assert_eq!((f.as_path(), *o), (file, offset), "{error}"),
        other => panic!("expected Corrupt in {}, got {other}", file.display()),
    }
    assert!(error.is_corruption());
    assert!(error.to_string().contains(&file.display().to_string()));
}

#[test]
fn segments_roll_over_and_chain() {
    let dir = tempfile::tempdir().unwrap();
    let options = tiny();
    let (mut log, _) = open(dir.path(), &options);
    append(&mut log, 1..=300, 5);
    let segments = log.segments();
    assert!(segments.len() >= 5, "{} segments", segments.len());
    for (i, segment) in segments.iter().enumerate() {
        let name = segment.path.file_name().unwrap().to_str().unwrap();
        assert_eq!(name, format!("log.{:016x}", segment.first_zxid));
        if i > 0 {
            assert_eq!(segment.first_zxid, segments[i - 1].last_zxid + 1);
            // A segment is closed once it passes segment_bytes, not long after.
            assert!(segments[i - 1].data_end >= options.segment_bytes);
            assert!(segments[i - 1].data_end < options.segment_bytes + 400);
        }
    }
    // Rolling over made every finished segment durable, without an explicit sync.
    assert!(log.synced_zxid() >= segments[segments.len() - 2].last_zxid);
    log.sync().unwrap();
    drop(log);

    let (log, report) = open(dir.path(), &options);
    assert_eq!(report.truncated, None);
    assert!(report.removed.is_empty());
    assert_eq!(report.segments, segments.len());
    assert_eq!(report.records, 300);
    assert_eq!(log.segments(), segments);
    assert_eq!(read_all(&log), records(1..=300));
}

#[test]
fn segments_are_preallocated_in_steps() {
    let dir = tempfile::tempdir().unwrap();
    let options = FileLogOptions {
        segment_bytes: 1 << 20,
        preallocate_bytes: 64 << 10,
        ..FileLogOptions::default()
    };
    let (mut log, _) = open(dir.path(), &options);
    log.append(&records([1])).unwrap();
    let path = last_segment(&log);
    assert_eq!(file_len(&path), 64 << 10);
    // 100 KiB of records: the file grows by whole steps, ahead of the data.
    let big: Vec<Record> = (2..=101)
        .map(|z| Record::new(z, vec![z as u8; 1000]))
        .collect();
    log.append(&big).unwrap();
    let len = file_len(&path);
    let end = log.segments()[0].data_end;
    assert_eq!(len % (64 << 10), 0);
    assert!(
        len >= end && len - end < 64 << 10,
        "len {len}, data end {end}"
    );
    log.sync().unwrap();
    drop(log);
    let (log, report) = open(dir.path(), &options);
    assert_eq!(report.truncated, None);
    assert_eq!(file_len(&path), len);
    let mut expected = records([1]);
    expected.extend(big);
    assert_eq!(read_all(&log), expected);
}

#[test]
fn a_record_larger_than_a_batch_is_written_alone() {
    let dir = tempfile::tempdir().unwrap();
    let options = tiny();
    let (mut log, _) = open(dir.path(), &options);
    let big = Record::new(2, vec![7; 5000]);
    log.append(&[record(1), big.clone(), record(3)]).unwrap();
    log.sync().unwrap();
    drop(log);
    let (log, _) = open(dir.path(), &options);
    assert_eq!(read_all(&log), vec![record(1), big, record(3)]);
}

#[test]
#[should_panic(expected = "exceeds the log's limit")]
fn a_record_larger_than_the_window_panics() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), &one_segment(4096));
    let _ = log.append(&[Record::new(1, vec![0; 4096])]);
}

#[test]
fn append_syncs_by_itself_when_the_window_fills() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), &one_segment(4096));
    for z in 1..=100 {
        log.append(&[Record::new(z, vec![1; 200])]).unwrap();
        // Each record takes 224 bytes on disk; at most 4096 bytes stand unsynced.
        let unsynced = z - log.synced_zxid();
        assert!(unsynced * 224 <= 4096, "{unsynced} records unsynced");
    }
    assert!(log.synced_zxid() > 80);
}

#[test]
fn a_clean_reopen_reports_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let options = tiny();
    let (mut log, report) = open(dir.path(), &options);
    assert_eq!(report, OpenReport::default());
    append(&mut log, 1..=50, 3);
    log.sync().unwrap();
    drop(log);
    let (log, report) = open(dir.path(), &options);
    assert_eq!(report.truncated, None);
    assert!(report.removed.is_empty());
    assert_eq!(report.records, 50);
    assert_eq!(log.synced_zxid(), 50);
}

/// Builds a log in one segment whose last append is zxids 41..=50; returns the offset of
/// that append's first batch and the segment path.
fn log_with_a_last_batch(dir: &Path, options: &FileLogOptions) -> (u64, PathBuf) {
    let (mut log, _) = open(dir, options);
    append(&mut log, 1..=40, 8);
    let offset = log.segments()[0].data_end;
    log.append(&records(41..=50)).unwrap();
    log.sync().unwrap();
    assert_eq!(log.segments().len(), 1);
    (offset, last_segment(&log))
}

/// After a torn tail was cut at `offset`: the log holds 1..=40, appending works and
/// survives another reopen, which reports nothing.
fn assert_recovered(dir: &Path, options: &FileLogOptions, log: FileLog) {
    assert_eq!(read_all(&log), records(1..=40));
    assert_eq!((log.last_zxid(), log.synced_zxid()), (40, 40));
    let mut log = log;
    append(&mut log, 41..=60, 4);
    log.sync().unwrap();
    drop(log);
    let (log, report) = open(dir, options);
    assert_eq!(report.truncated, None);
    assert_eq!(read_all(&log), records(1..=60));
}

#[test]
fn torn_tail_cut_mid_batch() {
    let dir = tempfile::tempdir().unwrap();
    let options = one_segment(64 << 10);
    let (offset, path) = log_with_a_last_batch(dir.path(), &options);
    // The crash came while the file held only part of the last batch.
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(offset + 30).unwrap();
    drop(file);

    let (log, report) = open(dir.path(), &options);
    let torn = report.truncated.clone().expect("a torn tail");
    assert_eq!(
        (torn.file.as_path(), torn.offset, torn.bytes),
        (path.as_path(), offset, 30)
    );
    assert_eq!(
        torn.to_string(),
        format!(
            "cut 30 bytes of torn tail from {} at offset {offset}",
            path.display()
        )
    );
    assert_recovered(dir.path(), &options, log);
}

#[test]
fn torn_tail_scribbled_over() {
    for (skip, len) in [(0, 12), (0, 200), (5, 40), (100, 1), (12, 3000)] {
        let dir = tempfile::tempdir().unwrap();
        let options = one_segment(64 << 10);
        let (offset, path) = log_with_a_last_batch(dir.path(), &options);
        let mut rng = StdRng::seed_from_u64(skip + len);
        let garbage: Vec<u8> = (0..len).map(|_| rng.gen_range(1..=255)).collect();
        write_at(&path, offset + skip, &garbage);

        let (log, report) = open(dir.path(), &options);
        let torn = report.truncated.expect("a torn tail");
        assert_eq!(torn.offset, offset, "skip {skip} len {len}");
        assert!(torn.bytes >= skip + len);
        // The cut space reads as zeros again and stays preallocated.
        let mut rest = vec![1u8; 4000];
        fs::File::open(&path)
            .unwrap()
            .read_exact_at(&mut rest, offset)
            .unwrap();
        assert!(rest.iter().all(|&b| b == 0));
        assert_eq!(file_len(&path), 1 << 20);
        assert_recovered(dir.path(), &options, log);
    }
}

#[test]
fn torn_tail_with_a_later_batch_intact() {
    // Writeback does not keep order: the last batch reached the disk, the one before did not.
    let dir = tempfile::tempdir().unwrap();
    let options = one_segment(64 << 10);
    let (mut log, _) = open(dir.path(), &options);
    append(&mut log, 1..=40, 8);
    let offset = log.segments()[0].data_end;
    log.append(&records(41..=45)).unwrap();
    log.append(&records(46..=50)).unwrap();
    let end = log.segments()[0].data_end;
    log.sync().unwrap();
    let path = last_segment(&log);
    drop(log);
    write_at(&path, offset, &[0; 12]);

    let (log, report) = open(dir.path(), &options);
    let torn = report.truncated.expect("a torn tail");
    assert_eq!((torn.offset, torn.bytes), (offset, end - offset));
    assert_recovered(dir.path(), &options, log);
}

#[test]
fn a_new_segment_left_empty_by_a_crash_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let options = tiny();
    let (mut log, _) = open(dir.path(), &options);
    append(&mut log, 1..=100, 5);
    log.sync().unwrap();
    let segments = log.segments();
    let last = segments.last().unwrap().clone();
    drop(log);
    // The crash came after the segment was created but before its first batch was durable:
    // part of that batch is there.
    let file = OpenOptions::new().write(true).open(&last.path).unwrap();
    file.set_len(DATA_START + 20).unwrap();
    drop(file);
    // A rewrite or creation interrupted before its rename leaves a tmp file.
    let tmp = dir.path().join("log.00000000000003e8.tmp");
    fs::write(&tmp, b"partial").unwrap();

    let (log, report) = open(dir.path(), &options);
    assert_eq!(report.truncated.as_ref().unwrap().offset, DATA_START);
    assert!(report.removed.contains(&last.path));
    assert!(report.removed.contains(&tmp));
    assert!(!last.path.exists() && !tmp.exists());
    let previous = &segments[segments.len() - 2];
    assert_eq!(log.last_zxid(), previous.last_zxid);
    assert_eq!(read_all(&log), records(1..=previous.last_zxid));
    drop(log);

    // Appending carries on (and rolls over at once: the previous segment is full).
    let (mut log, _) = open(dir.path(), &options);
    let next = previous.last_zxid + 1;
    append(&mut log, next..=next + 30, 5);
    log.sync().unwrap();
    drop(log);
    let (log, report) = open(dir.path(), &options);
    assert_eq!(report.truncated, None);
    assert_eq!(read_all(&log), records(1..=next + 30));
}

#[test]
fn a_header_only_last_segment_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let options = tiny();
    let (mut log, _) = open(dir.path(), &options);
    append(&mut log, 1..=100, 5);
    log.sync().unwrap();
    let last = last_segment(&log);
    drop(log);
    let file = OpenOptions::new().write(true).open(&last).unwrap();
    file.set_len(DATA_START).unwrap();
    drop(file);
    let (_, report) = open(dir.path(), &options);
    assert_eq!(report.truncated, None);
    assert_eq!(report.removed, vec![last]);
}

#[test]
fn corruption_in_an_earlier_segment_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let options = tiny();
    let (mut log, _) = open(dir.path(), &options);
    append(&mut log, 1..=200, 5);
    log.sync().unwrap();
    let segments = log.segments();
    drop(log);
    // A payload byte of the first batch of the second segment.
    flip_byte(&segments[1].path, DATA_START + 20);
    assert_corrupt(
        open_err(dir.path(), &options),
        &segments[1].path,
        DATA_START,
    );
}

#[test]
fn corruption_at_the_end_of_an_earlier_segment_is_an_error() {
    // Even the last batch of a segment that is not the last is durable data.
    let dir = tempfile::tempdir().unwrap();
    let options = tiny();
    let (mut log, _) = open(dir.path(), &options);
    append(&mut log, 1..=200, 1);
    log.sync().unwrap();
    let segments = log.segments();
    drop(log);
    let end = segments[0].data_end;
    flip_byte(&segments[0].path, end - 1);
    match open_err(dir.path(), &options) {
        StorageError::Corrupt { file, offset, .. } => {
            assert_eq!(file, segments[0].path);
            assert!(offset < end && offset > DATA_START);
        }
        other => panic!("{other}"),
    }
}

#[test]
fn corruption_followed_by_more_than_a_window_of_data_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let options = FileLogOptions {
        segment_bytes: 8 << 20,
        preallocate_bytes: 8 << 20,
        max_batch_bytes: 256 << 10,
        max_unsynced_bytes: 1 << 20,
    };
    let (mut log, _) = open(dir.path(), &options);
    log.append(&records(1..=10)).unwrap();
    // 3 MiB of valid batches after the first one.
    for z in 0..30 {
        let chunk: Vec<Record> = (0..10)
            .map(|i| Record::new(11 + z * 10 + i, vec![i as u8 + 1; 10_000]))
            .collect();
        log.append(&chunk).unwrap();
    }
    log.sync().unwrap();
    let path = last_segment(&log);
    assert_eq!(log.segments().len(), 1);
    drop(log);
    flip_byte(&path, DATA_START + 30);
    let error = open_err(dir.path(), &options);
    assert!(error.to_string().contains("window"), "{error}");
    assert_corrupt(error, &path, DATA_START);
}

#[test]
fn a_damaged_segment_header_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let options = tiny();
    let (mut log, _) = open(dir.path(), &options);
    append(&mut log, 1..=100, 5);
    log.sync().unwrap();
    let segments = log.segments();
    drop(log);
    for segment in [&segments[1], segments.last().unwrap()] {
        flip_byte(&segment.path, 20);
        assert_corrupt(open_err(dir.path(), &options), &segment.path, 0);
        flip_byte(&segment.path, 20);
    }
    open(dir.path(), &options);
}

#[test]
fn a_missing_middle_segment_is_an_error_naming_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let options = tiny();
    let (mut log, _) = open(dir.path(), &options);
    append(&mut log, 1..=200, 5);
    log.sync().unwrap();
    let segments = log.segments();
    assert!(segments.len() >= 4);
    drop(log);
    fs::remove_file(&segments[2].path).unwrap();
    let error = open_err(dir.path(), &options);
    match &error {
        StorageError::MissingSegment {
            file,
            previous,
            expected_prev,
            found_prev,
        } => {
            assert_eq!(file, &segments[3].path);
            assert_eq!(previous, &segments[1].path);
            assert_eq!(*expected_prev, segments[2].last_zxid);
            assert_eq!(*found_prev, segments[1].last_zxid);
        }
        other => panic!("expected MissingSegment, got {other}"),
    }
    assert!(error.is_corruption());
    assert!(error
        .to_string()
        .contains(&segments[3].path.display().to_string()));
}

#[test]
fn missing_oldest_segments_are_purged_history() {
    let dir = tempfile::tempdir().unwrap();
    let options = tiny();
    let (mut log, _) = open(dir.path(), &options);
    append(&mut log, 1..=200, 5);
    log.sync().unwrap();
    let segments = log.segments();
    drop(log);
    fs::remove_file(&segments[0].path).unwrap();
    fs::remove_file(&segments[1].path).unwrap();
    let (log, _) = open(dir.path(), &options);
    assert_eq!(log.first_zxid(), Some(segments[2].first_zxid));
    assert_eq!(read_all(&log), records(segments[2].first_zxid..=200));
}

#[test]
fn truncate_after_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let options = tiny();
    let (mut log, _) = open(dir.path(), &options);
    append(&mut log, 1..=300, 6);
    let segments = log.segments();
    assert!(segments.len() >= 5);
    // Inside the second segment, inside a batch (batches hold up to 6 records).
    let target = &segments[1];
    let zxid = target.first_zxid + (target.last_zxid - target.first_zxid) / 2;
    log.truncate_after(zxid).unwrap();
    assert_eq!(log.segments().len(), 2);
    for later in &segments[2..] {
        assert!(!later.path.exists(), "{} not deleted", later.path.display());
    }
    assert_eq!(read_all(&log), records(1..=zxid));
    assert_eq!((log.last_zxid(), log.synced_zxid()), (zxid, zxid));
    assert!(
        fs::read_dir(dir.path()).unwrap().count() == 2,
        "no tmp file left"
    );

    // The log goes on from there, into new segments, and all of it survives a reopen.
    append(&mut log, zxid + 1..=zxid + 200, 6);
    log.sync().unwrap();
    drop(log);
    let (log, report) = open(dir.path(), &options);
    assert_eq!(report.truncated, None);
    assert_eq!(read_all(&log), records(1..=zxid + 200));
}

#[test]
fn truncate_at_a_segment_boundary_deletes_later_segments_only() {
    let dir = tempfile::tempdir().unwrap();
    let options = tiny();
    let (mut log, _) = open(dir.path(), &options);
    append(&mut log, 1..=200, 6);
    let segments = log.segments();
    log.truncate_after(segments[1].last_zxid).unwrap();
    assert_eq!(log.segments(), segments[..2]);
    drop(log);
    let (log, _) = open(dir.path(), &options);
    assert_eq!(read_all(&log), records(1..=segments[1].last_zxid));
}

#[test]
fn purge_deletes_whole_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let options = tiny();
    let (mut log, _) = open(dir.path(), &options);
    append(&mut log, 1..=300, 5);
    log.sync().unwrap();
    let segments = log.segments();
    // A zxid in the middle of the fourth segment: the first three go, the fourth stays.
    let zxid = segments[3].first_zxid + 1;
    log.purge_through(zxid).unwrap();
    assert_eq!(log.segments(), segments[3..]);
    assert!(segments[..3].iter().all(|s| !s.path.exists()));
    assert_eq!(log.first_zxid(), Some(segments[3].first_zxid));

    log.purge_through(i64::MAX).unwrap();
    assert_eq!(log.segments(), segments[segments.len() - 1..]);
    drop(log);
    let (log, _) = open(dir.path(), &options);
    assert_eq!(log.last_zxid(), 300);
    assert_eq!(
        read_all(&log),
        records(segments.last().unwrap().first_zxid..=300)
    );
}

#[test]
fn a_failed_write_poisons_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let options = tiny();
    let (mut log, _) = open(dir.path(), &options);
    append(&mut log, 1..=20, 5);
    log.sync().unwrap();
    // The directory vanishes: the next rollover cannot create its segment.
    fs::remove_dir_all(dir.path()).unwrap();
    let error = (21..=400)
        .find_map(|z| log.append(&records([z])).err())
        .expect("rollover fails");
    assert!(
        matches!(error, StorageError::Io { op: "create", .. }),
        "{error}"
    );
    assert!(!error.is_corruption());
    // Later writes are refused, naming the first failure; reads of what is in memory go on.
    let refused = log.sync().unwrap_err();
    assert!(matches!(refused, StorageError::Failed { .. }), "{refused}");
    assert!(refused.to_string().contains("create failed"), "{refused}");
    assert!(matches!(
        log.append(&records([1000])),
        Err(StorageError::Failed { .. })
    ));
    assert!(matches!(
        log.truncate_after(5),
        Err(StorageError::Failed { .. })
    ));
    assert!(matches!(
        log.purge_through(5),
        Err(StorageError::Failed { .. })
    ));
}

/// Random crashes: the unsynced part of the last segment is torn sector by sector (each
/// 512-byte sector of it, and of the space after it, made durable, left zero, or filled with
/// garbage). Recovery must always succeed, keep everything synced, and keep a prefix.
#[test]
fn random_torn_tails_always_recover_the_synced_prefix() {
    for seed in 0..150 {
        let mut rng = StdRng::seed_from_u64(seed);
        let dir = tempfile::tempdir().unwrap();
        let options = one_segment(16 << 10);
        let (mut log, _) = open(dir.path(), &options);
        let synced: i64 = rng.gen_range(0..60);
        let mut zxid = 0;
        while zxid < synced {
            let n = rng.gen_range(1..=8).min(synced - zxid);
            log.append(&records(zxid + 1..=zxid + n)).unwrap();
            zxid += n;
        }
        log.sync().unwrap();
        let synced_end = log.segments().first().map_or(DATA_START, |s| s.data_end);
        // Unsynced appends, staying within the window so the log does not sync by itself.
        let mut written = zxid;
        while log.segments().first().map_or(DATA_START, |s| s.data_end) - synced_end < 12 << 10 {
            let n = rng.gen_range(1..=8);
            log.append(&records(written + 1..=written + n)).unwrap();
            written += n;
        }
        assert_eq!(log.synced_zxid(), synced, "seed {seed}");
        let path = last_segment(&log);
        drop(log);

        // Everything after the synced position, up to a window past it, is fair game.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut sector = synced_end / 512 * 512;
        while sector < synced_end + (16 << 10) - 512 {
            let from = sector.max(synced_end);
            let len = (sector + 512 - from) as usize;
            match rng.gen_range(0..3) {
                0 => {}
                1 => file.write_all_at(&vec![0; len], from).unwrap(),
                _ => {
                    let garbage: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                    file.write_all_at(&garbage, from).unwrap();
                }
            }
            sector += 512;
        }
        drop(file);

        let (mut log, report) = FileLog::open(dir.path(), options.clone())
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let held = read_all(&log);
        assert!(
            held.len() as i64 >= synced,
            "seed {seed}: lost synced records"
        );
        assert_eq!(held, records(1..=held.len() as i64), "seed {seed}");
        if let Some(torn) = report.truncated {
            assert!(torn.offset >= synced_end, "seed {seed}: cut synced data");
        }
        let next = log.last_zxid() + 1;
        log.append(&records(next..=next + 5)).unwrap();
        log.sync().unwrap();
        drop(log);
        let (log, report) = open(dir.path(), &options);
        assert_eq!(report.truncated, None, "seed {seed}");
        assert_eq!(log.last_zxid(), next + 5, "seed {seed}");
    }
}

#[test]
fn a_stale_batch_past_the_end_is_judged_as_a_torn_tail() {
    // After a crash some filesystems expose stale blocks: here a copy of an earlier, valid
    // batch appears right after the durable end.
    let dir = tempfile::tempdir().unwrap();
    let options = one_segment(64 << 10);
    let (mut log, _) = open(dir.path(), &options);
    log.append(&records(1..=5)).unwrap();
    let first_end = log.segments()[0].data_end;
    append(&mut log, 6..=40, 5);
    log.sync().unwrap();
    let end = log.segments()[0].data_end;
    let path = last_segment(&log);
    drop(log);
    let mut stale = vec![0u8; (first_end - DATA_START) as usize];
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    file.read_exact_at(&mut stale, DATA_START).unwrap();
    file.write_all_at(&stale, end).unwrap();
    drop(file);

    let (log, report) = open(dir.path(), &options);
    let torn = report.truncated.expect("the stale batch is cut");
    assert_eq!((torn.offset, torn.bytes), (end, stale.len() as u64));
    assert_eq!(read_all(&log), records(1..=40));
}

/// A sync detached to another thread counts only once it ran, covers what was written
/// before it was taken, and survives the log rolling to a new segment meanwhile.
#[test]
fn detached_syncs_count_once_they_ran() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), &tiny());
    assert!(log.detached_sync().unwrap().is_none(), "nothing to sync in an empty log");
    append(&mut log, 1..=3, 3);
    let sync = log.detached_sync().unwrap().expect("three records to sync");
    assert_eq!(sync.zxid(), 3);
    append(&mut log, 4..=5, 2);
    assert!(log.synced_zxid() < 3, "not counted before it ran");
    std::thread::scope(|s| s.spawn(|| sync.run().unwrap()).join().unwrap());
    log.synced_by(&sync);
    assert_eq!(log.synced_zxid(), 3, "what came after the handle is not covered");
    let next = log.detached_sync().unwrap().expect("two more");
    // Roll over several segments before the handle is reported: a roll syncs in full.
    append(&mut log, 6..=200, 5);
    next.run().unwrap();
    log.synced_by(&next);
    assert!(log.synced_zxid() >= 5);
    log.sync().unwrap();
    assert_eq!(log.synced_zxid(), 200);
    assert!(log.detached_sync().unwrap().is_none(), "all durable");
    drop(log);
    let (log, report) = open(dir.path(), &tiny());
    assert_eq!((report.truncated, report.records), (None, 200));
    assert_eq!(read_all(&log).iter().map(|r| r.zxid).collect::<Vec<_>>(), (1..=200).collect::<Vec<_>>());
}
