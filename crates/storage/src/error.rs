//! Storage errors, split by what the server must do about them.

use std::io;
use std::path::PathBuf;

/// Why a log operation failed.
///
/// The variants differ in what they ask of the server: [`Io`](StorageError::Io) and
/// [`Failed`](StorageError::Failed) mean the disk can no longer be trusted to take writes
/// (full, failing, or an `fsync` that returned an error), so the server must stop
/// acknowledging writes and say why; [`Corrupt`](StorageError::Corrupt) and
/// [`MissingSegment`](StorageError::MissingSegment) mean data that was once durable is not
/// what was written, so the server must refuse to start rather than serve a history with a
/// hole in it. Caller bugs (a zxid out of order) are panics, not errors.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A system call on `path` failed.
    #[error("{op} failed on {}: {source}", path.display())]
    Io {
        /// What was being done, for the operator: "fdatasync", "write", "preallocate" …
        op: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The error the kernel returned (`ENOSPC`, `EIO` …).
        #[source]
        source: io::Error,
    },

    /// Bytes on disk do not verify where they must: a bad checksum or malformed batch that
    /// cannot be a torn tail, or a segment header that does not verify.
    #[error("corrupt transaction log {} at offset {offset}: {reason}", file.display())]
    Corrupt {
        /// The segment file.
        file: PathBuf,
        /// Byte offset of the batch (or header) that does not verify.
        offset: u64,
        /// What is wrong, in words.
        reason: String,
    },

    /// A segment's header names a predecessor that is not the segment before it: at least
    /// one segment between them was deleted or lost.
    #[error(
        "transaction log segment missing before {}: it follows zxid {expected_prev:#x}, \
         but the segment before it ({}) ends at zxid {found_prev:#x}",
        file.display(),
        previous.display()
    )]
    MissingSegment {
        /// The segment right after the gap.
        file: PathBuf,
        /// The segment right before the gap.
        previous: PathBuf,
        /// The last zxid of the missing predecessor, from `file`'s header.
        expected_prev: i64,
        /// The last zxid actually found in `previous`.
        found_prev: i64,
    },

    /// An earlier write, sync or file operation failed, so the log refuses further writes:
    /// after a failed `fsync` the kernel may have dropped the dirty pages, and a retry that
    /// "succeeds" would acknowledge data that is not on disk. Reopen the log to recover.
    #[error("transaction log refuses writes after an earlier failure: {reason}")]
    Failed {
        /// The first failure, as it was reported.
        reason: String,
    },
}

impl StorageError {
    /// Whether this error says the data on disk is damaged (as opposed to the disk or the
    /// log being unable to take writes now).
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            StorageError::Corrupt { .. } | StorageError::MissingSegment { .. }
        )
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StorageError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(
        file: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        StorageError::Corrupt {
            file: file.into(),
            offset,
            reason: reason.into(),
        }
    }
}
