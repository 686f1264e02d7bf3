//! [`EpochFiles`]: Zab's two persisted epochs, `acceptedEpoch` and `currentEpoch`, as
//! ZooKeeper keeps them in `dataDir`; and [`check_startup`], the checks that refuse to run
//! on a data directory whose epochs and log disagree.
//!
//! # Why two files
//!
//! `acceptedEpoch` is the last epoch this server promised to follow (it acknowledged the
//! leader's NEWEPOCH): from then on it must reject any leader of an older epoch.
//! `currentEpoch` is the epoch of the history it holds (it acknowledged NEWLEADER after its
//! log matched the leader's). Both go into what the server advertises in an election and
//! in FOLLOWERINFO / ACKEPOCH, so both must survive a crash exactly as they were promised.
//! Deriving either from the last logged zxid instead is ZOOKEEPER-335 (followers loop).
//!
//! Order is the caller's business, and it matters: `acceptedEpoch` is raised before
//! `currentEpoch` (so `currentEpoch <= acceptedEpoch` always holds on disk), and
//! `currentEpoch` is raised only once the history synced from the new leader is durable in
//! the log, before the ACK of NEWLEADER. Writing it earlier lets a server that crashes
//! with an incomplete history later win an election on the high epoch and truncate
//! committed transactions (ZOOKEEPER-4643). These files make each single update durable;
//! they cannot make two files or a file and the log change together.
//!
//! # Format
//!
//! Each file holds the epoch as a decimal number in ASCII. We write it followed by a
//! newline, so `cat` shows it cleanly. ZooKeeper writes the number without the newline
//! and reads only the first line, so each understands the other's files: we accept the
//! number with or without one trailing newline (`\n` or `\r\n`), and nothing else — no
//! sign, no spaces, no second line. An epoch is the high 32 bits of a zxid, and zxids are
//! positive, so a value outside `0..=`[`MAX_EPOCH`] is as corrupt as one that is not a
//! number. A missing file is `None`: a new data directory has neither.
//!
//! # Atomic and durable updates
//!
//! A write goes to `<name>.tmp`, which is `fsync`ed, renamed over `<name>`, and then the
//! directory is `fsync`ed. `rename` replaces the name atomically, so after a crash at any
//! point `<name>` holds either the old value or the new one, complete; never a torn or
//! empty file. The value counts as written only when the setter returns `Ok`.
//!
//! A leftover `<name>.tmp` means a crash (or failure) came before its rename: the new value
//! never took effect and nothing was promised on it, so [`EpochFiles::open`] deletes it and
//! reads never look at it.
//!
//! # ZOOKEEPER-1653: what atomic writes fix and what they do not
//!
//! Atomic writes rule out one failure: an epoch file that is torn, empty or half old,
//! half new after a crash. (ZooKeeper writes these files the same way: tmp file, rename.)
//!
//! They do not rule out the failure ZOOKEEPER-1653 is about. There a follower wrote the
//! history synced from a new leader (a snapshot) and then `currentEpoch`; a crash between
//! the two left history of an epoch later than `currentEpoch` on disk, so the startup check
//! `epoch(lastZxid) > currentEpoch` failed on every restart. Two writes to two places
//! cannot be made one atomic step by making each atomic, and ZOOKEEPER-4643 forbids the
//! other order. ZooKeeper's fix is a marker: it creates `updatingEpoch` before the snapshot
//! and deletes it after `currentEpoch` is written; at startup, if the check fails and the
//! marker exists, it sets `currentEpoch` to the epoch of the last zxid and starts.
//!
//! The same window exists for Corral whenever a follower logs synced transactions of an
//! epoch above its `currentEpoch` (a DIFF that carries epochs it missed) before raising
//! `currentEpoch` at NEWLEADER, and 4643 rules out raising it first; the Zab simulation
//! (corral-zab) hits it. So Corral keeps ZooKeeper's marker, under the same name:
//! [`EpochFiles::begin_epoch_update`] creates it when the sync starts (corral-zab asks
//! for it with `Action::BeginEpochUpdate` before the first synced write),
//! [`EpochFiles::set_current`] removes it, and
//! [`EpochFiles::repair_interrupted_update`], called before [`check_startup`], finishes an
//! update a crash interrupted.
//!
//! Apart from that window the check fails on a data directory copied or restored from
//! elsewhere (an epoch file from one server or moment, the log from another) or edited by
//! hand. That is meant: such a server must not vote or follow until an operator looks.
//!
//! # Failures
//!
//! After any error from a setter the value on disk is the old or the new one, and which is
//! unknown; after a failed `fsync` the kernel may even have dropped the dirty pages. So the
//! server must not act on the new value (send the ACK that depends on it), and the
//! [`EpochFiles`] refuses further writes with [`StorageError::Failed`], as a
//! [`FileLog`](crate::FileLog) does. Reads go on. Reopen from disk to recover.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::file::fsio::sync_dir;
use crate::StorageError;

