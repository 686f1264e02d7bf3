//! A node's name, data and extension number in one heap block, behind a pointer of 8
//! bytes.
//!
//! The slot keeps only the pointer; what varies in size, and what most nodes do not have,
//! is in the block, described by a short header at its front:
//!
//! ```text
//! varint  name length << 2 | HAS_EXT << 1 | NULL_DATA
//! [u32]   the extension's number, only if HAS_EXT (little-endian)
//! varint  data length
//! bytes   the name, then the data
//! ```
//!
//! A node with a short name, less than 128 bytes of data and no extension (a leaf written
//! once) pays 2 bytes of header, which the allocator's rounding to a size class often
//! absorbs; in the slot, a `Box<[u8]>` plus the name length and the extension number took
//! 24 bytes where this takes 8.
//!
//! This is the only `unsafe` code in the crate. The invariants it rests on:
//!
//! - the pointer is either [`VACANT`] (a static, for a slot on the free list; never
//!   written, never freed) or a block from the global allocator whose layout is
//!   [`Blob::layout`] of its header's length plus the name's and the data's, all of it
//!   initialized;
//! - the block is byte-aligned, so the extension number is read and written unaligned
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
const HAS_EXT: u32 = 2;
/// What a vacant blob points at. Its bytes are never read: a vacant blob is known by its
/// address.
static VACANT: u8 = 0;
/// The longest name a blob holds: its length, shifted left by two, is a `u32`.
pub(crate) const MAX_NAME: usize = crate::path::MAX_NAME_BYTES;
const _: () = assert!(MAX_NAME << 2 | 3 == u32::MAX as usize);

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
    ext: u32,
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

impl Blob {
    /// A block holding `name` and `data` (or null data), and `ext` unless it is
    /// [`NO_EXT`].
    pub fn new(name: &[u8], data: Option<&[u8]>, ext: u32) -> Blob {
        assert!(name.len() <= MAX_NAME, "znode name too long");
        let bytes = data.unwrap_or_default();
        let data_len = u32::try_from(bytes.len()).expect("znode data fits in 4 GiB");
        let head = (name.len() as u32) << 2
            | if data.is_none() { NULL_DATA } else { 0 }
            | if ext != NO_EXT { HAS_EXT } else { 0 };
        // At most two 5-byte varints and the number.
        let mut header = [0u8; 14];
        let mut at = 0;
        put_varint(&mut header, &mut at, head);
        if ext != NO_EXT {
            header[at..at + 4].copy_from_slice(&ext.to_le_bytes());
            at += 4;
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
            if size >= header.len() {
                // A copy of known length is a few moves, not a call; the bytes past the
                // header are overwritten next.
                p.copy_from_nonoverlapping(header.as_ptr(), header.len());
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

    /// Reads the header; a vacant blob reads as no name, null data and no extension.
    fn header(&self) -> Header {
        if self.is_vacant() {
            return Header { name_len: 0, data_len: 0, null_data: true, ext: NO_EXT, len: 0 };
        }
        let p = self.0.as_ptr();
        let mut at = 0;
        // SAFETY: by the invariants the block starts with a whole header, written by
        // `new`, so every byte read here is inside it and initialized.
        let (head, ext, data_len) = unsafe {
            let head = read_varint(p, &mut at);
            let ext = if head & HAS_EXT != 0 {
                let e = p.add(at).cast::<u32>().read_unaligned();
                at += 4;
                u32::from_le(e)
            } else {
                NO_EXT
            };
            (head, ext, read_varint(p, &mut at) as usize)
        };
        Header { name_len: (head >> 2) as usize, data_len, null_data: head & NULL_DATA != 0, ext, len: at }
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

    /// The extension's number, or [`NO_EXT`].
    pub fn ext(&self) -> u32 {
        self.header().ext
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
        write!(f, "Blob(name {} bytes, data {} bytes, ext {})", h.name_len, h.data_len, h.ext)
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
        for name in names {
            for data in datas {
                for ext in [NO_EXT, 0, 5, 300, 1 << 31, NO_EXT - 1] {
                    let b = Blob::new(name, data, ext);
                    assert!(!b.is_vacant());
                    assert_eq!(b.name(), name);
                    assert_eq!(b.data(), data);
                    assert_eq!(b.ext(), ext);
                }
            }
        }
        let v = Blob::vacant();
        assert!(v.is_vacant());
        assert_eq!((v.name(), v.data(), v.ext()), (&b""[..], None, NO_EXT));
    }

    #[test]
    fn headers_are_short() {
        for (v, len) in [(0, 1), (127, 1), (128, 2), (16_383, 2), (16_384, 3), (u32::MAX, 5)] {
            assert_eq!(varint_len(v), len, "{v}");
        }
        // A 8-byte name, 100 bytes of data and no extension: 2 bytes of header.
        let b = Blob::new(b"n0000001", Some(&[0; 100]), NO_EXT);
        assert_eq!(b.header().len, 2);
        let b = Blob::new(b"n0000001", Some(&[0; 100]), 7);
        assert_eq!(b.header().len, 6);
    }

    #[test]
    fn many_blobs_made_and_dropped_read_back_whole() {
        let blobs: Vec<(Blob, u8)> = (0..300u32)
            .map(|i| {
                let fill = vec![i as u8; i as usize];
                let ext = if i % 2 == 0 { NO_EXT } else { i };
                (Blob::new(&fill[..(i as usize / 3)], Some(&fill[(i as usize / 3)..]), ext), i as u8)
            })
            .collect();
        for (i, (b, fill)) in blobs.iter().enumerate() {
            assert_eq!(b.name().len() + b.data().unwrap().len(), i);
            assert!(b.name().iter().chain(b.data().unwrap()).all(|x| x == fill));
            assert_eq!(b.ext(), if i % 2 == 0 { NO_EXT } else { i as u32 });
        }
    }

    #[test]
    fn varints_round_trip_at_every_width() {
        let mut vals = vec![0u32, 1, 127, 128, 255, (MAX_NAME as u32) << 2, (MAX_NAME as u32) << 2 | 3, u32::MAX - 1, u32::MAX];
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
        assert_eq!(2 * varint_len(u32::MAX) + 4, 14, "the header buffer in `new`");
    }
}
