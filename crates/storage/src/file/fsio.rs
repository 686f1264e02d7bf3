//! The system calls behind the log's durability: preallocation, cutting, `fsync` of
//! directories.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::StorageError;

/// Shrinks `file` to `offset`, preallocates it back to `len`, and `fsync`s it.
pub(super) fn cut_file(
    file: &File,
    path: &Path,
    offset: u64,
    len: u64,
) -> Result<(), StorageError> {
    file.set_len(offset)
        .map_err(|e| StorageError::io("truncate", path, e))?;
    preallocate(file, path, offset, len)?;
    file.sync_all()
        .map_err(|e| StorageError::io("fsync", path, e))
}

/// Makes `len` bytes from `offset` allocated (reading as zeros where nothing was written),
/// so later writes there do not change the file size.
pub(super) fn preallocate(
    file: &File,
    path: &Path,
    offset: u64,
    end: u64,
) -> Result<(), StorageError> {
    if end <= offset {
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let start = libc::off_t::try_from(offset).expect("offset fits off_t");
        let len = libc::off_t::try_from(end - offset).expect("length fits off_t");
        // SAFETY: the descriptor is open for as long as `file` is borrowed, and
        // posix_fallocate touches no memory of ours.
        let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), start, len) };
        match rc {
            0 => return Ok(()),
            // The filesystem cannot preallocate: growing the file still gives zeros.
            libc::EOPNOTSUPP | libc::EINVAL => {}
            errno => {
                return Err(StorageError::io(
                    "preallocate",
                    path,
                    io::Error::from_raw_os_error(errno),
                ))
            }
        }
    }
    if file_len(file, path)? < end {
        file.set_len(end)
            .map_err(|e| StorageError::io("preallocate", path, e))?;
    }
    Ok(())
}

pub(super) fn file_len(file: &File, path: &Path) -> Result<u64, StorageError> {
    file.metadata()
        .map(|meta| meta.len())
        .map_err(|e| StorageError::io("stat", path, e))
}

/// Makes the directory's entries (created, renamed, removed files) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io("fsync directory", dir, e))
}

/// Creates (or empties) the `.tmp` file a segment is built in before its rename.
pub(super) fn create_tmp(tmp: &Path) -> Result<File, StorageError> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)
        .map_err(|e| StorageError::io("create", tmp, e))
}

pub(super) fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .expect("segment path has a name")
        .to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

pub(super) fn round_up(value: u64, step: u64) -> u64 {
    value.div_ceil(step) * step
}