/// The file holding the last epoch this server accepted (acknowledged NEWEPOCH for).
pub const ACCEPTED_EPOCH_FILE: &str = "acceptedEpoch";

/// The file holding the epoch of the history this server holds (acknowledged NEWLEADER
/// for).
pub const CURRENT_EPOCH_FILE: &str = "currentEpoch";
/// The marker of an epoch update under way (ZooKeeper's name).
pub const UPDATING_EPOCH_FILE: &str = "updatingEpoch";

/// The greatest epoch that fits a positive zxid (`epoch << 32 | counter`).
pub const MAX_EPOCH: i64 = i32::MAX as i64;

/// The suffix of a file being written, renamed away once it is durable. The same as
/// ZooKeeper's `AtomicFileOutputStream`, so its leftovers are recognised too.
const TMP_SUFFIX: &str = ".tmp";

/// More bytes than any valid epoch file holds; only a prefix of a larger file is read, to
/// name it in the error.
const MAX_FILE_BYTES: u64 = 64;

/// The persisted epochs `acceptedEpoch` and `currentEpoch` in a data directory.
///
/// Reads go to disk each time: the caller keeps the values it works with and reads these
/// at startup. Setters take `&mut self`, so one handle is the only writer in a process.
/// (Two processes on one data directory are not guarded against here.)
#[derive(Debug)]
pub struct EpochFiles {
    dir: PathBuf,
    /// The first write failure, after which writes are refused (see the module docs).
    failed: Option<String>,
}

