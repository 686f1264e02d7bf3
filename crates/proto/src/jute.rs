//! Jute, ZooKeeper's record encoding: big-endian `int`/`long`, one-byte `boolean`,
//! `buffer` and `ustring` as an `int` length (-1 for null) followed by the bytes, and
//! `vector` as an `int` count (-1 for null) followed by the elements.

use thiserror::Error;

/// Why a record could not be decoded. Any of these closes the offending connection.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record truncated: needed {needed} more bytes")]
    Truncated { needed: usize },
    #[error("invalid length {0}")]
    InvalidLength(i32),
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    #[error("unknown or unsupported opcode {0}")]
    UnknownOp(i32),
    #[error("invalid value: {0}")]
    Invalid(&'static str),
}

/// Reads jute primitives from a byte slice, front to back.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated { needed: n - self.buf.len() });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub fn read_i32(&mut self) -> Result<i32, DecodeError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn read_i64(&mut self) -> Result<i64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    pub fn read_bool(&mut self) -> Result<bool, DecodeError> {
        Ok(self.take(1)?[0] != 0)
    }

    /// A length, where -1 means null. Lengths are checked against what is left so a
    /// hostile length cannot make us allocate.
    fn read_len(&mut self) -> Result<Option<usize>, DecodeError> {
        let n = self.read_i32()?;
        if n == -1 {
            return Ok(None);
        }
        if n < 0 {
            return Err(DecodeError::InvalidLength(n));
        }
        Ok(Some(n as usize))
    }

    /// `n` raw bytes.
    pub fn read_raw(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        self.take(n)
    }

    /// An unsigned LEB128 varint (not jute; Corral's own formats use it).
    pub fn read_varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                if shift == 63 && b > 1 {
                    break;
                }
                return Ok(v);
            }
        }
        Err(DecodeError::Invalid("varint too long"))
    }

    /// A buffer; null reads as `None`.
    pub fn read_opt_buffer(&mut self) -> Result<Option<&'a [u8]>, DecodeError> {
        match self.read_len()? {
            None => Ok(None),
            Some(n) => self.take(n).map(Some),
        }
    }

    /// A buffer; null reads as empty, as ZooKeeper's server does.
    pub fn read_buffer(&mut self) -> Result<Vec<u8>, DecodeError> {
        Ok(self.read_opt_buffer()?.map(<[u8]>::to_vec).unwrap_or_default())
    }

    /// A buffer whose null-ness matters (znode data: ZooKeeper stores and returns null).
    pub fn read_data(&mut self) -> Result<Option<Vec<u8>>, DecodeError> {
        Ok(self.read_opt_buffer()?.map(<[u8]>::to_vec))
    }

    /// A znode path: a string that must not be null (ZooKeeper answers a null path with
    /// MarshallingError).
    pub fn read_path(&mut self) -> Result<String, DecodeError> {
        match self.read_opt_buffer()? {
            None => Err(DecodeError::Invalid("null path")),
            Some(b) => String::from_utf8(b.to_vec()).map_err(|_| DecodeError::InvalidUtf8),
        }
    }

    /// A string; null reads as empty.
    pub fn read_string(&mut self) -> Result<String, DecodeError> {
        match self.read_opt_buffer()? {
            None => Ok(String::new()),
            Some(b) => String::from_utf8(b.to_vec()).map_err(|_| DecodeError::InvalidUtf8),
        }
    }

    /// A vector of records; null reads as empty. Each element must take at least one byte,
    /// which bounds the count by what is left.
    pub fn read_vec<T>(
        &mut self,
        mut elem: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let Some(n) = self.read_len()? else { return Ok(Vec::new()) };
        if n > self.buf.len() {
            return Err(DecodeError::InvalidLength(n as i32));
        }
        // Capacity grows with what actually decodes; a count alone reserves little.
        let mut v = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            v.push(elem(self)?);
        }
        Ok(v)
    }

    pub fn read_string_vec(&mut self) -> Result<Vec<String>, DecodeError> {
        self.read_vec(|r| r.read_string())
    }
}

