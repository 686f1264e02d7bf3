//! A node's name and data, and the numbers most nodes leave at a default, in one heap
//! block behind a pointer of 8 bytes.
//!
//! The slot keeps only the pointer; what varies in size, and what most nodes do not have,
//! is in the block, described by a short header at its front:
//!
//! ```text
//! varint  name length << 2 | MORE << 1 | NULL_DATA
//! [u8]    only if MORE: which of the next three there are (HAS_EXT, HAS_ACL, STAMP)
//! [u32]   the extension's number, only if HAS_EXT (little-endian)
//! [varint] the ACL list's number, only if HAS_ACL (it is not 0)
//! [2×i64] czxid and ctime, only if STAMP: values the slot's 12 bytes cannot hold
//! varint  data length
//! bytes   the name, then the data
//! ```
//!
//! A node with a name under 32 bytes, less than 128 bytes of data, no extension and ACL
//! list 0 (a leaf written once, under the ACL most nodes share) pays 2 bytes of header,
//! which the allocator's rounding to a size class often absorbs; in the slot, a
//! `Box<[u8]>` plus the name length, the extension number and the ACL number took 28 bytes
//! where this takes 8.
//!
//! This is the only `unsafe` code in the crate. The invariants it rests on:
//!
//! - the pointer is either [`VACANT`] (a static, for a slot on the free list; never
//!   written, never freed) or a block from the global allocator whose layout is
//!   [`Blob::layout`] of its header's length plus the name's and the data's, all of it
//!   initialized;
//! - the block is byte-aligned, so the numbers in it are read and written unaligned
//!   (mimalloc serves an alignment of 4 from another path that costs 16 bytes more per
//!   block);
//! - a `Blob` owns its block alone (it is neither `Copy` nor `Clone`), and the block is
//!   never changed after it is made, so sharing `&Blob` across threads is sound.

use std::alloc::{self, Layout};
use std::fmt;
use std::ptr::NonNull;

/// "No extension".
pub(crate) const NO_EXT: u32 = u32::MAX;
const NULL_DATA: u32 = 1;
const MORE: u32 = 2;
const FLAG_BITS: u32 = 2;
// In the byte after the first varint.
const HAS_EXT: u8 = 1;
const HAS_ACL: u8 = 2;
const STAMP: u8 = 4;
/// The longest header: three 5-byte varints, the flags, the extension's number and the
/// stamp.
const MAX_HEADER: usize = 3 * 5 + 1 + 4 + 16;
/// What a vacant blob points at. Its bytes are never read: a vacant blob is known by its
/// address.
static VACANT: u8 = 0;
/// The longest name a blob holds: its length, shifted left past the flags, is a `u32`.
pub(crate) const MAX_NAME: usize = crate::path::MAX_NAME_BYTES;
const _: () = assert!(MAX_NAME << FLAG_BITS | 3 == u32::MAX as usize);

/// What a block holds besides the name and the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    /// The node's extension, or [`NO_EXT`].
    pub ext: u32,
    /// The number of the node's ACL list.
    pub acl: u32,
    /// The node's czxid and ctime when its slot cannot hold them (see `store::Stamp`).
    pub stamp: Option<(i64, i64)>,
}

impl Meta {
    /// No extension, ACL list 0, the stamp in the slot.
    pub const PLAIN: Meta = Meta { ext: NO_EXT, acl: 0, stamp: None };
}

/// A block of bytes behind a thin pointer (see the module docs).
pub(crate) struct Blob(NonNull<u8>);

// SAFETY: a Blob owns its block like a Box<[u8]> does and never changes it.
unsafe impl Send for Blob {}
unsafe impl Sync for Blob {}

/// A block's header, read.
struct Header {
    name_len: usize,
    data_len: usize,
    null_data: bool,
    meta: Meta,
    /// Where the name starts.
    len: usize,
}

fn put_varint(out: &mut [u8], at: &mut usize, mut v: u32) {
    while v >= 0x80 {
        out[*at] = v as u8 | 0x80;
        *at += 1;
        v >>= 7;
    }
    out[*at] = v as u8;
    *at += 1;
}