impl EpochFiles {
    /// Opens the epochs in `dir`, creating the directory if needed, and deletes leftover
    /// `acceptedEpoch.tmp` / `currentEpoch.tmp` files: they were never renamed into place,
    /// so their values never took effect. Does not read the epochs; a corrupt file shows up
    /// on [`accepted`](Self::accepted) or [`current`](Self::current).
    pub fn open(dir: impl AsRef<Path>) -> Result<EpochFiles, StorageError> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.exists() {
            fs::create_dir_all(&dir).map_err(|e| StorageError::io("create directory", &dir, e))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        let mut removed = false;
        for name in [ACCEPTED_EPOCH_FILE, CURRENT_EPOCH_FILE] {
            let tmp = dir.join(tmp_name(name));
            match fs::remove_file(&tmp) {
                Ok(()) => removed = true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io("remove", &tmp, e)),
            }
        }
        if removed {
            // Not needed for correctness (a tmp file is never read), but an operator looking
            // at the directory after another crash should not find it back.
            sync_dir(&dir)?;
        }
        Ok(EpochFiles { dir, failed: None })
    }

    /// The data directory the files are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The accepted epoch, `None` when `acceptedEpoch` does not exist.
    pub fn accepted(&self) -> Result<Option<i64>, StorageError> {
        self.read(ACCEPTED_EPOCH_FILE)
    }

    /// The current epoch, `None` when `currentEpoch` does not exist.
    pub fn current(&self) -> Result<Option<i64>, StorageError> {
        self.read(CURRENT_EPOCH_FILE)
    }

    /// Durably sets the accepted epoch (see the module docs for the guarantees on error).
    ///
    /// # Panics
    ///
    /// If `epoch` is outside `0..=`[`MAX_EPOCH`]: no zxid can carry it, so it is a bug.
    pub fn set_accepted(&mut self, epoch: i64) -> Result<(), StorageError> {
        self.write(ACCEPTED_EPOCH_FILE, epoch)
    }

    /// Durably sets the current epoch (see the module docs for the guarantees on error).
    ///
    /// # Panics
    ///
    /// If `epoch` is outside `0..=`[`MAX_EPOCH`]: no zxid can carry it, so it is a bug.
    pub fn set_current(&mut self, epoch: i64) -> Result<(), StorageError> {
        self.write(CURRENT_EPOCH_FILE, epoch)?;
        // The synced history (if any) and its epoch are both on disk now.
        self.end_epoch_update()
    }

    /// Records, durably, that this server is about to write history synced from a new
    /// leader before it raises `currentEpoch` (ZooKeeper's `updatingEpoch` file, see
    /// ZOOKEEPER-1653 in the module docs). Call before the first write of the synced
    /// history; [`set_current`](Self::set_current) ends the window by removing the marker.
    pub fn begin_epoch_update(&mut self) -> Result<(), StorageError> {
        if let Some(reason) = &self.failed {
            return Err(StorageError::Failed { reason: reason.clone() });
        }
        let path = self.dir.join(UPDATING_EPOCH_FILE);
        let result = File::create(&path)
            .and_then(|f| f.sync_all())
            .map_err(|e| StorageError::io("create", &path, e))
            .and_then(|()| sync_dir(&self.dir));
        if let Err(e) = &result {
            self.failed = Some(e.to_string());
        }
        result
    }

    /// Whether an epoch update was under way when the server stopped.
    pub fn epoch_update_interrupted(&self) -> bool {
        self.dir.join(UPDATING_EPOCH_FILE).exists()
    }

    /// At startup (and whenever memory is rebuilt from disk), finishes an epoch update a
    /// crash interrupted: the synced history is on disk but `currentEpoch` was not raised,
    /// so it is raised to the epoch of the last logged zxid, as ZooKeeper does, and the
    /// marker goes. Returns the epoch set, if any. [`check_startup`] afterwards still
    /// refuses a `currentEpoch` above `acceptedEpoch`.
    pub fn repair_interrupted_update(&mut self, last_logged_epoch: i64) -> Result<Option<i64>, StorageError> {
        if !self.epoch_update_interrupted() {
            return Ok(None);
        }
        let raised = match self.current()? {
            Some(c) if c >= last_logged_epoch => None,
            _ => {
                self.set_current(last_logged_epoch)?;
                Some(last_logged_epoch)
            }
        };
        self.end_epoch_update()?;
        Ok(raised)
    }

    fn end_epoch_update(&mut self) -> Result<(), StorageError> {
        let path = self.dir.join(UPDATING_EPOCH_FILE);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io("remove", &path, e)),
        }
    }

    fn read(&self, name: &str) -> Result<Option<i64>, StorageError> {
        let path = self.dir.join(name);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io("open", &path, e)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| StorageError::io("read", &path, e))?;
        parse_epoch(&bytes)
            .map(Some)
            .map_err(|reason| StorageError::corrupt(&path, 0, reason))
    }

    fn write(&mut self, name: &str, epoch: i64) -> Result<(), StorageError> {
        assert!(
            (0..=MAX_EPOCH).contains(&epoch),
            "epoch {epoch} out of range 0..={MAX_EPOCH}"
        );
        if let Some(reason) = &self.failed {
            return Err(StorageError::Failed {
                reason: reason.clone(),
            });
        }
        let result = self.replace(name, epoch);
        if let Err(e) = &result {
            self.failed = Some(e.to_string());
        }
        result
    }

    /// Tmp file, `fsync`, rename, directory `fsync`: see the module docs.
    fn replace(&self, name: &str, epoch: i64) -> Result<(), StorageError> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(tmp_name(name));
        let written = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| StorageError::io("create", &tmp, e))
            .and_then(|mut file| {
                file.write_all(format!("{epoch}\n").as_bytes())
                    .map_err(|e| StorageError::io("write", &tmp, e))?;
                file.sync_all()
                    .map_err(|e| StorageError::io("fsync", &tmp, e))
            });
        if let Err(e) = written {
            // Best effort: a leftover tmp file is harmless (ignored, deleted at open).
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        fs::rename(&tmp, &path).map_err(|e| StorageError::io("rename", &tmp, e))?;
        sync_dir(&self.dir)
    }
}