/// Appends jute primitives to a byte vector.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Writer { buf: Vec::with_capacity(64) }
    }

    /// A writer that starts with a 4-byte placeholder for the frame length;
    /// [`Writer::finish_frame`] fills it in.
    pub fn frame() -> Self {
        Writer { buf: vec![0; 4] }
    }

    pub fn finish_frame(mut self) -> Vec<u8> {
        let n = (self.buf.len() - 4) as i32;
        self.buf[..4].copy_from_slice(&n.to_be_bytes());
        self.buf
    }

    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.buf.push(v as u8);
        self
    }

    pub fn buffer(&mut self, v: &[u8]) -> &mut Self {
        self.i32(v.len() as i32);
        self.buf.extend_from_slice(v);
        self
    }

    pub fn null_buffer(&mut self) -> &mut Self {
        self.i32(-1)
    }

    /// Znode data: null is written as length -1.
    pub fn data(&mut self, v: Option<&[u8]>) -> &mut Self {
        match v {
            Some(d) => self.buffer(d),
            None => self.null_buffer(),
        }
    }

    pub fn string(&mut self, v: &str) -> &mut Self {
        self.buffer(v.as_bytes())
    }

    pub fn vec<T>(&mut self, items: &[T], mut elem: impl FnMut(&mut Self, &T)) -> &mut Self {
        self.i32(items.len() as i32);
        for it in items {
            elem(self, it);
        }
        self
    }

    pub fn string_vec<S: AsRef<str>>(&mut self, items: &[S]) -> &mut Self {
        self.vec(items, |w, s| {
            w.string(s.as_ref());
        })
    }

    /// An unsigned LEB128 varint (see [`Reader::read_varint`]).
    pub fn varint(&mut self, mut v: u64) -> &mut Self {
        while v >= 0x80 {
            self.buf.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
        self
    }

    pub fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }

    pub fn into_inner(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_overlong_ones_are_refused() {
        let values = [0, 1, 127, 128, 300, u32::MAX as u64, 1 << 62, u64::MAX];
        let mut w = Writer::new();
        for v in values {
            w.varint(v);
        }
        let buf = w.into_inner();
        assert_eq!(buf[..4], [0, 1, 127, 0x80]);
        let mut r = Reader::new(&buf);
        for v in values {
            assert_eq!(r.read_varint().unwrap(), v);
        }
        assert_eq!(r.remaining(), 0);
        assert!(Reader::new(&[0x80, 0x80]).read_varint().is_err(), "truncated");
        assert!(Reader::new(&[0xff; 10]).read_varint().is_err(), "more than 64 bits");
        let mut eleven = vec![0x80; 10];
        eleven.push(0);
        assert!(Reader::new(&eleven).read_varint().is_err(), "longer than 10 bytes");
    }

    #[test]
    fn primitives_round_trip() {
        let mut w = Writer::new();
        w.i32(-7).i64(1 << 40).bool(true).buffer(b"abc").string("hé").null_buffer();
        w.string_vec(&["a", "bc"]);
        let buf = w.into_inner();
        let mut r = Reader::new(&buf);
        assert_eq!(r.read_i32().unwrap(), -7);
        assert_eq!(r.read_i64().unwrap(), 1 << 40);
        assert!(r.read_bool().unwrap());
        assert_eq!(r.read_buffer().unwrap(), b"abc");
        assert_eq!(r.read_string().unwrap(), "hé");
        assert_eq!(r.read_opt_buffer().unwrap(), None);
        assert_eq!(r.read_string_vec().unwrap(), vec!["a", "bc"]);
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn hostile_lengths_are_errors_not_allocations() {
        let mut w = Writer::new();
        w.i32(i32::MAX);
        let buf = w.into_inner();
        assert!(matches!(Reader::new(&buf).read_buffer(), Err(DecodeError::Truncated { .. })));
        assert!(matches!(
            Reader::new(&buf).read_string_vec(),
            Err(DecodeError::InvalidLength(_))
        ));
        let neg = (-5i32).to_be_bytes();
        assert_eq!(Reader::new(&neg).read_buffer(), Err(DecodeError::InvalidLength(-5)));
        assert!(matches!(Reader::new(&[0, 0]).read_i32(), Err(DecodeError::Truncated { needed: 2 })));
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut w = Writer::new();
        w.buffer(&[0xff, 0xfe]);
        assert_eq!(Reader::new(&w.buf).read_string(), Err(DecodeError::InvalidUtf8));
    }

    #[test]
    fn frame_length_is_filled_in() {
        let mut w = Writer::frame();
        w.i32(1).i32(2);
        assert_eq!(w.finish_frame(), vec![0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 2]);
    }
}