fn put(out: &mut [u8], at: &mut usize, bytes: &[u8]) {
    out[*at..*at + bytes.len()].copy_from_slice(bytes);
    *at += bytes.len();
}

/// Reads a varint `put_varint` wrote at `p + at`, and moves `at` past it.
///
/// # Safety
/// The bytes from `p + at` to the varint's last must be readable and initialized.
unsafe fn read_varint(p: *const u8, at: &mut usize) -> u32 {
    let mut v = 0u32;
    let mut shift = 0;
    loop {
        // SAFETY: the caller's promise.
        let b = unsafe { *p.add(*at) };
        *at += 1;
        v |= u32::from(b & 0x7f) << shift;
        if b < 0x80 {
            return v;
        }
        shift += 7;
    }
}

/// Reads `N` bytes at `p + at`, and moves `at` past them.
///
/// # Safety
/// The `N` bytes from `p + at` must be readable and initialized.
unsafe fn read_bytes<const N: usize>(p: *const u8, at: &mut usize) -> [u8; N] {
    // SAFETY: the caller's promise; `[u8; N]` has alignment 1.
    let b = unsafe { p.add(*at).cast::<[u8; N]>().read() };
    *at += N;
    b
}

impl Blob {
    /// A block holding `name`, `data` (or null data) and `meta`.
    pub fn new(name: &[u8], data: Option<&[u8]>, meta: Meta) -> Blob {
        assert!(name.len() <= MAX_NAME, "znode name too long");
        let bytes = data.unwrap_or_default();
        let data_len = u32::try_from(bytes.len()).expect("znode data fits in 4 GiB");
        let flags = if meta.ext != NO_EXT { HAS_EXT } else { 0 }
            | if meta.acl != 0 { HAS_ACL } else { 0 }
            | if meta.stamp.is_some() { STAMP } else { 0 };
        let head = (name.len() as u32) << FLAG_BITS
            | if data.is_none() { NULL_DATA } else { 0 }
            | if flags != 0 { MORE } else { 0 };
        let mut header = [0u8; MAX_HEADER];
        let mut at = 0;
        put_varint(&mut header, &mut at, head);
        if flags != 0 {
            put(&mut header, &mut at, &[flags]);
        }
        if meta.ext != NO_EXT {
            put(&mut header, &mut at, &meta.ext.to_le_bytes());
        }
        if meta.acl != 0 {
            put_varint(&mut header, &mut at, meta.acl);
        }
        if let Some((czxid, ctime)) = meta.stamp {
            put(&mut header, &mut at, &czxid.to_le_bytes());
            put(&mut header, &mut at, &ctime.to_le_bytes());
        }
        put_varint(&mut header, &mut at, data_len);
        let header_len = at;
        let size = header_len + name.len() + bytes.len();
        let layout = Self::layout(size);
        // SAFETY: the layout is not zero-sized (a header is at least two bytes); the
        // copies stay within the `size` bytes allocated and, in order, leave exactly the
        // header, the name and the data in them; the sources cannot overlap a fresh block.
        unsafe {
            let Some(block) = NonNull::new(alloc::alloc(layout)) else {
                alloc::handle_alloc_error(layout)
            };
            let p = block.as_ptr();
            if size >= 16 && header_len <= 16 {
                // A copy of known length is a few moves, not a call; the bytes past the
                // header are overwritten next.
                p.copy_from_nonoverlapping(header.as_ptr(), 16);
            } else {
                p.copy_from_nonoverlapping(header.as_ptr(), header_len);
            }
            p.add(header_len).copy_from_nonoverlapping(name.as_ptr(), name.len());
            p.add(header_len + name.len()).copy_from_nonoverlapping(bytes.as_ptr(), bytes.len());
            Blob(block)
        }
    }

    /// The blob of a slot on the free list: no block at all.
    pub fn vacant() -> Blob {
        Blob(NonNull::from(&VACANT))
    }

    pub fn is_vacant(&self) -> bool {
        std::ptr::eq(self.0.as_ptr(), &VACANT)
    }

