//! Length-prefixed frames: a 4-byte big-endian length, then that many bytes.

use thiserror::Error;

/// ZooKeeper's default `jute.maxbuffer`: 0xfffff bytes, just under 1 MiB.
pub const DEFAULT_MAX_FRAME: usize = 0xfffff;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame length {len} is outside 0..={max}")]
    BadLength { len: i64, max: usize },
}

/// Looks at the front of `buf`: `Ok(Some(n))` when a whole frame with an `n`-byte body is
/// there (the body is `buf[4..4 + n]`), `Ok(None)` when more bytes are needed, and an error
/// when the length is negative or over `max`.
pub fn check(buf: &[u8], max: usize) -> Result<Option<usize>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 0 || len as usize > max {
        return Err(FrameError::BadLength { len: len as i64, max });
    }
    let n = len as usize;
    Ok(if buf.len() >= 4 + n { Some(n) } else { None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        assert_eq!(check(&[0, 0], 10), Ok(None));
        assert_eq!(check(&[0, 0, 0, 2, 1], 10), Ok(None));
        assert_eq!(check(&[0, 0, 0, 2, 1, 2, 3], 10), Ok(Some(2)));
        assert!(check(&[0, 0, 0, 11], 10).is_err());
        assert!(check(&[0xff, 0xff, 0xff, 0xff], 10).is_err());
    }
}
