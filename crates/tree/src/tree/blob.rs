//! A node's name and data in one heap block, behind a pointer of 8 bytes.
//!
//! A `Box<[u8]>` is 16 bytes in the slot: the pointer and the length. A [`Blob`] keeps the
//! length (a `u32`) at the front of the block instead, so the slot holds only the pointer.
//! Across a million slots that is 8 MB, paid for with 4 bytes in each block; the block is
//! rounded up to the allocator's size class either way, so the 4 bytes often cost nothing.
//!
//! This is the only `unsafe` code in the crate. The invariants it rests on:
//!
//! - the pointer is either [`EMPTY`] (a static zero, for no bytes at all; never written,
//!   never freed) or a block from the global allocator of [`Blob::layout`]`(len)` bytes,
//!   `len > 0`, whose first 4 bytes hold `len` and whose next `len` bytes are initialized;
//! - the block is byte-aligned, so the length is read and written unaligned. (mimalloc
//!   serves an alignment of 4 from another path that costs 16 bytes more per block, which
//!   is all this saves.)
//! - a `Blob` owns its block alone (it is neither `Copy` nor `Clone`), and the block is
//!   never changed after it is made, so sharing `&Blob` across threads is sound.

use std::alloc::{self, Layout};
use std::fmt;
use std::ptr::{self, NonNull};

/// What an empty blob points at: its length, zero.
static EMPTY: [u8; 4] = [0; 4];

/// A block of bytes behind a thin pointer (see the module docs).
pub(crate) struct Blob(NonNull<u8>);

// SAFETY: a Blob owns its block like a Box<[u8]> does and never changes it.
unsafe impl Send for Blob {}
unsafe impl Sync for Blob {}

impl Blob {
    /// A block holding `name` followed by `data`.
    pub fn new(name: &[u8], data: &[u8]) -> Blob {
        let len = name.len() + data.len();
        if len == 0 {
            return Blob::default();
        }
        let header = u32::try_from(len).expect("a znode's name and data fit in 4 GiB");
        let layout = Self::layout(len);
        // SAFETY: the layout is not zero-sized; the header and both copies stay within the
        // `4 + len` bytes allocated, and the sources cannot overlap a fresh block.
        unsafe {
            let Some(block) = NonNull::new(alloc::alloc(layout)) else {
                alloc::handle_alloc_error(layout)
            };
            block.cast::<u32>().write_unaligned(header);
            let body = block.as_ptr().add(4);
            ptr::copy_nonoverlapping(name.as_ptr(), body, name.len());
            ptr::copy_nonoverlapping(data.as_ptr(), body.add(name.len()), data.len());
            Blob(block)
        }
    }

    /// The block's bytes: the name, then the data.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: by the invariants, the header is readable and the `len` bytes after it
        // are initialized and live as long as `self`.
        unsafe {
            let len = self.0.cast::<u32>().read_unaligned() as usize;
            std::slice::from_raw_parts(self.0.as_ptr().add(4), len)
        }
    }

    fn layout(len: usize) -> Layout {
        Layout::from_size_align(4 + len, 1).expect("a small layout")
    }
}

impl Default for Blob {
    fn default() -> Blob {
        Blob(NonNull::from(&EMPTY).cast())
    }
}

impl Drop for Blob {
    fn drop(&mut self) {
        let len = self.bytes().len();
        if len > 0 {
            // SAFETY: a non-empty blob's block came from `alloc` with this very layout.
            unsafe { alloc::dealloc(self.0.as_ptr(), Self::layout(len)) }
        }
    }
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Blob({} bytes)", self.bytes().len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_is_one_pointer_and_holds_name_then_data() {
        assert_eq!(std::mem::size_of::<Blob>(), 8);
        assert_eq!(std::mem::size_of::<Option<Blob>>(), 8);
        let long = vec![7u8; 70_000];
        for (name, data) in [(&b""[..], &b""[..]), (b"n", b""), (b"", b"d"), (b"node", b"data"), (b"x", &long[..])] {
            let b = Blob::new(name, data);
            assert_eq!(b.bytes(), [name, data].concat());
        }
        assert_eq!(Blob::default().bytes(), b"");
        // Many made and dropped, of every length up to 300 bytes: each reads back whole.
        let blobs: Vec<(Blob, u8)> = (0..300u32)
            .map(|i| {
                let fill = vec![i as u8; i as usize];
                (Blob::new(&fill[..(i as usize / 3)], &fill[(i as usize / 3)..]), i as u8)
            })
            .collect();
        for (i, (b, fill)) in blobs.iter().enumerate() {
            assert_eq!(b.bytes().len(), i);
            assert!(b.bytes().iter().all(|x| x == fill));
        }
    }
}
