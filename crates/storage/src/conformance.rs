//! The [`Log`] contract as executable checks, run against every implementation.
//!
//! Each `check_*` function takes a fresh [`Harness`] and panics on a violation. The
//! [`log_conformance_tests!`](crate::log_conformance_tests) macro turns the whole list into
//! `#[test]` functions for one harness, so a new implementation (or a new configuration of
//! an old one) gets the full suite with one line. The checks are deliberately black-box:
//! they use only the trait, plus [`Harness::restart`].
//!
//! What a restart may lose differs between implementations (a [`MemLog`](crate::MemLog)
//! crash loses every unsynced record, a reopened [`FileLog`](crate::FileLog) usually keeps
//! them, since they are in the page cache), so the checks assert only what the contract
//! promises: everything synced survives, and what survives is a prefix of what was
//! appended. Torn writes are the business of the `FileLog` tests.

use crate::{Log, Record};

/// A log under test, and a way to restart it.
pub trait Harness {
    /// The implementation under test.
    type Log: Log;

    /// The log as it is now.
    fn log(&mut self) -> &mut Self::Log;

    /// Stops the log without syncing and starts it again from what it stored, as after a
    /// crash: afterwards it must hold everything synced before, and a prefix of what was
    /// appended.
    fn restart(&mut self);
}

/// A deterministic payload for `zxid`, `len` bytes long, so reads can be checked byte for
/// byte without keeping a copy.
pub fn payload(zxid: i64, len: usize) -> Vec<u8> {
    let seed = zxid.to_be_bytes();
    (0..len)
        .map(|i| seed[i % 8] ^ (i as u8).wrapping_mul(31))
        .collect()
}

/// A record whose payload length varies with its zxid (0 to 96 bytes).
pub fn record(zxid: i64) -> Record {
    Record::new(zxid, payload(zxid, (zxid % 97) as usize))
}