/// Why the epochs on disk and the log do not fit together; the server must refuse to
/// start. The messages name the files and say what each holds, for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EpochCheckError {
    /// `currentEpoch > acceptedEpoch`: a server adopts the history of an epoch only after
    /// accepting that epoch, so one server's run cannot write this.
    #[error(
        "{CURRENT_EPOCH_FILE} holds {current}, greater than {ACCEPTED_EPOCH_FILE}, which {}: \
         a server accepts an epoch before it adopts that epoch's history, so these files \
         were not written by one server (copied, restored or edited?); refusing to start",
        describe(*accepted)
    )]
    CurrentAheadOfAccepted {
        /// What `acceptedEpoch` holds (`None`: missing, taken as 0).
        accepted: Option<i64>,
        /// What `currentEpoch` holds.
        current: i64,
    },

    /// The last logged zxid is of an epoch later than `currentEpoch`: the log holds history
    /// the server never adopted, so what it would advertise does not match its disk.
    #[error(
        "the transaction log's last zxid is of epoch {log_epoch}, later than \
         {CURRENT_EPOCH_FILE}, which {}: the log holds history of an epoch this server never \
         adopted (a crash between logging synced history and raising {CURRENT_EPOCH_FILE}, \
         as in ZOOKEEPER-1653, or a log or {CURRENT_EPOCH_FILE} copied or restored from \
         elsewhere); refusing to start",
        describe(*current)
    )]
    LogAheadOfCurrent {
        /// What `currentEpoch` holds (`None`: missing, taken as 0).
        current: Option<i64>,
        /// The epoch of the last logged zxid (`zxid >> 32`).
        log_epoch: i64,
    },
}

fn describe(epoch: Option<i64>) -> String {
    match epoch {
        Some(epoch) => format!("holds {epoch}"),
        None => "is missing (taken as 0)".to_string(),
    }
}

/// The startup checks on the persisted epochs: refuses `currentEpoch > acceptedEpoch` and
/// `epoch(last logged zxid) > currentEpoch`, in that order.
///
/// `last_logged_epoch` is the epoch of the log's last zxid (`zxid >> 32`; 0 for an empty
/// log). A missing file counts as epoch 0, so a new data directory passes, as does one
/// where the server accepted an epoch but crashed before adopting a history.
///
/// Nothing is repaired here: a crash between logging synced history of a later epoch and
/// raising `currentEpoch` fails the second check unless
/// [`EpochFiles::repair_interrupted_update`] ran first (ZOOKEEPER-1653, see the
/// [module docs](self)).
pub fn check_startup(
    accepted: Option<i64>,
    current: Option<i64>,
    last_logged_epoch: i64,
) -> Result<(), EpochCheckError> {
    if let Some(current_epoch) = current {
        if current_epoch > accepted.unwrap_or(0) {
            return Err(EpochCheckError::CurrentAheadOfAccepted {
                accepted,
                current: current_epoch,
            });
        }
    }
    if last_logged_epoch > current.unwrap_or(0) {
        return Err(EpochCheckError::LogAheadOfCurrent {
            current,
            log_epoch: last_logged_epoch,
        });
    }
    Ok(())
}

/// Parses an epoch file's content: ASCII digits, optionally one trailing `\n` or `\r\n`,
/// within `0..=MAX_EPOCH`. The error is the reason, for [`StorageError::Corrupt`].
fn parse_epoch(bytes: &[u8]) -> Result<i64, String> {
    let text = bytes
        .strip_suffix(b"\n")
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .unwrap_or(bytes);
    let shown = || {
        let shown = &bytes[..bytes.len().min(MAX_FILE_BYTES as usize)];
        let more = if bytes.len() > shown.len() { "…" } else { "" };
        format!("\"{}\"{more}", shown.escape_ascii())
    };
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return Err(format!(
            "epoch file holds {}, not a decimal epoch number",
            shown()
        ));
    }
    let epoch = std::str::from_utf8(text)
        .ok()
        .and_then(|digits| digits.parse::<i64>().ok())
        .filter(|epoch| *epoch <= MAX_EPOCH);
    epoch.ok_or_else(|| {
        format!(
            "epoch file holds {}, beyond the greatest epoch a zxid can carry ({MAX_EPOCH})",
            shown()
        )
    })
}

