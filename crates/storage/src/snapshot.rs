//! Snapshot files: a whole tree as of one zxid, written so that a crash leaves either the
//! complete new file or none, and verified before it is trusted.
//!
//! ```text
//! file    = magic "CORRSNAP" (8) | version u32 | zxid i64 | body | body_len u64 | crc32c u32
//! ```
//! The body is whatever the tree layer wrote (opaque here); the trailer's CRC-32C covers
//! the header and the body. Files are named `snapshot.<zxid as 16 hex digits>`, written as
//! `<name>.<pid>-<n>.tmp`, fsynced, renamed, and the directory fsynced.

use crate::error::StorageError;
use crate::file::fsio::sync_dir;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const MAGIC: [u8; 8] = *b"CORRSNAP";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 8;
const TRAILER_LEN: usize = 8 + 4;

pub fn file_name(zxid: i64) -> String {
    format!("snapshot.{zxid:016x}")
}

fn parse_name(name: &str) -> Option<i64> {
    let hex = name.strip_prefix("snapshot.")?;
    (hex.len() == 16).then(|| i64::from_str_radix(hex, 16).ok()).flatten()
}

/// Snapshot files in `dir`, oldest first.
pub fn list(dir: &Path) -> Result<Vec<(i64, PathBuf)>, StorageError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(StorageError::io("read directory", dir, e)),
    };
    let mut out: Vec<(i64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| Some((parse_name(e.file_name().to_str()?)?, e.path())))
        .collect();
    out.sort();
    Ok(out)
}

/// Feeds bytes to the file and to the checksum.
struct Summing {
    file: io::BufWriter<File>,
    crc: u32,
    len: u64,
    /// Up to where the file's pages have been written back to the disk.
    flushed: u64,
}

/// A snapshot's pages are written back this many bytes at a time while it is written.
/// Left dirty, a whole snapshot (hundreds of MiB) would be flushed by the next fsync of
/// anything on the filesystem (ext4's ordered mode commits data with the journal): the
/// transaction log's fsync would wait for it, and every write with it.
const WRITEBACK_BYTES: u64 = 4 << 20;