/// Every record of `log`, read in pages of 4 KiB.
pub fn read_all<L: Log + ?Sized>(log: &L) -> Vec<Record> {
    let mut all: Vec<Record> = Vec::new();
    loop {
        let after = all.last().map_or(0, |r| r.zxid);
        let page = log.read_after(after, 4096).expect("read_after");
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// Appends `zxids` as records, `per_append` at a time.
fn append_range<L: Log>(log: &mut L, zxids: impl IntoIterator<Item = i64>, per_append: usize) {
    let records: Vec<Record> = zxids.into_iter().map(record).collect();
    for chunk in records.chunks(per_append) {
        log.append(chunk).expect("append");
    }
}

fn records(zxids: impl IntoIterator<Item = i64>) -> Vec<Record> {
    zxids.into_iter().map(record).collect()
}

/// Checks that the log holds exactly `expected`, and that its zxid accessors agree.
fn assert_holds<L: Log>(log: &L, expected: &[Record]) {
    assert_eq!(read_all(log), expected);
    assert_eq!(log.first_zxid(), expected.first().map(|r| r.zxid));
    assert_eq!(log.last_zxid(), expected.last().map_or(0, |r| r.zxid));
    assert!(log.synced_zxid() <= log.last_zxid());
}

/// A new log is empty.
pub fn check_empty_log<H: Harness>(h: &mut H) {
    let log = h.log();
    assert_holds(log, &[]);
    assert_eq!(log.synced_zxid(), 0);
    assert!(log.read_after(0, usize::MAX).unwrap().is_empty());
    log.sync().unwrap();
    assert_eq!(log.synced_zxid(), 0);
    h.restart();
    assert_holds(h.log(), &[]);
}

/// Appended records read back in order, whether synced or not; `sync` moves
/// `synced_zxid` to the end; gaps between zxids (a new epoch) are fine.
pub fn check_append_read_sync<H: Harness>(h: &mut H) {
    let log = h.log();
    let mut expected = records([1, 2, 3]);
    log.append(&expected).unwrap();
    log.append(&[]).unwrap();
    let more = records([5, 0x1_0000_0001]);
    log.append(&more).unwrap();
    expected.extend(more);
    assert_holds(log, &expected);
    assert!(log.synced_zxid() <= 0x1_0000_0001);
    log.sync().unwrap();
    assert_eq!(log.synced_zxid(), 0x1_0000_0001);

    let tail = records([0x1_0000_0002]);
    log.append(&tail).unwrap();
    expected.extend(tail);
    assert!(log.synced_zxid() >= 0x1_0000_0001);
    assert_holds(log, &expected);
    assert_eq!(log.read_after(2, usize::MAX).unwrap(), expected[2..]);
    assert_eq!(log.read_after(4, usize::MAX).unwrap(), expected[3..]);
    assert!(log
        .read_after(0x1_0000_0002, usize::MAX)
        .unwrap()
        .is_empty());
    log.sync().unwrap();
    assert_eq!(log.synced_zxid(), 0x1_0000_0002);
    // A second sync with nothing new is harmless.
    log.sync().unwrap();
    assert_eq!(log.synced_zxid(), 0x1_0000_0002);
}

/// Empty payloads and large ones survive a restart intact.
pub fn check_payload_sizes<H: Harness>(h: &mut H) {
    let expected = vec![
        Record::new(1, Vec::new()),
        Record::new(2, payload(2, 1)),
        Record::new(3, payload(3, 20_000)),
        Record::new(4, Vec::new()),
    ];
    h.log().append(&expected).unwrap();
    h.log().sync().unwrap();
    h.restart();
    assert_holds(h.log(), &expected);
}

/// `read_after` pages: every page is non-empty until the end, fits `max_bytes` unless it
/// is a single record, and the pages together are the whole log.
pub fn check_read_paging<H: Harness>(h: &mut H) {
    let log = h.log();
    append_range(log, 1..=300, 13);
    let expected = records(1..=300);
    for max_bytes in [0, 1, 50, 500, 5000] {
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let page = log.read_after(after, max_bytes).unwrap();
            if page.is_empty() {
                break;
            }
            let bytes: usize = page.iter().map(|r| r.payload.len()).sum();
            assert!(
                page.len() == 1 || bytes <= max_bytes,
                "page of {bytes} bytes"
            );
            after = page.last().unwrap().zxid;
            all.extend(page);
        }
        assert_eq!(all, expected, "max_bytes {max_bytes}");
    }
    // A page is as full as the budget allows.
    let page = log.read_after(0, 500).unwrap();
    let bytes: usize = page.iter().map(|r| r.payload.len()).sum();
    assert!(bytes + expected[page.len()].payload.len() > 500);
}

/// A record larger than the page budget still comes back, alone.
pub fn check_oversized_record_is_returned_alone<H: Harness>(h: &mut H) {
    let log = h.log();
    let big = Record::new(2, payload(2, 10_000));
    log.append(&[record(1), big.clone(), record(3)]).unwrap();
    assert_eq!(log.read_after(1, 100).unwrap(), vec![big]);
    assert_eq!(log.read_after(0, 100).unwrap(), vec![record(1)]);
}

/// Everything synced survives a restart, and the log goes on from where it was.
pub fn check_restart_keeps_synced<H: Harness>(h: &mut H) {
    append_range(h.log(), 1..=500, 17);
    h.log().sync().unwrap();
    h.restart();
    let mut expected = records(1..=500);
    assert_holds(h.log(), &expected);
    assert_eq!(h.log().synced_zxid(), 500);

    append_range(h.log(), 501..=700, 50);
    h.log().sync().unwrap();
    expected.extend(records(501..=700));
    h.restart();
    assert_holds(h.log(), &expected);
}

/// A restart may lose unsynced records, but only a suffix of them.
pub fn check_restart_keeps_a_prefix<H: Harness>(h: &mut H) {
    append_range(h.log(), 1..=100, 10);
    h.log().sync().unwrap();
    append_range(h.log(), 101..=150, 10);
    h.restart();
    let held = read_all(h.log());
    assert!(held.len() >= 100 && held.len() <= 150);
    assert_eq!(held, records(1..=held.len() as i64));
    assert_holds(h.log(), &held);
    assert_eq!(h.log().synced_zxid(), h.log().last_zxid());
    // Appending resumes after whatever survived.
    let next = held.len() as i64 + 1;
    h.log().append(&records([next])).unwrap();
    h.log().sync().unwrap();
    h.restart();
    assert_eq!(h.log().last_zxid(), next);
}

/// `truncate_after` inside a batch, at a batch boundary and past the end; the result is
/// durable, and appending (with new data for the removed zxids) goes on.
pub fn check_truncate_after<H: Harness>(h: &mut H) {
    // Appends of 7 records: on-disk batches end at 7, 14, … 56.
    append_range(h.log(), 1..=60, 7);

    h.log().truncate_after(50).unwrap(); // inside the batch 50..=56
    assert_holds(h.log(), &records(1..=50));
    assert_eq!(h.log().synced_zxid(), 50);

    h.log().truncate_after(42).unwrap(); // a boundary (batch 36..=42)
    assert_holds(h.log(), &records(1..=42));
    assert_eq!(h.log().synced_zxid(), 42);

    h.log().truncate_after(45).unwrap(); // past the end: nothing removed, all synced
    assert_holds(h.log(), &records(1..=42));
    assert_eq!(h.log().synced_zxid(), 42);

    h.restart();
    assert_holds(h.log(), &records(1..=42));

    // The truncated zxids come back with different content (another leader's history).
    let replacement: Vec<Record> = (43..=80).map(|z| Record::new(z, payload(-z, 40))).collect();
    h.log().append(&replacement).unwrap();
    h.log().sync().unwrap();
    let mut expected = records(1..=42);
    expected.extend(replacement);
    assert_holds(h.log(), &expected);
    h.restart();
    assert_holds(h.log(), &expected);
}

/// Truncating before the first record empties the log; it then starts afresh.
pub fn check_truncate_everything<H: Harness>(h: &mut H) {
    append_range(h.log(), 10..=40, 5);
    h.log().sync().unwrap();
    h.log().truncate_after(3).unwrap();
    assert_holds(h.log(), &[]);
    assert_eq!(h.log().synced_zxid(), 0);
    h.restart();
    assert_holds(h.log(), &[]);
    append_range(h.log(), 4..=9, 2);
    h.log().sync().unwrap();
    h.restart();
    assert_holds(h.log(), &records(4..=9));
}

/// Truncating records that were never synced is allowed (a follower's uncommitted tail).
pub fn check_truncate_unsynced<H: Harness>(h: &mut H) {
    append_range(h.log(), 1..=20, 4);
    h.log().sync().unwrap();
    append_range(h.log(), 21..=30, 4);
    h.log().truncate_after(25).unwrap();
    assert_holds(h.log(), &records(1..=25));
    assert_eq!(h.log().synced_zxid(), 25);
    h.restart();
    assert_holds(h.log(), &records(1..=25));
}

/// `purge_through` keeps every record after the zxid and the last record, leaves a
/// contiguous suffix, and is durable.
pub fn check_purge_through<H: Harness>(h: &mut H) {
    append_range(h.log(), 1..=2000, 25);
    h.log().sync().unwrap();
    let all = records(1..=2000);

    h.log().purge_through(1000).unwrap();
    let held = read_all(h.log());
    let first = held.first().expect("purge keeps records").zxid;
    assert!(first <= 1001, "purged past the zxid: first is {first}");
    assert_eq!(held, all[first as usize - 1..]);
    assert_holds(h.log(), &held);
    // Reading from before the first record starts at the first record.
    assert_eq!(h.log().read_after(0, 1).unwrap(), vec![record(first)]);

    h.restart();
    assert_holds(h.log(), &held);

    h.log().purge_through(i64::MAX).unwrap();
    let held = read_all(h.log());
    assert_eq!(held.last(), all.last(), "the last record is never purged");
    assert_eq!(held, all[all.len() - held.len()..]);
    h.restart();
    assert_holds(h.log(), &held);

    append_range(h.log(), 2001..=2010, 3);
    h.log().sync().unwrap();
    assert_eq!(h.log().last_zxid(), 2010);
}

/// Appending a zxid that does not exceed the last one is a caller bug: it panics.
pub fn check_append_not_after_last_panics<H: Harness>(h: &mut H) {
    h.log().append(&records([5])).unwrap();
    let _ = h.log().append(&records([5]));
}

/// Zxids out of order within one append panic too.
pub fn check_append_out_of_order_panics<H: Harness>(h: &mut H) {
    let _ = h.log().append(&records([2, 1]));
}

/// Defines one `#[test]` per conformance check for a harness.
///
/// `log_conformance_tests!(module_name, || make_harness());` declares `mod module_name`
/// with the suite, each test running on a fresh harness from the expression.
#[macro_export]
macro_rules! log_conformance_tests {
    ($name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use $crate::conformance as c;

            fn harness() -> impl c::Harness {
                ($make)()
            }

            #[test]
            fn empty_log() {
                c::check_empty_log(&mut harness());
            }
            #[test]
            fn append_read_sync() {
                c::check_append_read_sync(&mut harness());
            }
            #[test]
            fn payload_sizes() {
                c::check_payload_sizes(&mut harness());
            }
            #[test]
            fn read_paging() {
                c::check_read_paging(&mut harness());
            }
            #[test]
            fn oversized_record_is_returned_alone() {
                c::check_oversized_record_is_returned_alone(&mut harness());
            }
            #[test]
            fn restart_keeps_synced() {
                c::check_restart_keeps_synced(&mut harness());
            }
            #[test]
            fn restart_keeps_a_prefix() {
                c::check_restart_keeps_a_prefix(&mut harness());
            }
            #[test]
            fn truncate_after() {
                c::check_truncate_after(&mut harness());
            }
            #[test]
            fn truncate_everything() {
                c::check_truncate_everything(&mut harness());
            }
            #[test]
            fn truncate_unsynced() {
                c::check_truncate_unsynced(&mut harness());
            }
            #[test]
            fn purge_through() {
                c::check_purge_through(&mut harness());
            }
            #[test]
            #[should_panic(expected = "out of order")]
            fn append_not_after_last_panics() {
                c::check_append_not_after_last_panics(&mut harness());
            }
            #[test]
            #[should_panic(expected = "out of order")]
            fn append_out_of_order_panics() {
                c::check_append_out_of_order_panics(&mut harness());
            }
        }
    };
}