fn tmp_name(name: &str) -> String {
    format!("{name}{TMP_SUFFIX}")
}


#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    fn corrupt_reason(err: StorageError, expected_file: &Path) -> String {
        let message = err.to_string();
        match err {
            StorageError::Corrupt {
                file,
                offset,
                reason,
            } => {
                assert_eq!(file, expected_file);
                assert_eq!(offset, 0);
                assert!(
                    message.contains(&expected_file.display().to_string()),
                    "{message}"
                );
                reason
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn round_trip_and_format() {
        let dir = tempfile::tempdir().unwrap();
        let mut epochs = EpochFiles::open(dir.path()).unwrap();
        epochs.set_accepted(12).unwrap();
        epochs.set_current(7).unwrap();
        assert_eq!(epochs.accepted().unwrap(), Some(12));
        assert_eq!(epochs.current().unwrap(), Some(7));
        // The text an operator (or ZooKeeper) reads.
        assert_eq!(
            fs::read(dir.path().join(ACCEPTED_EPOCH_FILE)).unwrap(),
            b"12\n"
        );
        assert_eq!(
            fs::read(dir.path().join(CURRENT_EPOCH_FILE)).unwrap(),
            b"7\n"
        );

        // A shorter value replaces a longer one completely.
        epochs.set_accepted(8).unwrap();
        epochs.set_current(MAX_EPOCH).unwrap();
        assert_eq!(
            fs::read(dir.path().join(ACCEPTED_EPOCH_FILE)).unwrap(),
            b"8\n"
        );
        drop(epochs);

        let mut epochs = EpochFiles::open(dir.path()).unwrap();
        assert_eq!(epochs.accepted().unwrap(), Some(8));
        assert_eq!(epochs.current().unwrap(), Some(MAX_EPOCH));
        epochs.set_current(0).unwrap();
        assert_eq!(epochs.current().unwrap(), Some(0));
        // Nothing but the two files is left behind.
        assert_eq!(names(dir.path()), [ACCEPTED_EPOCH_FILE, CURRENT_EPOCH_FILE]);
    }

    #[test]
    fn missing_files_are_none_and_the_directory_is_created() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data").join("version-2");
        let mut epochs = EpochFiles::open(&dir).unwrap();
        assert!(dir.is_dir());
        assert_eq!(epochs.dir(), dir);
        assert_eq!(epochs.accepted().unwrap(), None);
        assert_eq!(epochs.current().unwrap(), None);
        epochs.set_accepted(1).unwrap();
        assert_eq!(epochs.accepted().unwrap(), Some(1));
        assert_eq!(epochs.current().unwrap(), None);
    }

    #[test]
    fn zookeeper_files_are_understood() {
        let dir = tempfile::tempdir().unwrap();
        // ZooKeeper writes the number without a newline.
        fs::write(dir.path().join(ACCEPTED_EPOCH_FILE), b"5").unwrap();
        fs::write(dir.path().join(CURRENT_EPOCH_FILE), b"4\r\n").unwrap();
        let epochs = EpochFiles::open(dir.path()).unwrap();
        assert_eq!(epochs.accepted().unwrap(), Some(5));
        assert_eq!(epochs.current().unwrap(), Some(4));
    }

    #[test]
    fn leftover_tmp_files_are_ignored_and_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut epochs = EpochFiles::open(dir.path()).unwrap();
        epochs.set_accepted(4).unwrap();
        drop(epochs);
        // A crash before the rename: new values, complete or torn, that never took effect.
        fs::write(dir.path().join("acceptedEpoch.tmp"), b"9\n").unwrap();
        fs::write(dir.path().join("currentEpoch.tmp"), b"").unwrap();

        let epochs = EpochFiles::open(dir.path()).unwrap();
        assert_eq!(names(dir.path()), [ACCEPTED_EPOCH_FILE]);
        assert_eq!(epochs.accepted().unwrap(), Some(4));
        assert_eq!(epochs.current().unwrap(), None);
    }

    #[test]
    fn an_interrupted_write_leaves_the_old_value() {
        let dir = tempfile::tempdir().unwrap();
        let mut epochs = EpochFiles::open(dir.path()).unwrap();
        epochs.set_current(3).unwrap();
        // What a crash partway through `set_current(31)` can leave: the tmp file written
        // (partly, or fully but not renamed), the real file untouched.
        for partial in [&b""[..], b"3", b"31\n"] {
            fs::write(dir.path().join("currentEpoch.tmp"), partial).unwrap();
            assert_eq!(epochs.current().unwrap(), Some(3), "{partial:?}");
            let reopened = EpochFiles::open(dir.path()).unwrap();
            assert_eq!(reopened.current().unwrap(), Some(3), "{partial:?}");
            assert_eq!(names(dir.path()), [CURRENT_EPOCH_FILE]);
        }
        // And the next write goes through as usual.
        epochs.set_current(31).unwrap();
        assert_eq!(epochs.current().unwrap(), Some(31));
    }

    #[test]
    fn garbage_content_is_corruption_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let epochs = EpochFiles::open(dir.path()).unwrap();
        let path = dir.path().join(CURRENT_EPOCH_FILE);
        let cases: &[(&[u8], &str)] = &[
            (b"", "not a decimal epoch"),
            (b"\n", "not a decimal epoch"),
            (b"abc\n", "not a decimal epoch"),
            (b"-1\n", "not a decimal epoch"),
            (b"+1\n", "not a decimal epoch"),
            (b" 5\n", "not a decimal epoch"),
            (b"5 \n", "not a decimal epoch"),
            (b"5\n\n", "not a decimal epoch"),
            (b"5\n6\n", "not a decimal epoch"),
            (b"\xff\xfe", "not a decimal epoch"),
            (b"2147483648\n", "beyond the greatest epoch"),
            (b"99999999999999999999999\n", "beyond the greatest epoch"),
        ];
        for (content, expected) in cases {
            fs::write(&path, content).unwrap();
            let err = epochs.current().unwrap_err();
            assert!(err.is_corruption());
            let reason = corrupt_reason(err, &path);
            assert!(reason.contains(expected), "{content:?}: {reason}");
        }
        // The reason quotes the content, cut short when it is long.
        fs::write(&path, vec![b'x'; 1000]).unwrap();
        let reason = corrupt_reason(epochs.current().unwrap_err(), &path);
        assert!(reason.contains("xxxx"), "{reason}");
        assert!(reason.len() < 200, "{reason}");
        // The other file is unaffected.
        assert_eq!(epochs.accepted().unwrap(), None);
    }

    #[test]
    fn a_failed_write_keeps_the_old_value_and_refuses_further_writes() {
        let dir = tempfile::tempdir().unwrap();
        let mut epochs = EpochFiles::open(dir.path()).unwrap();
        epochs.set_current(2).unwrap();
        // A directory where the tmp file goes makes creating it fail (even as root).
        fs::create_dir(dir.path().join("currentEpoch.tmp")).unwrap();
        let err = epochs.set_current(3).unwrap_err();
        assert!(
            matches!(err, StorageError::Io { op: "create", .. }),
            "{err:?}"
        );
        assert_eq!(epochs.current().unwrap(), Some(2));
        let err = epochs.set_accepted(3).unwrap_err();
        assert!(matches!(err, StorageError::Failed { .. }), "{err:?}");
        assert_eq!(epochs.accepted().unwrap(), None);
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn a_negative_epoch_is_a_bug() {
        let dir = tempfile::tempdir().unwrap();
        let _ = EpochFiles::open(dir.path()).unwrap().set_accepted(-1);
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn an_epoch_no_zxid_can_carry_is_a_bug() {
        let dir = tempfile::tempdir().unwrap();
        let _ = EpochFiles::open(dir.path())
            .unwrap()
            .set_current(MAX_EPOCH + 1);
    }

    #[test]
    fn an_interrupted_epoch_update_is_finished_at_startup() {
        let dir = tempfile::tempdir().unwrap();
        let mut e = EpochFiles::open(dir.path()).unwrap();
        e.set_accepted(3).unwrap();
        e.set_current(1).unwrap();
        // A follower starts syncing with the leader of epoch 3 and logs history of epoch 2;
        // then the process dies before currentEpoch is raised.
        e.begin_epoch_update().unwrap();
        assert!(e.epoch_update_interrupted());
        drop(e);
        let mut e = EpochFiles::open(dir.path()).unwrap();
        assert!(check_startup(e.accepted().unwrap(), e.current().unwrap(), 2).is_err(), "the 1653 state");
        assert_eq!(e.repair_interrupted_update(2).unwrap(), Some(2));
        assert_eq!(e.current().unwrap(), Some(2));
        assert!(!e.epoch_update_interrupted());
        check_startup(e.accepted().unwrap(), e.current().unwrap(), 2).unwrap();
        // Without a marker nothing is touched.
        assert_eq!(e.repair_interrupted_update(3).unwrap(), None);
        assert_eq!(e.current().unwrap(), Some(2));
    }

    #[test]
    fn a_finished_epoch_update_leaves_no_marker() {
        let dir = tempfile::tempdir().unwrap();
        let mut e = EpochFiles::open(dir.path()).unwrap();
        e.set_accepted(4).unwrap();
        e.begin_epoch_update().unwrap();
        e.set_current(4).unwrap();
        assert!(!e.epoch_update_interrupted());
        assert!(!dir.path().join(UPDATING_EPOCH_FILE).exists());
        // A marker with currentEpoch already high enough is just removed.
        e.begin_epoch_update().unwrap();
        assert_eq!(e.repair_interrupted_update(4).unwrap(), None);
        assert!(!e.epoch_update_interrupted());
        assert_eq!(e.current().unwrap(), Some(4));
    }

    #[test]
    fn startup_check_accepts_consistent_epochs() {
        // A new data directory.
        assert_eq!(check_startup(None, None, 0), Ok(()));
        // Accepted a new epoch, crashed before adopting its history.
        assert_eq!(check_startup(Some(1), None, 0), Ok(()));
        assert_eq!(check_startup(Some(6), Some(5), 5), Ok(()));
        // Adopted the epoch's history; nothing of the epoch logged yet.
        assert_eq!(check_startup(Some(6), Some(6), 5), Ok(()));
        assert_eq!(check_startup(Some(6), Some(6), 6), Ok(()));
        assert_eq!(check_startup(Some(0), Some(0), 0), Ok(()));
    }

    #[test]
    fn startup_check_refuses_current_ahead_of_accepted() {
        let err = check_startup(Some(4), Some(5), 5).unwrap_err();
        assert_eq!(
            err,
            EpochCheckError::CurrentAheadOfAccepted {
                accepted: Some(4),
                current: 5
            }
        );
        let message = err.to_string();
        assert!(
            message.contains("currentEpoch holds 5, greater than acceptedEpoch, which holds 4"),
            "{message}"
        );

        let message = check_startup(None, Some(1), 0).unwrap_err().to_string();
        assert!(
            message.contains("acceptedEpoch, which is missing (taken as 0)"),
            "{message}"
        );
        // Both wrong: the first check is reported.
        assert!(matches!(
            check_startup(Some(1), Some(2), 9),
            Err(EpochCheckError::CurrentAheadOfAccepted { .. })
        ));
    }

    #[test]
    fn startup_check_refuses_a_log_ahead_of_current() {
        let err = check_startup(Some(7), Some(5), 6).unwrap_err();
        assert_eq!(
            err,
            EpochCheckError::LogAheadOfCurrent {
                current: Some(5),
                log_epoch: 6
            }
        );
        let message = err.to_string();
        assert!(message.contains("of epoch 6"), "{message}");
        assert!(message.contains("currentEpoch, which holds 5"), "{message}");

        let message = check_startup(Some(1), None, 1).unwrap_err().to_string();
        assert!(
            message.contains("currentEpoch, which is missing (taken as 0)"),
            "{message}"
        );
    }

    #[test]
    fn startup_check_on_files_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut epochs = EpochFiles::open(dir.path()).unwrap();
        epochs.set_accepted(3).unwrap();
        epochs.set_current(3).unwrap();
        let last_zxid: i64 = (3 << 32) | 17;
        let (accepted, current) = (epochs.accepted().unwrap(), epochs.current().unwrap());
        assert_eq!(check_startup(accepted, current, last_zxid >> 32), Ok(()));
        // A log copied in from a server that went on to epoch 4.
        let copied: i64 = (4 << 32) | 1;
        assert!(check_startup(accepted, current, copied >> 32).is_err());
    }
}