    /// Reads the header; a vacant blob reads as no name, null data and [`Meta::PLAIN`].
    fn header(&self) -> Header {
        if self.is_vacant() {
            return Header { name_len: 0, data_len: 0, null_data: true, meta: Meta::PLAIN, len: 0 };
        }
        let p = self.0.as_ptr();
        let mut at = 0;
        // SAFETY: by the invariants the block starts with a whole header, written by
        // `new`, so every byte read here is inside it and initialized.
        let (head, meta, data_len) = unsafe {
            let head = read_varint(p, &mut at);
            let flags = if head & MORE != 0 { read_bytes::<1>(p, &mut at)[0] } else { 0 };
            let mut meta = Meta::PLAIN;
            if flags & HAS_EXT != 0 {
                meta.ext = u32::from_le_bytes(read_bytes(p, &mut at));
            }
            if flags & HAS_ACL != 0 {
                meta.acl = read_varint(p, &mut at);
            }
            if flags & STAMP != 0 {
                let czxid = i64::from_le_bytes(read_bytes(p, &mut at));
                meta.stamp = Some((czxid, i64::from_le_bytes(read_bytes(p, &mut at))));
            }
            (head, meta, read_varint(p, &mut at) as usize)
        };
        Header { name_len: (head >> FLAG_BITS) as usize, data_len, null_data: head & NULL_DATA != 0, meta, len: at }
    }

    fn body(&self, h: &Header) -> &[u8] {
        if self.is_vacant() {
            return &[];
        }
        // SAFETY: by the invariants the name and data follow the header, initialized, and
        // live as long as `self`.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().add(h.len), h.name_len + h.data_len) }
    }

    pub fn name(&self) -> &[u8] {
        let h = self.header();
        &self.body(&h)[..h.name_len]
    }

    /// The data, `None` if it is null.
    pub fn data(&self) -> Option<&[u8]> {
        let h = self.header();
        (!h.null_data).then(|| &self.body(&h)[h.name_len..])
    }

    pub fn meta(&self) -> Meta {
        self.header().meta
    }

    /// The same name and data with `meta` in a new block.
    pub fn with_meta(&self, meta: Meta) -> Blob {
        Blob::new(self.name(), self.data(), meta)
    }

    /// The same name with `data` and `meta` in a new block.
    pub fn with_data(&self, data: Option<&[u8]>, meta: Meta) -> Blob {
        Blob::new(self.name(), data, meta)
    }

    fn layout(len: usize) -> Layout {
        Layout::from_size_align(len, 1).expect("a small layout")
    }
}