impl Write for Summing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        self.len += n as u64;
        if self.len - self.flushed >= WRITEBACK_BYTES {
            self.file.flush()?;
            write_back(self.file.get_ref(), self.flushed, self.len - self.flushed)?;
            self.flushed = self.len;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Writes `len` bytes at `offset` of `file` back to the disk and waits for them (not a
/// durability point: no metadata, no cache flush; the final fsync is that).
fn write_back(file: &File, offset: u64, len: u64) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER;
        // SAFETY: sync_file_range on a file descriptor we own; no pointers.
        if unsafe { libc::sync_file_range(file.as_raw_fd(), offset as i64, len as i64, flags) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
    Ok(())
}

/// Writes the snapshot of `zxid` into `dir`; `body` writes the tree. Returns the file. If
/// anything fails (`body` included), the unfinished file is removed.
pub fn write(
    dir: &Path,
    zxid: i64,
    body: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<PathBuf, StorageError> {
    // Each writer has a file of its own: a snapshot received from a leader may be written
    // while the snapshot thread writes one of the same zxid.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(file_name(zxid));
    let tmp = dir.join(format!("{}.{}-{n}.tmp", file_name(zxid), std::process::id()));
    let written = write_tmp(&tmp, zxid, body)
        .and_then(|()| fs::rename(&tmp, &path).map_err(|e| StorageError::io("rename", &path, e)));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    sync_dir(dir)?;
    Ok(path)
}

/// Writes and fsyncs the whole file at `tmp`.
fn write_tmp(tmp: &Path, zxid: i64, body: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> Result<(), StorageError> {
    let io_err = |op: &'static str| move |e| StorageError::io(op, tmp, e);
    let file = OpenOptions::new().write(true).create(true).truncate(true).open(tmp).map_err(io_err("create"))?;
    let mut w = Summing { file: io::BufWriter::with_capacity(1 << 20, file), crc: 0, len: 0, flushed: 0 };
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(&MAGIC);
    header.extend_from_slice(&VERSION.to_be_bytes());
    header.extend_from_slice(&zxid.to_be_bytes());
    w.write_all(&header).map_err(io_err("write"))?;
    body(&mut w).map_err(io_err("write"))?;
    let body_len = w.len - HEADER_LEN as u64;
    w.write_all(&body_len.to_be_bytes()).map_err(io_err("write"))?;
    let crc = w.crc;
    let mut file = w.file.into_inner().map_err(|e| StorageError::io("write", tmp, e.into_error()))?;
    file.write_all(&crc.to_be_bytes()).map_err(io_err("write"))?;
    file.sync_all().map_err(io_err("fsync"))
}

/// Reads and verifies a snapshot file: its zxid and body.
pub fn read(path: &Path) -> Result<(i64, Body), StorageError> {
    let file = File::open(path).map_err(|e| StorageError::io("open", path, e))?;
    // Mapped, not read: the page cache's pages are used as they are, where reading would
    // copy them into as much fresh memory, which the kernel must zero first (a tenth of a
    // restart with a million znodes). A snapshot file is never written again once it
    // has its name, so the mapping does not change under the reader.
    // SAFETY: see above; the mapping is read only and lives as long as `Body`.
    let bytes = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| StorageError::io("map", path, e))?;
    let corrupt = |offset: usize, reason: &str| StorageError::Corrupt {
        file: path.to_path_buf(),
        offset: offset as u64,
        reason: format!("snapshot {reason}"),
    };
    if bytes.len() < HEADER_LEN + TRAILER_LEN || bytes[..8] != MAGIC {
        return Err(corrupt(0, "is too short or not a Corral snapshot"));
    }
    let version = u32::from_be_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(corrupt(8, &format!("has unknown version {version}")));
    }
    let zxid = i64::from_be_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let end = bytes.len() - 4;
    let crc = u32::from_be_bytes(bytes[end..].try_into().expect("4 bytes"));
    let body_len = u64::from_be_bytes(bytes[end - 8..end].try_into().expect("8 bytes"));
    if body_len != (end - 8 - HEADER_LEN) as u64 {
        return Err(corrupt(end - 8, "length does not match the file (truncated?)"));
    }
    if crc32c::crc32c(&bytes[..end]) != crc {
        return Err(corrupt(0, "checksum does not verify"));
    }
    if Some(zxid) != path.file_name().and_then(|n| n.to_str()).and_then(parse_name) {
        return Err(corrupt(12, "zxid does not match its file name"));
    }
    Ok((zxid, Body { bytes, end: end - 8 }))
}

/// A verified snapshot's body: the file as mapped, without copying the body out of it.
#[derive(Debug)]
pub struct Body {
    bytes: memmap2::Mmap,
    end: usize,
}

impl std::ops::Deref for Body {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[HEADER_LEN..self.end]
    }
}

/// Deletes unfinished snapshot files (`.tmp`) a crash left behind. Only for startup:
/// while the server runs, a `.tmp` file is one being written.
pub fn remove_leftovers(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("snapshot.") && name.ends_with(".tmp") {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

/// Deletes all but the newest `keep` snapshots; returns the zxid of the oldest snapshot
/// kept, which is how far the log may be purged.
pub fn retain(dir: &Path, keep: usize) -> Result<Option<i64>, StorageError> {
    let all = list(dir)?;
    let cut = all.len().saturating_sub(keep.max(1));
    for (_, p) in &all[..cut] {
        fs::remove_file(p).map_err(|e| StorageError::io("remove", p, e))?;
    }
    if cut > 0 {
        sync_dir(dir)?;
    }
    Ok(all.get(cut).map(|(z, _)| *z))
}

/// Deletes, durably, every snapshot newer than `zxid`: after a leader's snapshot of `zxid`
/// replaced a diverged history, a newer snapshot of that history must never be loaded
/// again, not even after a crash (hence the directory `fsync`).
pub fn remove_newer_than(dir: &Path, zxid: i64) -> Result<(), StorageError> {
    let newer: Vec<PathBuf> = list(dir)?.into_iter().filter(|(z, _)| *z > zxid).map(|(_, p)| p).collect();
    for p in &newer {
        fs::remove_file(p).map_err(|e| StorageError::io("remove", p, e))?;
    }
    if !newer.is_empty() {
        sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_snapshots_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        for z in [3, 5, 8] {
            write(dir.path(), z, body(b"t")).unwrap();
        }
        remove_newer_than(dir.path(), 5).unwrap();
        assert_eq!(list(dir.path()).unwrap().iter().map(|(z, _)| *z).collect::<Vec<_>>(), vec![3, 5]);
        remove_newer_than(dir.path(), 9).unwrap();
        assert_eq!(list(dir.path()).unwrap().len(), 2);
    }

    fn body(data: &'static [u8]) -> impl FnOnce(&mut dyn Write) -> io::Result<()> {
        move |w| w.write_all(data)
    }

    #[test]
    fn write_read_list_retain() {
        let dir = tempfile::tempdir().unwrap();
        for z in [5, 9, 0x1_0000_0002, 12] {
            write(dir.path(), z, body(b"tree bytes")).unwrap();
        }
        let (z, b) = read(&dir.path().join(file_name(9))).unwrap();
        assert_eq!((z, &b[..]), (9, &b"tree bytes"[..]));
        assert_eq!(list(dir.path()).unwrap().iter().map(|(z, _)| *z).collect::<Vec<_>>(), vec![5, 9, 12, 0x1_0000_0002]);
        let leftover = dir.path().join("snapshot.0000000000000063.77-0.tmp");
        std::fs::write(&leftover, b"partial").unwrap();
        assert_eq!(retain(dir.path(), 3).unwrap(), Some(9));
        assert_eq!(list(dir.path()).unwrap().len(), 3);
        assert!(leftover.exists(), "retain leaves files being written alone");
        remove_leftovers(dir.path());
        assert!(!leftover.exists());
        assert_eq!(list(dir.path()).unwrap().len(), 3);
    }

    #[test]
    fn a_failed_body_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = write(dir.path(), 7, |w| {
            w.write_all(b"half a tree")?;
            Err(io::Error::other("given up"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("given up"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no file, not even the .tmp");
    }

    #[test]
    fn a_failed_rename_leaves_no_tmp() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the snapshot's file should go: the rename fails.
        std::fs::create_dir(dir.path().join(file_name(7))).unwrap();
        let err = write(dir.path(), 7, body(b"a tree")).unwrap_err();
        assert!(err.to_string().contains("rename"), "{err}");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, [std::ffi::OsString::from(file_name(7))], "only the directory is left");
    }

    #[test]
    fn damage_is_detected_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), 7, body(b"some tree")).unwrap();
        let good = std::fs::read(&p).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            std::fs::write(&p, &bad).unwrap();
            let err = read(&p).unwrap_err();
            assert!(err.is_corruption() && err.to_string().contains("snapshot.0000000000000007"), "{err}");
        }
        for cut in 0..good.len() {
            std::fs::write(&p, &good[..cut]).unwrap();
            assert!(read(&p).is_err());
        }
        // Renamed to another zxid: refused.
        std::fs::write(&p, &good).unwrap();
        let other = dir.path().join(file_name(8));
        std::fs::rename(&p, &other).unwrap();
        assert!(read(&other).is_err());
    }
}