impl Drop for Blob {
    fn drop(&mut self) {
        if self.is_vacant() {
            return;
        }
        let h = self.header();
        // SAFETY: a blob that is not vacant came from `alloc` with the layout of its
        // header's and body's lengths, which the header still says.
        unsafe { alloc::dealloc(self.0.as_ptr(), Self::layout(h.len + h.name_len + h.data_len)) }
    }
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_vacant() {
            return write!(f, "Blob(vacant)");
        }
        let h = self.header();
        write!(f, "Blob(name {} bytes, data {} bytes, {:?})", h.name_len, h.data_len, h.meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint_len(v: u32) -> usize {
        (32 - (v | 1).leading_zeros() as usize).div_ceil(7)
    }

    #[test]
    fn a_blob_is_one_pointer_and_gives_back_what_it_was_made_of() {
        assert_eq!(std::mem::size_of::<Blob>(), 8);
        assert_eq!(std::mem::size_of::<Option<Blob>>(), 8);
        let long = vec![7u8; 70_000];
        let long_name = vec![b'n'; 200];
        let names: [&[u8]; 4] = [b"", b"n", b"node", &long_name];
        let datas: [Option<&[u8]>; 5] = [None, Some(b""), Some(b"d"), Some(&[9u8; 130]), Some(&long)];
        let stamps = [None, Some((0, 0)), Some((-1, i64::MIN)), Some((i64::MAX, 1 << 50))];
        for name in names {
            for data in datas {
                for ext in [NO_EXT, 0, 5, 300, 1 << 31, NO_EXT - 1] {
                    for acl in [0, 1, 127, 128, u32::MAX] {
                        for stamp in stamps {
                            let meta = Meta { ext, acl, stamp };
                            let b = Blob::new(name, data, meta);
                            assert!(!b.is_vacant());
                            assert_eq!((b.name(), b.data(), b.meta()), (name, data, meta));
                            let other = Meta { ext: 9, acl: 3, stamp: None };
                            let c = b.with_meta(other);
                            assert_eq!((c.name(), c.data(), c.meta()), (name, data, other));
                            let d = c.with_data(Some(b"new"), meta);
                            assert_eq!((d.name(), d.data(), d.meta()), (name, Some(&b"new"[..]), meta));
                        }
                    }
                }
            }
        }
        let v = Blob::vacant();
        assert!(v.is_vacant());
        assert_eq!((v.name(), v.data(), v.meta()), (&b""[..], None, Meta::PLAIN));
    }

    #[test]
    fn headers_are_short() {
        for (v, len) in [(0, 1), (127, 1), (128, 2), (16_383, 2), (16_384, 3), (u32::MAX, 5)] {
            assert_eq!(varint_len(v), len, "{v}");
        }
        // A 8-byte name, 100 bytes of data, no extension, ACL 0: 2 bytes of header.
        let b = Blob::new(b"n0000001", Some(&[0; 100]), Meta::PLAIN);
        assert_eq!(b.header().len, 2);
        let b = Blob::new(b"n0000001", Some(&[0; 100]), Meta { ext: 7, ..Meta::PLAIN });
        assert_eq!(b.header().len, 7);
        let b = Blob::new(b"n0000001", Some(&[0; 100]), Meta { acl: 7, ..Meta::PLAIN });
        assert_eq!(b.header().len, 4);
        let b = Blob::new(b"n0000001", Some(&[0; 100]), Meta { stamp: Some((1, 2)), ..Meta::PLAIN });
        assert_eq!(b.header().len, 19);
    }

    #[test]
    fn many_blobs_made_and_dropped_read_back_whole() {
        let blobs: Vec<(Blob, u8)> = (0..300u32)
            .map(|i| {
                let fill = vec![i as u8; i as usize];
                let ext = if i % 2 == 0 { NO_EXT } else { i };
                let meta = Meta { ext, acl: i % 3, stamp: (i % 5 == 0).then_some((i as i64, -(i as i64))) };
                (Blob::new(&fill[..(i as usize / 3)], Some(&fill[(i as usize / 3)..]), meta), i as u8)
            })
            .collect();
        for (i, (b, fill)) in blobs.iter().enumerate() {
            assert_eq!(b.name().len() + b.data().unwrap().len(), i);
            assert!(b.name().iter().chain(b.data().unwrap()).all(|x| x == fill));
            let m = b.meta();
            assert_eq!(m.ext, if i % 2 == 0 { NO_EXT } else { i as u32 });
            assert_eq!(m.acl, i as u32 % 3);
            assert_eq!(m.stamp, (i % 5 == 0).then_some((i as i64, -(i as i64))));
        }
    }

    #[test]
    fn varints_round_trip_at_every_width() {
        let mut vals = vec![0u32, 1, 127, 128, 255, (MAX_NAME as u32) << FLAG_BITS, (MAX_NAME as u32) << FLAG_BITS | 3, u32::MAX - 1, u32::MAX];
        for k in 1..=4 {
            let b = 1u32 << (7 * k);
            vals.extend([b - 1, b, b + 1]);
        }
        for v in vals {
            let mut buf = [0xaau8; 5];
            let mut at = 0;
            put_varint(&mut buf, &mut at, v);
            assert_eq!(at, varint_len(v), "{v}");
            let mut read = 0;
            // SAFETY: `buf` holds the whole varint just written.
            assert_eq!(unsafe { read_varint(buf.as_ptr(), &mut read) }, v);
            assert_eq!(read, at, "{v}");
        }
        assert_eq!(3 * varint_len(u32::MAX) + 1 + 4 + 16, MAX_HEADER, "the header buffer in `new`");
    }
}
